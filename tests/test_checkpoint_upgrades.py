"""Checkpoints saved before a task or net gained a key still load, and compute what they computed when saved.

The fixtures (tests/data/checkpoints, README there) were written by ``lstmlab-train`` at earlier commits, with the
outputs that code gave on fixed inputs; today's code loads them through ``load_task_checkpoint``, which every CLI
uses, and must give the same outputs. Four come with their run's saved config and what ``lstmlab-eval`` of their
commit scored: today's ``lstmlab-eval`` of that run must score the same."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import run_cli
from lstmlab.checkpoints import load_task_checkpoint
from lstmlab.tasks.classification import SequenceClassificationTask
from lstmlab.tasks.price_forecast import PriceForecastTask
from lstmlab.tasks.seq2seq_forecast import Seq2SeqForecastTask
from lstmlab.tasks.signal_regression import SignalRegressionTask

FIXTURES = Path(__file__).parent / "data" / "checkpoints"


@pytest.mark.parametrize(
    ("name", "task_class", "added"),
    [
        (
            "bilstm_classifier-51e9d6a",
            SequenceClassificationTask,
            "model.net.summary_stats=false, model.net.summary_linear=false, model.net.patch_len=1",
        ),
        (
            "mlstm_fcn-16f901c",
            SequenceClassificationTask,
            "model.net.summary_stats=false, model.net.time_pool=1, model.net.time_pool_target=null, "
            "model.net.time_pool_phases=false",
        ),
        (
            "sequence-6f1234c",
            SignalRegressionTask,
            "model.recurrent_lr_scale=1.0, model.net.init_periods=null, model.net.init_decay_steps=null, "
            "model.net.freeze_cell_dynamics=false",
        ),
        (
            "stateful-6f1234c",
            SignalRegressionTask,
            "model.recurrent_lr_scale=1.0, model.net.init_periods=null, model.net.init_decay_steps=null, "
            "model.net.freeze_cell_dynamics=false",
        ),
        (
            "price_stateful-6f1234c",
            PriceForecastTask,
            "model.recurrent_lr_scale=1.0, model.net.init_periods=null, model.net.init_decay_steps=null, "
            "model.net.freeze_cell_dynamics=false",
        ),
        (
            "seq2seq_attention-53e0e1b",
            Seq2SeqForecastTask,
            'model.base_forecast="none", model.interval_calibration="none"',
        ),
    ],
)
def test_an_older_checkpoint_loads_with_the_keys_it_predates_and_computes_what_it_did(name, task_class, added, caplog):
    path = FIXTURES / f"{name}.ckpt"
    with caplog.at_level(logging.WARNING, logger="lstmlab.checkpoints"):
        task = load_task_checkpoint(task_class, path, "lstmlab-train").eval()
    assert [r.getMessage() for r in caplog.records] == [
        f"ckpt_path={path}: saved before these keys existed; loaded with {added}"
    ]
    saved = np.load(FIXTURES / f"{name}.npz")
    x = torch.from_numpy(saved["x"])
    with torch.no_grad():
        out = task(x, torch.from_numpy(saved["lengths"])) if "lengths" in saved else task(x)
    out = out[0] if isinstance(out, tuple) else out
    np.testing.assert_allclose(out.numpy(), saved["output"], rtol=1e-5, atol=1e-6)


def test_a_checkpoint_with_every_key_loads_without_a_warning(tmp_path, caplog):
    """The same fixture with the keys it lacked written in loads as saved: no warning, nothing overridden."""
    state = torch.load(FIXTURES / "bilstm_classifier-51e9d6a.ckpt", map_location="cpu", weights_only=True)
    state["hyper_parameters"]["net"].update(summary_stats=False, summary_linear=False, patch_len=1)
    torch.save(state, tmp_path / "current.ckpt")
    with caplog.at_level(logging.WARNING, logger="lstmlab.checkpoints"):
        task = load_task_checkpoint(SequenceClassificationTask, tmp_path / "current.ckpt", "lstmlab-train")
    assert caplog.records == [] and task.net.patch_len == 1


@pytest.mark.parametrize(
    ("name", "read_as"),
    [
        (
            "sequence-6f1234c",
            "model._target_=lstmlab.tasks.signal_regression.SignalRegressionTask "
            "(was lstmlab.tasks.regression.SignalRegressionTask), data.seed=0 (was data.split_seed)",
        ),
        ("price_stateful-6f1234c", "data.seed=0"),
        ("seq2seq_attention-53e0e1b", "data.context_multiple=2"),
        (
            "bilstm_classifier-57cd4b2",
            "data._target_=lstmlab.data.classification_datamodule.SequenceClassificationDataModule "
            "(was lstmlab.data.sequence_datamodule.SequenceClassificationDataModule), "
            "data.seed=0 (was data.split_seed)",
        ),
    ],
)
def test_eval_of_an_earlier_run_scores_what_eval_of_its_version_scored(name, read_as, tmp_path):
    """A run directory written by an earlier lstmlab (its saved config names classes and data keys since renamed or
    added): ``lstmlab-eval`` reads it with today's names, says so once, and rebuilds the same test split and model."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    shutil.copy(FIXTURES / f"{name}.config.yaml", run / ".hydra" / "config.yaml")
    shutil.copy(FIXTURES / f"{name}.ckpt", run / "checkpoints" / "last.ckpt")
    proc = run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        "extras.print_config=false",
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    config = run / ".hydra" / "config.yaml"
    assert f"{config}: written by an earlier lstmlab; read with {read_as}" in proc.stdout + proc.stderr
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    expected = json.loads((FIXTURES / f"{name}.eval.json").read_text())
    assert {key: scored[key] for key in expected} == pytest.approx(expected, rel=1e-5, abs=1e-6)
