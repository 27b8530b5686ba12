"""11. Parallel trials on one machine: a 4-trial sweep run one trial at a time vs two at a time (joblib).

Two runs that each use every core thrash (measured on 2 cores: 17x slower each); a sweep launched with
``hydra/launcher=joblib hydra.launcher.n_jobs=2`` shares the cores out instead (``threads: null`` gives each
trial cores / n_jobs torch threads). The same 4-trial Optuna search of the signal task (fixed trial budget,
sampler seed, data) runs twice through the real CLI: Hydra's basic launcher (one trial after the other, every
core each) and joblib with ``n_jobs=2``. The figure is the ratio of the wall times, and the best value each found.
"""

from __future__ import annotations

import os

from benchmarks.harness import Context, Measurement, Row, show, stats, verdict
from benchmarks.sweep_efficiency import run_signal_sweep, signal_sweep_overrides

KEY = "parallel_trials"
TITLE = "11. parallel trials (4-trial sweep, one at a time vs two at a time on the same cores)"
GOAL_SPEEDUP = 1.6
GOAL = f"two trials at a time >= {GOAL_SPEEDUP}x the throughput of one after the other"
LAUNCHERS = {"sequential": [], "joblib_2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}


def sweep_overrides(ctx: Context) -> list[str]:
    # trials of ~10-17 s each on 2 cores (full): long enough that the sweep measures the trials side by side, not
    # the ~3 s a joblib worker takes to start and import torch (at 40 samples and 6 epochs a trial took 2 s, and
    # two at a time came out 0.88x: start-up, not training)
    overrides = signal_sweep_overrides(ctx, 4, ctx.size(400, 12, minimum=8), 3 if ctx.quick else 10)
    return [*overrides, "hydra.sweeper.pruner=none"]


def run(ctx: Context) -> Measurement:
    sweeps = {
        name: run_signal_sweep(ctx, f"parallel_{name}", [*sweep_overrides(ctx), *launcher])
        for name, launcher in LAUNCHERS.items()
    }
    one, two = sweeps["sequential"], sweeps["joblib_2"]
    speedup = one["wall_s"] / two["wall_s"]
    figures = {f"wall_{name}_s": stats([sweep["wall_s"]], "s") for name, sweep in sweeps.items()}
    figures["speedup"] = stats([speedup], "x")
    met = speedup >= GOAL_SPEEDUP
    rows = [
        Row(
            f"11. {one['trials']}-trial signal sweep, one at a time vs joblib n_jobs=2 ({os.cpu_count()} cores)",
            f"wall {show(figures['wall_sequential_s'])} vs {show(figures['wall_joblib_2_s'])}: **{speedup:.2f}x**; "
            f"best val/loss {one['best']:.4g} vs {two['best']:.4g}",
            GOAL,
            verdict(met),
        )
    ]
    return Measurement(
        key=KEY,
        number=11,
        title=TITLE,
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        settings={"overrides": sweep_overrides(ctx), "launchers": LAUNCHERS, "cpu_count": os.cpu_count()},
    )
