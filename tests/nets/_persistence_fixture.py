"""Build pickles in EDM's `torch_utils.persistence` format inside tests, without EDM.

A persistent object is pickled, as EDM does, as a call
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with
`meta = {type, version, module_src, class_name, state}`; `state` is the module's
`__dict__` (`_parameters`, `_buffers`, `_modules`, hook dicts, `_init_args`,
`_init_kwargs`, plain attributes). torch.nn containers (ModuleDict) are not
persistent in EDM and pickle as ordinary objects (NEWOBJ + state).
`module_src` is code that creates a marker file if anyone executes it.
"""

from __future__ import annotations

import collections
import contextlib
import copyreg
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

PERSISTENCE_MODULE = "torch_utils.persistence"


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
    if isinstance(value, (bool, int, float, str, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _module_state(module: torch.nn.Module, wrap, init_kwargs: dict) -> dict:
    state: dict[str, Any] = {}
    for key, value in vars(module).items():
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
    state["_init_kwargs"] = dict(init_kwargs)
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
                     snapshot: bool = True, protocol: int = 4) -> Path:
    """Write `net` as an EDM persistence pickle (a snapshot dict `{ema, ...}` or the bare network)."""
    src = marker_source(marker)
    with fake_edm_modules() as persistence:
        fn = persistence._reconstruct_persistent_obj
        obj: Any = persistent_object(net, init_kwargs, src, fn)
        if snapshot:
            loss = _Persistent(fn, dict(type="class", version=6, module_src=src, class_name="EDMLoss",
                                        state={"P_mean": -1.2, "P_std": 1.2, "sigma_data": 0.5,
                                               "_init_args": (), "_init_kwargs": {}}))
            easydict = sys.modules["dnnlib.util"].EasyDict
            obj = {"ema": obj, "loss_fn": loss, "augment_pipe": None,
                   "dataset_kwargs": easydict(path="cifar10-32x32.zip", xflip=False, max_size=50000)}
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


class Evil:
    """Pickles as a call to os.system: what a malicious pickle does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))
