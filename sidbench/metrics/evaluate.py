"""evaluate(): images -> features -> every metric asked for, under named protocols. Orchestration only.

Each step is a module of its own: `selection` (metric names, protocol per metric), `preprocess`
(crop/resize), `reference_inputs` (npz statistics or reference images), `extraction` (one pass,
exact statistics), the registered metric objects (`sidbench.metrics.builtin` and plugins:
features -> numbers), `conformance` (how the run differs from its protocol) and `headline`
(seed sets -> one number). Adding a metric touches none of them: register a `Metric`.

The result is a JSON-ready dict whose `metrics` entries each carry their value, protocol name +
version, image count, extractor and reference sha256, and the run's deviations from the protocol.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from sidbench.devices import parse_device
from sidbench.errors import ConfigError
from sidbench.metrics.catalog import canonical_name, get_metric
from sidbench.metrics.conformance import captions_sha256, deviations
from sidbench.metrics.extraction import FeatureNeeds, extract_stats
from sidbench.metrics.extractors import FeatureExtractor, build_extractor
from sidbench.metrics.headline import check_applicable, combine
from sidbench.metrics.image_source import ImageSource, open_images
from sidbench.metrics.metric import Metric, MetricInputs
from sidbench.metrics.preprocess import protocol_transform
from sidbench.metrics.protocols import Protocol, get_protocol, protocol_from_options
from sidbench.metrics.reference import check_reference_psd
from sidbench.metrics.reference_inputs import ARR_0, image_source, is_npz, load_statistics
from sidbench.metrics.selection import default_protocols, parse_metrics, resolve_protocols
from sidbench.metrics.stats import FeatureStats

FORMAT = "sidbench.eval"
FORMAT_VERSION = 1

__all__ = ["FORMAT", "FORMAT_VERSION", "compute_reference", "default_protocols", "evaluate",
           "evaluate_seed_sets", "parse_metrics", "resolve_protocols"]

Weights = Mapping[str, "str | os.PathLike | None"]


def _overrides(options: Mapping[str, Mapping[str, Any]] | None, chosen: Mapping[str, Protocol]
               ) -> dict[str, dict[str, Any]]:
    """metric (aliases resolved) -> option overrides, refused for metrics that are not computed."""
    out: dict[str, dict[str, Any]] = {}
    for raw, opts in (options or {}).items():
        m = canonical_name(raw)
        if m not in chosen:
            raise ConfigError(f"options given for metric '{raw}', which is not computed")
        out.setdefault(m, {}).update(dict(opts))
    return out


def _captions(captions: Sequence[str] | str | os.PathLike | None) -> Sequence[str] | None:
    """A captions file is read (its sha256 kept); a list is used as given."""
    if isinstance(captions, (str, os.PathLike)):
        from sidbench.data.coco import read_captions

        return read_captions(captions, expect_pinned=False)
    return captions


def _build_extractors(chosen: Mapping[str, Protocol], given: Mapping[str, FeatureExtractor] | None,
                      weights: Weights | None, extractor_options: Mapping[str, Mapping[str, Any]] | None,
                      device: torch.device) -> dict[str, FeatureExtractor]:
    built = dict(given or {})
    for p in chosen.values():
        if p.extractor not in built:
            built[p.extractor] = build_extractor(p.extractor, (weights or {}).get(p.extractor), device,
                                                 **dict((extractor_options or {}).get(p.extractor, {})))
    return built


def evaluate(
    images: Any,
    ref: Any = None,
    metrics: str | Sequence[str] = ("fid", "is", "kid", "pr"),
    protocols: str | Sequence[str] | Mapping[str, str] | None = None,
    *,
    ref_images: Any = None,
    weights: Weights | None = None,
    extractors: Mapping[str, FeatureExtractor] | None = None,
    extractor_options: Mapping[str, Mapping[str, Any]] | None = None,
    captions: Sequence[str] | str | os.PathLike | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    num_images: int | None = None,
    subset: str | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Compute `metrics` of `images` against `ref` and return a JSON-ready result.

    images: folder/zip of PNGs, dataset path or object, uint8 tensor, or ImageSource; `num_images`
        limits it under `subset` ("first" / "edm-seeded"; default per kind, see `open_images`).
    ref: reference statistics .npz (FID) or reference images (dataset path/object, tensor);
        `ref_images` gives the images KID and P/R need when `ref` is an npz without `arr_0`.
    protocols: protocol names replacing the per-metric defaults (`default_protocols`).
    weights: extractor name -> weights file (else `$SIDBENCH_CACHE`); `extractors` passes built ones;
        `extractor_options`: extractor name -> constructor options (e.g. {"channels_last": True}).
    captions: caption i of image i (a list, or the captions file: its sha256 is then checked).
    options: metric -> protocol options to override (e.g. a smaller KID subset size for few images);
        only options the metric reads may change, and the result then says `"protocol_overridden": true`.
    """
    device = parse_device(device)
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    metric_list = parse_metrics(metrics)
    chosen = resolve_protocols(metric_list, protocols)
    impls: dict[str, Metric] = {m: get_metric(m) for m in chosen}
    overrides = _overrides(options, chosen)
    run_options = {m: protocol_from_options(p, overrides.get(m, {})) for m, p in chosen.items()}
    captions = _captions(captions)
    transform = protocol_transform(chosen)
    built = _build_extractors(chosen, extractors, weights, extractor_options, device)

    npz_stats = {}  # metric -> ReferenceStats, checked before any image is read
    gen_needs: dict[str, FeatureNeeds] = {}
    ref_needs: dict[str, FeatureNeeds] = {}
    for m, p in chosen.items():
        metric = impls[m]
        gen_needs.setdefault(p.extractor, FeatureNeeds()).add(p.feature_key, metric.keep_features)
        if metric.reference == "stats" and is_npz(ref):
            npz_stats[m] = load_statistics(ref, metric, p, built[p.extractor], run_options[m],
                                           check_psd=False)
        elif metric.reference != "none":
            keep = metric.reference == "features"
            ref_needs.setdefault(p.extractor, FeatureNeeds()).add(p.feature_key, keep)

    source = open_images(images, num_images, subset=subset)
    if transform is not None:
        source.transform = transform
    ref_source, ref_kind = None, None
    if ref_needs:
        needed_by = ", ".join(m for m in chosen if impls[m].reference != "none" and m not in npz_stats)
        ref_source, ref_kind = image_source(ref, ref_images, needed_by)
        if transform is not None:
            ref_source.transform = transform
    # The reference's symmetry/PSD test (~0.3 s at 2048-d) runs while the first batch is extracted
    # and is waited for after it: a meaningless reference still fails within one batch.
    psd_pool = ThreadPoolExecutor(1, thread_name_prefix="sidbench-refcheck")
    psd_checks = [psd_pool.submit(check_reference_psd, s) for s in npz_stats.values()]
    psd_pool.shutdown(wait=False)

    def reference_checked() -> None:
        for check in psd_checks:
            check.result()

    try:
        gen = extract_stats(source, built, gen_needs, batch_size, "generated images",
                            after_first_batch=reference_checked)
        reference_checked()  # also when there was no batch
        ref_stats: dict[tuple[str, str], FeatureStats] = {}
        if ref_source is not None:
            ref_stats = extract_stats(ref_source, built, ref_needs, batch_size, "reference images")
    finally:  # close what was opened here; a caller's ImageSource stays theirs
        for opened, given in ((source, images), (ref_source, ref_images if ref_images is not None else ref)):
            if opened is not None and opened is not given:
                opened.close()
    n = gen[next(iter(gen))].num

    ref_record: dict[str, Any] = {}
    npz_sha = None
    if ref_source is not None:
        ref_record["images"] = ref_source.describe()
        if ref_kind == ARR_0:
            ref_record["images"]["from"] = f"{ref}: arr_0"
    if npz_stats or ref_kind == ARR_0:
        from sidbench.fileio import sha256_file

        npz_sha = sha256_file(ref)
    if npz_stats:
        first = next(iter(npz_stats.values()))
        ref_record.update({"path": str(ref), "sha256": npz_sha, "num_images": first.num_images})

    caption_sha = captions_sha256(captions)
    seeds = getattr(source, "seeds", None)
    result_metrics: dict[str, Any] = {}
    for m, p in chosen.items():
        metric, ext = impls[m], built[p.extractor]
        key = (p.extractor, p.feature_key)
        ref_feats = ref_stats.get(key) if m not in npz_stats and metric.reference != "none" else None
        inputs = MetricInputs(protocol=p, options=run_options[m], features=gen[key], extractor=ext,
                              reference=ref_feats, reference_stats=npz_stats.get(m), captions=captions)
        entries = metric.compute(inputs)
        if set(entries) != set(metric.keys()):
            raise ConfigError(f"metric '{m}' returned entries {sorted(entries)}, "
                              f"it declares {list(metric.keys())}")
        ref_info: dict[str, Any] = {}
        if metric.reference != "none":
            kind = "stats" if m in npz_stats else ref_kind
            count = npz_stats[m].num_images if m in npz_stats else ref_feats.num  # type: ignore[union-attr]
            ref_info = {"reference": kind, "reference_images": count}
        devs = deviations(p, num_images=n, overrides=overrides.get(m, {}), extractor=ext.name, seeds=seeds,
                          captions=caption_sha, **ref_info)
        common = {
            "protocol": {"name": p.name, "version": p.version},
            "metric_version": metric.version,
            "protocol_overridden": bool(overrides.get(m)),
            "protocol_num_images": p.num_images,
            # the number can be compared with the protocol's published ones only when this is true
            "full_protocol": not devs,
            "protocol_deviations": devs,
            "num_images": n,
            "extractor": ext.name,
            "extractor_sha256": ext.weights_sha256,
            "extractor_official": ext.weights_official,
            "feature_key": p.feature_key,
            "dtype": "float32",
            "tf32": False,
            "lower_is_better": p.lower_is_better,
        }
        if metric.reference != "none":
            common["reference_sha256"] = npz_sha if ref_info["reference"] in ("stats", ARR_0) else None
        if p.option("captions_sha256"):
            common["captions_sha256"] = caption_sha
        for name, fields in entries.items():
            result_metrics[name] = {**common, **fields}

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "images": source.describe(),
        "num_images": n,
        "reference": ref_record,
        "extractors": {name: e.describe() for name, e in built.items()},
        "device": str(device),
        "tf32": False,
        "metrics": result_metrics,
    }


def _seed_sets(seed_sets: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    out = []
    for item in seed_sets:
        try:
            lo, hi = (int(v) for v in item)
        except (TypeError, ValueError):
            raise ConfigError(f"seed set {item!r} is not a (first, last) pair of integers",
                              hint="e.g. [(0, 49999), (50000, 99999)]") from None
        if lo < 0 or hi < lo:
            raise ConfigError(f"seed set {lo}-{hi} is empty or negative", hint="first <= last, both >= 0")
        out.append((lo, hi))
    return out


def evaluate_seed_sets(
    render: Any,
    seed_sets: Sequence[tuple[int, int]],
    ref: Any = None,
    metrics: str | Sequence[str] = ("fid",),
    protocols: str | Sequence[str] | Mapping[str, str] | None = None,
    *,
    weights: Weights | None = None,
    extractors: Mapping[str, FeatureExtractor] | None = None,
    extractor_options: Mapping[str, Mapping[str, Any]] | None = None,
    device: str | torch.device = "cpu",
    description: dict | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a generator on several seed sets (inclusive ranges) and combine them by protocol rule.

    EDM's protocol reports the minimum FID over seeds 0-49999, 50000-99999 and 100000-149999;
    every value is kept (`values`), the rule is stored (`headline`). Metrics whose protocol names
    no rule report the mean; "single" takes exactly one seed set and "best-checkpoint" (a training
    run's best) is refused here, before any image is made.
    """
    from sidbench.metrics.image_source import GeneratorImageSource

    sets = _seed_sets(seed_sets)
    device = parse_device(device)
    metric_list = parse_metrics(metrics)
    chosen = resolve_protocols(metric_list, protocols)
    for p in chosen.values():
        check_applicable(p, len(sets))
    built = _build_extractors(chosen, extractors, weights, extractor_options, device)  # once, for every set
    runs = [evaluate(GeneratorImageSource(render, range(lo, hi + 1), description), ref, metric_list,
                     protocols, extractors=built, device=device, **kwargs) for lo, hi in sets]
    out = runs[0]
    by_key = {key: m for m in chosen for key in get_metric(m).keys()}  # noqa: SIM118 (Metric.keys)
    for key, entry in out["metrics"].items():
        p = chosen[by_key[key]]
        values = [r["metrics"][key]["value"] for r in runs]
        rule, head = combine(p, values)
        devs = list(dict.fromkeys(d for r in runs for d in r["metrics"][key]["protocol_deviations"]))
        entry.update({"value": head, "values": values, "headline": rule,
                      "seed_sets": [[lo, hi] for lo, hi in sets],
                      "num_images": sum(r["metrics"][key]["num_images"] for r in runs),
                      "protocol_deviations": devs, "full_protocol": not devs})
        if "value_raw" in entry:
            entry["values_raw"] = [r["metrics"][key]["value_raw"] for r in runs]
            del entry["value_raw"]
        if len(values) > 1 and rule == "mean":
            entry["std_over_seed_sets"] = float(np.std(values))
    out["images"] = {**out["images"], "seed_sets": [[lo, hi] for lo, hi in sets]}
    return out


def compute_reference(
    dataset: Any,
    out_npz: str | os.PathLike,
    protocol: str = "edm-fid50k",
    *,
    extractor: FeatureExtractor | None = None,
    weights_path: str | os.PathLike | None = None,
    max_images: int | None = None,
    subset: str | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Reference statistics (mu, sigma) of a dataset for `protocol`'s extractor, layer and preprocessing.

    More images than `max_images` -> the `subset` policy (default EDM's seeded subset:
    RandomState(0), sorted). The covariance follows the protocol's `reference_cov` (unbiased by
    default). The npz stays readable by EDM's fid.py and records the dataset sha256, count,
    extractor and protocol.
    """
    from sidbench.metrics.image_source import DatasetImageSource
    from sidbench.metrics.metric import choice_option
    from sidbench.metrics.reference import save_reference

    p = get_protocol(protocol)
    metric = get_metric(p.metric)
    if metric.reference != "stats":
        raise ConfigError(f"protocol {p.name} is a {p.metric} protocol; reference statistics serve metrics "
                          "that compare mean and covariance (FID)", hint="use e.g. --protocol edm-fid50k")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    ref_cov = choice_option(p.options, "reference_cov", "unbiased", ("unbiased", "biased"))
    if isinstance(dataset, (str, os.PathLike)):
        from sidbench.data import open_dataset

        dataset = open_dataset(dataset, use_labels=False)
    if isinstance(dataset, ImageSource):
        source = dataset
    else:
        source = DatasetImageSource(dataset, max_images, **({"subset": subset} if subset else {}))
    transform = protocol_transform({p.metric: p})
    if transform is not None:
        source.transform = transform
    device = parse_device(device)
    ext = extractor if extractor is not None else build_extractor(p.extractor, weights_path, device)
    needs = {p.extractor: FeatureNeeds({p.feature_key: False})}
    try:
        stats = extract_stats(source, {p.extractor: ext}, needs, batch_size,
                              "reference images")[(p.extractor, p.feature_key)]
    finally:
        if source is not dataset:
            source.close()
    desc = source.describe()
    meta = {
        "format": "sidbench.refstats", "protocol": p.name, "protocol_version": p.version,
        "feature_key": p.feature_key, "extractor": ext.name, "extractor_sha256": ext.weights_sha256,
        "extractor_info": ext.describe(), "num_images": stats.num,
        "dataset": desc.get("dataset", desc.get("kind")),
        "dataset_info": desc, "dataset_sha256": desc.get("dataset_sha256"), "cov": ref_cov,
    }
    import sidbench.distributed as distributed

    if distributed.rank() == 0:
        save_reference(out_npz, stats, meta, unbiased=ref_cov == "unbiased")
    return meta
