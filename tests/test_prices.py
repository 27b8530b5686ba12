"""Price windows, features, the price_forecast experiment and lstmlab-stream, end to end on real CSV files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import TINY_PRICES, build_datamodule, read_metrics, run_cli
from lstmlab.data.price_features import FeatureBuffer, FeatureSettings, series_features, window_features
from lstmlab.data.prices import generate_prices, load_price_csv
from lstmlab.errors import ConfigError, DataFileError
from lstmlab.streaming import Tick, csv_ticks, load_task, stream_predictions

HEADER = ["Date", "Open", "High", "Low", "Close", "Volume"]


def write_csv(path: Path, n_steps: int = 300, seed: int = 3, extra_lines: dict[int, str] | None = None) -> Path:
    """A generated OHLCV series as CSV (floats written exactly); ``extra_lines``: raw lines inserted after row i."""
    s = generate_prices(n_steps=n_steps, seed=seed)
    lines = [",".join(HEADER)]
    for i in range(n_steps):
        values = [repr(float(getattr(s, k)[i])) for k in ("open", "high", "low", "close", "volume")]
        lines.append(",".join([str(s.dates[i]), *values]))
        if extra_lines and i in extra_lines:
            lines.append(extra_lines[i])
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- features -----------------------------------------------------------------------------------
def test_trend_and_fft_features_of_a_line_by_hand():
    close = np.arange(1.0, 9.0)  # 1..8
    s = FeatureSettings(buffer_size=8, step_size=2, ma_window=3, extras=(), price_scale="none")
    # moving average of 3: 2, 3, ..., 7; its slope is 1 everywhere (std 0)
    # rfft of n+1 (n = 0..7): |X_0| = 36, |X_k| = 4 / sin(pi k / 8) for k = 1..4; the largest is k = 1
    mags = [36.0] + [4.0 / math.sin(math.pi * k / 8) for k in (1, 2, 3, 4)]
    expected = [7.0, 1.0, 0.0, 1.0, mags[1], sum(mags) / 5]
    np.testing.assert_allclose(window_features(close, None, s), expected, rtol=1e-12, atol=1e-12)


def test_features_of_a_cycle_with_extras_by_hand():
    close = 10.0 + np.array([1.0, 0.0, -1.0, 0.0, 1.0, 0.0, -1.0, 0.0])  # cos(2 pi 2 n / 8): frequency index 2
    volume = np.array([1.0, 2, 3, 4, 5, 6, 7, 9])
    s = FeatureSettings(buffer_size=8, step_size=2, ma_window=2, extras=("returns", "volume"), price_scale="last_close")
    # moving average of 2: 10.5 9.5 9.5 10.5 10.5 9.5 9.5; np.gradient: one-sided at the ends, central inside
    slopes = np.array([-1.0, -0.5, 0.5, 0.5, -0.5, -0.5, 0.0])
    # rfft: |X_0| = 80, |X_2| = 4, the others 0; price-valued features divided by the last close (10)
    log_returns = np.log(close[1:] / close[:-1])
    expected = [
        9.5 / 10 - 1,
        0.0,
        slopes.std() / 10,
        2,
        4 / 10,
        (80 + 4) / 5 / 10,
        math.log(10 / 10),
        log_returns.std(),
        math.log1p((7 + 9) / 2),
    ]  # close 2 ticks back is 10 too
    np.testing.assert_allclose(window_features(close, volume, s), expected, rtol=1e-12, atol=1e-12)


def test_offline_features_equal_streamed_features_bit_for_bit(tmp_path):
    path = write_csv(tmp_path / "ticks.csv", n_steps=260)
    s = FeatureSettings(buffer_size=40, step_size=3, ma_window=7)
    series = load_price_csv(path)
    offline, ends = series_features(series.close, series.volume, s)
    buffer = FeatureBuffer(s)
    with path.open(newline="") as f:
        ticks = list(csv_ticks(f, {"date": "Date", "close": "Close", "volume": "Volume"}, True, "ticks.csv"))
    streamed = [(i, out) for i, t in enumerate(ticks) if (out := buffer.push(t.close, t.volume)) is not None]
    assert [i for i, _ in streamed] == list(ends)
    assert np.array_equal(np.stack([f for _, f in streamed]), offline)


@pytest.mark.parametrize("target", ["return", "direction"])
def test_targets_and_baselines_on_the_same_windows(tmp_path, target):
    dm = build_datamodule(
        "prices",
        data_dir=str(tmp_path),
        generator={"n_steps": 800},
        target=target,
        seq_len=4,
        features={"buffer_size": 32, "step_size": 4, "ma_window": 5},
    )
    dm.prepare_data()
    dm.setup()
    close = dm.series.close
    test = dm.splits["test"].tensors
    tick = test["tick"].numpy()
    future, now = close[tick + dm.hparams.horizon], close[tick]
    assert np.array_equal(test["actual_up"].numpy(), future > now)
    if target == "return":
        np.testing.assert_allclose(test["actual"].numpy(), future / now - 1)
        np.testing.assert_allclose(test["persistence"].numpy(), now / close[tick - dm.hparams.horizon] - 1)
    else:
        assert set(np.unique(test["actual"].numpy())) <= {0.0, 1.0}
    # time order: every training example ends before every test example
    assert dm.splits["train"].tensors["tick"].max() < tick.min()


# ---- the experiment through the CLI, and streaming ----------------------------------------------
@pytest.fixture(scope="session")
def price_run(tmp_path_factory):
    """One tiny price_forecast run shared by the read-only tests below."""
    tmp = tmp_path_factory.mktemp("prices")
    run = tmp / "run"
    run_cli("lstmlab.train", *TINY_PRICES, f"hydra.run.dir={run}", cwd=tmp)
    return run


def test_experiment_logs_model_and_baselines_and_the_figure(price_run):
    test = read_metrics(price_run)["test"]
    for forecaster in ("", "persistence_", "moving_average_"):
        for metric in ("mse", "mae", "direction_acc"):
            assert f"test/{forecaster}{metric}" in test
    assert 0.0 <= test["test/direction_acc"] <= 1.0 and test["test/mse"] > 0
    images = set()
    for f in (price_run / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f), size_guidance={"images": 0})
        acc.Reload()
        images |= set(acc.Tags()["images"])
    assert "test/forecast" in images


def test_checkpoint_carries_the_feature_settings_and_normalisation(price_run):
    task = load_task(price_run / "checkpoints" / "best.ckpt")
    p = task.pipeline
    assert p.features == FeatureSettings(buffer_size=32, step_size=4, ma_window=5)
    assert (p.seq_len, p.horizon, p.target) == (4, 4, "close")
    assert p.feature_mean.shape == p.feature_std.shape == (9,) and (p.feature_std > 0).all()


def _expected_predictions(valid_ticks: int, p) -> int:
    first = p.features.buffer_size + (p.seq_len - 1) * p.features.step_size
    return 0 if valid_ticks < first else 1 + (valid_ticks - first) // p.features.step_size


def test_stream_over_a_csv_skips_bad_ticks_and_matches_the_python_api(price_run, tmp_path):
    bad = {10: "2000-01-11,1,1,1,not-a-price,5", 20: "", 30: "1999-01-01,1,1,1,100,5", 40: "2000-02-10,1,1,1"}
    path = write_csv(tmp_path / "live.csv", n_steps=120, seed=5, extra_lines=bad)
    ckpt = price_run / "checkpoints" / "best.ckpt"
    proc = run_cli("lstmlab.stream", f"ckpt_path={ckpt}", f"source={path}", cwd=tmp_path)
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 4 and "not-a-price" in warnings[0] and "not after the previous" in warnings[2]
    task = load_task(ckpt)
    assert len(records) == _expected_predictions(120, task.pipeline) > 0
    s = generate_prices(n_steps=120, seed=5)
    expected = list(stream_predictions(zip(s.dates, s.close, s.volume), task))
    assert [r["tick"] for r in records] == [r["tick"] for r in expected]
    assert [r["prediction"] for r in records] == pytest.approx([r["prediction"] for r in expected], rel=1e-6)
    assert all(r["target"] == "close" and r["horizon"] == 4 and isinstance(r["rise"], bool) for r in records)
    assert not (tmp_path / "outputs").exists()  # streaming writes nothing to disk


def test_stream_over_stdin_emits_the_offline_features(price_run, tmp_path):
    path = write_csv(tmp_path / "live.csv", n_steps=90, seed=8)
    ckpt = price_run / "checkpoints" / "best.ckpt"
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "lstmlab.stream", f"ckpt_path={ckpt}", "source=-", "emit_features=true"],
        input=path.read_text(),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    series = load_price_csv(path)
    offline, ends = series_features(series.close, series.volume, load_task(ckpt).pipeline.features)
    assert [r["tick"] - 1 for r in records] == list(ends)
    assert np.array_equal(np.array([r["features"] for r in records]), offline)
    assert sum("prediction" in r for r in records) == len(records) - 3  # seq_len 4: the first 3 windows fill it


def test_stream_accepts_a_python_iterator_of_numbers_and_tuples(price_run):
    task = load_task(price_run / "checkpoints" / "best.ckpt")
    s = generate_prices(n_steps=80, seed=1)
    as_tuples = list(stream_predictions(zip(s.dates, s.close, s.volume), task))
    as_ticks = list(stream_predictions((Tick(c, v, d) for d, c, v in zip(s.dates, s.close, s.volume)), task))
    assert as_tuples == as_ticks and len(as_tuples) == _expected_predictions(80, task.pipeline)


def test_stateful_model_streams_with_step_as_it_reads_the_series_offline(tmp_path):
    """experiment=price_forecast_stateful through the CLI; its stream carries (h, c) with step(), one forecast
    per window from the first, equal to one forward of the net over the same windows."""
    run = tmp_path / "run"
    run_cli(
        "lstmlab.train",
        *TINY_PRICES,
        "experiment=price_forecast_stateful",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert {"test/mse", "test/persistence_mse", "test/direction_acc"} <= set(read_metrics(run)["test"])
    task = load_task(run / "checkpoints" / "best.ckpt")
    p = task.pipeline
    assert p.stateful and type(task.net).__name__ == "StatefulLSTM"
    s = generate_prices(n_steps=100, seed=4)
    streamed = list(stream_predictions(zip(s.dates, s.close, s.volume), task))
    features, ends = series_features(s.close, s.volume, p.features)
    assert [r["tick"] - 1 for r in streamed] == list(ends)
    with torch.no_grad():
        raw = task(torch.from_numpy(p.normalise(features)).unsqueeze(0))
    offline = p.output(raw.double(), torch.from_numpy(s.close[ends]))
    assert [r["prediction"] for r in streamed] == pytest.approx(offline.tolist(), rel=1e-5)


# ---- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["Date,Open,Price,Volume", "2000-01-01,1,2,3"], "missing column(s) close='Close'"),
        (
            ["Date,Close,Volume", "2000-01-01,1.5,10", "2000-01-02,n/a,10"],
            "line 3: column 'Close' holds 'n/a', not a number",
        ),
        (["Date,Close,Volume", "2000-01-02,1.5,10", "2000-01-01,1.6,10"], "line 3: date '2000-01-01' is not after"),
        (["Date,Close,Volume", "2000-01-01,-1.5,10"], "line 2: column 'Close' holds -1.5; prices must be > 0"),
    ],
    ids=["missing_column", "non_numeric", "unsorted", "negative"],
)
def test_bad_csv_files_are_refused_naming_the_line(tmp_path, lines, message):
    path = tmp_path / "prices.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=None) as err:
        load_price_csv(path)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("header", "close"),
    [
        ("date,open,high,low,close,volume", "close"),
        ("Datetime,OPEN,HIGH,LOW,CLOSE,VOLUME", "close"),
        ("timestamp,Open,High,Low,Adj Close,Volume", "adjusted"),
        ("Date,Open,High,Low,Close,Adj Close,Volume", "close"),  # both: the configured Close wins
    ],
    ids=["lowercase", "uppercase", "adj_close_only", "close_and_adj_close"],
)
def test_common_header_spellings_load_without_column_overrides(tmp_path, header, close):
    rows = ["2000-01-03,10,12,9,11,100", "2000-01-04,11,13,10,12,200"]
    if "Adj Close" in header and close == "close":
        rows = [r.replace(",100", ",5.5,100").replace(",200", ",6,200") for r in rows]
    elif close == "adjusted":
        rows = [r.replace(",11,100", ",5.5,100").replace(",12,200", ",6,200") for r in rows]
    path = tmp_path / "p.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    series = load_price_csv(path)
    expected = [5.5, 6.0] if close == "adjusted" else [11.0, 12.0]
    assert series.close.tolist() == expected and series.volume.tolist() == [100.0, 200.0]
    assert series.open.tolist() == [10.0, 11.0] and list(series.dates) == ["2000-01-03", "2000-01-04"]
    # an explicit name still wins over the spellings
    if "Adj Close" in header and close == "close":
        assert load_price_csv(path, {"close": "Adj Close"}).close.tolist() == [5.5, 6.0]


def test_price_dates_in_the_formats_pandas_parses(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("Date,Close,Volume\n2000/01/03,1.5,10\n2000/01/04 09:30,1.6,10\n2000-01-04T11:00:00+01:00,1.7,10\n")
    assert load_price_csv(path).close.tolist() == [1.5, 1.6, 1.7]
    path.write_text("Date,Close,Volume\n2000/01/03,1.5,10\n2000/01/03 00:00,1.6,10\n")
    with pytest.raises(DataFileError, match="line 3: date '2000/01/03 00:00' is not after"):
        load_price_csv(path)


def test_buffer_shorter_than_the_feature_window_is_refused():
    with pytest.raises(
        ConfigError, match="data.features.buffer_size must be longer than the feature window ma_window=10 .*got 8"
    ):
        FeatureSettings(buffer_size=8, ma_window=10)


@pytest.mark.parametrize(
    ("module", "overrides", "message"),
    [
        (
            "lstmlab.train",
            ["data.path={csv}"],
            "line 3: date '2000-01-01' is not after the previous row's '2000-01-02'",
        ),
        (
            "lstmlab.stream",
            ["ckpt_path={ckpt}", "source={csv}", "features.buffer_size=64"],
            "features.buffer_size=64 but the checkpoint",
        ),
    ],
    ids=["train_unsorted_csv", "stream_features_differ"],
)
def test_bad_input_through_the_cli(price_run, tmp_path, module, overrides, message):
    csv_path = tmp_path / "user.csv"
    csv_path.write_text("Date,Close,Volume\n2000-01-02,1.5,10\n2000-01-01,1.6,10\n")
    before = csv_path.read_bytes()
    ckpt = price_run / "checkpoints" / "best.ckpt"
    extra = TINY_PRICES if module == "lstmlab.train" else []
    args = [o.format(csv=csv_path, ckpt=ckpt) for o in overrides]
    proc = run_cli(module, *extra, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert csv_path.read_bytes() == before
    assert not (tmp_path / "run" / "checkpoints").exists()
