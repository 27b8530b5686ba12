"""Multi-step forecasting with an encoder-decoder net, scored beside seasonal-naive and last-value baselines;
point forecasts (mse / mae) or quantiles (pinball loss), windows scaled by ``forecast_scaling.WindowScaler``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import CatMetric, MeanMetric, Metric

from lstmlab.choices import INTERVAL_CALIBRATIONS, LOSSES, TEACHER_FORCING_SCHEDULES
from lstmlab.errors import ConfigError
from lstmlab.tasks.base import LstmlabTask
from lstmlab.tasks.forecast_scaling import WindowScaler, WindowStats

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
    step: int, *, ratio: float, schedule: str, end_ratio: float, decay_steps: int, k: float
) -> float:
    """The probability that a training decoder step is fed the true previous value at optimizer ``step`` (steps,
    not epochs: a short series has one batch per epoch); the other arguments are ``model.teacher_forcing``'s.

    ``constant``: ``ratio``; ``linear``: from ``ratio`` to ``end_ratio`` over ``decay_steps``, then flat;
    ``inverse_sigmoid``: ``ratio * k / (k + exp(step / k))`` (scheduled sampling, Bengio et al. 2015).
    """
    if schedule == "constant":
        return ratio
    if schedule == "linear":
        return ratio + (end_ratio - ratio) * min(step / max(decay_steps, 1), 1.0)
    if schedule == "inverse_sigmoid":
        return ratio * k / (k + math.exp(min(step / k, 700.0)))
    raise ConfigError(f"model.teacher_forcing.schedule={schedule!r} must be one of {list(TEACHER_FORCING_SCHEDULES)}")


def seasonal_naive(history: Tensor, horizon: int, season_length: int) -> Tensor:
    """Each forecast step repeats the value one season (or whole seasons) earlier: [B, L, K] -> [B, H, K]."""
    steps = history.shape[1] - season_length + torch.arange(horizon, device=history.device) % season_length
    return history[:, steps]


def last_value(history: Tensor, horizon: int) -> Tensor:
    return history[:, -1:].expand(-1, horizon, -1)


class ForecastErrors(Metric):
    """Sums of absolute, squared, scaled-absolute (MASE) and symmetric-percentage errors per target over point
    forecasts [B, H, K]; ``scale`` [B, K] is each window's series' in-sample seasonal-naive error."""

    full_state_update = False

    def __init__(self, num_targets: int) -> None:
        super().__init__()
        for name in ("abs_error", "sq_error", "scaled_error", "smape"):
            self.add_state(name, default=torch.zeros(num_targets, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, scale: Tensor) -> None:
        error = (pred - target).double()
        denominator = pred.abs().double() + target.abs().double()
        ratio = torch.where(denominator > 0, 2.0 * error.abs() / denominator.clamp_min(1e-12), torch.zeros_like(error))
        self.abs_error += error.abs().sum(dim=(0, 1))
        self.sq_error += error.pow(2).sum(dim=(0, 1))
        self.scaled_error += (error.abs() / scale.double().unsqueeze(1)).sum(dim=(0, 1))
        self.smape += ratio.sum(dim=(0, 1))
        self.count += error.shape[0] * error.shape[1]

    def compute(self) -> dict[str, Tensor]:
        """Per target: MAE, RMSE, MASE and sMAPE (in percent)."""
        return {
            "mae": self.abs_error / self.count,
            "rmse": (self.sq_error / self.count).sqrt(),
            "mase": self.scaled_error / self.count,
            "smape": 100.0 * self.smape / self.count,
        }


class IntervalScores(Metric):
    """Quantile forecasts [B, H, K, Q] at ``levels``: the mean pinball loss over levels divided by the series'
    MASE scale (comparable across series, like MASE) and how often the truth lies between the outer levels."""

    full_state_update = False

    def __init__(self, num_targets: int, levels) -> None:
        super().__init__()
        self.levels = list(levels)
        for name in ("pinball", "inside"):
            self.add_state(name, default=torch.zeros(num_targets, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, quantiles: Tensor, target: Tensor, scale: Tensor) -> None:
        levels = torch.tensor(self.levels, dtype=torch.float64, device=target.device)
        error = target.double().unsqueeze(-1) - quantiles.double()
        loss = torch.maximum(levels * error, (levels - 1.0) * error).mean(dim=-1)
        self.pinball += (loss / scale.double().unsqueeze(1)).sum(dim=(0, 1))
        inside = (target >= quantiles[..., 0]) & (target <= quantiles[..., -1])
        self.inside += inside.double().sum(dim=(0, 1))
        self.count += target.shape[0] * target.shape[1]

    def compute(self) -> dict[str, Tensor]:
        return {"pinball": self.pinball / self.count, "coverage": self.inside / self.count}


def band_pairs(levels: list[float]) -> list[tuple[int, int]]:
    """The bands of a quantile forecast, outermost first: (lower index, upper index) of levels paired from the
    ends inwards (the median, if any, is in none)."""
    return [(i, len(levels) - 1 - i) for i in range(len(levels) // 2)]


def conformity_scores(quantiles: Tensor, target: Tensor, scale: Tensor, levels: list[float]) -> Tensor:
    """How far the truth lies outside each band (negative: inside), in units of ``scale``: quantile forecasts
    [B, H, K, Q], targets [B, H, K], per-window scales [B, K] -> [B * H, K, bands]."""
    pairs = band_pairs(levels)
    lower = quantiles[..., [lo for lo, _ in pairs]]
    upper = quantiles[..., [hi for _, hi in pairs]]
    truth = target.unsqueeze(-1)
    scores = torch.maximum(lower - truth, truth - upper) / scale[:, None, :, None]
    return scores.reshape(-1, *scores.shape[2:])


def conformal_widening(scores: Tensor, levels: list[float], narrow: bool) -> Tensor:
    """Split conformal (conformalized quantile regression, Romano et al. 2019): per target and band, the
    ceil((n + 1) c)-th smallest of n scores [n, K, bands], c the band's nominal coverage (upper - lower level);
    the largest score where n is too small for that rank. Clamped at 0 unless ``narrow``. -> [K, bands]."""
    n = scores.shape[0]
    columns = []
    for band, (lo, hi) in enumerate(band_pairs(levels)):
        rank = min(math.ceil((n + 1) * (levels[hi] - levels[lo])), n)
        columns.append(scores[..., band].kthvalue(rank, dim=0).values)
    widening = torch.stack(columns, dim=-1)
    return widening if narrow else widening.clamp_min(0.0)


class Seq2SeqForecastTask(LstmlabTask):
    """Trains ``net`` (an encoder-decoder forecaster) on scaled windows with scheduled teacher forcing.

    ``net.input_size`` / ``output_size`` / ``num_quantiles`` left null are taken from the data and the loss and
    written back into the saved hyperparameters; what scaling and scoring need (column names, per-series
    statistics and MASE scales, context and horizon) is saved in every checkpoint, so
    ``Seq2SeqForecastTask.load_from_checkpoint(path)`` alone rebuilds and forecasts raw values (``forward``).
    Metrics are in the data's units; MASE divides each window's errors by its series' in-sample seasonal-naive
    error. With ``loss=quantile`` the point metrics are the median's, plus ``pinball`` and ``coverage`` (of the
    band between the lowest and the highest level). ``ensemble_of`` makes it a seed ensemble (``lstmlab-eval
    ckpt_path=[a,b,...]``): the element-wise median of its members' forecasts.
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
        base_forecast: str,
        teacher_forcing: Mapping,
        interval_calibration: str,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"model.loss={loss!r} must be one of {list(LOSSES)}")
        if interval_calibration not in INTERVAL_CALIBRATIONS:
            raise ConfigError(
                f"model.interval_calibration={interval_calibration!r} must be one of {list(INTERVAL_CALIBRATIONS)}"
            )
        self.save_hyperparameters(logger=False)
        self.levels = list(quantiles) if loss == "quantile" else [0.5]
        self.net: nn.Module | None = None
        self.scaling: WindowScaler | None = None
        if all(net.get(k) is not None for k in ("input_size", "output_size", "num_quantiles")):
            self._build(dict(net))
        self.loss_fn = PinballLoss(self.levels) if loss == "quantile" else LOSS_MODULES[loss]()
        self.loss_mean = nn.ModuleDict()
        self.errors = nn.ModuleDict()
        self.intervals = nn.ModuleDict()
        self.info: dict[str, Any] | None = None  # forecast_info of the data, plus the per-series scaler
        # a seed ensemble (lstmlab-eval ckpt_path=[...]): the trained tasks whose median forecast this one makes
        self.members: nn.ModuleList | None = None
        # each validation's conformity scores (interval_calibration), of the uncalibrated forecasts
        self.calibration_scores: CatMetric | None = None

    def _build(self, net_config: dict) -> None:
        self.net = instantiate(net_config)
        hp = self.hparams
        self.scaling = WindowScaler(
            net_config["input_size"],
            net_config["output_size"],
            scaler=hp.scaler,
            affine=hp.scaler_affine,
            log_transform=hp.log_transform,
            difference=hp.difference,
            base=hp.base_forecast,
        )
        if hp.base_forecast != "none" and hasattr(self.net, "project"):
            # the first forecast is the base forecast itself: the net starts from the baseline and learns a correction
            nn.init.zeros_(self.net.project.weight)
            nn.init.zeros_(self.net.project.bias)

    def recurrent_lr_scale(self) -> float:
        # no model.recurrent_lr_scale option here: the recurrence learns at the optimizer's rate like the rest
        return 1.0

    @property
    def quantile_levels(self) -> list[float] | None:
        return self.levels if len(self.levels) > 1 else None

    @property
    def calibrates(self) -> bool:
        return len(self.levels) > 1 and self.hparams.interval_calibration != "none"

    # ---- set-up --------------------------------------------------------------------------------
    def prepare(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        data_info = datamodule.forecast_info()
        if self.info is not None and self.info["columns"] != data_info["columns"]:
            raise ConfigError(
                f"the checkpoint was trained on columns {self.info['columns']} but data gives {data_info['columns']}; "
                "use the same data.targets / data.covariates"
            )
        columns, targets = len(data_info["columns"]), len(data_info["target_names"])
        if self.net is None:
            self._build(
                self.net_config_from_data(input_size=columns, output_size=targets, num_quantiles=len(self.levels))
            )
        if (self.net.input_size, self.net.output_size) != (columns, targets):
            raise ConfigError(
                f"model.net.input_size={self.net.input_size} / output_size={self.net.output_size} "
                f"do not match the data: {columns} input columns {data_info['columns']}, {targets} targets; "
                "set both to null to take them from the data"
            )
        if self.net.num_quantiles != len(self.levels):
            raise ConfigError(
                f"model.net.num_quantiles={self.net.num_quantiles} but the loss gives {len(self.levels)} values per "
                f"step (model.loss={self.hparams.loss}, model.quantiles={list(self.hparams.quantiles)}); "
                "set model.net.num_quantiles=null"
            )
        if self.hparams.log_transform and datamodule.target_minimum() < 0:
            raise ConfigError(
                f"model.log_transform=true needs non-negative targets; {datamodule.file_path} has "
                f"{datamodule.target_minimum():g}; set model.log_transform=false"
            )
        self.scaling.season_length = data_info["season_length"]
        if stage == "fit" or self.info is None:
            self.info = data_info
            self.scaling.fit_series(datamodule.train_segments())
            self.info["series_loc"], self.info["series_scale"] = self.scaling.series_loc, self.scaling.series_scale
        else:  # a trained model on (maybe other) data: scored against that data's own in-sample errors
            if self.hparams.scaler == "train" and data_info["series_ids"] != self.info["series_ids"]:
                raise ConfigError(
                    f"model.scaler=train keeps statistics of the series it was trained on {self.info['series_ids']}; "
                    f"this data has {data_info['series_ids']}: evaluate on the same series"
                )
            self.info = {**self.info, "series_ids": data_info["series_ids"], "mase_scale": data_info["mase_scale"]}
        for stage_name in ("val", "test"):
            if stage_name not in self.errors:
                self.loss_mean[stage_name] = MeanMetric()
                self.errors[stage_name] = nn.ModuleDict({f: ForecastErrors(targets) for f in FORECASTERS})
                if self.quantile_levels:
                    self.intervals[stage_name] = IntervalScores(targets, self.levels)
        if self.calibrates and self.calibration_scores is None:
            self.calibration_scores = CatMetric().to(self.device)
        origins = datamodule.backtest[0] if datamodule.backtest else 0
        for origin in range(origins):
            if f"origin_{origin}" not in self.errors:
                self.errors[f"origin_{origin}"] = nn.ModuleDict({"model": ForecastErrors(targets)}).to(self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["forecast_info"] = self.info

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.info = checkpoint["forecast_info"]
        self.scaling.season_length = self.info["season_length"]
        self.scaling.series_loc, self.scaling.series_scale = self.info.get("series_loc"), self.info.get("series_scale")

    # ---- forecasting ---------------------------------------------------------------------------
    def forward(self, x: Tensor, series: Tensor | None = None, return_attention: bool = False):
        """Raw context [B, input_len, C] -> raw forecast [B, horizon, K] ([B, horizon, K, Q] with quantiles)
        (+ attention [B, horizon, heads, input_len]; a seed ensemble's is its first member's, as a median of
        attention weights would not sum to one); ``series`` [B] indexes the per-series statistics
        (``scaler=train``; the first series when None)."""
        if self.members is not None:
            outputs = [m(x, series, return_attention and i == 0) for i, m in enumerate(self.members)]
            if return_attention:
                first, attention = outputs[0]
                return self._median([first, *outputs[1:]]), attention
            return self._median(outputs)
        scaled, stats = self.scaling.encode(x, series)
        out = self.net(scaled, self.info["horizon"], return_attention=return_attention)
        if return_attention:
            return self._finish(out[0], stats, series), out[1]
        return self._finish(out, stats, series)

    def ensemble_of(self, members: Sequence[Seq2SeqForecastTask]) -> None:
        """Forecast as a seed ensemble: the element-wise median of the raw forecasts of ``members`` (tasks trained
        on the same data, each scaling its windows with its own statistics); its metrics score that median."""
        self.members = nn.ModuleList(members)

    def ensemble_shared(self) -> dict[str, Any]:
        """What the members of a seed ensemble must have in common to forecast the same windows alike."""
        return {
            "columns": self.info["columns"],
            "target_names": self.info["target_names"],
            "horizon": self.info["horizon"],
            "input_len": self.info["input_len"],
            "quantiles": self.quantile_levels,
        }

    @staticmethod
    def _median(forecasts: list[Tensor]) -> Tensor:
        # torch.quantile interpolates: with an even count the mean of the two middle values (torch.median would
        # take the lower one), so two members give their mean rather than one member's forecast
        median = torch.stack(forecasts).quantile(0.5, dim=0)
        return median.sort(dim=-1).values if median.dim() == 4 else median

    def _finish(self, out: Tensor, stats, series: Tensor | None, calibrated: bool = True) -> Tensor:
        raw = self.scaling.decode(out, stats)
        if raw.dim() == 3:
            return raw
        # quantile levels may cross; sorting restores their order without changing the median's meaning
        raw = raw.sort(dim=-1).values
        return self.widen(raw, series).sort(dim=-1).values if calibrated else raw

    def widen(self, quantiles: Tensor, series: Tensor | None) -> Tensor:
        """Quantile forecasts [B, H, K, Q] with each band moved outwards by the calibration the checkpoint's
        validation chose (``info["interval_widening"]`` [K, bands], in units of each series' MASE scale)."""
        widening = self.info.get("interval_widening") if self.calibrates else None
        if widening is None:
            return quantiles
        # [B or 1, K]; no batch size taken from the input, so that an exported graph keeps its batch dynamic
        scales = torch.tensor(self.info["mase_scale"], dtype=quantiles.dtype, device=quantiles.device)
        scale = scales[:1] if series is None else scales[series.long()]
        delta = torch.tensor(widening, dtype=quantiles.dtype, device=quantiles.device) * scale.unsqueeze(-1)
        middle = quantiles.shape[-1] - 2 * delta.shape[-1]
        shift = torch.cat([-delta, delta.new_zeros(*delta.shape[:-1], middle), delta.flip(-1)], dim=-1)
        return quantiles + shift.unsqueeze(1)

    def point(self, forecast: Tensor) -> Tensor:
        """The point forecast [B, H, K] of a forecast: itself, or its median."""
        return forecast[..., self.levels.index(0.5)] if forecast.dim() == 4 else forecast

    def current_teacher_forcing(self) -> float:
        return teacher_forcing_ratio(self.global_step, **self.hparams.teacher_forcing)

    def _loss(self, out: Tensor, y: Tensor, stats: WindowStats) -> Tensor:
        """The loss of the net's output ``out`` for the raw targets ``y``, in the scaled units without the
        learnable affine (``WindowScaler.loss_space``)."""
        out = self.scaling.loss_space(out)
        if self.hparams.loss == "quantile" and out.dim() == 3:
            out = out.unsqueeze(-1)
        return self.loss_fn(out, self.scaling.loss_target(y, stats))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        scaled, stats = self.scaling.encode(batch["x"], batch.get("series"))
        target = self.scaling.encode_target(batch["y"], stats)
        ratio = self.current_teacher_forcing()
        out = self.net(scaled, target.shape[1], target=target, teacher_forcing_ratio=ratio)
        loss = self._loss(out, batch["y"], stats)
        self.log_train_loss(loss, len(out))
        self.log("train/teacher_forcing_ratio", ratio, on_step=False, on_epoch=True, batch_size=len(out))
        return loss

    def predict_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self(batch["x"], batch.get("series"))

    def baselines(self, x: Tensor) -> dict[str, Tensor]:
        history = x[..., : len(self.info["target_names"])]
        horizon = self.info["horizon"]
        return {
            "seasonal_naive": seasonal_naive(history, horizon, self.info["season_length"]),
            "last_value": last_value(history, horizon),
        }

    def net_forecast(
        self, x: Tensor, series: Tensor, horizon: int, calibrated: bool = True
    ) -> tuple[Tensor, Tensor, WindowStats]:
        """Raw context -> (the net's output in its scaled units, the raw forecast, the context's ``WindowStats``),
        autoregressive (the target is not passed): the test loop's forecast, which ``lstmlab-eval runtime=onnx``
        takes from the exported graph instead (``lstmlab.onnx_runtime``). A seed ensemble's output is its median
        forecast in this task's scaled units, so its loss is the ensemble's, on the scale one member's would be.
        ``calibrated=False``: the quantiles as the net gives them (what validation scores the calibration on)."""
        scaled, stats = self.scaling.encode(x, series)
        if self.members is not None:
            forecast = self._median([m.net_forecast(x, series, horizon, calibrated)[1] for m in self.members])
            return self.scaling.encode_target(forecast, stats), forecast, stats
        out = self.net(scaled, horizon)
        return out, self._finish(out, stats, series, calibrated), stats

    def update_metrics(self, stage: str, batch: dict) -> None:
        calibrating = stage == "val" and self.calibration_scores is not None
        out, forecast, stats = self.net_forecast(batch["x"], batch["series"], batch["y"].shape[1], not calibrating)
        self.loss_mean[stage].update(self._loss(out, batch["y"], stats), weight=len(out))
        scale = torch.tensor(self.info["mase_scale"], dtype=torch.float64, device=out.device)[batch["series"]]
        forecasts = {"model": self.point(forecast), **self.baselines(batch["x"])}
        for name, each in forecasts.items():
            self.errors[stage][name].update(each, batch["y"], scale)
        if stage in self.intervals:
            self.intervals[stage].update(forecast, batch["y"], scale)
        if calibrating:
            self.calibration_scores.update(conformity_scores(forecast, batch["y"], scale, self.levels))
        if stage == "test" and self.trainer.datamodule.backtest is not None:
            for origin in batch["origin"].unique().tolist():
                chosen = batch["origin"] == origin
                self.errors[f"origin_{origin}"]["model"].update(
                    forecasts["model"][chosen], batch["y"][chosen], scale[chosen]
                )

    def log_stage(self, stage: str) -> dict[str, Tensor]:
        """``<stage>/mae``, ``<stage>/mase_seasonal_naive`` ...: means over targets; per target with several;
        ``<stage>/pinball`` and ``<stage>/coverage`` with quantiles; a backtest logs ``backtest/...`` instead of
        ``test/...``, and ``backtest/<metric>_origin_<i>`` per origin."""
        names = self.info["target_names"]
        backtest = stage == "test" and self.trainer.datamodule.backtest is not None
        prefix = "backtest" if backtest else stage
        values: dict[str, Tensor] = {f"{prefix}/loss": self.loss_mean[stage].compute()}
        self.loss_mean[stage].reset()
        groups = [(self.errors[stage], prefix, "")]
        if backtest:
            groups += [(self.errors[k], prefix, f"_{k}") for k in self.errors if k.startswith("origin_")]
        for group, prefix, origin_suffix in groups:
            for forecaster, errors in group.items():
                suffix = ("" if forecaster == "model" else f"_{forecaster}") + origin_suffix
                values.update(self._named(errors, prefix, suffix, names))
        if stage in self.intervals:
            values.update(self._named(self.intervals[stage], prefix, "", names))
        if stage == "val" and self.calibration_scores is not None:
            values.update(self.calibrate())
        self.log_dict(values)
        return values

    def calibrate(self) -> dict[str, Tensor]:
        """The widening of this validation's checkpoint (kept in ``info``, so saved with it), from the scores of
        its uncalibrated forecasts; ``val/interval_widening``: the outermost band's, mean over targets."""
        if self.trainer.sanity_checking:
            self.calibration_scores.reset()
            return {}
        scores = self.calibration_scores.compute()
        self.calibration_scores.reset()
        narrow = self.hparams.interval_calibration == "conformal"
        widening = conformal_widening(scores.double(), self.levels, narrow)
        self.info["interval_widening"] = widening.tolist()
        return {"val/interval_widening": widening[:, 0].mean().float()}

    @staticmethod
    def _named(metric: Metric, prefix: str, suffix: str, names: list[str]) -> dict[str, Tensor]:
        per_target = metric.compute()
        metric.reset()
        values = {}
        for name, value in per_target.items():
            values[f"{prefix}/{name}{suffix}"] = value.mean().float()
            if len(names) > 1:
                values.update({f"{prefix}/{name}{suffix}_{n}": v.float() for n, v in zip(names, value)})
        return values
