import errno
import hashlib
import os

import pytest

from sidbench import fileio
from sidbench.errors import ConfigError
from sidbench.fileio import (
    atomic_path,
    atomic_write_bytes,
    check_output_path,
    output_error,
    sha256_file,
    staged_dir,
)
from tests._outputs import make_read_only


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_atomic_write_replaces(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert sha256_file(target) == hashlib.sha256(b"two").hexdigest()


def test_atomic_write_gives_normal_permissions(tmp_path):
    # mkstemp creates 0600 files; results must be readable like any other file (umask applies).
    atomic_write_bytes(tmp_path / "f", b"x")
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o666 & ~fileio._UMASK


# --- outputs checked before the work -----------------------------------------------------------

@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    d = make_read_only(tmp_path / "ro", monkeypatch)
    yield d
    d.chmod(0o755)


@pytest.mark.parametrize("kind", ["file", "dir", "dir_or_zip"])
def test_new_output_in_a_missing_folder_is_fine(tmp_path, kind):
    out = tmp_path / "a" / "b" / ("x.zip" if kind == "dir_or_zip" else "x")
    assert check_output_path(out, kind=kind) == out
    assert not (tmp_path / "a").exists()  # checking creates nothing


@pytest.mark.parametrize("kind, make, cause", [
    ("file", "dir", "is an existing directory"),
    ("dir_or_zip-zip", "dir", "is an existing directory"),
    ("dir", "file", "is an existing file"),
    ("dir_or_zip", "file", "is an existing file"),
])
def test_output_of_the_wrong_type_is_refused(tmp_path, kind, make, cause):
    out = tmp_path / ("out.zip" if kind.endswith("-zip") else "out")
    out.mkdir() if make == "dir" else out.write_bytes(b"x")
    with pytest.raises(ConfigError, match=cause) as exc:
        check_output_path(out, kind=kind.removesuffix("-zip"), option="--out")
    assert str(out) in str(exc.value) and "--out" in str(exc.value)


@pytest.mark.parametrize("kind", ["file", "dir", "dir_or_zip"])
def test_output_below_a_file_is_refused(tmp_path, kind):
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        check_output_path(tmp_path / "f" / "sub" / "out", kind=kind)


@pytest.mark.parametrize("kind", ["file", "dir", "dir_or_zip"])
@pytest.mark.parametrize("depth", [0, 2])
def test_output_in_a_read_only_folder_is_refused(read_only_dir, kind, depth):
    out = read_only_dir.joinpath(*["sub"] * depth, "out")
    with pytest.raises(ConfigError, match="not writable|read-only"):
        check_output_path(out, kind=kind)


def test_existing_output_folder_must_itself_be_writable(read_only_dir):
    with pytest.raises(ConfigError, match="not writable|read-only"):
        check_output_path(read_only_dir, kind="dir")


def test_existing_outputs_of_the_right_type_are_reused(tmp_path):
    (tmp_path / "r.json").write_text("{}")
    assert check_output_path(tmp_path / "r.json", kind="file")
    assert check_output_path(tmp_path, kind="dir")


def test_empty_output_is_refused():
    with pytest.raises(ConfigError, match="empty"):
        check_output_path("", kind="file", option="--json")


@pytest.mark.parametrize("code, cause", [
    (errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
    (errno.EISDIR, "is a directory"), (errno.ENOTDIR, "is a file, not a folder"),
])
def test_write_errors_name_their_real_cause(code, cause):
    err = output_error(OSError(code, os.strerror(code)), "/x/out.json", "--json")
    assert isinstance(err, ConfigError) and cause in str(err) and "/x/out.json" in str(err)
    if code != errno.ENOSPC:
        assert "disk" not in str(err)


def test_staged_dir_moves_files_in_only_on_success(tmp_path):
    out = tmp_path / "net"
    out.mkdir()
    (out / "index.json").write_text("old")
    (out / "keep.txt").write_text("kept")
    with pytest.raises(RuntimeError), staged_dir(out, last=("index.json",)) as stage:
        (stage / "index.json").write_text("new")
        raise RuntimeError("check failed")
    assert (out / "index.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]  # stage removed
    with staged_dir(out, last=("index.json",)) as stage:
        (stage / "index.json").write_text("new")
        (stage / "weights").write_text("w")
    assert (out / "index.json").read_text() == "new" and (out / "weights").read_text() == "w"
    assert (out / "keep.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]
