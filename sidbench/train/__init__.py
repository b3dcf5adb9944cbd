"""The shared trainer: one loop for every method (DDP, accumulation, AMP, EMA, exact resume, NaN guard,
periodic evaluation, progress), the run config it reads, and the embedded suites' teacher training on it.

`load_recipe(path, overrides)` -> `RunConfig`; `train(config, outdir)` -> `RunResult`.
"""

from sidbench.train.config import RunConfig, load_recipe
from sidbench.train.ema import EMA, ema_beta
from sidbench.train.guard import NonFiniteError
from sidbench.train.run import RunResult, train

__all__ = ["EMA", "NonFiniteError", "RunConfig", "RunResult", "ema_beta", "load_recipe", "train"]
