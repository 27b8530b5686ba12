"""Forecast windows over one or many time series, held out at the end of each series as forecasters do.

Each series is cut into three consecutive segments (train, val, test): by ``val_steps`` / ``test_steps`` (the
last N steps), else by ``split_dates``, else by ``split_fractions``. A window is ``input_len`` steps of context
followed by ``horizon`` steps of targets. A train window lies wholly inside the train segment; a val or test
window has its *targets* inside its segment and its *context* wherever the past is, so it may reach back into
the segments before (that is the past, not a leak). Val and test windows are anchored at the segment's end:
the last one forecasts its last ``horizon`` steps, the others start ``stride`` steps earlier each.

A backtest (``set_backtest(origins, step)``) replaces the test windows by ``origins`` forecast origins per series,
``step`` apart, the latest one forecasting the series' last ``horizon`` steps; each batch says its origin.

Batches hold raw values; the task scales them (per window, or by the per-series train statistics kept here).
The MASE scale of a series is its mean absolute seasonal-naive error over every step before its test segment
(its in-sample error), so forecasts of series of different units average fairly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lstmlab.data.datamodule import LstmlabDataModule
from lstmlab.data.samplers import IndexBatches
from lstmlab.data.series import SeriesData, ensure_series, load_series
from lstmlab.data.splits import SPLITS, split_time_axis
from lstmlab.errors import ConfigError

log = logging.getLogger(__name__)


class SeriesWindows(Dataset):
    """The windows of one split; ``dataset[list_of_indices]`` is a batch: ``x`` [B, L, C] context, ``y``
    [B, H, K] targets, ``series`` [B] the series index, ``origin`` [B] the backtest origin (0 outside one)."""

    def __init__(
        self, values: torch.Tensor, num_targets: int, windows: np.ndarray, input_len: int, horizon: int
    ) -> None:
        self.values = values  # [sum of T_s, C]: the series one after the other
        self.num_targets = num_targets
        windows = torch.as_tensor(windows, dtype=torch.long).reshape(-1, 3)
        self.first = windows[:, 0]  # index into values of the first context step
        self.series = windows[:, 1]
        self.origin = windows[:, 2]
        self.input_len = input_len
        self.offsets = torch.arange(input_len + horizon)

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, indices) -> dict:
        chosen = torch.as_tensor(indices, dtype=torch.long)
        window = self.values[self.first[chosen, None] + self.offsets]  # [B, L + H, C]
        return {
            "x": window[:, : self.input_len],
            "y": window[:, self.input_len :, : self.num_targets],
            "series": self.series[chosen],
            "origin": self.origin[chosen],
        }


def target_starts(begin: int, end: int, horizon: int, stride: int, anchor_end: bool) -> np.ndarray:
    """The first target step of every window whose ``horizon`` targets lie in steps [begin, end), ``stride``
    apart; from ``begin`` on, or (``anchor_end``) back from the last possible one, in increasing order."""
    last = end - horizon
    if last < begin:
        return np.zeros(0, dtype=np.int64)
    if anchor_end:
        return np.arange(last, begin - 1, -stride)[::-1].copy()
    return np.arange(begin, last + 1, stride)


class SeriesDataModule(LstmlabDataModule):
    """Reads (or generates) the series, holds out the end of each and cuts the windows of every split."""

    generate = staticmethod(ensure_series)

    # the values come from conf/data/series.yaml (tests: helpers.build_datamodule("series", ...))
    def __init__(
        self,
        *,
        path: str | None,
        data_dir: str,
        generator: dict,
        time_column: str | None,
        id_column: str | None,
        freq: str | None,
        targets: Sequence[str],
        covariates: Sequence[str],
        missing: str,
        short_series: str,
        input_len: int | None,
        context_multiple: int,
        horizon: int,
        stride: int,
        season_length: int,
        split_fractions: Sequence[float] | None,
        split_dates: Sequence[str] | None,
        val_steps: int | None,
        test_steps: int | None,
        batch_size: int,
        eval_batch_size: int | None,
        seed: int,
        num_workers: int,
        pin_memory: bool,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.data: SeriesData | None = None
        self.bounds: list[list[int]] = []  # per series: [0, val_begin, test_begin, T]
        self.series_ids: list[str] = []
        self.mase_scale: np.ndarray | None = None  # [S, K]
        self.backtest: tuple[int, int] | None = None
        self._values: torch.Tensor | None = None
        self._offsets: np.ndarray | None = None

    @property
    def input_len(self) -> int:
        """``data.input_len``, or with null ``data.context_multiple`` times the longer of the horizon and the season."""
        hp = self.hparams
        if hp.input_len is not None:
            return int(hp.input_len)
        return int(hp.context_multiple) * max(hp.horizon, hp.season_length)

    def set_backtest(self, origins: int, step: int) -> None:
        """Make the test split ``origins`` forecast origins per series, ``step`` steps apart (a rolling origin)."""
        if origins < 1 or step < 1:
            raise ConfigError(f"backtest.origins={origins} and backtest.step={step} must both be >= 1")
        self.backtest = (int(origins), int(step))
        if self.data is not None:
            self.splits["test"] = self._windows("test")

    # ---- set-up ---------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        hp = self.hparams
        if hp.season_length > self.input_len:
            raise ConfigError(
                f"data.season_length={hp.season_length} exceeds data.input_len={self.input_len}: the seasonal-naive "
                "baseline repeats the last season of the context; use data.input_len >= data.season_length"
            )
        data = load_series(
            self.file_path,
            hp.targets,
            hp.covariates,
            time_column=hp.time_column,
            missing=hp.missing,
            id_column=hp.id_column,
            freq=hp.freq,
        )
        kept, bounds = [], []
        for index, series in enumerate(data.values):
            times = data.times[index] if data.times is not None else None
            cut = self._segments(len(series), times)
            problem = self._too_short(cut)
            if problem is None:
                kept.append(index)
                bounds.append(cut)
                continue
            where = f"series {data.ids[index]!r} of {self.file_path}" if len(data.values) > 1 else str(self.file_path)
            message = f"data: {where} is too short: {problem}"
            if hp.short_series == "error":
                hint = "; set data.short_series=skip to leave such series out" if len(data.values) > 1 else ""
                raise ConfigError(message + hint)
            log.warning("%s; skipped (data.short_series=skip)", message)
        if not kept:
            raise ConfigError(f"data: no series of {self.file_path} is long enough for these settings (see the log)")
        self.data = data
        self.bounds = bounds
        self.series_ids = [data.ids[i] for i in kept]
        chosen = [data.values[i] for i in kept]
        self._offsets = np.cumsum([0] + [len(v) for v in chosen])
        self._values = torch.from_numpy(np.concatenate(chosen).astype(np.float32))
        self.mase_scale = np.stack([self._in_sample_error(v, cut) for v, cut in zip(chosen, bounds)])
        for name in SPLITS:
            self.splits[name] = self._windows(name)

    def _segments(self, num_steps: int, times) -> list[int]:
        """[0, val_begin, test_begin, num_steps] of one series."""
        hp = self.hparams
        if hp.test_steps is not None or hp.val_steps is not None:
            test = hp.test_steps if hp.test_steps is not None else hp.val_steps
            val = hp.val_steps if hp.val_steps is not None else hp.test_steps
            return [0, num_steps - test - val, num_steps - test, num_steps]
        return split_time_axis(num_steps, hp.split_fractions, hp.split_dates, times)

    def _too_short(self, cut: list[int]) -> str | None:
        """Why a series cut at ``cut`` cannot give one window per split, or None."""
        hp = self.hparams
        context, horizon = self.input_len, hp.horizon
        train, val, test = cut[1] - cut[0], cut[2] - cut[1], cut[3] - cut[2]
        if train < context + horizon or val < horizon or test < horizon or train <= hp.season_length:
            return (
                f"{cut[3]} steps, where context + horizon + hold-out need {context} + {horizon} + "
                f"{cut[3] - cut[1]} (train {train} steps, at least one window of {context + horizon} and more than "
                f"data.season_length={hp.season_length}; val {val} and test {test}, each at least the horizon); "
                "lower data.input_len / data.horizon, shorten the hold-outs or use a longer series"
            )
        return None

    def _in_sample_error(self, values: np.ndarray, cut: list[int]) -> np.ndarray:
        """[K]: mean |y_t - y_{t-m}| over the steps before the test segment (never zero)."""
        m, k = self.hparams.season_length, self.data.num_targets
        seen = values[: cut[2], :k].astype(np.float64)
        error = np.abs(seen[m:] - seen[:-m]).mean(axis=0)
        return np.maximum(error, 1e-8 * np.maximum(np.abs(seen).mean(axis=0), 1e-8))

    def _windows(self, split: str) -> SeriesWindows:
        hp = self.hparams
        context, horizon = self.input_len, hp.horizon
        rows = []
        for series, (cut, offset) in enumerate(zip(self.bounds, self._offsets)):
            if split == "test" and self.backtest is not None:
                origins, step = self.backtest
                starts = cut[3] - horizon - step * np.arange(origins)[::-1]
                if starts[0] - context < 0:
                    raise ConfigError(
                        f"backtest.origins={origins} x backtest.step={step}: the earliest origin of series "
                        f"{self.series_ids[series]!r} has only {starts[0]} steps of history, fewer than the "
                        f"context of {context}; use fewer origins or a smaller step"
                    )
                origin = np.arange(origins)
            else:
                index = SPLITS.index(split)
                begin, end = (cut[0] + context, cut[1]) if split == "train" else (cut[index], cut[index + 1])
                starts = target_starts(begin, end, horizon, hp.stride, anchor_end=split != "train")
                origin = np.zeros(len(starts), dtype=np.int64)
            first = offset + starts - context
            rows.append(np.stack([first, np.full(len(starts), series), origin], axis=-1))
        windows = np.concatenate(rows) if rows else np.zeros((0, 3), dtype=np.int64)
        return SeriesWindows(self._values, self.data.num_targets, windows, context, horizon)

    # ---- what the task needs ------------------------------------------------------------------------------
    @property
    def target_names(self) -> list[str]:
        return list(self.hparams.targets)

    def train_segments(self) -> list[np.ndarray]:
        """The train segment of each kept series, [T_train, C] raw values (for per-series scaling)."""
        values = self._values.numpy()
        return [values[o : o + cut[1]] for o, cut in zip(self._offsets, self.bounds)]

    def window_origins(self, split: str) -> list[dict]:
        """Per window of ``split``, in order: its series id, backtest origin and first forecast step (the stamp
        of that step when the file has a time column, else its index in the series)."""
        windows = self.splits[split]
        rows = []
        for first, series, origin in zip(windows.first.tolist(), windows.series.tolist(), windows.origin.tolist()):
            step = first - int(self._offsets[series]) + windows.input_len
            times = self.data.times[self.data.ids.index(self.series_ids[series])] if self.data.times else None
            rows.append(
                {
                    "series": self.series_ids[series],
                    "origin": origin,
                    "start": str(times[step]) if times is not None and step < len(times) else step,
                }
            )
        return rows

    def target_minimum(self) -> float:
        return float(self._values[:, : self.data.num_targets].min())

    def forecast_info(self) -> dict:
        """What the task keeps in its checkpoint to score and forecast without the data module."""
        return {
            "columns": list(self.data.columns),
            "target_names": self.target_names,
            "series_ids": list(self.series_ids),
            "mase_scale": self.mase_scale.tolist(),
            "season_length": int(self.hparams.season_length),
            "input_len": self.input_len,
            "horizon": int(self.hparams.horizon),
            "freq": self.data.freq,
        }

    def batch_order(self, split: str, batch_size: int, shuffle: bool) -> IndexBatches:
        return IndexBatches(len(self.splits[split]), batch_size, shuffle, self.seed)
