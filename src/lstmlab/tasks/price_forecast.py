"""Price forecasting from sequences of window features, scored beside persistence and moving-average baselines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError
from torchmetrics.classification import BinaryAccuracy

from lstmlab.data.price_features import PricePipeline
from lstmlab.errors import ConfigError
from lstmlab.tasks.base import RecurrentNetTask

FORECASTERS = ("model", "persistence", "moving_average")


class PriceForecastTask(RecurrentNetTask):
    """The net reads ``seq_len`` normalised feature vectors; its last step's output is the forecast.

    Training loss: MSE of the normalised log return ``horizon`` ticks ahead (targets ``close`` and ``return``),
    or binary cross-entropy of a rise (``direction``). Validation and test log, for the model and for both
    baselines on the same windows, MSE and MAE in the target's units (a close, a simple return, a probability)
    and the directional accuracy: ``<stage>/mse``, ``<stage>/persistence_mse``,
    ``<stage>/moving_average_direction_acc``.

    The datamodule's ``PricePipeline`` (feature settings, normalisation, target) is saved in every checkpoint,
    so ``PriceForecastTask.load_from_checkpoint(path)`` alone can serve a live stream (``lstmlab-stream``).

    A stateful net (one with ``step()``, ``model=price_stateful``) reads the split as one stream
    (``data.chunked=true``): a forecast at every window, the state carried from chunk to chunk in training.
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
        recurrent_lr_scale: float,
    ) -> None:
        super().__init__(net, hidden_size, num_layers)
        self.save_hyperparameters(logger=False)
        self.pipeline: PricePipeline | None = None
        self.loss_mean = nn.ModuleDict()
        self.metrics = nn.ModuleDict()

    def prepare(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if self.net.input_size != datamodule.num_features:
            raise ConfigError(
                f"model.net.input_size={self.net.input_size} but data.features give {datamodule.num_features} values "
                f"per window ({', '.join(datamodule.settings.names)}); "
                f"set model.net.input_size={datamodule.num_features}"
            )
        if self.stateful != bool(datamodule.hparams.chunked):
            raise ConfigError(
                f"model.net={type(self.net).__name__} with data.chunked={datamodule.hparams.chunked}: a stateful net "
                "needs data.chunked=true and the others data.chunked=false (experiment=price_forecast_stateful "
                "sets both)"
            )
        self.pipeline = datamodule.pipeline
        if self.metrics:
            return
        for stage_name in ("val", "test"):
            self.loss_mean[stage_name] = MeanMetric()
            self.metrics[stage_name] = nn.ModuleDict(
                {
                    name: nn.ModuleDict(
                        {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "direction_acc": BinaryAccuracy()}
                    )
                    for name in FORECASTERS
                }
            )

    # ---- steps ---------------------------------------------------------------------------------
    @property
    def stateful(self) -> bool:
        return hasattr(self.net, "step")

    def forward(self, x: Tensor, state=None) -> Tensor:
        """Raw forecasts: ``x`` [batch, seq_len, features] -> the last window's [batch]; for a stateful net
        ``x`` [1, windows, features] (one stream) -> every window's, flattened [windows]."""
        out, _ = self.net(x, state)
        return out[..., 0].reshape(-1) if self.stateful else out[:, -1, 0]

    def loss(self, pred: Tensor, y: Tensor) -> Tensor:
        if self.pipeline.target == "direction":
            return nn.functional.binary_cross_entropy_with_logits(pred, y)
        return nn.functional.mse_loss(pred, y)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        if self.stateful:  # chunks of one stream, in order: carry the state on, cut from the last chunk's graph
            out, state = self.net(batch["x"], self.carried_state(batch["first"]))
            self.carry_state(state)
            loss = self.loss(out[..., 0].reshape(-1), batch["y"].reshape(-1))
        else:
            loss = self.loss(self(batch["x"]), batch["y"])
        self.log_train_loss(loss, len(batch["y"]))
        return loss

    def predict_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self.pipeline.output(self(batch["x"]).double(), batch["last_close"].reshape(-1))

    def update_metrics(self, stage: str, batch: dict) -> None:
        pred = self(batch["x"])
        batch = {k: v.reshape(-1) if isinstance(v, Tensor) and k != "x" else v for k, v in batch.items()}
        self.loss_mean[stage].update(self.loss(pred, batch["y"]), weight=len(pred))
        forecasts = {
            "model": (self.pipeline.output(pred.double(), batch["last_close"]), self.pipeline.rises(pred)),
            "persistence": (batch["persistence"], batch["persistence_up"]),
            "moving_average": (batch["moving_average"], batch["moving_average_up"]),
        }
        for name, (value, rises) in forecasts.items():
            metrics = self.metrics[stage][name]
            metrics["mse"].update(value, batch["actual"])
            metrics["mae"].update(value, batch["actual"])
            metrics["direction_acc"].update(rises.long(), batch["actual_up"].long())

    def log_stage(self, stage: str) -> dict[str, Tensor]:
        values: dict[str, Tensor] = {f"{stage}/loss": self.loss_mean[stage].compute()}
        self.loss_mean[stage].reset()
        for name, metrics in self.metrics[stage].items():
            prefix = f"{stage}/" if name == "model" else f"{stage}/{name}_"
            for metric, m in metrics.items():
                values[prefix + metric] = m.compute().float()
                m.reset()
        self.log_dict(values)
        return values

    # ---- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.pipeline is not None:
            checkpoint["price_pipeline"] = self.pipeline.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "price_pipeline" in checkpoint:
            self.pipeline = PricePipeline.from_dict(checkpoint["price_pipeline"])

    @torch.no_grad()
    def forecast_split(self, split) -> dict[str, Tensor]:
        """Every forecaster's values over a whole split (``PriceExamples``), with the actual values and ticks."""
        t = split.tensors
        x = t["x"].unsqueeze(0) if self.stateful else t["x"]  # a stateful net reads the split as one stream
        pred = self(x.to(self.device)).cpu()
        return {
            "tick": t["tick"],
            "actual": t["actual"],
            "model": self.pipeline.output(pred.double(), t["last_close"]),
            "persistence": t["persistence"],
            "moving_average": t["moving_average"],
        }
