"""Leaderboard versions (vMAJOR.MINOR.PATCH) and the major part of a protocol's version."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sidbench.errors import ConfigError

BUMPS = ("major", "minor", "patch")
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        """'v1.2.0' or '1.2.0'; anything else is a one-line error."""
        m = _VERSION.match(str(text).strip())
        if not m:
            raise ConfigError(f"version {text!r} is not vMAJOR.MINOR.PATCH", hint="e.g. v1.0.0")
        return cls(*(int(g) for g in m.groups()))

    @classmethod
    def is_version(cls, text: str) -> bool:
        return _VERSION.match(text) is not None and text.startswith("v")

    def bump(self, kind: str) -> Version:
        """The next version: major resets minor and patch, minor resets patch."""
        if kind == "major":
            return Version(self.major + 1, 0, 0)
        if kind == "minor":
            return Version(self.major, self.minor + 1, 0)
        if kind == "patch":
            return Version(self.major, self.minor, self.patch + 1)
        raise ConfigError(f"unknown version bump {kind!r}", hint=f"use one of {', '.join(BUMPS)}")

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"


FIRST = Version(1, 0, 0)


def major_of(version: str) -> int:
    """The MAJOR of a protocol or suite version '1.0.0' (what decides comparability)."""
    return Version.parse(version).major
