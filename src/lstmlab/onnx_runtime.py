"""Exported models on ONNX Runtime (``runtime=onnx``): the description ``lstmlab-export`` wrote beside a checkpoint,
one of its graphs as a torch module (``OnnxGraph``), and the graphs put in place of a task's PyTorch forward passes
(``use_onnx``, for ``lstmlab-eval``). ``lstmlab-stream`` (``streaming.OnnxPriceModel``) reads its graph the same way.

Each family's graph takes the place of what ``exporting`` traced it from, so the task's own test loop and metrics
score it unchanged:

- signal and prices: the ``chunk`` graph is the net's forward, from a zero state (the test loop's); the price graph
  z-scores raw features and the price datamodule hands out z-scored ones, so they are unscaled on the way in;
- classifiers: the ``classify`` graph is the task's forward (raw sequences and lengths -> logits);
- encoder-decoder forecasters: the ``forecast`` graph is the task's forward and gives the test loop its raw
  forecast; the loss, in the net's scaled units, is that forecast's, scaled back. With quantiles that cross, the
  graph publishes them sorted (as the task's forward does) and the loss is the sorted ones' (it is lower); the
  PyTorch run scores the net's unsorted output. Every other metric is of the published forecast in both runtimes.

The PyTorch net stays loaded (its sizes, the tasks' checks on the data); calling its forward raises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lstmlab.choices import RUNTIMES
from lstmlab.errors import ConfigError

# numpy's type of each dtype the description names
DTYPES = {"float32": np.float32, "int64": np.int64}


def check_runtime(runtime: str | None) -> str:
    """``runtime``'s value (null: torch), or a ``ConfigError`` naming it."""
    runtime = runtime or "torch"
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"runtime={runtime!r} must be 'torch' or 'onnx' (the graphs lstmlab-export wrote beside the checkpoint)"
        )
    return runtime


def read_export(ckpt_path: str | Path, family: str, use: str) -> tuple[dict, Path]:
    """(description, its path) of the ONNX export of the checkpoint at ``ckpt_path`` (``best.ckpt`` ->
    ``best.onnx.json`` beside it; a ``.json`` path is the description itself), checked to be a ``family`` model;
    ``use`` ends the error line when it is not (what runtime=onnx does with it)."""
    path = Path(ckpt_path)
    described = path if path.suffix == ".json" else path.with_suffix(".onnx.json")
    if not described.is_file():
        raise ConfigError(
            f"ckpt_path={path}: runtime=onnx reads the exported model beside it ({described} not found); "
            f"run lstmlab-export ckpt_path={path} first"
        )
    try:
        info = json.loads(described.read_text())
    except (OSError, ValueError) as err:
        info = f"{type(err).__name__}: {err}"
    if not isinstance(info, dict):
        raise ConfigError(
            f"ckpt_path={path}: {described} is not an export description ({info}); "
            f"run lstmlab-export ckpt_path={path} again"
        )
    if info.get("family") != family or info.get("format") != "onnx":
        raise ConfigError(
            f"ckpt_path={path}: {described} describes a {info.get('family')} model in {info.get('format')}; "
            f"runtime=onnx {use}"
        )
    return info, described


class OnnxGraph(nn.Module):
    """One graph of an export on ONNX Runtime (CPU), called as a torch module: its inputs as tensors by name (a
    name the graph does not take is passed over, so one call serves a forecaster with and without ``series``), its
    outputs as tensors on the device of ``x``. ``run`` takes and gives numpy arrays, for callers that hold them.
    ``threads``: ONNX Runtime's intra-op threads (None: its default, every core)."""

    def __init__(self, described: Path, info: dict, name: str, threads: int | None = None) -> None:
        super().__init__()
        spec = info["graphs"][name]
        self.inputs: list[dict] = spec["inputs"]
        path = described.parent / spec["file"]
        if not path.is_file():
            raise ConfigError(
                f"{described} names the graph {path.name}, not found beside it; "
                f"run lstmlab-export ckpt_path={info.get('checkpoint')} again"
            )
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("runtime=onnx needs onnxruntime: pip install 'lstmlab[export]'") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own errors: a damaged or foreign file
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"{path}: ONNX Runtime cannot load it ({reason}); "
                f"run lstmlab-export ckpt_path={info.get('checkpoint')} again"
            ) from None

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feed)

    def zero_state(self, batch: int) -> dict[str, np.ndarray]:
        """A recurrent graph's zero state for ``batch`` streams: each input but ``x``, [layers, batch, hidden]."""
        return {
            spec["name"]: np.zeros((spec["shape"][0], batch, spec["shape"][2]), np.float32)
            for spec in self.inputs
            if spec["name"] != "x"
        }

    def forward(self, **tensors: Tensor | None) -> tuple[Tensor, ...]:
        feed = {}
        for spec in self.inputs:
            value = tensors.get(spec["name"])
            if value is None:
                raise ValueError(f"the graph's input {spec['name']!r} was not given")
            feed[spec["name"]] = value.detach().cpu().numpy().astype(DTYPES[spec["dtype"]], copy=False)
        device = tensors["x"].device
        return tuple(torch.from_numpy(out).to(device) for out in self.run(feed))


# ---- lstmlab-eval runtime=onnx: the graphs in place of a task's forward passes ----------------------------------
def use_onnx(task, ckpt: Path, threads: int | None = None) -> Path:
    """Run ``task``'s forward passes (test, validate, predict) on the ONNX export beside ``ckpt`` instead of PyTorch;
    returns the description's path."""
    from lstmlab.exporting import TASKS

    family = next((f for f, (_, name) in TASKS.items() if type(task).__name__ == name), None)
    if family is None:
        raise ConfigError(
            f"ckpt_path={ckpt}: lstmlab-export has no graphs of a {type(task).__name__}; use runtime=torch"
        )
    info, described = read_export(
        ckpt, family, f"tests this {family} checkpoint's own export: run lstmlab-export ckpt_path={ckpt} format=onnx"
    )
    if family == "classifier":
        graph = OnnxGraph(described, info, "classify", threads)
        task.forward = lambda x, lengths: graph(x=x, lengths=lengths)[0]
        refuse_forward(task.net)
    elif family == "forecaster":
        use_forecast_graph(task, OnnxGraph(described, info, "forecast", threads))
        refuse_forward(task.net)
    else:
        use_chunk_graph(task, OnnxGraph(described, info, "chunk", threads), unscale=family == "prices")
    return described


def refuse_forward(net: nn.Module) -> None:
    """The net stays for its sizes; running it would score PyTorch under runtime=onnx's name."""

    def forward(*args: Any, **kwargs: Any):
        raise RuntimeError("runtime=onnx: the PyTorch net was called in place of the exported graph")

    net.forward = forward


def use_chunk_graph(task, graph: OnnxGraph, unscale: bool) -> None:
    """The chunk graph as the net's forward (``net(x, state) -> (y, state after)``) from a zero state; with
    ``unscale`` (prices) the z-scored features go in raw, unscaled by the statistics the datamodule applied."""

    def forward(x: Tensor, state=None):
        if state is not None:
            raise ValueError("runtime=onnx runs the net from a zero state, as testing does; a state was given")
        if unscale:
            pipeline = task.pipeline
            std, mean = (torch.as_tensor(v, dtype=torch.float64) for v in (pipeline.feature_std, pipeline.feature_mean))
            x = (x.double() * std.to(x.device) + mean.to(x.device)).float()
        zero = {name: torch.from_numpy(value) for name, value in graph.zero_state(len(x)).items()}
        y, *after = graph(x=x, **zero)
        return y, tuple(after) if len(after) > 1 else after[0]

    task.net.forward = forward


def use_forecast_graph(task, graph: OnnxGraph) -> None:
    """The forecast graph as the task's forward and as the net's part of the test loop (``net_forecast``)."""

    def forward(x: Tensor, series: Tensor | None = None, return_attention: bool = False):
        if series is None:  # the task's forward: the first series' statistics
            series = torch.zeros(len(x), dtype=torch.long, device=x.device)
        forecast, attention = graph(x=x, series=series)
        return (forecast, attention) if return_attention else forecast

    def net_forecast(x: Tensor, series: Tensor, horizon: int, calibrated: bool = True):  # the graph widens always
        forecast = forward(x, series)
        _, stats = task.scaling.encode(x, series)
        return task.scaling.encode_target(forecast, stats), forecast, stats

    task.forward = forward
    task.net_forecast = net_forecast
