"""Text-to-image runs on the shared trainer: SiD-LSG and the ddpm-t2i teacher on the digits-t2i suite.

The shipped digits-t2i teacher (1.7M parameters) is small enough for a few steps of batch 4. What
must hold for text-to-image as for every method: exact resume, split-independent prompts and draws,
products that record how to sample them, and evaluation records that say which captions were used.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from sidbench.errors import DatasetError
from sidbench.train import load_recipe, train

NETS = ("generator", "generator-ema", "fake_score")


def _recipe(**training):
    base = {"seed": 3, "batch": 4, "duration_kimg": 0.012, "checkpoint_kimg": 0.004, "tensorboard": False,
            "log_every_kimg": 0.004,
            "networks": {"generator": {"lr": 1e-4, "betas": [0.0, 0.999], "ema_halflife_kimg": 0.01,
                                       "ema_rampup": None},
                         "fake_score": {"lr": 1e-4, "betas": [0.0, 0.999]}}}
    base.update(training)
    return {"suite": "digits-t2i", "method": "sid-lsg",
            "method_settings": {"cfg_train_fake": 2.0, "cfg_eval_fake": 1.5, "cfg_eval_real": 3.0},
            "training": base}


def _weights(checkpoint, name):
    return load_file(str(checkpoint / "networks" / f"{name}.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return train(load_recipe(_recipe()), tmp_path_factory.mktemp("lsg") / "run", progress=False)


def test_resume_gives_the_uninterrupted_bits(uninterrupted, tmp_path):
    cfg = load_recipe(_recipe())
    run = tmp_path / "run"
    train(cfg, run, progress=False, max_steps=1)
    done = train(cfg, run, progress=False)
    assert done.resumed_from is not None and done.steps == uninterrupted.steps == 3
    for name in NETS:
        a, b = _weights(done.checkpoint, name), _weights(uninterrupted.checkpoint, name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.fixture(scope="module")
def linear_adam(tmp_path_factory):
    """Adam with a large eps steps by lr * m / eps, linear in the gradient: with beta1 = 0 and the
    default eps a near-zero gradient's sign (a rounding matter) would decide a full lr step."""
    sets = ["training.networks.generator.eps=10.0", "training.networks.fake_score.eps=10.0",
            "training.networks.generator.lr=0.01", "training.networks.fake_score.lr=0.01"]
    return sets, train(load_recipe(_recipe(), sets), tmp_path_factory.mktemp("lin") / "run", progress=False)


def test_prompts_and_draws_do_not_depend_on_the_split(linear_adam, tmp_path):
    sets, whole = linear_adam
    r = train(load_recipe(_recipe(), [*sets, "training.batch_per_gpu=2"]), tmp_path / "run", progress=False)
    for name in NETS:
        a, b = _weights(r.checkpoint, name), _weights(whole.checkpoint, name)
        start = _weights(whole.outdir / "checkpoints" / "step-00000001", name)
        moved = max(float((b[k] - start[k]).abs().max()) for k in b)
        assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4 * moved, name


def test_training_changes_the_generator_and_never_the_teacher(uninterrupted):
    from sidbench.nets.native import load_network
    from sidbench.suites.resolve import resolve_suite

    teacher = load_network(resolve_suite("digits-t2i", need=("teacher",)).teacher)
    gen = _weights(uninterrupted.checkpoint, "generator")
    unet = {k.removeprefix("model."): v for k, v in teacher.state_dict().items() if k.startswith("model.")}
    moved = [k for k in gen if not torch.equal(gen[k], unet[k.removeprefix("model.")])]
    assert moved and "text_encoder" not in " ".join(gen)  # copies hold the UNet only


def test_the_product_records_how_to_sample_it(uninterrupted):
    from sidbench.nets.native import read_network_record

    record = read_network_record(uninterrupted.product)
    assert record["role"] == "t2i-generator" and record["class_name"] == "EpsDenoiser"
    assert record["source"]["t_init"] == 625 and record["source"]["teacher_path"]
    assert record["init_kwargs"]["text_encoder"] is None


def test_evaluation_records_captions_fd_and_alignment(tmp_path):
    evaluation = {"protocols": ["digits-fd", "digits-t2i-alignment"], "num_images": 20}
    r = train(load_recipe(_recipe(duration_kimg=0.004, eval_kimg=0.004, eval=evaluation)), tmp_path / "run",
              progress=False)
    rows = [json.loads(line) for line in (r.outdir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 1]
    last = rows[-1]
    assert set(last["metrics"]) == {"fid", "prompt_alignment"}
    assert 0.0 <= last["metrics"]["prompt_alignment"]["value"] <= 1.0
    assert last["images"]["captions_count"] == 20 and last["images"]["t_init"] == 625
    assert last["method"]["nfe"] == 1 and last["method"]["role"] == "generator"


def test_a_prompt_file_replaces_the_suite_prompts(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the number 3\n\nthe number 8\n", encoding="utf-8")
    r = train(load_recipe(_recipe(prompts=str(prompts), duration_kimg=0.004)), tmp_path / "run",
              dry_run=True, progress=False)
    assert r.plan["prompts"]["count"] == 2 and r.plan["prompts"]["format"] == "txt"
    with pytest.raises(DatasetError, match="cannot read prompt file") as err:
        train(load_recipe(_recipe(prompts=str(tmp_path / "missing.txt"))), tmp_path / "r2", dry_run=True,
              progress=False)
    assert "\n" not in str(err.value)


def test_the_default_hash_of_image_runs_is_unchanged_by_the_t2i_keys():
    cfg = load_recipe(_recipe())
    resolved = cfg.resolved()["training"]
    assert "prompts" not in resolved and "gradient_checkpointing" not in resolved
    with_prompts = load_recipe(_recipe(prompts="p.txt")).resolved()["training"]
    assert with_prompts["prompts"] == "p.txt"


def test_the_teacher_trainer_trains_unet_and_text_encoder_together(tmp_path):
    from sidbench.suites.digits_t2i import TEACHER_NETWORK

    recipe = {"suite": "digits-t2i", "method": "ddpm-t2i",
              "training": {"seed": 0, "batch": 4, "duration_kimg": 0.008, "checkpoint_kimg": None,
                           "architecture": TEACHER_NETWORK, "tensorboard": False,
                           "networks": {"denoiser": {"lr": 1e-3, "ema_halflife_kimg": 0.01}},
                           "eval_kimg": 0.008, "eval": {"protocols": ["digits-t2i-alignment"],
                                                        "num_images": 10}}}
    r = train(load_recipe(recipe), tmp_path / "run", progress=False)
    from sidbench.nets.build import build_network

    torch.manual_seed(0)
    trained = _weights(r.checkpoint, "denoiser")
    text = [k for k in trained if k.startswith("text_encoder.")]
    assert text, "the teacher carries its text encoder"
    with torch.random.fork_rng():
        from sidbench.train.seeds import INIT, scalar_seed

        torch.manual_seed(scalar_seed(0, INIT, 0))
        fresh = build_network(TEACHER_NETWORK).state_dict()
    assert any(not torch.equal(trained[k], fresh[k]) for k in text)  # the text encoder learned too
    rows = [json.loads(line) for line in (r.outdir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["method"]["role"] == "teacher" and rows[-1]["method"]["nfe"] == 50


def test_bf16_autocast_runs_the_t2i_step_with_finite_losses(tmp_path):
    r = train(load_recipe(_recipe(duration_kimg=0.008, precision="bf16")), tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (r.outdir / "log.jsonl").read_text().splitlines()]
    terms = rows[-1]["terms"]
    assert r.skipped_updates == 0 and all(abs(v) < float("inf") for v in terms.values())
    assert {"fake_score/loss", "generator/loss"} <= set(terms)
