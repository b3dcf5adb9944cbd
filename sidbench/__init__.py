"""sidbench: one harness for one-step diffusion distillation benchmarks.

`sidbench.generate(...)`, `sidbench.evaluate(...)` and the other verbs of the CLI are
the functions of `sidbench.api`, re-exported here lazily: `import sidbench` imports
neither torch nor the API until one of them is used.
"""

import sys
import types
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sidbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from sidbench.errors import SidbenchError  # noqa: E402

# The functions of sidbench.api, one per CLI verb (a test keeps this equal to sidbench.api.__all__).
API = ("convert", "env", "evaluate", "generate", "ls", "quickstart", "refstats", "train_teacher")

__all__ = ["SidbenchError", "__version__", *API]


def __getattr__(name: str):
    if name in API:
        import sidbench.api

        return getattr(sidbench.api, name)
    raise AttributeError(f"module 'sidbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})


class _VerbModule(types.ModuleType):
    """A library package named like an API verb (`sidbench.generate`): calling it calls the verb.

    Importing `sidbench.generate` makes it an attribute of `sidbench`, hiding the API
    function of the same name; this keeps `sidbench.generate(...)` the API call while
    `sidbench.generate.GenerateSummary` and `import sidbench.generate.lock` stay the package's.
    """

    def _verb(self):
        import sidbench.api

        return getattr(sidbench.api, self.__name__.rpartition(".")[2])

    def __call__(self, *args, **kwargs):
        return self._verb()(*args, **kwargs)

    @property
    def __signature__(self):
        import inspect

        return inspect.signature(self._verb())


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: object) -> None:
        if name in API and type(value) is types.ModuleType:  # the import system binding a subpackage
            value.__class__ = _VerbModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
