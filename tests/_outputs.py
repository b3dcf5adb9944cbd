"""A folder this process cannot write into, for output-path tests (not a test module)."""

import os
from pathlib import Path


def make_read_only(folder: Path, monkeypatch) -> Path:
    """chmod 0555; as root (which ignores modes) os.access is made to answer as for another user."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real = os.access

        def access(path, mode, *args, **kwargs):
            if Path(path) == folder and mode & os.W_OK:
                return False
            return real(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
    return folder
