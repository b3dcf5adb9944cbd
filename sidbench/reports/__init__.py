"""Comparison reports of training runs: one self-contained HTML page, or Markdown with PNGs beside it.

`sidbench report RUN_DIR... --out report.html` (API: `sidbench.report`). Modules, one idea each:
`runs` (a run folder read and checked: config, evaluation records, newest checkpoint), `verdict`
(measured vs paper under the recipe's tolerance), `plots` (matplotlib figures as PNG), `samples`
(sample grids of a run's product for fixed seeds), `content` (what a report says), `build` (its
sections, from runs and a leaderboard), `html` and `markdown` (the two writers).
"""
