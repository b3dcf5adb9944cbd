"""Text-to-image failure paths: a missing `t2i` extra, a missing or incomplete SD folder, bad prompts.

Each must be one line naming the problem and its fix, with no traceback: from the Python functions
(load_t2i_teacher, build_network, sidbench.api.distill) and from `sidbench distill` of a small
coco2014-sd15 / sid-lsg recipe. The extra is "missing" by putting None in sys.modules, which makes
`import diffusers` raise ImportError even after diffusers was imported. The last test runs the
recipe for one step on the tiny SD folder: the path the failures are checked against works.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from sidbench.errors import AssetError, ConfigError
from tests._cli import run_cli
from tests.t2i import _tiny_sd
from tests.t2i._tiny_sd import write_layout

tiny_sd15 = _tiny_sd.tiny_sd15  # the module-scoped tiny SD-1.5-style folder (a fixture)
INSTALL = 'pip install -e ".[t2i]"'
WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


def _recipe(tmp_path: Path, teacher: Path, prompts: Path | None) -> Path:
    """A coco2014-sd15 / sid-lsg recipe of one step of two images."""
    training = {"seed": 0, "batch": 2, "batch_per_gpu": 2, "duration_kimg": 0.002, "precision": "fp32",
                "teacher": str(teacher), "checkpoint_kimg": 0.002, "tensorboard": False,
                "networks": {"generator": {"lr": 1e-5}, "fake_score": {"lr": 1e-5}}}
    if prompts is not None:
        training["prompts"] = str(prompts)
    recipe = {"name": "lsg-tiny", "suite": "coco2014-sd15", "method": "sid-lsg",
              "method_settings": {"cfg_eval_real": 2.0}, "training": training}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("a cat\na dog on a mat\n")
    return path


@pytest.fixture
def incomplete(tmp_path) -> Path:
    root = write_layout(tmp_path / "sd15")
    (root / WEIGHTS).unlink()
    return root


@pytest.fixture
def no_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)


def _distill(capsys, tmp_path, recipe: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(["distill", recipe, "--outdir", tmp_path / "run", "--device", "cpu", *extra], capsys)


def _error_line(rc: int, err: str) -> str:
    """The one error line of a failed command (a library's progress bar may also be on stderr)."""
    assert rc == 1 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("sidbench distill: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _one_line(info) -> str:
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text and info.value.hint
    return text


# --------------------------------------------------------------- Python functions ----

def test_missing_or_incomplete_folders_from_load_t2i_teacher(tmp_path, incomplete):
    from sidbench.nets.t2i import load_t2i_teacher

    with pytest.raises(AssetError, match="is neither a diffusers folder .* nor a network folder") as info:
        load_t2i_teacher(tmp_path / "nowhere")
    _one_line(info)
    with pytest.raises(AssetError) as info:
        load_t2i_teacher(incomplete)
    assert f"is incomplete: missing {WEIGHTS}" in _one_line(info)


@pytest.mark.parametrize("module", ["diffusers", "transformers"])
def test_missing_extra_from_load_t2i_teacher(tiny_sd15, monkeypatch, module):
    from sidbench.nets.t2i import load_t2i_teacher

    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError) as info:
        load_t2i_teacher(tiny_sd15)
    assert f"({module} is missing)" in _one_line(info) and INSTALL in info.value.hint


@pytest.mark.parametrize("module", ["diffusers", "transformers"])
def test_missing_extra_when_a_native_eps_denoiser_is_built(monkeypatch, module):
    """The digits-t2i teacher is a native folder; building it needs the extra too."""
    from sidbench.nets.build import build_network

    kwargs = {"img_resolution": 8, "img_channels": 4, "unet": _tiny_sd.init_args(_tiny_sd.UNET)}
    if module == "transformers":
        kwargs["text_encoder"] = {"vocab_size": 8, "hidden_size": 16, "intermediate_size": 32,
                                  "num_hidden_layers": 1, "num_attention_heads": 2}
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError) as info:
        build_network({"class_name": "EpsDenoiser", "init_kwargs": kwargs})
    assert f"text-to-image networks need {module} ({module} is missing)" in _one_line(info)
    assert INSTALL in info.value.hint


def test_missing_folder_from_api_distill(tmp_path, prompts, incomplete):
    from sidbench import api

    with pytest.raises(AssetError) as info:
        api.distill(_recipe(tmp_path, tmp_path / "nowhere", prompts), outdir=tmp_path / "run", device="cpu")
    assert "does not exist" in _one_line(info)
    with pytest.raises(AssetError) as info:
        api.distill(_recipe(tmp_path, incomplete, prompts), outdir=tmp_path / "run", dry_run=True)
    assert f"missing {WEIGHTS}" in _one_line(info)


# ------------------------------------------------------------------------ the CLI ----

@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_cli_missing_teacher_folder(tmp_path, capsys, prompts, dry_run):
    rc, _, err = _distill(capsys, tmp_path, _recipe(tmp_path, tmp_path / "nowhere", prompts),
                          *(["--dry-run"] if dry_run else []))
    line = _error_line(rc, err)
    assert err.strip() == line and f"teacher path {tmp_path / 'nowhere'} does not exist" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_cli_incomplete_teacher_folder(tmp_path, capsys, prompts, incomplete, dry_run):
    rc, _, err = _distill(capsys, tmp_path, _recipe(tmp_path, incomplete, prompts),
                          *(["--dry-run"] if dry_run else []))
    line = _error_line(rc, err)
    assert err.strip() == line
    assert f"Stable Diffusion folder {incomplete} is incomplete: missing {WEIGHTS}" in line
    assert "never unpickles .bin files" in line


def test_cli_sd_folder_without_model_index(tmp_path, capsys, prompts, tiny_sd15):
    root = Path(shutil.copytree(tiny_sd15, tmp_path / "sd15"))
    (root / "model_index.json").unlink()
    rc, _, err = _distill(capsys, tmp_path, _recipe(tmp_path, root, prompts), "--dry-run")
    assert "missing model_index.json" in _error_line(rc, err)


def test_cli_missing_extra(tmp_path, capsys, prompts, tiny_sd15, no_extra):
    rc, _, err = _distill(capsys, tmp_path, _recipe(tmp_path, tiny_sd15, prompts))
    line = _error_line(rc, err)
    assert err.strip() == line
    assert "(diffusers is missing)" in line and line.endswith(f"(install the text-to-image extra: {INSTALL})")


@pytest.mark.parametrize("case", ["no prompts", "missing extra"])
def test_cli_dry_run_checks_what_the_run_needs(tmp_path, capsys, tiny_sd15, monkeypatch, case):
    (tmp_path / "p.txt").write_text("a cat\n")
    if case == "missing extra":
        monkeypatch.setitem(sys.modules, "diffusers", None)
    given = None if case == "no prompts" else tmp_path / "p.txt"
    rc, _, err = _distill(capsys, tmp_path, _recipe(tmp_path, tiny_sd15, given), "--dry-run")
    _error_line(rc, err)


def test_cli_run_without_prompts(tmp_path, capsys, tiny_sd15):
    rc, _, err = _distill(capsys, tmp_path, _recipe(tmp_path, tiny_sd15, None))
    line = _error_line(rc, err)
    assert "suite coco2014-sd15 has no built-in training prompts (set training.prompts" in line


BAD_PROMPTS = {"missing": (None, "cannot read prompt file"), "empty": (b"", "holds no captions"),
               "bad COCO": (b'{"annotations": [{"id": 1}]}', "annotation 0 has no caption string")}


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("case", BAD_PROMPTS, ids=list(BAD_PROMPTS))
def test_cli_bad_prompt_files(tmp_path, capsys, tiny_sd15, case, dry_run):
    content, message = BAD_PROMPTS[case]
    path = tmp_path / ("p.json" if content and content.startswith(b"{") else "p.txt")
    if content is not None:
        path.write_bytes(content)
    recipe = _recipe(tmp_path, tiny_sd15, path)
    rc, _, err = _distill(capsys, tmp_path, recipe, *(["--dry-run"] if dry_run else []))
    line = _error_line(rc, err)
    assert message in line and str(path) in line


def test_cli_one_step_on_the_tiny_folder(tmp_path, capsys, prompts, tiny_sd15):
    recipe = _recipe(tmp_path, tiny_sd15, prompts)
    rc, out, err = _distill(capsys, tmp_path, recipe, "--dry-run")
    assert rc == 0, err
    rc, out, err = _distill(capsys, tmp_path, recipe)
    assert rc == 0, err
    product = tmp_path / "run" / "checkpoints" / "step-00000001" / "product"
    assert "finished at step 1" in out and (product / "network.json").is_file()
    from sidbench.nets.native import read_network_record

    record = read_network_record(product)
    assert record["class_name"] == "EpsDenoiser" and record["init_kwargs"]["schedule"]["beta_end"] == 0.012
    assert os.path.getsize(product / "network.safetensors") > 0
