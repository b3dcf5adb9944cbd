import hashlib
import os

import pytest

from sidbench import fileio
from sidbench.fileio import atomic_path, atomic_write_bytes, sha256_file


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
