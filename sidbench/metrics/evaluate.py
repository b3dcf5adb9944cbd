"""evaluate(): images -> features -> FID / IS / KID / precision-recall / CLIP score, under named protocols.

One pass over the images feeds every extractor the chosen protocols need; each
(extractor, feature key) accumulates exact streaming statistics (FeatureStats),
keeping raw features only where a metric needs them (IS logits, KID, P/R). Each
process extracts its own shard (image i -> rank i % world) and the statistics are
summed across processes, so the numbers do not depend on batch size or process
count. The result is a JSON-ready dict whose `metrics` entries each carry their
value, protocol name + version, image count, extractor and reference sha256.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidbench.errors import ConfigError
from sidbench.metrics.extractors import FeatureExtractor, build_extractor, extractor_names
from sidbench.metrics.image_source import ImageSource, TensorImageSource, open_images
from sidbench.metrics.protocols import Protocol, get_protocol
from sidbench.metrics.stats import FeatureStats
from sidbench.registry import suggest

FORMAT = "sidbench.eval"
FORMAT_VERSION = 1
METRICS = ("fid", "is", "kid", "pr", "clip_score")
ALIASES = {"precision": "pr", "recall": "pr", "prc": "pr", "isc": "is", "clip": "clip_score"}
DEFAULT_PROTOCOLS = {"fid": "edm-fid50k", "is": "is-10split", "kid": "kid-100x1000", "pr": "pr-vgg16",
                     "clip_score": "clip-score-vitg14"}


def parse_metrics(metrics: str | Sequence[str]) -> list[str]:
    """'fid,is' or ['fid', 'is'] -> canonical metric names; unknown names get a suggestion."""
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    out: list[str] = []
    for raw in items:
        m = raw.strip().lower()
        if not m:
            continue
        m = ALIASES.get(m, m)
        if m not in METRICS:
            raise ConfigError(f"unknown metric '{raw.strip()}'.{suggest(raw.strip(), list(METRICS))}",
                              hint=f"choose from {', '.join(METRICS)}")
        if m not in out:
            out.append(m)
    if not out:
        raise ConfigError("no metric asked for", hint=f"choose from {', '.join(METRICS)}")
    return out


def resolve_protocols(metrics: Sequence[str], protocols: str | Sequence[str] | Mapping[str, str] | None
                      ) -> dict[str, Protocol]:
    """metric -> Protocol: named protocols replace the defaults of their metric."""
    chosen = {m: DEFAULT_PROTOCOLS[m] for m in metrics}
    if protocols:
        if isinstance(protocols, Mapping):
            names = list(protocols.values())
        else:
            names = protocols.split(",") if isinstance(protocols, str) else list(protocols)
            names = [n.strip() for n in names if n.strip()]
        for name in names:
            p = get_protocol(name)
            if p.metric not in metrics:
                raise ConfigError(f"protocol '{name}' is for metric '{p.metric}', which was not asked for",
                                  hint=f"add {p.metric} to --metrics or drop the protocol")
            chosen[p.metric] = name
    return {m: get_protocol(n) for m, n in chosen.items()}


# The COCO protocols feed both image sets as 256x256 center crops (GigaGAN's evaluation); the CLIP
# protocol's options do not spell the crop out, the spec (metrics.md) does.
_IMPLIED_RESIZE = {"clip-score-vitg14": (256, "lanczos")}


def _protocol_transform(chosen: Mapping[str, Protocol]):
    """The per-image crop/resize the chosen protocols ask for (all must agree: one pass feeds all)."""
    from sidbench.metrics.image_source import center_crop_resize

    specs = {}
    for p in chosen.values():
        size = p.option("resize")
        spec = (int(size), str(p.option("resample", "lanczos"))) if size else _IMPLIED_RESIZE.get(p.name)
        specs[p.name] = spec
    if len(set(specs.values())) > 1:
        raise ConfigError(f"protocols {', '.join(specs)} preprocess images differently",
                          hint="evaluate them in separate runs")
    spec = next(iter(specs.values()))
    return center_crop_resize(*spec) if spec else None


@dataclass
class _Needs:
    """What one extractor must produce: per feature key, whether raw features are kept."""

    keep: dict[str, bool] = field(default_factory=dict)

    def add(self, key: str, keep: bool) -> None:
        self.keep[key] = self.keep.get(key, False) or keep


def extract_stats(source: ImageSource, extractors: Mapping[str, FeatureExtractor],
                  needs: Mapping[str, _Needs], batch_size: int = 64, description: str = "extracting features",
                  rank: int | None = None, world: int | None = None) -> dict[tuple[str, str], FeatureStats]:
    """One pass over this process's shard; statistics all-reduced across processes at the end."""
    from sidbench.progress import make_progress

    stats = {(name, key): FeatureStats(keep_features=keep)
             for name, need in needs.items() for key, keep in need.keep.items()}
    if rank is None or world is None:
        import sidbench.distributed as distributed

        rank, world = distributed.rank(), distributed.world_size()
    total = len(source.shard(rank, world))
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for indices, images in source.batches(batch_size, rank, world):
            for name, extractor in extractors.items():
                feats = extractor(images)
                for key in needs[name].keep:
                    if key not in feats:
                        raise ConfigError(f"extractor {name} gives no feature '{key}' "
                                          f"(it has {sorted(feats)})")
                    stats[(name, key)].update(feats[key].cpu(), indices)
            progress.advance(task, len(indices))
    for s in stats.values():
        s.all_reduce()
    return stats


def _reference_source(ref: Any, max_images: int | None = None) -> ImageSource:
    """Reference images: a dataset path/object, a tensor, or an ADM npz's arr_0 images."""
    if isinstance(ref, (str, os.PathLike)) and str(ref).endswith(".npz"):
        from sidbench.metrics.reference import reference_images

        arr = reference_images(ref)
        return TensorImageSource(torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))))
    if isinstance(ref, (str, os.PathLike)) and Path(ref).is_dir() is False and Path(ref).exists():
        from sidbench.data import open_dataset
        from sidbench.metrics.image_source import DatasetImageSource

        return DatasetImageSource(open_dataset(ref, use_labels=False), max_images)
    return open_images(ref, max_images)


def _is_npz(ref: Any) -> bool:
    return isinstance(ref, (str, os.PathLike)) and str(ref).endswith(".npz")


def evaluate(
    images: Any,
    ref: Any = None,
    metrics: str | Sequence[str] = ("fid", "is", "kid", "pr"),
    protocols: str | Sequence[str] | Mapping[str, str] | None = None,
    *,
    ref_images: Any = None,
    weights: Mapping[str, str | os.PathLike | None] | None = None,
    extractors: Mapping[str, FeatureExtractor] | None = None,
    extractor_options: Mapping[str, Mapping[str, Any]] | None = None,
    captions: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    num_images: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Compute `metrics` of `images` against `ref` and return a JSON-ready result.

    images: folder/zip of PNGs, dataset path or object, uint8 tensor, or ImageSource.
    ref: reference statistics .npz (FID) or reference images (dataset path/object, tensor);
        `ref_images` gives the images KID and P/R need when `ref` is an npz without `arr_0`.
    protocols: protocol names replacing the per-metric defaults (see `DEFAULT_PROTOCOLS`).
    weights: extractor name -> weights file (else `$SIDBENCH_CACHE`); `extractors` passes built ones;
        `extractor_options`: extractor name -> constructor options (e.g. {"channels_last": True}).
    options: metric -> protocol options to override (e.g. a smaller KID subset size for few images);
        the result then says `"protocol_overridden": true`.
    """
    metric_list = parse_metrics(metrics)
    chosen = resolve_protocols(metric_list, protocols)
    options = {k: dict(v) for k, v in (options or {}).items()}
    for m in options:
        if m not in chosen:
            raise ConfigError(f"options given for metric '{m}', which is not computed")

    transform = _protocol_transform(chosen)
    source = open_images(images, num_images)
    if transform is not None:
        source.transform = transform
    built: dict[str, FeatureExtractor] = dict(extractors or {})
    gen_needs: dict[str, _Needs] = {}
    ref_needs: dict[str, _Needs] = {}
    for m, p in chosen.items():
        keep = m in ("is", "kid", "pr", "clip_score")  # raw features needed, not only sums
        gen_needs.setdefault(p.extractor, _Needs()).add(p.feature_key, keep=keep)
        if m in ("fid", "kid", "pr") and (m != "fid" or not _is_npz(ref)):
            ref_needs.setdefault(p.extractor, _Needs()).add(p.feature_key, keep=m != "fid")
    for name in gen_needs:
        if name not in built:
            built[name] = build_extractor(name, (weights or {}).get(name), device,
                                          **dict((extractor_options or {}).get(name, {})))

    npz_ref = None
    if "fid" in chosen and _is_npz(ref):  # check the statistics before spending time on extraction
        from sidbench.metrics.reference import load_reference

        p = chosen["fid"]
        npz_ref = load_reference(ref, expected_dim=built[p.extractor].feature_dims.get(p.feature_key) or None)
        _check_reference_meta(npz_ref.meta, built[p.extractor], p, str(ref))

    gen = extract_stats(source, built, gen_needs, batch_size, "generated images")
    n = gen[next(iter(gen))].num

    ref_stats: dict[tuple[str, str], FeatureStats] = {}
    ref_record: dict[str, Any] = {}
    if ref_needs:
        ref_src_obj = ref_images if ref_images is not None else ref
        if ref_src_obj is None:
            needed = ", ".join(m for m in chosen if m in ("fid", "kid", "pr"))
            raise ConfigError(f"{needed}: no reference given",
                              hint="pass --ref (statistics .npz or images) and, for KID / P-R with an npz "
                                   "without arr_0 images, --ref-images")
        ref_source = _reference_source(ref_src_obj)
        if transform is not None:
            ref_source.transform = transform
        ref_stats = extract_stats(ref_source, {k: built[k] for k in ref_needs}, ref_needs, batch_size,
                                  "reference images")
        ref_record["images"] = ref_source.describe()

    result_metrics: dict[str, Any] = {}
    for m, p in chosen.items():
        ext = built[p.extractor]
        opts = {**dict(p.options), **options.get(m, {})}
        common = {
            "protocol": {"name": p.name, "version": p.version},
            "protocol_overridden": bool(options.get(m)),
            "protocol_num_images": p.num_images,
            # the number can be compared with the protocol's published ones only when this is true
            "full_protocol": n == p.num_images and not options.get(m),
            "num_images": n,
            "extractor": ext.name,
            "extractor_sha256": ext.weights_sha256,
            "extractor_official": ext.weights_official,
            "feature_key": p.feature_key,
            "dtype": "float32",
            "tf32": False,
            "lower_is_better": p.lower_is_better,
        }
        g = gen[(p.extractor, p.feature_key)]
        if m == "fid":
            r = ref_stats.get((p.extractor, p.feature_key))
            result_metrics["fid"] = {**common, **_fid(g, ref, npz_ref, r, opts, ref_record)}
        elif m == "is":
            from sidbench.metrics.inception_score import inception_score

            score = inception_score(g.features(), splits=int(opts.get("splits", 10)),
                                    mode=opts.get("mode", "sid"),
                                    split_size=int(opts.get("split_size", 5000)),
                                    shuffle_seed=int(opts.get("shuffle_seed", 2020)))
            result_metrics["is"] = {**common, "value": score.mean, "std": score.std,
                                    "splits": len(score.scores), "mode": score.mode}
        elif m == "kid":
            from sidbench.metrics.kid import kid

            r = ref_stats[(p.extractor, p.feature_key)]
            res = kid(g.features(), r.features(), num_subsets=int(opts.get("num_subsets", 100)),
                      subset_size=int(opts.get("subset_size", 1000)), degree=int(opts.get("degree", 3)),
                      gamma=None if opts.get("gamma") is None else float(opts["gamma"]),
                      coef0=float(opts.get("coef0", 1.0)), seed=int(opts.get("seed", 2020)))
            result_metrics["kid"] = {**common, "value": res.mean, "std": res.std,
                                     "num_subsets": len(res.values),
                                     "subset_size": int(opts.get("subset_size", 1000)),
                                     "reference_num_images": r.num}
        elif m == "pr":
            from sidbench.metrics.precision_recall import precision_recall

            r = ref_stats[(p.extractor, p.feature_key)]
            pr = precision_recall(r.features(), g.features(), k=int(opts.get("k", 3)),
                                  dtype=str(opts.get("dtype", "float32")))
            extra = {"k": pr.k, "reference_num_images": r.num}
            result_metrics["precision"] = {**common, **extra, "value": pr.precision}
            result_metrics["recall"] = {**common, **extra, "value": pr.recall}
        elif m == "clip_score":
            result_metrics["clip_score"] = {**common, **_clip(g, ext, captions, opts)}

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


def _fid(g: FeatureStats, ref: Any, npz_ref: Any, r: FeatureStats | None, opts: Mapping[str, Any],
         ref_record: dict[str, Any]) -> dict[str, Any]:
    from sidbench.fileio import sha256_file
    from sidbench.metrics.fid import fid_from_stats

    unbiased = opts.get("cov", "unbiased") != "biased"
    out: dict[str, Any] = {"cov": "unbiased" if unbiased else "biased"}
    if r is not None:
        mu2, sigma2, num2 = r.mean(), r.cov(unbiased=True), r.num
        out["reference_sha256"] = None
    elif npz_ref is not None:
        if npz_ref.dim != g.dim:
            raise ConfigError(f"{ref} holds {npz_ref.dim}-d statistics, the features are {g.dim}-d",
                              hint="use reference statistics of the same extractor and feature layer")
        mu2, sigma2, num2 = npz_ref.mu, npz_ref.sigma, npz_ref.num_images
        out["reference_sha256"] = sha256_file(ref)
        ref_record.update({"path": str(ref), "sha256": out["reference_sha256"], "num_images": num2})
    else:
        raise ConfigError("FID needs reference statistics", hint="pass --ref stats.npz or a dataset path")
    out["value"] = fid_from_stats(g.mean(), g.cov(unbiased=unbiased), mu2, sigma2)
    out["reference_num_images"] = num2
    return out


_KNOWN_EXTRACTOR_NAMES = set(extractor_names())


def _check_reference_meta(meta: Mapping[str, Any], ext: FeatureExtractor, p: Protocol, path: str) -> None:
    """Refuse statistics that say they came from another network or feature layer."""
    info = meta.get("extractor")
    theirs = meta.get("extractor_sha256") or (info.get("weights_sha256") if isinstance(info, dict) else None)
    name = info.get("name") if isinstance(info, dict) else info
    if name and name != ext.name and ext.name in _KNOWN_EXTRACTOR_NAMES:
        raise ConfigError(f"{path} was computed with extractor {name}, this run uses {ext.name}",
                          hint="use reference statistics of the protocol's extractor")
    if theirs and theirs != ext.weights_sha256:
        raise ConfigError(f"{path} was computed with extractor weights sha256 {theirs[:12]}..., "
                          f"this run uses {ext.weights_sha256[:12]}...",
                          hint="recompute the reference with `sidbench refstats` and the same weights file")
    key = meta.get("feature_key")
    if key and key != p.feature_key:
        raise ConfigError(f"{path} holds '{key}' features, protocol {p.name} uses '{p.feature_key}'")


def _clip(g: FeatureStats, ext: FeatureExtractor, captions: Sequence[str] | None,
          opts: Mapping[str, Any]) -> dict[str, Any]:
    from sidbench.metrics.clip_score import clip_score

    if captions is None:
        raise ConfigError("CLIP score needs the captions of the images", hint="pass --captions captions.txt")
    if not hasattr(ext, "encode_text"):
        raise ConfigError(f"extractor {ext.name} has no text encoder")
    img = g.features()
    if len(captions) < len(img):
        raise ConfigError(f"{len(img)} images but only {len(captions)} captions",
                          hint="image i must come from caption i")
    txt = torch.cat([ext.encode_text(list(captions[i:i + 256])) for i in range(0, len(img), 256)])
    cs = clip_score(img, txt.numpy(), scale=float(opts.get("scale", 1.0)),
                    clamp=bool(opts.get("clamp", False)))
    return {"value": cs.value, "scale": cs.scale, "clamp": cs.clamp,
            "text_prefix": getattr(ext, "prefix", "")}


def compute_reference(
    dataset: Any,
    out_npz: str | os.PathLike,
    protocol: str = "edm-fid50k",
    *,
    extractor: FeatureExtractor | None = None,
    weights_path: str | os.PathLike | None = None,
    max_images: int | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Reference statistics (mu, unbiased sigma) of a dataset for `protocol`'s extractor and layer.

    More images than `max_images` -> EDM's seeded subset (RandomState(0), sorted). The npz
    stays readable by EDM's fid.py and records the dataset sha256, count, extractor and protocol.
    """
    from sidbench.metrics.image_source import DatasetImageSource
    from sidbench.metrics.reference import save_reference

    p = get_protocol(protocol)
    if isinstance(dataset, (str, os.PathLike)):
        from sidbench.data import open_dataset

        dataset = open_dataset(dataset, use_labels=False)
    source = dataset if isinstance(dataset, ImageSource) else DatasetImageSource(dataset, max_images)
    ext = extractor if extractor is not None else build_extractor(p.extractor, weights_path, device)
    needs = {p.extractor: _Needs({p.feature_key: False})}
    stats = extract_stats(source, {p.extractor: ext}, needs, batch_size,
                          "reference images")[(p.extractor, p.feature_key)]
    desc = source.describe()
    info = ext.describe()
    meta = {
        "format": "sidbench.refstats", "protocol": p.name, "protocol_version": p.version,
        "feature_key": p.feature_key, "extractor": ext.name, "extractor_sha256": ext.weights_sha256,
        "extractor_info": info, "num_images": stats.num, "dataset": desc.get("dataset", desc.get("kind")),
        "dataset_info": desc, "dataset_sha256": desc.get("dataset_sha256"), "cov": "unbiased",
    }
    import sidbench.distributed as distributed

    if distributed.rank() == 0:
        save_reference(out_npz, stats, meta, unbiased=True)
    return meta


def evaluate_seed_sets(
    render: Any,
    seed_sets: Sequence[tuple[int, int]],
    ref: Any = None,
    metrics: str | Sequence[str] = ("fid",),
    protocols: str | Sequence[str] | Mapping[str, str] | None = None,
    *,
    weights: Mapping[str, str | os.PathLike | None] | None = None,
    extractors: Mapping[str, FeatureExtractor] | None = None,
    extractor_options: Mapping[str, Mapping[str, Any]] | None = None,
    device: str | torch.device = "cpu",
    description: dict | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a generator on several seed sets (inclusive ranges) and combine them by protocol rule.

    EDM's protocol reports the minimum FID over seeds 0-49999, 50000-99999 and
    100000-149999; every value is kept (`values`), the rule is stored (`headline`).
    Metrics without a `headline` option report the mean (and `values`).
    """
    from sidbench.metrics.image_source import GeneratorImageSource

    chosen = resolve_protocols(parse_metrics(metrics), protocols)
    built: dict[str, FeatureExtractor] = dict(extractors or {})
    for p in chosen.values():  # build once, reuse for every seed set
        if p.extractor not in built:
            built[p.extractor] = build_extractor(p.extractor, (weights or {}).get(p.extractor), device,
                                                 **dict((extractor_options or {}).get(p.extractor, {})))
    runs = []
    for lo, hi in seed_sets:
        src = GeneratorImageSource(render, range(int(lo), int(hi) + 1), description)
        runs.append(evaluate(src, ref, metrics, protocols, extractors=built, device=device, **kwargs))
    out = runs[0]
    by_metric = {"precision": "pr", "recall": "pr"}
    for key, entry in out["metrics"].items():
        p = chosen[by_metric.get(key, key)]
        values = [r["metrics"][key]["value"] for r in runs]
        rule = p.option("headline", "mean")
        if rule == "min":
            head = min(values) if p.lower_is_better else max(values)
        else:
            rule, head = "mean", float(np.mean(values))
        entry.update({"value": head, "values": values, "headline": rule,
                      "seed_sets": [[int(a), int(b)] for a, b in seed_sets],
                      "num_images": sum(r["metrics"][key]["num_images"] for r in runs)})
        if len(values) > 1 and rule == "mean":
            entry["std_over_seed_sets"] = float(np.std(values))
    out["images"] = {**out["images"], "seed_sets": [[int(a), int(b)] for a, b in seed_sets]}
    return out
