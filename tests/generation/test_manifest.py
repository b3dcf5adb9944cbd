"""generate.json: malformed ones are one-line errors; a manifest-only folder never blocks the rerun."""

import json
import zipfile

import pytest

from sidbench import images as imgio
from sidbench.errors import ConfigError
from sidbench.generation import MANIFEST, generate
from sidbench.generation.manifest import FORMAT, differences, parse_manifest
from tests.generation._nets import GaussDenoiser


def run(out, seeds="0-2", **kw):
    kw.setdefault("num_steps", 3)
    return generate(kw.pop("net", None) or GaussDenoiser(), out, seeds, progress=False, **kw)


def valid() -> dict:
    return {"format": FORMAT, "format_version": 1, "settings": {"sampler": "heun"},
            "network": {"fingerprint": "ab" * 32}, "seeds": "0-2"}


MALFORMED = {
    "not json": "{oops",
    "binary": b"\xff\xfe\x00garbage",
    "empty": "",
    "a list": "[1, 2]",
    "a string": '"generate"',
    "other format": json.dumps({**valid(), "format": "something.else"}),
    "no format": json.dumps({k: v for k, v in valid().items() if k != "format"}),
    "version text": json.dumps({**valid(), "format_version": "1"}),
    "version bool": json.dumps({**valid(), "format_version": True}),
    "settings list": json.dumps({**valid(), "settings": [1]}),
    "no network": json.dumps({k: v for k, v in valid().items() if k != "network"}),
    "fingerprint number": json.dumps({**valid(), "network": {"fingerprint": 5}}),
    "seeds number": json.dumps({**valid(), "seeds": 7}),
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_manifest_is_a_one_line_error(tmp_path, text):
    folder = tmp_path / "imgs"
    folder.mkdir()
    path = folder / MANIFEST
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match="not a valid sidbench.generation manifest") as info:
        run(folder)
    assert "\n" not in str(info.value) and "delete" in info.value.hint and "another --out" in info.value.hint
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST]  # nothing written, lock released
    assert not list(tmp_path.glob("*.lock"))


@pytest.mark.parametrize("name", ["not json", "settings list"])
def test_malformed_manifest_inside_zip(tmp_path, name):
    out = tmp_path / "imgs.zip"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(MANIFEST, MALFORMED[name])
    with pytest.raises(ConfigError, match=f"imgs.zip:{MANIFEST} is not a valid"):
        run(out)


def test_newer_format_refused():
    text = json.dumps({**valid(), "format_version": 99})
    with pytest.raises(ConfigError, match="newer sidbench") as info:
        parse_manifest(text, "x/generate.json")
    assert "upgrade" in info.value.hint
    assert parse_manifest(json.dumps(valid()), "x")["seeds"] == "0-2"


def test_manifest_only_folder_with_other_settings_is_taken_over(tmp_path):
    out = tmp_path / "imgs"
    run(out, num_steps=4)
    for p in out.glob("*.png"):
        p.unlink()  # as if the run had crashed before its first image
    (out / "000001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # a half file is no finished image
    summary = run(out, num_steps=3)
    assert summary.written == 3
    assert json.loads((out / MANIFEST).read_text())["settings"]["num_steps"] == 3
    assert imgio.done_seeds(out) == {0, 1, 2}


def test_folder_manifest_claims_only_finished_images(tmp_path):
    out = tmp_path / "imgs"
    run(out, "0-2")
    assert json.loads((out / MANIFEST).read_text())["seeds"] == "0-2"
    run(out, "5,7")
    assert json.loads((out / MANIFEST).read_text())["seeds"] == "0-2,5,7"


def test_differences_name_each_setting():
    a, b = valid(), valid()
    b["settings"] = {"sampler": "onestep", "sigma_init": 2.5}
    b["network"] = {"fingerprint": "cd" * 32}
    assert differences(a, b) == ["sampler: heun -> onestep", "sigma_init: None -> 2.5",
                                 "network: abababababab -> cdcdcdcdcdcd"]
    assert differences(a, valid()) == []
