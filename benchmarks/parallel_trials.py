"""11. Parallel trials on one machine: a 4-trial sweep run one trial at a time vs two at a time (joblib).

Two runs that each use every core thrash (measured on 2 cores: 17x slower each); a sweep launched with
``hydra/launcher=joblib hydra.launcher.n_jobs=2`` shares the cores out instead (``threads: null`` gives each
trial cores / n_jobs torch threads). The same 4-trial Optuna search of the signal task (fixed trial budget,
sampler seed, data) runs twice through the real CLI: Hydra's basic launcher (one trial after the other, every
core each) and joblib with ``n_jobs=2``. The figure is the ratio of the wall times, and the best value each found.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.harness import Context, Measurement, Row, show, stats, verdict
from benchmarks.sweep_efficiency import read_trials

KEY = "parallel_trials"
TITLE = "11. parallel trials (4-trial sweep, one at a time vs two at a time on the same cores)"
GOAL_SPEEDUP = 1.6
GOAL = f"two trials at a time >= {GOAL_SPEEDUP}x the throughput of one after the other"
LAUNCHERS = {"sequential": [], "joblib_2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}


def sweep_overrides(ctx: Context) -> list[str]:
    return [
        "hparams_search=signal_optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner=none",
        # trials of ~10-17 s each on 2 cores (full): long enough that the sweep measures the trials side by side,
        # not the ~3 s a joblib worker takes to start and import torch (at 40 samples and 6 epochs a trial took
        # 2 s, and two at a time came out 0.88x: start-up, not training)
        f"data.generator.n_samples={ctx.size(400, 12, minimum=8)}",
        "data.generator.duration=4.0",
        f"trainer.max_epochs={3 if ctx.quick else 10}",
        "trainer.accelerator=" + ("gpu" if ctx.device.type == "cuda" else "cpu"),
        "extras.print_config=false",
        "callbacks.progress=null",
        "callbacks.prediction_figure=null",
        f"paths.data_dir={ctx.data_dir}",
    ]


def run_sweep(ctx: Context, name: str) -> dict:
    sweep_dir = ctx.work_dir / f"parallel_{name}"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "lstmlab.train", "-m", *sweep_overrides(ctx), *LAUNCHERS[name]]
    command.append(f"hydra.sweep.dir={sweep_dir}")
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ctx.work_dir, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"sweep {name} exited {proc.returncode}: {proc.stderr[-2000:]}")
    trials = read_trials(sweep_dir / "trials.csv")
    values = [float(t["value"]) for t in trials if t["state"] == "COMPLETE" and t["value"]]
    return {"wall_s": wall, "trials": len(values), "best": min(values)}


def run(ctx: Context) -> Measurement:
    sweeps = {name: run_sweep(ctx, name) for name in LAUNCHERS}
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
