"""The TensorBoard logger of ``logger=tensorboard``: Lightning's, with its bookkeeping scalars filed last.

TensorBoard's SCALARS tab lists tag groups by name (a group is a tag's part before its first ``/``), so
Lightning's ``epoch`` and the learning-rate monitor's ``lr-Adam`` (``lr-Adam/<param group>``) would open the
page above the ``train/``, ``val/`` and ``test/`` curves a person came for. Here they are written as
``trainer/epoch`` and ``trainer/lr-Adam``: the same values, in one group below the ones that matter. Callbacks
and checkpoints read the trainer's own metrics, which keep their names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytorch_lightning.loggers import TensorBoardLogger as LightningTensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

BOOKKEEPING_GROUP = "trainer"


# what Lightning logs by itself: the epoch, and LearningRateMonitor's lr-<optimizer>, momentum-<optimizer>, ...
BOOKKEEPING_PREFIXES = ("lr-", "momentum-", "weight_decay-")


def filed_tag(name: str) -> str:
    """``epoch`` -> ``trainer/epoch``, ``lr-Adam/recurrent`` -> ``trainer/lr-Adam/recurrent``; others unchanged."""
    if name == "epoch" or name.startswith(BOOKKEEPING_PREFIXES):
        return f"{BOOKKEEPING_GROUP}/{name}"
    return name


class TensorBoardLogger(LightningTensorBoardLogger):
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics({filed_tag(name): value for name, value in metrics.items()}, step)
