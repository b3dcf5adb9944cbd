"""sidbench: one harness for one-step diffusion distillation benchmarks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sidbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from sidbench.errors import SidbenchError  # noqa: E402

__all__ = ["SidbenchError", "__version__"]
