"""The run config: a recipe (YAML) plus `--set key=value` overrides, checked, typed and frozen.

A recipe names a suite and a method, gives the method's settings and the training
settings. Every key is checked at every level (an unknown one names the nearest valid
key), every value is typed and range-checked, and every default is filled in, so
`RunConfig.resolved()` is the whole run and `RunConfig.config_hash()` identifies it: the
hash is written beside every checkpoint and into every result record, and a run folder
refuses a checkpoint of another hash.

What the hash covers: suite (and version), method (and version), the method's settings
and every training setting. `name`, `hardware`, `expected` and the recipe's path are in
`resolved()` too but not hashed: they describe a run, they do not change its numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import numbers
import os
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sidbench.errors import ConfigError
from sidbench.jsonsafe import encode_nonfinite
from sidbench.registry import METHODS, suggest

PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("adam", "adamw")
TOP_KEYS = ("name", "suite", "method", "method_settings", "training", "hardware", "expected")
T2I_TRAINING_KEYS = ("prompts", "gradient_checkpointing")
UNHASHED = ("name", "hardware", "expected", "recipe")  # recorded, never change a number


# --------------------------------------------------------------------------- value checks ----

Check = Callable[[Any, str], Any]


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_float(value: Any) -> Any:
    """YAML 1.1 reads `1e-5` (no dot) as a string: accept a string that is a plain number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def real(low: float | None = None, *, low_ok: bool = True, high: float | None = None,
         high_ok: bool = True, optional: bool = False, example: str = "") -> Check:
    """A finite number in a range (None allowed when `optional`)."""
    def check(value: Any, key: str) -> float | None:
        if value is None and optional:
            return None
        value = _as_float(value)
        ok = _is_real(value) and math.isfinite(value)
        if ok and low is not None:
            ok = value >= low if low_ok else value > low
        if ok and high is not None:
            ok = value <= high if high_ok else value < high
        if not ok:
            need = "a finite number"
            if low is not None:
                need += f" {'>=' if low_ok else '>'} {low:g}"
            if high is not None:
                need += f"{' and' if low is not None else ''} {'<=' if high_ok else '<'} {high:g}"
            if optional:
                need += " (or null)"
            raise ConfigError(f"{key} must be {need}, got {value!r}", hint=example or f"e.g. {key}=1")
        return float(value)
    return check


def integer(low: int = 0, high: int | None = None, *, optional: bool = False, example: str = "") -> Check:
    def check(value: Any, key: str) -> int | None:
        if value is None and optional:
            return None
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        ok = ok or (_is_real(value) and float(value).is_integer() and math.isfinite(value))
        if ok:
            value = int(value)
            ok = value >= low and (high is None or value <= high)
        if not ok:
            bound = f" from {low} to {high}" if high is not None else f" >= {low}"
            raise ConfigError(f"{key} must be a whole number{bound}{' (or null)' if optional else ''}, "
                              f"got {value!r}", hint=example or f"e.g. {key}={max(low, 1)}")
        return value
    return check


def choice(options: Sequence[str]) -> Check:
    def check(value: Any, key: str) -> str:
        text = value.strip().lower() if isinstance(value, str) else value
        if text not in options:
            did = suggest(text, list(options)) if isinstance(text, str) else ""
            raise ConfigError(f"{key} must be one of {', '.join(options)}, got {value!r}.{did}".rstrip("."),
                              hint=f"e.g. {key}={options[0]}")
        return text
    return check


def tensorboard_mode(value: Any, key: str) -> str | bool:
    """auto (when installed), true or false."""
    words = {"auto": "auto", "true": True, "on": True, "yes": True, "false": False, "off": False, "no": False}
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ConfigError(f"{key} must be auto, true or false, got {value!r}", hint=f"e.g. {key}=auto")


def flag(value: Any, key: str) -> bool:
    """true or false (YAML booleans, or the words a --set gives)."""
    words = {"true": True, "on": True, "yes": True, "false": False, "off": False, "no": False}
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ConfigError(f"{key} must be true or false, got {value!r}", hint=f"e.g. {key}=true")


def path_or_name(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ConfigError(f"{key} must be a path or a name (or null), got {value!r}",
                          hint=f"e.g. {key}=/data/run/checkpoints")
    return str(value)


def betas(value: Any, key: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(f"{key} must be a pair [beta1, beta2], got {value!r}",
                          hint=f"e.g. {key}=[0.0,0.999]")
    check = real(0.0, high=1.0, high_ok=False, example=f"e.g. {key}=[0.0,0.999]")
    return (check(value[0], f"{key}[0]"), check(value[1], f"{key}[1]"))


def protocol_list(value: Any, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) and v.strip() for v in items):
        raise ConfigError(f"{key} must be a list of protocol names (or null), got {value!r}",
                          hint=f"e.g. {key}=[digits-fd]")
    from sidbench.metrics.protocols import get_protocol

    names = tuple(v.strip() for v in items)
    for name in names:
        try:
            get_protocol(name)
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc.message}", hint=exc.hint) from None
    return names


def architecture(value: Any, key: str) -> dict | None:
    """A network config {class_name, init_kwargs}: the architecture of "scratch" networks."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"class_name", "init_kwargs"} \
            or not isinstance(value["class_name"], str) or not isinstance(value["init_kwargs"], Mapping):
        raise ConfigError(f"{key} must be a network config {{class_name, init_kwargs}} (or null)",
                          hint="e.g. the class_name and init_kwargs of a network.json")
    return json.loads(json.dumps(encode_nonfinite(dict(value))))


def free_mapping(value: Any, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping, got {type(value).__name__}",
                          hint="see recipes/README.md")
    return dict(value)


def free_list(value: Any, key: str) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{key} must be a list, got {type(value).__name__}", hint="see recipes/README.md")
    return tuple(value)


def _check(fn: Check, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field whose recipe value goes through `fn` (kept in the field's metadata)."""
    if default is dataclasses.MISSING and "default_factory" not in kw:
        return field(metadata={"check": fn})
    if default is dataclasses.MISSING:
        return field(metadata={"check": fn}, **kw)
    return field(default=default, metadata={"check": fn})


# --------------------------------------------------------------------------------- schema ----

@dataclass(frozen=True)
class NetworkTraining:
    """Training settings of one network of the method: optimiser, clipping, dropout, EMA, warm-up."""

    optimizer: str = _check(choice(OPTIMIZERS), "adam")
    lr: float = _check(real(0.0, low_ok=False, example="e.g. lr=1e-5"), 1e-5)
    betas: tuple[float, float] = _check(betas, (0.9, 0.999))
    eps: float = _check(real(0.0, low_ok=False, example="e.g. eps=1e-8"), 1e-8)
    weight_decay: float = _check(real(0.0), 0.0)
    grad_clip_value: float | None = _check(real(0.0, low_ok=False, optional=True), None)
    grad_clip_norm: float | None = _check(real(0.0, low_ok=False, optional=True), None)
    dropout: float | None = _check(real(0.0, high=1.0, high_ok=False, optional=True), None)
    ema_halflife_kimg: float = _check(real(0.0, low_ok=False, example="e.g. ema_halflife_kimg=500"), 500.0)
    ema_rampup: float | None = _check(real(0.0, optional=True), 0.05)
    warmup_kimg: float = _check(real(0.0), 0.0)


@dataclass(frozen=True)
class EvalConfig:
    """Periodic evaluation: the suite's protocols by default, on seeds 0..num_images-1."""

    protocols: tuple[str, ...] | None = _check(protocol_list, None)
    num_images: int | None = _check(integer(1, optional=True), None)
    batch_size: int = _check(integer(1), 250)


@dataclass(frozen=True)
class TrainingConfig:
    duration_kimg: float = _check(real(0.0, low_ok=False, example="e.g. training.duration_kimg=500"))
    seed: int = _check(integer(0, 2**63 - 1), 0)
    batch: int = _check(integer(1), 256)
    batch_per_gpu: int | None = _check(integer(1, optional=True), None)
    precision: str = _check(choice(PRECISIONS), "fp32")
    teacher: str | None = _check(path_or_name, None)
    dataset: str | None = _check(path_or_name, None)
    init_generator: str | None = _check(path_or_name, None)
    # The architecture of "scratch" networks when there is no teacher to copy it from (teacher
    # training); default: the teacher's network.json.
    architecture: dict | None = _check(architecture, None)
    networks: dict[str, NetworkTraining] = field(default_factory=dict)
    nan_guard: int = _check(integer(1), 10)
    checkpoint_kimg: float | None = _check(real(0.0, low_ok=False, optional=True), 100.0)
    keep_checkpoints: int | None = _check(integer(1, optional=True), None)
    eval_kimg: float | None = _check(real(0.0, low_ok=False, optional=True), None)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log_every_kimg: float = _check(real(0.0, low_ok=False), 1.0)
    tensorboard: str | bool = _check(tensorboard_mode, "auto")
    # Text-to-image runs: the training caption list (.txt, .json list or COCO annotation file; default
    # the suite's own list) and the diffusers UNets' gradient checkpointing (memory for compute).
    prompts: str | None = _check(path_or_name, None)
    gradient_checkpointing: bool = _check(flag, False)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run: ceil(duration / batch)."""
        return max(1, math.ceil(round(self.duration_kimg * 1000, 6) / self.batch))

    def micro_batch(self, world: int) -> int:
        """Samples per process per accumulation round."""
        return self.batch_per_gpu if self.batch_per_gpu is not None else self.batch // world

    def rounds(self, world: int) -> int:
        """Accumulation rounds per step: batch / (batch_per_gpu * world), which must divide."""
        b = self.micro_batch(world)
        if b < 1 or self.batch % (b * world):
            per = f"batch_per_gpu {b} x " if self.batch_per_gpu is not None else ""
            raise ConfigError(f"training.batch {self.batch} is not a multiple of {per}{world} process(es)",
                              hint="choose batch = batch_per_gpu x processes x accumulation rounds")
        return self.batch // (b * world)


@dataclass(frozen=True)
class RunConfig:
    """A whole run: what `sidbench distill RECIPE` trains. Build it with `load_recipe`."""

    name: str
    suite: str
    method: str
    method_settings: Any  # the method's Settings dataclass instance
    training: TrainingConfig
    hardware: dict = field(default_factory=dict)
    expected: tuple = ()
    recipe: str | None = None  # the file it was read from

    def get_method(self) -> Any:
        """The registered `sidbench.methods.base.Method`."""
        return METHODS.get(self.method)

    def get_suite(self) -> Any:
        from sidbench.suites.base import get_suite

        return get_suite(self.suite)

    def network(self, name: str) -> NetworkTraining:
        return self.training.networks[name]

    def resolved(self) -> dict[str, Any]:
        """Every setting with its default filled in, JSON-safe (inf/nan as strings)."""
        method = self.get_method()
        training = {f.name: getattr(self.training, f.name) for f in dataclasses.fields(TrainingConfig)}
        training["networks"] = {n: _fields(t) for n, t in self.training.networks.items()}
        training["eval"] = _fields(self.training.eval)
        for key in T2I_TRAINING_KEYS:  # added with text-to-image: left out at their defaults, so the
            if training[key] in (None, False):  # hashes of earlier runs stay what they were
                del training[key]
        out = {
            "name": self.name,
            "suite": self.suite,
            "suite_version": self.get_suite().version,
            "method": self.method,
            "method_version": method.version,
            "method_settings": _fields(self.method_settings),
            "training": training,
            "hardware": self.hardware,
            "expected": list(self.expected),
            "recipe": self.recipe,
        }
        return json.loads(json.dumps(encode_nonfinite(out), default=_jsonable, allow_nan=False))

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of `resolved()` without the unhashed, descriptive keys."""
        body = {k: v for k, v in self.resolved().items() if k not in UNHASHED}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise ConfigError(f"setting value {value!r} ({type(value).__name__}) cannot be recorded as JSON",
                      hint="settings must be numbers, strings, booleans, lists or mappings")


# ------------------------------------------------------------------------------- building ----

def _unknown(keys: Sequence[str], valid: Sequence[str], where: str) -> None:
    """Refuse the first key not in `valid`, naming the nearest valid one with its full dotted path."""
    prefix = f"{where}." if where else ""
    for key in keys:
        if key not in valid:
            near = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.5)
            did = f" Did you mean '{prefix}{near[0]}'?" if near else ""
            raise ConfigError(f"unknown key '{prefix}{key}'.{did}".rstrip("."),
                              hint=f"valid keys{' of ' + where if where else ''}: {', '.join(valid)}")


def _build(cls: type, values: Any, where: str, skip: Sequence[str] = ()) -> Any:
    """`cls(**values)` with each value through its field's check; unknown keys refused."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {type(values).__name__}",
                          hint=f"e.g. {where}: {{...}}")
    fields = [f for f in dataclasses.fields(cls) if f.name not in skip]
    _unknown([str(k) for k in values if k not in skip], [f.name for f in dataclasses.fields(cls)], where)
    kwargs = {}
    for f in fields:
        if f.name in values:
            kwargs[f.name] = f.metadata["check"](values[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"the recipe lacks {where}.{f.name}", hint=f"add {where}.{f.name}")
    return cls(**kwargs)


def _float_fields(settings_cls: type) -> set[str]:
    """Fields of a method's Settings typed float (so a YAML `1` is recorded and hashed as 1.0)."""
    try:
        hints = typing.get_type_hints(settings_cls)
    except Exception:
        hints = {}
    out = set()
    for f in dataclasses.fields(settings_cls):
        hint = hints.get(f.name, f.type)
        args = typing.get_args(hint) or (hint,)
        if float in args or hint == "float" or (isinstance(f.default, float) and not hints):
            out.add(f.name)
    return out


def _method_settings(method: Any, values: Any) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"method_settings must be a mapping, got {type(values).__name__}",
                          hint="e.g. method_settings: {alpha: 1.2}")
    values = {str(k): v for k, v in values.items()}
    for name in _float_fields(method.settings) & set(values):
        v = _as_float(values[name])
        if _is_real(v):
            values[name] = float(v)
    try:
        return method.make_settings(values)
    except ConfigError as exc:
        raise ConfigError(f"method_settings: {exc.message}", hint=exc.hint) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method_settings of {method.name}: {exc}", hint="check the values") from None


def _networks(method: Any, values: Any) -> dict[str, NetworkTraining]:
    names = [spec.name for spec in method.networks]
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"training.networks must map network names to settings, not a "
                          f"{type(values).__name__}",
                          hint=f"networks of {method.name}: {', '.join(names)}")
    for key in values:
        if key not in names:
            raise ConfigError(f"training.networks: method {method.name} has no network '{key}'."
                              f"{suggest(str(key), names)}", hint=f"its networks: {', '.join(names)}")
    return {n: _build(NetworkTraining, values.get(n), f"training.networks.{n}") for n in names}


def build_config(raw: Mapping[str, Any], recipe: str | None = None) -> RunConfig:
    """A RunConfig from a recipe mapping (overrides already applied)."""
    from sidbench.suites.base import get_suite

    if not isinstance(raw, Mapping):
        raise ConfigError(f"a recipe is a mapping of keys, got {type(raw).__name__}",
                          hint="see recipes/README.md for the schema")
    _unknown([str(k) for k in raw], TOP_KEYS, "")
    for key in ("suite", "method"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ConfigError(f"the recipe lacks '{key}' (a registered {key} name)",
                              hint=f"e.g. {key}: {'digits' if key == 'suite' else 'sid'}")
    suite = get_suite(raw["suite"]).name
    method = METHODS.get(raw["method"])
    name = raw.get("name") or f"{method.name}-{suite}"
    if not isinstance(name, str):
        raise ConfigError(f"name must be a string, got {name!r}", hint="e.g. name: sid-digits")
    training_raw = raw.get("training")
    if training_raw is not None and not isinstance(training_raw, Mapping):
        raise ConfigError("training must be a mapping of settings",
                          hint="e.g. training: {duration_kimg: 500}")
    training_raw = dict(training_raw or {})
    training = _build(TrainingConfig, training_raw, "training", skip=("networks", "eval"))
    training = dataclasses.replace(
        training, networks=_networks(method, training_raw.get("networks")),
        eval=_build(EvalConfig, training_raw.get("eval"), "training.eval"))
    _check_against_method(method, training)
    return RunConfig(name=name, suite=suite, method=method.name,
                     method_settings=_method_settings(method, raw.get("method_settings")),
                     training=training, hardware=free_mapping(raw.get("hardware"), "hardware"),
                     expected=free_list(raw.get("expected"), "expected"), recipe=recipe)


def _check_against_method(method: Any, training: TrainingConfig) -> None:
    names = {spec.name for spec in method.networks}
    if training.init_generator is not None and method.product not in names:
        raise ConfigError(f"training.init_generator is set, but method {method.name} has no network "
                          f"'{method.product}' to start from it", hint="drop training.init_generator")


# ------------------------------------------------------------------------------ overrides ----

class _Loader(yaml.SafeLoader):
    """YAML 1.1 plus 1.2's floats: `1e-5` is a number, not a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_value(text: str) -> Any:
    """An override's value as a YAML scalar or flow collection (`64`, `1e-5`, `null`, `[0.0, 0.999]`)."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read value {text!r}: {str(exc).splitlines()[0]}",
                          hint="values are YAML scalars, e.g. 64, 1.0e-5, null, [0.0, 0.999]") from None


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A deep copy of `raw` with each `dotted.key=value` set; `method.X` is `method_settings.X`."""
    out = copy.deepcopy(dict(raw)) if raw else {}
    if isinstance(overrides, str):
        overrides = [overrides]
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value", hint="e.g. --set training.batch=64")
        key, text = item.split("=", 1)
        parts = [p.strip() for p in key.strip().split(".")]
        if not all(parts):
            raise ConfigError(f"override key {key!r} is empty or has an empty part",
                              hint="e.g. --set training.networks.generator.lr=1e-5")
        if parts[0] == "method" and len(parts) > 1:
            parts[0] = "method_settings"
        _unknown([parts[0]], TOP_KEYS, "")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {'.'.join(parts[:i + 1])} is a value, not a mapping",
                                  hint=f"set {'.'.join(parts[:i + 1])}=VALUE")
            node = child
        node[parts[-1]] = parse_value(text)
    return out


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping a recipe file holds."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"recipe {p} not found", hint="give a recipes/*.yaml file")
    try:
        raw = yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p} is not valid YAML: {' '.join(str(exc).split())[:200]}",
                          hint="fix the recipe file") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{p} does not hold a mapping of recipe keys", hint="see recipes/README.md")
    return dict(raw)


def load_recipe(path_or_mapping: str | os.PathLike | Mapping[str, Any],
                overrides: Sequence[str] = ()) -> RunConfig:
    """The RunConfig of a recipe file (or mapping) with `key=value` overrides applied."""
    if isinstance(path_or_mapping, Mapping):
        raw, recipe = dict(path_or_mapping), None
    else:
        raw, recipe = read_recipe(path_or_mapping), str(path_or_mapping)
    return build_config(apply_overrides(raw, overrides), recipe=recipe)
