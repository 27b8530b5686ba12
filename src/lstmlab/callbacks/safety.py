"""Callbacks that keep a long run's work safe: stop on a non-finite loss, checkpoint on SIGTERM."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lstmlab.errors import LstmlabError


class TrainingDivergedError(LstmlabError):
    """The training loss became NaN or infinite."""


class FiniteLossGuard(pl.Callback):
    """Stops training at the first NaN/Inf loss, naming the epoch and step; the last good checkpoint stays.

    On a CPU each step's loss is checked as it comes. On an accelerator reading a loss back waits for the step's
    kernels (a device sync per step), so there the losses stay on the device and are read together every
    ``check_every`` steps and at the end of each epoch: training stops at most that many steps late, the message
    naming the step where the loss first became non-finite.
    """

    def __init__(self, check_every: int = 25) -> None:
        if check_every < 1:
            raise ValueError(f"callbacks.finite_loss.check_every={check_every}: must be >= 1")
        self.check_every = check_every
        self._recent: list[tuple[torch.Tensor, int, int, int]] = []  # (loss on device, epoch, step, batch)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        if loss.device.type == "cpu":
            if not math.isfinite(float(loss)):
                self._stop(float(loss), trainer.current_epoch, trainer.global_step, batch_idx)
            return
        self._recent.append((loss.detach(), trainer.current_epoch, trainer.global_step, batch_idx))
        if len(self._recent) >= self.check_every:
            self._check()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        self._check()

    def _check(self) -> None:
        """One read of the losses held since the last check (one device sync)."""
        if not self._recent:
            return
        recent, self._recent = self._recent, []
        losses = torch.stack([r[0] for r in recent]).tolist()
        for loss, (_, epoch, step, batch_idx) in zip(losses, recent):
            if not math.isfinite(loss):
                self._stop(loss, epoch, step, batch_idx)

    @staticmethod
    def _stop(loss: float, epoch: int, step: int, batch_idx: int) -> None:
        raise TrainingDivergedError(
            f"the training loss became {loss} at epoch {epoch}, step {step} (batch {batch_idx}); lower "
            "model.optimizer.lr, set trainer.gradient_clip_val, or check the data for NaN/Inf values"
        )


class SigtermCheckpoint(pl.Callback):
    """On SIGTERM (what schedulers send), save ``last.ckpt`` before Lightning stops the run."""

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        checkpoint = trainer.checkpoint_callback
        if isinstance(exception, SIGTERMException) and checkpoint is not None and trainer.is_global_zero:
            path = f"{checkpoint.dirpath}/last.ckpt"
            trainer.save_checkpoint(path)
            self.saved_path = path
