"""Prompt lists (txt / JSON / COCO annotations), the digits-t2i captions, and two COCO-protocol image facts.

Already covered elsewhere, so not repeated here: the pinned captions.txt sha256 and the warning for
another list (tests/data/test_coco.py), the captions-sha256 deviation in records, the center crop +
LANCZOS 256 of non-square images against PIL and the CLIP score against a direct open_clip cosine with
the "A photo depicts " prefix (tests/metrics/test_evaluate.py, test_extractors.py, test_protocols.py).
What is added: the crop offset and grey images of val2014, against GigaGAN's own reader (torchvision's
CocoCaptions: PIL convert("RGB"), then torchvision's center_crop to the short side).
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from sidbench.data.captions import (
    DIGIT_TEMPLATES,
    DIGIT_WORDS,
    builtin_prompts,
    digit_caption,
    digit_captions,
    digit_vocabulary,
    prompted_digit,
    read_prompts,
)
from sidbench.errors import DatasetError

COCO = {"info": {"description": "COCO 2014 Dataset"}, "images": [{"id": 1}, {"id": 2}],
        "annotations": [{"image_id": 2, "id": 7, "caption": "A man riding a bike down a street. "},
                        {"image_id": 1, "id": 3, "caption": "   "},
                        {"image_id": 1, "id": 9, "caption": "Two dogs on a couch\n"},
                        {"image_id": 2, "id": 1, "caption": "A café sign"}]}


def _one_line(info) -> str:
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text and info.value.hint
    return info.value.message


# ----------------------------------------------------------------- read_prompts ----

def test_coco_annotation_file_gives_its_captions_in_file_order(tmp_path):
    path = tmp_path / "captions_train2014.json"
    raw = json.dumps(COCO).encode()
    path.write_bytes(raw)
    got = read_prompts(path)
    assert got == ["A man riding a bike down a street.", "Two dogs on a couch", "A café sign"]
    assert got.describe() == {"path": str(path), "count": 3, "sha256": hashlib.sha256(raw).hexdigest(),
                              "format": "coco-annotations"}


def test_json_list_and_text_file(tmp_path):
    (tmp_path / "p.JSON").write_text(json.dumps(["a cat", "", " a dog ", "a\ncat"]), encoding="utf-8")
    got = read_prompts(tmp_path / "p.JSON")
    assert got == ["a cat", "a dog", "a\ncat"] and got.source_format == "json-list"  # "\n" inside stays
    raw = "\ufeffa cat\r\n\r\n  two  words \nlast".encode()  # BOM, CRLF, a blank line, no final newline
    (tmp_path / "p.txt").write_bytes(raw)
    got = read_prompts(tmp_path / "p.txt")
    assert got == ["a cat", "two  words", "last"] and got.source_format == "txt"
    assert got.sha256 == hashlib.sha256(raw).hexdigest()  # of the bytes as given
    (tmp_path / "noext").write_text("x\ny\n")
    assert read_prompts(tmp_path / "noext") == ["x", "y"]  # anything but .json is a text list


BAD = {
    "not json": ("p.json", b"[\"a cat\",", r"is not valid JSON \(Expecting value, line 1\)"),
    "a JSON number": ("p.json", b"3", "neither a list of strings nor a COCO annotation file"),
    "a JSON object": ("p.json", b'{"captions": ["a"]}', "neither a list of strings nor a COCO"),
    "a list with a number": ("p.json", b'["a", 2]', "item 1 of the JSON list is a int, not a caption string"),
    "an annotation without caption": ("p.json", json.dumps({"annotations": [{"caption": "a"}, {"id": 1}]})
                                      .encode(), "annotation 1 has no caption string"),
    "an annotation that is a string": ("p.json", b'{"annotations": ["a"]}', "annotation 0 has no caption"),
    "empty text": ("p.txt", b"", "holds no captions"),
    "blank lines": ("p.txt", b"\n  \r\n\t\n", "holds no captions"),
    "empty JSON list": ("p.json", b"[]", "holds no captions"),
    "COCO without annotations": ("p.json", b'{"annotations": []}', "holds no captions"),
    "latin-1 text": ("p.txt", "café".encode("latin-1"), "is not UTF-8 text"),
    "UTF-16 JSON": ("p.json", json.dumps(["a"]).encode("utf-16"), "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_prompt_files_are_one_line_dataset_errors(tmp_path, case):
    name, raw, message = BAD[case]
    (tmp_path / name).write_bytes(raw)
    with pytest.raises(DatasetError) as info:
        read_prompts(tmp_path / name)
    assert re.search(message, _one_line(info)) and str(tmp_path / name) in info.value.message


@pytest.mark.parametrize("where", ["missing.txt", "."], ids=["missing", "a folder"])
def test_unreadable_prompt_paths(tmp_path, where):
    with pytest.raises(DatasetError, match="cannot read prompt file") as info:
        read_prompts(tmp_path / where)
    _one_line(info)


# ------------------------------------------------------------ digits-t2i captions ----

def test_digit_captions_cycle_digits_then_templates():
    caps = digit_captions(65)
    assert caps[:3] == ["a handwritten digit zero", "a handwritten digit one", "a handwritten digit two"]
    assert caps[17] == "the number 7" and caps[29] == "a picture of the digit nine"
    assert caps[30:60] == caps[:30] and len(set(caps[:30])) == 30
    assert [prompted_digit(c) for c in caps] == [i % 10 for i in range(65)]
    assert caps == [digit_caption(i % 10, (i // 10) % 3) for i in range(65)]
    built = builtin_prompts("digits", 30)
    assert list(built) == caps[:30]
    # hashed as the captions.txt it would be: one caption per line, each ending in "\n"
    assert built.sha256 == hashlib.sha256("".join(c + "\n" for c in caps[:30]).encode()).hexdigest()
    with pytest.raises(DatasetError, match="no built-in prompt list 'coco'") as info:
        builtin_prompts("coco", 3)
    _one_line(info)


def test_digit_vocabulary_is_every_caption_word():
    expected = sorted({"a", "handwritten", "digit", "the", "number", "picture", "of", *DIGIT_WORDS,
                       *"0123456789"})
    assert digit_vocabulary() == expected
    from sidbench.nets.prompts import WordTokenizer

    tok = WordTokenizer(digit_vocabulary(), 10)
    ids = tok(digit_captions(30))
    assert (ids != tok.ids["<unk>"]).all()  # no caption word is unknown
    assert len(DIGIT_TEMPLATES) == 3


@pytest.mark.parametrize("caption,digit", [
    ("a handwritten digit seven", 7), ("The Number 4", 4), ("SEVEN", 7), ("a picture of the digit zero", 0),
    ("one or two", 1), ("digit 3, not five", 3), ("someone drew a 9", 9), ("eight.", 8),
])
def test_prompted_digit_reads_the_first_digit_named(caption, digit):
    assert prompted_digit(caption) == digit


@pytest.mark.parametrize("caption", ["a cat", "", "the number 17", "someone", "nineteen"])
def test_a_caption_without_a_digit_is_a_one_line_error(caption):
    with pytest.raises(DatasetError, match="names no digit") as info:
        prompted_digit(caption)
    _one_line(info)


# -------------------------------------------------- COCO val2014 images, as GigaGAN reads them ----

def _gigagan(pil):
    """GigaGAN's evaluation reader: RGB, torchvision center_crop to the short side, PIL LANCZOS to 256."""
    from PIL import Image

    F = pytest.importorskip("torchvision.transforms.functional")
    rgb = pil.convert("RGB")
    return np.asarray(F.center_crop(rgb, min(rgb.size)).resize((256, 256), Image.LANCZOS)).transpose(2, 0, 1)


def _coco_transform():
    from sidbench.metrics.evaluate import resolve_protocols
    from sidbench.metrics.preprocess import protocol_transform

    return protocol_transform(resolve_protocols(["fid"], ["coco2014-fid30k-clean"]))


@pytest.mark.parametrize("h,w", [(48, 64), (40, 61), (61, 40)])
def test_even_offsets_crop_as_gigagan(h, w):
    from PIL import Image

    img = np.random.RandomState(h * w).randint(0, 256, (3, h, w), dtype=np.uint8)
    assert np.array_equal(_coco_transform()(img), _gigagan(Image.fromarray(img.transpose(1, 2, 0).copy())))


@pytest.mark.parametrize("h,w", [(40, 59), (59, 40), (425, 640)])
def test_odd_offsets_crop_as_gigagan(h, w):
    from PIL import Image

    img = np.random.RandomState(h + w).randint(0, 256, (3, h, w), dtype=np.uint8)
    assert np.array_equal(_coco_transform()(img), _gigagan(Image.fromarray(img.transpose(1, 2, 0).copy())))


def test_grey_val2014_images_are_read_as_rgb(tmp_path):
    from PIL import Image

    from sidbench.metrics.image_source import open_images

    rng = np.random.RandomState(0)
    images = [Image.fromarray(rng.randint(0, 256, (40, 60, 3), dtype=np.uint8)),
              Image.fromarray(rng.randint(0, 256, (48, 32), dtype=np.uint8))]  # mode L
    for i, im in enumerate(images):
        im.save(tmp_path / f"COCO_val2014_{i:012d}.png")
    source = open_images(tmp_path)
    source.transform = _coco_transform()
    (_, got), = source.batches(2, 0, 1)
    assert got.shape == (2, 3, 256, 256)
    for i, im in enumerate(images):
        assert np.array_equal(got[i].numpy(), _gigagan(im))
