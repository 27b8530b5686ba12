"""Multi-step forecasting: series windows and splits, the encoder-decoder attention net, the forecasting task
through the CLI (CSV with two targets, eval from the checkpoint, TensorBoard figures), and bad input."""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from helpers import TINY_SERIES, build_datamodule, build_net, compose_train, read_metrics, run_cli
from lstmlab.data.series import load_series
from lstmlab.data.series_datamodule import SeriesDataModule
from lstmlab.errors import ConfigError, DataFileError
from lstmlab.nets.seq2seq import Seq2SeqAttention
from lstmlab.schemas import Seq2SeqNetSchema
from lstmlab.tasks.seq2seq_forecast import last_value, seasonal_naive, teacher_forcing_ratio


def write_csv(
    path: Path, steps: int = 100, rows: list[list[str]] | None = None, header: str = "date,load,temp,flag"
) -> Path:
    """Hourly rows: load and temp seasonal, flag a text column."""
    if rows is None:
        start = dt.datetime(2024, 1, 1)
        t = np.arange(steps)
        load = 10 + np.sin(2 * np.pi * t / 6) + 0.01 * t
        temp = 5 + np.cos(2 * np.pi * t / 6) + 0.02 * t
        rows = [[(start + dt.timedelta(hours=int(i))).isoformat(), f"{load[i]:.6f}", f"{temp[i]:.6f}", "x"] for i in t]
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


def datamodule(path: Path, **kwargs) -> SeriesDataModule:
    settings = dict(
        path=str(path),
        data_dir=str(path.parent),
        time_column="date",
        targets=["load"],
        input_len=8,
        horizon=4,
        stride=2,
        season_length=6,
        split_fractions=[0.6, 0.2, 0.2],
    )
    dm = build_datamodule("series", **(settings | kwargs))
    dm.setup("fit")
    return dm


# ---- windows, splits, scaling ---------------------------------------------------------------------------
def test_windows_hold_out_targets_and_reach_back_for_context(tmp_path):
    dm = datamodule(write_csv(tmp_path / "s.csv"), covariates=["temp"])
    assert dm.bounds == [[0, 60, 80, 100]]
    # train: whole windows of 12 inside steps 0..59, targets starting 8, 10, ..., 56; val / test: every window
    # whose 4 targets lie in the segment, anchored at its end (targets 76..79 down to 60..63, stride 2)
    assert {k: len(w) for k, w in dm.splits.items()} == {"train": 25, "val": 9, "test": 9}
    for name, begin, end in (("train", 0, 60), ("val", 60, 80), ("test", 80, 100)):
        first = dm.splits[name].first
        targets = first + 8
        if name == "train":
            assert first.min() >= 0 and (first + 12).max() <= end
        else:
            assert targets.min() == begin and (targets + 4).max() == end, name
    batch = dm.splits["val"][[0, 8]]
    assert batch["x"].shape == (2, 8, 2) and batch["y"].shape == (2, 4, 1)
    raw = load_series(dm.file_path, ["load", "temp"], time_column="date").values[0]
    # the first val window forecasts steps 60..63 (load only) from context 52..59, the end of the train segment
    assert torch.equal(batch["x"][0], torch.from_numpy(raw[52:60]))
    assert torch.equal(batch["y"][0, :, 0], torch.from_numpy(raw[60:64, 0]))
    assert torch.equal(batch["y"][1, :, 0], torch.from_numpy(raw[76:80, 0]))


def test_hold_outs_by_steps_and_by_dates(tmp_path):
    path = write_csv(tmp_path / "s.csv")
    assert datamodule(path, split_fractions=None, test_steps=12, val_steps=8).bounds == [[0, 80, 88, 100]]
    # val_steps left null holds out as many steps as the test
    assert datamodule(path, test_steps=4).bounds == [[0, 92, 96, 100]]
    dates = datamodule(path, split_fractions=None, split_dates=["2024-01-03T10:00:00", "2024-01-04"])
    assert dates.bounds == [[0, 58, 72, 100]]


def test_in_sample_scale_and_train_statistics_ignore_the_test_tail(tmp_path):
    path = write_csv(tmp_path / "s.csv")
    before = datamodule(path)
    lines = path.read_text().splitlines()
    # change every test value (rows of steps 80..99): the MASE scale and the train segments must not move
    changed = [line.replace(",1", ",9") if i > 80 else line for i, line in enumerate(lines)]
    after = datamodule(
        write_csv(tmp_path / "t.csv", header="\n".join(changed[:1]), rows=[row.split(",") for row in changed[1:]])
    )
    assert not torch.equal(before.splits["test"].values, after.splits["test"].values)
    seen = load_series(path, ["load"], time_column="date").values[0][:80, 0].astype(np.float64)
    np.testing.assert_allclose(after.mase_scale, before.mase_scale)
    np.testing.assert_allclose(after.mase_scale, [[np.abs(seen[6:] - seen[:-6]).mean()]], rtol=1e-6)
    np.testing.assert_array_equal(after.train_segments()[0], before.train_segments()[0])


def test_hdf5_series_and_forward_fill(tmp_path):
    values = np.arange(2 * 40 * 3, dtype=np.float32).reshape(2, 40, 3)
    values[1, 5, 2] = np.nan
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("series", data=values)
        f.attrs["column_names"] = ["a", "b", "c"]
    with pytest.raises(
        DataFileError, match=r"1 missing values, the first in column 'c', series 1, step 5.*data.missing=ffill"
    ):
        load_series(path, ["c"], ["a"])
    data = load_series(path, ["c"], ["a"], missing="ffill")
    assert data.columns == ["c", "a"] and np.stack(data.values).shape == (2, 40, 2) and data.ids == ["0", "1"]
    assert data.values[1][5, 0] == values[1, 4, 2]
    dm = build_datamodule(
        "series",
        path=str(path),
        data_dir=str(tmp_path),
        targets=["c"],
        missing="ffill",
        input_len=4,
        horizon=2,
        stride=1,
        season_length=2,
        split_fractions=[0.5, 0.25, 0.25],
    )
    dm.setup("fit")
    assert len(dm.splits["train"]) == 2 * (20 - 6 + 1)  # two series, each cut at the same steps


def test_generated_series_is_deterministic_and_cached(tmp_path):
    params = {
        "n_steps": 300,
        "periods": [24.0, 168.0],
        "amplitudes": [1.0, 0.8],
        "trend": 0.5,
        "noise_std": 0.1,
        "seed": 3,
    }
    dm = build_datamodule("series", data_dir=str(tmp_path), generator=params)
    path = Path(dm.file_path)
    first = hashlib.sha256(path.read_bytes()).hexdigest()
    assert Path(dm.file_path) == path and hashlib.sha256(path.read_bytes()).hexdigest() == first
    with h5py.File(path) as f:
        assert f["series"].shape == (1, 300, 1) and list(f.attrs["column_names"]) == ["value"]
    assert not list(tmp_path.glob("*.tmp-*"))


# ---- the net -------------------------------------------------------------------------------------------
def small_net(**kwargs) -> Seq2SeqAttention:
    torch.manual_seed(0)
    sizes = {"input_size": 3, "output_size": 2, "num_quantiles": 1, "hidden_size": 8, "num_heads": 2}
    return build_net("seq2seq_attention", **(sizes | kwargs))


@pytest.mark.parametrize("bidirectional", [True, False])  # keys of another width than the queries, or the same
def test_attention_over_the_memory_projected_once_equals_multihead_attention(bidirectional):
    # the net projects the encoder outputs to keys and values once per window; every decoder step must attend
    # exactly as nn.MultiheadAttention over the encoder outputs would (its parameters are the ones trained)
    net = small_net(bidirectional=bidirectional, layer_norm=True).eval()
    x, query = torch.randn(4, 10, 3), torch.randn(4, 3, net.hidden_size)
    memory, _ = net.encode(x)
    outputs = net.memory_norm(net.encoder(x)[0])
    expected, expected_weights = net.attention(query, outputs, outputs, need_weights=True, average_attn_weights=False)
    for need_weights in (True, False):
        context, weights = net.attend(query, memory, need_weights)
        torch.testing.assert_close(context, expected)
    torch.testing.assert_close(net.attend(query, memory, True)[1], expected_weights)


def test_attention_weights_shape_and_rows_sum_to_one():
    net = small_net(bidirectional=False, layer_norm=False).eval()
    forecast, weights = net(torch.randn(5, 10, 3), 4, return_attention=True)
    assert forecast.shape == (5, 4, 2) and weights.shape == (5, 4, 2, 10)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 4, 2))


def test_heads_must_divide_the_attention_dimension():
    with pytest.raises(
        ConfigError, match=r"num_heads=3 does not divide the attention dimension model.net.hidden_size=8"
    ):
        small_net(num_heads=3)
    # the composed config is refused before any work, naming the key
    problems = dict(Seq2SeqNetSchema(hidden_size=8, num_heads=3).problems())
    assert problems["num_heads"].startswith("must divide the attention dimension model.net.hidden_size=8, got 3")


def test_autoregressive_decoding_never_reads_the_target():
    net = small_net().eval()
    x, target = torch.randn(4, 10, 3), torch.randn(4, 5, 2)
    alone = net(x, 5)
    for changed in (target, target * 100.0):
        torch.testing.assert_close(net(x, 5, target=changed, teacher_forcing_ratio=1.0), alone, rtol=0, atol=0)
    # training mode with ratio 0 feeds back its own predictions too
    net.train()
    torch.testing.assert_close(net(x, 5, target=target, teacher_forcing_ratio=0.0), alone, rtol=0, atol=0)


def test_teacher_forcing_feeds_the_true_previous_value():
    net = small_net().train()
    x, target = torch.randn(4, 10, 3), torch.randn(4, 5, 2)
    forced = net(x, 5, target=target, teacher_forcing_ratio=1.0)
    changed = target.clone()
    changed[:, 2] += 1.0
    moved = (net(x, 5, target=changed, teacher_forcing_ratio=1.0) - forced).abs().amax(dim=(0, 2))
    assert (moved[:3] == 0).all() and (moved[3:] > 0).all()  # step t reads the truth at t-1 only
    # the parallel fully-forced pass equals stepping the decoder with the truth
    memory, state = net.encode(x)
    inputs = torch.cat([x[:, -1:, :2], target[:, :-1]], dim=1)
    steps = []
    for t in range(5):
        prediction, _, state = net.decode(inputs[:, t : t + 1], memory, state, need_weights=False)
        steps.append(prediction)
    torch.testing.assert_close(torch.cat(steps, dim=1), forced)


def test_teacher_forcing_schedules():
    shipped = dict(compose_train("model=seq2seq_attention", "~experiment").model.teacher_forcing)

    def ratio_at(epoch: int, **changes) -> float:  # model.teacher_forcing as shipped, ``changes`` on top
        return teacher_forcing_ratio(epoch, **(shipped | changes))

    assert ratio_at(3, ratio=0.7, schedule="constant") == 0.7
    assert [ratio_at(e, ratio=1.0, schedule="linear", end_ratio=0.0, decay_steps=4) for e in (0, 2, 4, 9)] == [
        1.0,
        0.5,
        0.0,
        0.0,
    ]
    decay = [ratio_at(e, ratio=1.0, schedule="inverse_sigmoid", k=2.0) for e in range(5)]
    assert decay[0] == pytest.approx(2 / 3) and all(a > b for a, b in zip(decay, decay[1:]))
    with pytest.raises(ConfigError, match="schedule"):
        ratio_at(0, schedule="cosine")


def test_baselines_on_hand_made_history():
    history = torch.arange(8.0).view(1, 8, 1)
    assert seasonal_naive(history, 5, 3)[0, :, 0].tolist() == [5.0, 6.0, 7.0, 5.0, 6.0]
    assert last_value(history, 3)[0, :, 0].tolist() == [7.0, 7.0, 7.0]


# ---- bad input ---------------------------------------------------------------------------------------------
def _rows_with(step: int, column: int, text: str) -> list[list[str]]:
    rows = [[f"{i}", f"{i % 6}", "1", "x"] for i in range(100)]
    rows[step][column] = text
    return rows


BAD_FILES = [
    (
        "misspelled_column",
        dict(targets=["laod"]),
        None,
        r"no column 'laod' \(did you mean 'load'\?\); available columns: \['date', 'load', 'temp', 'flag'\]",
    ),
    ("non_numeric_column", dict(targets=["flag"]), None, r"row 2: column 'flag' holds 'x', not a number"),
    ("duplicated_time", {}, _rows_with(10, 0, "9"), r"duplicated time stamp 9.0 at rows 11 and 12"),
    ("unsorted_time", {}, _rows_with(10, 0, "3"), r"not increasing: row 12 \(3.0\) comes after 9.0; sort the file"),
    ("bad_time", {}, _rows_with(10, 0, "noon"), r"row 12: time stamp 'noon' is neither"),
    ("nan_error_policy", {}, _rows_with(30, 1, "NaN"), r"1 missing values, the first in column 'load'.*CSV row 32"),
    (
        "too_short_for_context_horizon_and_hold_out",
        dict(input_len=60),
        None,
        r"too short: 100 steps, where context \+ horizon \+ hold-out need 60 \+ 4 \+ 40",
    ),
]


@pytest.mark.parametrize("kwargs, rows, message", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_series_input_is_named(tmp_path, kwargs, rows, message):
    with pytest.raises((DataFileError, ConfigError), match=message):
        datamodule(write_csv(tmp_path / "s.csv", rows=rows), **kwargs)


# ---- through the CLI ---------------------------------------------------------------------------------------
# helpers.TINY_SERIES on write_csv's file, with its two target columns
TINY_CSV = [*TINY_SERIES, "data.time_column=date", "data.targets=[load,temp]"]


@pytest.fixture(scope="module")
def series_run(tmp_path_factory):
    """One tiny run on a CSV with two target columns, shared by the read-only checks below."""
    tmp = tmp_path_factory.mktemp("series")
    csv_path = write_csv(tmp / "my.csv", steps=160)
    run = tmp / "run"
    run_cli("lstmlab.train", *TINY_CSV, f"data.path={csv_path}", f"hydra.run.dir={run}", cwd=tmp)
    return run


def test_two_target_csv_trains_and_logs_model_beside_baselines(series_run):
    test = read_metrics(series_run)["test"]
    for suffix in ("", "_seasonal_naive", "_last_value"):
        for metric in ("mae", "rmse", "smape", "mase"):
            assert np.isfinite(test[f"test/{metric}{suffix}"])
        assert {f"test/mase{suffix}_load", f"test/mase{suffix}_temp"} <= set(test)
    # both targets are a 6-step season plus a linear trend: the seasonal naive misses by the same
    # one-season rise on the test windows as on the train segment, so its MASE is 1
    for name in ("load", "temp"):
        assert test[f"test/mase_seasonal_naive_{name}"] == pytest.approx(1.0, abs=1e-3)


def test_checkpoint_alone_rebuilds_the_forecaster(series_run, tmp_path):
    from lstmlab.tasks.seq2seq_forecast import Seq2SeqForecastTask

    task = Seq2SeqForecastTask.load_from_checkpoint(series_run / "checkpoints" / "best.ckpt", map_location="cpu").eval()
    assert task.info["columns"] == ["load", "temp"] and task.hparams.net["input_size"] == 2
    history = torch.full((1, 12, 2), 10.0)
    with torch.no_grad():
        forecast, attention = task(history, return_attention=True)
    assert forecast.shape == (1, 4, 2) and attention.shape == (1, 4, 2, 12)
    proc = run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={series_run / 'checkpoints' / 'best.ckpt'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        "extras.print_config=false",
        cwd=tmp_path,
    )
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    assert evaluated["test/mase"] == pytest.approx(read_metrics(series_run)["test"]["test/mase"], rel=1e-5), (
        proc.stderr[-2000:]
    )


def forecast_predictions(ckpt, path: Path, run_dir: Path, check: bool = True):
    """``lstmlab-eval ckpt_path=<ckpt> predictions=<path>``; the process and the table it wrote (or None)."""
    import pandas as pd

    overrides = [f"ckpt_path={ckpt}", f"predictions={path}", "extras.print_config=false", f"hydra.run.dir={run_dir}"]
    proc = run_cli("lstmlab.evaluate", *overrides, cwd=run_dir.parent, check=check)
    return proc, pd.read_csv(path) if proc.returncode == 0 else None


def test_eval_of_several_forecasters_forecasts_their_median(series_run, tmp_path):
    """``ckpt_path=[a,b]``: a seed ensemble whose forecast is the members' element-wise median (for two, their
    mean); members that forecast another horizon are refused, naming both values."""
    csv_path = series_run.parent / "my.csv"
    other = tmp_path / "seed7"
    run_cli("lstmlab.train", *TINY_CSV, f"data.path={csv_path}", "seed=7", f"hydra.run.dir={other}", cwd=tmp_path)
    ckpts = [series_run / "checkpoints" / "best.ckpt", other / "checkpoints" / "best.ckpt"]
    members = [forecast_predictions(c, tmp_path / f"m{k}.csv", tmp_path / f"eval{k}")[1] for k, c in enumerate(ckpts)]
    _, table = forecast_predictions(f"[{ckpts[0]},{ckpts[1]}]", tmp_path / "ens.csv", tmp_path / "ens")
    assert not np.allclose(members[0]["forecast"], members[1]["forecast"])  # two different models
    median = np.median(np.stack([m["forecast"] for m in members]), axis=0)
    np.testing.assert_allclose(table["forecast"], median, atol=1e-5)
    assert table.drop(columns="forecast").equals(members[0].drop(columns="forecast"))
    evaluated = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert evaluated["checkpoint"] == [str(c) for c in ckpts] and np.isfinite(evaluated["test"]["test/mase"])

    shorter = tmp_path / "h3"
    run_cli(
        "lstmlab.train", *TINY_CSV, f"data.path={csv_path}", "data.horizon=3", f"hydra.run.dir={shorter}", cwd=tmp_path
    )
    proc, _ = forecast_predictions(
        f"[{ckpts[0]},{shorter / 'checkpoints' / 'best.ckpt'}]", tmp_path / "bad.csv", tmp_path / "bad", check=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    line = next(line for line in proc.stderr.splitlines() if "must share them" in line)
    assert "horizon=3" in line and "horizon=4" in line and str(shorter) in line and str(ckpts[0]) in line
    assert not (tmp_path / "bad.csv").exists()


def test_forecast_and_attention_figures_are_in_the_event_files(series_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = set()
    for path in glob.glob(str(series_run / "tensorboard" / "**" / "events.out.tfevents*"), recursive=True):
        events = EventAccumulator(path, size_guidance={"images": 0})
        events.Reload()
        images |= set(events.Tags()["images"])
    assert {"test/forecast", "test/attention"} <= images


def test_cli_bad_input_exits_with_one_clear_line(tmp_path):
    csv_path = write_csv(tmp_path / "my.csv", steps=160)
    before = csv_path.read_bytes()
    proc = run_cli(
        "lstmlab.train",
        *TINY_CSV,
        f"data.path={csv_path}",
        "data.targets=[lod]",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        "no column 'lod' (did you mean 'load'?); available columns: ['date', 'load', 'temp', 'flag']" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert csv_path.read_bytes() == before
