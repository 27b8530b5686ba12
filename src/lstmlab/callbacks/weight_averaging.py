"""An exponential moving average of the weights (``callbacks=[<family>,ema]``), tested as it is checkpointed."""

from __future__ import annotations

import warnings
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.trainer.states import TrainerFn


class WeightsEMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging``: validation, checkpoints (``state_dict``) and the test use the average.

    Two differences. A test after fit in the same process (``ckpt_path="best"``) scores the averaged weights that
    the checkpoint's ``state_dict`` holds: Lightning's callback, still holding its average from fit, would load the
    raw weights it keeps for resuming (``current_model_state``) instead, so the run's test and ``lstmlab-eval`` of
    the same checkpoint would disagree. Only a resumed fit restores those. And its warning about models that
    override ``configure_model`` is not shown: lstmlab's tasks build their data-sized nets there (so that the
    average copies them), which shards nothing.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*overrides the configure_model", category=UserWarning)
            super().setup(trainer, pl_module, stage)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
