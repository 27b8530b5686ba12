"""Helpers shared by the tests: real CLI runs in subprocesses, with outputs under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# A tiny but complete run: few short samples, a small net, two epochs, no progress bar.
TINY = [
    "data.generator.n_samples=12",
    "data.generator.duration=2.0",
    "data.batch_size=16",
    "model.hidden_size=8",
    "model.num_layers=1",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "extras.print_config=false",
    "callbacks.progress=null",
]


def run_cli(module: str, *overrides: str, cwd: Path, check: bool = True, timeout: int = 600, env=None):
    """``python -m <module> <overrides>`` in ``cwd``; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(overrides)} exited {proc.returncode}\n{proc.stderr[-4000:]}")
    return proc


def train(tmp_path: Path, *overrides: str, run_dir: str = "run", **kwargs):
    """A tiny training run into ``tmp_path/run_dir``; returns (process, run directory)."""
    run = tmp_path / run_dir
    proc = run_cli("lstmlab.train", *TINY, *overrides, f"hydra.run.dir={run}", cwd=tmp_path, **kwargs)
    return proc, run


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny sequence-model run shared by the read-only tests (eval, TensorBoard, checkpoint)."""
    tmp = tmp_path_factory.mktemp("trained")
    _, run = train(tmp, "trainer.max_epochs=3", "data.generator.n_samples=24", "model.hidden_size=16")
    return run
