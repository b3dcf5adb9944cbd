"""Baseline distillation methods for sidbench, registered through `sidbench.methods` entry points.

One module per method (losses as pure functions of explicit tensors, its updates, phases and
`Method` object). sidbench's core never imports this package.
"""
