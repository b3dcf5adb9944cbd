"""An example sidbench method plugin, kept as its own package (see docs/adding-a-method.md).

sidbench never imports this package: it finds the method through the `sidbench.methods` entry point
in this package's pyproject.toml, exactly as it finds any outside method.
"""

__version__ = "0.1.0"
