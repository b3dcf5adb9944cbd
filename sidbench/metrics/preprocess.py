"""The per-image crop and resize a run's protocols ask for (options `resize`, `crop`, `resample`).

One pass over the images feeds every metric of a run, so all chosen protocols must agree on the
preprocessing; protocols that differ are evaluated in separate runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from sidbench.errors import ConfigError
from sidbench.metrics.image_source import ImageTransform
from sidbench.metrics.protocols import Protocol


def protocol_transform(chosen: Mapping[str, Protocol]) -> ImageTransform | None:
    """Center crop + resize to `resize` with `resample` (default LANCZOS); None when no protocol resizes."""
    from sidbench.metrics.image_source import center_crop_resize

    specs: dict[str, tuple[int, str] | None] = {}
    for p in chosen.values():
        size = p.option("resize")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(f"protocol '{p.name}': resize must be a positive integer, got {size!r}")
        specs[p.name] = (size, str(p.option("resample", "lanczos"))) if size else None
    if len(set(specs.values())) > 1:
        raise ConfigError(f"protocols {', '.join(specs)} preprocess images differently",
                          hint="evaluate them in separate runs")
    spec = next(iter(specs.values()))
    return center_crop_resize(*spec) if spec else None
