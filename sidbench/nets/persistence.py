"""Read NVIDIA's EDM network pickles without running the code they carry.

EDM (and SiD/SiDA, which reuse it) pickle networks with `torch_utils.persistence`:
each network object is stored as a call `_reconstruct_persistent_obj(meta)` where
`meta = {type: 'class', version, module_src, class_name, state}`; `module_src` is
the full source of the defining module, which EDM's loader `exec`s, and `state` is
the object's `__dict__` (`_parameters`, `_buffers`, `_modules`, `_init_kwargs`, ...).

Here the unpickler allows only a short list of globals (tensor and storage
rebuilding, OrderedDict, sets, numpy scalars of plain numeric types) and maps
`_reconstruct_persistent_obj` to a function that returns a plain `Record` and never
looks at `module_src`. Other classes that appear (torch.nn containers such as
ModuleDict, dnnlib.EasyDict) are replaced by inert stand-ins that only keep their
pickled state. Any other global is refused by name. The parameters and buffers are
then collected by dotted name, exactly as `state_dict()` would name them.

EDM's SongUNet passes `skip_scale=np.sqrt(0.5)` to every block (DhariwalUNet its
init gains), so every released network holds numpy float64 scalars, pickled as
`numpy.core.multiarray.scalar(numpy.dtype('f8'), bytes)` (numpy 1.x; numpy 2 writes
`numpy._core`). They become Python numbers; object dtypes and arrays stay refused.
SiDA's generators pickle SiDA's own classes (`EDMPrecond_EncoderDecoder` around
`SongUNet_EncoderDecoder` / `DhariwalUNet_EncoderDecoder`), which have EDM's
parameter names and forward pass; they convert to ours, the original names recorded.
"""

from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidbench.errors import AssetError, CheckpointError, ConfigError

FORMAT = "edm-persistence"
TRUST_HINT = ("unpickling a file can run arbitrary code; pass --trust-pickle (trust_pickle=True) only for a "
              "file you trust, e.g. one downloaded from NVIDIA's or the SiD authors' published URL "
              "(sidbench then reads it with a restricted unpickler that never runs its embedded source)")

# Positional constructor arguments of EDM's preconditioners, in order (EDM passes keywords; this
# only matters for a pickle whose `_init_args` is not empty).
_PRECOND_POSITIONAL = ("img_resolution", "img_channels", "label_dim", "use_fp16")
# SiDA's classes (mingyuanzhou/SiD, branch sida, sida_training/sida_networks.py) -> ours.
SIDA_CLASSES = {"EDMPrecond_EncoderDecoder": "EDMPrecond"}
SIDA_MODELS = {"SongUNet_EncoderDecoder": "SongUNet", "DhariwalUNet_EncoderDecoder": "DhariwalUNet"}
KNOWN_CLASSES = ("EDMPrecond", "VPPrecond", "VEPrecond", *SIDA_CLASSES)


@dataclass
class Record:
    """What a persistent object was, without its code: class name, version and pickled state."""

    class_name: str
    version: Any = None
    state: dict = field(default_factory=dict)
    module_src_len: int = 0

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})


class StandIn:
    """Inert instance of a non-persistent class (e.g. torch.nn.ModuleDict): keeps only its state."""

    class_path = "?"
    state: Any = types.MappingProxyType({})  # replaced by __setstate__; NEWOBJ skips __init__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slots state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state or {})

    @property
    def class_name(self) -> str:
        return self.class_path.rsplit(".", 1)[-1]


class _StandInDict(dict):
    """Stand-in for dict subclasses such as dnnlib.EasyDict."""

    def __setstate__(self, state: Any) -> None:
        pass


_STAND_INS: dict[str, type] = {}


def _stand_in(module: str, name: str) -> type:
    path = f"{module}.{name}"
    if path not in _STAND_INS:
        _STAND_INS[path] = type(name, (StandIn,), {"class_path": path, "__module__": __name__})
    return _STAND_INS[path]


def _reconstruct_record(meta: Any) -> Record:
    """Our replacement for EDM's `_reconstruct_persistent_obj`: a record, `module_src` never executed."""
    if not isinstance(meta, dict) or "class_name" not in meta:
        raise CheckpointError("a persistent object in the pickle has no class_name",
                              hint="this is not an EDM persistence pickle")
    if meta.get("type", "class") != "class":
        raise CheckpointError(f"persistent object of type {meta.get('type')!r} is not supported",
                              hint="only EDM network pickles (type 'class') can be converted")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise CheckpointError(f"persistent object {meta['class_name']} has a non-dict state",
                              hint="this is not an EDM persistence pickle")
    src = meta.get("module_src")
    return Record(class_name=str(meta["class_name"]), version=meta.get("version"), state=dict(state),
                  module_src_len=len(src) if isinstance(src, str) else 0)


def _load_storage_bytes(data: bytes) -> Any:
    """A storage pickled with plain `pickle` is a tiny legacy `torch.save` file: read it weights-only."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool, backward_hooks: Any, *state: Any) -> Any:
    return data  # a plain tensor is all we need; no hooks, no Parameter subclass state


class _TypeName(str):
    """A class the pickle names (torch.Tensor, Parameter) as data only: never callable here."""


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    if not isinstance(new_type, _TypeName):
        raise CheckpointError(f"the pickle holds a tensor subclass {new_type!r}",
                              hint="only plain tensors can be converted")
    if func not in (torch._utils._rebuild_tensor_v2, torch._utils._rebuild_tensor, _rebuild_parameter):
        raise CheckpointError(f"the pickle rebuilds a tensor with {func!r}", hint=TRUST_HINT)
    return func(*args)


def _encode_latin1(text: str, encoding: str = "utf-8") -> bytes:
    """Protocol 2 stores bytes as `_codecs.encode(text, 'latin1')`; no other codec is needed."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise CheckpointError(f"the pickle uses the codec {encoding!r}", hint=TRUST_HINT)
    return codecs.encode(text, "latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg._reconstructor for protocol 0/1 objects: only our stand-ins can be made."""
    if isinstance(cls, type) and issubclass(cls, _StandInDict):
        return cls(state if isinstance(state, dict) else {})
    if isinstance(cls, type) and issubclass(cls, StandIn):
        return cls()
    raise CheckpointError(f"the pickle reconstructs {cls!r}, which is not allowed", hint=TRUST_HINT)


# numpy.dtype specs a pickled numpy scalar may have: bool, integers, float16/32/64 (any byte order).
_NUMPY_SPEC = re.compile(r"[<>=|]?(b1|[iu][1248]|f[248])")


def _refuse_numpy(what: str) -> CheckpointError:
    return CheckpointError(f"the pickle holds {what}, which is not allowed in a network pickle; "
                           "nothing was executed",
                           hint="this is not an EDM network pickle, or it was tampered with")


class NumpyDType:
    """`numpy.dtype(spec, align, copy)` as a pickle rebuilds it, limited to plain bool/int/float types."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        if not isinstance(spec, str) or not _NUMPY_SPEC.fullmatch(spec):
            raise _refuse_numpy(f"a numpy dtype {spec!r} (only bool, integer and float scalars are read)")
        self.spec = spec
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        plain = (isinstance(state, tuple) and len(state) in (8, 9) and state[1] in ("<", ">", "|", "=")
                 and state[2:5] == (None, None, None) and (len(state) == 8 or not state[8]))
        if not plain:
            raise _refuse_numpy(f"a numpy dtype {self.spec!r} with structured or unknown state")
        self.byteorder = state[1]

    def numpy(self) -> np.dtype:
        dtype = np.dtype(self.spec)
        return dtype.newbyteorder(self.byteorder) if self.byteorder in "<>" else dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> bool | int | float:
    """`numpy.core.multiarray.scalar(dtype, bytes)`: the Python number it holds (value kept exactly)."""
    if not isinstance(dtype, NumpyDType):
        raise _refuse_numpy("a numpy scalar without a plain numeric dtype")
    np_dtype = dtype.numpy()
    if not isinstance(data, bytes) or len(data) != np_dtype.itemsize:
        raise _refuse_numpy(f"a numpy {np_dtype} scalar whose data is not {np_dtype.itemsize} bytes")
    return np.frombuffer(data, dtype=np_dtype)[0].item()


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,  # numpy 1.x, which the released files used
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,  # numpy 2
    ("numpy", "dtype"): NumpyDType,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_record,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("torch", "Size"): torch.Size,
    ("torch", "Tensor"): _TypeName("torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _TypeName("torch.nn.parameter.Parameter"),
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "object"): object,
    ("_codecs", "encode"): _encode_latin1,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("dnnlib.util", "EasyDict"): _StandInDict,
    ("dnnlib", "EasyDict"): _StandInDict,
}


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals; everything else is a CheckpointError."""

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)  # protocol < 3 pickles spell these the Python 2 way
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module.startswith("torch.nn.modules.") and name.isidentifier():
            return _stand_in(module, name)  # never imported or run: only its pickled state is kept
        raise CheckpointError(f"the pickle references the global {module}.{name}, which is not allowed "
                              "in a network pickle; nothing was executed",
                              hint="this is not an EDM network pickle, or it was tampered with")

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("the file uses torch.save's persistent storage ids, not a plain EDM pickle",
                              hint="for a torch state dict use `sidbench convert --config/--preset`")


def read_pickle(path: str | os.PathLike) -> Any:
    """Unpickle `path` with `RestrictedUnpickler` (persistent objects become `Record`s)."""
    p = Path(path)
    if not p.is_file():
        raise AssetError(f"{p} does not exist", hint="give the path of the downloaded .pkl file")
    with open(p, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head == b"PK\x03\x04":
            raise CheckpointError(f"{p} is a zip (torch.save) file, not an EDM pickle",
                                  hint="for a plain state dict use `sidbench convert --config/--preset`")
        try:
            return RestrictedUnpickler(f).load()
        except CheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError,
                IndexError, RuntimeError, UnicodeDecodeError, MemoryError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{p} cannot be read as a network pickle ({msg})",
                                  hint="the file is truncated or not an EDM pickle; download it again",
                                  ) from None


def _children(node: Any) -> dict:
    modules = node.state.get("_modules") or {}
    if not isinstance(modules, dict):
        raise CheckpointError(f"{node.class_name}._modules is not a dict", hint="not an EDM network pickle")
    return modules


def collect_tensors(root: Record | StandIn) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers under `root`, by the dotted names `state_dict()` uses."""
    out: dict[str, torch.Tensor] = {}

    def visit(node: Any, prefix: str) -> None:
        if not isinstance(node, (Record, StandIn)):
            raise CheckpointError(f"module {prefix.rstrip('.') or '<root>'} is a {type(node).__name__}, "
                                  "not a network module", hint="not an EDM network pickle")
        state = node.state
        skip = set(state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, tensor in (state.get(group) or {}).items():
                if tensor is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise CheckpointError(f"{prefix}{name} is a {type(tensor).__name__}, not a tensor",
                                          hint="not an EDM network pickle")
                out[prefix + name] = tensor.detach()
        for name, child in _children(node).items():
            if child is not None:
                visit(child, f"{prefix}{name}.")

    visit(root, "")
    return out


def precond_config(record: Record) -> dict:
    """`{"class_name", "init_kwargs"}` of the top-level network, from its recorded constructor arguments.

    SiDA's class names become ours (`EDMPrecond_EncoderDecoder` -> `EDMPrecond`, and its
    `model_type`); the record keeps the original ones.
    """
    if not isinstance(record, Record):
        raise CheckpointError("the network object in the pickle is not an EDM persistent class",
                              hint="only networks saved with EDM's torch_utils.persistence can be converted")
    short = record.class_name.rsplit(".", 1)[-1]
    if short not in KNOWN_CLASSES:
        raise CheckpointError(f"the network in the pickle is a {record.class_name}, "
                              "which sidbench cannot rebuild",
                              hint=f"convertible classes: {', '.join(KNOWN_CLASSES)}")
    if "_init_kwargs" not in record.state or not isinstance(record.state["_init_kwargs"], dict):
        raise CheckpointError(f"{record.class_name} in the pickle has no recorded constructor arguments",
                              hint="it was saved with _record_init_args = False; cannot rebuild it")
    kwargs = dict(record.init_kwargs)
    args = record.init_args
    if len(args) > len(_PRECOND_POSITIONAL):
        raise CheckpointError(f"{record.class_name} was built with {len(args)} positional arguments",
                              hint="cannot tell their names; convert from a pickle built with keywords")
    for key, value in zip(_PRECOND_POSITIONAL, args, strict=False):
        kwargs[key] = value
    class_name = SIDA_CLASSES.get(short, record.class_name)
    if short in SIDA_CLASSES:  # SiDA's preconditioner defaults to its own SongUNet
        kwargs.setdefault("model_type", "SongUNet_EncoderDecoder")
    model_type = kwargs.get("model_type")
    if isinstance(model_type, str) and model_type in SIDA_MODELS:
        kwargs["model_type"] = SIDA_MODELS[model_type]
    return {"class_name": class_name, "init_kwargs": _plain(kwargs)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def select_network(obj: Any, key: str | None) -> tuple[Record, str | None]:
    """The network in an unpickled file: `obj[key]` of a snapshot dict, or the object itself."""
    if isinstance(obj, Record):
        return obj, None
    if isinstance(obj, dict):
        if key is None or key not in obj:
            keys = ", ".join(sorted(map(str, obj))) or "none"
            raise ConfigError(f"the pickle has no key {key!r} (keys: {keys})",
                              hint="pick the network with --key (EDM, SiD and SiDA releases use 'ema')")
        return obj[key], key
    raise CheckpointError(f"the pickle holds a {type(obj).__name__}, not a network or a snapshot dict",
                          hint="give an EDM network pickle (edm-*.pkl or a SiD/SiDA generator)")


def check_preset(config: dict, preset: str) -> None:
    """Raise ConfigError if `config` (read from a pickle) is not the architecture of `preset`.

    Keys the pickle does not record are model defaults and are not compared;
    dropout is a training setting and may differ (SiD's generators use their own).
    """
    from sidbench.nets.native import jsonable
    from sidbench.nets.presets import preset_config

    want = preset_config(preset)
    diffs = []
    if want["class_name"] != config["class_name"].rsplit(".", 1)[-1]:
        diffs.append(f"class_name {config['class_name']} (preset: {want['class_name']})")
    got = jsonable(config["init_kwargs"])  # same spelling on both sides: lists, "inf"
    for k, v in jsonable(want["init_kwargs"]).items():
        if k in got and k not in ("dropout", "label_dropout") and got[k] != v:
            diffs.append(f"{k}={got[k]!r} (preset: {v!r})")
    if diffs:
        raise ConfigError(f"the network is not preset {preset!r}: " + ", ".join(diffs),
                          hint="drop --preset, or pick the file that matches it")


GENERATOR_NOTE = ("the pickle holds only 'ema', as SiD's and SiDA's one-step generator snapshots do; "
                  "if this is a generator, convert it with role 'generator' (--role generator, sigma_init "
                  "2.5 by default) so `generate` and `eval --generator` sample it in one step")


def _notes(obj: Any, used_key: str | None, role: str | None) -> list[str]:
    """What the user should know about a conversion that the record alone does not say."""
    if role is None and used_key == "ema" and isinstance(obj, dict) and set(obj) == {"ema"}:
        return [GENERATOR_NOTE]
    return []


def convert_pickle(path: str | os.PathLike, out_dir: str | os.PathLike, *, trust_pickle: bool,
                   key: str | None = "ema", preset: str | None = None, role: str | None = None,
                   sigma_init: float | None = None) -> Path:
    """Convert an EDM / SiD / SiDA persistence pickle into a native folder; returns its `network.json`.

    The tensors are compared, name by name and shape by shape, with the architecture
    the pickled constructor arguments describe (built on the meta device, so a wrong
    config allocates nothing), then loaded strictly. With `preset`, the pickle's
    architecture must also be that preset's. `role` ("generator", "teacher",
    "network") and a generator's `sigma_init` (2.5 by default) are recorded; an
    `ema`-only snapshot converted without a role gets a note in `notes`.
    """
    from sidbench.fileio import sha256_file
    from sidbench.nets.build import build_network
    from sidbench.nets.native import check_fits, check_role, check_shapes, planned_shapes, save_network

    p = Path(path)
    role_to_record, sigma_to_record = check_role(role, sigma_init)  # bad values fail before the file is read
    if not trust_pickle:
        raise CheckpointError(f"refusing to unpickle {p.name} without --trust-pickle", hint=TRUST_HINT)
    obj = read_pickle(p)
    record, used_key = select_network(obj, key)
    config = precond_config(record)
    if preset is not None:
        check_preset(config, preset)
    tensors = collect_tensors(record)
    what = f"{p.name}[{used_key!r}]" if used_key else p.name
    planned = planned_shapes(config)
    check_shapes(planned, {k: tuple(v.shape) for k, v in tensors.items()}, what)
    check_fits(planned, what, copies=1)  # the tensors are in memory already; the network is one more copy
    net = build_network(config)
    net.load_state_dict(tensors, strict=True)
    source = {"file": p.name, "sha256": sha256_file(p), "key": used_key, "format": FORMAT,
              "class_name": record.class_name, "persistence_version": record.version}
    pickled_model = record.init_kwargs.get("model_type")
    if pickled_model != config["init_kwargs"].get("model_type"):
        source["model_type"] = pickled_model  # SiDA's own class name
    return save_network(net, config, out_dir, source=source, role=role_to_record, sigma_init=sigma_to_record,
                        notes=_notes(obj, used_key, role))
