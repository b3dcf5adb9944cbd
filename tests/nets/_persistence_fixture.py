"""Build pickles in EDM's `torch_utils.persistence` format inside tests, without EDM.

A persistent object is pickled, as EDM does, as a call
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with
`meta = {type, version, module_src, class_name, state}`; `state` is the module's
`__dict__` (`_parameters`, `_buffers`, `_modules`, hook dicts, `_init_args`,
`_init_kwargs`, plain attributes). torch.nn containers (ModuleDict) are not
persistent in EDM and pickle as ordinary objects (NEWOBJ + state).
`module_src` is code that creates a marker file if anyone executes it.

As in EDM, numpy float64 scalars appear in the state and `_init_kwargs` of every
UNet block (EDM passes `skip_scale=np.sqrt(0.5)` and `init_attn=dict(init_weight=
np.sqrt(0.2))`); they are written as `<numpy_module>.scalar(numpy.dtype('f8'), bytes)`
with the module spelled as numpy 1.x (`numpy.core.multiarray`, the released files) or
numpy 2 (`numpy._core.multiarray`) writes it, whichever numpy is installed.
"""

from __future__ import annotations

import collections
import contextlib
import copyreg
import io
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

PERSISTENCE_MODULE = "torch_utils.persistence"
NUMPY1 = "numpy.core.multiarray"
NUMPY2 = "numpy._core.multiarray"


def _numpy_scalar(dtype, data):  # pragma: no cover - never called: only its (rewritten) name is pickled
    raise AssertionError("stands in for numpy's scalar reconstructor when pickling")


class EDMPickler(pickle._Pickler):
    """The pure-Python pickler, writing numpy scalars under the numpy module name given."""

    def __init__(self, file, protocol: int, numpy_module: str):
        super().__init__(file, protocol)
        self.numpy_module = numpy_module

    def reducer_override(self, obj):
        if isinstance(obj, np.generic):
            return _numpy_scalar, (obj.dtype, obj.tobytes())  # what numpy's own __reduce__ returns
        if obj is _numpy_scalar:
            return "scalar"  # save as a global, through save_global below
        return NotImplemented

    def save_global(self, obj, name=None):
        if obj is not _numpy_scalar:
            return super().save_global(obj, name)
        if self.proto >= 4:
            self.save(self.numpy_module)
            self.save("scalar")
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{self.numpy_module}\nscalar\n".encode())
        self.memoize(obj)


class _Reduction:
    def __init__(self, func: Any, args: tuple):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def numpy_scalar_reduction(dtype: Any, data: Any) -> Any:
    """Pickles as `<numpy_module>.scalar(dtype, data)` with any (also invalid) dtype and data."""
    return _Reduction(_numpy_scalar, (dtype, data))


def dumps(obj: Any, protocol: int = 4, numpy_module: str = NUMPY1) -> bytes:
    """`pickle.dumps` with numpy scalars written as numpy 1.x (NUMPY1) or numpy 2 (NUMPY2) does."""
    buf = io.BytesIO()
    EDMPickler(buf, protocol, numpy_module).dump(obj)
    return buf.getvalue()


def marker_source(marker: Path) -> str:
    """Module source that leaves `marker` behind when executed."""
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('module_src was executed')\n"


@contextlib.contextmanager
def fake_edm_modules() -> Iterator[types.ModuleType]:
    """Register stand-ins for `torch_utils.persistence` and `dnnlib.util` while pickling, then remove them."""
    names = ["torch_utils", PERSISTENCE_MODULE, "dnnlib", "dnnlib.util"]
    assert not any(n in sys.modules for n in names), "a real EDM checkout is importable; tests need it absent"
    persistence = types.ModuleType(PERSISTENCE_MODULE)

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called: only its name is pickled
        raise AssertionError("the fake EDM reconstruct function must never run")

    _reconstruct_persistent_obj.__module__ = PERSISTENCE_MODULE
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    easydict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    util.EasyDict = easydict
    modules = {"torch_utils": types.ModuleType("torch_utils"), PERSISTENCE_MODULE: persistence,
               "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    sys.modules.update(modules)
    try:
        yield persistence
    finally:
        for n in names:
            sys.modules.pop(n, None)


class _Persistent:
    def __init__(self, fn: Any, meta: dict):
        self.fn, self.meta = fn, meta

    def __reduce__(self):
        return (self.fn, (self.meta,))


class _Container:
    """A torch.nn container pickled the way pickle treats any non-persistent object (protocol >= 2)."""

    def __init__(self, cls: type, state: dict):
        self.cls, self.state = cls, state

    @property
    def __class__(self):  # pickle checks that NEWOBJ's class is the object's class
        return self.cls

    def __reduce__(self):
        return (copyreg.__newobj__, (self.cls,), self.state)


def _plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str, type(None), np.generic)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def edm_block_kwargs(block: torch.nn.Module) -> dict:
    """The `_init_kwargs` EDM records for a UNetBlock: numpy float64 scalars among them.

    SongUNet passes skip_scale=np.sqrt(0.5) and init_attn's np.sqrt(0.2); DhariwalUNet
    keeps skip_scale 1 and passes init gains np.sqrt(1/3).
    """
    skip = np.float64(block.skip_scale) if isinstance(block.skip_scale, float) else block.skip_scale
    init = ({"init_mode": "kaiming_uniform", "init_weight": np.sqrt(1 / 3), "init_bias": np.sqrt(1 / 3)}
            if block.adaptive_scale else {"init_mode": "xavier_uniform"})
    return {"in_channels": block.in_channels, "out_channels": block.out_channels,
            "emb_channels": block.emb_channels, "skip_scale": skip, "eps": 1e-6, "resample_filter": [1, 1],
            "init": init, "init_attn": {"init_mode": "xavier_uniform", "init_weight": np.sqrt(0.2)}}


def _module_state(module: torch.nn.Module, wrap, init_kwargs: dict) -> dict:
    state: dict[str, Any] = {}
    is_block = hasattr(module, "skip_scale")
    for key, value in vars(module).items():
        if is_block and isinstance(value, float):
            value = np.float64(value)  # EDM's blocks hold np.sqrt(0.5) itself
        if key == "_modules":
            state[key] = collections.OrderedDict(
                (n, None if c is None else wrap(c)) for n, c in value.items())
        elif key in ("_parameters", "_buffers"):
            state[key] = collections.OrderedDict(value)
        elif key == "_non_persistent_buffers_set":
            state[key] = set(value)
        elif isinstance(value, dict) and not value:
            state[key] = collections.OrderedDict()  # hook dicts
        elif _plain(value):
            state[key] = value
    state["_init_args"] = ()
    state["_init_kwargs"] = edm_block_kwargs(module) if is_block and not init_kwargs else dict(init_kwargs)
    return state


def persistent_object(net: torch.nn.Module, init_kwargs: dict, module_src: str, fn: Any) -> _Persistent:
    """Wrap `net` (recursively) so that pickling it writes EDM's persistence format."""

    def wrap(module: torch.nn.Module, kwargs: dict | None = None) -> Any:
        state = _module_state(module, wrap, kwargs or {})
        if type(module).__module__.startswith("torch.nn."):
            return _Container(type(module), state)
        meta = dict(type="class", version=6, module_src=module_src, class_name=type(module).__name__,
                    state=state)
        return _Persistent(fn, meta)

    return wrap(net, init_kwargs)


def write_edm_pickle(path: Path, net: torch.nn.Module, init_kwargs: dict, marker: Path, *,
                     snapshot: bool | str = True, protocol: int = 4, numpy_module: str = NUMPY1,
                     class_name: str | None = None) -> Path:
    """Write `net` as an EDM persistence pickle.

    snapshot: True for EDM's training snapshot `{ema, loss_fn, augment_pipe, dataset_kwargs}`,
    "ema" for SiD/SiDA's generator snapshot `{ema}`, False for the bare network.
    class_name: the recorded class of the top-level network (e.g. SiDA's "EDMPrecond_EncoderDecoder").
    """
    src = marker_source(marker)
    with fake_edm_modules() as persistence:
        fn = persistence._reconstruct_persistent_obj
        obj: Any = persistent_object(net, init_kwargs, src, fn)
        if class_name is not None:
            obj.meta["class_name"] = class_name
        if snapshot == "ema":
            obj = {"ema": obj}
        elif snapshot:
            loss = _Persistent(fn, dict(type="class", version=6, module_src=src, class_name="EDMLoss",
                                        state={"P_mean": -1.2, "P_std": 1.2, "sigma_data": 0.5,
                                               "_init_args": (), "_init_kwargs": {}}))
            augment = _Persistent(fn, dict(type="class", version=6, module_src=src, class_name="AugmentPipe",
                                           state={"p": np.float64(0.12), "xflip": 1e8, "_init_args": (),
                                                  "_init_kwargs": {"p": 0.12, "xflip": 1e8}}))
            easydict = sys.modules["dnnlib.util"].EasyDict
            obj = {"ema": obj, "loss_fn": loss, "augment_pipe": augment,
                   "dataset_kwargs": easydict(path="cifar10-32x32.zip", xflip=False, max_size=50000,
                                              resolution=32, use_labels=False, cache=True)}
        path.write_bytes(dumps(obj, protocol=protocol, numpy_module=numpy_module))
    return path


class Evil:
    """Pickles as a call to os.system: what a malicious pickle does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))
