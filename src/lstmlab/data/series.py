"""Multivariate time series: the seeded synthetic generator, and the readers of users' tables and HDF5 files.

Tables (CSV ``.csv``/``.txt``, Parquet ``.parquet``/``.pq``), read with pandas:
    wide   one series: a header row, one row per time step, numeric columns chosen by name
           (``data.targets`` then ``data.covariates``) and optionally a time column (``data.time_column``)
    long   many series in one table: ``data.id_column`` names the series of each row; the rows of a series
           need not be contiguous, but within a series the stamps must be strictly increasing in file order
    time column  any date pandas parses (``1949-01``, ``2020-01-01 00:30``, ISO 8601 with a time zone; stamps with
           different UTC offsets are converted to UTC), or plain numbers. Numbers stay numbers (no frequency, no
           gap check): a CSV column of years such as ``1949`` is numeric, write ``1949-01-01`` for yearly dates;
           a Parquet text column is always dates, ``"1949"`` included.
    frequency  ``data.freq`` (a pandas offset alias), else inferred per series with ``pd.infer_freq``, or for
           irregular stamps the step most of them follow; one file holds one frequency. A stamp missing from
           that grid is a gap: an error (``missing=error``) or a row filled like a missing value.
    missing values  empty cells, NA, NaN, null, none, n/a. ``missing=error`` names the first; ``ffill`` carries
           the last value forward; ``interpolate`` is linear in time (in steps without stamps), the last value
           carried past the end. A series that starts with a missing value is an error either way.
    rows   CSV rows are numbered as in a spreadsheet (the header is row 1); Parquet rows from 1.

HDF5 schema (one file, S series of T steps sharing C named columns; no time or id column):
    series   float32 [S, T, C]   NaN marks a missing value (see ``missing``)
    attrs:   column_names  [C] str   the name of each column, as ``data.targets`` / ``data.covariates`` use them
             seed, generator (JSON), schema_version   when generated
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmlab.choices import MISSING_POLICIES
from lstmlab.data.hdf5 import atomic_h5, cached_file, open_h5, params_hash
from lstmlab.errors import ConfigError, DataFileError

SCHEMA_VERSION = 1
MISSING_TOKENS = {"", "na", "nan", "null", "none", "n/a"}
# every upper/lower-case spelling, for the CSV parser that compares them as written
NA_SPELLINGS = sorted(
    {"".join(c) for token in MISSING_TOKENS for c in itertools.product(*[{ch.lower(), ch.upper()} for ch in token])}
)
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class SeriesData:
    values: list[np.ndarray]  # one float32 [T_s, C] per series: targets first, then covariates; no NaN left
    columns: list[str]  # [C]
    num_targets: int
    ids: list[str]  # one per series: the id column's value; HDF5 rows "0", "1", ...; one table series: ["0"]
    times: list | None  # one pandas Index per series (DatetimeIndex or float Index); None without a time column
    freq: str | None  # pandas offset alias of date stamps (data.freq or inferred); None otherwise


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
@dataclass
class _Series:
    """One series while it is read: values [T, C] (NaN = missing), the file row of each step (None for a step
    added to close a gap), and its stamps."""

    id: str
    values: np.ndarray
    rows: np.ndarray
    times: object | None = None


def load_series(
    path: str | os.PathLike,
    targets: Sequence[str],
    covariates: Sequence[str] = (),
    time_column: str | None = None,
    missing: str = "error",
    id_column: str | None = None,
    freq: str | None = None,
) -> SeriesData:
    """Read the chosen columns of a CSV, Parquet or HDF5 file (by its suffix), one array per series, checked,
    gaps and missing values handled by ``missing`` (see the module docstring)."""
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"data.missing={missing!r} must be one of {list(MISSING_POLICIES)}")
    if not targets:
        raise ConfigError("data.targets is empty; name at least one column to forecast, e.g. data.targets=[load]")
    chosen = list(targets) + list(covariates)
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"data.targets + data.covariates name a column twice: {chosen}")
    for key, name in (("data.time_column", time_column), ("data.id_column", id_column)):
        if name is not None and name in chosen:
            raise ConfigError(f"{key}={name!r} is also in data.targets / data.covariates; choose value columns only")
    path = Path(path)
    if path.suffix.lower() in HDF5_SUFFIXES:
        for key, name in (("data.time_column", time_column), ("data.id_column", id_column)):
            if name is not None:
                raise ConfigError(f"{key}={name!r} applies to CSV and Parquet files; {path} is HDF5, set {key}=null")
        series = [_Series(str(s), v, np.full(len(v), None)) for s, v in enumerate(_read_h5(path, chosen))]
        offset = None
    else:
        series, offset = _read_table(path, chosen, time_column, id_column, freq, missing)
    if freq is not None and offset is None:
        raise ConfigError(f"data.freq={freq!r} needs a time column of dates in {path}; set data.freq=null")
    _fill_missing(series, chosen, missing, path)
    return SeriesData(
        values=[s.values.astype(np.float32) for s in series],
        columns=chosen,
        num_targets=len(targets),
        ids=[s.id for s in series],
        times=None if time_column is None else [s.times for s in series],
        freq=None if offset is None else offset.freqstr,
    )


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


def _read_frame(path: Path, text_columns: Sequence[str]):
    """The file as a DataFrame and the row number users see for each of its rows. Missing-value spellings are
    NaN; ``text_columns`` (time, id) stay text, so that ``01`` stays an id and stamps parse below."""
    import pandas as pd

    if not path.is_file():
        raise DataFileError(
            f"data.path={path}: file not found; pass an existing CSV, Parquet or HDF5 file, or data.path=null"
        )
    if path.suffix.lower() in PARQUET_SUFFIXES:
        try:
            frame = pd.read_parquet(path)
        except ImportError:
            raise DataFileError(f"{path}: reading Parquet needs pyarrow: pip install -e '.[formats]'") from None
        except (OSError, ValueError) as err:
            raise DataFileError(f"{path}: not a readable Parquet file ({err})") from None
        frame.columns = [str(c) for c in frame.columns]
        return frame.reset_index(drop=True), np.arange(1, len(frame) + 1)
    try:
        # blank lines are kept, then dropped, so that the row numbers stay those of the file
        frame = pd.read_csv(
            path,
            dtype=dict.fromkeys(text_columns, str),
            keep_default_na=False,
            na_values=NA_SPELLINGS,
            skip_blank_lines=False,
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataFileError(
            f"{path}: not a readable CSV file ({str(err).strip()}); expected a header row and one row per step"
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    blank = frame.isna().all(axis=1).to_numpy()
    rows = np.arange(2, len(frame) + 2)[~blank]
    frame = frame[~blank].reset_index(drop=True)
    if frame.empty:
        raise DataFileError(f"{path}: needs a header row and at least one data row")
    return frame, rows


def _as_text(column):
    """A column as stripped text (pandas NA where empty), and the mask of its missing cells."""
    text = column.astype("string").str.strip()
    empty = text.isna() | text.str.lower().isin(MISSING_TOKENS).fillna(True)
    return text, empty.to_numpy(dtype=bool)


def _numbers(column, name: str, rows: np.ndarray, path: Path) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    text, empty = _as_text(column)
    values = pd.to_numeric(text.where(~empty), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(np.isnan(values) & ~empty)
    if len(bad):
        raise DataFileError(
            f"{path}, row {rows[bad[0]]}: column {name!r} holds {text.iloc[bad[0]]!r}, not a number; "
            "choose numeric columns in data.targets / data.covariates"
        )
    return values


def parse_stamps(column, where: str, rows: Sequence[int] | None = None, text_numbers: bool = True):
    """Time stamps as a pandas Index: a float Index for a numeric column (or, with ``text_numbers``, text that
    is all numbers, as every CSV cell is text), else a DatetimeIndex (time zone kept; different UTC offsets
    converted to UTC). ``DataFileError`` naming the row of a missing stamp or one pandas cannot parse."""
    import pandas as pd

    column = pd.Series(column).reset_index(drop=True)
    rows = np.arange(2, len(column) + 2) if rows is None else np.asarray(rows)
    if pd.api.types.is_datetime64_any_dtype(column):
        if column.isna().any():
            raise DataFileError(f"{where}, row {rows[int(np.flatnonzero(column.isna())[0])]}: the time stamp is empty")
        return pd.DatetimeIndex(column)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(numbers).any():
            first = int(np.flatnonzero(np.isnan(numbers))[0])
            raise DataFileError(f"{where}, row {rows[first]}: the time stamp is empty")
        return pd.Index(numbers, dtype=np.float64)
    values = column.to_numpy(dtype=object)
    empty = np.flatnonzero(np.asarray(column.isna()))
    if len(empty):
        raise DataFileError(f"{where}, row {rows[empty[0]]}: the time stamp is empty")
    numbers = np.full(len(values), np.nan)
    if text_numbers:
        numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    is_number = ~np.isnan(numbers)
    if is_number.all():
        return pd.Index(numbers, dtype=np.float64)
    stamps = None if is_number.any() else _to_datetime(values)
    if stamps is None or stamps.isna().any():
        if is_number.any():
            first, why = int(np.flatnonzero(~is_number)[0]), " while other stamps are numbers (use one format)"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                each = pd.to_datetime(values, format="mixed", errors="coerce", utc=True)
            unparsed = np.flatnonzero(np.asarray(each.isna()))
            first, why = (int(unparsed[0]), "") if len(unparsed) else (0, " in one format with the others")
        raise DataFileError(
            f"{where}, row {rows[first]}: time stamp {values[first]!r} is neither a number nor a date pandas "
            f"parses{why}; write dates such as 2024-01-31, 2024-01-31 15:30 or 2024-01-31T15:30:00+01:00"
        )
    return stamps


def _to_datetime(values: np.ndarray):
    """A DatetimeIndex of date strings, or None where pandas cannot read them all."""
    import pandas as pd

    for options in ({}, {"format": "mixed"}):
        try:
            with warnings.catch_warnings():
                # mixed UTC offsets: pandas warns and returns objects; they are read again in UTC below
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", UserWarning)
                stamps = pd.to_datetime(values, **options)
        except (ValueError, TypeError, OverflowError) as err:
            if "timezone" in str(err).lower():  # pandas 3 refuses mixed UTC offsets: read them in UTC, as pandas 2 does
                return _in_utc(values)
            continue
        if isinstance(stamps, pd.DatetimeIndex):
            return stamps
        return _in_utc(values)
    return None


def _in_utc(values: np.ndarray):
    import pandas as pd

    try:
        return pd.DatetimeIndex(pd.to_datetime(values, format="mixed", utc=True))
    except (ValueError, TypeError, OverflowError):
        return None


def parse_times(texts: Sequence[str], where: str) -> list:
    """Stamps as Python values (floats, or ``pandas.Timestamp``, a ``datetime``), parsed as the readers do."""
    return list(parse_stamps(list(texts), where))


def _read_table(
    path: Path, chosen: list[str], time_column: str | None, id_column: str | None, freq: str | None, missing: str
):
    import pandas as pd

    extra = [c for c in (time_column, id_column) if c is not None]
    frame, rows = _read_frame(path, extra)
    _pick_columns(list(frame.columns), extra + chosen, str(path))
    values = np.stack([_numbers(frame[name], name, rows, path) for name in chosen], axis=1)
    if id_column is None:
        groups = {"0": np.arange(len(frame))}
    else:
        # ids compare stripped; the strip runs on the distinct values only (a long table repeats them). The ""
        # appended last is where an empty cell's code, -1, lands
        raw_codes, raw = pd.factorize(frame[id_column].to_numpy(dtype=object))
        merged, uniques = pd.factorize(np.array([str(u).strip() for u in raw] + [""], dtype=object))
        codes = merged[raw_codes]
        empty = np.flatnonzero(uniques[codes] == "")
        if len(empty):
            raise DataFileError(f"{path}, row {rows[empty[0]]}: column {id_column!r} (data.id_column) is empty")
        # series in order of first appearance; a stable sort keeps each series' rows in file order
        order = np.argsort(codes, kind="stable")
        ends = np.cumsum(np.bincount(codes, minlength=len(uniques)))
        groups = {str(u): at for u, at in zip(uniques, np.split(order, ends[:-1])) if len(at)}
    series = [_Series(key, values[at], rows[at]) for key, at in groups.items()]
    if time_column is None:
        return series, None
    # a Parquet text column holds dates even where they look like numbers (years); CSV cells are all text
    text_numbers = path.suffix.lower() not in PARQUET_SUFFIXES
    stamps = parse_stamps(frame[time_column], f"{path}: column {time_column!r}", rows, text_numbers)
    where = {
        s.id: f"{path}: column {time_column!r}" + ("" if id_column is None else f", series {s.id!r}") for s in series
    }
    for s, at in zip(series, groups.values()):
        s.times = stamps[at]
        _check_increasing(s, where[s.id])
    if not isinstance(stamps, pd.DatetimeIndex):
        return series, None
    offset = _file_offset(series, freq, path)
    if offset is not None:
        for s in series:
            _close_gaps(s, offset, missing, where[s.id])
    return series, offset


def _check_increasing(s: _Series, where: str) -> None:
    times = s.times
    after = np.flatnonzero(np.asarray(times[1:] <= times[:-1]))
    if not len(after):
        return
    k = int(after[0]) + 1
    if times[k] == times[k - 1]:
        raise DataFileError(
            f"{where}: duplicated time stamp {times[k]} at rows {s.rows[k - 1]} and {s.rows[k]}; keep one row per time"
        )
    raise DataFileError(
        f"{where}: time stamps are not increasing: row {s.rows[k]} ({times[k]}) comes after {times[k - 1]}; "
        "sort the file by time"
    )


def _guess_offset(times):
    """The step of stamps ``pd.infer_freq`` calls irregular (gaps, mostly): the frequency most short runs of
    them show (so monthly stamps with a gap stay monthly), else the most common difference."""
    import pandas as pd

    if len(times) < 2:
        return None
    if len(times) >= 3 and (inferred := pd.infer_freq(times)):
        return pd.tseries.frequencies.to_offset(inferred)
    runs = Counter()
    if len(times) >= 5:
        for k in np.unique(np.linspace(0, len(times) - 5, num=min(len(times) - 4, 64)).astype(int)):
            if inferred := pd.infer_freq(times[k : k + 5]):
                runs[inferred] += 1
    if runs:
        return pd.tseries.frequencies.to_offset(runs.most_common(1)[0][0])
    steps = pd.Series(times[1:] - times[:-1])
    return pd.tseries.frequencies.to_offset(steps.mode().iloc[0])


def _file_offset(series: list[_Series], freq: str | None, path: Path):
    import pandas as pd

    if freq is not None:
        try:
            return pd.tseries.frequencies.to_offset(freq)
        except ValueError:
            raise ConfigError(
                f"data.freq={freq!r} is not a pandas offset alias (e.g. MS, W-SUN, D, h, 30min); or data.freq=null"
            ) from None
    found = None
    for s in series:
        offset = _guess_offset(s.times)
        if offset is None:
            continue
        if found is not None and offset != found[1]:
            raise DataFileError(
                f"{path}: series {found[0]!r} has frequency {found[1].freqstr} and series {s.id!r} "
                f"{offset.freqstr}; one file holds one frequency (set data.freq to read them on one grid)"
            )
        found = found or (s.id, offset)
    return None if found is None else found[1]


def _close_gaps(s: _Series, offset, missing: str, where: str) -> None:
    """Check that the stamps lie on ``offset``'s grid from the first to the last; a stamp missing from it is a
    gap, refused (``missing=error``) or added as a row of missing values."""
    import pandas as pd

    times = s.times
    grid = pd.date_range(times[0], times[-1], freq=offset)
    off = np.flatnonzero(~np.asarray(times.isin(grid)))
    if len(off):
        k = int(off[0])
        raise DataFileError(
            f"{where}, row {s.rows[k]}: time stamp {times[k]} is off the {offset.freqstr} grid that starts at "
            f"{times[0]}; fix the stamp or set data.freq to the file's step"
        )
    if len(grid) == len(times):
        return
    gaps = grid[~np.asarray(grid.isin(times))]
    if missing == "error":
        raise DataFileError(
            f"{where}: {len(gaps)} time stamps missing from the {offset.freqstr} grid, the first {gaps[0]}; "
            "add the rows to the file or set data.missing=ffill|interpolate to fill them"
        )
    position = grid.get_indexer(times)
    values = np.full((len(grid), s.values.shape[1]), np.nan)
    values[position] = s.values
    rows = np.full(len(grid), None, dtype=object)
    rows[position] = s.rows
    s.values, s.rows, s.times = values, rows, grid


def _fill_missing(series: list[_Series], names: Sequence[str], missing: str, path: Path) -> None:
    """``error``: refuse any NaN, naming the first; ``ffill``: carry the last value forward; ``interpolate``:
    linear in time (in steps without stamps), trailing values carried forward. Leading NaN: an error for both."""
    import pandas as pd

    # only steps read from the file can hold a missing value here: a gap is refused or filled before
    def where(s: _Series, step: int) -> str:
        if path.suffix.lower() in HDF5_SUFFIXES:
            return f"series {s.id}, step {step}"
        kind = "row" if path.suffix.lower() in PARQUET_SUFFIXES else "CSV row"
        return f"series {s.id!r}, {kind} {s.rows[step]}"

    bad = [np.isnan(s.values) for s in series]
    total = int(sum(b.sum() for b in bad))
    if not total:
        return
    if missing == "error":
        s, b = next((s, b) for s, b in zip(series, bad) if b.any())
        step, column = (int(i[0]) for i in np.nonzero(b))
        raise DataFileError(
            f"{path}: {total} missing values, the first in column {names[column]!r}, {where(s, step)}; fill them in "
            "the file or set data.missing=ffill (carry the last value forward) or data.missing=interpolate"
        )
    for s, b in zip(series, bad):
        if not b.any():
            continue
        if b[0].any():
            raise DataFileError(
                f"{path}: the first step of column {names[int(np.flatnonzero(b[0])[0])]!r} is missing "
                f"({where(s, 0)}), where data.missing={missing} has nothing to start from; drop the leading rows "
                "with missing values"
            )
        frame = pd.DataFrame(s.values)
        if missing == "interpolate":
            if isinstance(s.times, pd.DatetimeIndex):
                frame = frame.set_axis(s.times).interpolate(method="time")
            elif s.times is not None:
                frame = frame.set_axis(s.times).interpolate(method="index")
            else:
                frame = frame.interpolate(method="linear")
        s.values = frame.ffill().to_numpy(dtype=np.float64)
