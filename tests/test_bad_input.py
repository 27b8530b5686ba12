"""Bad input, one table: each case exits non-zero with one clear line naming the key, file or value,
shows no traceback, and leaves the user's files as they were."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from helpers import TINY, compose_train, run_cli


def _signal_file(path: Path, drop: str | None = None, nan: bool = False, steps: int = 20) -> Path:
    mixed = np.zeros((6, 20), np.float32)
    if nan:
        mixed[2, 3] = np.nan
    datasets = {"mixed_signal": mixed, "targets": np.zeros((6, 4, steps), np.float32), "frequencies": np.ones(4)}
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            if name != drop:
                f.create_dataset(name, data=value)
    return path


def _foreign_checkpoint_in_run(path: Path) -> Path:
    """A run dir whose config is fine (the default run's, as lstmlab-train saves it) but whose checkpoint is not one."""
    (path.parent / "run0" / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_train(), path.parent / "run0" / ".hydra" / "config.yaml")
    ckpt = path.parent / "run0" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir()
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, ckpt)
    return ckpt


FILES = {
    "foreign_checkpoint": _foreign_checkpoint_in_run,
    "missing_dataset": lambda p: _signal_file(p, drop="targets"),
    "wrong_shape": lambda p: _signal_file(p, steps=19),
    "nan": lambda p: _signal_file(p, nan=True),
    "not_hdf5": lambda p: (p.write_text("time,value\n0,1\n"), p)[1],
}

# (id, entry point, overrides, user file to create or None, what stderr must name)
CASES = [
    ("unknown_model", "lstmlab.train", ["model=transformer"], None, "Available options in 'model'"),
    ("unknown_experiment", "lstmlab.train", ["experiment=nope"], None, "Available options in 'experiment'"),
    ("unknown_key", "lstmlab.train", ["model.net.hiden_size=4"], None, "hiden_size"),
    ("wrong_type", "lstmlab.train", ["model.net.hidden_size=big"], None, "model.net.hidden_size"),
    ("hidden_size_negative", "lstmlab.train", ["model.net.hidden_size=-4"], None, "model.net.hidden_size must be > 0"),
    ("hidden_size_shortcut_zero", "lstmlab.train", ["model.hidden_size=0"], None, "model.hidden_size must be > 0"),
    ("num_layers_zero", "lstmlab.train", ["model.net.num_layers=0"], None, "model.net.num_layers must be >= 1"),
    ("dropout_out_of_range", "lstmlab.train", ["model.net.dropout=1.5"], None, "model.net.dropout must be in [0, 1)"),
    ("tbptt_zero", "lstmlab.train", ["experiment=signal_l1", "model.net.tbptt_steps=0"], None, "model.net.tbptt_steps"),
    ("negative_epochs", "lstmlab.train", ["trainer.max_epochs=-3"], None, "trainer.max_epochs must be >= 1"),
    ("negative_lr", "lstmlab.train", ["model.optimizer.lr=-0.1"], None, "model.optimizer.lr must be > 0"),
    ("unknown_cell", "lstmlab.train", ["model.net.cell=rnn"], None, "model.net.cell must be one of ['lstm', 'gru']"),
    (
        "oscillators_on_gru",
        "lstmlab.train",
        ["experiment=signal_l1", "model.net.cell=gru"],
        None,
        "model.net.cell must be 'lstm' with init=oscillators",
    ),
    (
        "oscillator_periods_reversed",
        "lstmlab.train",
        ["model.net.init=oscillators", "model.net.init_periods=[50,4]"],
        None,
        "model.net.init_periods must be [shortest, longest]",
    ),
    (
        "frozen_cells_with_weight_decay",
        "lstmlab.train",
        ["model.net.freeze_cell_dynamics=true", "model.optimizer.weight_decay=0.01"],
        None,
        "model.optimizer.weight_decay must be 0 with model.net.freeze_cell_dynamics=true",
    ),
    (
        "recurrent_lr_scale_negative",
        "lstmlab.train",
        ["model.recurrent_lr_scale=-1"],
        None,
        "model.recurrent_lr_scale must be >= 0",
    ),
    ("chunk_longer_than_samples", "lstmlab.train", ["data.chunk_len=5000"], None, "data.chunk_len=5000 is longer"),
    (
        "frequency_above_nyquist",
        "lstmlab.train",
        ["data.generator.frequencies=[1,80]"],
        None,
        "data.generator.frequencies",
    ),
    (
        "missing_data_file",
        "lstmlab.train",
        ["data.path=does/not/exist.h5"],
        None,
        "data.path=does/not/exist.h5: file not found",
    ),
    ("hdf5_missing_dataset", "lstmlab.train", ["data.path={file}"], "missing_dataset", "dataset 'targets' is missing"),
    (
        "hdf5_wrong_shape",
        "lstmlab.train",
        ["data.path={file}"],
        "wrong_shape",
        "dataset 'targets' has shape [6, 4, 19]",
    ),
    ("hdf5_nan", "lstmlab.train", ["data.path={file}"], "nan", "dataset 'mixed_signal' holds 1 NaN/Inf values"),
    ("not_hdf5", "lstmlab.train", ["data.path={file}"], "not_hdf5", "not a readable HDF5 file"),
    ("batch_size_zero", "lstmlab.train", ["data.batch_size=0"], None, "data.batch_size must be > 0"),
    (
        "split_fractions_not_summing_to_one",
        "lstmlab.train",
        ["data.split_fractions=[0.5,0.6,0.1]"],
        None,
        "data.split_fractions=[0.5, 0.6, 0.1]",
    ),
    (
        "head_width_negative",
        "lstmlab.train",
        ["model.net.head_hidden=[16,-2]"],
        None,
        "model.net.head_hidden must be > 0",
    ),
    (
        "train_ckpt_missing",
        "lstmlab.train",
        ["ckpt_path=nowhere.ckpt"],
        None,
        "ckpt_path=nowhere.ckpt: checkpoint not found",
    ),
    ("resume_without_a_run", "lstmlab.train", ["resume=true"], None, "resume=true: no"),
    ("eval_without_ckpt_path", "lstmlab.evaluate", [], None, "ckpt_path"),
    (
        "eval_unknown_split",
        "lstmlab.evaluate",
        ["ckpt_path={file}", "split=train"],
        "not_hdf5",
        "split='train' must be 'test' or 'val'",
    ),
    (
        "foreign_checkpoint",
        "lstmlab.evaluate",
        ["ckpt_path={file}"],
        "foreign_checkpoint",
        "not a readable SignalRegressionTask checkpoint",
    ),
    (
        "missing_checkpoint",
        "lstmlab.evaluate",
        ["ckpt_path=outputs/none/best.ckpt"],
        None,
        "ckpt_path=outputs/none/best.ckpt: checkpoint not found",
    ),
    ("checkpoint_without_run_config", "lstmlab.evaluate", ["ckpt_path={file}"], "not_hdf5", "no run config beside it"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_reported_clearly(tmp_path, case):
    _, module, overrides, user_file, expected = case
    file = FILES[user_file](tmp_path / "user.h5") if user_file else None
    before = hashlib.sha256(file.read_bytes()).hexdigest() if file else None
    overrides = [o.format(file=file) for o in overrides]
    extra = TINY if module == "lstmlab.train" else []
    proc = run_cli(module, *extra, *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    if file is not None:
        assert hashlib.sha256(file.read_bytes()).hexdigest() == before
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("module", "overrides", "expected"),
    [
        ("lstmlab.train", ["ckpt_path=nowhere.ckpt"], "ckpt_path=nowhere.ckpt: checkpoint not found"),
        ("lstmlab.train", ["resume=true"], "resume=true: no"),
        ("lstmlab.evaluate", [], "ckpt_path is required"),
        ("lstmlab.evaluate", ["ckpt_path=[best.ckpt,nowhere.ckpt]"], "ckpt_path=best.ckpt: checkpoint not found"),
    ],
    ids=["train_ckpt_missing", "resume_without_a_run", "eval_without_ckpt_path", "eval_ensemble_member_missing"],
)
def test_a_checkpoint_that_is_not_there_is_refused_before_torch_is_imported(tmp_path, module, overrides, expected):
    # the user waits a second for the error, not the five that importing torch and Lightning take
    argv = [module, *overrides, f"hydra.run.dir={tmp_path / 'run'}"]
    code = (
        "import atexit, sys; atexit.register(lambda: print('torch imported:', 'torch' in sys.modules)); "
        f"sys.argv = {argv!r}; from {module} import main; main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr[-2000:]
    assert "torch imported: False" in proc.stdout, proc.stdout
