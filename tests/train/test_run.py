"""The trainer on tiny methods: exact resume, split-independent draws, NaN guard, checkpoints, products."""

import json

import pytest
import torch
from safetensors.torch import load_file

from sidbench.errors import CheckpointError, ConfigError
from sidbench.train import NonFiniteError, load_recipe, train
from sidbench.train.checkpoint import list_checkpoints, read_state
from tests.train import _methods
from tests.train._methods import DIGITS_TEACHER, save_teacher, toy_recipe


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp("toy") / "teacher")


def _weights(checkpoint, name):
    return load_file(str(checkpoint / "networks" / f"{name}.safetensors"))


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _all_equal(ckpt_a, ckpt_b, names=("generator", "generator-ema", "fake")):
    return all(_equal(_weights(ckpt_a, n), _weights(ckpt_b, n)) for n in names)


@pytest.fixture(scope="module")
def uninterrupted(teacher, tmp_path_factory):
    return train(load_recipe(toy_recipe(teacher)), tmp_path_factory.mktemp("full") / "run", progress=False)


def test_a_run_writes_checkpoints_logs_and_a_loadable_product(uninterrupted):
    from sidbench.nets.native import load_network, read_network_record

    r = uninterrupted
    assert r.finished and r.steps == 10 and r.kimg == 0.08 and r.skipped_updates == 0
    assert [p.name for p in list_checkpoints(r.outdir)] == ["step-00000010", "step-00000008", "step-00000004"]
    state = read_state(r.checkpoint)
    assert state["step"] == 10 and state["config_hash"] == r.config_hash
    assert set(state["files"]) >= {"networks/generator.safetensors", "networks/generator-ema.safetensors",
                                   "networks/fake.safetensors", "optimizers.safetensors", "optimizers.json",
                                   "product/network.json", "product/network.safetensors"}
    record = read_network_record(r.product)
    assert record["role"] == "generator" and record["sigma_init"] == 2.5
    product = load_network(r.product)
    ema = _weights(r.checkpoint, "generator-ema")
    assert _equal(product.state_dict(), ema)
    config = json.loads((r.outdir / "config.json").read_text())
    assert config["config_hash"] == r.config_hash
    rows = [json.loads(line) for line in (r.outdir / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 6, 8, 10]
    assert {"fake/denoise", "fake/loss", "generator/sid", "generator/loss"} <= set(rows[0]["terms"])
    assert r.records == []  # no periodic evaluation asked for


def test_stopping_and_resuming_gives_the_same_bits(teacher, tmp_path, uninterrupted):
    cfg = load_recipe(toy_recipe(teacher))
    first = train(cfg, tmp_path / "run", progress=False, max_steps=3)
    assert first.steps == 3 and not first.finished and first.checkpoint.name == "step-00000003"
    second = train(cfg, tmp_path / "run", progress=False, max_steps=7)
    assert second.resumed_from == first.checkpoint and second.steps == 7
    done = train(cfg, tmp_path / "run", progress=False)
    assert done.finished and done.resumed_from == second.checkpoint
    assert _all_equal(done.checkpoint, uninterrupted.checkpoint)
    a = load_file(str(done.checkpoint / "optimizers.safetensors"))
    b = load_file(str(uninterrupted.checkpoint / "optimizers.safetensors"))
    assert _equal(a, b)


def test_a_corrupt_newest_checkpoint_is_skipped_with_a_warning(teacher, tmp_path, uninterrupted):
    cfg = load_recipe(toy_recipe(teacher))
    run = tmp_path / "run"
    train(cfg, run, progress=False, max_steps=8)
    newest = list_checkpoints(run)[0]
    weights = newest / "networks" / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        read_state(newest)
    with pytest.warns(UserWarning, match="skipping checkpoint .*step-00000008"):
        done = train(cfg, run, progress=False)
    assert done.resumed_from.name == "step-00000004"
    assert _all_equal(done.checkpoint, uninterrupted.checkpoint)


def test_a_checkpoint_without_state_is_not_a_checkpoint(teacher, tmp_path):
    cfg = load_recipe(toy_recipe(teacher))
    run = tmp_path / "run"
    train(cfg, run, progress=False, max_steps=4)
    (list_checkpoints(run)[0] / "state.json").unlink()
    with pytest.warns(UserWarning) as caught:
        done = train(cfg, run, progress=False, max_steps=5)
    messages = [str(w.message) for w in caught]
    assert any("no state.json" in m for m in messages) and any("starting from step 0" in m for m in messages)
    assert done.resumed_from is None and done.steps == 5


def test_another_config_in_the_same_folder_is_refused(teacher, tmp_path):
    run = tmp_path / "run"
    train(load_recipe(toy_recipe(teacher)), run, progress=False, max_steps=2)
    with pytest.raises(ConfigError, match="holds a run of another config"):
        train(load_recipe(toy_recipe(teacher), ["training.seed=9"]), run, progress=False)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(load_recipe(toy_recipe(teacher)), run, progress=False, resume=None)


def test_resuming_an_explicit_checkpoint_and_refusing_a_foreign_one(teacher, tmp_path, uninterrupted):
    cfg = load_recipe(toy_recipe(teacher))
    run = tmp_path / "run"
    done = train(cfg, run, progress=False, resume=uninterrupted.outdir / "checkpoints" / "step-00000004")
    assert done.resumed_from.name == "step-00000004" and _all_equal(done.checkpoint, uninterrupted.checkpoint)
    other = load_recipe(toy_recipe(teacher), ["training.seed=1"])
    with pytest.raises(ConfigError, match="another config"):
        train(other, tmp_path / "other", progress=False, resume=uninterrupted.checkpoint)


@pytest.mark.parametrize("split", [["training.batch_per_gpu=2"], ["training.batch_per_gpu=4"]])
def test_accumulation_reproduces_the_full_batch(teacher, tmp_path, uninterrupted, split):
    r = train(load_recipe(toy_recipe(teacher), split), tmp_path / "run", progress=False)
    for name in ("generator", "generator-ema", "fake"):
        a, b = _weights(r.checkpoint, name), _weights(uninterrupted.checkpoint, name)
        assert _max_diff(a, b) < 1e-5, name


def _draw_recipe(tmp_path, split=(), suite="toy2d"):
    recipe = {"suite": suite, "method": "test-drawlog",
              "training": {"seed": 1, "batch": 8, "duration_kimg": 0.024, "checkpoint_kimg": None,
                           "tensorboard": False, "networks": {"denoiser": {"lr": 1e-3}}}}
    if suite == "toy2d":
        recipe["training"]["architecture"] = _methods.TOY_TEACHER
    else:
        recipe["training"]["architecture"] = DIGITS_TEACHER
        recipe["training"]["batch"] = 4
    return load_recipe(recipe, list(split))


@pytest.mark.parametrize("suite", ["toy2d", "digits"])
def test_every_sample_sees_the_same_draws_and_data_however_the_batch_is_split(tmp_path, monkeypatch, suite):
    import sidbench.train.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda device: None)  # no probe calls in the log
    per_split = []
    for i, split in enumerate([[], ["training.batch_per_gpu=2"], ["training.batch_per_gpu=1"]]):
        _methods.DRAW_LOG.clear()
        train(_draw_recipe(tmp_path, split, suite), tmp_path / f"run{i}", progress=False)
        per_split.append(sorted(_methods.DRAW_LOG))
    assert per_split[0] == per_split[1] == per_split[2]
    steps = {row[0] for row in per_split[0]}
    assert len(per_split[0]) == len(steps) * (8 if suite == "toy2d" else 4)
    assert len({row[1] for row in per_split[0]}) == len(per_split[0])  # every sample its own numbers


def test_data_order_walks_epochs_of_the_dataset(tmp_path):
    from sidbench.data.digits import DigitsDataset
    from sidbench.train.data import DatasetData

    data = DatasetData(DigitsDataset(resolution=16), seed=0, batch=599, images=False, labels=True)
    seen = torch.cat([data.batch(k, torch.arange(599).numpy())[1].argmax(1) for k in range(3)])
    from collections import Counter

    assert Counter(seen.tolist()) == Counter(DigitsDataset(resolution=16).labels.tolist())  # 1 epoch


def test_a_skipped_update_leaves_its_network_unchanged(teacher, tmp_path):
    poisoned = ["method.poison_steps=[2]", "training.checkpoint_kimg=0.008"]
    r = train(load_recipe(toy_recipe(teacher), poisoned), tmp_path / "run", progress=False, max_steps=4)
    assert r.skipped_updates == 1
    ck = {p.name: p for p in list_checkpoints(r.outdir)}
    before, after = ck["step-00000002"], ck["step-00000003"]
    assert _equal(_weights(before, "generator"), _weights(after, "generator"))
    assert _equal(_weights(before, "generator-ema"), _weights(after, "generator-ema"))
    assert not _equal(_weights(before, "fake"), _weights(after, "fake"))  # the other update ran
    opt_b = load_file(str(before / "optimizers.safetensors"))
    opt_a = load_file(str(after / "optimizers.safetensors"))
    assert _equal({k: v for k, v in opt_b.items() if k.startswith("generator/")},
                  {k: v for k, v in opt_a.items() if k.startswith("generator/")})
    assert read_state(after)["guard"]["consecutive"] == {"fake": 0, "generator": 1}
    rows = [json.loads(line) for line in (r.outdir / "log.jsonl").read_text().splitlines()]
    assert sum(row["skipped"] for row in rows) == 1


def test_the_nan_guard_stops_after_k_in_a_row(teacher, tmp_path):
    cfg = load_recipe(toy_recipe(teacher), ["method.poison_steps=[1, 2, 3, 5]", "training.nan_guard=3"])
    with pytest.raises(NonFiniteError, match=r"step 3 .*'generator' had a non-finite loss 3 times in a row"):
        train(cfg, tmp_path / "run", progress=False)
    ok = load_recipe(toy_recipe(teacher), ["method.poison_steps=[1, 2, 4, 5]", "training.nan_guard=3"])
    assert train(ok, tmp_path / "ok", progress=False).skipped_updates == 4


def test_dry_run_resolves_and_checks_without_training(teacher, tmp_path):
    r = train(load_recipe(toy_recipe(teacher)), tmp_path / "run", dry_run=True)
    assert r.dry_run and r.steps == 0 and not (tmp_path / "run" / "checkpoints").exists()
    assert r.plan["teacher"]["path"] == str(teacher) and r.plan["total_steps"] == 10
    assert r.plan["data"] == {"kind": "none"}


def test_dry_run_refuses_a_teacher_of_another_suite(tmp_path):
    from sidbench.errors import AssetError

    wrong = save_teacher(tmp_path / "digits-teacher", DIGITS_TEACHER)
    with pytest.raises(AssetError, match="not suite toy2d's teacher"):
        train(load_recipe(toy_recipe(wrong)), tmp_path / "run", dry_run=True)


def test_init_generator_starts_the_generator_and_its_ema(teacher, tmp_path, uninterrupted):
    cfg = load_recipe(toy_recipe(teacher), [f"training.init_generator={uninterrupted.outdir}",
                                            "training.duration_kimg=0.008",
                                            "training.networks.generator.lr=1e-12"])
    r = train(cfg, tmp_path / "run", progress=False)
    start = _weights(uninterrupted.checkpoint, "generator-ema")
    assert _max_diff(_weights(r.checkpoint, "generator"), start) < 1e-6
    assert _max_diff(_weights(r.checkpoint, "generator-ema"), start) < 1e-6
    assert r.plan["init_generator"]["path"].endswith("step-00000010/product")


def test_periodic_evaluation_appends_records_with_the_checkpoint_sha(tmp_path):
    from sidbench.fileio import sha256_file

    teacher = save_teacher(tmp_path / "teacher", DIGITS_TEACHER)
    recipe = {"suite": "digits", "method": "test-sidlike",
              "training": {"batch": 4, "duration_kimg": 0.012, "teacher": str(teacher),
                           "checkpoint_kimg": None,
                           "eval_kimg": 0.008, "tensorboard": False,
                           "eval": {"protocols": ["digits-fd"], "num_images": 64, "batch_size": 64}}}
    r = train(load_recipe(recipe), tmp_path / "run", progress=False)
    assert [rec["step"] for rec in r.records] == [0, 2, 3]
    first, last = r.records[0], r.records[-1]
    assert first["schema"] == "sidbench.result" and first["metrics"]["fid"]["protocol"]["name"] == "digits-fd"
    assert first["networks"].get("checkpoint") is None
    assert last["networks"]["checkpoint_sha256"] == sha256_file(r.checkpoint / "state.json")
    assert last["networks"]["generator_sha256"] == json.loads((r.product / "network.json").read_text())[
        "weights_sha256"]
    assert last["method"]["config_hash"] == r.config_hash and last["kimg"] == 0.012
    assert all(isinstance(rec["metrics"]["fid"]["value"], float) for rec in r.records)


def test_a_method_returning_the_wrong_shape_is_named(teacher, tmp_path):
    import dataclasses

    from sidbench.methods.base import LossOutput
    from sidbench.registry import METHODS

    def bad(ctx):
        return LossOutput(torch.zeros(ctx.micro_batch, 2))

    fake, generator = _methods.SIDLIKE.updates
    broken = dataclasses.replace(_methods.SIDLIKE, name="test-broken-shape",
                                 updates=(dataclasses.replace(fake, fn=bad), generator))
    if "test-broken-shape" not in METHODS._items:
        METHODS.register("test-broken-shape", broken, source="tests")
    recipe = {**toy_recipe(teacher), "method": "test-broken-shape"}
    with pytest.raises(ConfigError, match=r"update fake of method test-broken-shape returned per_sample"):
        train(load_recipe(recipe), tmp_path / "run", progress=False)


def test_bf16_autocast_trains_and_differs_from_fp32(teacher, tmp_path, uninterrupted):
    r = train(load_recipe(toy_recipe(teacher), ["training.precision=bf16"]), tmp_path / "run", progress=False)
    a, b = _weights(r.checkpoint, "generator"), _weights(uninterrupted.checkpoint, "generator")
    assert all(torch.isfinite(v).all() for v in a.values()) and not _equal(a, b)


def test_fp16_on_cpu_warns_that_it_runs_in_float32(teacher, tmp_path):
    with pytest.warns(UserWarning, match="fp16 runs in float32 on cpu"):
        r = train(load_recipe(toy_recipe(teacher), ["training.precision=fp16"]), tmp_path / "run",
                  dry_run=True)
    assert r.plan["precision"].startswith("fp32")


def test_keep_checkpoints_prunes_the_oldest(teacher, tmp_path):
    cfg = load_recipe(toy_recipe(teacher), ["training.keep_checkpoints=1"])
    r = train(cfg, tmp_path / "run", progress=False)
    assert [p.name for p in list_checkpoints(r.outdir)] == ["step-00000010"]


def test_tensorboard_true_without_tensorboard_is_refused(teacher, tmp_path):
    cfg = load_recipe(toy_recipe(teacher), ["training.tensorboard=true"])
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="TensorBoard is not installed"):
            train(cfg, tmp_path / "run", progress=False)
    else:
        r = train(cfg, tmp_path / "run", progress=False)
        assert (r.outdir / "tensorboard").is_dir()


def test_training_from_scratch_needs_an_architecture(tmp_path):
    recipe = {"suite": "toy2d", "method": "test-drawlog", "training": {"batch": 8, "duration_kimg": 0.008}}
    with pytest.raises(ConfigError, match="set training.architecture"):
        train(load_recipe(recipe), tmp_path / "run", dry_run=True)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_max_steps_and_config_types_are_refused(teacher, tmp_path, bad):
    with pytest.raises(ConfigError, match="max_steps"):
        train(load_recipe(toy_recipe(teacher)), tmp_path / "run", max_steps=bad)
    with pytest.raises(ConfigError, match="takes a RunConfig"):
        train(toy_recipe(teacher), tmp_path / "run")


def test_a_teacher_product_is_evaluated_with_the_suites_heun_sampler(tmp_path):
    recipe = {"suite": "digits", "method": "test-drawlog",
              "training": {"batch": 4, "duration_kimg": 0.004, "architecture": DIGITS_TEACHER, "eval_kimg": 1,
                           "tensorboard": False, "checkpoint_kimg": None,
                           "eval": {"protocols": ["digits-fd"], "num_images": 64, "batch_size": 64}}}
    r = train(load_recipe(recipe), tmp_path / "run", progress=False)
    assert [rec["step"] for rec in r.records] == [0, 1]
    assert r.records[-1]["method"]["nfe"] == 35 and r.records[-1]["images"]["role"] == "teacher"


class _Headed(torch.nn.Module):
    """A fake net with a fresh head and a frozen probe: what DMD2's or ADD's build hooks make."""

    def __init__(self, base, inputs):
        super().__init__()
        self.net = base
        self.head = torch.nn.Linear(inputs.img_shape[0], 1)
        self.probe = torch.nn.Linear(inputs.img_shape[0], 1).requires_grad_(False)
        self.seen_teacher = inputs.teacher is not None

    def forward(self, x, sigma, labels=None):
        return self.net(x, sigma, labels)


def _headed_build(base, inputs):
    return _Headed(base, inputs)


def _headed_method(name, product_built=False):
    import dataclasses

    from sidbench.methods.base import NetworkSpec
    from sidbench.registry import METHODS

    fake, generator = _methods.SIDLIKE.updates

    def fake_with_head(ctx):
        out = fake.fn(ctx)
        net = ctx.nets["fake"]
        ones = torch.ones(ctx.micro_batch, 2)
        head = net.head(ones).squeeze(1) + net.probe(ones).squeeze(1)
        return dataclasses.replace(out, per_sample=out.per_sample + head)

    product_build = _headed_build if product_built else None
    specs = (NetworkSpec("generator", init="teacher", ema=True, build=product_build),
             NetworkSpec("fake", init="teacher", build=_headed_build))
    method = dataclasses.replace(_methods.SIDLIKE, name=name, networks=specs,
                                 updates=(dataclasses.replace(fake, fn=fake_with_head), generator))
    if name not in METHODS._items:
        METHODS.register(name, method, source="tests")
    return name


def test_a_build_hook_adds_seeded_heads_and_keeps_frozen_parts_frozen(teacher, tmp_path):
    from sidbench.train.networks import build_networks

    name = _headed_method("test-headed")
    config = load_recipe({**toy_recipe(teacher), "method": name})
    a = build_networks(config, config.get_method(), torch.device("cpu"), str(teacher))
    b = build_networks(config, config.get_method(), torch.device("cpu"), str(teacher))
    fake = a.nets["fake"]
    assert isinstance(fake, _Headed) and fake.seen_teacher
    assert torch.equal(fake.head.weight, b.nets["fake"].head.weight)  # the head's init is seeded
    assert a.configs["fake"]["builder"].endswith(":_headed_build")

    result = train(config, tmp_path / "run", progress=False)
    weights = _weights(result.checkpoint, "fake")
    assert not torch.equal(weights["head.weight"], fake.head.weight)  # the head trained
    assert torch.equal(weights["probe.weight"], fake.probe.weight)  # the frozen probe did not


def test_a_product_with_a_build_hook_is_refused(teacher, tmp_path):
    name = _headed_method("test-headed-product", product_built=True)
    with pytest.raises(ConfigError, match="its product 'generator' has a build hook"):
        train(load_recipe({**toy_recipe(teacher), "method": name}), tmp_path / "run", progress=False)
