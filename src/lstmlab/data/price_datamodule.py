"""Batches of the price-forecast task: sequences of window features, a target ``horizon`` ticks ahead.

The series (a CSV of yours, or the generated one cached as HDF5) is cut into windows by ``series_features``;
an example is ``seq_len`` consecutive windows, its target the close ``horizon`` ticks after the last window's
end. Examples are split in time order (train, then val, then test), and the normalisation is fitted on the
training windows only. Every example also carries what the baselines forecast for it, so the model and the
baselines are scored on the same test windows.

With ``chunked=true`` (for a stateful net, ``experiment=price_forecast_stateful``) every window with a target is
an example of its own and each split is one stream in time order: training batches are consecutive chunks of
``seq_len`` windows (``first`` marks the split's start, so the task can carry the state across chunks), and
validation and test run their whole split as one sequence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lstmlab.data.datamodule import LstmlabDataModule
from lstmlab.data.price_features import (
    FeatureSettings,
    PricePipeline,
    check_target,
    fit_normalisation,
    sequence_windows,
    series_features,
)
from lstmlab.data.prices import PriceSeries, ensure_prices, load_prices, load_prices_h5
from lstmlab.data.samplers import EpochBatches, IndexBatches, StreamChunks
from lstmlab.data.splits import SPLITS, split_in_time
from lstmlab.errors import DataFileError


class PriceExamples(Dataset):
    """Examples of one split as a dict of tensors with a leading example dimension; indexed by a whole batch
    of indices at once (``BatchSampler``), so a batch is one gather per tensor, not a collate of dicts."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.tensors = dict(tensors)

    def __len__(self) -> int:
        return len(self.tensors["x"])

    def __getitem__(self, indices: list[int]) -> dict:
        return {k: v[indices] for k, v in self.tensors.items()}


class PriceChunks(Dataset):
    """One split as one stream: chunk ``c`` holds windows ``c * chunk_len ...`` with a batch dimension of 1."""

    def __init__(self, examples: PriceExamples, chunk_len: int | None) -> None:
        self.tensors = examples.tensors
        self.length = len(examples)
        self.chunk_len = chunk_len or self.length

    def __len__(self) -> int:
        return -(-self.length // self.chunk_len)

    def __getitem__(self, chunk: int) -> dict:
        part = slice(chunk * self.chunk_len, (chunk + 1) * self.chunk_len)
        return {k: v[part].unsqueeze(0) for k, v in self.tensors.items()} | {"first": chunk == 0}


class PriceDataModule(LstmlabDataModule):
    """Price history (OHLCV CSV, or the generated series) -> window features -> sequences of windows."""

    generate = staticmethod(ensure_prices)

    # the values come from conf/data/prices.yaml (tests: helpers.build_datamodule("prices", ...))
    def __init__(
        self,
        *,
        path: str | None,
        data_dir: str,
        generator: dict,
        columns: Mapping[str, str],
        features: Mapping,
        seq_len: int,
        horizon: int,
        target: str,
        batch_size: int,
        eval_batch_size: int | None,
        split_fractions: Sequence[float],
        seed: int,
        num_workers: int,
        pin_memory: bool,
        chunked: bool,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.settings = FeatureSettings(**features)
        self.target = check_target(target)
        self.columns = dict(columns)
        self.series: PriceSeries | None = None
        self.pipeline: PricePipeline | None = None

    def load_series(self) -> PriceSeries:
        if self.hparams.path is None:
            return load_prices_h5(self.file_path)
        return load_prices(self.file_path, self.columns, need_volume=self.settings.uses_volume)

    def setup(self, stage: str | None = None) -> None:
        if self.pipeline is not None:
            return
        self.series = series = self.load_series()
        close = series.close
        if (close <= 0).any():
            line = int(np.argmax(close <= 0))
            raise DataFileError(
                f"{self.file_path}: close of tick {line} ({series.dates[line]}) is {close[line]}; prices must be > 0"
            )
        features, ends = series_features(close, series.volume, self.settings)
        h, seq_len = self.hparams.horizon, self.hparams.seq_len
        has_target = ends + h < len(close)
        last = np.flatnonzero(has_target) if self.hparams.chunked else sequence_windows(len(ends), seq_len, has_target)
        if len(last) < 3:
            raise DataFileError(
                f"{self.file_path}: {len(close)} ticks give {len(last)} examples of {seq_len} windows of "
                f"{self.settings.buffer_size} ticks (step {self.settings.step_size}) with a target {h} ticks ahead; "
                "need at least 3 (train, val, test): use a longer series or smaller data.seq_len / buffer_size"
            )
        cut = split_in_time(len(last), self.hparams.split_fractions)
        train_windows = features[: last[cut[0] - 1] + 1]
        mean, std = fit_normalisation(train_windows)
        log_return = np.log(close[ends[last] + h] / close[ends[last]])
        target_mean, target_std = (
            (0.0, 1.0) if self.target == "direction" else fit_normalisation(log_return[: cut[0], None])
        )
        self.pipeline = PricePipeline(
            features=self.settings,
            seq_len=seq_len,
            horizon=h,
            target=self.target,
            feature_mean=mean,
            feature_std=std,
            target_mean=float(np.squeeze(target_mean)),
            target_std=float(np.squeeze(target_std)),
            columns={k: v for k, v in self.columns.items() if k in ("date", "close", "volume")},
            stateful=bool(self.hparams.chunked),
        )
        examples = self.examples(self.pipeline.normalise(features), ends, last, log_return)
        bounds = [0, *cut, len(last)]
        for name, start, stop in zip(SPLITS, bounds[:-1], bounds[1:]):
            self.splits[name] = PriceExamples({k: v[start:stop] for k, v in examples.items()})

    def examples(self, normalised: np.ndarray, ends: np.ndarray, last: np.ndarray, log_return: np.ndarray) -> dict:
        """Inputs, targets and the baselines' forecasts of every example (``last``: its last window)."""
        close, h, w = self.series.close, self.hparams.horizon, self.settings.ma_window
        tick = ends[last]
        c = close[tick]
        future = close[tick + h]
        moving_average = np.array([close[t - w + 1 : t + 1].mean() for t in tick])
        last_move = c / close[np.maximum(tick - h, 0)] - 1.0
        if self.target == "close":
            actual, persistence, average = future, c, moving_average
        elif self.target == "return":
            actual, persistence, average = future / c - 1.0, last_move, moving_average / c - 1.0
        else:
            actual, persistence, average = (future > c) * 1.0, (last_move > 0) * 1.0, (moving_average > c) * 1.0
        if self.target == "direction":
            y = (future > c) * 1.0
        else:
            y = (log_return - self.pipeline.target_mean) / self.pipeline.target_std
        # a stateful net reads one window per step; the others read the seq_len windows that end at ``last``
        sequence = last if self.hparams.chunked else last[:, None] + np.arange(-self.hparams.seq_len + 1, 1)
        as_float = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        return {
            "x": torch.from_numpy(normalised[sequence]),
            "y": as_float(y),
            "last_close": torch.as_tensor(c),  # float64: closes keep their digits through the output transform
            "actual": torch.as_tensor(np.asarray(actual, dtype=np.float64)),
            "persistence": torch.as_tensor(np.asarray(persistence, dtype=np.float64)),
            "moving_average": torch.as_tensor(np.asarray(average, dtype=np.float64)),
            "actual_up": torch.as_tensor(future > c),
            "persistence_up": torch.as_tensor(last_move > 0),
            "moving_average_up": torch.as_tensor(moving_average > c),
            "tick": torch.as_tensor(tick),
        }

    @property
    def num_features(self) -> int:
        return len(self.settings.names)

    def dataset(self, split: str) -> Dataset:
        if self.hparams.chunked:  # one stream per split: training in chunks of seq_len windows, evaluation whole
            return PriceChunks(self.splits[split], self.hparams.seq_len if split == "train" else None)
        return self.splits[split]

    def batch_order(self, split: str, batch_size: int, shuffle: bool) -> EpochBatches:
        if self.hparams.chunked:
            return StreamChunks(len(self.dataset(split)))
        return IndexBatches(len(self.splits[split]), batch_size, shuffle, self.seed)
