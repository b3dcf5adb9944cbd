"""A zip's manifest claims exactly the members it holds; foreign members survive; bad members are remade."""

import json
import zipfile
from pathlib import Path

import pytest

from sidbench import images as imgio
from sidbench.errors import ConfigError
from sidbench.generation import MANIFEST, generate
from sidbench.nets.seeds import format_seeds
from tests.generation._nets import GaussDenoiser


def run(out, seeds="0-9", **kw):
    kw.setdefault("num_steps", 3)
    return generate(kw.pop("net", None) or GaussDenoiser(), out, seeds, progress=False, **kw)


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def claimed_equals_held(path: Path) -> bool:
    held = members(path)
    seeds = sorted(s for s in map(imgio.seed_of, held) if s is not None)
    return json.loads(held[MANIFEST])["seeds"] == format_seeds(seeds)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("fresh") / "ref.zip"
    run(out)
    return members(out)


def rewrite(path: Path, change) -> None:
    """Rebuild a zip member by member; `change(name, data)` returns new bytes, or None to drop it."""
    old = members(path)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in old.items():
            new = change(name, data)
            if new is not None:
                zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), new)


def test_extending_keeps_foreign_members(tmp_path, fresh):
    out = tmp_path / "imgs.zip"
    run(out, "0-4")
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr("README.txt", "made for a paper\n")
        zf.writestr(zipfile.ZipInfo("extra/labels.json", (2020, 5, 4, 3, 2, 0)), '{"labels": []}',
                    zipfile.ZIP_DEFLATED)
        zf.writestr("notes/000001.png", b"not one of ours")  # seed-like name in a subfolder: foreign
    summary = run(out, "0-9")
    assert summary.written == 5 and summary.skipped == 5
    held = members(out)
    assert held["README.txt"] == b"made for a paper\n" and held["extra/labels.json"] == b'{"labels": []}'
    assert held["notes/000001.png"] == b"not one of ours"
    with zipfile.ZipFile(out) as zf:
        info = zf.getinfo("extra/labels.json")
        assert info.date_time == (2020, 5, 4, 3, 2, 0) and info.compress_type == zipfile.ZIP_DEFLATED
    assert {n: d for n, d in held.items() if imgio.seed_of(n) is not None} == {
        n: d for n, d in fresh.items() if n != MANIFEST}
    assert claimed_equals_held(out)


@pytest.mark.parametrize("damage", ["truncate", "empty", "drop", "not_png"])
def test_bad_or_missing_member_is_made_again(tmp_path, fresh, damage):
    out = tmp_path / "imgs.zip"
    run(out)
    target = "000003.png"

    def change(name, data):
        if name != target:
            return data
        bad = {"truncate": data[: len(data) // 2], "empty": b"", "drop": None, "not_png": b"GIF89a...."}
        return bad[damage]

    rewrite(out, change)  # the manifest still claims 0-9, as an old buggy run's zip would
    summary = run(out)
    assert summary.written == 1 and summary.skipped == 9
    assert members(out) == fresh  # byte-identical to the uninterrupted run
    assert not Path(f"{out}.partial").exists()


def test_member_with_bad_crc_counts_as_not_done(tmp_path, fresh):
    out = tmp_path / "imgs.zip"
    run(out)
    data = bytearray(out.read_bytes())
    offset = data.find(fresh["000004.png"][40:60])  # inside member 000004.png's stored bytes
    assert offset > 0 and data.count(fresh["000004.png"][40:60]) == 1
    data[offset] ^= 0xFF
    out.write_bytes(bytes(data))
    assert run(out).written == 1
    assert members(out) == fresh


def test_complete_zip_is_left_byte_identical(tmp_path):
    out = tmp_path / "imgs.zip"
    run(out)
    before = out.read_bytes()
    mtime = out.stat().st_mtime_ns
    assert run(out).written == 0
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime  # not repacked


def test_zip_with_other_settings_refused_but_empty_one_replaced(tmp_path):
    out = tmp_path / "imgs.zip"
    run(out, "0-2")
    with pytest.raises(ConfigError, match="holds 3 images made with other settings") as info:
        run(out, "0-2", num_steps=4)
    assert f"delete {out}" in info.value.hint
    rewrite(out, lambda name, data: data if imgio.seed_of(name) is None else None)  # images gone
    assert run(out, "0-2", num_steps=4).written == 3 and claimed_equals_held(out)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_unreadable_zip_refused_in_one_line(tmp_path, content):
    out = tmp_path / "imgs.zip"
    out.write_bytes(content)
    with pytest.raises(ConfigError, match="not a readable zip") as info:
        run(out)
    assert "another --out" in info.value.hint and out.read_bytes() == content


def test_zip_without_manifest_refused(tmp_path):
    out = tmp_path / "imgs.zip"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("000000.png", b"x")
    with pytest.raises(ConfigError, match="not written by sidbench generate"):
        run(out)
