"""Helpers that test modules import (``from helpers import ...``: pytest puts tests/ on ``sys.path``).

One section per concern, each named for what it gives; fixtures stay in conftest.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


# ---- the shipped config: compose it, build its nets from it ----------------------------------------------------
def compose_train(*overrides: str) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` as ``lstmlab-train`` composes it (schemas registered)."""
    from hydra import compose, initialize_config_module

    from lstmlab.schemas import register_schemas

    register_schemas()
    with initialize_config_module(config_module="lstmlab.conf", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@cache
def _shipped_net(model: str) -> DictConfig:
    # the model option alone, without the default experiment on top: the values its YAML ships
    return compose_train(f"model={model}", "~experiment").model.net


def net_kwargs(model: str, **overrides: Any) -> dict[str, Any]:
    """The arguments ``conf/model/<model>.yaml`` gives its net (``model.net`` less ``_target_``), ``overrides``
    on top."""
    kwargs = OmegaConf.to_container(_shipped_net(model), resolve=True)
    kwargs.pop("_target_")
    return kwargs | overrides


def build_net(model: str, **overrides: Any):
    """The net of ``model=<model>`` with the shipped values, ``overrides`` replacing some: a test states only what it
    varies and gets the real defaults for the rest. Sizes the YAML leaves to the data (null) must be given.

    The class is called directly, not through ``hydra.utils.instantiate``, so that a constructor's own error (a
    ``ValueError`` naming the option) reaches the test as it is rather than wrapped in an InstantiationException.
    """
    from hydra.utils import get_class

    return get_class(_shipped_net(model)._target_)(**net_kwargs(model, **overrides))


@cache
def _shipped_data(data: str) -> dict[str, Any]:
    # the data option alone, unresolved: data_dir stays ``${paths.data_dir}``, which only a Hydra run resolves
    return OmegaConf.to_container(compose_train(f"data={data}", "~experiment").data, resolve=False)


def build_datamodule(data: str, **overrides: Any):
    """The datamodule of ``data=<data>`` with the shipped values, ``overrides`` merged on top (a dict such as
    ``generator={"n_steps": 800}`` key by key, as a command-line override would). Give ``data_dir``: the YAML's
    ``${paths.data_dir}`` needs a Hydra run. Called directly, not through ``instantiate``, for the reason
    ``build_net`` gives."""
    from hydra.utils import get_class

    kwargs = OmegaConf.to_container(OmegaConf.merge(_shipped_data(data), overrides), resolve=True)
    return get_class(kwargs.pop("_target_"))(**kwargs)


# ---- real CLI runs: ``python -m lstmlab.<entry point>`` in a subprocess, outputs under tmp_path -----------------
# A tiny but complete signal run: few short samples, a small net, two epochs, no progress bar.
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

# experiment=steel_defect on small casting data with a small net; the performance table times a few sequences only
TINY_CLASSIFIER = [
    "experiment=steel_defect",
    "trainer.val_check_interval=2",
    "data.generator.n_sequences=90",
    "data.generator.min_length=20",
    "data.generator.max_length=60",
    "data.batch_size=16",
    "model.net.hidden_size=8",
    "model.net.attention_size=8",
    "callbacks.performance.latency_sequences=4",
    "callbacks.performance.throughput_batch=16",
    "callbacks.progress=null",
    "extras.print_config=false",
    "trainer.accelerator=cpu",
]

# experiment=price_forecast on a short generated price history, short windows, a small net
TINY_PRICES = [
    "experiment=price_forecast",
    "data.generator.n_steps=1500",
    "data.features.buffer_size=32",
    "data.features.step_size=4",
    "data.features.ma_window=5",
    "data.seq_len=4",
    "data.horizon=4",
    "model.hidden_size=8",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "extras.print_config=false",
    "callbacks.progress=null",
]

# experiment=seq2seq_forecast with short windows and a one-layer net; the data (generated or data.path) is the caller's
TINY_SERIES = [
    "experiment=seq2seq_forecast",
    "data.input_len=12",
    "data.horizon=4",
    "data.season_length=6",
    "data.stride=3",
    "model.net.hidden_size=8",
    "model.net.num_heads=2",
    "model.net.bidirectional=false",
    "model.net.encoder_layers=1",
    "model.net.decoder_layers=1",
    "trainer.max_steps=12",
    "trainer.min_steps=0",
    "trainer.val_check_interval=4",
    "trainer.accelerator=cpu",
    "extras.print_config=false",
    "callbacks.progress=null",
]

# a small Optuna sweep of the tiny signal run (``-m``): three searched keys, no pruner
SMALL_SWEEP = [
    "hparams_search=signal_optuna",
    *TINY,
    "model.hidden_size=choice(4,8,16)",
    "model.num_layers=range(1,3)",
    "hydra.sweeper.pruner=none",
]


def run_cli(module: str, *overrides: str, cwd: Path, check: bool = True, timeout: int = 600, env=None):
    """``python -m <module> <overrides>`` in ``cwd``; returns the CompletedProcess. A run that outlives
    ``timeout`` fails the test with every thread's stack at that moment (faulthandler, on SIGABRT)."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONFAULTHANDLER": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    args = [sys.executable, "-m", module, *overrides]
    with subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            try:
                stdout, stderr = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            stacks = "\n".join(line for line in stderr.splitlines() if not line.startswith("Extension modules:"))
            raise AssertionError(
                f"{module} {' '.join(overrides)} still ran after {timeout} s; its output and stacks when stopped:\n"
                f"{stacks[-12000:]}"
            ) from None
    done = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
    if check and done.returncode != 0:
        raise AssertionError(f"{module} {' '.join(overrides)} exited {done.returncode}\n{done.stderr[-4000:]}")
    return done


def train(tmp_path: Path, *overrides: str, run_dir: str = "run", **kwargs):
    """A tiny training run into ``tmp_path/run_dir``; returns (process, run directory)."""
    run = tmp_path / run_dir
    proc = run_cli("lstmlab.train", *TINY, *overrides, f"hydra.run.dir={run}", cwd=tmp_path, **kwargs)
    return proc, run


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


# ---- user data files: valid sequence-classification HDF5 files, and edits that break them ------------------------
def write_user_file(
    path: Path, n: int = 30, t_max: int = 12, channels: int = 3, classes: int = 3, seed: int = 0, **changes
) -> Path:
    """A valid sequence-classification file; ``changes`` edits a dataset or attribute before writing."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, t_max + 1, size=n)
    sequences = rng.normal(size=(n, t_max, channels)).astype(np.float32)
    sequences[np.arange(t_max)[None, :] >= lengths[:, None]] = 0.0
    content = {
        "sequences": sequences,
        "lengths": lengths.astype(np.int64),
        "labels": (np.arange(n) % classes).astype(np.int64),
        "attrs": {"class_names": [f"c{k}" for k in range(classes)]},
    }
    for name, edit in changes.items():
        content[name] = edit(content.get(name))
    with h5py.File(path, "w") as f:
        for name, value in content.items():
            if name == "attrs":
                f.attrs.update(value)
            elif value is not None:
                f.create_dataset(name, data=value)
    return path


def with_value(array, index, value):
    """A copy of ``array`` with ``array[index] = value`` (an edit for ``write_user_file``)."""
    array = array.copy()
    array[index] = value
    return array
