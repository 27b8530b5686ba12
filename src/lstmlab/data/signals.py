"""Mixed-signal data: the seeded generator and the HDF5 file schema it writes and users' files follow.

Schema (one file, N samples of T steps, K frequencies):
    mixed_signal  float32 [N, T]     S(t): sum of the components plus Gaussian noise
    targets       float32 [N, K, T]  the clean component of each frequency
    frequencies   float   [K]        in Hz
    attrs: sampling_rate (Hz; optional for users' files), seed and generator (JSON) when generated
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmlab.data.hdf5 import atomic_h5, cached_file, open_h5, params_hash, read_array
from lstmlab.errors import DataFileError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SignalData:
    mixed: np.ndarray  # [N, T]
    targets: np.ndarray  # [N, K, T]
    frequencies: np.ndarray  # [K]
    sampling_rate: float | None


def generate_signals(
    n_samples: int = 200,
    sampling_rate: float = 100.0,
    duration: float = 10.0,
    frequencies: tuple[float, ...] = (1.0, 3.0, 5.0, 7.0),
    amplitude_range: tuple[float, float] = (0.5, 1.5),
    noise_std: float = 0.1,
    seed: int = 42,
) -> SignalData:
    """Sums of sinusoids with a random amplitude and phase per sample and frequency, plus noise."""
    rng = np.random.default_rng(seed)
    steps = int(round(sampling_rate * duration))
    freqs = np.asarray(frequencies, dtype=np.float64)
    time = np.arange(steps) / sampling_rate
    amplitude = rng.uniform(*amplitude_range, size=(n_samples, len(freqs)))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(n_samples, len(freqs)))
    targets = amplitude[..., None] * np.sin(2.0 * np.pi * freqs[None, :, None] * time + phase[..., None])
    mixed = targets.sum(axis=1) + noise_std * rng.standard_normal((n_samples, steps))
    return SignalData(mixed.astype(np.float32), targets.astype(np.float32), freqs, float(sampling_rate))


def cached_signals_path(data_dir: str | os.PathLike, params: dict) -> Path:
    """Where the file for these generator parameters lives: the name carries a hash of them."""
    return Path(data_dir) / f"signals-{params_hash({'schema': SCHEMA_VERSION, **params})}.h5"


def ensure_signals(data_dir: str | os.PathLike, params: dict) -> Path:
    """Generate the signal file for ``params`` unless a valid one is already cached; return its path."""
    return cached_file(
        cached_signals_path(data_dir, params),
        load_signals,
        lambda path: write_signals(path, generate_signals(**params), params),
    )


def write_signals(path: str | os.PathLike, data: SignalData, params: dict | None = None) -> None:
    with atomic_h5(path) as f:
        f.create_dataset("mixed_signal", data=data.mixed)
        f.create_dataset("targets", data=data.targets)
        f.create_dataset("frequencies", data=data.frequencies)
        if data.sampling_rate is not None:
            f.attrs["sampling_rate"] = data.sampling_rate
        if params is not None:
            f.attrs["seed"] = params.get("seed", -1)
            f.attrs["generator"] = json.dumps(params, sort_keys=True)
        f.attrs["schema_version"] = SCHEMA_VERSION


def load_signals(path: str | os.PathLike, key: str = "data.path") -> SignalData:
    """Read and validate a signal file (see the module docstring for the schema)."""
    with open_h5(path, key) as f:
        mixed = read_array(f, "mixed_signal", 2, shape_doc="float [N, T]")
        targets = read_array(f, "targets", 3, shape_doc="float [N, K, T]")
        freqs = read_array(f, "frequencies", 1, shape_doc="float [K]")
        rate = f.attrs.get("sampling_rate")
    n, steps = mixed.shape
    if targets.shape[0] != n or targets.shape[2] != steps or targets.shape[1] != freqs.shape[0]:
        raise DataFileError(
            f"{path}: dataset 'targets' has shape {list(targets.shape)}; expected [N, K, T] = "
            f"[{n}, {freqs.shape[0]}, {steps}] to match 'mixed_signal' {list(mixed.shape)} and 'frequencies'"
        )
    if n < 3 or steps < 2:
        raise DataFileError(f"{path}: needs at least 3 samples of 2 steps (train/val/test); has {n} of {steps}")
    return SignalData(
        mixed.astype(np.float32),
        targets.astype(np.float32),
        freqs.astype(np.float64),
        None if rate is None else float(rate),
    )
