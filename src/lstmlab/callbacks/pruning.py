"""Report a trial's validation metric to its Optuna study every epoch and stop the run when the pruner says so.

The runner adds this callback when the job is a trial of the ``lstmlab_optuna`` sweeper, which sets the job
config's ``optuna:`` block (``lstmlab.optuna_trial.TrialLink``). A pruned run stops cleanly after the epoch (like
early stopping: checkpoints, test and metrics.json as usual); the callback marks the trial with the user attribute
``pruned_at_epoch`` (``PRUNED_AT_EPOCH``) and the sweeper records it as PRUNED.
"""

from __future__ import annotations

import logging
import math
import warnings

import optuna
import pytorch_lightning as pl

from lstmlab.optuna_trial import PRUNED_AT_EPOCH, TrialLink, ctrl_c_seen, make_pruner

log = logging.getLogger(__name__)

_studies: dict[tuple[str, str, str], optuna.Study] = {}


def _study(link: TrialLink) -> optuna.Study:
    """One loaded study per (storage, study, pruner) in this process: jobs of one sweep share it."""
    key = (link.storage, link.study_name, f"{link.pruner}{sorted(link.pruner_args.items())}")
    if key not in _studies:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _studies[key] = optuna.load_study(
            study_name=link.study_name,
            storage=link.storage,
            pruner=make_pruner(link.pruner, link.pruner_args),
            sampler=optuna.samplers.RandomSampler(),  # never samples here; RandomSampler is the cheapest to build
        )
    return _studies[key]


class OptunaPruning(pl.Callback):
    """Reports ``monitor`` after each validation epoch (step = epochs completed) and asks the pruner."""

    def __init__(self, link: TrialLink, monitor: str) -> None:
        self.link = link
        self.monitor = monitor
        self.pruned_at_epoch: int | None = None
        self._trial: optuna.trial.Trial | None = None

    @property
    def trial(self) -> optuna.trial.Trial:
        if self._trial is None:
            self._trial = optuna.trial.Trial(_study(self.link), self.link.trial_id)
        return self._trial

    # a Ctrl-C that Python dropped (lstmlab.optuna_trial.ctrl_c_remembered) stops the trial at its next batch
    def on_train_batch_start(self, *args) -> None:
        _stop_if_ctrl_c_seen()

    def on_validation_batch_start(self, *args) -> None:
        _stop_if_ctrl_c_seen()

    def on_test_batch_start(self, *args) -> None:
        _stop_if_ctrl_c_seen()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not isinstance(self.monitor, str):  # several objectives: nothing to prune
            return
        prune = False
        if trainer.is_global_zero:
            prune = self._report(trainer)
        prune = trainer.strategy.broadcast(prune)
        if prune:
            trainer.should_stop = True

    def _report(self, trainer: pl.Trainer) -> bool:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            warnings.warn(
                f"optimized_metric={self.monitor!r} was not logged this epoch; nothing to report to Optuna",
                stacklevel=2,
            )
            return False
        epoch = trainer.current_epoch + 1
        value = float(value)
        self.trial.report(value if math.isfinite(value) else float("nan"), step=epoch)
        if not self.trial.should_prune():
            return False
        self.pruned_at_epoch = epoch
        self.trial.set_user_attr(PRUNED_AT_EPOCH, epoch)
        log.info("trial %s pruned after epoch %d (%s=%.6g)", self.link.number, epoch, self.monitor, value)
        return True


def _stop_if_ctrl_c_seen() -> None:
    if ctrl_c_seen():
        raise KeyboardInterrupt  # Lightning stops the run as on Ctrl-C; the sweeper queues the trial again
