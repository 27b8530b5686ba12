"""A Hydra callback that scores the runs of a finished multirun as one seed ensemble (``ensemble_splits``).

``lstmlab-train -m experiment=steel_defect seed=1,2,3 ensemble_splits=[val,test]`` trains the three runs, then
evaluates ``lstmlab-eval ckpt_path=[<each finished run's best.ckpt>] split=<split>`` into
``<sweep dir>/ensemble/<split>/`` (metrics.json, eval.log): the same ensemble a user gets by hand, in a process of
its own so that it composes its config as lstmlab-eval does. A finished run is one that wrote metrics.json.
Only Hydra is imported here: Hydra instantiates it on every start, ``--help`` aside.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lstmlab.errors import EXIT_BAD_INPUT

ENSEMBLE_SPLITS = ("val", "test")


def requested_splits(config: DictConfig) -> list[str]:
    """``ensemble_splits`` of the composed config, checked: a list of 'val' and 'test'."""
    value = config.get("ensemble_splits") or []
    splits = [value] if isinstance(value, str) else [str(split) for split in value]
    unknown = [split for split in splits if split not in ENSEMBLE_SPLITS]
    if unknown:
        print(
            f"error: ensemble_splits={splits}: {unknown[0]!r} is not a split an ensemble is scored on; "
            "use a list of val and test, e.g. ensemble_splits=[val,test]",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_BAD_INPUT)
    return splits


def finished_runs(sweep_dir: Path) -> list[Path]:
    """The sweep's run directories that finished (metrics.json) with a best checkpoint, in job order."""
    runs = [ckpt.parent.parent for ckpt in sweep_dir.glob("*/checkpoints/best.ckpt")]
    runs = [run for run in runs if (run / "metrics.json").is_file()]
    return sorted(runs, key=lambda run: (int(run.name), "") if run.name.isdigit() else (float("inf"), run.name))


# the performance table's timings and sizes (test/latency_p50_ms, ...): metrics.json has them, the summary line not;
# matched by suffix because lstmlab.callbacks.performance, which names them, imports torch
COST_SUFFIXES = ("_ms", "_mb", "_per_s", "num_parameters")


def summary(metrics: dict[str, float], split: str) -> str:
    """The ensemble's scores on ``split`` in one line, the run's baselines among them, less timings and sizes."""
    prefix = f"{split}/"
    names = [k for k in metrics if k.startswith(prefix) and not k.endswith(COST_SUFFIXES)]
    return ", ".join(f"{name[len(prefix) :]} {metrics[name]:.4g}" for name in sorted(names))


class SweepEnsemble(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if requested_splits(config):
            print("ensemble_splits applies to a multirun of seeds (lstmlab-train -m ... seed=1,2,3); one run has none")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        requested_splits(config)  # a wrong value fails before any run starts

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        splits = requested_splits(config)
        if not splits:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        runs = finished_runs(sweep_dir)
        if len(runs) < 2:
            print(
                f"ensemble_splits={splits}: {len(runs)} finished run(s) with a best checkpoint in {sweep_dir}; "
                "a seed ensemble needs two or more (e.g. -m seed=1,2,3): no ensemble scored"
            )
            return
        ckpts = ",".join(f"'{run / 'checkpoints' / 'best.ckpt'}'" for run in runs)
        for split in splits:
            out = sweep_dir / "ensemble" / split
            command = [sys.executable, "-m", "lstmlab.evaluate", f"ckpt_path=[{ckpts}]", f"split={split}"]
            done = subprocess.run([*command, f"hydra.run.dir='{out}'", "extras.print_config=false"], check=False)
            if done.returncode != 0:
                print(
                    f"error: ensemble_splits: scoring the seed ensemble of {len(runs)} runs on {split} exited "
                    f"{done.returncode} (its message above); the runs themselves are complete in {sweep_dir}",
                    file=sys.stderr,
                )
                raise SystemExit(done.returncode)
            metrics = json.loads((out / "metrics.json").read_text())[split]
            print(f"seed ensemble of {len(runs)} runs, {split}: {summary(metrics, split)} ({out / 'metrics.json'})")
