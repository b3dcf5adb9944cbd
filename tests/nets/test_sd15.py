"""Stable Diffusion 1.5 loading, on a tiny random diffusers pipeline built offline in tmp_path.

The folder (tests/t2i/_tiny_sd.py) has SD 1.5's layout and file names (PNDM scheduler config,
CLIP tokenizer vocab.json + merges.txt, safetensors weights), with channels small enough to build,
save and load in a few seconds (most of it importing diffusers). The folder checks read
only JSON, so the tests of bad folders run without the `t2i` extra; the loading tests
need it (the README's install command includes it).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from sidbench.errors import AssetError, ConfigError
from sidbench.nets.sd15 import COMPONENT_FILES, EXPECTED, check_sd15_folder, load_sd15
from tests.t2i import _tiny_sd
from tests.t2i._tiny_sd import (
    BOS,
    EOS,
    SCHEDULER,
    TEXT,
    TOKENIZER,
    UNET,
    VAE,
    VOCAB,
    init_args,
    write_json,
    write_layout,
)

tiny_sd15 = _tiny_sd.tiny_sd15  # the module-scoped complete tiny pipeline (a fixture)


def _edit(root: Path, name: str, **changes) -> None:
    path = root / name
    write_json(path, {**json.loads(path.read_text()), **changes})


@pytest.fixture
def layout(tmp_path) -> Path:
    return write_layout(tmp_path / "sd15")


@pytest.fixture
def tiny_copy(tiny_sd15, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_sd15, tmp_path / "sd15"))


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _one_line(info, root: Path | None = None) -> str:
    """The error's message (without its hint and, if given, the folder's path), checked to be one line."""
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    return info.value.message if root is None else info.value.message.replace(str(root), "<root>")


# ---------------------------------------------------------------- loading ----

def test_tiny_pipeline_loads_with_the_configs_as_written(tiny_sd15):
    import diffusers
    import transformers
    from safetensors.torch import load_file

    sd = load_sd15(tiny_sd15)
    assert isinstance(sd.unet, diffusers.UNet2DConditionModel)
    assert isinstance(sd.vae, diffusers.AutoencoderKL)
    assert isinstance(sd.text_encoder, transformers.CLIPTextModel)
    assert isinstance(sd.scheduler, diffusers.DDPMScheduler)  # from SD 1.5's PNDM config
    assert sd.path == tiny_sd15
    for written, loaded in ((UNET, sd.unet.config), (VAE, sd.vae.config)):
        for key, value in init_args(written).items():
            assert _plain(loaded[key]) == value, key
    for key, value in init_args(TEXT).items():
        assert getattr(sd.text_encoder.config, key) == value, key
    for key in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule"):
        assert sd.scheduler.config[key] == SCHEDULER[key], key
    assert sd.scheduler.config.prediction_type == "epsilon"
    assert sd.tokenizer.model_max_length == TOKENIZER["model_max_length"]
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2  # scaled_linear
    torch.testing.assert_close(sd.scheduler.alphas_cumprod, torch.cumprod(1 - betas, 0), rtol=0, atol=0)
    # the saved weights, not a fresh random init
    saved = load_file(tiny_sd15 / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in sd.unet.state_dict().items())
    for module in (sd.unet, sd.vae, sd.text_encoder):
        assert not module.training and not any(p.requires_grad for p in module.parameters())


def test_tiny_pipeline_runs_end_to_end(tiny_sd15):
    """Tokenizer -> text encoder -> UNet -> VAE decoder: the components are wired as SiD-LSG needs."""
    sd = load_sd15(tiny_sd15)
    ids = sd.tokenizer(["a cat", ""], padding="max_length", max_length=sd.tokenizer.model_max_length,
                       truncation=True, return_tensors="pt").input_ids
    assert ids[0, :4].tolist() == [BOS, VOCAB["a</w>"], VOCAB["cat</w>"], EOS]  # the BPE merges apply
    assert ids[1, :2].tolist() == [BOS, EOS] and ids.shape == (2, 8)
    with torch.no_grad():
        text = sd.text_encoder(ids)[0]
        z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        eps = sd.unet(z, torch.tensor([625, 625]), encoder_hidden_states=text).sample
        image = sd.vae.decode(z / sd.vae.config.scaling_factor).sample
    assert text.shape == (2, 8, 16) and eps.shape == z.shape and image.shape == (2, 3, 16, 16)
    assert torch.isfinite(eps).all() and torch.isfinite(image).all()
    assert not torch.allclose(eps[0], eps[1])  # the prompt reaches the UNet


def test_dtype_is_applied(tiny_sd15):
    sd = load_sd15(tiny_sd15, dtype=torch.float64)
    assert {p.dtype for m in (sd.unet, sd.vae, sd.text_encoder) for p in m.parameters()} == {torch.float64}


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


DAMAGED = {
    "unet header": ("unet", lambda r: _truncate(r / "unet" / "diffusion_pytorch_model.safetensors", 200)),
    "vae tail": ("vae", lambda r: _truncate(r / "vae" / "diffusion_pytorch_model.safetensors", -100)),
    "text encoder tail": ("text_encoder",
                          lambda r: _truncate(r / "text_encoder" / "model.safetensors", -100)),
    "vocab": ("tokenizer", lambda r: (r / "tokenizer" / "vocab.json").write_text("{bad")),
    "unet config vs weights": ("unet", lambda r: _edit(r, "unet/config.json", block_out_channels=[8, 32])),
    "text config vs weights": ("text_encoder", lambda r: _edit(r, "text_encoder/config.json",
                                                                intermediate_size=64)),
}


@pytest.mark.parametrize("case", DAMAGED, ids=list(DAMAGED))
def test_damaged_components_are_one_line_asset_errors_naming_the_component(tiny_copy, case):
    component, damage = DAMAGED[case]
    damage(tiny_copy)
    with pytest.raises(AssetError) as info:
        load_sd15(tiny_copy)
    assert _one_line(info, tiny_copy).startswith(
        f"cannot load the Stable Diffusion 1.5 {component} from <root>/{component}: ")


# --------------------------------------------------------- bad folders ----

@pytest.mark.parametrize("module", ["diffusers", "transformers"])
def test_missing_extra_names_the_install_command(layout, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` raise ImportError
    with pytest.raises(ConfigError) as info:
        load_sd15(layout)
    assert f"({module} is missing)" in _one_line(info)
    assert 'pip install -e ".[t2i]"' in info.value.hint


def test_layout_passes_the_checks(layout):
    assert check_sd15_folder(layout) == layout


def test_missing_folder_lists_the_expected_layout(tmp_path):
    with pytest.raises(AssetError) as info:
        load_sd15(tmp_path / "nowhere")
    assert "does not exist" in _one_line(info)
    assert all(name in info.value.hint for name in EXPECTED)


def test_incomplete_folder_names_what_is_missing(layout):
    shutil.rmtree(layout / "vae")
    (layout / "model_index.json").unlink()
    with pytest.raises(AssetError, match=r"missing model_index\.json, vae/") as info:
        load_sd15(layout)
    _one_line(info)


@pytest.mark.parametrize("name", [f"{c}/{n}" for c, names in COMPONENT_FILES.items() for n in names])
def test_each_missing_component_file_is_named(layout, name):
    (layout / name).unlink()
    with pytest.raises(AssetError) as info:
        check_sd15_folder(layout)
    assert _one_line(info, layout) == f"Stable Diffusion folder <root> is incomplete: missing {name}"


@pytest.mark.parametrize("weights,pickled", [
    ("unet/diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    ("text_encoder/model.safetensors", "pytorch_model.bin"),
])
def test_pickled_weights_are_not_an_alternative(layout, weights, pickled):
    (layout / weights).rename((layout / weights).with_name(pickled))
    with pytest.raises(AssetError) as info:
        check_sd15_folder(layout)
    assert _one_line(info, layout).endswith(f"missing {weights} (only a pickled .bin is there)")


def test_sharded_safetensors_count_as_present(layout):
    weights = layout / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_name(weights.name + ".index.json"))
    assert check_sd15_folder(layout) == layout


NOT_SD15 = {
    "sdxl pipeline": ("model_index.json", {"_class_name": "StableDiffusionXLPipeline"},
                      "StableDiffusionXLPipeline"),
    "sdxl unet": ("unet/config.json", {"addition_embed_type": "text_time"}, "SDXL-style"),
    "inpainting unet": ("unet/config.json", {"in_channels": 9}, "in/out channels 9/4"),
    "other text width": ("unet/config.json", {"cross_attention_dim": 1024}, "cross_attention_dim 1024"),
    "other unet class": ("unet/config.json", {"_class_name": "UNet2DModel"}, "UNet2DModel"),
    "v-prediction": ("scheduler/scheduler_config.json", {"prediction_type": "v_prediction"}, "v_prediction"),
    "other schedule length": ("scheduler/scheduler_config.json", {"num_train_timesteps": 500},
                              "500 training"),
    "other tokenizer": ("model_index.json", {"tokenizer": ["transformers", "T5Tokenizer"]}, "T5Tokenizer"),
    "other text encoder": ("model_index.json", {"text_encoder": ["transformers", "T5EncoderModel"]},
                           "T5EncoderModel"),
    "vae missing from index": ("model_index.json", {"vae": None}, "gives vae as None"),
}


@pytest.mark.parametrize("case", NOT_SD15, ids=list(NOT_SD15))
def test_folders_that_are_not_sd15_shaped_are_refused(layout, case, monkeypatch):
    name, changes, expected = NOT_SD15[case]
    _edit(layout, name, **changes)
    monkeypatch.setitem(sys.modules, "diffusers", None)  # refused from the JSON, before diffusers is needed
    with pytest.raises(AssetError, match="is not a Stable Diffusion 1.5-style pipeline") as info:
        load_sd15(layout)
    msg = _one_line(info, layout)
    assert expected in msg and msg.count(";") == 0  # exactly the one problem introduced


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff\xfe"],
                         ids=["syntax", "not-an-object", "bytes"])
def test_unreadable_config_is_named(layout, content):
    path = layout / "vae" / "config.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(AssetError, match=r"vae/config\.json") as info:
        check_sd15_folder(layout)
    _one_line(info)
