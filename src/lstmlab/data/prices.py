"""Price history: the seeded synthetic generator, its HDF5 cache, and the OHLCV CSV loader.

HDF5 schema of a generated file (one series of T ticks):
    date    bytes [T]    ISO dates (one tick per calendar day)
    open, high, low, close, volume   float64 [T]
    attrs: seed and generator (JSON), schema_version

CSV files: a header row naming the columns, one row per tick, dates strictly increasing (any date pandas
parses, ISO 8601 with or without a time zone, or plain numbers such as epoch seconds). ``data.columns`` maps the
roles date/open/high/low/close/volume to header names; only date and close are required, volume when a feature
uses it. A configured name is matched exactly, then ignoring case, spaces and underscores; a role left at its
default name also accepts the common spellings in ``HEADER_ALIASES`` (``close``, ``CLOSE``, ``Adj Close``,
``adj_close``, ``timestamp``, ``Datetime`` ...). Where a file has both a close and an adjusted close, the
close the config names wins (``Close`` by default); ``data.columns.close='Adj Close'`` reads the adjusted one.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmlab.data.hdf5 import atomic_h5, cached_file, open_h5, params_hash, read_array
from lstmlab.errors import DataFileError

SCHEMA_VERSION = 1
FIELDS = ("open", "high", "low", "close", "volume")
DEFAULT_COLUMNS = {"date": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}
# other spellings of a role's header, compared lower-case without spaces, underscores or dashes, in order of
# preference; used only for a role whose configured name is its default and is not in the file
HEADER_ALIASES = {
    "date": ("date", "datetime", "timestamp", "time"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close", "adjclose", "adjustedclose"),
    "volume": ("volume", "vol"),
}


@dataclass(frozen=True)
class PriceSeries:
    dates: np.ndarray  # str [T]
    close: np.ndarray  # float64 [T]
    volume: np.ndarray | None  # float64 [T], None when the file has no volume column
    open: np.ndarray | None = None
    high: np.ndarray | None = None
    low: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.close)


def generate_prices(
    n_steps: int = 20_000,
    start_price: float = 100.0,
    regime_mean_length: float = 400.0,
    drift_range: tuple[float, float] = (-0.0008, 0.0008),
    volatility_range: tuple[float, float] = (0.004, 0.012),
    cycle_periods: tuple[float, ...] = (40.0, 110.0),
    cycle_amplitude: float = 0.03,
    base_volume: float = 1e6,
    seed: int = 7,
) -> PriceSeries:
    """A geometric random walk whose drift and volatility switch at random regime changes, plus cycles.

    log close = cumulative sum of (drift + volatility * N(0, 1)) of the current regime + the sum of
    ``cycle_amplitude * sin(2 pi t / period + phase)``; regimes last an exponential number of ticks of mean
    ``regime_mean_length``. Open is the last close with a small gap, high/low bracket open and close, and
    volume is log-normal and grows with the size of the move.
    """
    rng = np.random.default_rng(seed)
    drift = np.empty(n_steps)
    vol = np.empty(n_steps)
    t = 0
    while t < n_steps:
        length = max(1, int(rng.exponential(regime_mean_length)))
        drift[t : t + length] = rng.uniform(*drift_range)
        vol[t : t + length] = rng.uniform(*volatility_range)
        t += length
    steps = np.arange(n_steps)
    cycles = np.zeros(n_steps)
    for period in cycle_periods:
        cycles += cycle_amplitude * np.sin(2.0 * np.pi * steps / period + rng.uniform(0.0, 2.0 * np.pi))
    log_close = np.cumsum(drift + vol * rng.standard_normal(n_steps)) + cycles - cycles[0]
    close = start_price * np.exp(log_close)
    previous = np.concatenate([[start_price], close[:-1]])
    open_ = previous * np.exp(0.2 * vol * rng.standard_normal(n_steps))
    spread = np.abs(rng.standard_normal((2, n_steps))) * vol * 0.5
    high = np.maximum(open_, close) * np.exp(spread[0])
    low = np.minimum(open_, close) * np.exp(-spread[1])
    move = np.abs(np.log(close / previous)) / vol
    volume = np.round(base_volume * np.exp(0.3 * rng.standard_normal(n_steps) + 0.3 * move))
    dates = (np.datetime64("2000-01-01") + steps).astype(str)
    return PriceSeries(dates=dates, close=close, volume=volume, open=open_, high=high, low=low)


# ---- HDF5 cache of generated series ----------------------------------------------------------------
def cached_prices_path(data_dir: str | os.PathLike, params: Mapping) -> Path:
    return Path(data_dir) / f"prices-{params_hash({'schema': SCHEMA_VERSION, **params})}.h5"


def ensure_prices(data_dir: str | os.PathLike, params: Mapping) -> Path:
    """Generate the price file for ``params`` unless a valid one is already cached; return its path."""
    return cached_file(
        cached_prices_path(data_dir, params),
        load_prices_h5,
        lambda path: write_prices_h5(path, generate_prices(**params), params),
    )


def write_prices_h5(path: str | os.PathLike, series: PriceSeries, params: Mapping | None = None) -> None:
    with atomic_h5(path) as f:
        f.create_dataset("date", data=np.asarray(series.dates).astype("S"))
        for name in FIELDS:
            value = getattr(series, name)
            if value is not None:
                f.create_dataset(name, data=np.asarray(value, dtype=np.float64))
        if params is not None:
            f.attrs["seed"] = params.get("seed", -1)
            f.attrs["generator"] = json.dumps(dict(params), sort_keys=True)
        f.attrs["schema_version"] = SCHEMA_VERSION


def load_prices_h5(path: str | os.PathLike, key: str = "data.path") -> PriceSeries:
    with open_h5(path, key) as f:
        close = read_array(f, "close", 1, shape_doc="float [T]")
        columns = {
            name: read_array(f, name, 1, shape_doc="float [T]") for name in FIELDS if name in f and name != "close"
        }
        dates = f["date"][()].astype(str) if "date" in f else np.arange(len(close)).astype(str)
    for name, value in columns.items():
        if value.shape != close.shape:
            raise DataFileError(
                f"{path}: dataset '{name}' has shape {list(value.shape)}; expected [{len(close)}] like 'close'"
            )
    return PriceSeries(
        dates=dates, close=close.astype(np.float64), **{k: v.astype(np.float64) for k, v in columns.items()}
    )


# ---- CSV -------------------------------------------------------------------------------------------
def date_key(text: str) -> float:
    """A sortable number for a date cell: a plain number (epoch seconds, an index), else the instant of a date
    (ISO dates quickly; any other pandas reads, as the series reader does); naive times count as UTC."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        import pandas as pd

        try:
            stamp = pd.Timestamp(text)
        except (ValueError, TypeError, OverflowError):
            stamp = None
        if stamp is None or pd.isna(stamp):
            raise ValueError(
                f"date {text!r} is neither a date pandas parses (2024-01-31, 2024-01-31 15:30) nor a number"
            ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def parse_price(text: str, column: str) -> float:
    """A finite float from a CSV cell; ``ValueError`` naming the column otherwise."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"column {column!r} holds {text!r}, not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"column {column!r} holds {text!r}, not a finite number")
    return value


def _spelling(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _find_header(names: list[str], role: str, name: str | None) -> int | None:
    if not name:
        return None
    if name in names:
        return names.index(name)
    spellings = [_spelling(n) for n in names]
    wanted = [_spelling(name)]
    if name == DEFAULT_COLUMNS.get(role):
        wanted += HEADER_ALIASES.get(role, ())
    return next((spellings.index(w) for w in wanted if w in spellings), None)


def header_positions(
    header: list[str], columns: Mapping[str, str], required: tuple[str, ...], where: str
) -> dict[str, int]:
    """The position of every configured column in ``header`` (see the module docstring for the spellings
    accepted); a clear error for a missing required one."""
    names = [h.strip() for h in header]
    positions = {role: i for role in columns if (i := _find_header(names, role, columns.get(role))) is not None}
    missing = [role for role in required if role not in positions]
    if missing:
        wanted = ", ".join(f"{role}={columns.get(role)!r}" for role in missing)
        hint = (
            "; without volumes, drop the feature: data.features.extras=[returns] model.net.input_size=8"
            if "volume" in missing
            else ""
        )
        raise DataFileError(
            f"{where}: missing column(s) {wanted}; the header has {names}. Rename the columns or map them with "
            f"data.columns.<role>=<header name> (roles: {', '.join(DEFAULT_COLUMNS)}){hint}"
        )
    return positions


def header_names(header: list[str], positions: Mapping[str, int]) -> dict[str, str]:
    """{role: the header name found for it}: what messages about a cell call its column."""
    return {role: header[i].strip() for role, i in positions.items()}


def parse_row(row: list[str], positions: Mapping[str, int], columns: Mapping[str, str]) -> tuple[str, float, dict]:
    """(date text, its sort key, {role: value}) of one CSV row; ``ValueError`` saying what is wrong with it;
    ``columns``: the header names (``header_names``) the messages use."""
    if len(row) <= max(positions.values()):
        raise ValueError(f"has {len(row)} fields; the header names column {max(positions.values()) + 1}")
    stamp = row[positions["date"]].strip()
    values = {role: parse_price(row[i], columns[role]) for role, i in positions.items() if role != "date"}
    if values["close"] <= 0:
        raise ValueError(f"column {columns['close']!r} holds {values['close']}; prices must be > 0")
    return stamp, date_key(stamp), values


def load_price_csv(
    path: str | os.PathLike, columns: Mapping[str, str] | None = None, need_volume: bool = True, key: str = "data.path"
) -> PriceSeries:
    """Read an OHLCV CSV (see the module docstring); every bad cell or unsorted date is an error naming its line."""
    path = Path(path)
    columns = {**DEFAULT_COLUMNS, **(columns or {})}
    if not path.is_file():
        raise DataFileError(f"{key}={path}: file not found; pass an existing CSV file or {key}=null to generate prices")
    required = ("date", "close", "volume") if need_volume else ("date", "close")
    with path.open(newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            raise DataFileError(f"{key}={path}: the file is empty; expected a header row and one row per tick")
        positions = header_positions(header, columns, required, f"{key}={path}")
        found = header_names(header, positions)
        values: dict[str, list[float]] = {role: [] for role in positions if role != "date"}
        dates: list[str] = []
        last_key = -math.inf
        for line, row in enumerate(rows, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            try:
                stamp, order, parsed = parse_row(row, positions, found)
            except ValueError as err:
                raise DataFileError(f"{path} line {line}: {err}; fix or delete that row") from None
            if order <= last_key:
                raise DataFileError(
                    f"{path} line {line}: date {stamp!r} is not after the previous row's {dates[-1]!r}; "
                    "sort the file by date (oldest first) and drop duplicate rows"
                )
            last_key = order
            dates.append(stamp)
            for role, value in parsed.items():
                values[role].append(value)
    if not dates:
        raise DataFileError(f"{key}={path}: no data rows after the header")
    arrays = {role: np.asarray(v, dtype=np.float64) for role, v in values.items()}
    return PriceSeries(dates=np.asarray(dates), **{role: arrays.get(role) for role in FIELDS})


def load_prices(
    path: str | os.PathLike, columns: Mapping[str, str] | None = None, need_volume: bool = True, key: str = "data.path"
) -> PriceSeries:
    """A CSV file, or an HDF5 file of the generated schema (by suffix .h5/.hdf5)."""
    if Path(path).suffix.lower() in (".h5", ".hdf5"):
        series = load_prices_h5(path, key)
        if need_volume and series.volume is None:
            raise DataFileError(
                f"{key}={path}: dataset 'volume' is missing; add it or drop 'volume' from data.features.extras"
            )
        return series
    return load_price_csv(path, columns, need_volume, key)
