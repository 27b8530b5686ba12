"""How the forecaster's windows reach the net and its outputs come back in the data's units.

A forecaster that sees values scaled by the train segment's statistics has never seen the levels a trending
series reaches later; scaled by its own context instead (instance normalisation, as RevIN does), every window
looks alike whatever its level, and the output is unscaled by the same statistics. The steps, in order, each
inverted on the way out:

1. ``log_transform``: ``log1p`` of the targets (a seasonality that grows with the level becomes additive);
2. ``scaler``: ``instance`` (the context's mean and standard deviation per channel) or ``train`` (the train
   segment's, per series, fitted once with ``fit_series``); with ``affine`` a learnable scale and shift per channel
   (RevIN's). The loss is measured without it (``loss_space``, ``loss_target``): measured on targets that pass
   through it too, the loss shrinks with the learnable scale, and training drives that scale to zero and the
   unscaled forecasts to infinity;
3. ``difference``: the targets as first differences (the net forecasts changes; the forecast is their running sum
   from the last context value); or ``base="seasonal_naive"``: the net forecasts what the seasonal-naive forecast
   (the context's last season repeated, in scaled units) misses, so it starts from that baseline and learns only
   the correction a short series can support.

A context whose spread is (near) zero is scaled by a floor relative to its level, so a constant window forecasts
its level instead of dividing by zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)
# a spread below this fraction of the level counts as constant
RELATIVE_FLOOR = 1e-5


def differences(x: Tensor, first: Tensor) -> Tensor:
    """``torch.diff(x, dim=1, prepend=first)`` written out: ONNX has no ``diff`` op, and lstmlab-export traces this."""
    both = torch.cat([first, x], dim=1)
    return both[:, 1:] - both[:, :-1]


@dataclass
class WindowStats:
    """What inverting one batch needs: per window and channel location and scale [B, 1, C], and the last scaled
    target value of the context [B, 1, K] (the start of the running sum when differencing)."""

    loc: Tensor
    scale: Tensor
    last: Tensor
    season: Tensor | None = None  # [B, m, K]: the context's last season, scaled (base="seasonal_naive")


class WindowScaler(nn.Module):
    def __init__(
        self,
        num_channels: int,
        num_targets: int,
        *,
        scaler: str,
        affine: bool,
        log_transform: bool,
        difference: bool,
        base: str = "none",
        season_length: int = 1,
    ) -> None:
        super().__init__()
        self.num_targets = num_targets
        self.base = base
        self.season_length = season_length
        self.scaler = scaler
        self.log_transform = log_transform
        self.difference = difference
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None
        self.series_loc: list | None = None  # scaler=train: per series [C] (after the log transform)
        self.series_scale: list | None = None
        self._told_constant = False

    # ---- fitting (scaler=train) ---------------------------------------------------------------------------
    def fit_series(self, segments: list[np.ndarray]) -> None:
        """Per-series statistics of the train segments [T, C] (raw), kept for ``scaler=train``."""
        locs, scales = [], []
        for segment in segments:
            values = self._log(torch.from_numpy(np.asarray(segment, dtype=np.float64)))
            loc = values.mean(dim=0)
            locs.append(loc.tolist())
            scales.append(self._floor(values.std(dim=0, unbiased=False), loc).tolist())
        self.series_loc, self.series_scale = locs, scales

    # ---- the way in ---------------------------------------------------------------------------------------
    def _log(self, x: Tensor) -> Tensor:
        if not self.log_transform:
            return x
        k = self.num_targets
        return torch.cat([torch.log1p(x[..., :k]), x[..., k:]], dim=-1)

    def _floor(self, spread: Tensor, loc: Tensor) -> Tensor:
        floor = (RELATIVE_FLOOR * loc.abs()).clamp_min(1e-8)
        if not self._told_constant and bool((spread < floor).any()):
            self._told_constant = True
            log.warning("a context window is constant (or nearly): it is forecast at its level")
        return torch.maximum(spread, floor)

    def statistics(self, z: Tensor, series: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.scaler == "instance":
            loc = z.mean(dim=1, keepdim=True)
            return loc, self._floor(z.std(dim=1, unbiased=False, keepdim=True), loc)
        index = torch.zeros(len(z), dtype=torch.long) if series is None else series.long().cpu()
        loc = torch.tensor(self.series_loc, dtype=z.dtype)[index].unsqueeze(1).to(z.device)
        return loc, torch.tensor(self.series_scale, dtype=z.dtype)[index].unsqueeze(1).to(z.device)

    def _affine(self, z: Tensor, channels: slice) -> Tensor:
        return z if self.weight is None else z * self.weight[channels] + self.bias[channels]

    def _target_affine(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The affine's scale and shift of the targets, over a quantile axis too when ``like`` [B, H, K, Q] has one."""
        k = self.num_targets
        weight, bias = self.weight[:k], self.bias[:k]
        return (weight.unsqueeze(-1), bias.unsqueeze(-1)) if like.dim() == 4 else (weight, bias)

    def encode(self, x: Tensor, series: Tensor | None = None) -> tuple[Tensor, WindowStats]:
        """Raw context [B, L, C] -> the net's input [B, L, C] and what inverting its forecast needs."""
        z = self._log(x)
        loc, scale = self.statistics(z, series)
        scaled = self._affine((z - loc) / scale, slice(None))
        k = self.num_targets
        last = scaled[:, -1:, :k]
        season = scaled[:, -self.season_length :, :k] if self.base == "seasonal_naive" else None
        if self.difference:
            changes = differences(scaled[..., :k], scaled[:, :1, :k])
            scaled = torch.cat([changes, scaled[..., k:]], dim=-1)
        return scaled, WindowStats(loc, scale, last, season)

    def base_forecast(self, stats: WindowStats, horizon: int) -> Tensor | None:
        """The scaled forecast the net corrects: the context's last season repeated [B, H, K], or None."""
        if stats.season is None:
            return None
        return stats.season[:, torch.arange(horizon, device=stats.season.device) % stats.season.shape[1]]

    def encode_target(self, y: Tensor, stats: WindowStats) -> Tensor:
        """Raw targets [B, H, K] -> what the net is trained to output for them (its teacher-forced inputs); raw
        forecasts [B, H, K, Q] -> the output they decode from (per quantile level: ``decode``'s inverse)."""
        if y.dim() == 4:
            return torch.stack([self.encode_target(y[..., q], stats) for q in range(y.shape[-1])], dim=-1)
        k = self.num_targets
        scaled = self._affine((self._log(y) - stats.loc[..., :k]) / stats.scale[..., :k], slice(0, k))
        base = self.base_forecast(stats, y.shape[1])
        if base is not None:
            scaled = scaled - base
        if self.difference:
            scaled = differences(scaled, stats.last)
        return scaled

    # ---- the loss: in the scaled units without the learnable affine ----------------------------------------
    def loss_target(self, y: Tensor, stats: WindowStats) -> Tensor:
        """Raw targets [B, H, K] -> the loss's target: ``encode_target`` with the affine undone, a constant (no
        gradient reaches the affine through the target)."""
        return self.loss_space(self.encode_target(y, stats)).detach()

    def loss_space(self, out: Tensor) -> Tensor:
        """The net's output [B, H, K] or [B, H, K, Q] -> the loss's units (``loss_target``'s): the affine undone.
        Its shift cancels in a difference or a correction to the base forecast, which are in the affine's units
        too."""
        if self.weight is None:
            return out
        weight, bias = self._target_affine(out)
        shifted = self.difference or self.base == "seasonal_naive"
        return (out if shifted else out - bias) / weight

    # ---- the way out --------------------------------------------------------------------------------------
    def decode(self, out: Tensor, stats: WindowStats) -> Tensor:
        """The net's output [B, H, K] or [B, H, K, Q] -> raw forecasts of the same shape."""
        k = self.num_targets
        quantiles = out.dim() == 4
        last, loc, scale = stats.last, stats.loc[..., :k], stats.scale[..., :k]
        if quantiles:  # broadcast the per-target statistics over the quantile axis
            last, loc, scale = last.unsqueeze(-1), loc.unsqueeze(-1), scale.unsqueeze(-1)
        if self.difference:
            out = last + torch.cumsum(out, dim=1)
        base = self.base_forecast(stats, out.shape[1])
        if base is not None:
            out = out + (base.unsqueeze(-1) if quantiles else base)
        if self.weight is not None:
            weight, bias = self._target_affine(out)
            out = (out - bias) / (weight + 1e-8)
        out = out * scale + loc
        return torch.expm1(out) if self.log_transform else out
