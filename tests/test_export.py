"""lstmlab-export: every family's graphs against the PyTorch model they came from (ONNX Runtime and TorchScript,
float32, within 1e-5), on random inputs and on real batches of tiny real runs, and the CLI's bad-input lines;
the exports on ONNX Runtime through lstmlab-stream and lstmlab-eval (``runtime=onnx``)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import TINY, TINY_CLASSIFIER, TINY_PRICES, TINY_SERIES, build_datamodule, run_cli
from lstmlab.errors import ConfigError

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow
TOLERANCE = 1e-5
STREAM_STEPS = 1000

# the smallest budgets of the tiny configs, one run per family (signal: the stateful L=1 net; prices: the
# sequence net, so both recurrent nets' graphs are checked)
RUNS = {
    "signal": [*TINY, "experiment=signal_l1", "trainer.max_epochs=1"],
    "prices": [*TINY_PRICES, "trainer.max_epochs=1"],
    "prices_stateful": [*TINY_PRICES, "experiment=price_forecast_stateful", "trainer.max_epochs=1"],
    "classifier": [*TINY_CLASSIFIER, "trainer.max_steps=4", "trainer.min_steps=0"],
    "forecaster": [*TINY_SERIES, "data.generator.n_steps=1000", "trainer.max_steps=4", "model.loss=quantile"],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def trained(workdir):
    """``trained(family)``: (checkpoint, loaded task, ONNX graph paths by name), trained and exported once."""
    from lstmlab.exporting import export_checkpoint, load_task

    done = {}

    def get(family: str):
        if family not in done:
            run = workdir / family
            run_cli(
                "lstmlab.train",
                *RUNS[family],
                f"hydra.run.dir={run}",
                f"paths.data_dir={workdir / 'data'}",
                "logger=csv",
                cwd=workdir,
            )
            ckpt = run / "checkpoints" / "best.ckpt"
            paths = export_checkpoint(ckpt, "onnx")
            graphs = {"json" if p.suffix == ".json" else p.name.split(".")[1]: p for p in paths}
            done[family] = (ckpt, load_task(ckpt)[1], graphs)
        return done[family]

    return get


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def gap(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def relative_gap(a, b) -> float:
    """``gap`` relative to the values' size where they exceed 1: float32 agrees to a relative tolerance (a
    classifier's logits reach ~60 on the random test inputs)."""
    return gap(a, b) / max(1.0, float(np.abs(np.asarray(b, dtype=np.float64)).max()))


# ---- real batches from the data each tiny run trained on ----------------------------------------------------------
def real_batch(family: str, workdir) -> dict:
    data_dir = str(workdir / "data")
    if family == "classifier":
        dm = build_datamodule(
            "casting",
            data_dir=data_dir,
            generator={"n_sequences": 90, "min_length": 20, "max_length": 60},
            batch_size=16,
        )
    elif family == "forecaster":
        dm = build_datamodule(
            "series", data_dir=data_dir, input_len=12, horizon=4, season_length=6, stride=3, generator={"n_steps": 1000}
        )
    else:
        dm = build_datamodule("signals", data_dir=data_dir, generator={"n_samples": 12, "duration": 2.0})
    dm.prepare_data()
    dm.setup("test")
    return next(iter(dm.test_dataloader()))


def real_price_features(task) -> np.ndarray:
    from lstmlab.data.price_features import series_features
    from lstmlab.data.prices import generate_prices

    prices = generate_prices(n_steps=1500, seed=11)
    features, _ = series_features(prices.close, prices.volume, task.pipeline.features)
    return features.astype(np.float32)


# ---- recurrent nets: the step graph carries the state as the chunked forward does ---------------------------------
def torch_chunk(family: str, task, x: torch.Tensor, h: torch.Tensor | None = None, c: torch.Tensor | None = None):
    """The PyTorch model's chunked forward on raw inputs [B, L, C] from (h, c) (zero when None): y and (h, c)."""
    net = task.net
    if family == "prices":
        p = task.pipeline
        x = (x - torch.as_tensor(p.feature_mean).float()) / torch.as_tensor(p.feature_std).float()
    with torch.no_grad():
        if hasattr(net, "layers"):  # StatefulLSTM: one (h, c) per layer
            state = None if h is None else [(h[i : i + 1], c[i : i + 1]) for i in range(len(net.layers))]
            y, after = net(x, state)
            return y, torch.cat([s[0] for s in after]), torch.cat([s[1] for s in after])
        y, (h_out, c_out) = net(x, None if h is None else (h, c))
        return y, h_out, c_out


def stream_inputs(family: str, task, workdir) -> np.ndarray:
    """[STREAM_STEPS, C] raw inputs of one stream: real ones where the data gives that many, random after."""
    if family == "prices":
        real = real_price_features(task)
    else:
        x = real_batch("signal", workdir)["x"]
        real = x.reshape(-1, x.shape[-1]).numpy()
    rng = np.random.default_rng(0)
    scale = real.std(axis=0) + 1e-3
    filler = (real.mean(axis=0) + rng.normal(size=(STREAM_STEPS, real.shape[1])) * scale).astype(np.float32)
    return np.concatenate([real, filler])[:STREAM_STEPS]


@pytest.mark.parametrize("family", ["signal", "prices"])
def test_step_graph_streams_1000_steps_like_the_chunked_forward(trained, workdir, family):
    _, task, graphs = trained(family)
    xs = stream_inputs(family, task, workdir)
    step = session(graphs["step"])
    layers, hidden = task.net.num_layers, task.net.hidden_size
    h = c = np.zeros((layers, 1, hidden), np.float32)
    ys = []
    for x_t in xs:
        y, h, c = step.run(None, {"x": x_t[None], "h": h, "c": c})
        ys.append(y[0])
    y_ref, h_ref, c_ref = torch_chunk(family, task, torch.from_numpy(xs).unsqueeze(0))
    assert gap(np.stack(ys), y_ref[0]) <= TOLERANCE
    assert gap(h, h_ref) <= TOLERANCE and gap(c, c_ref) <= TOLERANCE


@pytest.mark.parametrize("family", ["signal", "prices"])
def test_chunk_graph_takes_any_batch_length_and_state(trained, workdir, family):
    _, task, graphs = trained(family)
    chunk = session(graphs["chunk"])
    layers, hidden = task.net.num_layers, task.net.hidden_size
    channels = task.net.input_size
    generator = torch.Generator().manual_seed(1)
    real = torch.from_numpy(stream_inputs(family, task, workdir))
    cases = [real[:300].reshape(3, 100, channels), torch.randn(1, 1, channels, generator=generator)]
    cases += [torch.randn(5, 37, channels, generator=generator) * 2]
    for x in cases:
        h, c = (torch.randn(layers, len(x), hidden, generator=generator) * 0.5 for _ in range(2))
        out = chunk.run(None, {"x": x.numpy(), "h": h.numpy(), "c": c.numpy()})
        for got, want in zip(out, torch_chunk(family, task, x, h, c)):
            assert got.shape == tuple(want.shape) and gap(got, want) <= TOLERANCE


# ---- classifier: variable lengths, padding and all -----------------------------------------------------------------
def classifier_batches(workdir, channels: int):
    batch = real_batch("classifier", workdir)
    yield batch["x"], batch["lengths"]
    generator = torch.Generator().manual_seed(2)
    lengths = torch.tensor([1, 9, 23, 23, 4])
    x = torch.randn(5, 23, channels, generator=generator) * 3
    x[torch.arange(23)[None, :] >= lengths[:, None]] = 0.0  # padded as a loader pads
    yield x, lengths


def test_classifier_graph_matches_the_task_on_variable_lengths(trained, workdir):
    _, task, graphs = trained("classifier")
    classify = session(graphs["classify"])
    for x, lengths in classifier_batches(workdir, task.net.input_size):
        assert len(set(lengths.tolist())) > 1
        with torch.no_grad():
            logits = task(x, lengths)
        weights = task.net.attention_weights
        got_logits, got_weights = classify.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
        assert relative_gap(got_logits, logits) <= TOLERANCE
        assert gap(got_weights, weights) <= TOLERANCE
        assert float(np.abs(got_weights[np.arange(x.shape[1])[None, :] >= lengths.numpy()[:, None]]).max()) == 0.0


# ---- encoder-decoder: the raw-unit horizon out, quantiles and attention ---------------------------------------------
def test_forecast_graph_gives_the_raw_horizon_and_attention(trained, workdir):
    _, task, graphs = trained("forecaster")
    forecast = session(graphs["forecast"])
    real = real_batch("forecaster", workdir)["x"]
    generator = torch.Generator().manual_seed(3)
    for x in (real, real[:1], real[:7] * (1 + 0.1 * torch.rand(real[:7].shape, generator=generator))):
        with torch.no_grad():
            want, attention = task(x, return_attention=True)
        got, got_attention = forecast.run(None, {"x": x.numpy()})
        assert got.shape == tuple(want.shape) and want.dim() == 4  # [B, horizon, targets, quantiles]
        assert relative_gap(got, want) <= TOLERANCE  # raw units: relative to the data's level
        assert gap(got_attention, attention) <= TOLERANCE


# ---- the JSON beside the graphs --------------------------------------------------------------------------------------
def test_json_describes_inputs_scaling_and_provenance(trained):
    for family in ("signal", "prices", "classifier", "forecaster"):
        ckpt, task, graphs = trained(family)
        info = json.loads(graphs["json"].read_text())
        assert info["family"] == family and info["lstmlab_version"] and info["config_hash"].startswith("sha256:")
        for graph in info["graphs"].values():
            assert (ckpt.parent / graph["file"]).is_file()
            assert all({"name", "shape", "dtype"} <= set(spec) for spec in graph["inputs"] + graph["outputs"])
        if family == "prices":
            assert info["features"] == task.pipeline.features.to_dict()
            assert info["scaling"]["feature_mean"] == task.pipeline.feature_mean.tolist()
        if family == "classifier":
            assert info["classes"] and info["threshold"] == pytest.approx(float(task.decision_threshold))
        if family == "forecaster":
            assert info["horizon"] == 4 and info["quantiles"] == list(task.hparams.quantiles)


def test_a_wrong_channel_count_is_refused_by_the_runtime(trained):
    _, task, graphs = trained("signal")
    h = np.zeros((task.net.num_layers, 1, task.net.hidden_size), np.float32)
    x = np.zeros((1, task.net.input_size + 1), np.float32)
    with pytest.raises(Exception, match="dimension|Got"):
        session(graphs["step"]).run(None, {"x": x, "h": h, "c": h})


# ---- TorchScript ---------------------------------------------------------------------------------------------------
def test_torchscript_step_stream_and_classifier(trained, workdir, tmp_path):
    from lstmlab.exporting import export_checkpoint

    ckpt, task, _ = trained("signal")
    paths = export_checkpoint(ckpt, "torchscript", str(tmp_path / "signal"))
    step = torch.jit.load(str(tmp_path / "signal.step.pt"))
    assert paths[-1].name == "signal.torchscript.json"
    xs = torch.from_numpy(stream_inputs("signal", task, workdir))
    h = c = torch.zeros(task.net.num_layers, 1, task.net.hidden_size)
    ys = []
    with torch.no_grad():
        for x_t in xs:
            y, h, c = step(x_t[None], h, c)
            ys.append(y[0])
    y_ref, h_ref, _ = torch_chunk("signal", task, xs.unsqueeze(0))
    assert gap(torch.stack(ys), y_ref[0]) <= TOLERANCE and gap(h, h_ref) <= TOLERANCE

    ckpt, task, _ = trained("classifier")
    export_checkpoint(ckpt, "torchscript", str(tmp_path / "classifier"))
    classify = torch.jit.load(str(tmp_path / "classifier.classify.pt"))
    for x, lengths in classifier_batches(workdir, task.net.input_size):
        with torch.no_grad():
            got, _ = classify(x, lengths)
            want = task(x, lengths)
        assert gap(got, want) <= TOLERANCE


# ---- bad input: one line, exit status 2, nothing written -------------------------------------------------------------
def test_cli_refuses_a_missing_checkpoint_and_an_unknown_format(tmp_path):
    proc = run_cli("lstmlab.export", f"ckpt_path={tmp_path / 'nope.ckpt'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: ckpt_path=") and "not found" in proc.stderr
    proc = run_cli("lstmlab.export", "ckpt_path=x.ckpt", "format=tflite", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: format='tflite'") and proc.stderr.count("\n") == 1


def test_help_starts_without_torch(tmp_path):
    code = "import sys; from lstmlab.export import main; main(['--help']); print('torch' in sys.modules)"
    proc = run_cli("lstmlab.export", "--help", cwd=tmp_path)
    assert "ckpt_path=" in proc.stdout
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


class Marker:
    """Unpickling this creates a file: the proof that a refused checkpoint never ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_foreign_unsafe_and_unwritable_are_refused(trained, tmp_path):
    from lstmlab.exporting import export_checkpoint

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ConfigError, match=r"ckpt_path=.*foreign.ckpt: not an lstmlab checkpoint"):
        export_checkpoint(foreign, "onnx")
    unsafe, marker = tmp_path / "unsafe.ckpt", tmp_path / "marker"
    with unsafe.open("wb") as f:
        pickle.dump({"state_dict": Marker(marker)}, f)
    with pytest.raises(ConfigError, match=r"ckpt_path=.*unsafe.ckpt: refused"):
        export_checkpoint(unsafe, "onnx")
    assert not marker.exists()

    ckpt, _, _ = trained("signal")
    with pytest.raises(ConfigError, match=r"out=.*missing/model: directory .* does not exist"):
        export_checkpoint(ckpt, "onnx", str(tmp_path / "missing" / "model"))
    before = set(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="format='keras'"):
        export_checkpoint(ckpt, "keras", str(tmp_path / "model"))
    assert set(tmp_path.iterdir()) == before


def test_the_deploy_example_streams_as_the_model_does(trained, workdir, monkeypatch):
    """docs/deploy.md's onnxruntime + numpy example, run as written beside the signal run's export."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "deploy.md").read_text()
    code = text.split("```python\n")[1].split("```")[0]
    ckpt, task, _ = trained("signal")
    monkeypatch.chdir(ckpt.parent)
    namespace: dict = {}
    exec(code, namespace)
    xs = stream_inputs("signal", task, workdir)[:200]
    ys = np.stack([namespace["push"](x_t) for x_t in xs])
    assert gap(ys, torch_chunk("signal", task, torch.from_numpy(xs).unsqueeze(0))[0][0]) <= TOLERANCE


# ---- lstmlab-stream runtime=onnx ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["prices", "prices_stateful"])
def test_stream_on_onnx_runtime_forecasts_as_the_checkpoint_does(trained, tmp_path, family):
    """A sequence model's windows through the chunk graph, a stateful one's state carried through the step graph:
    the same predictions as the PyTorch stream, through the CLI."""
    from lstmlab.data.prices import generate_prices
    from lstmlab.streaming import OnnxPriceModel, stream_predictions

    ckpt, task, _ = trained(family)
    prices = generate_prices(n_steps=400, seed=5)
    ticks = list(zip(prices.dates, prices.close, prices.volume))
    expected = list(stream_predictions(ticks, task))
    onnx = list(stream_predictions(ticks, OnnxPriceModel(ckpt)))
    assert len(expected) > 50 and [r["tick"] for r in onnx] == [r["tick"] for r in expected]
    assert [r["prediction"] for r in onnx] == pytest.approx([r["prediction"] for r in expected], rel=1e-5)
    path = tmp_path / "ticks.csv"
    path.write_text("Date,Close,Volume\n" + "".join(f"{d},{float(c)!r},{float(v)!r}\n" for d, c, v in ticks))
    proc = run_cli("lstmlab.stream", f"ckpt_path={ckpt}", f"source={path}", "runtime=onnx", cwd=tmp_path)
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["tick"] for r in records] == [r["tick"] for r in expected]
    assert [r["prediction"] for r in records] == pytest.approx([r["prediction"] for r in expected], rel=1e-5)
    assert [r["rise"] for r in records] == [r["rise"] for r in expected]


def test_stream_on_onnx_runtime_needs_the_export(trained, tmp_path):
    ckpt, _, _ = trained("prices")
    bare = tmp_path / "best.ckpt"
    bare.write_bytes(ckpt.read_bytes())
    proc = run_cli("lstmlab.stream", f"ckpt_path={bare}", "source=-", "runtime=onnx", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "run lstmlab-export ckpt_path=" in proc.stderr and proc.stderr.count("\n") == 1


# ---- lstmlab-eval runtime=onnx ---------------------------------------------------------------------------------------
def evaluate(ckpt, out, workdir, *overrides: str, check: bool = True, env=None):
    """``lstmlab-eval ckpt_path=<ckpt>`` into ``out`` on the data the tiny runs trained on."""
    return run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={ckpt}",
        *overrides,
        f"hydra.run.dir={out}",
        f"paths.data_dir={workdir / 'data'}",
        "extras.print_config=false",
        cwd=workdir,
        check=check,
        env=env,
    )


@pytest.mark.parametrize("family", ["signal", "prices", "classifier", "forecaster"])
def test_eval_on_onnx_runtime_scores_as_the_checkpoint_does(trained, workdir, tmp_path, family):
    """The exported graphs do the test split's forward passes; every test metric is PyTorch's within 1e-4."""
    ckpt, _, graphs = trained(family)
    runs = {}
    for runtime in ("torch", "onnx"):
        evaluate(ckpt, tmp_path / runtime, workdir, f"runtime={runtime}")
        runs[runtime] = json.loads((tmp_path / runtime / "metrics.json").read_text())
    assert "runtime" not in runs["torch"]
    assert runs["onnx"]["runtime"] == "onnx" and runs["onnx"]["exported"] == str(graphs["json"])
    timed = ("latency", "throughput", "peak_memory")  # the classifier's performance table times each runtime
    expected = {k: v for k, v in runs["torch"]["test"].items() if not any(t in k for t in timed)}
    got = runs["onnx"]["test"]
    assert len(expected) >= 3 and set(expected) <= set(got)
    for key, value in expected.items():
        if family == "forecaster" and key == "test/loss":
            # quantiles that cross are published sorted by the graph: their loss, never above the unsorted net's
            assert got[key] <= value * (1 + 1e-4)
            continue
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key
    assert runs["onnx"].get("test_report") == runs["torch"].get("test_report")


def test_eval_on_onnx_runtime_leaves_the_pytorch_net_unused(trained):
    from lstmlab.exporting import load_task
    from lstmlab.onnx_runtime import use_onnx

    ckpt, _, _ = trained("classifier")
    task = load_task(ckpt)[1]
    x, lengths = torch.randn(3, 9, task.net.input_size), torch.tensor([9, 4, 1])
    with torch.no_grad():
        want = task(x, lengths)
        use_onnx(task, ckpt)
        got = task(x, lengths)
    assert relative_gap(got, want) <= TOLERANCE
    with pytest.raises(RuntimeError, match="runtime=onnx"):
        task.net(x, lengths)


def test_eval_on_onnx_runtime_refuses_what_cannot_run(trained, workdir, tmp_path):
    """No export beside the checkpoint, an unknown runtime, no onnxruntime: one line each, exit status 2."""
    import os
    import shutil

    ckpt, _, _ = trained("signal")
    bare = tmp_path / "run" / "checkpoints" / "best.ckpt"  # the run without its export
    shutil.copytree(ckpt.parent.parent / ".hydra", tmp_path / "run" / ".hydra")
    bare.parent.mkdir()
    shutil.copy(ckpt, bare)
    blocker = tmp_path / "blocked" / "onnxruntime"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('onnxruntime is not installed')\n")
    path = os.pathsep.join(p for p in (str(blocker.parent), os.environ.get("PYTHONPATH")) if p)
    cases = [
        (bare, "runtime=onnx", None, f"ckpt_path={bare}: runtime=onnx reads the exported model beside it"),
        (ckpt, "runtime=tflite", None, "runtime='tflite' must be 'torch' or 'onnx'"),
        (ckpt, "runtime=onnx", {"PYTHONPATH": path}, "runtime=onnx needs onnxruntime: pip install"),
    ]
    for checkpoint, runtime, env, expected in cases:
        proc = evaluate(checkpoint, tmp_path / "eval", workdir, runtime, check=False, env=env)
        assert proc.returncode == 2 and proc.stderr.startswith(f"error: {expected}"), proc.stderr[-2000:]
        assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "eval" / "metrics.json").exists()
