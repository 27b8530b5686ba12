"""What every task shares: optimizers and their parameter groups, the training-loss log, the best-so-far
value of the monitored metric (for sweepers), and the recurrent state carried from one batch to the next.

A task extends ``LstmlabTask``: it says which metric it monitors (``monitor``, ``monitor_mode``), builds and
checks what depends on the data (``prepare``, in place of Lightning's ``setup``), fills its metrics batch by batch
(``update_metrics``) and logs them at the end of a stage (``log_stage``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MaxMetric, MinMetric


def detach_state(state: Any) -> Any:
    """The recurrent state with its graph cut (tensors nested in tuples and lists)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state


def parameter_groups(module: nn.Module, recurrent_lr_scale: float) -> list[dict]:
    """The optimizer's parameter groups, each with the ``lr_scale`` of its learning rate: the recurrent weights
    (``weight_hh*``) at ``recurrent_lr_scale``, the rest at 1. A scale of 0 freezes the recurrent weights
    (``requires_grad=False``: no gradient is computed for them)."""
    named = list(module.named_parameters())
    recurrent = [p for name, p in named if ".weight_hh" in name]
    if recurrent_lr_scale == 1.0 or not recurrent:
        return [{"params": [p for _, p in named], "lr_scale": 1.0}]
    others = [p for name, p in named if ".weight_hh" not in name]
    if recurrent_lr_scale == 0.0:
        for p in recurrent:
            p.requires_grad_(False)
        return [{"params": others, "lr_scale": 1.0}]
    # named groups: LearningRateMonitor logs lr-<optimizer>/others and lr-<optimizer>/recurrent
    return [
        {"params": others, "lr_scale": 1.0, "name": "others"},
        {"params": recurrent, "lr_scale": recurrent_lr_scale, "name": "recurrent"},
    ]


def net_config(net: Mapping, hidden_size: int | None, num_layers: int | None) -> dict:
    """The net's config with the task's shortcuts applied (``model.hidden_size=128`` sets the net's)."""
    config = dict(net)
    if hidden_size is not None:
        config["hidden_size"] = hidden_size
    if num_layers is not None:
        config["num_layers"] = num_layers
    return config


class LstmlabTask(pl.LightningModule):
    """Subclasses save ``optimizer`` and ``scheduler`` (``_target_`` configs, ``_partial_``) as hyperparameters,
    set ``monitor`` / ``monitor_mode`` and implement ``recurrent_lr_scale``, ``update_metrics`` and ``log_stage``."""

    monitor = "val/loss"
    monitor_mode = "min"

    def __init__(self) -> None:
        super().__init__()
        # ``<monitor>_best``: the best value so far, what a sweeper's optimized_metric reads
        self.monitored_best = MinMetric() if self.monitor_mode == "min" else MaxMetric()
        self._carried_state: Any = None
        self._restored_best: Tensor | None = None
        self._loss_sum: Tensor | None = None
        self._loss_count = 0
        self._prepared_stage: str | None = None

    def net_config_from_data(self, **sizes: int) -> dict:
        """``model.net`` with the sizes it leaves to the data (null) taken from ``sizes``, written back into the
        saved hyperparameters so that ``load_from_checkpoint`` rebuilds the same net."""
        config = dict(self.hparams.net)
        for key, value in sizes.items():
            config[key] = config.get(key) or value
        self.hparams.net = config
        return config

    # ---- optimizers ------------------------------------------------------------------------------------
    def recurrent_lr_scale(self) -> float:
        """The learning rate of the recurrent weights (``weight_hh*``) relative to ``model.optimizer.lr``: each
        task says it, from its ``model.recurrent_lr_scale`` option or as a fixed value where it has none."""
        raise NotImplementedError

    def configure_optimizers(self):
        """``model.optimizer`` over the parameter groups (frozen parameters never get a gradient, so the
        optimizer leaves them alone); ``model.scheduler`` stepped per epoch on ``val/loss``, or per batch when
        it schedules the whole run (OneCycleLR: it gets the run's length)."""
        groups = parameter_groups(self, self.recurrent_lr_scale())
        optimizer = instantiate(self.hparams.optimizer)(params=groups)
        for group in optimizer.param_groups:
            group["lr"] *= group["lr_scale"]
        if self.hparams.scheduler is None:
            return optimizer
        make_scheduler = instantiate(self.hparams.scheduler)
        if "total_steps" in inspect.signature(make_scheduler.func).parameters:
            steps = int(self.trainer.estimated_stepping_batches)
            if "max_lr" in make_scheduler.keywords:  # an absolute peak: keep each group's share of it
                peak = make_scheduler.keywords["max_lr"]
                make_scheduler.keywords["max_lr"] = [peak * g["lr_scale"] for g in optimizer.param_groups]
            scheduler = make_scheduler(optimizer=optimizer, total_steps=steps)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        scheduler = make_scheduler(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}

    # ---- the training loss, without a ``self.log`` call on every step ----------------------------------
    # ``self.log`` costs about a millisecond of Python per call, a sizeable share of a training step of the
    # small nets here. The loss is summed on its device every step (no host sync) and logged every
    # ``trainer.log_every_n_steps`` steps as ``train/loss_step`` (the progress bar shows it) and once per epoch
    # as the batch-size-weighted mean ``train/loss_epoch``: what ``self.log(on_step=True, on_epoch=True)`` gives.
    def log_train_loss(self, loss: Tensor, batch_size: int) -> None:
        value = loss.detach() * batch_size
        self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
        self._loss_count += batch_size
        # the steps on which Lightning writes step values to the loggers (the global step counts from 0)
        if (self.trainer.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
            self.log(
                "train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=batch_size
            )

    def on_train_epoch_end(self) -> None:
        if self._loss_count:
            self.log("train/loss_epoch", self._loss_sum / self._loss_count, on_epoch=True, prog_bar=True)
        self._loss_sum, self._loss_count = None, 0

    # ---- the recurrent state carried across the chunks of a stream -------------------------------------
    def carried_state(self, first: bool) -> Any:
        """The state the previous training chunk ended in; ``None`` at the first chunk of a stream."""
        return None if first else self._carried_state

    def carry_state(self, state: Any) -> None:
        """Keep ``state`` for the next chunk, cut from this chunk's graph."""
        self._carried_state = detach_state(state)

    # ---- checkpoints: what a resumed run needs to go on as the uninterrupted one would ----------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # saved mid-epoch, a run resumes inside a stream: it needs the state and the random numbers
        checkpoint["carried_state"] = self._carried_state
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        if self.monitored_best.update_called:
            checkpoint["monitored_best"] = self.monitored_best.compute()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._carried_state = checkpoint.get("carried_state")
        self._restored_best = checkpoint.get("monitored_best")
        if checkpoint.get("torch_rng_state") is not None:
            torch.set_rng_state(checkpoint["torch_rng_state"])

    # ---- set-up: once per trainer run, before any callback copies the module --------------------------
    def prepare(self, stage: str) -> None:
        """Check the data against the model and build what depends on it (nets sized by it, statistics fitted on
        its train split, metrics per target). Runs once per trainer run and stage, with the datamodule set up."""

    def setup(self, stage: str) -> None:
        self._prepare_once(stage)

    def configure_model(self) -> None:
        # Lightning's WeightAveraging (EMA, SWA) copies the module in its own setup, which runs before the module's,
        # and calls configure_model first: so the nets sized by the data and the fitted statistics exist by then.
        # Without a trainer (load_from_checkpoint calls it too) the checkpoint's sizes have built the nets already
        if self._trainer is not None:
            self._prepare_once(self.trainer.state.fn)

    def teardown(self, stage: str) -> None:
        self._prepared_stage = None

    def _prepare_once(self, stage: str) -> None:
        if self._prepared_stage != stage:
            self.prepare(stage)
            self._prepared_stage = stage

    # ---- stages ----------------------------------------------------------------------------------------
    def update_metrics(self, stage: str, batch: dict) -> None:
        raise NotImplementedError

    def log_stage(self, stage: str) -> dict[str, Tensor]:
        """Compute, log, reset and return the metrics of ``stage`` ("val" or "test")."""
        raise NotImplementedError

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.update_metrics("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.update_metrics("test", batch)

    def on_train_start(self) -> None:
        self.monitored_best.reset()  # forget the sanity-check validation, not what a resumed run had seen
        if self._restored_best is not None:
            self.monitored_best(self._restored_best.to(self.device))

    def on_validation_epoch_end(self) -> None:
        values = self.log_stage("val")
        self.monitored_best(values[self.monitor])
        self.log(f"{self.monitor}_best", self.monitored_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self.log_stage("test")


class RecurrentNetTask(LstmlabTask):
    """A task around one recurrent net (the signal and price tasks): ``model.hidden_size`` / ``model.num_layers``
    set the net's when given, and ``model.recurrent_lr_scale`` sets the recurrent weights' learning rate."""

    def __init__(self, net: Mapping, hidden_size: int | None, num_layers: int | None) -> None:
        super().__init__()
        self.net: nn.Module = instantiate(net_config(net, hidden_size, num_layers))

    def recurrent_lr_scale(self) -> float:
        return self.hparams.recurrent_lr_scale
