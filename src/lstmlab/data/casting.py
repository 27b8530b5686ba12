"""Synthetic continuous-casting sensor sequences with defects caused by temporal patterns.

Every sequence holds the same events: a mould-level spike and a casting-speed drop, a cooling-water dip and a
mould-temperature bump, and a burst of mould-level oscillation, each with a random amplitude, on slowly drifting,
noisy sensor baselines. What makes a defect is how the events relate in time, never whether they happen:

- ``speed_after_spike``: the speed drop starts 4-20 steps *after* the level spike (normal: it comes before it);
- ``heat_after_dip``: the temperature bump starts 4-20 steps *after* the cooling dip (normal: before it);
- ``fast_oscillation``: the 40-step oscillation burst has a period of 8-12 steps (normal: 30-50, same amplitude).

Each defect sequence carries one of these causes. Since defect and normal sequences hold the same events with
the same amplitudes, per-channel means, deviations and extremes barely tell them apart; the order and the
frequency do. A fraction ``label_noise`` of the labels is flipped, so that no model separates the classes fully.
Same parameters, same file (the generator is seeded and the file is cached under a hash of its parameters).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lstmlab.data.hdf5 import cached_file, params_hash
from lstmlab.data.sequences import SequenceData, load_sequences, write_sequences

CHANNELS = ("mould_level", "casting_speed", "mould_temperature", "tundish_temperature", "cooling_water_flow")
CLASSES = ("normal", "defect")
CAUSES = ("speed_after_spike", "heat_after_dip", "fast_oscillation")
# operating point and sensor noise of each channel, in its own unit (mm, m/min, degC, degC, l/min): the scales
# differ by orders of magnitude on purpose, as real sensors do, so input normalisation matters
BASELINE = np.array([0.0, 1.2, 210.0, 1545.0, 150.0])
NOISE = np.array([1.0, 0.01, 1.5, 0.8, 2.0])
LEVEL, SPEED, TEMPERATURE, TUNDISH, FLOW = range(5)
SCHEMA_NAME = "casting"
GENERATOR_VERSION = 2  # part of the cache key: files of older generators are not reused


def generate_casting(
    n_sequences: int = 4000,
    min_length: int = 100,
    max_length: int = 500,
    defect_rate: float = 0.15,
    label_noise: float = 0.01,
    event_amplitude: tuple[float, float] = (3.5, 6.0),
    seed: int = 7,
) -> SequenceData:
    """``n_sequences`` sequences of ``min_length``-``max_length`` steps; amplitudes in units of sensor noise."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_length, max_length + 1, size=n_sequences)
    defect = rng.random(n_sequences) < defect_rate
    cause = np.where(defect, rng.integers(0, len(CAUSES), size=n_sequences), -1)
    sequences = np.zeros((n_sequences, max_length, len(CHANNELS)), np.float32)
    for i, length in enumerate(lengths):
        sequences[i, :length] = _casting_sequence(rng, int(length), int(cause[i]), event_amplitude)
    flip = rng.random(n_sequences) < label_noise
    labels = (defect ^ flip).astype(np.int64)
    return SequenceData(sequences, lengths.astype(np.int64), labels, None, list(CHANNELS), list(CLASSES))


def _casting_sequence(rng: np.random.Generator, length: int, cause: int, amplitude: tuple[float, float]) -> np.ndarray:
    """One sequence [length, 5] in sensor units; ``cause`` indexes CAUSES, -1 for a normal sequence."""
    t = np.arange(length)
    drift = np.cumsum(rng.normal(0.0, 0.05, size=(length, len(CHANNELS))), axis=0)  # slow process wander
    x = drift + rng.normal(0.0, 1.0, size=(length, len(CHANNELS)))

    def amp() -> float:
        return rng.uniform(*amplitude)

    def start(span: int) -> int:
        return int(rng.integers(0, max(1, length - span)))

    # spike and drop: whichever comes second follows the first by `gap` steps
    gap, at = int(rng.integers(4, 21)), start(45)
    spike, drop = (at, at + gap) if cause == 0 else (at + gap, at)
    x[:, LEVEL] += amp() * np.exp(-0.5 * ((t - spike) / 1.5) ** 2)
    x[:, SPEED] -= amp() * _window(t, drop, 15)
    # cooling dip and temperature bump, same rule
    gap, at = int(rng.integers(4, 21)), start(55)
    dip, bump = (at, at + gap) if cause == 1 else (at + gap, at)
    x[:, FLOW] -= amp() * _window(t, dip, 15)
    x[:, TEMPERATURE] += amp() * np.sin(np.pi * np.clip((t - bump) / 30.0, 0.0, 1.0))
    # oscillation burst: the period tells a defect from normal mould oscillation
    period = rng.uniform(8.0, 12.0) if cause == 2 else rng.uniform(30.0, 50.0)
    at, span = start(40), 40
    envelope = _window(t, at, span)
    x[:, LEVEL] += amp() * envelope * np.sin(2 * np.pi * (t - at) / period + rng.uniform(0, 2 * np.pi))
    return BASELINE + NOISE * x


def _window(t: np.ndarray, begin: int, span: int) -> np.ndarray:
    """1 on [begin, begin + span) with 2-step ramps at both ends."""
    return np.clip(np.minimum(t - begin + 1, begin + span - t) / 2.0, 0.0, 1.0)


def cached_casting_path(data_dir: str | os.PathLike, params: dict) -> Path:
    return (
        Path(data_dir)
        / f"{SCHEMA_NAME}-{params_hash({'schema': SCHEMA_NAME, 'version': GENERATOR_VERSION, **params})}.h5"
    )


def ensure_casting(data_dir: str | os.PathLike, params: dict) -> Path:
    """Generate the casting file for ``params`` unless a valid one is already cached; return its path."""
    return cached_file(
        cached_casting_path(data_dir, params),
        load_sequences,
        lambda path: write_sequences(path, generate_casting(**params), params),
    )
