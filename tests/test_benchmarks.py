"""The benchmark harness runs end to end at a tiny size, so it cannot rot. No speed is asserted here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def quick_realdata_run(tmp_path: Path, key: str, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``python -m benchmarks --only <key> --quick <options>`` in a subprocess: the process (it must succeed) and
    the measurement of its results JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", key, "--quick", *options, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    [result] = tmp_path.glob("*-quick-partial.json")
    return proc, json.loads(result.read_text())["measurements"][key]


MEASURED = {
    "training_throughput": {
        "stateful_steps_per_s",
        "sequence_steps_per_s",
        "plain_loop_steps_per_s",
        "ratio_l1_vs_l50",
    },
    "framework_overhead": {
        "lightning_epoch_s",
        "hand_loop_epoch_s",
        "ratio_lightning_vs_hand_loop",
        *(
            f"{side}_{phase}_ms"
            for side in ("trainer", "hand_loop")
            for phase in ("between_steps", "forward", "backward", "optimizer")
        ),
    },
    "streaming_inference": {
        "latency_p50_ms",
        "latency_p99_ms",
        "throughput_1_streams_steps_per_s",
        "throughput_64_streams_steps_per_s",
        "throughput_1024_streams_steps_per_s",
        "speedup_chunked_vs_step",
    },
    "startup_time": {"help_s", "cfg_job_s", "import_hydra_s"},
    "price_streaming": {"ticks_per_s", "latency_p50_ms", "latency_p99_ms", "latency_p99_ms_default_threads"},
    "data_path": {"hdf5_load_ms", "loader_ms_per_batch", "step_ms_per_batch", "loader_pct_of_step"},
    "classifier_inference": {
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_p50_ms_default_threads",
        "batch_256_sequences_per_s",
        "parameters",
        "size_mb",
    },
    "export_latency": {
        "step_p50_ms_pytorch",
        "step_p99_ms_onnxruntime",
        "step_p99_ms_torchscript",
        "step_speedup_onnxruntime_vs_pytorch",
        "classifier_p50_ms_onnxruntime",
    },
    "parallel_trials": {"wall_sequential_s", "wall_joblib_2_s", "speedup"},
    "sweep_efficiency": {
        "epochs_none",
        "epochs_median",
        "best_val_loss_none",
        "best_val_loss_median",
        "epochs_saved",
        "best_value_change",
    },
}
NOT_BUILT: set[str] = set()  # measurements whose subject has not landed


@pytest.mark.slow
def test_quick_benchmark_writes_every_figure_and_the_plot(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--scale",
            "0.02",
            "--repeats",
            "2",
            "--out",
            str(tmp_path / "results"),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    [result] = (tmp_path / "results").glob("*.json")
    report = json.loads(result.read_text())
    machine = report["machine"]
    for key in ("cpu", "cores", "torch", "device"):
        assert machine[key], key
    assert machine["device"] in ("cpu", "cuda")

    measurements = report["measurements"]
    assert set(measurements) == set(MEASURED) | NOT_BUILT
    for key, names in MEASURED.items():
        m = measurements[key]
        assert m["status"] == "measured" and m["goal"] and isinstance(m["met"], bool), key
        assert names <= set(m["figures"]), (key, sorted(m["figures"]))
        for name, figure in m["figures"].items():
            assert figure["min"] <= figure["median"] <= figure["max"], (key, name)
            assert figure["n"] >= 1 and figure["unit"], (key, name)
        # each measurement's own peak resident set (Linux resets it per measurement); no device on a CPU run
        host = m["settings"]["peak_host_mb"]
        assert host is None if sys.platform != "linux" else 50 < host < 16_000, (key, host)
        assert (m["settings"]["peak_device_mb"] is None) == (machine["device"] == "cpu"), key
    for key in NOT_BUILT:
        assert measurements[key]["status"] == "n/a (not built yet)"

    assert (tmp_path / "results" / report["plot"]).stat().st_size > 0
    table = proc.stdout
    assert table.startswith("| measurement |") and ("n/a (not built yet)" in table) == bool(NOT_BUILT)
    assert table.count("\n|") >= 1 + len(MEASURED) + len(NOT_BUILT)
    memory = next(line for line in table.splitlines() if line.startswith("| memory: peak host"))
    assert all(f"{key} " in memory for key in MEASURED), memory


@pytest.mark.slow
def test_quick_realdata_benchmark_lists_every_method_and_data_set(tmp_path):
    pytest.importorskip("aeon", reason='the real-data benchmark needs the [bench] extra: pip install -e ".[bench]"')
    proc, measured = quick_realdata_run(tmp_path, "classify_realdata")
    assert measured["status"] == "measured" and len(measured["settings"]["datasets"]) == 1
    methods = ("summary-stats baseline", "1-NN DTW", "MiniRocket", "lstmlab default", "lstmlab mlstm_fcn")
    accuracy_table = proc.stdout.split("Test accuracy")[1].split("Wall time")[0]
    header = accuracy_table.splitlines()[2]
    assert all(f"| {m} |" in header for m in methods), header
    # a seed ensemble per lstmlab method needs two seeds or more; --quick trains one, so no ensemble column
    [name] = measured["settings"]["datasets"]
    runs = measured["series"]["datasets"][name]["runs"]
    if len(measured["settings"]["seeds"]) < 2:
        assert "seed ensemble" not in header and not any(m.startswith("lstmlab_ensemble") for m in runs), header
    else:
        assert "| lstmlab default seed ensemble |" in header and runs["lstmlab_ensemble"], header
    rows = {line.split("|")[1].strip(): line for line in accuracy_table.splitlines() if line.startswith("| ")}
    for name in (*measured["settings"]["datasets"], "mean accuracy (1 set)", "mean rank (1 = best)"):
        assert name in rows and "error" not in rows[name] and " - |" not in rows[name], (name, rows.get(name))


@pytest.mark.slow
def test_quick_forecast_benchmark_scores_every_method_on_one_series(tmp_path):
    for package in ("statsforecast", "neuralforecast"):
        pytest.importorskip(package, reason='the forecast benchmark needs the [bench] extra: pip install -e ".[bench]"')
    proc, measured = quick_realdata_run(tmp_path, "forecast_realdata")
    [name] = measured["settings"]["series"]
    series = measured["series"]["series"][name]
    runs = series["runs"]
    assert set(runs) == {"seasonal_naive", "autoets", "nf_lstm", "lstmlab", "lstmlab_quantile", "lstmlab_ensemble"}
    assert not series["errors"], series["errors"]
    # the seed ensemble needs two seeds or more; --quick trains one
    ensemble = runs.pop("lstmlab_ensemble")
    assert (ensemble == []) if len(measured["settings"]["seeds"]) < 2 else ensemble
    for method, method_runs in runs.items():  # every method on the benchmark's one MASE scale
        assert method_runs, method
        for run in method_runs:
            assert math.isfinite(run["mase"]) and run["mase"] > 0 and run["wall_s"] >= 0, (method, run)
    for run in runs["lstmlab"] + runs["lstmlab_quantile"]:  # lstmlab's own scale is the benchmark's
        assert abs(run["scale_ratio"] - 1.0) < 1e-3 and run["val_mase"] is not None, run
    for run in runs["autoets"] + runs["lstmlab_quantile"]:
        assert 0.0 <= run["coverage"] <= 1.0, run
    mase_table = proc.stdout.split("Test MASE")[1].split("Wall time")[0]
    header = mase_table.splitlines()[2]
    labels = ("seasonal naive", "AutoETS", "neuralforecast LSTM", "lstmlab", "lstmlab quantile")
    assert all(f"| {label} |" in header for label in labels), header
    assert any(line.startswith(f"| {name} |") for line in mase_table.splitlines()), mase_table


def test_forecast_benchmark_screens_lstmlab_alone_without_the_peers(tmp_path):
    # --methods lstmlab: a validation screen of a setting, without AutoETS and neuralforecast (nor their packages)
    pytest.importorskip("aeon", reason="the quick series (airline) comes with aeon")
    options = ("--methods", "lstmlab", "--overrides", "model.net.hidden_size=8")
    proc, measured = quick_realdata_run(tmp_path, "forecast_realdata", *options)
    [series] = measured["series"]["series"].values()
    runs = series["runs"]
    assert not runs["autoets"] and not runs["nf_lstm"] and not runs["lstmlab_quantile"], runs
    [run] = runs["lstmlab"]
    assert math.isfinite(run["mase"]) and run["val_mase"] is not None, run
    assert "model.net.hidden_size=8" in run["command"], run["command"]
    validation = proc.stdout.split("Validation MASE")[1]
    assert f"| mean (1 series) | {run['val_mase']:.3f} |" in validation, validation
    assert measured["met"] is None  # the goal is judged beside the peers only
