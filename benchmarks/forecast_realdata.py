"""10. Forecasting on real data (issue 15): lstmlab beside seasonal naive, AutoETS and neuralforecast's LSTM.

``python -m benchmarks --only forecast_realdata [--quick] [--series A,B] [--seeds 3] [--overrides "k=v ..."]``

Real series that pip packages ship inside their wheels (nothing is downloaded; ``SERIES`` says which package holds
which, at which frequency, and with which horizon ``h`` and season length ``m``). Each is written to a CSV
(``date,value``) in the run's scratch directory. The last ``h`` steps are the test tail; the ``h`` steps before it
are lstmlab's validation segment (it selects its checkpoint there). The peers have nothing to select and fit on
every step before the test tail.

Every method is scored by MASE on the test tail with the same scale per series: the mean absolute error of the
seasonal-naive forecast (lag ``m``) in-sample, over all steps before the test tail (validation included), which
is the scale lstmlab's ``test/mase`` uses. Side by side, per series:

* seasonal naive: the last observed season repeated (deterministic, run once);
* AutoETS (statsforecast, ``AutoETS(season_length=m)``, deterministic, run once); its 80 % interval (10 % to
  90 %) gives a coverage figure beside lstmlab's quantile run. statsforecast fits no seasonal ETS for m > 24, so
  on the weekly series (m = 52) it chooses among non-seasonal models, as a user of it would get;
* neuralforecast's LSTM (``neuralforecast.models.LSTM``) with its defaults (input_size -1 = 3 h, 1000 steps,
  MAE loss, robust scaler ...) except ``h`` and ``random_seed=<seed>``; the trainer is told only where to run and
  to stay quiet (``accelerator``, ``devices=1``, ``logger=False``, no progress bar or model summary,
  ``default_root_dir`` in the scratch directory); ``--quick`` adds ``max_steps=20``;
* lstmlab's point forecast: ``lstmlab-train experiment=seq2seq_forecast data.path=<csv> data.time_column=date
  data.targets=[value] data.season_length=<m> data.horizon=<h> data.test_steps=<h> data.val_steps=<h>
  data.input_len=null seed=<seed>`` in a subprocess (``logger=csv``, the figures callback and progress bar off,
  then ``--overrides``); ``test/mase`` from metrics.json, and ``val/mase`` at the kept checkpoint for choosing
  settings;
* lstmlab's quantile forecast: the same with ``model.loss=quantile`` (MASE of the median) and ``test/coverage``,
  the share of test steps inside the 10 % to 90 % quantiles;
* lstmlab's seed ensemble (with 2 seeds or more): the step-by-step median of the point runs' test forecasts,
  as the framework makes it: ``lstmlab-eval ckpt_path=[<each seed's run>/checkpoints/best.ckpt] predictions=<csv>``
  (one evaluation); its wall time is the sum of its members', the evaluation's seconds are ``eval_s``.

lstmlab reports its own seasonal-naive MASE (``test/mase_seasonal_naive``); its MASE is put on the benchmark's
scale through the ratio of that figure to the benchmark's own seasonal-naive MASE, which is 1 when both scales
agree (a difference is printed and kept in the results). Wall time per series and method covers fit + predict
(lstmlab: fit + test inside its process, without the interpreter's start).

The peers come with the ``[bench]`` extra (``pip install -e ".[bench]"``): statsforecast, neuralforecast, and
the packages whose wheels hold the series (statsmodels, aeon, sktime). A series whose package is missing is left
out and named.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.classify_realdata import best_validation, failure, package_dir, ranks, run_env, write_test_predictions
from benchmarks.harness import Context, Measurement, Row, names_from, number, stats

KEY = "forecast_realdata"
TITLE = "10. forecasting on real data (series shipped in pip wheels, last h steps held out)"
GOAL = "lstmlab's mean MASE below seasonal naive's, AutoETS's and neuralforecast LSTM's"
INSTALL = 'pip install -e ".[bench]"'
DEFAULT_SEEDS = 3
# --quick: one short monthly series, one seed, tiny budgets on both neural sides
QUICK_SERIES = ("airline",)
QUICK_OVERRIDES = ("trainer.max_steps=20", "trainer.min_steps=0", "trainer.val_check_interval=10")
QUICK_NF_STEPS = 20
# what every lstmlab run of the benchmark adds to the user's command: no progress bar, no config print, a CSV log
# to read the validation curve from, and the test-time figures off (they do not train)
RUN_OVERRIDES = (
    "callbacks.progress=null",
    "extras.print_config=false",
    "logger=csv",
    "callbacks.forecast_figures=null",
)
RUN_TIMEOUT_S = 4 * 3600
INTERVAL = (0.1, 0.9)  # lstmlab's outer default quantiles; AutoETS's 80 % interval is the same pair


# ---- the series --------------------------------------------------------------------------------------------
Reader = Callable[[Path], Any]  # a file -> a pandas Series of floats on its time stamps


def column(value: str, stamp: str, fmt: str) -> Reader:
    """A CSV with one time-stamp column (``fmt``, or "quarter" for "1970 Q1") and the value column."""

    def read(path: Path):
        import pandas as pd

        table = pd.read_csv(path)
        raw = table[stamp].astype(str)
        if fmt == "quarter":
            stamps = pd.PeriodIndex(raw.str.replace(" ", ""), freq="Q").to_timestamp()
        else:
            stamps = pd.to_datetime(raw, format=fmt)
        return pd.Series(table[value].to_numpy(np.float64), index=pd.DatetimeIndex(stamps))

    return read


def year_quarter(value: str) -> Reader:
    """statsmodels' macrodata: ``year`` and ``quarter`` columns."""

    def read(path: Path):
        import pandas as pd

        table = pd.read_csv(path)
        month = (table["quarter"].astype(int) - 1) * 3 + 1
        stamps = pd.to_datetime({"year": table["year"].astype(int), "month": month, "day": 1})
        return pd.Series(table[value].to_numpy(np.float64), index=pd.DatetimeIndex(stamps))

    return read


def month_columns(path: Path):
    """statsmodels' elnino: one row per year, one column per month (JAN ... DEC)."""
    import pandas as pd

    table = pd.read_csv(path)
    values = table.drop(columns="YEAR").to_numpy(np.float64).ravel()  # row-major: January to December of a year
    start = f"{int(table['YEAR'].iloc[0])}-01-01"
    return pd.Series(values, index=pd.date_range(start, periods=values.size, freq="MS"))


@dataclass(frozen=True)
class Source:
    """Where a series lies inside an installed package, and how it is forecast."""

    package: str
    path: str  # relative to the package's directory
    read: Reader
    freq: str  # pandas offset alias of its stamps (checked: no gaps)
    horizon: int  # h: the test tail and the validation segment before it
    season: int  # m: the seasonal-naive lag and the MASE scale's
    what: str
    start: str | None = None  # first stamp kept


# Horizons and seasons as the M competitions set them (monthly h=12 m=12, quarterly h=8 m=4, yearly h=6 m=1,
# weekly h=13), with two exceptions: weekly co2 has a yearly cycle, so m=52; the sunspot number's ~11-year cycle
# is the one regular pattern it has, so m=11 (lynx's 9-10-year cycle is not regular enough for a fixed lag).
# Each series is at least 2 * max(h, m) (lstmlab's context with input_len=null and data.context_multiple up to 2)
# + h (one training window) + 2 h (the hold-outs) long. Not chosen: ShampooSales (36 months, too short), Longley
# and statsmodels' copper (16 and 25 years, too short), sktime's PBS_dataset (counts of 0-3 scripts), solar (6 days
# of half-hours).
SERIES: dict[str, Source] = {
    # monthly
    "airline": Source(
        "aeon", "datasets/data/Airline/Airline.csv", column("Passengers", "Date", "%Y-%m"), "MS", 12, 12,
        "international airline passengers (thousands), 1949-1960",
    ),
    "seatbelts": Source(
        "sktime", "datasets/data/seatbelts/seatbelts.csv", column("KSI", "Unnamed: 0", "%Y-%m-%d"), "MS", 12, 12,
        "UK drivers killed or seriously injured, 1969-1984",
    ),
    "elnino": Source(
        "statsmodels", "datasets/elnino/elnino.csv", month_columns, "MS", 12, 12,
        "Pacific sea surface temperature (El Nino region, deg C), 1950-2010",
    ),
    # quarterly
    "us_gdp": Source(
        "statsmodels", "datasets/macrodata/macrodata.csv", year_quarter("realgdp"), "QS", 8, 4,
        "US real GDP (billions of 2005 dollars), 1959-2009",
    ),
    "us_consumption": Source(
        "aeon", "datasets/data/Uschange/Uschange.csv", column("Consumption", "Quarter", "quarter"), "QS", 8, 4,
        "US personal consumption, quarterly % change, 1970-2016",
    ),
    # weekly
    "co2": Source(
        "statsmodels", "datasets/co2/co2.csv", column("co2", "date", "%Y%m%d"), "W-SAT", 13, 52,
        "Mauna Loa atmospheric CO2 (ppm), weekly from 1985-08-10 (the last missing week is 1985-08-03)",
        start="1985-08-10",
    ),
    # yearly
    "sunspots": Source(
        "statsmodels", "datasets/sunspots/sunspots.csv", column("SUNACTIVITY", "YEAR", "%Y"), "YS", 6, 11,
        "yearly sunspot number, 1700-2008",
    ),
    "nile": Source(
        "statsmodels", "datasets/nile/nile.csv", column("volume", "year", "%Y"), "YS", 6, 1,
        "Nile flow at Aswan (10^8 m^3 a year), 1871-1970",
    ),
    "lynx": Source(
        "aeon", "datasets/data/Lynx/Lynx.csv", column("0", "Unnamed: 0", "%Y"), "YS", 6, 1,
        "Canadian lynx trappings, 1821-1934",
    ),
}  # fmt: skip
FREQUENCIES = {"M": "monthly", "Q": "quarterly", "W": "weekly", "Y": "yearly"}


def frequency(source: Source) -> str:
    return FREQUENCIES[source.freq[0]]


def needed_steps(source: Source) -> int:
    """The shortest series the suite takes: a context of 2 max(h, m) (``data.context_multiple`` 1 or 2), one
    training window and the two hold-outs, 3 h."""
    return 2 * max(source.horizon, source.season) + 3 * source.horizon


def available(name: str) -> bool:
    source = SERIES[name]
    root = package_dir(source.package)
    return root is not None and (root / source.path).exists()


def load_series(name: str):
    """The series as a float pandas Series on a gap-free DatetimeIndex of its frequency; an error for a gap, a
    missing value or a series too short for the hold-outs."""
    import pandas as pd

    source = SERIES[name]
    root = package_dir(source.package)
    if root is None or not (root / source.path).exists():
        raise FileNotFoundError(f"series {name} comes with the package {source.package}: {INSTALL}")
    where = root / source.path
    series = source.read(where)
    if source.start is not None:
        series = series[series.index >= pd.Timestamp(source.start)]
    expected = pd.date_range(series.index[0], periods=len(series), freq=source.freq)
    if not series.index.equals(expected):
        raise ValueError(f"{where}: the stamps are not a gap-free {source.freq} range")
    if not np.isfinite(series.to_numpy()).all():
        raise ValueError(f"{where}: {name} holds missing values")
    if len(series) < needed_steps(source):
        raise ValueError(f"{where}: {len(series)} steps, fewer than the {needed_steps(source)} the hold-outs need")
    return series


def write_csv(series, path: Path) -> None:
    """``date,value`` as lstmlab reads it (data.time_column=date); dates as pandas writes them (1949-01-01)."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"date": series.index, "value": series.to_numpy()}).to_csv(path, index=False)


# ---- scoring -----------------------------------------------------------------------------------------------
def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The last observed season, repeated over the horizon."""
    return np.resize(history[-season:], horizon)


def mase_scale(history: np.ndarray, season: int) -> float:
    """The in-sample mean absolute seasonal-naive error: the denominator every method's MASE shares."""
    return float(np.abs(history[season:] - history[:-season]).mean())


def mase(forecast: np.ndarray, actual: np.ndarray, scale: float) -> float:
    return float(np.abs(np.asarray(forecast, dtype=np.float64) - actual).mean() / scale)


def coverage(low: np.ndarray, high: np.ndarray, actual: np.ndarray) -> float:
    return float(((actual >= low) & (actual <= high)).mean())


# ---- the methods -------------------------------------------------------------------------------------------
SNAIVE = "seasonal_naive"
ETS = "autoets"
NF_LSTM = "nf_lstm"
LSTMLAB = "lstmlab"
LSTMLAB_QUANTILE = "lstmlab_quantile"
LSTMLAB_ENSEMBLE = "lstmlab_ensemble"
METHODS = (SNAIVE, ETS, NF_LSTM, LSTMLAB, LSTMLAB_QUANTILE, LSTMLAB_ENSEMBLE)
PEERS = (SNAIVE, ETS, NF_LSTM)
LSTMLAB_METHODS = (LSTMLAB, LSTMLAB_QUANTILE)
LABELS = {
    SNAIVE: "seasonal naive",
    ETS: "AutoETS",
    NF_LSTM: "neuralforecast LSTM",
    LSTMLAB: "lstmlab",
    LSTMLAB_QUANTILE: "lstmlab quantile",
    LSTMLAB_ENSEMBLE: "lstmlab seed ensemble",
}


def run_autoets(history: np.ndarray, actual: np.ndarray, season: int, scale: float) -> dict:
    from statsforecast.models import AutoETS

    band = round(100 * (INTERVAL[1] - INTERVAL[0]))  # a central interval: 80 % from 10 % to 90 %
    started = time.perf_counter()
    model = AutoETS(season_length=season).fit(history)
    out = model.predict(len(actual), level=[band])
    wall = time.perf_counter() - started
    return {
        "mase": mase(out["mean"], actual, scale),
        "coverage": coverage(out[f"lo-{band}"], out[f"hi-{band}"], actual),
        "model": model.model_["method"],
        "wall_s": round(wall, 3),
    }


@contextlib.contextmanager
def quiet():
    """neuralforecast's Lightning trainers announce seeds, devices and stops on every fit and predict."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning", "neuralforecast")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def run_nf_lstm(ctx: Context, name: str, history, actual: np.ndarray, source: Source, scale: float, seed: int):
    """neuralforecast's LSTM at its defaults (h and the seed set; --quick: max_steps too), in this process."""
    import pandas as pd
    from neuralforecast import NeuralForecast
    from neuralforecast.models import LSTM

    settings = {"h": source.horizon, "random_seed": seed}
    if ctx.quick:
        settings["max_steps"] = QUICK_NF_STEPS
    trainer = {
        "accelerator": "gpu" if ctx.device.type == "cuda" else "cpu",
        "devices": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": str(ctx.work_dir / KEY / "neuralforecast"),
    }
    frame = pd.DataFrame({"unique_id": name, "ds": history.index, "y": history.to_numpy()})
    with quiet():
        started = time.perf_counter()
        forecaster = NeuralForecast(models=[LSTM(**settings, **trainer)], freq=source.freq)
        forecaster.fit(frame)
        out = forecaster.predict()
        wall = time.perf_counter() - started
    expected = pd.date_range(history.index[-1], periods=source.horizon + 1, freq=source.freq)[1:]
    if not pd.DatetimeIndex(out["ds"]).equals(expected):
        raise ValueError(f"neuralforecast forecast the stamps {list(out['ds'])[:3]} ..., not the test tail's")
    return {"mase": mase(out["LSTM"].to_numpy(), actual, scale), "wall_s": round(wall, 3), "settings": settings}


def lstmlab_command(ctx: Context, csv_path: Path, source: Source, run_dir: Path, seed: int, extra: list[str]):
    h, m = source.horizon, source.season
    accelerator = "gpu" if ctx.device.type == "cuda" else "cpu"
    return [
        sys.executable,
        "-m",
        "lstmlab.train",
        "experiment=seq2seq_forecast",
        f"data.path={csv_path}",
        "data.time_column=date",
        "data.targets=[value]",
        f"data.season_length={m}",
        f"data.horizon={h}",
        f"data.test_steps={h}",
        f"data.val_steps={h}",
        "data.input_len=null",
        f"seed={seed}",
        f"hydra.run.dir={run_dir}",
        f"trainer.accelerator={accelerator}",
        *RUN_OVERRIDES,
        *extra,
    ]


def run_lstmlab(ctx: Context, command: list[str], run_dir: Path, snaive_mase: float) -> dict:
    """One ``lstmlab-train`` run in a subprocess; its test MASE on the benchmark's scale, validation MASE at the
    kept checkpoint, coverage (quantile loss) and times. Missing keys are kept as None."""
    started = time.perf_counter()
    proc = subprocess.run(
        command, cwd=ctx.work_dir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=run_env()
    )
    process_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"lstmlab-train exited {proc.returncode} ({run_dir}): {failure(proc.stderr)}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test, val = metrics.get("test", {}), metrics.get("val", {})
    reported, own_naive = test.get("test/mase"), test.get("test/mase_seasonal_naive")
    # lstmlab's MASE over the benchmark's seasonal-naive MASE: both forecast one window of h steps, so the ratio
    # of the two seasonal-naive figures is the ratio of the scales
    ratio = snaive_mase / own_naive if own_naive else None
    try:
        val_mase = best_validation(run_dir, "val/mase")
    except (OSError, AttributeError, KeyError, ValueError):
        val_mase = None
    return {
        "mase": reported * ratio if reported is not None and ratio is not None else None,
        "mase_reported": reported,
        "mase_seasonal_naive_reported": own_naive,
        "scale_ratio": ratio,
        "val_mase": val_mase if val_mase is not None else val.get("val/mase"),
        "coverage": test.get("test/coverage"),
        "wall_s": metrics.get("wall_time_s"),
        "process_s": round(process_s, 3),
        "steps": metrics.get("global_steps"),
        "command": shlex.join(["lstmlab-train", *command[3:]]),
    }


def run_ensemble(ctx: Context, run_dirs: list[Path], actual: np.ndarray, scale: float, walls: list[float]) -> dict:
    """The seed ensemble of the point runs as a user gets it: ``lstmlab-eval ckpt_path=[<each run's best
    checkpoint>] predictions=<csv>`` (the step-by-step median of the members' forecasts); MASE on the benchmark's
    scale."""
    import pandas as pd

    ensemble_dir = run_dirs[0].parent / "ensemble"
    path = ensemble_dir / "test_forecasts.csv"
    eval_s = write_test_predictions(ctx, [d / "checkpoints" / "best.ckpt" for d in run_dirs], path, ensemble_dir)
    table = pd.read_csv(path).sort_values("step")
    if len(table) != len(actual) or not np.allclose(table["actual"], actual, rtol=1e-5):
        raise ValueError(f"{path}: its rows are not the test tail's {len(actual)} steps, in order")
    return {
        "mase": mase(table["forecast"].to_numpy(np.float64), actual, scale),
        "members": len(run_dirs),
        "wall_s": round(sum(walls), 3),
        "eval_s": round(eval_s, 3),
    }


# ---- options -----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Its own options; --seeds and --overrides are the real-data benchmarks' shared ones."""
    group = parser.add_argument_group(f"{KEY} (runs only when named in --only)")
    group.add_argument(
        "--series",
        type=names_from(SERIES, "series"),
        default=None,
        help=f"comma-separated subset of {','.join(SERIES)} (default: all available; --quick: "
        f"{','.join(QUICK_SERIES)})",
    )
    group.add_argument(
        "--methods",
        type=names_from(METHODS, "methods"),
        default=None,
        help=f"comma-separated subset of {','.join(METHODS)} (default: all; seasonal naive always runs). "
        '--methods lstmlab --overrides "..." is a validation screen of an lstmlab setting without the peers',
    )


# ---- the run -----------------------------------------------------------------------------------------------
def run(ctx: Context, args: argparse.Namespace | None = None) -> Measurement:
    args = args or argparse.Namespace(series=None, seeds=None, overrides="", methods=None)
    methods = {SNAIVE, *(getattr(args, "methods", None) or METHODS)}
    needed = {"pandas": "the CSVs"}
    if ETS in methods:
        needed["statsforecast"] = "AutoETS"
    if NF_LSTM in methods:
        needed["neuralforecast"] = "its LSTM"
    for package, what in needed.items():
        if importlib.util.find_spec(package) is None:
            raise ModuleNotFoundError(f"{KEY} needs {package} ({what}): {INSTALL}")
    requested = args.series or (list(QUICK_SERIES) if ctx.quick else list(SERIES))
    if args.series:
        missing = [n for n in requested if not available(n)]
        if missing:
            packages = sorted({SERIES[n].package for n in missing})
            raise FileNotFoundError(f"series {missing} come with {packages}: {INSTALL}")
    names = [n for n in requested if available(n)]
    left_out = [n for n in requested if n not in names]
    if left_out:
        print(f"  {KEY}: left out {left_out} (their packages are not installed: {INSTALL})", file=sys.stderr)
    seeds = list(range(args.seeds or (1 if ctx.quick else DEFAULT_SEEDS)))
    overrides = shlex.split(args.overrides) + (list(QUICK_OVERRIDES) if ctx.quick else [])

    root = ctx.work_dir / KEY
    results: dict[str, dict] = {}
    for name in names:
        started = time.perf_counter()
        source = SERIES[name]
        series = load_series(name)
        csv_path = root / "data" / f"{name}.csv"
        write_csv(series, csv_path)
        history_frame = series.iloc[: -source.horizon]
        history, actual = history_frame.to_numpy(), series.to_numpy()[-source.horizon :]
        scale = mase_scale(history, source.season)
        runs: dict[str, list[dict]] = {m: [] for m in METHODS}
        errors: dict[str, str] = {}

        t0 = time.perf_counter()
        naive = seasonal_naive(history, source.horizon, source.season)
        runs[SNAIVE].append({"seed": None, "mase": mase(naive, actual, scale), "wall_s": time.perf_counter() - t0})
        snaive_mase = runs[SNAIVE][0]["mase"]
        if ETS in methods:
            try:
                runs[ETS].append({"seed": None, **run_autoets(history, actual, source.season, scale)})
            except Exception as err:  # one failed method must not hide the others' figures
                errors[ETS] = report_error(name, ETS, None, err)
        for seed in seeds:
            if NF_LSTM in methods:
                try:
                    runs[NF_LSTM].append(
                        {"seed": seed, **run_nf_lstm(ctx, name, history_frame, actual, source, scale, seed)}
                    )
                except Exception as err:
                    errors[NF_LSTM] = report_error(name, NF_LSTM, seed, err)
            for method in filter(methods.__contains__, LSTMLAB_METHODS):
                extra = (["model.loss=quantile"] if method == LSTMLAB_QUANTILE else []) + overrides
                run_dir = root / "runs" / name / method / f"seed{seed}"
                command = lstmlab_command(ctx, csv_path, source, run_dir, seed, extra)
                try:
                    result = run_lstmlab(ctx, command, run_dir, snaive_mase)
                except Exception as err:
                    errors[method] = report_error(name, method, seed, err)
                    continue
                if result["scale_ratio"] is not None and abs(result["scale_ratio"] - 1) > 1e-3:
                    print(
                        f"  {KEY}: {name}, {LABELS[method]}: lstmlab's seasonal-naive MASE "
                        f"{result['mase_seasonal_naive_reported']:.4f} differs from the benchmark's "
                        f"{snaive_mase:.4f}; its MASE is rescaled by {result['scale_ratio']:.4f}",
                        file=sys.stderr,
                    )
                runs[method].append({"seed": seed, **result})
        members = [r for r in runs[LSTMLAB] if r.get("mase") is not None]
        # the seed runs' median forecast: what averaging seeds buys at no extra training
        if len(members) > 1 and LSTMLAB_ENSEMBLE in methods:
            try:
                dirs = [root / "runs" / name / LSTMLAB / f"seed{r['seed']}" for r in members]
                walls = [r["wall_s"] for r in members]
                runs[LSTMLAB_ENSEMBLE].append({"seed": None, **run_ensemble(ctx, dirs, actual, scale, walls)})
            except Exception as err:
                errors[LSTMLAB_ENSEMBLE] = report_error(name, LSTMLAB_ENSEMBLE, None, err)
        results[name] = {
            "source": f"{source.package}: {source.path}",
            "what": source.what,
            "frequency": frequency(source),
            "freq": source.freq,
            "horizon": source.horizon,
            "season": source.season,
            "length": len(series),
            "start": str(series.index[0].date()),
            "end": str(series.index[-1].date()),
            "mase_scale": scale,
            "runs": runs,
            "errors": errors,
            "seconds": round(time.perf_counter() - started, 1),
        }
        summary = ", ".join(f"{LABELS[m]} {cell(runs[m], 'mase')}" for m in METHODS)
        print(f"  {KEY}: {name}: MASE {summary} ({results[name]['seconds']} s)", file=sys.stderr)

    return measurement(results, ctx, seeds, overrides, left_out)


def report_error(name: str, method: str, seed: int | None, err: Exception) -> str:
    text = f"{type(err).__name__}: {err}"
    print(f"  {KEY}: {name}, {LABELS[method]}{'' if seed is None else f', seed {seed}'}: {text}", file=sys.stderr)
    return text


# ---- the figures -------------------------------------------------------------------------------------------
def values(runs: list[dict], key: str) -> list[float]:
    return [r[key] for r in runs if r.get(key) is not None and math.isfinite(r[key])]


def cell(runs: list[dict], key: str, digits: int = 3) -> str:
    """``mean ± std`` over seeds (``mean`` alone for one value), ``n/a`` for none."""
    xs = values(runs, key)
    if not xs:
        return "n/a"
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


def mean_of(runs: list[dict], key: str = "mase") -> float | None:
    xs = values(runs, key)
    return statistics.fmean(xs) if xs else None


def tables(results: dict[str, dict]) -> tuple[str, dict]:
    """The MASE table (with mean MASE and mean rank), the wall-time, coverage and validation tables."""
    scores: dict[str, dict[str, float]] = {}
    for name, r in results.items():
        means = {m: mean_of(r["runs"][m]) for m in METHODS}
        scores[name] = {m: s for m, s in means.items() if s is not None}
    # means and ranks over the series that every method with any figure has (a method that failed everywhere,
    # e.g. lstmlab without a feature the run asks for, is n/a and does not empty the peers' means)
    scored = [m for m in METHODS if any(m in s for s in scores.values())]
    complete = [n for n, s in scores.items() if scored and all(m in s for m in scored)]
    # rank 1 for the lowest MASE: ranks() ranks the highest first
    rank_rows = {n: ranks({m: -s for m, s in scores[n].items()}) for n in complete}
    summary = {
        m: {
            "mean_mase": statistics.fmean(scores[n][m] for n in complete) if complete and m in scored else None,
            "mean_rank": statistics.fmean(rank_rows[n][m] for n in complete) if complete and m in scored else None,
            "series": len(complete) if m in scored else 0,
        }
        for m in METHODS
    }
    labels = [LABELS[m] for m in METHODS]
    head = "| series | freq | h | m | length | " + " | ".join(labels) + " |"
    lines = [
        "Test MASE (scale: in-sample seasonal-naive error before the test tail), mean ± std over seeds:",
        "",
        head,
        "|---" * (5 + len(METHODS)) + "|",
    ]
    for name, r in results.items():
        best = min(scores[name].values(), default=None)
        cells = []
        for m in METHODS:
            text = cell(r["runs"][m], "mase")
            if m in r["errors"] and text == "n/a":
                text = "error"
            cells.append(f"**{text}**" if best is not None and scores[name].get(m) == best else text)
        described = f"| {name} | {r['frequency']} | {r['horizon']} | {r['season']} | {r['length']} | "
        lines.append(described + " | ".join(cells) + " |")
    blank = "| | | | | "
    lines.append(
        f"| mean MASE ({len(complete)} series) {blank}"
        + " | ".join("n/a" if summary[m]["mean_mase"] is None else f"{summary[m]['mean_mase']:.3f}" for m in METHODS)
        + " |"
    )
    lines.append(
        f"| mean rank (1 = best) {blank}"
        + " | ".join("n/a" if summary[m]["mean_rank"] is None else f"{summary[m]['mean_rank']:.2f}" for m in METHODS)
        + " |"
    )
    timed = [m for m in METHODS if m != SNAIVE]  # seasonal naive takes microseconds
    lines += [
        "",
        "Wall time per series (s, mean over seeds; fit + predict; lstmlab: fit + test inside its process):",
        "",
        "| series | " + " | ".join(LABELS[m] for m in timed) + " |",
        "|---" * (1 + len(timed)) + "|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(seconds(r["runs"][m]) for m in timed) + " |")
    lines += [
        "",
        "Coverage of the 10 % to 90 % interval on the test tail (nominal 0.80; AutoETS: its 80 % interval):",
        "",
        f"| series | {LABELS[ETS]} | {LABELS[LSTMLAB_QUANTILE]} |",
        "|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {cell(r['runs'][ETS], 'coverage', 2)} | {cell(r['runs'][LSTMLAB_QUANTILE], 'coverage', 2)} |"
        )
    lines += [
        "",
        "Validation MASE at the kept checkpoint (lstmlab runs; choose settings on these, never on test):",
        "",
        "| series | " + " | ".join(LABELS[m] for m in LSTMLAB_METHODS) + " |",
        "|---" * (1 + len(LSTMLAB_METHODS)) + "|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(r["runs"][m], "val_mase") for m in LSTMLAB_METHODS) + " |")
    means = [[mean_of(r["runs"][m], "val_mase") for r in results.values()] for m in LSTMLAB_METHODS]
    lines.append(
        f"| mean ({len(results)} series) | "
        + " | ".join("n/a" if None in each or not each else f"{statistics.fmean(each):.3f}" for each in means)
        + " |"
    )
    return "\n".join(lines), summary


def seconds(runs: list[dict]) -> str:
    xs = values(runs, "wall_s")
    return number(statistics.fmean(xs)) if xs else "n/a"


def measurement(
    results: dict[str, dict], ctx: Context, seeds: list[int], overrides: list[str], left_out: list[str]
) -> Measurement:
    table, summary = tables(results)
    # the goal is judged only beside every peer (--methods may leave them out, or one may fail everywhere)
    compared = all(summary[p]["mean_mase"] is not None for p in PEERS)
    figures, rows = {}, []
    for m in METHODS:
        per_series = [s for s in (mean_of(r["runs"][m]) for r in results.values()) if s is not None]
        walls = [mean_of(r["runs"][m], "wall_s") for r in results.values() if values(r["runs"][m], "wall_s")]
        covered = [mean_of(r["runs"][m], "coverage") for r in results.values() if values(r["runs"][m], "coverage")]
        if per_series:
            figures[f"{m}/mase"] = stats(per_series, "MASE") | summary[m]
        if walls:
            figures[f"{m}/wall_s"] = stats(walls, "s")
        if covered:
            figures[f"{m}/coverage"] = stats(covered, "share")
        s = summary[m]
        text = (
            "n/a"
            if s["mean_mase"] is None
            else f"mean MASE **{s['mean_mase']:.3f}**, mean rank {s['mean_rank']:.2f} over {s['series']} series"
        )
        if walls:
            text += f"; wall {number(statistics.median(walls))} s per series (median)"
        if covered:
            text += f"; 10-90 % coverage {statistics.fmean(covered):.2f}"
        goal, met = "-", "-"
        if m == LSTMLAB and s["mean_mase"] is not None and compared:
            ok = all(s["mean_mase"] < summary[p]["mean_mase"] for p in PEERS)
            goal, met = "mean MASE below each peer's", "met" if ok else "missed"
        rows.append(Row(f"10. real data: {LABELS[m]}", text, goal, met))
    lstmlab = summary[LSTMLAB]["mean_mase"]
    met = None if lstmlab is None or not compared else all(lstmlab < summary[p]["mean_mase"] for p in PEERS)
    failed = sum(len(r["errors"]) for r in results.values())
    return Measurement(
        key=KEY,
        number=10,
        title=TITLE,
        status="measured" if not failed else f"measured; {failed} method(s) failed (series.series.*.errors)",
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        settings={
            "series": list(results),
            "left_out": left_out,
            "seeds": seeds,
            "overrides": overrides,
            "run_overrides": list(RUN_OVERRIDES),
            "neuralforecast_max_steps": QUICK_NF_STEPS if ctx.quick else "default",
            "device": str(ctx.device),
        },
        notes="per-series figures and every run under series.series; the tables in series.table_markdown",
        series={"series": results, "table_markdown": table},
    )
