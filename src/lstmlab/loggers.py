"""The TensorBoard logger of ``logger=tensorboard``: Lightning's, with the training curves filed first.

TensorBoard's SCALARS tab lists tag groups (a tag's part before its first ``/``) by name and opens on the
first. By name, Lightning's ``epoch`` and the learning-rate monitor's ``lr-Adam`` (``lr-Adam/<param group>``),
and the one-point charts of the end-of-run ``test/`` and ``backtest/`` metrics, would all come before the
``train/`` and ``val/`` curves a person opens TensorBoard for. So, in TensorBoard only, they are filed under
groups that sort after ``val``: ``~trainer/epoch``, ``~trainer/lr-Adam``, ``~test/loss``, ``~backtest/mase``.
metrics.json, the callbacks, checkpoints and the HPARAMS column titles (``display_name``) keep the metrics'
own names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytorch_lightning.loggers import TensorBoardLogger as LightningTensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

# '~' sorts after every letter: these groups come after the train/ and val/ curves
LAST = "~"
BOOKKEEPING_GROUP = "trainer"
# what Lightning logs by itself: the epoch, and LearningRateMonitor's lr-<optimizer>, momentum-<optimizer>, ...
BOOKKEEPING_PREFIXES = ("lr-", "momentum-", "weight_decay-")
# metrics written once, at the end of a run: one point per chart
END_OF_RUN_GROUPS = ("test", "backtest")


def filed_tag(name: str) -> str:
    """The TensorBoard tag of a logged metric: ``epoch`` -> ``~trainer/epoch``, ``lr-Adam/recurrent`` ->
    ``~trainer/lr-Adam/recurrent``, ``test/loss`` -> ``~test/loss``; the curves keep their names."""
    if name == "epoch" or name.startswith(BOOKKEEPING_PREFIXES):
        return f"{LAST}{BOOKKEEPING_GROUP}/{name}"
    if name.split("/", 1)[0] in END_OF_RUN_GROUPS:
        return LAST + name
    return name


class TensorBoardLogger(LightningTensorBoardLogger):
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics({filed_tag(name): value for name, value in metrics.items()}, step)
