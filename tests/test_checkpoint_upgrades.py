"""Checkpoints saved before a task or net gained a key still load, and compute what they computed when saved.

The fixtures (tests/data/checkpoints, README there) were written by ``lstmlab-train`` at earlier commits, with the
outputs that code gave on fixed inputs; today's code loads them through ``load_task_checkpoint``, which every CLI
uses, and must give the same outputs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from lstmlab.checkpoints import load_task_checkpoint
from lstmlab.tasks.classification import SequenceClassificationTask
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
