"""The digits-t2i suite's shipped teacher: present, small, hash-checked, the suite's network, and usable.

The quality check samples the teacher as the suite does (DDIM with guidance) on a few captions and
asks the digits classifier whether each image is the digit its caption names: a text-conditional
teacher that ignored its prompts would score about 0.1.
"""

import json

import pytest
import torch

from sidbench.fileio import sha256_file
from sidbench.suites.digits_t2i import SUITE, TEACHER_DIR, TEACHER_NETWORK, TEACHER_TRAINING

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

MAX_BYTES = 20 * 1024 * 1024  # the budget for the whole suite


def test_shipped_files_are_small_and_match_their_hash():
    files = [p for p in TEACHER_DIR.iterdir() if p.is_file()]
    assert {p.name for p in files} == {"network.json", "network.safetensors", "training.json"}
    assert sum(p.stat().st_size for p in files) < MAX_BYTES
    record = json.loads((TEACHER_DIR / "network.json").read_text())
    assert record["weights_sha256"] == sha256_file(TEACHER_DIR / "network.safetensors")


def test_the_teacher_is_the_suites_network_and_was_made_by_train_teacher():
    from sidbench.nets.native import read_network_record
    from sidbench.suites.resolve import check_teacher

    record = read_network_record(TEACHER_DIR)
    check_teacher(SUITE, record)
    assert record["class_name"] == "EpsDenoiser" and record["role"] == "teacher"
    assert record["init_kwargs"]["unet"] == TEACHER_NETWORK["init_kwargs"]["unet"]
    training = json.loads((TEACHER_DIR / "training.json").read_text())
    assert training["suite"] == "digits-t2i" and training["kimg"] == TEACHER_TRAINING["kimg"]
    assert training["config"]["training"] == TEACHER_TRAINING
    assert training["loss_last"] < training["loss_first"]


def test_the_teacher_loads_split_into_a_frozen_unet_and_prompt_encoder():
    from sidbench.nets.t2i import load_t2i_teacher

    t = load_t2i_teacher(TEACHER_DIR)
    assert t.latent_shape == (1, 16, 16) and t.denoiser.text_encoder is None
    assert not any(p.requires_grad for p in t.denoiser.parameters())
    emb = t.prompts.encode(["a handwritten digit seven", "the number 3", ""])
    assert emb.shape[0] == 3 and torch.isfinite(emb).all()
    assert (emb[0] - emb[1]).abs().max() > 1e-3  # prompts differ


def test_guided_samples_show_the_prompted_digit():
    from sidbench.data.captions import digit_captions
    from sidbench.metrics.builtin.prompt_alignment import prompt_alignment
    from sidbench.metrics.extractors.digits_classifier import load_classifier
    from sidbench.nets.t2i import load_t2i_teacher
    from sidbench.nets.t2i_render import ddim_t2i_renderer

    t = load_t2i_teacher(TEACHER_DIR)
    captions = digit_captions(30)
    images = ddim_t2i_renderer(t, captions, num_steps=10, guidance=2.0)(list(range(30)))
    with torch.no_grad():
        logits = load_classifier()(images)["logits"]
    result = prompt_alignment(logits.double().numpy(), [i % 10 for i in range(30)])
    assert result.value > 0.8 and result.accuracy > 0.8, result
