"""Distillation methods: each a file of pure loss functions plus a `Method` declaration.

Methods are registered through the `sidbench.methods` entry-point group, the same route an
outside package (or `baselines/`) uses; `sidbench.methods.base` is the interface.
"""
