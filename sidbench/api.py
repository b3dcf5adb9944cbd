"""The Python API: one function per CLI verb, with the CLI options' names and defaults.

`sidbench generate --num-steps 18` is `sidbench.generate(num_steps=18)`. Each function
checks its arguments before any work starts (numbers finite and in range, the device
present, the output writable, named assets found, the suite's facts matched) and raises
a one-line `SidbenchError` otherwise; then it calls the library and returns what it made.
The commands only parse options, call these and print. Heavy modules (torch) are imported
inside the functions, so `import sidbench` stays cheap.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidbench.errors import ConfigError
from sidbench.fileio import check_output_path

if TYPE_CHECKING:
    from sidbench.train.run import RunResult
    from sidbench.workflows.validate import ValidationResult

__all__ = ["convert", "distill", "env", "evaluate", "generate", "leaderboard_add", "leaderboard_show", "ls",
           "pairs", "quickstart", "refstats", "report", "train_teacher", "validate"]

PathLike = str | os.PathLike
LS_KINDS = ("methods", "suites", "metrics")
ROLES = ("generator", "teacher", "network")
SAMPLERS = ("heun", "onestep")
TRAINABLE_SUITES = ("digits", "toy2d", "digits-t2i")  # suites whose teacher `train_teacher` can train
_EDM_HEUN = {"sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}


# --- argument checks shared by the verbs ------------------------------------------------------

def _opt(name: str) -> str:
    """The CLI spelling of a parameter, used in messages (`num_steps` -> `--num-steps`)."""
    return "--" + name.replace("_", "-")


def _check_int(name: str, value: Any, low: int, hint: str | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{_opt(name)} must be a whole number (got {value!r})", hint=hint)
    if value < low:
        raise ConfigError(f"{_opt(name)} {value} must be at least {low}", hint=hint)


def _check_positive(name: str, value: Any, hint: str | None = None) -> None:
    """None, or a finite number > 0 (learning rates, kimg, noise levels)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{_opt(name)} must be a number (got {value!r})", hint=hint)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{_opt(name)} {value} must be a finite number greater than 0", hint=hint)


def _check_choice(name: str, value: Any, choices: Sequence[str], label: str | None = None) -> None:
    from sidbench.registry import suggest

    if value is not None and value not in choices:
        hint = suggest(str(value), list(choices))
        raise ConfigError(f"{label or _opt(name)}: invalid choice '{value}'.{hint} "
                          f"Choose from: {', '.join(choices)}.")


def _device(device: Any):
    from sidbench.devices import parse_device

    return parse_device(device)


def _suite(name: str | None):
    if name is None:
        return None
    from sidbench.suites import get_suite

    return get_suite(name)


def _protocol_names(protocol: str | Sequence[str] | None) -> list[str]:
    """--protocol is repeatable and comma-separated: ['a,b', 'c'] -> ['a', 'b', 'c']."""
    if protocol is None:
        return []
    items = [protocol] if isinstance(protocol, str) else list(protocol)
    return [p.strip() for item in items for p in str(item).split(",") if p.strip()]


def _network_record(network: PathLike, suite: Any, what: str) -> tuple[Path, dict]:
    """Resolve a network folder or a named asset ('digits'), read its record, check it fits the suite."""
    from sidbench.nets.native import read_network_record
    from sidbench.suites.resolve import check_teacher, resolve_network

    path = resolve_network(network)
    record = read_network_record(path)
    if suite is not None:
        check_teacher(suite, record, where=f"{what} {path}")
    return path, record


def _write_json(path: PathLike, obj: Any, option: str) -> None:
    from sidbench.fileio import atomic_write_text, output_error
    from sidbench.jsonsafe import dumps

    try:
        atomic_write_text(path, dumps(obj) + "\n")
    except OSError as exc:
        raise output_error(exc, path, option) from exc


# --- verbs -------------------------------------------------------------------------------------

def ls(kind: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Registered methods, suites and metrics (or one `kind` of them), one row each.

    A row: name, version, paper (methods; '' otherwise), source (the providing distribution),
    distribution ('name version' of it), about (the first line of the description) and broken
    (None, or why the plugin cannot be used: an import error, a duplicate name, a wrong object).
    """
    from sidbench.registry import METHODS, METRICS, SUITES

    _check_choice("kind", kind, LS_KINDS, label="kind")
    registries = {"methods": METHODS, "suites": SUITES, "metrics": METRICS}
    out: dict[str, list[dict[str, Any]]] = {}
    for name, registry in registries.items():
        if kind not in (None, name):
            continue
        rows = []
        for item, obj in registry.items():
            row = {"name": item, "version": "-", "paper": "", "source": registry.source(item),
                   "distribution": registry.distribution(item), "about": "", "broken": None}
            try:  # a plugin object whose attributes raise is listed broken, not a traceback of `ls`
                about = (getattr(obj, "description", "") or "").splitlines()
                row.update(version=str(getattr(obj, "version", "?")), about=about[0] if about else "",
                           paper=str(getattr(obj, "paper", "") or ""))
            except Exception as exc:
                row["broken"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
        for item, broken in sorted(registry.broken.items()):
            rows.append({"name": item, "version": "-", "paper": "", "source": broken.source,
                         "distribution": f"{broken.source} {broken.version}".strip(), "about": "",
                         "broken": broken.error})
        out[name] = rows
    return out


def env(json: bool = False) -> dict[str, Any] | str:
    """Versions, devices and which asset files were found; `json=True` gives it as JSON text."""
    from sidbench.assets import asset_report
    from sidbench.environment import environment
    from sidbench.jsonsafe import dumps

    report = {"environment": environment(), "assets": asset_report()}
    return dumps(report, sort_keys=False) if json else report


def convert(path: PathLike, *, out: PathLike, trust_pickle: bool = False, key: str = "ema",
            config: PathLike | None = None, preset: str | None = None, role: str | None = None,
            sigma_init: float | None = None, suite: str | None = None) -> dict[str, Any]:
    """Convert an EDM-format pickle or a plain state dict into a native folder `out`.

    Pickles need `trust_pickle=True`; a state dict needs `config` or `preset`. `role`
    ("generator" for one-step generators, with their `sigma_init`) is recorded so `generate`
    and `evaluate` pick the sampler and noise level. With `suite`, the network must match
    the suite's teacher, else nothing is written. Returns the record and parameter counts.
    """
    from sidbench.fileio import staged_dir
    from sidbench.nets.native import JSON_NAME, load_network, read_network_record

    out = check_output_path(out, kind="dir", option="--out")
    src = Path(path)
    if not src.is_file():
        raise ConfigError(f"{src} is not a file",
                          hint="give the .pkl, .pt, .pth, .bin or .safetensors to convert")
    _check_choice("role", role, ROLES)
    _check_positive("sigma_init", sigma_init, hint="SiD's generators use 2.5")
    if sigma_init is not None and role != "generator":
        raise ConfigError("--sigma-init is the noise level of a one-step generator",
                          hint="add --role generator")
    s = _suite(suite)
    with staged_dir(out, last=(JSON_NAME,)) as stage:
        if src.suffix.lower() in (".pt", ".pth", ".bin", ".safetensors"):
            from sidbench.nets.state_dict import convert_state_dict

            if trust_pickle:
                raise ConfigError(f"--trust-pickle is for EDM persistence pickles; {src.name} is read as a "
                                  "state dict (tensors only)", hint="drop --trust-pickle")
            json_path = convert_state_dict(src, stage, config=config, preset=preset, role=role,
                                           sigma_init=sigma_init)
        else:
            from sidbench.nets.persistence import convert_pickle

            if config is not None:
                raise ConfigError("--config is for state dicts; a pickle holds its own architecture",
                                  hint="drop --config (--preset checks the architecture)")
            json_path = convert_pickle(src, stage, trust_pickle=trust_pickle, key=key, preset=preset,
                                       role=role, sigma_init=sigma_init)
        record = read_network_record(json_path)
        if s is not None:
            from sidbench.suites.resolve import check_teacher

            check_teacher(s, record, where=f"the network in {src.name}")
        net = load_network(json_path)  # reads back what was written: sha256, strict load
    return {"network_json": str(out / JSON_NAME), "record": record,
            "parameters": sum(p.numel() for p in net.parameters()),
            "buffers": sum(b.numel() for b in net.buffers()), "notes": list(record.get("notes") or [])}


def generate(*, out: PathLike, network: PathLike | None = None, suite: str | None = None,
             seeds: str | Sequence[int] | None = None, num_images: int | None = None, batch_size: int = 64,
             sampler: str | None = None, num_steps: int | None = None, class_idx: int | None = None,
             sigma_init: float | None = None, sigma_min: float | None = None, sigma_max: float | None = None,
             rho: float | None = None, s_churn: float = 0.0, s_min: float = 0.0, s_max: float = math.inf,
             s_noise: float = 1.0, device: str = "cpu", progress: bool = True,
             student_steps: int | None = None, teacher: PathLike | None = None,
             captions: PathLike | None = None, guidance: float | None = None):
    """Write one PNG per seed into `out` (a folder, or a path ending in .zip); resumable.

    network: a native folder, its network.json, or a named asset ("digits"); default: the
    suite's teacher. sampler: "heun" for teachers, "onestep" when network.json says role
    "generator" (sigma_init then defaults to the recorded one, else 2.5). num_steps: the
    suite's Heun steps, else EDM's 18 up to 32x32 and 40 above; sigma_min/sigma_max/rho: the
    suite's, else EDM's 0.002/80/7. student_steps: sample a multi-step student (ADD-style) at N of
    the noise levels its network.json records (`student_sigmas`); 1 is the one-step sampler.

    Text-to-image (image s from caption s): a SiD-LSG generator (role "t2i-generator") takes one
    step at its recorded t_init, decoded by `teacher` (default: the one its network.json records,
    else the suite's); a teacher (an EpsDenoiser folder, or a diffusers folder given as `network`)
    is sampled with DDIM (no `sampler`), `num_steps` and classifier-free `guidance` defaulting to the
    suite's teacher_sampler (else 50 and 7.5). `captions`: a captions file, one per line (default:
    the suite's evaluation captions; the suite is --suite, else the one network.json records).
    With no `network`, `teacher` is the network to sample (the old spelling of --network).
    Returns a `GenerateSummary`.
    """
    from sidbench.nets.native import DEFAULT_SIGMA_INIT
    from sidbench.nets.sampler import check_sampler_settings
    from sidbench.nets.seeds import check_class_idx, resolve_seeds

    out = check_output_path(out, kind="dir_or_zip", option="--out")
    _check_int("num_images", num_images, 1, hint="e.g. --num-images 50000")
    seed_list = resolve_seeds(seeds, num_images)
    _check_int("batch_size", batch_size, 1, hint="e.g. --batch-size 64")
    _check_int("num_steps", num_steps, 1, hint="e.g. --num-steps 18")
    _check_int("class_idx", class_idx, 0, hint="a class index of a conditional network, e.g. 3")
    _check_choice("sampler", sampler, SAMPLERS)
    if guidance is not None:
        from sidbench.generation.t2i import check_guidance

        check_guidance(guidance)
    dev = _device(device)
    s = _suite(suite)
    if network is None and teacher is not None:
        network, teacher = teacher, None  # `--teacher DIR` alone: the old spelling of --network
    target = _t2i_network(network, s)
    if target is not None:
        edm_only = {"class_idx": class_idx, "sigma_init": sigma_init, "sigma_min": sigma_min,
                    "sigma_max": sigma_max, "rho": rho, "student_steps": student_steps,
                    "s_churn": s_churn or None, "s_min": s_min or None,
                    "s_noise": None if s_noise == 1 else s_noise,
                    "s_max": None if s_max == math.inf else s_max}
        _refuse_edm_options(edm_only, target[0])
        plan, info = _t2i_plan(*target, s, teacher, captions, seed_list, sampler, num_steps, guidance, dev)
        from sidbench.generation.t2i import generate_t2i

        return generate_t2i(plan, out, seed_list, batch_size=batch_size, device=dev, network_info=info,
                            progress=progress)
    _refuse_t2i_options(network, s, teacher=teacher, captions=captions, guidance=guidance)
    no_network = ConfigError("no network given", hint="give --network DIR (or a suite name such as digits) "
                                                      "or --suite NAME for the suite's teacher")
    path, record = _network_or_teacher(network, s, no_network)
    check_class_idx(class_idx, int(record["init_kwargs"].get("label_dim") or 0))
    role = record.get("role")
    if sampler is None:
        sampler = "onestep" if role == "generator" else "heun"
    levels = _student_levels(path, record, student_steps, sampler, sigma_init)
    if sigma_init is None:
        sigma_init = float(record.get("sigma_init") or DEFAULT_SIGMA_INIT)
    num_steps, heun = _heun_defaults(s, record, num_steps, sigma_min, sigma_max, rho)
    settings = check_sampler_settings(num_steps=num_steps, S_churn=s_churn, S_min=s_min, S_max=s_max,
                                      S_noise=s_noise, sigma_init=sigma_init, sampler=sampler, **heun)

    from sidbench.generation import generate as generate_images
    from sidbench.nets.native import load_network

    net = load_network(path, device=dev)
    info = {"weights_sha256": record.get("weights_sha256"), "class_name": record.get("class_name"),
            "init_kwargs": record.get("init_kwargs"), "role": role}
    return generate_images(net, out, seed_list, batch_size=batch_size, sampler=sampler, class_idx=class_idx,
                           device=dev, network_info=info, progress=progress, student_sigmas=levels,
                           **settings)


def _network_or_teacher(network: PathLike | None, s: Any, missing: ConfigError) -> tuple[Path, dict]:
    """(path, network record) of `network`, or of suite `s`'s teacher when none is given (`missing`
    is raised when there is neither)."""
    if network is None:
        if s is None:
            raise missing
        from sidbench.suites.resolve import resolve_suite

        network = resolve_suite(s.name, need=("teacher",), check=False).teacher
    return _network_record(network, s, "network")


def _heun_defaults(s: Any, record: dict, num_steps: int | None, sigma_min: float | None,
                   sigma_max: float | None, rho: float | None) -> tuple[int, dict[str, float]]:
    """(num_steps, sigma_min/sigma_max/rho): the given values, else suite `s`'s teacher's, else EDM's
    (18 steps up to 32x32, 40 above)."""
    from sidbench.nets.sampler import default_steps

    heun = {k: getattr(s.teacher, k) if s is not None else v for k, v in _EDM_HEUN.items()}
    heun.update({k: v for k, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max), ("rho", rho))
                 if v is not None})
    if num_steps is None:
        resolution = int(record["init_kwargs"].get("img_resolution", 32))
        num_steps = s.teacher.heun_steps if s is not None else default_steps(resolution)
    return num_steps, heun


def _student_levels(path: Path, record: dict, steps: int | None, sampler: str, sigma_init: float | None
                    ) -> tuple[float, ...] | None:
    """The noise levels `steps` student steps sample at (None: the plain one-step sampler)."""
    _check_int("student_steps", steps, 1, hint="e.g. --student-steps 4")
    if steps is None or steps == 1:
        return None
    if sampler != "onestep":
        raise ConfigError("--student-steps samples a one-step student, not the heun sampler",
                          hint="drop --sampler heun, or --student-steps")
    if sigma_init is not None:
        raise ConfigError("--sigma-init and --student-steps N > 1 both set the noise levels",
                          hint="drop --sigma-init: the levels are network.json's student_sigmas")
    levels = record.get("student_sigmas")
    if not levels:
        raise ConfigError(f"{path} records no student_sigmas: it is a one-step generator",
                          hint="drop --student-steps (or use 1): only multi-step students (ADD) record "
                               "their levels")
    from sidbench.generation.multistep import pick_levels

    return pick_levels(levels, steps)


# --- text-to-image networks (generate, eval --generator) ----------------------------------------

_SD_DDIM = {"num_steps": 50, "guidance": 7.5}  # diffusers' StableDiffusionPipeline defaults


def _t2i_network(network: PathLike | None, s: Any) -> tuple[Path, dict | None] | None:
    """(path, network record, None for a diffusers folder) when `network` (default: a text-to-image
    suite's teacher) is a text-to-image network; None for any other network."""
    from sidbench.nets.native import read_network_record
    from sidbench.nets.t2i import is_diffusers_folder
    from sidbench.suites.resolve import resolve_network, resolve_suite

    if network is None:
        if s is None or not s.settings.get("text_to_image"):
            return None
        if s.teacher.preconditioner is None:
            raise ConfigError(f"suite {s.name}'s teacher ({s.settings.get('teacher', 'external')}) is a "
                              f"{s.settings.get('teacher_format', 'non-native')} folder given by path",
                              hint="pass it with --network DIR, or a SiD-LSG generator with --network")
        network = resolve_suite(s, need=("teacher",), check=False).teacher
    if _is_path(network) and is_diffusers_folder(Path(network).expanduser()):
        return Path(network).expanduser(), None
    path = resolve_network(network)
    record = read_network_record(path)
    if record["class_name"] != "EpsDenoiser" and record.get("role") != "t2i-generator":
        return None
    return path, record


def _refuse_edm_options(given: dict[str, Any], path: Path) -> None:
    """EDM sampler options mean nothing to a text-to-image network: refuse them by name."""
    if used := [_opt(k) for k, v in given.items() if v is not None]:
        raise ConfigError(f"{', '.join(used)}: EDM sampler option(s), but {path} is a text-to-image network",
                          hint="drop them; text-to-image networks take --captions, --num-steps, --guidance")


def _refuse_t2i_options(network: Any, s: Any, **given: Any) -> None:
    """Text-to-image options with a network that is not text-to-image: one line naming them."""
    if used := [_opt(k) for k, v in given.items() if v is not None]:
        what = network if network is not None else f"suite {s.name}'s teacher" if s is not None else "it"
        raise ConfigError(f"{', '.join(used)} condition text-to-image networks; {what} is not one",
                          hint="give a SiD-LSG generator, an EpsDenoiser teacher or a diffusers folder, "
                               "or drop them")


def _recorded_suite(record: dict | None) -> Any:
    """The suite a network.json's source names (teacher training and distillation record it), if known."""
    from sidbench.registry import SUITES

    name = ((record or {}).get("source") or {}).get("suite")
    return _suite(name) if isinstance(name, str) and SUITES.known(name) else None


def _t2i_captions(captions: PathLike | None, defaults: Any, count: int, required: bool = True
                  ) -> tuple[Any, dict[str, Any]]:
    """(caption list covering `count` seeds, what identifies it): the file given, else the suite's
    evaluation captions (digits-t2i: the built-in list; COCO: captions.txt in $SIDBENCH_CACHE)."""
    from sidbench.assets import ASSETS, cache_dir
    from sidbench.data.captions import builtin_prompts
    from sidbench.data.coco import read_captions

    settings = defaults.settings if defaults is not None else {}
    coco = settings.get("captions_asset") == "coco-captions"
    if captions is not None:
        caps = read_captions(captions, expect_pinned=coco)  # warns when not the pinned COCO list
        return caps, caps.describe()
    source = settings.get("eval_captions") or settings.get("captions_asset")
    if isinstance(source, str) and source.startswith("builtin:"):
        name, canonical = source.removeprefix("builtin:"), int(settings.get("num_eval_images") or 1)
        caps = builtin_prompts(name, max(canonical, count))
        # the list is a formula: identify it by its protocol-length prefix, so outputs extend past it
        return caps, {"path": source, "sha256": builtin_prompts(name, canonical).sha256, "count": canonical}
    if isinstance(source, str) and source in ASSETS and (cache_dir() / ASSETS[source].filename).is_file():
        caps = read_captions(cache_dir() / ASSETS[source].filename)
        return caps, caps.describe()
    if not required:
        return None, {}
    if isinstance(source, str) and source in ASSETS:
        asset = ASSETS[source]
        raise ConfigError(f"--captions is needed: suite {defaults.name} renders caption s of "
                          f"{asset.filename} with seed s, and it is not in $SIDBENCH_CACHE={cache_dir()}",
                          hint=f"pass --captions {asset.filename} ({asset.url}), or put it in {cache_dir()}")
    raise ConfigError("--captions is needed: no suite names this network's evaluation captions",
                      hint="pass --captions FILE (one caption per line; caption s is rendered with seed s) "
                           "or --suite NAME")


def _t2i_teacher_path(teacher: PathLike | None, source: dict, defaults: Any, generator: Path) -> Path:
    """A SiD-LSG generator's teacher: `teacher`, else the path its network.json records, else the suite's."""
    from sidbench.errors import AssetError
    from sidbench.nets.t2i import is_diffusers_folder
    from sidbench.suites.resolve import resolve_network, resolve_suite

    if teacher is None and source.get("teacher_path"):
        recorded = Path(str(source["teacher_path"])).expanduser()
        if not recorded.exists():
            raise AssetError(f"the teacher {generator} was distilled from ({recorded}) is not there",
                             hint="pass its teacher with --teacher DIR")
        return recorded
    if teacher is None:
        if defaults is None:
            raise ConfigError(f"{generator} records no teacher, and no suite is given",
                              hint="pass --teacher DIR (the teacher it was distilled from) or --suite NAME")
        if defaults.teacher.preconditioner is None:
            raise ConfigError(f"{generator} records no teacher, and suite {defaults.name}'s is given by path",
                              hint="pass --teacher DIR (the teacher it was distilled from)")
        return resolve_suite(defaults, need=("teacher",), check=False).teacher
    if _is_path(teacher) and is_diffusers_folder(Path(teacher).expanduser()):
        return Path(teacher).expanduser()
    return resolve_network(teacher)


def _check_t2i_suite(s: Any, what: str, latent_shape: Sequence[int], record: dict | None) -> None:
    """Under --suite: a text-to-image suite, whose latent shape (and native teacher) the network has."""
    from sidbench.errors import AssetError

    if s is None:
        return
    if not s.settings.get("text_to_image"):
        raise ConfigError(f"{what} is a text-to-image network, suite {s.name} is not text-to-image",
                          hint="drop --suite, or give a text-to-image suite (e.g. digits-t2i)")
    want = s.settings.get("latent_shape")
    if want is not None and list(latent_shape) != list(want):
        raise AssetError(f"{what} works on {list(latent_shape)} latents, suite {s.name}'s teacher on "
                         f"{list(want)}",
                         hint=f"use suite {s.name}'s teacher and generators, or drop --suite")
    if record is not None and record.get("role") != "t2i-generator" and s.teacher.preconditioner is not None:
        from sidbench.suites.resolve import check_teacher

        check_teacher(s, record, where=what)


def _t2i_plan(path: Path, record: dict | None, s: Any, teacher: PathLike | None, captions: PathLike | None,
              seed_list: Sequence[int], sampler: str | None, num_steps: int | None, guidance: float | None,
              dev: Any) -> tuple[Any, dict[str, Any]]:
    """Check and load what renders a text-to-image network: (T2IPlan, network info for records)."""
    from sidbench.errors import AssetError
    from sidbench.generation.t2i import T2IPlan, check_captions_cover
    from sidbench.nets.native import load_network, read_network_record
    from sidbench.nets.t2i import load_t2i_teacher

    role = (record or {}).get("role")
    source = dict((record or {}).get("source") or {})
    defaults = s if s is not None else _recorded_suite(record)
    generator = role == "t2i-generator"
    if generator:
        if sampler not in (None, "onestep"):
            raise ConfigError(f"{path} is a one-step SiD-LSG generator, not sampled with --sampler {sampler}",
                              hint="drop --sampler (it takes one unguided step at its t_init)")
        if num_steps is not None or guidance is not None:
            raise ConfigError("--num-steps and --guidance sample a text-to-image teacher; a SiD-LSG "
                              "generator takes one unguided step at its recorded t_init", hint="drop them")
        if source.get("t_init") is None:
            raise AssetError(f"{path}: network.json's source records no t_init",
                             hint="a SiD-LSG generator written by `sidbench distill` records it")
        teacher_path = _t2i_teacher_path(teacher, source, defaults, path)
        kwargs = record["init_kwargs"]
        c, r = int(kwargs["img_channels"]), int(kwargs["img_resolution"])
        _check_t2i_suite(s, f"generator {path}", (c, r, r), record)
    else:
        if teacher is not None:
            raise ConfigError(f"--teacher names a SiD-LSG generator's teacher; {path} is itself a teacher",
                              hint="drop --teacher (or give the generator with --network)")
        if sampler is not None:
            raise ConfigError(f"{path} is a text-to-image teacher (DDIM), not sampled by --sampler {sampler}",
                              hint="drop --sampler; --num-steps and --guidance set its DDIM sampler")
        teacher_path = path
        sampled = {**_SD_DDIM, **((defaults.settings.get("teacher_sampler") or {}) if defaults else {})}
        num_steps = int(sampled["num_steps"]) if num_steps is None else num_steps
        guidance = float(sampled["guidance"]) if guidance is None else guidance
    count = max(seed_list) + 1 if len(seed_list) else 0
    caps, caps_info = _t2i_captions(captions, defaults, count)
    check_captions_cover(caps, seed_list, where=str(caps_info.get("path") or "the caption list"))
    t = load_t2i_teacher(teacher_path, device=dev)
    t.prompts.to(dev)
    want = source.get("teacher_sha256")
    if generator and want and t.info.get("sha256") and t.info["sha256"] != want:
        raise AssetError(f"teacher {teacher_path} (sha256 {t.info['sha256'][:12]}...) is not the one {path} "
                         f"was distilled from ({str(want)[:12]}...)",
                         hint="pass its own teacher with --teacher DIR")
    teacher_record = None if t.info.get("kind") == "diffusers" else read_network_record(teacher_path)
    _check_t2i_suite(s, f"teacher {teacher_path}", t.latent_shape, teacher_record)
    net = None
    if generator:
        net = load_network(path, device=dev)
        if (c, r, r) != tuple(t.latent_shape):
            raise AssetError(f"generator {path} works on {[c, r, r]} latents, its teacher {teacher_path} on "
                             f"{list(t.latent_shape)}",
                             hint="pass the teacher it was distilled from with --teacher")
    plan = T2IPlan(t, caps, generator=net, t_init=source.get("t_init"), num_steps=num_steps or 1,
                   guidance=1.0 if guidance is None else guidance, captions_info=caps_info)
    info = {"path": str(path), "weights_sha256": (record or {}).get("weights_sha256") or t.info.get("sha256"),
            "class_name": "EpsDenoiser", "role": role or "teacher"}
    return plan, info


def pairs(*, out: PathLike, suite: str | None = None, network: PathLike | None = None,
          seeds: str | Sequence[int] | None = None, num_pairs: int | None = None, batch_size: int = 64,
          num_steps: int | None = None, sigma_min: float | None = None, sigma_max: float | None = None,
          rho: float | None = None, shard_size: int = 1000, device: str = "cpu", progress: bool = True):
    """Teacher (noise, image) pairs for DMD's regression loss, written into folder `out`; resumable.

    Pair i comes from seed i (EDM's per-image seeds): noise = sigma_max * z_i, the Heun sampler's
    input, and the image the deterministic Heun sampler makes from it. network: a teacher folder,
    its network.json or a named asset; default: the suite's teacher. num_steps, sigma_min,
    sigma_max, rho: the suite's Heun settings, else EDM's (18 steps up to 32x32, 40 above;
    0.002, 80, 7). Safetensors shards of `shard_size` pairs and `pairs.json` (sha256 per shard).
    Returns a `PairsSummary`.
    """
    from sidbench.nets.sampler import check_sampler_settings
    from sidbench.nets.seeds import resolve_seeds

    out = check_output_path(out, kind="dir", option="--out")
    _check_int("num_pairs", num_pairs, 1, hint="e.g. --num-pairs 25000")
    seed_list = resolve_seeds(seeds, num_pairs)
    _check_int("batch_size", batch_size, 1, hint="e.g. --batch-size 64")
    _check_int("num_steps", num_steps, 1, hint="e.g. --num-steps 18")
    _check_int("shard_size", shard_size, 1, hint="e.g. --shard-size 1000")
    dev = _device(device)
    s = _suite(suite)
    path, record = _network_or_teacher(
        network, s, ConfigError("no teacher given",
                                hint="give --suite NAME for the suite's teacher, or --network DIR"))
    if record.get("role") == "generator":
        raise ConfigError(f"{path} is a one-step generator (role in its network.json); pairs come from a "
                          "teacher",
                          hint="give the teacher with --network, or --suite NAME for the suite's")
    num_steps, heun = _heun_defaults(s, record, num_steps, sigma_min, sigma_max, rho)
    settings = check_sampler_settings(num_steps=num_steps, **heun)

    from sidbench.generation.pairs import make_pairs
    from sidbench.nets.native import load_network

    net = load_network(path, device=dev)
    info = {"weights_sha256": record.get("weights_sha256"), "class_name": record.get("class_name"),
            "suite": s.name if s is not None else None}
    return make_pairs(net, out, seed_list, num_steps=settings["num_steps"], sigma_min=settings["sigma_min"],
                      sigma_max=settings["sigma_max"], rho=settings["rho"], batch_size=batch_size,
                      shard_size=shard_size, device=dev, network_info=info, progress=progress)


def _metrics_and_protocols(metrics: str | Sequence[str] | None, protocol: Any, s: Any
                           ) -> tuple[list[str], list[str]]:
    """The suite's protocols are the defaults: its metrics when none are named, its protocol per metric."""
    from sidbench.metrics.evaluate import parse_metrics
    from sidbench.metrics.protocols import get_protocol

    by_metric: dict[str, str] = {}
    if s is not None:
        by_metric = {get_protocol(name).metric: name for name in s.protocols}
    metric_list = parse_metrics(metrics if metrics is not None else (list(by_metric) or "fid"))
    chosen = {m: by_metric[m] for m in metric_list if m in by_metric}
    for name in _protocol_names(protocol):
        chosen[get_protocol(name).metric] = name  # resolve_protocols refuses one for a metric not asked for
    return metric_list, list(chosen.values())


def evaluate(*, images: Any = None, generator: PathLike | None = None, suite: str | None = None,
             ref: Any = None, ref_images: Any = None, metrics: str | Sequence[str] | None = None,
             protocol: str | Sequence[str] | None = None, num_images: int | None = None,
             seeds: str | Sequence[int] | None = None, seed_sets: bool = False,
             sigma_init: float | None = None, inception_weights: PathLike | None = None,
             vgg16_weights: PathLike | None = None, torchscript_inception: PathLike | None = None,
             clip_weights: PathLike | None = None, captions: PathLike | None = None,
             channels_last: bool = False, batch_size: int = 64, device: str = "cpu",
             json: PathLike | None = None, student_steps: int | None = None,
             teacher: PathLike | None = None) -> dict[str, Any]:
    """Metrics of `images` (folder/zip of PNGs, dataset, tensor) or of a one-step `generator` folder.

    suite: its reference statistics are the default `ref`, its protocols the default metrics
    and protocols, and a generator must match its teacher. Generator images come from
    `seeds` (or 0..num_images-1), or with `seed_sets` from every seed set of the protocol,
    combined by its headline rule. `json`: also write the result record there. student_steps: a
    multi-step student (ADD-style) at N of its recorded `student_sigmas`. A SiD-LSG generator
    (role "t2i-generator") renders image s from caption s (`captions`, default the suite's
    evaluation captions) through `teacher` (default: the one its network.json records, else the
    suite's), and the metrics get those captions; images under a text-to-image suite get the
    suite's evaluation captions when `captions` is not given. Returns the result.
    """
    from sidbench.metrics.evaluate import evaluate as evaluate_images

    if json is not None:
        json = check_output_path(json, kind="file", option="--json")
    if (images is None) == (generator is None):
        raise ConfigError("give exactly one of --images and --generator",
                          hint="--images PATH for files, --generator DIR for a one-step generator")
    _check_int("num_images", num_images, 1, hint="e.g. --num-images 50000")
    _check_int("batch_size", batch_size, 1, hint="e.g. --batch-size 64")
    _check_positive("sigma_init", sigma_init, hint="SiD's generators use 2.5")
    if seed_sets and generator is None:
        raise ConfigError("--seed-sets needs --generator", hint="evaluate a folder of images without it")
    _check_int("student_steps", student_steps, 1, hint="e.g. --student-steps 4")
    if student_steps is not None and generator is None:
        raise ConfigError("--student-steps needs --generator", hint="evaluate a folder of images without it")
    if seed_sets and (seeds is not None or num_images is not None):
        raise ConfigError("--seed-sets takes the protocol's seeds; drop --seeds/--num-images")
    if images is not None and seeds is not None:
        raise ConfigError("--seeds chooses generator seeds",
                          hint="with --images use --num-images N for the first N")
    if images is not None and teacher is not None:
        raise ConfigError("--teacher is a text-to-image generator's teacher", hint="use it with --generator")
    dev = _device(device)
    s = _suite(suite)
    metric_list, protocols = _metrics_and_protocols(metrics, protocol, s)
    if s is not None:
        ref, ref_images = _suite_reference(s, ref, ref_images, metric_list)
    caption_list = None
    if images is not None and s is not None and s.settings.get("text_to_image"):
        caption_list = _t2i_captions(captions, s, num_images or 0, required=False)[0]
    elif captions is not None and images is not None:
        from sidbench.data.coco import read_captions

        caption_list = read_captions(captions)
    weights = {"inception-v3-compat": inception_weights, "vgg16-fc2-relu": vgg16_weights,
               "clean-fid-inception": torchscript_inception, "open-clip-vitg14": clip_weights}
    ext_options = {"inception-v3-compat": {"channels_last": True}} if channels_last else None
    common = dict(ref_images=ref_images, weights=weights, captions=caption_list, batch_size=batch_size,
                  device=dev, extractor_options=ext_options)
    if generator is None:
        result = evaluate_images(images, ref, metric_list, protocols or None, num_images=num_images, **common)
    else:
        result = _evaluate_generator(generator, s, seeds, num_images, seed_sets, sigma_init, ref, metric_list,
                                     protocols, dev, common, student_steps, teacher=teacher,
                                     captions=captions)
    import sidbench.distributed as distributed

    if json is not None and distributed.rank() == 0:
        _write_json(json, result, "--json")
    return result


def _is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _suite_reference(s: Any, ref: Any, ref_images: Any, metric_list: list[str]) -> tuple[Any, Any]:
    """Under a suite: its reference statistics by default, and any reference given checked against it.

    A statistics file must be the suite's (`check_reference`); a dataset path must be the
    suite's dataset (`check_suite_dataset`); KID and P/R against statistics use the suite's
    dataset as reference images when it is found.
    """
    from sidbench.errors import AssetError
    from sidbench.metrics.catalog import get_metric
    from sidbench.suites.resolve import check_suite_dataset, resolve_suite

    kinds = {get_metric(m).reference for m in metric_list}
    needs_ref = bool(kinds & {"stats", "features"})
    if (ref is None and needs_ref) or (_is_path(ref) and str(ref).endswith(".npz")):
        ref = resolve_suite(s, ref=ref, need=("ref",)).ref_stats
    elif _is_path(ref):
        ref = check_suite_dataset(s, ref)
    if _is_path(ref_images):
        ref_images = check_suite_dataset(s, ref_images)
    elif ref_images is None and _is_path(ref) and "features" in kinds:
        with contextlib.suppress(AssetError):  # not found: evaluate() says which images KID / P-R need
            ref_images = check_suite_dataset(s)
    return ref, ref_images


def _evaluate_generator(generator: PathLike, s: Any, seeds: Any, num_images: int | None, seed_sets: bool,
                        sigma_init: float | None, ref: Any, metric_list: list[str], protocols: list[str],
                        dev: Any, common: dict[str, Any], student_steps: int | None = None,
                        teacher: PathLike | None = None, captions: PathLike | None = None) -> dict[str, Any]:
    from sidbench.metrics.evaluate import evaluate as evaluate_images
    from sidbench.metrics.evaluate import evaluate_seed_sets, resolve_protocols
    from sidbench.metrics.image_source import GeneratorImageSource, onestep_renderer
    from sidbench.nets.native import DEFAULT_SIGMA_INIT, load_network
    from sidbench.nets.seeds import resolve_seeds

    target = _t2i_network(generator, None)
    if target is not None:
        if sigma_init is not None or student_steps is not None:
            raise ConfigError("--sigma-init and --student-steps sample EDM generators; a SiD-LSG generator "
                              "takes one step at its recorded t_init", hint="drop them")
        return _evaluate_t2i_generator(*target, s, seeds, num_images, seed_sets, teacher, captions,
                                       metric_list, protocols, ref, dev, common)
    _refuse_t2i_options(generator, s, teacher=teacher, captions=captions)
    path, record = _network_record(generator, s, "generator")
    if record.get("role") == "teacher":
        raise ConfigError(f"{path} is a teacher (role in its network.json); --generator renders one step",
                          hint="sample it with `sidbench generate` and evaluate the images with --images")
    levels = _student_levels(path, record, student_steps, "onestep", sigma_init)
    if sigma_init is None:
        sigma_init = float(record.get("sigma_init") or DEFAULT_SIGMA_INIT)
    chosen = resolve_protocols(metric_list, protocols or None)
    if seed_sets:
        first = chosen["fid"] if "fid" in chosen else next(iter(chosen.values()))
        sets = first.option("seed_sets") or ((0, first.num_images - 1),)
    else:
        seed_list = resolve_seeds(seeds, num_images)
    net = load_network(path, device=dev)
    info = {"generator": str(generator), "generator_sha256": record.get("weights_sha256"),
            "sigma_init": sigma_init}
    if levels is None:
        render = onestep_renderer(net, sigma_init, dev)
    else:
        from sidbench.generation.multistep import multistep_renderer

        render = multistep_renderer(net, levels, dev)
        info["student_sigmas"] = list(levels)
    if seed_sets:
        return evaluate_seed_sets(render, sets, ref, metric_list, protocols or None, description=info,
                                  **common)
    return evaluate_images(GeneratorImageSource(render, seed_list, info), ref, metric_list, protocols or None,
                           **common)


def _evaluate_t2i_generator(path: Path, record: dict | None, s: Any, seeds: Any, num_images: int | None,
                            seed_sets: bool, teacher: PathLike | None, captions: PathLike | None,
                            metric_list: list[str], protocols: list[str], ref: Any, dev: Any,
                            common: dict[str, Any]) -> dict[str, Any]:
    """A SiD-LSG generator rendered on the fly, image s from caption s; the metrics get the same captions."""
    from sidbench.metrics.evaluate import evaluate as evaluate_images
    from sidbench.metrics.evaluate import evaluate_seed_sets, resolve_protocols
    from sidbench.metrics.image_source import GeneratorImageSource
    from sidbench.nets.seeds import resolve_seeds

    if (record or {}).get("role") != "t2i-generator":
        raise ConfigError(f"{path} is a text-to-image teacher; --generator renders a one-step generator",
                          hint="sample it with `sidbench generate` and evaluate the images with --images")
    chosen = resolve_protocols(metric_list, protocols or None)
    if seed_sets:
        first = chosen["fid"] if "fid" in chosen else next(iter(chosen.values()))
        sets = first.option("seed_sets") or ((0, first.num_images - 1),)
        if any(lo != 0 for lo, _ in sets):
            raise ConfigError(f"protocol {first.name}'s seed sets do not all start at 0, but caption i of "
                              "the metrics is image i", hint="drop --seed-sets and pass --seeds")
        seed_list = list(range(max(hi for _, hi in sets) + 1))
    else:
        seed_list = resolve_seeds(seeds, num_images)
    plan, _ = _t2i_plan(path, record, s, teacher, captions, seed_list, None, None, None, dev)
    info = {"generator": str(path), "generator_sha256": record.get("weights_sha256"), **plan.describe()}
    render = plan.renderer(dev)
    caps = plan.captions
    if not seed_sets and list(seed_list) != list(range(len(seed_list))):
        caps = [caps[i] for i in seed_list]  # image i of the metrics is seed_list[i]
    common = {**common, "captions": caps}
    plan.network.eval()
    if seed_sets:
        return evaluate_seed_sets(render, sets, ref, metric_list, protocols or None, description=info,
                                  **common)
    return evaluate_images(GeneratorImageSource(render, seed_list, info), ref, metric_list, protocols or None,
                           **common)


def refstats(dataset: PathLike | None = None, *, out: PathLike | None = None, suite: str | None = None,
             protocol: str | None = None, max_images: int | None = None,
             inception_weights: PathLike | None = None, weights: PathLike | None = None, batch_size: int = 64,
             device: str = "cpu", force: bool = False) -> dict[str, Any]:
    """Reference statistics (mu, sigma) of `dataset` for a FID protocol's extractor, written to `out` (.npz).

    suite: the dataset defaults to the suite's (identity-checked) and the protocol to the
    suite's FID protocol; without one the protocol is edm-fid50k. Returns the stored metadata
    and the `path` written. out is required, except under a suite whose statistics nobody
    publishes (COCO-2014, `settings["ref_stats_cache"]`): they then go once into
    `$SIDBENCH_CACHE` with a sha256 sidecar (`sidbench.suites.ref_cache`; also returned as
    `sha256`), where runs of the suite find them; `force` replaces an existing cached file.
    """
    from sidbench.metrics.protocols import get_protocol
    from sidbench.suites.ref_cache import cache_name

    s = _suite(suite)
    cached = cache_name(s)
    if out is None and cached is None:
        raise ConfigError("--out is required" + (f": suite {s.name} has no cached reference statistics"
                                                 if s is not None else ""),
                          hint="give the .npz to write, e.g. --out stats.npz")
    if out is not None:
        out = check_output_path(out, kind="file", option="--out")
        if out.suffix != ".npz":
            raise ConfigError(f"--out {out} must end with .npz",
                              hint="`eval --ref` recognises statistics by it")
    if not isinstance(force, bool):
        raise ConfigError(f"--force must be true or false, not {force!r}")
    _check_int("max_images", max_images, 1)
    _check_int("batch_size", batch_size, 1, hint="e.g. --batch-size 64")
    dev = _device(device)
    if protocol is None:
        suite_fid = [n for n in (s.protocols if s is not None else ()) if get_protocol(n).metric == "fid"]
        protocol = suite_fid[0] if suite_fid else "edm-fid50k"
    p = get_protocol(protocol)
    if p.metric != "fid":
        raise ConfigError(f"protocol {p.name} is a {p.metric} protocol; refstats makes FID statistics",
                          hint="use e.g. --protocol edm-fid50k, coco2014-fid30k-clean or digits-fd")
    if weights is None and p.extractor == "inception-v3-compat":
        weights = inception_weights
    if cached is not None:  # an image folder of any sizes (val2014), every image counted
        from sidbench.suites.ref_cache import check_cache_request, compute_suite_reference
        from sidbench.suites.resolve import resolve_suite

        if out is None:  # e.g. an existing cached file: refused before the dataset is looked for
            check_cache_request(s, p.name, max_images, force)
        folder = resolve_suite(s, dataset=dataset, need=("dataset",), check=False).dataset
        return compute_suite_reference(s, folder, p.name, out=out, force=force, max_images=max_images,
                                       weights_path=weights, batch_size=batch_size, device=dev)
    if s is not None:
        from sidbench.suites.resolve import check_suite_dataset, resolve_suite

        data = check_suite_dataset(s, resolve_suite(s.name, dataset=dataset, need=("dataset",)).dataset)
    elif dataset is None:
        raise ConfigError("no dataset given",
                          hint="give DATASET (EDM zip/folder, image folder, CIFAR tarball) or --suite NAME")
    else:
        data = dataset
    from sidbench.metrics.evaluate import compute_reference

    meta = compute_reference(data, out, p.name, weights_path=weights, max_images=max_images,
                             batch_size=batch_size, device=dev)
    return {**meta, "path": str(out)}


def train_teacher(*, suite: str, out: PathLike, kimg: float | None = None, batch_size: int | None = None,
                  lr: float | None = None, seed: int = 0, device: str = "cpu", progress: bool = True):
    """Train an embedded suite's teacher from scratch; its EMA goes to the native folder `out`.

    kimg, batch_size and lr default to the suite's teacher-training settings. Returns a `TrainSummary`.
    """
    out = check_output_path(out, kind="dir", option="--out")
    _check_positive("kimg", kimg, hint="e.g. --kimg 160")
    _check_positive("lr", lr, hint="e.g. --lr 1e-3")
    _check_int("batch_size", batch_size, 1, hint="e.g. --batch-size 32")
    _check_int("seed", seed, 0)
    _check_choice("suite", suite, TRAINABLE_SUITES)
    dev = _device(device)
    from sidbench.train.teacher import train_teacher as train

    return train(suite, out, kimg=kimg, batch_size=batch_size, lr=lr, seed=seed, device=dev,
                 progress=progress)


def quickstart(*, out: PathLike = "runs/quickstart", suite: str = "digits", num_images: int = 2000,
               batch_size: int = 250, device: str | None = None, few_steps: int = 2, distill: bool = True,
               budget: float = 15.0, methods: str | Sequence[str] | None = None,
               progress: bool = True) -> dict[str, Any]:
    """The embedded default suite end to end: its shipped teacher's rows, then (with `distill`, digits
    only) the teacher distilled with every registered distillation method, each row evaluated and
    recorded, a leaderboard version in `out/leaderboards` and the report `out/report.html`.

    budget: minutes; it sets the training steps of every method, round(100 * budget / 15) (the
    default 15: 100 steps, which finishes on an idle 2-core CPU within 15 minutes); never a clock,
    so a budget always gives the same numbers. methods: names (a list or "a,b") to run only those;
    default every registered distillation method, each with its digits recipe (a method without one
    is listed as skipped, one that fails as failed with its error). Writes `out/results.json` and
    returns it; device defaults to cuda when available. Resumable: a rerun reuses finished images,
    pairs, training runs and records.
    """
    out = check_output_path(out, kind="dir", option="--out")
    _check_int("num_images", num_images, 1, hint="the digits protocols use 2000")
    _check_int("batch_size", batch_size, 1, hint="e.g. --batch-size 250")
    _check_int("few_steps", few_steps, 1, hint="e.g. --few-steps 2")
    _check_positive("budget", budget, hint="minutes, e.g. --budget 15 (the default)")
    if not isinstance(distill, bool):
        raise ConfigError(f"--distill must be true or false, not {distill!r}")
    names = _method_names(methods)
    from sidbench.devices import default_device

    dev = _device(device) if device is not None else default_device()
    _suite(suite)
    from sidbench.workflows.quickstart import distillation_methods
    from sidbench.workflows.quickstart import quickstart as run_quickstart

    if names is not None:
        distillation_methods(names)  # an unknown or non-distillation name is refused before any work
    return run_quickstart(out, suite=suite, num_images=num_images, batch_size=batch_size, device=str(dev),
                          few_steps=few_steps, distill=distill, budget=float(budget), methods=names,
                          progress=progress)


def _method_names(methods: str | Sequence[str] | None) -> list[str] | None:
    """--methods as a list of names ("sid,dmd" or a list); None: every registered distillation method."""
    if methods is None:
        return None
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    if not all(isinstance(m, str) for m in items):
        raise ConfigError(f"--methods must be method names, not {methods!r}", hint="e.g. --methods sid,dmd")
    names = [m.strip() for m in items if m.strip()]
    if not names:
        raise ConfigError("--methods names no method", hint="e.g. --methods sid,dmd, or leave it out for all")
    return list(dict.fromkeys(names))


def _resume(resume: str | os.PathLike | None) -> str | None:
    """--resume auto (newest valid checkpoint in the outdir), none (start fresh) or a checkpoint path."""
    if resume is None or str(resume) == "none":
        return None
    if str(resume) == "auto":
        return "auto"
    path = Path(resume).expanduser()
    if not path.exists():
        raise ConfigError(f"--resume {path}: no such checkpoint",
                          hint="give auto (the newest valid checkpoint in --outdir), none, or a checkpoint "
                               "folder")
    return str(path)


def _overrides(items: str | Sequence[str]) -> list[str]:
    """--set values: each one `key=value` (the keys are checked against the recipe schema later)."""
    out = [items] if isinstance(items, str) else list(items)
    for item in out:
        if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"--set {item!r} is not key=value", hint="e.g. --set training.batch=64")
    return out


def distill(recipe: PathLike, *, set: Sequence[str] = (), outdir: PathLike, resume: str | None = "auto",
            dry_run: bool = False, device: str | None = None, progress: bool = True) -> RunResult:
    """Distil a one-step generator as the YAML `recipe` says, into `outdir` (checkpoints, logs, metrics).

    set: `key=value` overrides with dotted keys (`training.batch=64`, `method_settings.alpha=1.0`);
    an unknown key names the nearest valid one. resume: "auto" continues from the newest valid
    checkpoint in `outdir`, "none" starts fresh, or a checkpoint path. dry_run: resolve the
    config, check every asset and the dataset/teacher match, train nothing. device defaults to
    cuda when available (under torchrun: each process's own GPU). Returns the trainer's `RunResult`
    (a dry run's `plan` also holds the resolved config under "config").
    """
    outdir = check_output_path(outdir, kind="dir", option="--outdir")
    overrides = _overrides(set)
    how = _resume(resume)
    dev = _device(device) if device is not None else None
    path = Path(recipe).expanduser()
    if not path.is_file():
        raise ConfigError(f"recipe {path} is not a file",
                          hint="give a YAML recipe, e.g. recipes/sid-digits.yaml")
    from sidbench.train.config import load_recipe
    from sidbench.train.run import train

    config = load_recipe(path, overrides)
    result = train(config, outdir, resume=how, dry_run=dry_run, progress=progress, device=dev)
    if dry_run:
        result.plan["config"] = config.resolved()  # what a dry run prints
    return result


def validate(method: str, *, set: Sequence[str] = (), outdir: PathLike | None = None, steps: int = 40,
             progress: bool = True) -> ValidationResult:
    """Run the registered `method` through the digits suite on this CPU and check what a method must do.

    The checklist: it builds; it draws only from ctx.draws; `steps` steps with finite loss terms; the
    same numbers under the same seed; a `distill` subprocess killed with SIGKILL and resumed ends
    identical; its checkpoint loads for `generate` / `eval --generator`; FD improves over the initial
    generator. set: `key=value` overrides of the validation recipe, as for `distill` (e.g.
    `method_settings.generator_start_kimg=0`). outdir keeps the runs (default: a temporary folder,
    removed). Returns a `ValidationResult` (`.ok`, `.failed`, `.checks`); raises only for bad arguments.
    """
    from sidbench.registry import METHODS

    if outdir is not None:
        outdir = check_output_path(outdir, kind="dir", option="--outdir")
    _check_int("steps", steps, 5, hint="a few dozen steps, e.g. --steps 40")
    overrides = _overrides(set)
    METHODS.get(method)  # unknown: names the nearest registered method
    from sidbench.workflows.validate import validate_method

    return validate_method(method, outdir=outdir, steps=steps, overrides=overrides, progress=progress)


def leaderboard_add(records: PathLike | Sequence[PathLike], *, suite: str, root: PathLike = "leaderboards",
                    bump: str | None = None, note: str | None = None) -> dict[str, Any]:
    """Release the next version of `suite`'s leaderboard under `root` with the result `records` (files).

    The version follows from what the records change: MINOR when they add rows (the default),
    PATCH (`bump="patch"`) when each replaces a row of the same name with a fixed record, MAJOR
    (`bump="major"`) when a protocol's major version differs from the table's, which is refused
    otherwise (numbers under two protocol majors are never mixed in one table). Released versions
    are never edited. Returns the version made, its folder and the added / replaced / dropped rows.
    """
    from sidbench.leaderboards.versions import BUMPS

    root = check_output_path(root, kind="dir", option="--root")
    _check_choice("bump", bump, BUMPS)
    paths = [records] if isinstance(records, (str, os.PathLike)) else list(records)
    if not paths:
        raise ConfigError("no records given", hint="give one or more record .json files")
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"record {path} is not a file", hint="give result record .json files")
    if not isinstance(suite, str) or not suite:
        raise ConfigError("--suite is empty", hint="name the suite, e.g. --suite cifar10-uncond")
    from sidbench.leaderboards.store import add_records

    return add_records(root, suite, [Path(p) for p in paths], bump=bump, note=note)


def leaderboard_show(suite: str, *, version: str | None = None,
                     root: PathLike = "leaderboards") -> dict[str, Any]:
    """A released version of `suite`'s leaderboard (default: the newest), verified against its manifest.

    Returns its rows sorted by the headline metric in that metric's direction, and each metric's
    key, label and whether lower is better.
    """
    from sidbench.leaderboards.store import show_version

    return show_version(root, suite, version)


def report(runs: PathLike | Sequence[PathLike], *, out: PathLike, leaderboard: str | None = None,
           root: PathLike = "leaderboards", grid: int = 8, device: str | None = None) -> dict[str, Any]:
    """A comparison report of training run folders (`distill --outdir`): HTML (one self-contained page) or
    Markdown (PNGs in `<stem>_files/` beside it), chosen by `out`'s suffix (.html or .md).

    It holds metric-vs-kimg curves, the headline metric vs cost (device-hours), `grid` x `grid` sample
    grids of each run's newest product for seeds 0 .. grid*grid-1 (0: none), the recipe's paper numbers
    with a pass / fail / not comparable verdict under the recipe's tolerance, the newest version of the
    `leaderboard` suite's table under `root` with the runs' rows beside it, and provenance (hashes,
    environment). device (for the grids) defaults to cuda when available. Returns what was written:
    format, files, runs, figures, verdicts.
    """
    _check_int("grid", grid, 0, hint="images per side of the sample grids, e.g. --grid 8 (0: no grids)")
    if grid > 32:
        raise ConfigError(f"--grid {grid} is more than 32 images per side",
                          hint="a grid is a glance at the samples: e.g. --grid 8; use generate for more")
    out = check_output_path(out, kind="file", option="--out")
    from sidbench.reports.build import assets_folder, output_format

    if output_format(out) == "markdown":
        check_output_path(assets_folder(out), kind="dir", option="--out")
    from sidbench.devices import default_device

    dev = _device(device) if device is not None else default_device()
    paths = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    if leaderboard is not None and (not isinstance(leaderboard, str) or not leaderboard):
        raise ConfigError("--leaderboard is empty",
                          hint="name a suite with a leaderboard, e.g. cifar10-uncond")
    from sidbench.reports.runs import load_runs

    loaded = load_runs(paths)
    if leaderboard is not None:
        from sidbench.leaderboards.store import show_version

        show_version(root, leaderboard)  # an unknown suite or an altered release fails before any sampling
    from sidbench.reports.build import build_content, write_report
    from sidbench.reports.verdict import judge

    content, notes = build_content(loaded, leaderboard=leaderboard, root=root, grid=grid, device=dev)
    written = write_report(content, out)
    verdicts = []
    for run in loaded:
        for expected in run.expected:
            v = judge(expected, run.last)
            verdicts.append({"run": run.key, "metric": expected.get("metric"), "paper": v.paper,
                             "measured": v.measured, "tolerance": v.tolerance, "status": v.status,
                             "reason": v.reason})
    return {"out": str(out), **written, "runs": [r.key for r in loaded],
            "figures": [f.name for f in content.figures()], "verdicts": verdicts, "notes": notes}
