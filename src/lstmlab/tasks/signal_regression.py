"""Per-step regression of a target series from a recurrent net: the signal-extraction task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score

from lstmlab.errors import ConfigError
from lstmlab.tasks.base import RecurrentNetTask


class SignalRegressionTask(RecurrentNetTask):
    """MSE on every step; MSE, MAE and R² per frequency at validation and test.

    ``net``, ``optimizer`` and ``scheduler`` are configs (``_target_`` dicts) and are saved as
    hyperparameters, so ``SignalRegressionTask.load_from_checkpoint(path)`` rebuilds everything.
    ``hidden_size`` / ``num_layers``, when set, override the net's own values (``model.hidden_size=128``).
    ``recurrent_lr_scale`` multiplies the learning rate of the recurrent weights (``weight_hh*``); 0 freezes them
    (why: docs/signal-l1-oscillator-bank.md#a-softer-alternative-a-slower-recurrence).
    """

    # every value comes from the model's YAML (conf/model/), or from a checkpoint's saved hyperparameters
    def __init__(
        self,
        *,
        net: Mapping,
        optimizer: Mapping,
        scheduler: Mapping | None,
        hidden_size: int | None,
        num_layers: int | None,
        metric_skip_steps: int,
        recurrent_lr_scale: float,
    ) -> None:
        super().__init__(net, hidden_size, num_layers)
        self.save_hyperparameters(logger=False)
        self.loss_fn = nn.MSELoss()
        self.metrics = nn.ModuleDict()
        self.target_names: list[str] = []

    # ---- set-up --------------------------------------------------------------------------------
    def prepare(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if self.net.input_size != datamodule.num_inputs:
            raise ConfigError(
                f"model.net.input_size={self.net.input_size} but the data has {datamodule.num_inputs} inputs per step "
                f"(S(t) and {datamodule.num_inputs - 1} one-hot frequencies); "
                f"set model.net.input_size={datamodule.num_inputs}"
            )
        if self.metrics:
            return
        self.target_names = [f"{f:g}hz" for f in datamodule.frequencies]
        per_target = MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})
        for stage_name in ("val", "test"):
            self.metrics[stage_name] = nn.ModuleList(per_target.clone() for _ in self.target_names)

    # ---- steps ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, state=None) -> tuple[Tensor, Any]:
        pred, state = self.net(x, state)
        return pred.squeeze(-1), state

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        # Chunks of the same samples arrive in order: carry the state on, cut from the last chunk's graph.
        pred, state = self(batch["x"], self.carried_state(batch["first"]))
        self.carry_state(state)
        loss = self.loss_fn(pred, batch["y"])
        self.log_train_loss(loss, len(pred))
        return loss

    def predict_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self(batch["x"])[0]

    def update_metrics(self, stage: str, batch: dict) -> None:
        pred, _ = self(batch["x"])
        skip = self.hparams.metric_skip_steps
        pred, target = pred[:, skip:], batch["y"][:, skip:]
        for k, metrics in enumerate(self.metrics[stage]):
            chosen = batch["freq_index"] == k
            if chosen.any():
                metrics.update(pred[chosen].flatten(), target[chosen].flatten())

    def log_stage(self, stage: str) -> dict[str, Tensor]:
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
