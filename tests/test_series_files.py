"""The series reader on real files: CSV / Parquet wide and long tables, HDF5 rows; the time stamps pandas
parses, the inferred frequency, gaps and missing values, and the rows bad input is named by."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from lstmlab.data.series import load_series
from lstmlab.errors import ConfigError, DataFileError


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def stamped(stamps, values=None) -> list[str]:
    values = range(len(stamps)) if values is None else values
    return [f"{t},{v}" for t, v in zip(stamps, values)]


# ---- time stamps and their frequency ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("stamps", "freq", "first"),
    [
        (["1949-01", "1949-02", "1949-03", "1949-04"], "MS", pd.Timestamp("1949-01-01")),
        (["2020-01-01 00:30", "2020-01-01 01:00", "2020-01-01 01:30"], "30min", pd.Timestamp("2020-01-01 00:30")),
        (["2021-01-03", "2021-01-10", "2021-01-17"], "W-SUN", pd.Timestamp("2021-01-03")),
    ],
    ids=["monthly", "half_hourly", "weekly"],
)
def test_dates_parse_and_their_frequency_is_inferred(tmp_path, stamps, freq, first):
    data = load_series(write(tmp_path / "s.csv", "t,y", stamped(stamps)), ["y"], time_column="t")
    assert data.freq == freq and data.ids == ["0"]
    assert isinstance(data.times[0], pd.DatetimeIndex) and data.times[0][0] == first
    assert data.values[0].dtype == np.float32 and data.values[0][:, 0].tolist() == list(range(len(stamps)))


def test_year_strings_are_yearly_dates_and_year_numbers_stay_numbers(tmp_path):
    years = ["1949", "1950", "1951", "1952"]
    pd.DataFrame({"year": years, "y": [1.0, 2.0, 3.0, 4.0]}).to_parquet(tmp_path / "s.parquet")
    data = load_series(tmp_path / "s.parquet", ["y"], time_column="year")
    assert data.freq == "YS-JAN" and data.times[0][1] == pd.Timestamp("1950-01-01")
    # the same stamps in a CSV are numbers: kept as numbers, no frequency
    data = load_series(write(tmp_path / "s.csv", "year,y", stamped(years)), ["y"], time_column="year")
    assert data.freq is None and data.times[0].dtype == np.float64 and data.times[0][0] == 1949.0


def test_time_zones_are_kept_and_mixed_offsets_become_utc(tmp_path):
    same = ["2020-01-01T00:00:00+01:00", "2020-01-01T01:00:00+01:00", "2020-01-01T02:00:00+01:00"]
    data = load_series(write(tmp_path / "a.csv", "t,y", stamped(same)), ["y"], time_column="t")
    assert str(data.times[0].tz) == "UTC+01:00" and data.freq == "h"
    # a daylight-saving change: the offset moves from +01:00 to +02:00, the hours stay regular
    dst = ["2020-03-29T00:00:00+01:00", "2020-03-29T01:00:00+01:00", "2020-03-29T03:00:00+02:00"]
    data = load_series(write(tmp_path / "b.csv", "t,y", stamped(dst)), ["y"], time_column="t")
    assert str(data.times[0].tz) == "UTC" and data.freq == "h"
    assert data.times[0][2] == pd.Timestamp("2020-03-29T01:00:00Z")


# ---- gaps in the stamps ------------------------------------------------------------------------------
GAP = [f"2024-01-01 {h:02d}:00" for h in (0, 1, 2, 5, 6, 7)]


def test_a_gap_is_named_by_its_first_missing_stamp(tmp_path):
    path = write(tmp_path / "s.csv", "t,y", stamped(GAP))
    with pytest.raises(DataFileError, match=r"2 time stamps missing from the h grid, the first 2024-01-01 03:00:00;.*"):
        load_series(path, ["y"], time_column="t")
    months = pd.date_range("2000-01-01", periods=30, freq="MS").strftime("%Y-%m")
    path = write(tmp_path / "m.csv", "t,y", stamped([m for i, m in enumerate(months) if i != 13]))
    with pytest.raises(DataFileError, match=r"missing from the MS grid, the first 2001-02-01.*data.missing=ffill"):
        load_series(path, ["y"], time_column="t")


@pytest.mark.parametrize(("missing", "filled"), [("ffill", [20.0, 20.0]), ("interpolate", [30.0, 40.0])])
def test_a_gap_is_filled(tmp_path, missing, filled):
    path = write(tmp_path / "s.csv", "t,y", stamped(GAP, [0, 10, 20, 50, 60, 70]))
    data = load_series(path, ["y"], time_column="t", missing=missing)
    assert len(data.times[0]) == 8 and data.times[0][3] == pd.Timestamp("2024-01-01 03:00")
    assert data.values[0][3:5, 0].tolist() == filled and data.values[0][5, 0] == 50.0


def test_interpolation_is_linear_in_time(tmp_path):
    # an empty cell between stamps one and three hours apart: a third of the way
    rows = ["2024-01-01 00:00,0", "2024-01-01 01:00,", "2024-01-01 04:00,12"]
    data = load_series(write(tmp_path / "s.csv", "t,y", rows), ["y"], time_column="t", missing="interpolate", freq="h")
    assert data.values[0][:, 0].tolist() == [0.0, 3.0, 6.0, 9.0, 12.0]


# ---- long tables --------------------------------------------------------------------------------------------
LONG = [
    "A,2020-01-01,1",
    "B,2020-01-01,10",
    "A,2020-01-02,2",
    "B,2020-01-02,20",
    "A,2020-01-03,3",
    "A,2020-01-04,4",
    "B,2020-01-03,30",
]


def test_long_table_gives_one_array_per_series(tmp_path):
    data = load_series(write(tmp_path / "s.csv", "id,t,y", LONG), ["y"], time_column="t", id_column="id")
    assert data.ids == ["A", "B"] and data.freq == "D"
    assert [v[:, 0].tolist() for v in data.values] == [[1, 2, 3, 4], [10, 20, 30]]
    assert [len(t) for t in data.times] == [4, 3] and data.times[1][-1] == pd.Timestamp("2020-01-03")


def test_parquet_reads_as_the_csv(tmp_path):
    pytest.importorskip("pyarrow")
    csv = write(tmp_path / "s.csv", "id,t,y", LONG)
    frame = pd.read_csv(csv)
    frame.to_parquet(tmp_path / "s.parquet")  # t stays text
    frame.assign(t=pd.to_datetime(frame["t"])).to_parquet(tmp_path / "dates.parquet")  # t a datetime column
    expected = load_series(csv, ["y"], time_column="t", id_column="id")
    for name in ("s.parquet", "dates.parquet"):
        data = load_series(tmp_path / name, ["y"], time_column="t", id_column="id")
        assert (data.ids, data.freq, data.columns) == (expected.ids, expected.freq, expected.columns)
        assert all(np.array_equal(a, b) for a, b in zip(data.values, expected.values))
        assert all(a.equals(b) for a, b in zip(data.times, expected.times))


def test_hdf5_rows_are_series(tmp_path):
    values = np.arange(2 * 5 * 2, dtype=np.float32).reshape(2, 5, 2)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("series", data=values)
        f.attrs["column_names"] = ["a", "b"]
    data = load_series(tmp_path / "s.h5", ["b"], ["a"])
    assert data.ids == ["0", "1"] and data.times is None and data.freq is None
    assert np.array_equal(data.values[1], values[1][:, ::-1])
    with pytest.raises(ConfigError, match=r"data.id_column='a' applies to CSV and Parquet files"):
        load_series(tmp_path / "s.h5", ["b"], id_column="a")


# ---- bad input -----------------------------------------------------------------------------------------------
BAD = [
    (
        "duplicate_stamp",
        ["A,2020-01-01,1", "B,2020-01-01,2", "A,2020-01-02,3", "A,2020-01-02,4"],
        {},
        r"column 't', series 'A': duplicated time stamp 2020-01-02 00:00:00 at rows 4 and 5",
    ),
    (
        "decreasing_stamp",
        ["A,2020-01-02,1", "A,2020-01-01,2"],
        {},
        r"series 'A': time stamps are not increasing: row 3 \(2020-01-01 00:00:00\) comes after",
    ),
    ("bad_value", ["A,2020-01-01,1", "A,2020-01-02,abc"], {}, r"s.csv, row 3: column 'y' holds 'abc', not a number"),
    ("bad_stamp", ["A,2020-01-01,1", "A,noon,2"], {}, r"s.csv: column 't', row 3: time stamp 'noon' is neither"),
    (
        "missing_value",
        ["A,2020-01-01,1", "A,2020-01-02,NA", "A,2020-01-03,n/a"],
        {},
        r"2 missing values, the first in column 'y', series 'A', CSV row 3; .*data.missing=ffill",
    ),
    (
        "leading_missing",
        ["A,2020-01-01,1", "B,2020-01-01,", "B,2020-01-02,2"],
        {"missing": "ffill"},
        r"the first step of column 'y' is missing \(series 'B', CSV row 3\)",
    ),
    (
        "two_frequencies",
        ["A,2020-01-01,1", "A,2020-01-02,2", "A,2020-01-03,3", "B,2020-01-01,1", "B,2020-02-01,2", "B,2020-03-01,3"],
        {},
        r"series 'A' has frequency D and series 'B' MS; one file holds one frequency",
    ),
    (
        "off_grid",
        ["A,2020-01-01 00:00,1", "A,2020-01-01 01:00,2", "A,2020-01-01 01:30,3"],
        {"freq": "h"},
        r"series 'A', row 4: time stamp 2020-01-01 01:30:00 is off the h grid",
    ),
    ("misspelled_column", ["A,2020-01-01,1"], {"targets": ["yy"]}, r"no column 'yy' \(did you mean 'y'\?\)"),
]


@pytest.mark.parametrize(("rows", "settings", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_tables_are_named(tmp_path, rows, settings, message):
    settings = {"targets": ["y"], "time_column": "t", "id_column": "id"} | settings
    with pytest.raises(DataFileError, match=message):
        load_series(write(tmp_path / "s.csv", "id,t,y", rows), **settings)
