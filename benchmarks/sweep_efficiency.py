"""7. Sweep efficiency: epochs run and best value found by an Optuna sweep with vs without pruning.

Not built yet: it comes with the sweep issue (``hparams_search`` configs and the Optuna sweeper plugin). Then
run the same small search twice (``hydra.sweeper`` pruner on and off, fixed sampler seed) and report epochs
and the best ``optimized_metric`` of each.
"""

from __future__ import annotations

from benchmarks.harness import Context, Measurement, not_built

KEY = "sweep_efficiency"
TITLE = "7. sweep efficiency (epochs and best value, with vs without pruning)"
GOAL = "fewer epochs, same best value"


def run(ctx: Context) -> Measurement:
    return not_built(KEY, 7, TITLE, GOAL, "the sweep issue")
