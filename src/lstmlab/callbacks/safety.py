"""Callbacks that keep a long run's work safe: stop on a non-finite loss, checkpoint on SIGTERM."""

from __future__ import annotations

import math

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lstmlab.errors import LstmlabError


class TrainingDivergedError(LstmlabError):
    """The training loss became NaN or infinite."""


class FiniteLossGuard(pl.Callback):
    """Stops training at the first NaN/Inf loss, naming the epoch and step; the last good checkpoint stays."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDivergedError(
                f"the training loss became {float(loss)} at epoch {trainer.current_epoch}, step {trainer.global_step} "
                f"(batch {batch_idx}); lower model.optimizer.lr, set trainer.gradient_clip_val, or check the data "
                "for NaN/Inf values"
            )


class SigtermCheckpoint(pl.Callback):
    """On SIGTERM (what schedulers send), save ``last.ckpt`` before Lightning stops the run."""

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        checkpoint = trainer.checkpoint_callback
        if isinstance(exception, SIGTERMException) and checkpoint is not None and trainer.is_global_zero:
            path = f"{checkpoint.dirpath}/last.ckpt"
            trainer.save_checkpoint(path)
            self.saved_path = path
