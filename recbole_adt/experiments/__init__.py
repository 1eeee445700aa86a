"""Experiments: compare models, losses and RecBole baselines over seeds, search the paper's
grids on validation, and draw the paper's figures from the results.

- :func:`compare`: Table 3 (mean ± std, RI over CE, paired t-tests) and figures;
- :func:`grid_search`: the paper's grids (section 5), selected on validation only;
- :mod:`~recbole_adt.experiments.stats`: the statistics, as pure functions;
- :mod:`~recbole_adt.experiments.plots`: Fig. 2/8 (loss curves), 7 (sparsity groups),
  9 (drop precision and recall), 10 (grid sensitivity) as PNG (optional matplotlib).

Command line: ``python -m recbole_adt.experiments compare|grid --help``.
"""

from recbole_adt.experiments.compare import compare
from recbole_adt.experiments.grid import grid_search

__all__ = ["compare", "grid_search"]
