"""The training loss in TensorBoard and the progress bar, without a ``self.log`` call on every step.

``self.log`` costs about a millisecond of Python per call, a sizeable share of a training step of the small
nets here (a few milliseconds). The loss is summed on its device every step (no host sync) and logged every
``trainer.log_every_n_steps`` steps as ``train/loss_step`` (the progress bar shows it) and once per epoch as
the batch-size-weighted mean ``train/loss_epoch``: the names and values ``self.log(on_step=True,
on_epoch=True)`` would give.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch import Tensor


class TrainLossLogging(pl.LightningModule):
    """Mix in before ``pl.LightningModule``; call ``log_train_loss`` from ``training_step``."""

    _loss_sum: Tensor | None = None
    _loss_count = 0

    def log_train_loss(self, loss: Tensor, batch_size: int) -> None:
        value = loss.detach() * batch_size
        self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
        self._loss_count += batch_size
        # the steps on which Lightning writes step values to the loggers (the global step counts from 0)
        if (self.trainer.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=batch_size)

    def on_train_epoch_end(self) -> None:
        if self._loss_count:
            self.log("train/loss_epoch", self._loss_sum / self._loss_count, on_epoch=True, prog_bar=True)
        self._loss_sum, self._loss_count = None, 0
