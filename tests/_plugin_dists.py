"""Installed-looking plugin distributions for registry tests (not a test module).

`write_dist` writes what pip leaves in site-packages for a package: `NAME-VERSION.dist-info` with
METADATA and entry_points.txt. With its folder on sys.path, `importlib.metadata.entry_points` (the
registry's real code path) finds it exactly as it finds an installed plugin, distribution name and
version included. `fresh_registry` makes sidbench's global registry scan the entry points again
and restores it afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def write_dist(root: Path, name: str, version: str, entry_points: dict[str, dict[str, str]],
               modules: dict[str, str] | None = None) -> Path:
    """A distribution `name` under `root` (a sys.path folder): its dist-info and its modules' files."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines: list[str] = []
    for group, eps in entry_points.items():
        lines += [f"[{group}]", *(f"{key} = {value}" for key, value in eps.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    for module, text in (modules or {}).items():
        (root / f"{module}.py").write_text(text)
    return info


def on_path(monkeypatch, *folders: Path) -> None:
    """`folders` on this process's sys.path and on PYTHONPATH (validate's `distill` subprocess)."""
    for folder in reversed(folders):
        monkeypatch.syspath_prepend(str(folder))
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([*map(str, folders), *filter(None, [old])]))


def drop_modules_under(root: Path) -> None:
    """Forget the modules imported from `root`, so that a later test's module of the same name is its own."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).is_relative_to(root):
            del sys.modules[name]


def fresh_registry(monkeypatch, registry):
    """`registry` rescans its entry points in this test (it keeps what it had); restored afterwards."""
    for attr in ("_items", "_sources", "broken", "_versions"):
        monkeypatch.setattr(registry, attr, dict(getattr(registry, attr)))
    monkeypatch.setattr(registry, "_loaded", False)
    return registry


GOOD_METHOD = '''
from dataclasses import dataclass

from sidbench.methods.base import LossOutput, Method, NetworkSpec, Phase, Update


@dataclass(frozen=True)
class Settings:
    sigma_init: float = 2.5


def update(ctx):
    return LossOutput(ctx.draws.randn(1).reshape(-1))


def method(name):
    return Method(name=name, version="{version}", paper="{paper}", description="a plugin for the tests",
                  networks=(NetworkSpec("generator"),), settings=Settings,
                  updates=(Update("generator", "generator", update),),
                  phases=lambda s: (Phase("train", ("generator",)),))


METHOD = method("{name}")
'''


def good_method(name: str, version: str = "2.0.1", paper: str = "A Paper (Someone, 2099)") -> str:
    """Source of a module whose METHOD is a real, minimal `Method` called `name`."""
    return GOOD_METHOD.format(name=name, version=version, paper=paper)
