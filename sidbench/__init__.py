"""sidbench: one harness for one-step diffusion distillation benchmarks.

`sidbench.generate(...)`, `sidbench.evaluate(...)` and the other verbs of the CLI are
the functions of `sidbench.api`, re-exported here lazily: `import sidbench` imports
neither torch nor the API until one of them is used.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sidbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from sidbench.errors import SidbenchError  # noqa: E402

# The functions of sidbench.api, one per CLI verb (a test keeps this equal to sidbench.api.__all__).
API = ("convert", "distill", "env", "evaluate", "generate", "leaderboard_add", "leaderboard_show", "ls",
       "pairs", "quickstart", "refstats", "report", "train_teacher", "validate")

__all__ = ["SidbenchError", "__version__", *API]


def __getattr__(name: str):
    if name in API:
        import sidbench.api

        return getattr(sidbench.api, name)
    raise AttributeError(f"module 'sidbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
