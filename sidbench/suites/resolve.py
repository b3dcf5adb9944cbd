"""`--suite NAME`: find the suite's teacher, reference statistics and dataset, and refuse ones that differ.

A number is comparable with a suite's only when it was measured on what the suite
declares, so every file a run uses under a suite is checked against the suite's
facts: the teacher's network class, architecture, resolution, channels and label
count; the dataset's image count, resolution, channels, labels and pinned sha256;
the reference statistics' feature layer, image count and provenance. A mismatch is
one line naming the fact and both values.

Where files are looked for: an explicit path always wins; otherwise packaged files
(`sidbench/suites/assets/`) and `$SIDBENCH_CACHE` by published file name (see
`sidbench.assets`). A teacher published as an EDM pickle is looked for as the folder
`sidbench convert` writes from it: `$SIDBENCH_CACHE/<pickle name without .pkl>/`.
Statistics that nobody publishes (COCO-2014's) are computed once by `sidbench refstats
DIR --suite NAME` into `$SIDBENCH_CACHE/<settings["ref_stats_cache"]>` with a sha256 sidecar
(`sidbench.suites.ref_cache`), and re-hashed against it whenever they are found.
Nothing is downloaded; a missing file is an AssetError that says what to put where.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidbench.assets import ASSETS, cache_dir, converted_dir, get_asset, pinned_hash, resolve_asset
from sidbench.data.base import ImageDataset
from sidbench.errors import AssetError, ConfigError, DatasetError
from sidbench.packaged import packaged_path
from sidbench.registry import SUITES, suggest
from sidbench.suites.base import Suite, get_suite
from sidbench.suites.dataset_check import check_dataset
from sidbench.suites.ref_cache import cache_name, cached_path, compute_command, is_cached_file, verify_cached

NEEDS = ("teacher", "ref", "dataset")
_NEED_ALIASES = {"ref_stats": "ref"}  # the SuiteAssets field name
_NETWORK_JSON = "network.json"
_PICKLE_SUFFIXES = (".pkl", ".pickle")


def _suite(suite: Suite | str) -> Suite:
    return suite if isinstance(suite, Suite) else get_suite(suite)


# --------------------------------------------------------------------------------- teacher ----

def _native_folder(path: Path) -> Path | None:
    """The folder of a native network at `path` (folder, network.json or its .safetensors), else None."""
    if path.is_dir():
        return path if (path / _NETWORK_JSON).is_file() else None
    if path.is_file() and path.suffix in (".json", ".safetensors"):
        return path.parent if (path.parent / _NETWORK_JSON).is_file() else None
    return None


def _convert_hint(asset_name: str) -> str:
    asset = get_asset(asset_name)
    out = converted_dir(asset_name)
    pickle = cache_dir() / asset.filename
    where = str(pickle) if pickle.is_file() else asset.filename
    fetch = "" if pickle.is_file() else f"download {asset.filename} from {asset.url} (sha256 " \
                                          f"{pinned_hash(asset)}), then "
    return f"{fetch}run `sidbench convert {where} --trust-pickle -o {out}`"


def _converted_teacher(asset_name: str, what: str) -> Path:
    """The cache folder converted from pickle asset `asset_name`, or an AssetError saying how to make it."""
    out = converted_dir(asset_name)
    if (out / _NETWORK_JSON).is_file():
        return out
    pickle = cache_dir() / get_asset(asset_name).filename
    found = f"; {pickle} is there but not converted" if pickle.is_file() else ""
    raise AssetError(f"{what} ({asset_name}) is not converted: no {out / _NETWORK_JSON}{found}",
                     hint=_convert_hint(asset_name))


def _suite_teacher(suite: Suite) -> Path:
    """The suite's own teacher folder (packaged or converted in the cache); errors say how to get it."""
    spec = suite.teacher
    what = f"the teacher of suite {suite.name}"
    if spec.packaged is not None:
        return packaged_path(spec.packaged)
    if spec.asset is not None:
        return _converted_teacher(spec.asset, what)
    if spec.preconditioner is None:
        fmt = suite.settings.get("teacher_format", "another format")
        raise ConfigError(f"{what} ({suite.settings.get('teacher', 'external')}) is a {fmt} model, "
                          "not a sidbench network, and is given by path",
                          hint="pass the path of its folder")
    if "teacher_training" in suite.settings:
        raise AssetError(f"{what} is not shipped: it is trained in seconds to minutes",
                         hint=f"run `sidbench train-teacher --suite {suite.name} --out DIR` and pass DIR")
    raise AssetError(f"{what} has no known source", hint="pass the path of a native network folder")


def _teacher_assets() -> dict[str, str]:
    """Asset name -> description, for every asset some suite names as its teacher."""
    names: dict[str, str] = {}
    for _, suite in SUITES.items():
        asset = getattr(getattr(suite, "teacher", None), "asset", None)
        if asset in ASSETS:
            names[asset] = ASSETS[asset].description
    return names


def resolve_network(name_or_path: str | os.PathLike) -> Path:
    """The native network folder that `name_or_path` names.

    A path to a native folder, its network.json or its .safetensors wins; otherwise a
    suite name ("digits": the packaged teacher; "cifar10-uncond": its converted EDM
    teacher in `$SIDBENCH_CACHE`) or a teacher asset name ("edm-cifar10-uncond").
    A pickle, or a teacher that is not converted yet, is an AssetError saying which
    `sidbench convert ... --trust-pickle -o DIR` to run.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    folder = _native_folder(path)
    if folder is not None:
        return folder
    suites = SUITES.names()
    if text in suites:
        return _suite_teacher(get_suite(text))
    teachers = _teacher_assets()
    if text in teachers:
        return _converted_teacher(text, teachers[text])
    if path.suffix.lower() in _PICKLE_SUFFIXES and path.is_file():
        asset = next((a for a in ASSETS.values() if a.filename == path.name), None)
        out = converted_dir(asset.name) if asset is not None else path.with_suffix("")
        raise AssetError(f"{path} is a pickle: sidbench runs only converted networks",
                         hint=f"convert it once: `sidbench convert {path} --trust-pickle -o {out}`, "
                              f"then pass {out}")
    if path.exists():
        raise AssetError(f"no network found at {path} (no {_NETWORK_JSON} there)",
                         hint="give a folder written by `sidbench convert` or `sidbench train-teacher`, "
                              "or its network.json")
    if "/" in text or os.sep in text or path.suffix:
        raise AssetError(f"no network at {path}: the path does not exist",
                         hint="give a folder written by `sidbench convert` or `sidbench train-teacher`, "
                              "or a suite name such as digits")
    raise AssetError(f"no network at {text}, and it is not a suite or teacher name."
                     f"{suggest(text, [*suites, *teachers])}",
                     hint="give a native network folder, a suite name (e.g. digits) or a teacher asset "
                          f"({', '.join(sorted(teachers))})")


def _default_init_kwarg(class_name: str, key: str) -> Any:
    """The constructor default of `key` for preconditioner `class_name` (None when it has none)."""
    from sidbench.nets.precond import PRECONDITIONERS

    cls = PRECONDITIONERS.get(class_name)
    if cls is None:
        return None
    param = inspect.signature(cls.__init__).parameters.get(key)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def check_teacher(suite: Suite | str, network_record: Mapping[str, Any], where: str | None = None) -> None:
    """Refuse a teacher that is not the suite's network: one line naming each differing fact and both values.

    `network_record` is a network.json record (`sidbench.nets.native.read_network_record`)
    or a `{"class_name", "init_kwargs"}` config. Compared: preconditioner class, architecture
    (`model_type`), resolution, channels, label_dim, and the source pickle's sha256 where the
    suite's teacher asset pins one.
    """
    s = _suite(suite)
    spec = s.teacher
    what = where or "the teacher"
    if spec.preconditioner is None:
        raise ConfigError(f"suite {s.name}'s teacher is a {s.settings.get('teacher_format', 'non-native')} "
                          f"model, not a sidbench network; {what} cannot be checked as one",
                          hint="pass the teacher's own folder (e.g. SD 1.5 in diffusers layout)")
    if not isinstance(network_record, Mapping) or not isinstance(network_record.get("init_kwargs"), Mapping):
        raise ConfigError(f"{what}: not a network record (no init_kwargs)",
                          hint="pass what sidbench.nets.native.read_network_record returns")
    kwargs = network_record["init_kwargs"]
    cls = str(network_record.get("class_name", "?")).rsplit(".", 1)[-1]  # EDM: training.networks.EDMPrecond
    facts = [("preconditioner", cls, spec.preconditioner),
             ("resolution", kwargs.get("img_resolution"), s.resolution),
             ("channels", kwargs.get("img_channels"), s.channels),
             ("label_dim", kwargs.get("label_dim", _default_init_kwarg(cls, "label_dim") or 0),
              0 if s.settings.get("text_to_image") else s.label_dim)]  # text, not labels, conditions T2I
    if spec.architecture is not None:
        facts.append(("architecture", kwargs.get("model_type", _default_init_kwarg(cls, "model_type")),
                      spec.architecture))
    source = network_record.get("source")
    if spec.asset is not None and isinstance(source, Mapping) and source.get("sha256"):
        asset = get_asset(spec.asset)
        pin = asset.sha256 or asset.sha256_prefix
        if pin and not str(source["sha256"]).startswith(pin):
            facts.append((f"source {asset.filename} sha256", str(source["sha256"])[:16] + "...",
                          pin[:16] + "..."))
    wrong = [f"{name} {found} (suite: {want})" for name, found, want in facts if found != want]
    if wrong:
        raise AssetError(f"{what} is not suite {s.name}'s teacher: " + "; ".join(wrong),
                         hint=f"use the suite's teacher ({spec.asset or spec.packaged or 'see the suite'}) "
                              "or drop --suite")


# --------------------------------------------------------------------------------- dataset ----

def _builtin_dataset(suite: Suite, reader_options: dict[str, Any]) -> ImageDataset | None:
    """The dataset a package ships (scikit-learn's digits), opened with `reader_options`; else None."""
    if suite.dataset.name == "sklearn-digits":
        from sidbench.data.digits import DigitsDataset

        return DigitsDataset(resolution=suite.dataset.resolution, **reader_options)
    return None


def _has_images(suite: Suite) -> bool:
    return suite.dataset.num_images > 0


def _dataset_candidates(suite: Suite) -> list[str]:
    names = [suite.dataset.filename] if suite.dataset.filename else []
    return names + list(suite.settings.get("dataset_alternatives", ()))


def _missing_dataset(suite: Suite) -> AssetError:
    ident = suite.dataset
    names = _dataset_candidates(suite)
    sources = []
    for name in names:
        asset = next((a for a in ASSETS.values() if a.filename == name), None)
        if asset is not None:
            sources.append(f"{name} from {asset.url} (sha256 {pinned_hash(asset)})")
    shape = f"{ident.num_images:,} images at {ident.resolution}x{ident.resolution}"
    made = f"make {names[0]} ({shape}) with EDM's dataset_tool.py" if names and names[0].endswith(".zip") \
        else f"get {' or '.join(names)} ({shape})"
    how = "download " + " or ".join(sources) + ", or " + made if sources else made
    return AssetError(f"suite {suite.name} needs its dataset {ident.name}: {' or '.join(names)} not found "
                      f"(searched $SIDBENCH_CACHE={cache_dir()})",
                      hint=f"{how}; pass its path or put it in {cache_dir()}")


def _locate_dataset(suite: Suite, path: str | os.PathLike | None, required: bool) -> Path | None:
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            expected = suite.dataset.filename or suite.dataset.name
            raise DatasetError(f"dataset path {p} does not exist",
                               hint=f"give suite {suite.name}'s dataset ({expected})")
        return p
    if not _has_images(suite) or suite.dataset.filename is None:
        return None  # no image dataset (toy2d), or one a package ships (digits)
    for name in _dataset_candidates(suite):
        candidate = cache_dir() / name
        if candidate.exists():
            return candidate
    if required:
        raise _missing_dataset(suite)
    return None


def check_suite_dataset(suite: Suite | str, path: str | os.PathLike | None = None,
                        **reader_options: Any) -> ImageDataset:
    """Open the suite's dataset (at `path`, in the cache, or the packaged one) and refuse it if it is not
    the suite's: image count, resolution, channels, label count, sha256 where pinned.

    `reader_options` go to `sidbench.data.open_dataset` (xflip, max_size, ...). Labels are
    read only for a class-conditional suite unless `use_labels` is given (CIFAR-10's zip
    carries labels that the unconditional suite ignores). Returns the opened dataset.
    """
    s = _suite(suite)
    if not _has_images(s):
        raise ConfigError(f"suite {s.name} has no image dataset ({s.dataset.name}: "
                          f"{s.description})", hint="its data is generated; nothing to open")
    options = dict(reader_options)
    options.setdefault("use_labels", s.label_dim > 0)
    located = _locate_dataset(s, path, required=False)
    if located is None:
        dataset = _builtin_dataset(s, options)
        if dataset is None:
            raise _missing_dataset(s)
    else:
        from sidbench.data import open_dataset

        dataset = open_dataset(located, **options)
    try:
        check_dataset(dataset, s.dataset)
    except BaseException:
        dataset.close()
        raise
    return dataset


# ---------------------------------------------------------------------- reference statistics ----

def _fid_protocols(suite: Suite) -> list[Any]:
    from sidbench.metrics.protocols import get_protocol

    return [p for p in (get_protocol(name) for name in suite.protocols) if p.metric == "fid"]


def _feature_dim(protocol: Any) -> int | None:
    from sidbench.metrics.extractors import extractor_class

    dims = getattr(extractor_class(protocol.extractor), "feature_dims", {}) or {}
    return dims.get(protocol.feature_key)


def check_reference(suite: Suite | str, path: str | os.PathLike) -> Any:
    """Load reference statistics and refuse them if they are not the suite's FID reference.

    Checked: the suite's pinned sha256 (its ref-stats asset), the feature dimension of
    each FID protocol's extractor layer, and, where the file records them (statistics
    written by sidbench), the extractor, feature layer, image count and dataset sha256.
    Returns the `sidbench.metrics.reference.ReferenceStats`.
    """
    from sidbench.metrics.reference import load_reference

    s = _suite(suite)
    p = Path(path).expanduser()
    if s.ref_stats in ASSETS:
        asset = ASSETS[s.ref_stats]
        resolve_asset(s.ref_stats, p, verify=bool(asset.sha256 or asset.sha256_prefix))  # missing / pin
    if is_cached_file(s, p):
        verify_cached(s, p)  # computed once by `sidbench refstats`: the bytes its sidecar records
    protocols = _fid_protocols(s)
    if not protocols:
        raise ConfigError(f"suite {s.name} has no FID protocol, so no reference statistics file applies",
                          hint="drop the reference statistics, or the suite")
    ref = load_reference(p)
    meta = ref.meta
    wrong = []
    for proto in protocols:
        dim = _feature_dim(proto)
        if dim and ref.dim != dim:
            wrong.append(f"{ref.dim}-d features ({proto.name}: {dim}-d {proto.extractor} "
                         f"'{proto.feature_key}')")
            break
    proto = protocols[0]
    extractor = meta.get("extractor")
    extractor = extractor.get("name") if isinstance(extractor, Mapping) else extractor
    if extractor and extractor != proto.extractor:
        wrong.append(f"extractor {extractor} ({proto.name}: {proto.extractor})")
    key = meta.get("feature_key")
    if key and key != proto.feature_key:
        wrong.append(f"feature layer '{key}' ({proto.name}: '{proto.feature_key}')")
    if ref.num_images is not None and ref.num_images != s.dataset.num_images:
        wrong.append(f"{ref.num_images:,} images (suite dataset {s.dataset.name}: {s.dataset.num_images:,})")
    found_sha = meta.get("dataset_sha256")
    if found_sha and s.dataset.sha256 and found_sha != s.dataset.sha256:
        wrong.append(f"dataset sha256 {str(found_sha)[:16]}... (suite: {s.dataset.sha256[:16]}...)")
    if wrong:
        raise AssetError(f"{p} is not suite {s.name}'s reference statistics: it has " + "; ".join(wrong),
                         hint=_ref_hint(s))
    return ref


def _ref_hint(suite: Suite) -> str:
    if suite.ref_stats in ASSETS:
        asset = ASSETS[suite.ref_stats]
        return f"use {asset.filename} from {asset.url}"
    if suite.ref_stats is not None:
        return f"use the shipped {packaged_path(suite.ref_stats, must_exist=False)}"
    if cache_name(suite) is not None:
        target = cached_path(suite)  # a file that is there but wrong is replaced with --force
        command = compute_command(suite, force=target.is_file())
        return f"compute them once with `{command}` (writes {target} and its sha256)"
    protocol = _fid_protocols(suite)[0].name
    return f"compute it with `sidbench refstats DATASET --protocol {protocol} --out STATS.npz`"


def _locate_ref(suite: Suite, path: str | os.PathLike | None, required: bool) -> Path | None:
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise AssetError(f"reference statistics file {p} not found", hint=_ref_hint(suite))
        return p
    if suite.ref_stats in ASSETS:
        asset = ASSETS[suite.ref_stats]
        candidate = cache_dir() / asset.filename
        if candidate.is_file() or required:
            return resolve_asset(suite.ref_stats, verify=False)  # missing -> AssetError with URL and hash
        return None
    if suite.ref_stats is not None:
        return packaged_path(suite.ref_stats)
    if cache_name(suite) is not None:  # computed once by `sidbench refstats`, cached with its sha256
        cached = cached_path(suite)
        if not cached.is_file():
            if required:
                raise AssetError(f"suite {suite.name}'s reference statistics are computed from its dataset, "
                                 f"not published: {cached} not found", hint=_ref_hint(suite))
            return None
        if required:
            verify_cached(suite, cached)
        return cached
    if required:
        if not _fid_protocols(suite):
            why = "its reference is exact" if suite.settings.get("exact_reference") else "no FID protocol"
            raise ConfigError(f"suite {suite.name} has no reference statistics file ({why})",
                              hint="nothing to pass")
        raise AssetError(f"suite {suite.name}'s reference statistics are not published: they are computed "
                         "from its dataset", hint=_ref_hint(suite) + " and pass the file")
    return None


# --------------------------------------------------------------------------------- together ----

@dataclass(frozen=True)
class SuiteAssets:
    """The files a run under `suite` uses; None where not found and not needed.

    `dataset` is also None when the suite's dataset ships with a package (digits) or
    is generated (toy2d): open it with `check_suite_dataset(suite, assets.dataset)`.
    """

    suite: Suite
    teacher: Path | None
    ref_stats: Path | None
    dataset: Path | None


def resolve_suite(name: Suite | str, *, teacher: str | os.PathLike | None = None,
                  ref: str | os.PathLike | None = None, dataset: str | os.PathLike | None = None,
                  need: Iterable[str] = (), check: bool = True) -> SuiteAssets:
    """Find suite `name`'s teacher, reference statistics and dataset; explicit arguments win.

    `need` lists what the caller cannot run without ("teacher", "ref" or "ref_stats", "dataset"): each
    one not found is an AssetError with the file name, URL and hash to put where. With
    `check`, the teacher (`check_teacher`) and the reference statistics (`check_reference`)
    found are checked against the suite; the dataset is only located here, and checked
    when it is opened with `check_suite_dataset`.
    """
    s = _suite(name)
    needed = {_NEED_ALIASES.get(n, n) for n in need}
    unknown = sorted(needed - set(NEEDS))
    if unknown:
        raise ConfigError(f"unknown need {unknown[0]!r}.{suggest(unknown[0], list(NEEDS))}",
                          hint=f"need is any of {', '.join(NEEDS)}")
    teacher_path: Path | None = None
    if teacher is not None and s.teacher.preconditioner is None:  # e.g. SD 1.5: a diffusers folder
        teacher_path = Path(teacher).expanduser()
        if not teacher_path.exists():
            raise AssetError(f"teacher path {teacher_path} does not exist",
                             hint=f"pass suite {s.name}'s teacher folder ({s.settings.get('teacher', '')})")
    elif teacher is not None:
        teacher_path = resolve_network(teacher)
    elif "teacher" in needed:
        teacher_path = _suite_teacher(s)
    else:
        try:
            teacher_path = _suite_teacher(s)
        except (AssetError, ConfigError):
            teacher_path = None
    ref_path = _locate_ref(s, ref, "ref" in needed)
    data_path = _locate_dataset(s, dataset, "dataset" in needed)
    if "dataset" in needed and data_path is None and s.dataset.filename is None and not _has_images(s):
        raise ConfigError(f"suite {s.name} has no image dataset ({s.dataset.name})",
                          hint="its data is generated; nothing to pass")
    if check:
        if teacher_path is not None and s.teacher.preconditioner is not None:
            from sidbench.nets.native import read_network_record

            check_teacher(s, read_network_record(teacher_path), where=f"teacher {teacher_path}")
        if ref_path is not None:
            check_reference(s, ref_path)
    return SuiteAssets(suite=s, teacher=teacher_path, ref_stats=ref_path, dataset=data_path)
