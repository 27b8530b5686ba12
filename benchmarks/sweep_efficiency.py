"""7. Sweep efficiency: epochs trained and best value found by the same Optuna sweep with and without pruning.

``lstmlab-train -m hparams_search=signal_optuna`` runs twice through the real CLI (our sweeper plugin, its SQLite
study, the pruning callback in every trial), once with ``hydra.sweeper.pruner=none`` and once with the search's
own pruner (median), same sampler seed, same data, same trial budget. The figures come from each sweep's
``trials.csv``: total epochs trained by all trials, the best ``val/loss_best``, and the wall time. One repeat per
pruner: a sweep is the repeat (its 20 trials), and two full sweeps already take most of the benchmark's time.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import Context, Measurement, Row, show, stats, verdict

KEY = "sweep_efficiency"
TITLE = "7. sweep efficiency (epochs and best value, with vs without pruning)"
GOAL_SAVED = 0.40
GOAL_BEST = 0.05
GOAL = f"pruning saves >= {GOAL_SAVED:.0%} of epochs, best value within {GOAL_BEST:.0%}"
PRUNERS = ("none", "median")


def signal_sweep_overrides(ctx: Context, trials: int, samples: int, epochs: int) -> list[str]:
    """The signal search through the CLI, ``trials`` trials of ``samples`` generated samples and ``epochs`` epochs,
    without progress bar or figures."""
    return [
        "hparams_search=signal_optuna",
        f"hydra.sweeper.n_trials={trials}",
        f"data.generator.n_samples={samples}",
        "data.generator.duration=4.0",
        f"trainer.max_epochs={epochs}",
        "trainer.accelerator=" + ("gpu" if ctx.device.type == "cuda" else "cpu"),
        "extras.print_config=false",
        "callbacks.progress=null",
        "callbacks.prediction_figure=null",
        f"paths.data_dir={ctx.data_dir}",
    ]


def run_signal_sweep(ctx: Context, name: str, overrides: list[str]) -> dict:
    """``lstmlab-train -m <overrides>`` into ``<work dir>/<name>``: wall time, epochs, best value, trial counts."""
    sweep_dir = ctx.work_dir / name
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "lstmlab.train", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ctx.work_dir, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"sweep {name} exited {proc.returncode}: {proc.stderr[-2000:]}")
    trials = read_trials(sweep_dir / "trials.csv")
    finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    values = [float(t["value"]) for t in trials if t["state"] == "COMPLETE" and t["value"]]
    return {
        "epochs": sum(int(t["epochs"] or 0) for t in finished),
        "best": min(values),
        "pruned": sum(t["state"] == "PRUNED" for t in trials),
        "trials": len(finished),
        "wall_s": wall,
    }


def sweep_overrides(ctx: Context) -> list[str]:
    """The signal search on a small dataset, so that 2 x 20 trials fit in a few minutes of CPU."""
    return signal_sweep_overrides(ctx, ctx.size(20, 6, minimum=4), ctx.size(40, 12, minimum=8), 4 if ctx.quick else 10)


def run_sweep(ctx: Context, pruner: str) -> dict:
    return run_signal_sweep(ctx, f"sweep_{pruner}", [*sweep_overrides(ctx), f"hydra.sweeper.pruner={pruner}"])


def read_trials(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def run(ctx: Context) -> Measurement:
    sweeps = {pruner: run_sweep(ctx, pruner) for pruner in PRUNERS}
    plain, pruned = sweeps["none"], sweeps["median"]
    figures = {}
    for pruner, sweep in sweeps.items():
        figures[f"epochs_{pruner}"] = stats([sweep["epochs"]], "epochs")
        figures[f"best_val_loss_{pruner}"] = stats([sweep["best"]], "val/loss")
        figures[f"wall_{pruner}_s"] = stats([sweep["wall_s"]], "s")
    saved = 1 - pruned["epochs"] / plain["epochs"]
    worse = pruned["best"] / plain["best"] - 1
    figures["epochs_saved"] = stats([saved], "fraction")
    figures["best_value_change"] = stats([worse], "fraction")
    met = saved >= GOAL_SAVED and worse <= GOAL_BEST
    rows = [
        Row(
            f"7. {plain['trials']}-trial signal sweep (hparams_search=signal_optuna), pruner=none vs median, same seed",
            f"epochs {plain['epochs']} vs {pruned['epochs']} ({pruned['pruned']} pruned): **{saved:.0%} saved**; "
            f"best val/loss {plain['best']:.4g} vs {pruned['best']:.4g} (**{worse:+.1%}**); "
            f"wall {show(figures['wall_none_s'])} vs {show(figures['wall_median_s'])}",
            GOAL,
            verdict(met),
        )
    ]
    return Measurement(
        key=KEY,
        number=7,
        title=TITLE,
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        settings={"overrides": sweep_overrides(ctx), "pruners": list(PRUNERS)},
    )
