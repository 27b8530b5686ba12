"""Forecasting as forecasters do it: scaling that follows the level, quantiles, many series in one table,
short series, and a rolling-origin backtest that never reads the future of its origins."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY_SERIES, build_datamodule, read_metrics, run_cli
from lstmlab.errors import ConfigError
from lstmlab.tasks.forecast_scaling import WindowScaler


# ---- scaling --------------------------------------------------------------------------------------------
def scaler(**options) -> WindowScaler:
    settings = dict(scaler="instance", affine=False, log_transform=False, difference=False) | options
    scaling = WindowScaler(3, 2, **settings)
    if settings["affine"]:  # a learnt affine, not the identity it starts as
        with torch.no_grad():
            scaling.weight.copy_(torch.tensor([1.5, 0.7, 2.0]))
            scaling.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    return scaling


OPTIONS = [
    {},
    {"log_transform": True},
    {"difference": True},
    {"affine": True},
    {"log_transform": True, "difference": True, "affine": True},
    {"scaler": "train"},
    {"base": "seasonal_naive", "season_length": 4, "affine": True},
]


each_option = pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: "+".join(f"{k}={v}" for k, v in o.items()) or "instance"
)


def scaled_batch(options: dict):
    """A scaler with ``options`` (fitted on two series for scaler=train), raw contexts x [4, 10, 3], targets
    y [4, 6, 2], the windows' series and their ``WindowStats``."""
    torch.manual_seed(0)
    scaling = scaler(**options)
    x, y = 5 + torch.rand(4, 10, 3) * 50, 5 + torch.rand(4, 6, 2) * 50
    scaling.fit_series([np.asarray(x[0]), np.asarray(x[1])])
    series = torch.tensor([0, 1, 1, 0])
    return scaling, x, y, series, scaling.encode(x, series)[1]


@each_option
def test_what_the_net_is_trained_on_inverts_to_the_raw_targets(options):
    scaling, _, y, _, stats = scaled_batch(options)
    target = scaling.encode_target(y, stats)
    torch.testing.assert_close(scaling.decode(target, stats), y, rtol=1e-4, atol=1e-3)
    # quantile forecasts [B, H, K, Q] invert level by level
    quantiles = torch.stack([target - 0.1, target, target + 0.1], dim=-1)
    torch.testing.assert_close(scaling.decode(quantiles, stats)[..., 1], y, rtol=1e-4, atol=1e-3)


@each_option
def test_the_loss_is_measured_without_the_learnable_affine(options):
    scaling, x, y, series, stats = scaled_batch(options)
    # the output that decodes to the truth is exactly the loss's target
    torch.testing.assert_close(scaling.loss_space(scaling.encode_target(y, stats)), scaling.loss_target(y, stats))
    if scaling.weight is None:
        return
    # a net that forecasts nothing (the context's mean, no change, or the base forecast as it is) must not get a
    # smaller loss by shrinking the learnable scale: with the loss on targets that pass through the affine,
    # training drove the scale towards 0 and the unscaled forecasts to millions (validation MASE up to 3,800)
    shifted = options.get("difference") or options.get("base") == "seasonal_naive"
    losses = []
    for weight in (1.0, 0.01):
        with torch.no_grad():
            scaling.weight.fill_(weight)
        _, stats = scaling.encode(x, series)
        nothing = torch.zeros(4, 6, 2) if shifted else scaling.bias[:2].expand(4, 6, 2)
        losses.append((scaling.loss_space(nothing) - scaling.loss_target(y, stats)).abs().mean())
    torch.testing.assert_close(losses[0], losses[1])


def test_instance_scaling_follows_the_level_past_anything_seen_in_training():
    """A window 1,000 units higher than any in training reaches the net as the same input, and its forecast
    comes back 1,000 units higher: the level never leaves the range the net has learnt."""
    scaling = scaler()
    x = torch.rand(2, 10, 3)
    shifted = x + 1000.0
    net_input, stats = scaling.encode(x)
    shifted_input, shifted_stats = scaling.encode(shifted)
    torch.testing.assert_close(shifted_input, net_input, atol=2e-3, rtol=0)
    out = torch.randn(2, 6, 2)
    torch.testing.assert_close(scaling.decode(out, shifted_stats), scaling.decode(out, stats) + 1000.0)


def test_a_constant_context_is_forecast_at_its_level(caplog):
    scaling = scaler()
    x = torch.full((1, 10, 3), 42.0)
    net_input, stats = scaling.encode(x)
    assert torch.isfinite(net_input).all() and net_input.abs().max() == 0
    forecast = scaling.decode(torch.randn(1, 6, 2).clamp(-3, 3), stats)
    torch.testing.assert_close(forecast, torch.full_like(forecast, 42.0), atol=0.2, rtol=0)
    assert "constant" in caplog.text


# ---- many series in one table ---------------------------------------------------------------------------
def long_table(path: Path, lengths: dict[str, int]) -> Path:
    """A long table: one monthly series per id, each a 12-month season on its own level and trend."""
    rows = ["id,date,value"]
    for number, (name, steps) in enumerate(lengths.items()):
        stamps = np.arange("2000-01", "2100-01", dtype="datetime64[M]")[:steps]
        t = np.arange(steps)
        values = 100 * (number + 1) + 0.5 * t + 10 * np.sin(2 * np.pi * t / 12)
        rows += [f"{name},{stamp},{value:.4f}" for stamp, value in zip(stamps, values)]
    path.write_text("\n".join(rows) + "\n")
    return path


def series_datamodule(path: Path, **kwargs):
    settings = dict(
        path=str(path),
        data_dir=str(path.parent),
        time_column="date",
        id_column="id",
        input_len=24,
        horizon=6,
        season_length=12,
        split_fractions=None,
        test_steps=6,
        val_steps=6,
    )
    dm = build_datamodule("series", **(settings | kwargs))
    dm.setup("fit")
    return dm


def test_without_input_len_the_context_is_a_multiple_of_the_longer_of_horizon_and_season(tmp_path):
    table = long_table(tmp_path / "t.csv", {"a": 80, "b": 60})
    for multiple in (1, 2, 3):
        dm = series_datamodule(table, input_len=None, context_multiple=multiple)
        test = dm.splits["test"][list(range(len(dm.splits["test"])))]
        # season 12 > horizon 6: each test window reads the 12 * multiple steps before its last 6
        assert test["x"].shape == (2, 12 * multiple, 1)
        torch.testing.assert_close(test["x"][1, :, 0], dm._values[80 + 60 - 6 - 12 * multiple : 80 + 54, 0])


def test_every_series_holds_out_its_own_tail(tmp_path):
    dm = series_datamodule(long_table(tmp_path / "t.csv", {"a": 80, "b": 50}))
    assert dm.series_ids == ["a", "b"] and dm.bounds == [[0, 68, 74, 80], [0, 38, 44, 50]]
    test = dm.splits["test"][list(range(len(dm.splits["test"])))]
    # one test window per series, forecasting its last 6 months from the 24 before
    assert test["series"].tolist() == [0, 1] and test["x"].shape == (2, 24, 1)
    raw = dm._values[:, 0]
    torch.testing.assert_close(test["y"][1, :, 0], raw[80 + 44 : 80 + 50])
    # each series' MASE scale is its own in-sample seasonal error (trend 0.5 a month -> 6 a season)
    np.testing.assert_allclose(dm.mase_scale[:, 0], [6.0, 6.0], rtol=1e-3)


def test_a_short_series_is_named_then_skipped_or_refused(tmp_path, caplog):
    path = long_table(tmp_path / "t.csv", {"a": 80, "tiny": 30})
    with pytest.raises(ConfigError, match=r"series 'tiny' of .*t.csv is too short: 30 steps, where context \+ horizon"):
        series_datamodule(path)
    dm = series_datamodule(path, short_series="skip")
    assert dm.series_ids == ["a"] and "series 'tiny'" in caplog.text and "skipped" in caplog.text


# ---- through the CLI: a global quantile model on a long table, its backtest and its evaluation --------------
@pytest.fixture(scope="module")
def quantile_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forecasting")
    table = long_table(tmp / "table.csv", {"a": 96, "b": 72, "tiny": 20})
    run = tmp / "run"
    overrides = [
        *TINY_SERIES,
        f"data.path={table}",
        "data.time_column=date",
        "data.id_column=id",
        "data.short_series=skip",
        "data.horizon=6",
        "data.season_length=12",
        "data.split_fractions=null",
        "data.test_steps=6",
        "data.val_steps=6",
        "model.loss=quantile",
        "backtest.origins=3",
        "backtest.step=2",
    ]
    proc = run_cli("lstmlab.train", *overrides, f"hydra.run.dir={run}", cwd=tmp)
    return run, table, proc


def test_quantile_run_logs_intervals_and_a_backtest_per_origin(quantile_run):
    run, _, proc = quantile_run
    metrics = read_metrics(run)
    test, backtest = metrics["test"], metrics["backtest"]
    assert 0.0 <= test["test/coverage"] <= 1.0 and test["test/pinball"] > 0
    assert {"test/mase", "test/mase_seasonal_naive"} <= set(test)
    origins = [backtest[f"backtest/mase_origin_{i}"] for i in range(3)]
    # the same number of windows at each origin: the backtest's MASE is the mean of the origins'
    assert backtest["backtest/mase"] == pytest.approx(np.mean(origins), rel=1e-5)
    assert "series 'tiny'" in proc.stdout + proc.stderr


def test_fan_chart_and_backtest_scalars_are_in_the_event_files(quantile_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images, scalars = set(), set()
    for path in glob.glob(str(quantile_run[0] / "tensorboard" / "**" / "events.out.tfevents*"), recursive=True):
        events = EventAccumulator(path, size_guidance={"images": 0, "scalars": 0})
        events.Reload()
        images |= set(events.Tags()["images"])
        scalars |= set(events.Tags()["scalars"])
    assert "test/forecast" in images
    assert {"~backtest/mase_origin_0", "~backtest/mase_origin_2", "~test/coverage"} <= scalars


def test_backtest_forecasts_never_read_the_future_of_their_origin(quantile_run, tmp_path):
    """Changing every value from an origin on changes no forecast made at that origin (nor earlier)."""
    from lstmlab.tasks.seq2seq_forecast import Seq2SeqForecastTask

    run, table, _ = quantile_run
    task = Seq2SeqForecastTask.load_from_checkpoint(run / "checkpoints" / "best.ckpt", map_location="cpu").eval()
    lines = table.read_text().splitlines()
    series_a = [i for i, line in enumerate(lines) if line.startswith("a,")]
    origin_step = 96 - 6 - 2  # series a, latest origin 90, the one before at 88
    changed = list(lines)
    for i in series_a[origin_step:]:
        name, stamp, _ = lines[i].split(",")
        changed[i] = f"{name},{stamp},{1e4}"
    altered = tmp_path / "altered.csv"
    altered.write_text("\n".join(changed) + "\n")

    def forecasts(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        dm = series_datamodule(path, input_len=task.info["input_len"], short_series="skip")
        dm.set_backtest(3, 2)
        test = dm.splits["test"]
        batch = test[list(range(len(test)))]
        with torch.no_grad():
            return batch["origin"][batch["series"] == 0], task(batch["x"], batch["series"])[batch["series"] == 0]

    origins, before = forecasts(table)
    _, after = forecasts(altered)
    made_before = origins < 2  # origins 0 and 1 forecast from steps 86 and 88, before the change
    assert made_before.sum() == 2
    torch.testing.assert_close(after[made_before], before[made_before], rtol=0, atol=0)
    assert not torch.equal(after[~made_before], before[~made_before])  # the change is visible from its origin on


def test_eval_runs_a_backtest_from_the_checkpoint_and_writes_its_forecasts(quantile_run, tmp_path):
    import pandas as pd

    run, table, _ = quantile_run
    run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        "backtest.origins=3",
        "backtest.step=2",
        f"predictions={tmp_path / 'forecasts.parquet'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        "extras.print_config=false",
        cwd=tmp_path,
    )
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["backtest"]
    trained = read_metrics(run)["backtest"]
    assert evaluated["backtest/mase_origin_1"] == pytest.approx(trained["backtest/mase_origin_1"], rel=1e-5)

    forecasts = pd.read_parquet(tmp_path / "forecasts.parquet")
    # series a and b (tiny was skipped), 3 origins each, 6 steps, one target
    assert len(forecasts) == 2 * 3 * 6 and set(forecasts.series) == {"a", "b"}
    assert list(forecasts.columns) == ["series", "origin", "start", "step", "target", "actual", "q0.1", "q0.5", "q0.9"]
    assert (forecasts["q0.1"] <= forecasts["q0.5"]).all() and (forecasts["q0.5"] <= forecasts["q0.9"]).all()
    # the latest origin of series a forecasts its last 6 months, from its 91st month (2007-07) on
    latest = forecasts[(forecasts.series == "a") & (forecasts.origin == 2)]
    assert set(latest.start) == {"2007-07-01 00:00:00"} and latest.step.tolist() == [1, 2, 3, 4, 5, 6]
    source = pd.read_csv(table)
    np.testing.assert_allclose(latest.actual, source[source.id == "a"].value.iloc[-6:], rtol=1e-6)


# ---- intervals calibrated on validation ------------------------------------------------------------------
def test_conformal_widening_is_the_split_conformal_rank_and_widens_only_unless_told():
    from lstmlab.tasks.seq2seq_forecast import conformal_widening

    levels = [0.1, 0.25, 0.5, 0.75, 0.9]  # two bands: 80 % and 50 %
    scores = torch.stack([torch.arange(9.0), torch.arange(9.0) - 100.0], dim=-1).unsqueeze(1)  # [9, 1, 2]
    scores = scores[torch.randperm(9)]
    widening = conformal_widening(scores, levels, narrow=False)
    # 80 %: the ceil(10 * 0.8) = 8th smallest of 0..8; 50 %: all its scores are negative (the band is wide enough)
    assert widening.tolist() == [[7.0, 0.0]]
    assert conformal_widening(scores, levels, narrow=True).tolist() == [[7.0, 4.0 - 100.0]]  # 5th smallest
    # too few scores for the rank: the largest
    assert conformal_widening(scores[:3], levels, narrow=False)[0, 0] == scores[:3, 0, 0].max()


def test_a_quantile_checkpoint_widens_its_bands_by_its_own_validation_scores(quantile_run):
    """The checkpoint carries the widening its validation chose: recomputed from its uncalibrated forecasts of the
    val windows; its test bands are the net's moved outwards by it (in each series' MASE scale), and
    test/coverage is the calibrated bands'."""
    from lstmlab.tasks.seq2seq_forecast import Seq2SeqForecastTask, conformal_widening, conformity_scores

    run, table, _ = quantile_run
    task = Seq2SeqForecastTask.load_from_checkpoint(run / "checkpoints" / "best.ckpt", map_location="cpu").eval()
    assert task.hparams.interval_calibration == "widen"
    stored = torch.tensor(task.info["interval_widening"], dtype=torch.float64)
    dm = series_datamodule(table, input_len=task.info["input_len"], short_series="skip")
    scale = torch.tensor(task.info["mase_scale"], dtype=torch.float64)

    def forecasts(split: str, calibrated: bool):
        windows = dm.splits[split]
        batch = windows[list(range(len(windows)))]
        with torch.no_grad():
            _, forecast, _ = task.net_forecast(batch["x"], batch["series"], 6, calibrated)
        return batch, forecast.double()

    batch, raw = forecasts("val", calibrated=False)
    scores = conformity_scores(raw, batch["y"].double(), scale[batch["series"]], task.levels)
    torch.testing.assert_close(conformal_widening(scores, task.levels, narrow=False), stored)
    assert float(stored[0, 0]) == pytest.approx(read_metrics(run)["val"]["val/interval_widening"], rel=1e-5)

    batch, raw = forecasts("test", calibrated=False)
    _, calibrated = forecasts("test", calibrated=True)
    delta = stored[0, 0] * scale[batch["series"], 0]  # one target, one band
    torch.testing.assert_close(calibrated[..., 0, 0], raw[..., 0, 0] - delta[:, None], rtol=0, atol=1e-4)
    torch.testing.assert_close(calibrated[..., 0, 2], raw[..., 0, 2] + delta[:, None], rtol=0, atol=1e-4)
    torch.testing.assert_close(calibrated[..., 0, 1], raw[..., 0, 1])
    y = batch["y"][..., 0].double()
    inside = ((y >= calibrated[..., 0, 0]) & (y <= calibrated[..., 0, 2])).double().mean()
    assert float(inside) == pytest.approx(read_metrics(run)["test"]["test/coverage"], abs=1e-6)
