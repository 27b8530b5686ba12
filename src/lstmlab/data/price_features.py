"""Windowed price features, the one implementation that training (offline) and streaming (live) share.

A buffer holds the last ``buffer_size`` ticks and advances by ``step_size`` ticks; each full window gives one
feature vector:

* trend: the last value of the ``ma_window``-tick moving average, the last slope of that average
  (``np.gradient``) and the standard deviation of its slopes;
* FFT of the window's closes: the dominant frequency index (DC excluded), its magnitude, the mean magnitude;
* extras (``extras``): ``returns`` adds the log return over the last ``step_size`` ticks and the standard
  deviation of the window's one-tick log returns; ``volume`` adds log(1 + mean volume of the last step).

With ``price_scale=last_close`` the price-valued features (moving average, slopes, magnitudes) are divided by the
window's last close (the moving average as ``ma / close - 1``) so that a model trained at one price level works
at another; ``price_scale=none`` keeps the reference's raw values.

The model sees ``seq_len`` consecutive feature vectors and predicts the target ``horizon`` ticks after the last
window's end. ``PricePipeline`` holds everything a checkpoint must carry to turn ticks into model inputs and the
model's output back into prices: the feature settings, the normalisation fitted on the training split, the
target kind and the CSV column names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from lstmlab.choices import PRICE_EXTRAS, PRICE_SCALES, PRICE_TARGETS
from lstmlab.errors import ConfigError

TREND_FFT = ("moving_average", "slope", "slope_std", "dominant_frequency", "dominant_magnitude", "mean_magnitude")
# the features each name in lstmlab.choices.PRICE_EXTRAS (the list the schema checks) adds
EXTRA_FEATURES = {"returns": ("step_return", "return_std"), "volume": ("log_volume",)}
assert tuple(EXTRA_FEATURES) == PRICE_EXTRAS, "map exactly the names of lstmlab.choices.PRICE_EXTRAS, in order"


@dataclass(frozen=True)
class FeatureSettings:
    buffer_size: int = 64
    step_size: int = 5
    ma_window: int = 10
    extras: tuple[str, ...] = ("returns", "volume")
    price_scale: str = "last_close"

    def __post_init__(self) -> None:
        object.__setattr__(self, "extras", tuple(self.extras))
        for problem in feature_problems(asdict(self)):
            raise ConfigError(f"data.features.{problem[0]} {problem[1]}")

    @property
    def names(self) -> list[str]:
        return [*TREND_FFT, *(name for extra in self.extras for name in EXTRA_FEATURES[extra])]

    @property
    def uses_volume(self) -> bool:
        return "volume" in self.extras

    def to_dict(self) -> dict:
        return {**asdict(self), "extras": list(self.extras)}


def feature_problems(settings: Mapping) -> list[tuple[str, str]]:
    """(key, message) for every setting that cannot work; shared by the config schema and ``FeatureSettings``."""
    out = []
    for key in ("buffer_size", "step_size", "ma_window"):
        if settings[key] < 1:
            out.append((key, f"must be >= 1, got {settings[key]}"))
    if not out and settings["buffer_size"] <= settings["ma_window"]:
        out.append(
            (
                "buffer_size",
                f"must be longer than the feature window ma_window={settings['ma_window']} "
                f"(the slope needs two averages), got {settings['buffer_size']}; "
                f"use buffer_size >= {settings['ma_window'] + 1}",
            )
        )
    if not out and "returns" in settings["extras"] and settings["buffer_size"] <= settings["step_size"]:
        out.append(
            (
                "buffer_size",
                f"must be longer than step_size={settings['step_size']} for the 'returns' "
                f"extra, got {settings['buffer_size']}",
            )
        )
    for extra in settings["extras"]:
        if extra not in PRICE_EXTRAS:
            out.append(("extras", f"has {extra!r}; choose from {list(PRICE_EXTRAS)}"))
    if settings["price_scale"] not in PRICE_SCALES:
        out.append(("price_scale", f"must be one of {list(PRICE_SCALES)}, got {settings['price_scale']!r}"))
    return out


def window_features(close: np.ndarray, volume: np.ndarray | None, s: FeatureSettings) -> np.ndarray:
    """The feature vector of one full window (``close``/``volume`` of ``buffer_size`` ticks, oldest first)."""
    moving_avg = np.convolve(close, np.ones(s.ma_window) / s.ma_window, mode="valid")
    slope = np.gradient(moving_avg)
    magnitudes = np.abs(np.fft.rfft(close))
    dominant = int(np.argmax(magnitudes[1:])) + 1
    scale = close[-1] if s.price_scale == "last_close" else 1.0
    level = moving_avg[-1] / scale - 1.0 if s.price_scale == "last_close" else moving_avg[-1]
    values = [
        level,
        slope[-1] / scale,
        np.std(slope) / scale,
        dominant,
        magnitudes[dominant] / scale,
        np.mean(magnitudes) / scale,
    ]
    for extra in s.extras:
        if extra == "returns":
            log_returns = np.diff(np.log(close))
            values += [np.log(close[-1] / close[-1 - s.step_size]), np.std(log_returns)]
        elif extra == "volume":
            values.append(np.log1p(np.mean(volume[-s.step_size :])))
    return np.asarray(values, dtype=np.float64)


def window_ends(n_ticks: int, s: FeatureSettings) -> np.ndarray:
    """Index of the last tick of every window over a series of ``n_ticks`` ticks."""
    return np.arange(s.buffer_size - 1, n_ticks, s.step_size)


def series_features(close: np.ndarray, volume: np.ndarray | None, s: FeatureSettings) -> tuple[np.ndarray, np.ndarray]:
    """Offline: the features of every window of a whole series, [W, F], and the windows' last ticks [W]."""
    ends = window_ends(len(close), s)
    rows = [
        window_features(
            close[e - s.buffer_size + 1 : e + 1], None if volume is None else volume[e - s.buffer_size + 1 : e + 1], s
        )
        for e in ends
    ]
    return np.asarray(rows, dtype=np.float64).reshape(len(ends), len(s.names)), ends


class FeatureBuffer:
    """Streaming: push ticks one at a time; every ``step_size``-th tick after the buffer is full yields features.

    The windows it yields are exactly those of ``series_features`` over the same ticks, bit for bit.
    """

    def __init__(self, settings: FeatureSettings) -> None:
        self.settings = settings
        self.close = np.zeros(settings.buffer_size)
        self.volume = np.zeros(settings.buffer_size) if settings.uses_volume else None
        self.count = 0

    def push(self, close: float, volume: float | None = None) -> np.ndarray | None:
        self.close[:-1] = self.close[1:]
        self.close[-1] = close
        if self.volume is not None:
            self.volume[:-1] = self.volume[1:]
            self.volume[-1] = volume
        self.count += 1
        ready = self.count >= self.settings.buffer_size
        if ready and (self.count - self.settings.buffer_size) % self.settings.step_size == 0:
            return window_features(self.close, self.volume, self.settings)
        return None


@dataclass
class PricePipeline:
    """Ticks -> normalised feature sequences -> model; model output -> target units. Saved in checkpoints."""

    features: FeatureSettings
    seq_len: int
    horizon: int
    target: str
    feature_mean: np.ndarray
    feature_std: np.ndarray
    target_mean: float = 0.0
    target_std: float = 1.0
    columns: dict = field(default_factory=dict)
    # trained on the whole series in time-ordered chunks with the recurrent state carried across them
    # (a stateful net): the stream then advances the state one window at a time with ``step()``
    stateful: bool = False

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.feature_mean) / self.feature_std).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "features": self.features.to_dict(),
            "seq_len": self.seq_len,
            "horizon": self.horizon,
            "target": self.target,
            "feature_mean": self.feature_mean.tolist(),
            "feature_std": self.feature_std.tolist(),
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "columns": dict(self.columns),
            "feature_names": self.features.names,
            "stateful": self.stateful,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> PricePipeline:
        return cls(
            features=FeatureSettings(**d["features"]),
            seq_len=int(d["seq_len"]),
            horizon=int(d["horizon"]),
            target=d["target"],
            feature_mean=np.asarray(d["feature_mean"]),
            feature_std=np.asarray(d["feature_std"]),
            target_mean=float(d["target_mean"]),
            target_std=float(d["target_std"]),
            columns=dict(d.get("columns", {})),
            stateful=bool(d.get("stateful", False)),
        )

    def output(self, prediction, last_close):
        """The net's raw output (torch) as the target: a close, a simple return, or the probability of a rise."""
        import torch

        if self.target == "direction":
            return torch.sigmoid(prediction)
        log_return = prediction * self.target_std + self.target_mean
        return last_close * torch.exp(log_return) if self.target == "close" else torch.expm1(log_return)

    def rises(self, prediction):
        """Whether each raw output forecasts a rise: a positive log return, or a probability above 1/2."""
        if self.target == "direction":
            return prediction > 0
        return prediction * self.target_std + self.target_mean > 0


def fit_normalisation(train_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the training windows (std 1 for a constant feature)."""
    mean = train_features.mean(axis=0)
    std = train_features.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)


def check_target(target: str) -> str:
    """``data.target`` case-insensitively (``Close`` works); a clear error otherwise."""
    name = str(target).lower()
    if name not in PRICE_TARGETS:
        raise ConfigError(f"data.target={target!r} must be one of {list(PRICE_TARGETS)}")
    return name


def sequence_windows(n_windows: int, seq_len: int, usable: Sequence[bool]) -> np.ndarray:
    """Index of the last window of every full sequence of ``seq_len`` windows whose target exists."""
    last = np.arange(seq_len - 1, n_windows)
    return last[np.asarray(usable)[last]]
