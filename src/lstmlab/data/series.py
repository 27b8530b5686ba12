"""Multivariate time series: the seeded synthetic generator, and the CSV / HDF5 readers users' files follow.

HDF5 schema (one file, S series of T steps sharing C named columns):
    series   float32 [S, T, C]   NaN marks a missing value (see ``missing``)
    attrs:   column_names  [C] str   the name of each column, as ``data.targets`` / ``data.covariates`` use them
             seed, generator (JSON), schema_version   when generated

CSV schema: a header row; one row per time step; a time column (``data.time_column``: ISO dates/datetimes or
plain numbers, strictly increasing) and numeric columns. Empty cells and NA/NaN/null are missing values.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmlab.choices import MISSING_POLICIES
from lstmlab.data.hdf5 import atomic_h5, cached_file, open_h5, params_hash
from lstmlab.errors import ConfigError, DataFileError

SCHEMA_VERSION = 1
MISSING_TOKENS = {"", "na", "nan", "null", "none", "n/a"}


@dataclass(frozen=True)
class SeriesData:
    values: np.ndarray  # float32 [S, T, C], the chosen columns: targets first, then covariates
    columns: list[str]  # [C]
    num_targets: int
    times: list | None  # [T] parsed time stamps (CSV with a time column), else None


def generate_series(
    n_steps: int = 5000,
    periods: Sequence[float] = (24.0, 168.0),
    amplitudes: Sequence[float] = (1.0, 0.8),
    trend: float = 0.5,
    noise_std: float = 0.1,
    seed: int = 7,
) -> np.ndarray:
    """One series [1, n_steps, 1]: a linear trend rising by ``trend`` over the run, one sinusoid per period
    (a random phase each) and Gaussian noise; the same ``seed`` gives the same values."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps, dtype=np.float64)
    value = trend * t / max(n_steps - 1, 1)
    for period, amplitude in zip(periods, amplitudes):
        value += amplitude * np.sin(2.0 * np.pi * t / period + rng.uniform(0.0, 2.0 * np.pi))
    value += noise_std * rng.standard_normal(n_steps)
    return value.astype(np.float32)[None, :, None]


def ensure_series(data_dir: str | os.PathLike, params: dict) -> Path:
    """The generated file for ``params`` in ``data_dir``, written once (atomically) and reused while readable."""

    def read(path: Path) -> None:
        try:
            with open_h5(path, "data.path") as f:
                steps = f["series"].shape[1]
        except (KeyError, OSError) as err:
            raise DataFileError(f"{path}: {err}") from None
        if steps != params.get("n_steps", 0):
            raise DataFileError(f"{path}: {steps} steps where the generator makes {params.get('n_steps')}")

    def write(path: Path) -> None:
        with atomic_h5(path) as f:
            f.create_dataset("series", data=generate_series(**params))
            f.attrs["column_names"] = ["value"]
            f.attrs["seed"] = params.get("seed", -1)
            f.attrs["generator"] = json.dumps(params, sort_keys=True)
            f.attrs["schema_version"] = SCHEMA_VERSION

    return cached_file(Path(data_dir) / f"series-{params_hash({'schema': SCHEMA_VERSION, **params})}.h5", read, write)


# ---- reading users' files -------------------------------------------------------------------------
def load_series(
    path: str | os.PathLike,
    targets: Sequence[str],
    covariates: Sequence[str] = (),
    time_column: str | None = None,
    missing: str = "error",
) -> SeriesData:
    """Read the chosen columns of a CSV or HDF5 file (by its suffix), checked and with missing values handled."""
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"data.missing={missing!r} must be one of {list(MISSING_POLICIES)}")
    if not targets:
        raise ConfigError("data.targets is empty; name at least one column to forecast, e.g. data.targets=[load]")
    chosen = list(targets) + list(covariates)
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"data.targets + data.covariates name a column twice: {chosen}")
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        if time_column is not None:
            raise ConfigError(
                f"data.time_column={time_column!r} applies to CSV files; {path} is HDF5, set data.time_column=null"
            )
        values, names, times = _read_h5(path, chosen), chosen, None
    else:
        values, names, times = _read_csv(path, chosen, time_column)
    values = _fill_missing(values, names, missing, path)
    return SeriesData(values.astype(np.float32), names, len(targets), times)


def _pick_columns(available: Sequence[str], wanted: Sequence[str], where: str) -> list[int]:
    indices = []
    for name in wanted:
        if name not in available:
            close = difflib.get_close_matches(name, available, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataFileError(f"{where}: no column {name!r}{hint}; available columns: {list(available)}")
        indices.append(list(available).index(name))
    return indices


def _read_h5(path: Path, chosen: Sequence[str]) -> np.ndarray:
    with open_h5(path, "data.path") as f:
        if "series" not in f:
            raise DataFileError(
                f"{path}: dataset 'series' is missing; expected float32 [S, T, C] (see README, 'Series data')"
            )
        series = f["series"]
        if series.ndim != 3 or series.dtype.kind not in "fiu":
            raise DataFileError(
                f"{path}: dataset 'series' has shape {list(series.shape)} and dtype {series.dtype}; "
                "expected float32 [S, T, C]"
            )
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs.get("column_names", [])]
        if len(names) != series.shape[2]:
            raise DataFileError(
                f"{path}: attribute 'column_names' lists {len(names)} names for {series.shape[2]} columns of 'series'; "
                "store one name per column"
            )
        return series[()][:, :, _pick_columns(names, chosen, str(path))].astype(np.float64)


def _parse_time(text: str):
    try:
        return float(text)
    except ValueError:
        return dt.datetime.fromisoformat(text.strip())


def parse_times(texts: Sequence[str], where: str) -> list:
    times = []
    for row, text in enumerate(texts, start=2):
        try:
            times.append(_parse_time(text))
        except ValueError:
            raise DataFileError(
                f"{where}, row {row}: time stamp {text!r} is neither a number nor an ISO date/datetime"
            ) from None
    if len({type(t) for t in times}) > 1:
        raise DataFileError(f"{where}: time stamps mix numbers and dates; use one format")
    return times


def _read_csv(path: Path, chosen: Sequence[str], time_column: str | None) -> tuple[np.ndarray, list[str], list | None]:
    if not path.is_file():
        raise DataFileError(f"data.path={path}: file not found; pass an existing CSV or HDF5 file, or data.path=null")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        raise DataFileError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    wanted = ([time_column] if time_column is not None else []) + list(chosen)
    indices = _pick_columns(header, wanted, str(path))
    times = None
    if time_column is not None:
        times = parse_times(
            [r[indices[0]] if indices[0] < len(r) else "" for r in body], f"{path}: column {time_column!r}"
        )
        check_increasing(times, f"{path}: column {time_column!r}")
        indices = indices[1:]
    values = np.empty((len(body), len(chosen)), np.float64)
    for i, r in enumerate(body):
        for j, (col, name) in enumerate(zip(indices, chosen)):
            cell = r[col].strip() if col < len(r) else ""
            if cell.lower() in MISSING_TOKENS:
                values[i, j] = np.nan
                continue
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise DataFileError(
                    f"{path}, row {i + 2}: column {name!r} holds {cell!r}, not a number; "
                    "choose numeric columns in data.targets / data.covariates"
                ) from None
    return values[None], list(chosen), times


def check_increasing(times: Sequence, where: str) -> None:
    for row in range(1, len(times)):
        if times[row] == times[row - 1]:
            raise DataFileError(
                f"{where}: duplicated time stamp {times[row]} at rows {row + 1} and {row + 2}; keep one row per time"
            )
        if times[row] < times[row - 1]:
            raise DataFileError(
                f"{where}: time stamps are not increasing: row {row + 2} ({times[row]}) comes after {times[row - 1]}; "
                "sort the file by time"
            )


def _fill_missing(values: np.ndarray, names: Sequence[str], missing: str, path: Path) -> np.ndarray:
    """``error``: refuse any NaN, naming the column and the first step; ``ffill``: carry the last value forward."""
    bad = np.isnan(values)
    if not bad.any():
        return values
    series, step, column = (int(i[0]) for i in np.nonzero(bad))
    first = f"column {names[column]!r}, series {series}, step {step} (CSV row {step + 2})"
    if missing == "error":
        raise DataFileError(
            f"{path}: {int(bad.sum())} missing values, the first in {first}; fill them in the file "
            "or set data.missing=ffill to carry the last value forward"
        )
    if bad[:, 0, :].any():
        raise DataFileError(
            f"{path}: the first step is missing (column {names[int(np.nonzero(bad[:, 0, :])[1][0])]!r}), where "
            "data.missing=ffill has nothing to carry forward; drop the leading rows with missing values"
        )
    filled = values.copy()
    for t in range(1, filled.shape[1]):
        gap = np.isnan(filled[:, t])
        filled[:, t][gap] = filled[:, t - 1][gap]
    return filled
