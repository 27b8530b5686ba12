"""Per-step regression of a target series from a recurrent net: the signal-extraction task."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, MinMetric, R2Score

from lstmlab.errors import ConfigError
from lstmlab.tasks.train_loss import TrainLossLogging


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


class SignalRegressionTask(TrainLossLogging, pl.LightningModule):
    """MSE on every step; MSE, MAE and R² per frequency at validation and test.

    ``net``, ``optimizer`` and ``scheduler`` are configs (``_target_`` dicts) and are saved as
    hyperparameters, so ``SignalRegressionTask.load_from_checkpoint(path)`` rebuilds everything.
    ``hidden_size`` / ``num_layers``, when set, override the net's own values (``model.hidden_size=128``).
    ``recurrent_lr_scale`` multiplies the learning rate of the recurrent weights (``weight_hh*``): below 1 it
    keeps what the initialisation built into the recurrence (``init=oscillators``) while one-step gradients
    (``tbptt_steps=1``), which are blind to what the state holds for later steps, tune the rest; 0 freezes it.
    """

    def __init__(
        self,
        net: Mapping,
        optimizer: Mapping,
        scheduler: Mapping | None = None,
        hidden_size: int | None = None,
        num_layers: int | None = None,
        metric_skip_steps: int = 0,
        recurrent_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        net_cfg = dict(net)
        if hidden_size is not None:
            net_cfg["hidden_size"] = hidden_size
        if num_layers is not None:
            net_cfg["num_layers"] = num_layers
        self.net: nn.Module = instantiate(net_cfg)
        self.loss_fn = nn.MSELoss()
        self.val_loss_best = MinMetric()
        self.metrics = nn.ModuleDict()
        self.target_names: list[str] = []
        self._train_state = None

    # ---- set-up --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if self.net.input_size != datamodule.num_inputs:
            raise ConfigError(
                f"model.net.input_size={self.net.input_size} but the data has {datamodule.num_inputs} inputs per step "
                f"(S(t) and {datamodule.num_inputs - 1} one-hot frequencies); set model.net.input_size={datamodule.num_inputs}"
            )
        if self.metrics:
            return
        self.target_names = [f"{f:g}hz" for f in datamodule.frequencies]
        per_target = MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})
        for stage_name in ("val", "test"):
            self.metrics[stage_name] = nn.ModuleList(per_target.clone() for _ in self.target_names)

    def configure_optimizers(self):
        groups = parameter_groups(self, self.hparams.get("recurrent_lr_scale", 1.0))
        optimizer = instantiate(self.hparams.optimizer)(params=groups)
        for group in optimizer.param_groups:
            group["lr"] *= group["lr_scale"]
        if self.hparams.scheduler is None:
            return optimizer
        make_scheduler = instantiate(self.hparams.scheduler)
        if "total_steps" in inspect.signature(make_scheduler.func).parameters:
            # schedules over the whole run (OneCycleLR) get its length and step with every batch
            steps = int(self.trainer.estimated_stepping_batches)
            if "max_lr" in make_scheduler.keywords:  # an absolute peak: keep each group's share of it
                peak = make_scheduler.keywords["max_lr"]
                make_scheduler.keywords["max_lr"] = [peak * g["lr_scale"] for g in optimizer.param_groups]
            scheduler = make_scheduler(optimizer=optimizer, total_steps=steps)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        scheduler = make_scheduler(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}

    # ---- steps ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, state=None) -> tuple[Tensor, Any]:
        pred, state = self.net(x, state)
        return pred.squeeze(-1), state

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        # Chunks of the same samples arrive in order: carry the state on, cut from the last chunk's graph.
        state = None if batch["first"] else self._train_state
        pred, state = self(batch["x"], state)
        self._train_state = detach_state(state)
        loss = self.loss_fn(pred, batch["y"])
        self.log_train_loss(loss, len(pred))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._update_metrics("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._update_metrics("test", batch)

    def predict_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self(batch["x"])[0]

    def _update_metrics(self, stage: str, batch: dict) -> None:
        pred, _ = self(batch["x"])
        skip = self.hparams.metric_skip_steps
        pred, target = pred[:, skip:], batch["y"][:, skip:]
        for k, metrics in enumerate(self.metrics[stage]):
            chosen = batch["freq_index"] == k
            if chosen.any():
                metrics.update(pred[chosen].flatten(), target[chosen].flatten())

    # ---- epoch ends ----------------------------------------------------------------------------
    def on_train_start(self) -> None:
        self.val_loss_best.reset()  # forget the sanity-check validation

    def on_validation_epoch_end(self) -> None:
        values = self._log_stage("val")
        self.val_loss_best(values["val/loss"])
        self.log("val/loss_best", self.val_loss_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_stage("test")

    def _log_stage(self, stage: str) -> dict[str, Tensor]:
        values: dict[str, Tensor] = {}
        for name, metrics in zip(self.target_names, self.metrics[stage]):
            for metric, value in metrics.compute().items():
                values[f"{stage}/{metric}_{name}"] = value
            metrics.reset()
        for metric in ("mse", "mae", "r2"):
            values[f"{stage}/{metric}"] = torch.stack(
                [values[f"{stage}/{metric}_{name}"] for name in self.target_names]
            ).mean()
        values[f"{stage}/loss"] = values[f"{stage}/mse"]
        self.log_dict(values)
        return values
