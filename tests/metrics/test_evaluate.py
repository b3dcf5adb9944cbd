"""evaluate() and the eval / refstats verbs: invariances, result fields, failure paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sidbench.errors import ConfigError
from sidbench.metrics.extractors import FeatureExtractor

sys.path.insert(0, str(Path(__file__).parent))
from _random_weights import TinyCNN, save_random_inception  # noqa: E402


class TinyExtractor(FeatureExtractor):
    """A cheap random CNN standing in for Inception ("pool" 16-d, "logits" 10-d).

    It runs one image at a time: CPU kernels are not bit-identical across batch sizes
    for small convolutions, and this test is about the pipeline (batching, sharding,
    exact sums), not about a network's kernels.
    """

    name, version, weights_sha256, input_size = "tiny", "1", "0" * 64, 0
    feature_dims = {"pool": 16, "logits": 10}

    def __init__(self):
        super().__init__("cpu")
        self.net = TinyCNN().eval()

    def _extract(self, images):
        outs = [self.net(images[i:i + 1]) for i in range(len(images))]
        return {k: torch.cat([o[k] for o in outs]) for k in ("pool", "logits")}


def _images(n: int, seed: int, shift: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 200, (n, 3, 8, 8), generator=g, dtype=torch.uint8) + shift).to(torch.uint8)


def _run(images, ref, batch_size, metrics="fid,is,kid,pr"):
    from sidbench.metrics.evaluate import evaluate

    tiny = TinyExtractor()
    return evaluate(images, ref=ref, metrics=metrics, protocols=["pr-inception-adm"],
                    extractors={"inception-v3-compat": tiny},
                    options={"kid": {"subset_size": 20, "num_subsets": 5}, "is": {"splits": 5}},
                    batch_size=batch_size)


def test_results_are_bit_identical_for_any_batch_size():
    gen, ref = _images(64, 0), _images(50, 1, shift=30)
    results = [_run(gen, ref, b)["metrics"] for b in (1, 7, 64)]
    for key in ("fid", "is", "kid", "precision", "recall"):
        values = {r[key]["value"] for r in results}
        assert len(values) == 1, (key, values)
    assert results[0]["fid"]["value"] > 0


def test_sharded_statistics_equal_single_process():
    """Ranks take i % world; summing the shards' exact statistics equals one process's."""
    from sidbench.metrics.extraction import FeatureNeeds, extract_stats
    from sidbench.metrics.image_source import TensorImageSource

    src = TensorImageSource(_images(23, 2))
    tiny = {"t": TinyExtractor()}
    needs = {"t": FeatureNeeds({"pool": True})}
    whole = extract_stats(src, tiny, needs, 5, rank=0, world=1)[("t", "pool")]
    parts = [extract_stats(src, tiny, needs, 4, rank=r, world=3)[("t", "pool")] for r in range(3)]
    assert [p.num for p in parts] == [8, 8, 7]
    merged = parts[2].merge(parts[0]).merge(parts[1])
    assert np.array_equal(merged.mean(), whole.mean()) and np.array_equal(merged.cov(), whole.cov())
    np.testing.assert_array_equal(merged.features(), whole.features())


def test_result_records_protocols_and_counts():
    res = _run(_images(40, 0), _images(30, 1), 16)
    m = res["metrics"]
    assert set(m) == {"fid", "is", "kid", "precision", "recall"}
    assert m["fid"]["protocol"] == {"name": "edm-fid50k", "version": "1.0.0"}
    assert m["precision"]["protocol"]["name"] == "pr-inception-adm"
    assert m["is"]["protocol"]["name"] == "is-10split" and m["is"]["std"] is not None
    assert m["kid"]["protocol_overridden"] and m["kid"]["subset_size"] == 20
    assert all(v["num_images"] == 40 and v["tf32"] is False for v in m.values())
    assert m["kid"]["reference_num_images"] == 30
    # generated == reference: FID ~ 0, precision = recall = 1
    same = _run(_images(40, 0), _images(40, 0), 16)["metrics"]
    assert abs(same["fid"]["value"]) < 1e-6
    assert same["precision"]["value"] == 1.0 and same["recall"]["value"] == 1.0


def test_unknown_metric_suggests_the_close_one():
    from sidbench.metrics.evaluate import parse_metrics

    assert parse_metrics("fid, IS,precision") == ["fid", "is", "pr"]
    with pytest.raises(ConfigError, match="Did you mean 'fid'"):
        parse_metrics("fdi")


def test_protocol_for_a_metric_not_asked_is_refused():
    from sidbench.metrics.evaluate import resolve_protocols

    with pytest.raises(ConfigError, match="kid"):
        resolve_protocols(["fid"], ["kid-100x1000"])
    assert resolve_protocols(["fid"], "sid-fid50k")["fid"].name == "sid-fid50k"


def test_kid_without_reference_images_says_what_to_pass(tmp_path):
    from sidbench.errors import AssetError
    from sidbench.metrics.evaluate import evaluate
    from sidbench.metrics.reference import save_reference

    save_reference(tmp_path / "ref.npz", {"mu": np.zeros(16), "sigma": np.eye(16)})
    with pytest.raises(AssetError, match="arr_0"):
        evaluate(_images(30, 0), tmp_path / "ref.npz", "fid,kid",
                 extractors={"inception-v3-compat": TinyExtractor()})


# ------------------------------------------------------------------------ CLI ----

def _write_pngs(folder: Path, images: torch.Tensor) -> None:
    from PIL import Image

    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / f"{i:06d}.png")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_random_inception(tmp_path_factory.mktemp("w") / "random-inception.pth", seed=2)


def test_cli_refstats_then_eval_writes_required_fields(tmp_path, weights):
    from sidbench.cli import main
    from sidbench.fileio import sha256_file

    ref_dir, gen_dir = tmp_path / "ref", tmp_path / "gen"
    _write_pngs(ref_dir, _images(6, 5, shift=20))
    _write_pngs(gen_dir, _images(10, 6))
    stats = tmp_path / "stats.npz"
    assert main(["refstats", str(ref_dir), "--out", str(stats), "--inception-weights", str(weights),
                 "--batch", "4"]) == 0
    out = tmp_path / "res.json"
    assert main(["eval", "--images", str(gen_dir), "--ref", str(stats), "--metrics", "fid,is",
                 "--inception-weights", str(weights), "--json", str(out), "--batch", "5"]) == 0
    res = json.loads(out.read_text())
    fid = res["metrics"]["fid"]
    assert fid["value"] > 0 and fid["num_images"] == 10
    assert fid["protocol"] == {"name": "edm-fid50k", "version": "1.0.0"}
    assert fid["extractor_sha256"] == sha256_file(weights)
    assert fid["reference_sha256"] == sha256_file(stats)
    assert fid["dtype"] == "float32" and fid["tf32"] is False
    assert res["metrics"]["is"]["value"] >= 1.0 and "std" in res["metrics"]["is"]
    # NHWC Inception: same number up to float rounding, and the result says which mode ran
    fast = tmp_path / "fast.json"
    assert main(["eval", "--images", str(gen_dir), "--ref", str(stats), "--inception-weights", str(weights),
                 "--json", str(fast), "--channels-last"]) == 0
    res_fast = json.loads(fast.read_text())
    assert res_fast["metrics"]["fid"]["value"] == pytest.approx(fid["value"], rel=1e-4)
    assert res_fast["extractors"]["inception-v3-compat"]["channels_last"] is True
    assert res["extractors"]["inception-v3-compat"]["channels_last"] is False
    # a reference from other weights is refused
    other = save_random_inception(tmp_path / "other.pth", seed=9)
    assert main(["eval", "--images", str(gen_dir), "--ref", str(stats),
                 "--inception-weights", str(other)]) == 1


def test_cli_unknown_metric_and_missing_weights(tmp_path, capsys):
    from sidbench.cli import main

    gen_dir = tmp_path / "gen"
    _write_pngs(gen_dir, _images(2, 0))
    assert main(["eval", "--images", str(gen_dir), "--ref", "x.npz", "--metrics", "fid,kdi"]) == 1
    assert "Did you mean 'kid'" in capsys.readouterr().err
    assert main(["eval", "--images", str(gen_dir), "--ref", "x.npz", "--metrics", "fid"]) == 1
    err = capsys.readouterr().err
    assert "weights-inception-2015-12-05-6726825d.pth" in err and "6726825d" in err
    assert main(["eval", "--images", str(gen_dir), "--ref", "x.npz", "--seed-sets"]) == 1
    assert "--seed-sets needs --generator" in capsys.readouterr().err


# ------------------------------------------------------------------ generator ----

def _tiny_generator(tmp_path):
    from sidbench.nets.build import build_network
    from sidbench.nets.native import save_network

    config = {"class_name": "EDMPrecond", "init_kwargs": {
        "img_resolution": 8, "img_channels": 3, "label_dim": 0, "use_fp16": False, "sigma_min": 0,
        "sigma_max": "inf", "sigma_data": 0.5, "model_type": "SongUNet", "embedding_type": "positional",
        "encoder_type": "standard", "decoder_type": "standard", "channel_mult_noise": 1,
        "resample_filter": [1, 1], "model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1,
        "attn_resolutions": [], "augment_dim": 0, "dropout": 0.0}}
    torch.manual_seed(0)
    net = build_network(config).eval()
    with torch.no_grad():  # wake up zero-initialised output layers so images depend on the net
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_network(net, config, tmp_path / "gen")
    return net, tmp_path / "gen"


def test_generator_source_image_i_depends_on_seed_i_only(tmp_path):
    from sidbench.metrics.image_source import GeneratorImageSource, onestep_renderer

    net, _ = _tiny_generator(tmp_path)
    src = GeneratorImageSource(onestep_renderer(net), [7, 3, 11, 5, 2])
    whole = torch.cat([imgs for _, imgs in src.batches(5, 0, 1)])
    ones = torch.cat([imgs for _, imgs in src.batches(1, 0, 1)])
    assert whole.dtype == torch.uint8 and whole.shape == (5, 3, 8, 8)
    assert torch.equal(whole, ones)
    assert torch.equal(src.load(np.array([2])), onestep_renderer(net)([11]))
    assert src.describe()["seeds"] == "7,3,11,5,2"


def test_cli_eval_generator_equals_eval_of_generated_files(tmp_path, weights):
    from sidbench.cli import main

    _, folder = _tiny_generator(tmp_path)
    files = tmp_path / "imgs"
    assert main(["generate", "--generator", str(folder), "--sampler", "onestep", "--num", "12",
                 "--out", str(files)]) == 0
    out_files, out_gen = tmp_path / "files.json", tmp_path / "gen.json"
    common = ["--metrics", "is", "--inception-weights", str(weights), "--batch", "5"]
    assert main(["eval", "--images", str(files), "--json", str(out_files), *common]) == 0
    assert main(["eval", "--generator", str(folder), "--num", "12", "--json", str(out_gen), *common]) == 0
    a, b = json.loads(out_files.read_text()), json.loads(out_gen.read_text())
    assert a["metrics"]["is"]["value"] == b["metrics"]["is"]["value"]
    assert b["images"]["seeds"] == "0-11" and b["metrics"]["is"]["num_images"] == 12


def test_coco_protocols_crop_and_resize_every_image():
    from PIL import Image

    from sidbench.metrics.evaluate import resolve_protocols
    from sidbench.metrics.image_source import TensorImageSource
    from sidbench.metrics.preprocess import protocol_transform as _protocol_transform

    t = _protocol_transform(resolve_protocols(["fid", "clip_score"], ["coco2014-fid30k-clean"]))
    img = np.random.RandomState(0).randint(0, 256, (3, 40, 60), dtype=np.uint8)
    out = t(img)
    direct = Image.fromarray(img[:, :, 10:50].transpose(1, 2, 0).copy()).resize((256, 256), Image.LANCZOS)
    np.testing.assert_array_equal(out, np.asarray(direct).transpose(2, 0, 1))
    src = TensorImageSource(torch.from_numpy(img[None]))
    src.transform = t
    assert src.load(np.array([0])).shape == (1, 3, 256, 256)
    assert _protocol_transform(resolve_protocols(["fid"], None)) is None
    with pytest.raises(ConfigError, match="separate runs"):
        _protocol_transform(resolve_protocols(["fid", "clip_score"], None))


# ------------------------------------------------------------- 2 gloo processes ----

def _eval_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=world)
    try:
        res = _run(_images(37, 0), _images(29, 1, shift=30), 4)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(res["metrics"], sort_keys=True))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.distributed
def test_two_processes_give_the_single_process_numbers(tmp_path):
    """Each rank extracts images i % 2 == rank; all-reduced statistics give identical metrics."""
    single = _run(_images(37, 0), _images(29, 1, shift=30), 16)["metrics"]
    torch.multiprocessing.spawn(_eval_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                                join=True)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for key in ("fid", "is", "kid", "precision", "recall"):
            assert got[key]["value"] == single[key]["value"], key
            assert got[key]["num_images"] == 37


def test_clip_score_through_evaluate(tmp_path):
    """CLIP score: 256 center crop, open_clip preprocessing, prefixed captions, mean cosine."""
    import open_clip
    from PIL import Image

    from sidbench.metrics.evaluate import evaluate
    from sidbench.metrics.extractors.clip import ClipExtractor

    cfg = {"embed_dim": 8, "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8,
                                          "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "sidbench-tiny-clip-eval.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfg")
    torch.manual_seed(1)
    model, _, preprocess = open_clip.create_model_and_transforms("sidbench-tiny-clip-eval", pretrained=None)
    torch.save(model.state_dict(), tmp_path / "clip.pt")
    ext = ClipExtractor("sidbench-tiny-clip-eval", tmp_path / "clip.pt")
    images = _images(4, 3)[:, :, :, :6].repeat(1, 1, 4, 4)  # 32 x 24: not square
    captions = ["a", "b c", "dog", "an image of four words"]
    res = evaluate(images, metrics="clip_score", extractors={"open-clip-vitg14": ext}, captions=captions)
    cs = res["metrics"]["clip_score"]
    tok = open_clip.get_tokenizer("sidbench-tiny-clip-eval")
    crops = [Image.fromarray(im.permute(1, 2, 0).numpy()[4:28]).resize((256, 256), Image.LANCZOS)
             for im in images]
    with torch.no_grad():
        ie = model.eval().encode_image(torch.stack([preprocess(c) for c in crops]))
        te = model.encode_text(tok(["A photo depicts " + c for c in captions]))
    direct = torch.nn.functional.cosine_similarity(ie.double(), te.double()).mean().item()
    assert cs["value"] == pytest.approx(direct, rel=1e-6)
    assert cs["protocol"]["name"] == "clip-score-vitg14" and cs["text_prefix"] == "A photo depicts "
    assert res["images"]["transform"] == "center-crop+lanczos-256"
    with pytest.raises(ConfigError, match="captions"):
        evaluate(images, metrics="clip_score", extractors={"open-clip-vitg14": ext})


def test_seed_sets_keep_every_value_and_apply_the_headline_rule(tmp_path):
    from sidbench.metrics.evaluate import evaluate, evaluate_seed_sets
    from sidbench.metrics.image_source import GeneratorImageSource, onestep_renderer

    net, _ = _tiny_generator(tmp_path)
    render = onestep_renderer(net)
    tiny = {"inception-v3-compat": TinyExtractor()}
    ref = _images(30, 1)
    sets = [(0, 11), (12, 23), (24, 35)]
    res = evaluate_seed_sets(render, sets, ref, "fid,is", extractors=tiny, options={"is": {"splits": 3}})
    singles = [evaluate(GeneratorImageSource(render, range(a, b + 1)), ref, "fid,is", extractors=tiny,
                        options={"is": {"splits": 3}})["metrics"] for a, b in sets]
    fid, isc = res["metrics"]["fid"], res["metrics"]["is"]
    assert fid["values"] == [s["fid"]["value"] for s in singles]
    assert fid["headline"] == "min" and fid["value"] == min(fid["values"]) and fid["num_images"] == 36
    assert isc["headline"] == "mean" and isc["value"] == pytest.approx(np.mean(isc["values"]))
    assert len(set(fid["values"])) == 3  # different seeds, different images


# ------------------------------------------------------------------- plugins ----

@pytest.fixture
def plugin_metric(monkeypatch):
    """The `sidbench.metrics` entry points as if an outside package registered `_plugin_metric`."""
    from importlib.metadata import EntryPoint

    from sidbench import registry

    real = registry.entry_points
    plugin = [EntryPoint("mean_norm", "_plugin_metric:MEAN_NORM", "sidbench.metrics"),
              EntryPoint("broken_metric", "no_such_module_abc:X", "sidbench.metrics")]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [*real(group=group), *(e for e in plugin if e.group == group)])
    for attr in ("_items", "_sources", "broken"):
        monkeypatch.setattr(registry.METRICS, attr, dict(getattr(registry.METRICS, attr)))
    monkeypatch.setattr(registry.METRICS, "_loaded", False)
    return registry.METRICS


def test_a_plugin_metric_is_listed_and_evaluated(plugin_metric, capsys):
    from sidbench.cli import main
    from sidbench.metrics.evaluate import evaluate, parse_metrics
    from sidbench.metrics.protocols import get_protocol

    assert parse_metrics("fid,mean_norm") == ["fid", "mean_norm"]
    assert get_protocol("mean-norm-tiny").metric == "mean_norm"
    images = _images(12, 4)
    res = evaluate(images, metrics="mean_norm", extractors={"inception-v3-compat": TinyExtractor()},
                   options={"mean_norm": {"power": 2}})
    entry = res["metrics"]["mean_norm"]
    feats = TinyExtractor()(images)["pool"].double().numpy()
    assert entry["value"] == pytest.approx(float((np.linalg.norm(feats, axis=1) ** 2).mean()), rel=1e-6)
    assert entry["protocol"] == {"name": "mean-norm-tiny", "version": "0.1.0"}
    assert entry["metric_version"] == "0.1.0"
    assert entry["protocol_overridden"] and "extractor tiny, the protocol uses inception-v3-compat" in \
        entry["protocol_deviations"]
    assert main(["ls", "metrics"]) == 0
    out = capsys.readouterr().out
    for name in ("fid", "kid", "clip_score", "mean_norm", "broken_metric"):
        assert name in out
    assert "0.1.0" in out and "BROKEN" in out
    with pytest.raises(ConfigError, match="broken_metric.*failed to load"):
        parse_metrics("broken_metric")


def test_builtin_metrics_are_registered_through_entry_points():
    """The project's metrics take the route a plugin takes (pyproject's `sidbench.metrics` group)."""
    from importlib.metadata import entry_points

    from sidbench.metrics.builtin import BUILTIN
    from sidbench.metrics.protocols import get_protocol
    from sidbench.registry import METRICS

    eps = {ep.name: ep for ep in entry_points(group="sidbench.metrics")}
    assert set(BUILTIN) == {"fid", "is", "kid", "pr", "clip_score", "prompt_alignment"} <= set(eps)
    for name, metric in BUILTIN.items():
        assert eps[name].load() is metric is METRICS.get(name) and METRICS.source(name) == "sidbench"
        assert metric.version and metric.description and get_protocol(metric.default_protocol).metric == name
    assert not METRICS.broken


# ------------------------------------------------------- headline rules, deviations ----

def _never_render(seeds):
    raise AssertionError("no image may be made before the headline rule is checked")


@pytest.mark.parametrize(("protocol", "sets", "message"), [
    ("sid-fid50k", [(0, 9)], "best checkpoint of a training run"),
    ("digits-fd", [(0, 9), (10, 19)], "reports a single seed set, 2 were given"),
])
def test_headline_rules_that_cannot_apply_are_refused_before_any_work(protocol, sets, message):
    from sidbench.metrics.evaluate import evaluate_seed_sets

    tiny = {"inception-v3-compat": TinyExtractor(), "digits-classifier": TinyExtractor()}
    with pytest.raises(ConfigError, match=message):
        evaluate_seed_sets(_never_render, sets, _images(10, 1), "fid", protocol, extractors=tiny)


@pytest.mark.parametrize("sets", [[(5, 2)], [(-1, 3)], [(0,)], ["ab"]])
def test_bad_seed_sets_are_refused(sets):
    from sidbench.metrics.evaluate import evaluate_seed_sets

    with pytest.raises(ConfigError, match="seed set"):
        evaluate_seed_sets(_never_render, sets, _images(10, 1), "fid", extractors={"inception-v3-compat":
                                                                                  TinyExtractor()})


def test_single_headline_is_the_one_value(tmp_path):
    from sidbench.metrics.evaluate import evaluate_seed_sets
    from sidbench.metrics.image_source import onestep_renderer

    class TinyDigits(TinyExtractor):
        feature_dims = {"features": 16}

        def _extract(self, images):
            return {"features": super()._extract(images)["pool"]}

    net, _ = _tiny_generator(tmp_path)
    res = evaluate_seed_sets(onestep_renderer(net), [(0, 11)], _images(20, 1), "fid", "digits-fd",
                             extractors={"digits-classifier": TinyDigits()})
    fid = res["metrics"]["fid"]
    assert fid["headline"] == "single" and fid["values"] == [fid["value"]] and len(fid["values_raw"]) == 1


def test_deviations_from_the_protocol_are_recorded():
    res = _run(_images(40, 0), _images(30, 1), 16)["metrics"]
    for entry in res.values():
        assert entry["full_protocol"] is False
        assert "40 images, the protocol uses 50000" in entry["protocol_deviations"]
        assert "extractor tiny, the protocol uses inception-v3-compat" in entry["protocol_deviations"]
    assert any(d.startswith("options overridden: num_subsets=5") for d in res["kid"]["protocol_deviations"])
    # pr-inception-adm compares against ADM's arr_0 batch of 10,000 images; a tensor of 30 is neither
    assert "reference images are not ADM's VIRTUAL batch (arr_0 of the reference npz)" in \
        res["precision"]["protocol_deviations"]
    assert "30 reference images, the protocol uses 10000" in res["recall"]["protocol_deviations"]
    assert res["fid"]["reference_sha256"] is None and res["fid"]["value_raw"] == res["fid"]["value"]


def test_a_run_that_is_the_protocol_has_no_deviations(monkeypatch):
    """Shrink a protocol to 12 images: same extractor name, same seeds, no overrides -> full protocol."""
    import dataclasses

    from sidbench.metrics import protocols
    from sidbench.metrics.evaluate import evaluate
    from sidbench.metrics.image_source import GeneratorImageSource

    small = dataclasses.replace(protocols.PROTOCOLS["is-10split"], num_images=12,
                                options=protocols.MappingProxyType({"mode": "sid", "splits": 3,
                                                                    "seed_sets": ((0, 11),)}))
    monkeypatch.setattr(protocols, "PROTOCOLS", protocols.MappingProxyType({**protocols.PROTOCOLS,
                                                                             "is-10split": small}))
    tiny = TinyExtractor()
    tiny.name = "inception-v3-compat"

    def render(seeds):
        return torch.stack([_images(1, s)[0] for s in seeds])

    ok = evaluate(GeneratorImageSource(render, range(12)), metrics="is", extractors={tiny.name: tiny})
    assert ok["metrics"]["is"]["protocol_deviations"] == [] and ok["metrics"]["is"]["full_protocol"] is True
    other = evaluate(GeneratorImageSource(render, range(1, 13)), metrics="is", extractors={tiny.name: tiny})
    assert other["metrics"]["is"]["protocol_deviations"] == [
        "seeds are not one of the protocol's seed sets 0-11"]


def test_captions_are_checked_against_the_protocols_list(tmp_path):
    from sidbench.metrics.conformance import captions_sha256, deviations
    from sidbench.metrics.protocols import COCO_CAPTIONS_SHA256, get_protocol

    p = get_protocol("clip-score-vitg14")
    common = dict(num_images=p.num_images, overrides={}, extractor=p.extractor, seeds=range(30_000))
    assert deviations(p, captions=COCO_CAPTIONS_SHA256, **common) == []
    mine = captions_sha256(["a cat", "a dog"])
    assert mine == __import__("hashlib").sha256(b"a cat\na dog\n").hexdigest()
    assert deviations(p, captions=mine, **common) == [
        f"captions sha256 {mine[:12]}..., the protocol's list is {COCO_CAPTIONS_SHA256[:12]}..."]
    assert deviations(p, captions=None, **common)[0].startswith("captions not given")
    (tmp_path / "c.txt").write_bytes(b"a cat\r\na dog")  # read_captions hashes the file's own bytes
    from sidbench.data.coco import read_captions

    assert captions_sha256(read_captions(tmp_path / "c.txt", expect_pinned=False)) == \
        __import__("hashlib").sha256(b"a cat\r\na dog").hexdigest()


@pytest.mark.parametrize(("options", "message"), [
    ({"kid": {"subset_sise": 3}}, "Did you mean 'subset_size'"),
    ({"kid": {"seed_sets": [(0, 1)]}}, "seed_sets cannot be set"),
    ({"clip": {"scale": 100}}, "not computed"),
    ({"kid": {"subset_size": "20"}}, "option 'subset_size' must be an integer"),
])
def test_bad_option_overrides_are_refused(options, message):
    from sidbench.metrics.evaluate import evaluate

    with pytest.raises(ConfigError, match=message):
        evaluate(_images(30, 0), _images(30, 1), "fid,kid",
                 extractors={"inception-v3-compat": TinyExtractor()}, options=options)


def test_a_meaningless_reference_npz_fails_within_the_first_batch(tmp_path):
    from sidbench.errors import AssetError
    from sidbench.metrics.evaluate import evaluate

    class Counting(TinyExtractor):
        calls = 0

        def _extract(self, images):
            Counting.calls += 1
            return super()._extract(images)

    np.savez(tmp_path / "ref.npz", mu=np.array(["x"] * 16), sigma=np.eye(16))
    with pytest.raises(AssetError, match="expected real numbers"):  # before any image is read
        evaluate(_images(8, 0), tmp_path / "ref.npz", "fid", extractors={"inception-v3-compat": Counting()})
    assert Counting.calls == 0
    # the symmetry/PSD test runs alongside the first batch and is waited for after it
    np.savez(tmp_path / "ref.npz", mu=np.zeros(16), sigma=-np.eye(16))
    with pytest.raises(AssetError, match="not positive semi-definite"):
        evaluate(_images(8, 0), tmp_path / "ref.npz", "fid", extractors={"inception-v3-compat": Counting()},
                 batch_size=2)
    assert Counting.calls == 1


def test_npz_with_another_covariance_convention_is_refused(tmp_path):
    from sidbench.errors import AssetError
    from sidbench.metrics.evaluate import evaluate
    from sidbench.metrics.reference import save_reference

    stats = tmp_path / "biased.npz"
    save_reference(stats, {"mu": np.zeros(16), "sigma": np.eye(16)}, meta={"cov": "biased"})
    with pytest.raises(AssetError, match="holds a biased covariance, the protocol expects unbiased"):
        evaluate(_images(8, 0), stats, "fid", extractors={"inception-v3-compat": TinyExtractor()})


def test_cli_meaningless_reference_is_one_line(tmp_path, weights, capsys):
    from sidbench.cli import main

    gen_dir = tmp_path / "gen"
    _write_pngs(gen_dir, _images(3, 0))
    np.savez(tmp_path / "ref.npz", mu=np.zeros(2048), sigma=np.full((2048, 2048), "x"))
    assert main(["eval", "--images", str(gen_dir), "--ref", str(tmp_path / "ref.npz"),
                 "--inception-weights", str(weights)]) == 1
    err = capsys.readouterr().err.strip()
    assert "expected real numbers" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_subset_policy_of_the_images_reaches_the_record(tmp_path):
    from sidbench.metrics.evaluate import evaluate

    folder = tmp_path / "imgs"
    _write_pngs(folder, _images(12, 3))
    tiny = {"inception-v3-compat": TinyExtractor()}
    first = evaluate(folder, metrics="is", extractors=tiny, num_images=6, options={"is": {"splits": 2}})
    seeded = evaluate(folder, metrics="is", extractors=tiny, num_images=6, subset="edm-seeded",
                      options={"is": {"splits": 2}})
    assert first["images"]["subset"]["policy"] == "first"
    assert seeded["images"]["subset"] == {"policy": "edm-seeded", "count": 6, "available": 12, "seed": 0}
    assert first["metrics"]["is"]["value"] != seeded["metrics"]["is"]["value"]  # other images


def test_compute_reference_applies_the_protocols_crop_and_covariance(tmp_path):
    from PIL import Image

    from sidbench.metrics.evaluate import compute_reference
    from sidbench.metrics.image_source import TensorImageSource
    from sidbench.metrics.reference import load_reference
    from sidbench.metrics.stats import FeatureStats

    class TinyClean(TinyExtractor):
        name = "clean-fid-inception"

    imgs = torch.from_numpy(np.random.RandomState(1).randint(0, 256, (3, 3, 40, 60), dtype=np.uint8))
    meta = compute_reference(TensorImageSource(imgs), tmp_path / "coco.npz", "coco2014-fid30k-clean",
                             extractor=TinyClean())
    crops = [np.asarray(Image.fromarray(im[:, :, 10:50].permute(1, 2, 0).numpy()).resize((256, 256),
                                                                                          Image.LANCZOS))
             for im in imgs]
    direct = FeatureStats()
    direct.update(TinyClean()(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous())["pool"])
    ref = load_reference(tmp_path / "coco.npz")
    assert np.array_equal(ref.mu, direct.mean()) and np.array_equal(ref.sigma, direct.cov(unbiased=True))
    assert meta["cov"] == "unbiased" and meta["dataset_info"]["transform"] == "center-crop+lanczos-256"
    with pytest.raises(ConfigError, match="is a kid protocol"):
        compute_reference(TensorImageSource(imgs), tmp_path / "k.npz", "kid-100x1000",
                          extractor=TinyExtractor())
