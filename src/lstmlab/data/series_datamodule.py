"""Sliding forecast windows over a time series, split chronologically into train / val / test.

The time axis is cut into three consecutive segments (by ``split_fractions`` or by ``split_dates``); a window
of ``input_len + horizon`` steps lies wholly inside one segment, so no window reads across a split boundary.
Batches hold raw (unscaled) values: the task scales them with the statistics fitted here on the train
segment only, and keeps those statistics in its checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lstmlab.data.datamodule import LstmlabDataModule
from lstmlab.data.samplers import IndexBatches
from lstmlab.data.series import SeriesData, ensure_series, load_series
from lstmlab.data.splits import SPLITS, split_time_axis
from lstmlab.errors import ConfigError


class SeriesWindows(Dataset):
    """The windows of one segment; ``dataset[list_of_indices]`` is a batch ``{"x": [B, L, C], "y": [B, H, K]}``."""

    def __init__(
        self, values: torch.Tensor, num_targets: int, starts: np.ndarray, input_len: int, horizon: int
    ) -> None:
        self.values = values  # [S, T, C]
        self.num_targets = num_targets
        self.starts = torch.as_tensor(starts, dtype=torch.long)  # [N, 2]: (series, first step)
        self.input_len = input_len
        self.offsets = torch.arange(input_len + horizon)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, indices) -> dict:
        chosen = self.starts[torch.as_tensor(indices, dtype=torch.long)]
        steps = chosen[:, 1:2] + self.offsets
        window = self.values[chosen[:, 0:1], steps]  # [B, L + H, C]
        return {"x": window[:, : self.input_len], "y": window[:, self.input_len :, : self.num_targets]}


def window_starts(begin: int, end: int, num_series: int, window: int, stride: int) -> np.ndarray:
    """(series, start) of every window of ``window`` steps inside steps [begin, end), ``stride`` apart."""
    starts = np.arange(begin, end - window + 1, stride)
    return np.stack(np.broadcast_arrays(np.arange(num_series)[:, None], starts[None, :]), axis=-1).reshape(-1, 2)


class SeriesDataModule(LstmlabDataModule):
    """Reads (or generates) the series, cuts windows per split and fits the scaler on the train segment."""

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
        self.bounds: list[int] = []
        self.scaler_mean = self.scaler_std = self.mase_scale = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        hp = self.hparams
        if hp.season_length > hp.input_len:
            raise ConfigError(
                f"data.season_length={hp.season_length} exceeds data.input_len={hp.input_len}: the seasonal-naive "
                "baseline repeats the last season of the input; use data.input_len >= data.season_length"
            )
        data = load_series(self.file_path, hp.targets, hp.covariates, hp.time_column, hp.missing)
        num_series, num_steps, _ = data.values.shape
        self.bounds = split_time_axis(num_steps, hp.split_fractions, hp.split_dates, data.times)
        window = hp.input_len + hp.horizon
        for name, begin, end in zip(SPLITS, self.bounds[:-1], self.bounds[1:]):
            if end - begin < window:
                raise ConfigError(
                    f"data: the {name} split has {end - begin} steps, "
                    f"fewer than data.input_len + data.horizon = {window}; "
                    f"the series ({num_steps} steps in {self.file_path}) is too short for these settings: lower "
                    "data.input_len / data.horizon, change data.split_fractions, or use a longer series"
                )
        train = data.values[:, : self.bounds[1]].astype(np.float64)
        if self.bounds[1] <= hp.season_length:
            raise ConfigError(
                f"data: the train split ({self.bounds[1]} steps) must be longer than "
                f"data.season_length={hp.season_length}"
            )
        self.scaler_mean = train.mean(axis=(0, 1))
        std = train.std(axis=(0, 1))
        self.scaler_std = np.where(std > 0, std, 1.0)
        targets = train[:, :, : data.num_targets]
        seasonal_error = np.abs(targets[:, hp.season_length :] - targets[:, : -hp.season_length]).mean(axis=(0, 1))
        self.mase_scale = np.maximum(seasonal_error, 1e-8)
        values = torch.from_numpy(data.values)
        for name, begin, end in zip(SPLITS, self.bounds[:-1], self.bounds[1:]):
            starts = window_starts(begin, end, num_series, window, hp.stride)
            self.splits[name] = SeriesWindows(values, data.num_targets, starts, hp.input_len, hp.horizon)
        self.data = data

    @property
    def target_names(self) -> list[str]:
        return list(self.hparams.targets)

    def forecast_info(self) -> dict:
        """What the task keeps in its checkpoint to scale, invert and score without the data module."""
        return {
            "columns": list(self.data.columns),
            "target_names": self.target_names,
            "scaler_mean": self.scaler_mean.tolist(),
            "scaler_std": self.scaler_std.tolist(),
            "mase_scale": self.mase_scale.tolist(),
            "season_length": int(self.hparams.season_length),
            "input_len": int(self.hparams.input_len),
            "horizon": int(self.hparams.horizon),
        }

    def batch_order(self, split: str, batch_size: int, shuffle: bool) -> IndexBatches:
        return IndexBatches(len(self.splits[split]), batch_size, shuffle, self.seed)
