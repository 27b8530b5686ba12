"""Multi-step forecasting with an encoder-decoder net, scored beside seasonal-naive and last-value baselines."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from lstmlab.choices import LOSSES, TEACHER_FORCING_SCHEDULES
from lstmlab.errors import ConfigError
from lstmlab.tasks.base import LstmlabTask

FORECASTERS = ("model", "seasonal_naive", "last_value")


class PinballLoss(nn.Module):
    """Mean quantile (pinball) loss of forecasts [..., Q] at ``levels`` [Q] against targets [...]."""

    def __init__(self, levels) -> None:
        super().__init__()
        self.register_buffer("levels", torch.as_tensor(list(levels), dtype=torch.float32), persistent=False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        error = target.unsqueeze(-1) - pred
        return torch.maximum(self.levels * error, (self.levels - 1.0) * error).mean()


# the loss module of each name in lstmlab.choices.LOSSES (the list the schema checks)
LOSS_MODULES = {"mse": nn.MSELoss, "mae": nn.L1Loss, "quantile": PinballLoss}
assert tuple(LOSS_MODULES) == LOSSES, "map exactly the names of lstmlab.choices.LOSSES, in order"


def teacher_forcing_ratio(
    epoch: int, *, ratio: float, schedule: str, end_ratio: float, decay_epochs: int, k: float
) -> float:
    """The probability that a training decoder step is fed the true previous value, at ``epoch``; the other
    arguments are ``model.teacher_forcing``'s.

    ``constant``: ``ratio``; ``linear``: from ``ratio`` to ``end_ratio`` over ``decay_epochs``, then flat;
    ``inverse_sigmoid``: ``ratio * k / (k + exp(epoch / k))`` (scheduled sampling, Bengio et al. 2015).
    """
    if schedule == "constant":
        return ratio
    if schedule == "linear":
        return ratio + (end_ratio - ratio) * min(epoch / max(decay_epochs, 1), 1.0)
    if schedule == "inverse_sigmoid":
        return ratio * k / (k + math.exp(epoch / k))
    raise ConfigError(f"model.teacher_forcing.schedule={schedule!r} must be one of {list(TEACHER_FORCING_SCHEDULES)}")


def seasonal_naive(history: Tensor, horizon: int, season_length: int) -> Tensor:
    """Each forecast step repeats the value one season (or whole seasons) earlier: [B, L, K] -> [B, H, K]."""
    steps = history.shape[1] - season_length + torch.arange(horizon, device=history.device) % season_length
    return history[:, steps]


def last_value(history: Tensor, horizon: int) -> Tensor:
    return history[:, -1:].expand(-1, horizon, -1)


class ForecastErrors(Metric):
    """Sums of absolute, squared and symmetric-percentage errors per target over forecasts [B, H, K]."""

    full_state_update = False

    def __init__(self, num_targets: int) -> None:
        super().__init__()
        for name in ("abs_error", "sq_error", "smape"):
            self.add_state(name, default=torch.zeros(num_targets, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        error = (pred - target).double()
        denominator = pred.abs().double() + target.abs().double()
        ratio = torch.where(denominator > 0, 2.0 * error.abs() / denominator.clamp_min(1e-12), torch.zeros_like(error))
        self.abs_error += error.abs().sum(dim=(0, 1))
        self.sq_error += error.pow(2).sum(dim=(0, 1))
        self.smape += ratio.sum(dim=(0, 1))
        self.count += error.shape[0] * error.shape[1]

    def compute(self) -> dict[str, Tensor]:
        """Per target: MAE, RMSE and sMAPE (in percent)."""
        return {
            "mae": self.abs_error / self.count,
            "rmse": (self.sq_error / self.count).sqrt(),
            "smape": 100.0 * self.smape / self.count,
        }


class Seq2SeqForecastTask(LstmlabTask):
    """Trains ``net`` (an encoder-decoder forecaster) on scaled windows with scheduled teacher forcing.

    ``net.input_size`` / ``net.output_size`` left null are taken from the data (targets + covariates, targets)
    and written back into the saved hyperparameters; the scaler, column names and MASE scale of the data are
    saved in every checkpoint, so ``Seq2SeqForecastTask.load_from_checkpoint(path)`` alone rebuilds and can
    forecast raw values (``forward``). Metrics are in the data's units (scaling inverted); MASE divides MAE by
    the mean seasonal-naive one-season error on the train segment.
    """

    # every value comes from the model's YAML (conf/model/), or from a checkpoint's saved hyperparameters
    def __init__(
        self,
        *,
        net: Mapping,
        optimizer: Mapping,
        scheduler: Mapping | None,
        loss: str,
        quantiles: list[float],
        scaler: str,
        scaler_affine: bool,
        log_transform: bool,
        difference: bool,
        teacher_forcing: Mapping,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"model.loss={loss!r} must be one of {list(LOSSES)}")
        self.save_hyperparameters(logger=False)
        self.net: nn.Module | None = None
        if net.get("input_size") is not None and net.get("output_size") is not None:
            self.net = instantiate(dict(net))
        self.loss_fn = PinballLoss(quantiles) if loss == "quantile" else LOSS_MODULES[loss]()
        self.loss_mean = nn.ModuleDict()
        self.errors = nn.ModuleDict()
        self.info: dict[str, Any] | None = None  # forecast_info of the data: scaler, names, MASE scale

    def recurrent_lr_scale(self) -> float:
        # no model.recurrent_lr_scale option here: the recurrence learns at the optimizer's rate like the rest
        return 1.0

    # ---- set-up --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        data_info = datamodule.forecast_info()
        if self.info is None:
            self.info = data_info
        elif self.info["columns"] != data_info["columns"]:
            raise ConfigError(
                f"the checkpoint was trained on columns {self.info['columns']} but data gives {data_info['columns']}; "
                "use the same data.targets / data.covariates"
            )
        columns, targets = len(self.info["columns"]), len(self.info["target_names"])
        if self.net is None:
            self.net = instantiate(self.net_config_from_data(input_size=columns, output_size=targets))
        if (self.net.input_size, self.net.output_size) != (columns, targets):
            raise ConfigError(
                f"model.net.input_size={self.net.input_size} / output_size={self.net.output_size} "
                f"do not match the data: {columns} input columns {self.info['columns']}, {targets} targets; "
                "set both to null to take them from the data"
            )
        if not self.errors:
            for stage_name in ("val", "test"):
                self.loss_mean[stage_name] = MeanMetric()
                self.errors[stage_name] = nn.ModuleDict({f: ForecastErrors(targets) for f in FORECASTERS})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["forecast_info"] = self.info

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.info = checkpoint["forecast_info"]

    # ---- scaling -------------------------------------------------------------------------------
    def _stats(self, channels: int, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.info["scaler_mean"][:channels], dtype=x.dtype, device=x.device)
        std = torch.tensor(self.info["scaler_std"][:channels], dtype=x.dtype, device=x.device)
        return mean, std

    def scale(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x.shape[-1], x)
        return (x - mean) / std

    def unscale(self, y: Tensor) -> Tensor:
        mean, std = self._stats(y.shape[-1], y)
        return y * std + mean

    # ---- forecasting ---------------------------------------------------------------------------
    def forward(self, x: Tensor, return_attention: bool = False):
        """Raw history [B, input_len, C] -> raw forecast [B, horizon, K]
        (+ attention [B, horizon, heads, input_len])."""
        out = self.net(self.scale(x), self.info["horizon"], return_attention=return_attention)
        if return_attention:
            return self.unscale(out[0]), out[1]
        return self.unscale(out)

    def current_teacher_forcing(self) -> float:
        return teacher_forcing_ratio(self.current_epoch, **self.hparams.teacher_forcing)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        target = self.scale(batch["y"])
        ratio = self.current_teacher_forcing()
        pred = self.net(self.scale(batch["x"]), target.shape[1], target=target, teacher_forcing_ratio=ratio)
        loss = self.loss_fn(pred, target)
        self.log_train_loss(loss, len(pred))
        self.log("train/teacher_forcing_ratio", ratio, on_step=False, on_epoch=True, batch_size=len(pred))
        return loss

    def predict_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self(batch["x"])

    def baselines(self, x: Tensor) -> dict[str, Tensor]:
        history = x[..., : len(self.info["target_names"])]
        horizon = self.info["horizon"]
        return {
            "seasonal_naive": seasonal_naive(history, horizon, self.info["season_length"]),
            "last_value": last_value(history, horizon),
        }

    def update_metrics(self, stage: str, batch: dict) -> None:
        scaled = self.net(self.scale(batch["x"]), batch["y"].shape[1])  # autoregressive: the target is not passed
        self.loss_mean[stage].update(self.loss_fn(scaled, self.scale(batch["y"])), weight=len(scaled))
        forecasts = {"model": self.unscale(scaled), **self.baselines(batch["x"])}
        for name, forecast in forecasts.items():
            self.errors[stage][name].update(forecast, batch["y"])

    def log_stage(self, stage: str) -> dict[str, Tensor]:
        """``<stage>/mae``, ``<stage>/mase_seasonal_naive`` ...: means over targets; per target with several."""
        scale = torch.tensor(self.info["mase_scale"], dtype=torch.float64, device=self.device)
        names = self.info["target_names"]
        values: dict[str, Tensor] = {f"{stage}/loss": self.loss_mean[stage].compute()}
        self.loss_mean[stage].reset()
        for forecaster, errors in self.errors[stage].items():
            suffix = "" if forecaster == "model" else f"_{forecaster}"
            per_target = errors.compute()
            per_target["mase"] = per_target["mae"] / scale
            errors.reset()
            for metric, value in per_target.items():
                values[f"{stage}/{metric}{suffix}"] = value.mean().float()
                if len(names) > 1:
                    values.update({f"{stage}/{metric}{suffix}_{n}": v.float() for n, v in zip(names, value)})
        self.log_dict(values)
        return values
