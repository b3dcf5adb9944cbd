"""recipes/*.yaml: every one loads and resolves, carries methods.md's settings and numbers, and `distill
--dry-run` checks its assets (refusing the FFHQ archive that the public SiDA scripts feed to AFHQv2).

The tables below are written out from /work/shared/spec/methods.md (SiD and SiDA sections) and the
authors' launch scripts, independently of the recipe files, so a recipe that drifts fails here.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from sidbench.train.config import load_recipe
from tests._cli import run_cli

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
EDM_SUITES = ("cifar10-uncond", "cifar10-cond", "imagenet64-cond", "ffhq64", "afhqv2-64")
SOURCE_TAGS = {"code", "paper", "secondary", "recalled"}

# methods.md, SiD table: lr, batch, batch-gpu, alpha, EMA Mimg, fp16, dropout, aug p, duration Mimg, g_beta1.
# Durations: the table's "other" column (500 / 800 / 1000 Mimg); FFHQ and AFHQv2 from run_sid.sh (500).
SID = {
    "cifar10-uncond": (1e-5, 256, 16, 1.2, 0.5, False, 0.13, 0.12, 500, 0.0),
    "cifar10-cond": (1e-5, 256, 16, 1.2, 0.5, False, 0.13, 0.12, 800, 0.0),
    "imagenet64-cond": (4e-6, 8192, 16, 1.2, 2.0, True, 0.10, 0.0, 1000, 0.0),
    "ffhq64": (1e-5, 512, 32, 1.2, 0.5, True, 0.05, 0.15, 500, 0.9),
    "afhqv2-64": (5e-6, 512, 32, 1.0, 0.5, True, 0.05, 0.15, 500, 0.0),
}
# methods.md, SiDA launch settings: alpha 1 everywhere, lr as SiD, batch 256/8192/512/512, batch-gpu 32
# (CIFAR, ImageNet) / 64 (FFHQ, AFHQ), 300 Mimg (CIFAR, ImageNet) / 200 (FFHQ, AFHQ), SiD²A 100.
SIDA_BATCH = {"cifar10-uncond": (256, 32, 300), "cifar10-cond": (256, 32, 300),
              "imagenet64-cond": (8192, 32, 300), "ffhq64": (512, 64, 200), "afhqv2-64": (512, 64, 200)}
# methods.md: published one-step FIDs (README, best checkpoint / README labelled "SiDA").
SID_FID = {"cifar10-uncond": 1.923, "cifar10-cond": 1.710, "imagenet64-cond": 1.524, "ffhq64": 1.550,
           "afhqv2-64": 1.628}
SIDA_FID = {"cifar10-uncond": 1.499, "cifar10-cond": 1.396, "imagenet64-cond": 1.110, "ffhq64": 1.040,
            "afhqv2-64": 1.276}
ARXIV = {"sid": "2404.04057", "sida": "2410.14919", "sid2a": "2410.14919"}


def _all() -> list[Path]:
    return sorted(RECIPES.glob("*.yaml"))


def test_every_paper_setting_has_a_recipe():
    names = {p.stem for p in _all()}
    wanted = {f"{kind}-{suite}" for kind in ("sid", "sida", "sid2a") for suite in EDM_SUITES}
    assert wanted <= names, sorted(wanted - names)
    assert {"sid-digits", "sida-digits", "sid-toy2d"} <= names


@pytest.mark.parametrize("path", _all(), ids=lambda p: p.stem)
def test_recipe_loads_and_resolves(path):
    config = load_recipe(path)
    resolved = config.resolved()
    assert config.name == path.stem and resolved["recipe"] == str(path)
    assert len(config.config_hash()) == 64
    for entry in config.expected:
        assert {"paper", "table", "metric", "value", "tolerance", "source"} <= set(entry), entry
        assert entry["source"] in SOURCE_TAGS and entry["value"] > 0 and entry["tolerance"] > 0
    if config.training.precision == "fp16":  # methods.md: Adam eps 1e-6 when fp16 is on
        assert {n.eps for n in config.training.networks.values()} == {1e-6}
    else:
        assert {n.eps for n in config.training.networks.values()} == {1e-8}


def _kind(path: Path) -> str:
    return path.stem.split("-", 1)[0]


@pytest.mark.parametrize("suite", EDM_SUITES)
@pytest.mark.parametrize("kind", ["sid", "sida", "sid2a"])
def test_paper_settings_are_methods_md(kind, suite):
    config = load_recipe(RECIPES / f"{kind}-{suite}.yaml")
    t, m = config.training, config.method_settings
    g, f = t.networks["generator"], t.networks["fake_score"]
    lr, batch, bpg, alpha, ema_mimg, fp16, dropout, aug, mimg, g_beta1 = SID[suite]
    if kind != "sid":
        batch, bpg, mimg = SIDA_BATCH[suite]
        alpha, g_beta1 = 1.0, 0.0
        mimg = 100 if kind == "sid2a" else mimg
    assert config.suite == suite and config.method == ("sid" if kind == "sid" else "sida")
    assert (g.lr, f.lr) == (lr, lr)
    assert (t.batch, t.batch_per_gpu, t.duration_kimg) == (batch, bpg, mimg * 1000)
    assert (m.alpha, m.sigma_init, m.tmax, m.loss_scale, m.augment_p) == (alpha, 2.5, 800, 100.0, aug)
    assert t.precision == ("fp16" if fp16 else "fp32")
    assert (g.dropout, f.dropout) == (dropout, dropout)
    assert (g.ema_halflife_kimg, g.ema_rampup) == (ema_mimg * 1000, 0.05)
    assert g.betas == (g_beta1, 0.999) and f.betas == (0.0, 0.999)
    assert (g.optimizer, f.optimizer) == ("adam", "adam")
    if kind == "sid":
        assert f.grad_clip_value is None and t.init_generator is None
    else:  # SiDA: fake-net gradient values clipped at 1; --lsg_gan 0.01, --lsd 1; gates 100 / 200 kimg
        assert f.grad_clip_value == 1.0
        gates = (m.generator_start_kimg, m.gan_start_kimg)
        assert (m.gan_scale, m.disc_scale, *gates) == (0.01, 1.0, 100.0, 200.0)
        assert (t.init_generator is not None) == (kind == "sid2a")
    assert t.dataset is None  # the suite's own, identity-checked (never ffhq-64x64.zip for AFHQv2)
    assert t.teacher is None


@pytest.mark.parametrize("suite", EDM_SUITES)
@pytest.mark.parametrize("kind", ["sid", "sida", "sid2a"])
def test_expected_numbers_are_methods_md(kind, suite):
    config = load_recipe(RECIPES / f"{kind}-{suite}.yaml")
    (entry,) = config.expected
    assert entry["metric"] == "fid" and entry["source"] == "code" and entry["arxiv"] == ARXIV[kind]
    assert entry["value"] == (SID_FID if kind == "sid" else SIDA_FID)[suite]
    assert entry["protocol"] == "sid-fid50k"  # "best checkpoint" of the in-training FID
    assert "Score identity Distillation" in entry["paper"] and "README" in entry["table"]


def test_hardware_is_cited():
    for path in _all():
        config = load_recipe(path)
        if config.suite in EDM_SUITES and config.method in ("sid", "sida"):
            hw = config.hardware
            assert hw["gpus"] == 4 and "nproc_per_node=4" in hw["source"]
            assert "mingyuanzhou/SiD" in hw["source"]
            assert "gpu" not in hw  # the GPU model is not stated by the authors: left out, never guessed


def test_laptop_recipes_have_no_paper_number_and_are_the_quickstarts():
    from sidbench.workflows.quickstart import DISTILL_RECIPES

    for name in ("sid-digits", "sida-digits", "sid-toy2d"):
        assert load_recipe(RECIPES / f"{name}.yaml").expected == ()
    for method, raw in DISTILL_RECIPES.items():
        from_file = load_recipe(RECIPES / f"{method}-digits.yaml")
        assert from_file.config_hash() == load_recipe(raw).config_hash(), method


# --- distill --dry-run ----------------------------------------------------------------------------

def test_dry_run_resolves_checks_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, err = run_cli(["distill", RECIPES / "sid-digits.yaml", "--outdir", out, "--dry-run",
                               "--set", "training.seed=3"], capsys)
    assert rc == 0, err
    printed = json.loads(stdout[:stdout.rindex("}") + 1])
    assert printed["config"]["training"]["seed"] == 3 and printed["config"]["method"] == "sid"
    assert printed["teacher"]["sha256"] and printed["total_steps"] > 0
    assert "nothing trained" in stdout
    assert not (out / "checkpoints").exists()


@pytest.mark.parametrize("setting, near", [("training.bach=64", "training.batch"),
                                           ("method.alfa=1.0", "alpha"),
                                           ("training.networks.generatr.lr=1e-4", "generator"),
                                           ("trainng.seed=1", "training")])
def test_unknown_set_key_names_the_nearest(setting, near, tmp_path, capsys):
    rc, _, err = run_cli(["distill", RECIPES / "sid-digits.yaml", "--outdir", tmp_path / "o", "--dry-run",
                          "--set", setting], capsys)
    assert rc == 1 and err.count("\n") == 1 and f"'{near}" in err and "Traceback" not in err, err


@pytest.mark.parametrize("setting", ["training.batch", "=3", ""])
def test_set_without_key_value_is_one_line(setting, tmp_path, capsys):
    argv = ["distill", RECIPES / "sid-digits.yaml", "--outdir", tmp_path / "o", "--set", setting]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 1 and "key=value" in err and err.count("\n") == 1, err


def test_missing_recipe_and_missing_resume_checkpoint_are_one_line(tmp_path, capsys):
    rc, _, err = run_cli(["distill", tmp_path / "nope.yaml", "--outdir", tmp_path / "o"], capsys)
    assert rc == 1 and "nope.yaml" in err and err.count("\n") == 1
    rc, _, err = run_cli(["distill", RECIPES / "sid-digits.yaml", "--outdir", tmp_path / "o",
                          "--resume", tmp_path / "ckpt"], capsys)
    assert rc == 1 and "--resume" in err and err.count("\n") == 1


def _tiny_edm_zip(path: Path, n: int, res: int) -> Path:
    """An EDM dataset_tool archive: 00000/img00000000.png ... and a dataset.json without labels."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            buf = io.BytesIO()
            PIL.Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(buf, format="PNG")
            zf.writestr(f"{i // 1000:05d}/img{i:08d}.png", buf.getvalue())
        zf.writestr("dataset.json", json.dumps({"labels": None}))
    return path


def _tiny_teacher(out: Path, res: int) -> Path:
    """A native network with the facts of the 64x64 EDM teachers (EDMPrecond, SongUNet, 3 channels)."""
    import torch

    from sidbench.nets.build import build_network
    from sidbench.nets.native import save_network

    config = {"class_name": "EDMPrecond", "init_kwargs": {
        "img_resolution": res, "img_channels": 3, "label_dim": 0, "model_type": "SongUNet", "augment_dim": 9,
        "model_channels": 8, "channel_mult": [1], "num_blocks": 1, "attn_resolutions": []}}
    torch.manual_seed(0)
    save_network(build_network(config), config, out)
    return out


FP16_ON_CPU = pytest.mark.filterwarnings("ignore:training.precision fp16 runs in float32 on cpu")


@FP16_ON_CPU
def test_dry_run_refuses_the_ffhq_archive_for_afhqv2(tmp_path, capsys):
    teacher = _tiny_teacher(tmp_path / "teacher", 64)
    ffhq = _tiny_edm_zip(tmp_path / "ffhq-64x64.zip", 6, 64)  # the right resolution, another dataset
    rc, _, err = run_cli(["distill", RECIPES / "sida-afhqv2-64.yaml", "--outdir", tmp_path / "o", "--dry-run",
                          "--set", f"training.teacher={teacher}", "--set", f"training.dataset={ffhq}"],
                         capsys)
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "ffhq-64x64.zip is not the expected dataset afhqv2-64x64" in err and "15,803" in err
    assert not (tmp_path / "o" / "checkpoints").exists()


@FP16_ON_CPU
def test_dry_run_names_a_missing_dataset_and_a_wrong_teacher(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    teacher = _tiny_teacher(tmp_path / "teacher", 64)
    rc, _, err = run_cli(["distill", RECIPES / "sida-afhqv2-64.yaml", "--outdir", tmp_path / "o", "--dry-run",
                          "--set", f"training.teacher={teacher}"], capsys)
    assert rc == 1 and "afhqv2-64x64.zip" in err and err.count("\n") == 1, err
    small = _tiny_teacher(tmp_path / "teacher32", 32)
    rc, _, err = run_cli(["distill", RECIPES / "sida-afhqv2-64.yaml", "--outdir", tmp_path / "o", "--dry-run",
                          "--set", f"training.teacher={small}"], capsys)
    assert rc == 1 and "resolution 32 (suite: 64)" in err, err


def test_sid2a_dry_run_refuses_a_missing_sid_generator(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe's default init_generator, runs/sid-cifar10-uncond, is not there
    teacher = _tiny_teacher(tmp_path / "teacher", 32)
    rc, _, err = run_cli(["distill", RECIPES / "sid2a-cifar10-uncond.yaml", "--outdir", tmp_path / "o",
                          "--dry-run", "--set", f"training.teacher={teacher}"], capsys)
    assert rc == 1 and "init_generator runs/sid-cifar10-uncond" in err and err.count("\n") == 1, err


# --- SiD-LSG (text-to-image) -----------------------------------------------------------------------
# Written out from methods.md "SiD-LSG" (settings; FID / CLIP per teacher and kappa) and the authors'
# mingyuanzhou/SiD-LSG@709fc22 (run_sid.sh, sid_train.py defaults; generate_onestep.py names the
# checkpoint of each number, batch512_[sd21_]cfg<k><k><k>_t625_<kimg>_v2.pkl).
LSG = {  # (teacher, kappa): [(FID, CLIP, checkpoint kimg, longer training)]
    ("sd15", "1.5"): [(8.71, 0.302, 8806, False), (8.15, 0.304, 18789, True)],
    ("sd15", "2"): [(9.56, 0.313, 4812, False)], ("sd15", "3"): [(13.21, 0.314, 6349, False)],
    ("sd15", "4.5"): [(16.59, 0.317, 8380, False)],
    ("sd21base", "1.5"): [(9.52, 0.308, 9728, False)], ("sd21base", "2"): [(10.97, 0.318, 8482, False)],
    ("sd21base", "3"): [(13.50, 0.321, 6144, False)], ("sd21base", "4.5"): [(16.54, 0.322, 7168, False)],
}


def _lsg(teacher: str, kappa: str):
    return load_recipe(RECIPES / f"sid-lsg-coco2014-{teacher}-kappa{kappa}.yaml")


def test_every_sid_lsg_setting_has_a_recipe():
    names = {p.stem for p in _all() if p.stem.startswith("sid-lsg-")}
    wanted = {f"sid-lsg-coco2014-{t}-kappa{k}" for t, k in LSG} | {"sid-lsg-digits-t2i"}
    assert names == wanted, sorted(names ^ wanted)


@pytest.mark.parametrize("teacher, kappa", sorted(LSG), ids=lambda x: str(x))
def test_sid_lsg_settings_are_methods_md(teacher, kappa):
    config = _lsg(teacher, kappa)
    m, t = config.method_settings, config.training
    g, f = t.networks["generator"], t.networks["fake_score"]
    k = float(kappa)
    assert (config.suite, config.method) == (f"coco2014-{teacher}", "sid-lsg")
    assert (m.cfg_train_fake, m.cfg_eval_fake, m.cfg_eval_real) == (k, k, k)
    assert (m.t_init, m.tmin, m.tmax, m.alpha, m.prompt_dropout) == (625, 20, 980, 1.0, 0.1)
    assert (m.loss_scale, m.fake_loss_scale) == (1.0, 1.0)
    assert (t.batch, t.batch_per_gpu, t.precision) == (512, 1, "fp32")
    assert t.duration_kimg == max(kimg for _, _, kimg, _ in LSG[(teacher, kappa)])
    for net in (g, f):
        assert (net.optimizer, net.lr, net.betas, net.eps) == ("adam", 1e-6, (0.0, 0.999), 1e-8)
        assert (net.grad_clip_value, net.grad_clip_norm, net.weight_decay) == (None, None, 0.0)
    assert (g.ema_halflife_kimg, g.ema_rampup) == (50.0, 0.05)  # --ema 0.05 Mimg -> int(50) kimg
    assert t.teacher and t.prompts and t.dataset is None and t.init_generator is None
    assert set(t.eval.protocols) == {"coco2014-fid30k-clean", "clip-score-vitg14"}
    hw = config.hardware
    assert hw["gpus"] == 4 and "nproc_per_node=4" in hw["source"] and "mingyuanzhou/SiD-LSG" in hw["source"]
    assert "gpu" not in hw  # the GPU model is not stated by the authors


@pytest.mark.parametrize("teacher, kappa", sorted(LSG), ids=lambda x: str(x))
def test_sid_lsg_expected_numbers_are_methods_md_and_published_yaml(teacher, kappa):
    from sidbench.leaderboards.published import published_records

    config = _lsg(teacher, kappa)
    rows = LSG[(teacher, kappa)]
    assert len(config.expected) == 2 * len(rows)
    published = {(r["suite"]["name"], r["method"]["label"]): r["metrics"]
                 for r in published_records(RECIPES.parent / "leaderboards" / "published.yaml")}
    pairs = [config.expected[i:i + 2] for i in range(0, len(config.expected), 2)]
    for (fid, clip, kimg, longer), pair in zip(rows, pairs, strict=True):
        by_metric = {e["metric"]: e for e in pair}
        assert by_metric["fid"]["value"] == fid and by_metric["clip_score"]["value"] == clip
        assert by_metric["fid"]["protocol"] == "coco2014-fid30k-clean"
        assert by_metric["clip_score"]["protocol"] == "clip-score-vitg14"
        label = f"SiD-LSG (kappa {kappa}{', longer training' if longer else ''})"
        row = published[(config.suite, label)]
        assert (row["fid"]["value"], row["clip_score"]["value"]) == (fid, clip)
        for e in pair:
            assert e["source"] == "code" and e["arxiv"] == "2406.01561" and "README" in e["table"]
            assert "Guided Score identity Distillation" in e["paper"] and e["kimg"] == kimg
            assert e["released"].endswith(f"_t625_{kimg}_v2.pkl") and ("sd21" in e["released"]) == (
                teacher == "sd21base")
            assert ("longer training" in e["table"] and "longer training" in e["note"]) == longer


def test_sid_lsg_fp16_lines_of_the_header_load():
    """The header's fp16 `--set` lines give fp16 with the generator's gradient value clipping at 1."""
    import re

    path = RECIPES / "sid-lsg-coco2014-sd15-kappa2.yaml"
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
    sets = re.findall(r"--set (\S+)", header.split("fp16", 1)[1])
    config = load_recipe(path, [s for s in sets if not s.endswith("=DIR") and not s.endswith("=FILE")])
    t = config.training
    assert t.precision == "fp16" and t.networks["generator"].grad_clip_value == 1.0
    assert t.networks["fake_score"].grad_clip_value is None
    assert {n.eps for n in t.networks.values()} == {1e-6}


def test_sid_lsg_digits_t2i_is_a_laptop_recipe():
    config = load_recipe(RECIPES / "sid-lsg-digits-t2i.yaml")
    m, t = config.method_settings, config.training
    assert (config.suite, config.method, config.expected) == ("digits-t2i", "sid-lsg", ())
    assert (m.cfg_train_fake, m.cfg_eval_fake, m.cfg_eval_real, m.t_init) == (2.0, 2.0, 2.0, 625)
    assert (t.batch, t.duration_kimg, t.eval_kimg, t.total_steps) == (16, 6.4, 1.6, 400)
    assert t.eval.protocols == ("digits-fd", "digits-t2i-alignment")
    assert t.teacher is None and t.prompts is None  # the packaged teacher and the suite's captions


@pytest.mark.parametrize("teacher", ["sd15", "sd21base"])
def test_sid_lsg_dry_run_names_the_missing_teacher_and_checks_a_given_one(teacher, tmp_path, capsys):
    from tests.t2i._tiny_sd import write_layout

    recipe = RECIPES / f"sid-lsg-coco2014-{teacher}-kappa2.yaml"
    rc, _, err = run_cli(["distill", recipe, "--outdir", tmp_path / "o", "--dry-run"], capsys)
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "models/stable-diffusion-" in err and f"coco2014-{teacher}" in err
    sd = write_layout(tmp_path / "sd")  # configs only: the dry run reads JSON, never weights
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog on a sofa\n")
    rc, stdout, err = run_cli(["distill", recipe, "--outdir", tmp_path / "o", "--dry-run",
                               "--set", f"training.teacher={sd}", "--set", f"training.prompts={prompts}",
                               "--set", "training.eval_kimg=null"], capsys)
    assert rc == 0, err
    printed = json.loads(stdout[:stdout.rindex("}") + 1])
    kimg = LSG[(teacher, "2")][0][2]
    assert printed["teacher_path"] == str(sd) and printed["total_steps"] == -(-kimg * 1000 // 512)
    assert printed["config"]["suite"] == f"coco2014-{teacher}" and "nothing trained" in stdout
    assert not (tmp_path / "o" / "checkpoints").exists()
