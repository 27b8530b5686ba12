"""Trained checkpoints as graphs that serve without the training stack (``lstmlab-export``, ``export.py``).

Each family's graph is traced from an adapter: a small module that holds the model's whole inference path, so a
service feeds raw inputs and gets the task's outputs, scaling included:

- signal and price nets (stateful L=1 or sequence): ``step`` (x_t [B, C], h, c) -> (y_t [B, O], h', c') and
  ``chunk`` (x [B, L, C], h, c) -> (y [B, L, O], h', c'), the state [layers, B, hidden] (a GRU has no ``c``); the
  price graphs z-score the raw window features with the training statistics first;
- classifiers: ``classify`` (x [B, T, C] raw, lengths [B]) -> (logits, weights [B, T]);
- encoder-decoder forecasters: ``forecast`` (context [B, L, C] raw[, series [B]]) -> the raw-unit forecast over
  the horizon and the attention weights [B, H, heads, L].

ONNX goes through torch.onnx's TorchScript-based exporter (``dynamo=False``): on torch 2.13 the dynamo exporter
gives an LSTM's outputs a fixed time dimension (ONNX Runtime then warns at every other length) and takes several
times longer; the TorchScript-based one writes ONNX ``LSTM`` ops with dynamic batch and time. Every file is
written under a temporary name and renamed once all of them are complete, so a failure leaves nothing half-way.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import lstmlab
from lstmlab.checkpoints import load_task_checkpoint, read_checkpoint, run_config_path
from lstmlab.errors import ConfigError
from lstmlab.export import FORMATS

OPSET = 17
WRITTEN_BY = "lstmlab-train"
# the task class of each family, by module and name (imported only for the family being exported)
TASKS = {
    "signal": ("lstmlab.tasks.signal_regression", "SignalRegressionTask"),
    "prices": ("lstmlab.tasks.price_forecast", "PriceForecastTask"),
    "classifier": ("lstmlab.tasks.classification", "SequenceClassificationTask"),
    "forecaster": ("lstmlab.tasks.seq2seq_forecast", "Seq2SeqForecastTask"),
}


# ---- which task wrote a checkpoint ------------------------------------------------------------------------------
def checkpoint_family(checkpoint: dict, path: Path) -> str:
    """The family of an lstmlab checkpoint, from what its task saved; a foreign file gets one line naming it.

    The net's ``_target_`` must name an lstmlab net: loading the task instantiates it, and a checkpoint is data."""
    hparams = checkpoint.get("hyper_parameters")
    net = hparams.get("net") if isinstance(hparams, dict) else None
    if "state_dict" not in checkpoint or not isinstance(net, dict):
        raise ConfigError(
            f"ckpt_path={path}: not an lstmlab checkpoint (no state_dict and saved net config); "
            f"pass a checkpoint written by {WRITTEN_BY}"
        )
    target = str(net.get("_target_", ""))
    if not target.startswith("lstmlab.nets."):
        raise ConfigError(
            f"ckpt_path={path}: its net _target_={target!r} is not an lstmlab net; "
            f"pass a checkpoint written by {WRITTEN_BY}"
        )
    if "class_weighting" in hparams:
        return "classifier"
    if "teacher_forcing" in hparams:
        return "forecaster"
    if "metric_skip_steps" in hparams:
        return "signal"
    if "price_pipeline" in checkpoint:
        return "prices"
    raise ConfigError(
        f"ckpt_path={path}: no lstmlab task saved these hyperparameters; pass a checkpoint written by {WRITTEN_BY}"
    )


def load_task(path: str | Path) -> tuple[str, Any]:
    """(family, task in eval mode on the CPU) of the checkpoint at ``path``, read with ``weights_only=True``."""
    from importlib import import_module

    path = Path(path)
    family = checkpoint_family(read_checkpoint(path, WRITTEN_BY), path)
    module, name = TASKS[family]
    task = load_task_checkpoint(getattr(import_module(module), name), path, WRITTEN_BY)
    return family, task.eval()


# ---- adapters: the inference path of each family as one traceable module ----------------------------------------
def is_lstm(net: nn.Module) -> bool:
    rnn = net.layers[0] if hasattr(net, "layers") else net.rnn
    return isinstance(rnn, nn.LSTM)


class RecurrentGraph(nn.Module):
    """A stateful or sequence net from an explicit state to the state after: one step (``single_step``,
    x [B, C]) or a chunk (x [B, L, C]); with ``mean`` / ``std`` the inputs are z-scored first."""

    def __init__(self, net: nn.Module, single_step: bool, mean: Tensor | None = None, std: Tensor | None = None):
        super().__init__()
        self.net = net
        self.single_step = single_step
        self.per_layer = hasattr(net, "layers")  # StatefulLSTM keeps one module (and one state) per layer
        self.lstm = is_lstm(net)
        self.scaled = mean is not None
        if self.scaled:
            self.register_buffer("mean", mean.float())
            self.register_buffer("std", std.float())

    def forward(self, x: Tensor, h: Tensor, c: Tensor | None = None):
        if self.scaled:
            x = (x - self.mean) / self.std
        if self.single_step:
            x = x.unsqueeze(1)
        if self.per_layer:
            layers = range(len(self.net.layers))
            state = [(h[i : i + 1], c[i : i + 1]) if self.lstm else h[i : i + 1] for i in layers]
            y, after = self.net(x, state)
            h_out = torch.cat([s[0] if self.lstm else s for s in after])
            c_out = torch.cat([s[1] for s in after]) if self.lstm else None
        else:
            y, after = self.net(x, (h, c) if self.lstm else h)
            h_out, c_out = after if self.lstm else (after, None)
        if self.single_step:
            y = y[:, 0]
        return (y, h_out, c_out) if self.lstm else (y, h_out)


def hold_task(adapter: nn.Module, task) -> None:
    """Let ``adapter`` call ``task`` (its exact inference math) with only the task's net as a submodule: TorchScript's
    tracer walks every submodule's attributes, and a LightningModule's ``trainer`` raises outside a Trainer. The
    task's other tensors (the classifier's z-score) enter the trace as constants."""
    object.__setattr__(adapter, "task", task)
    adapter.net = task.net


class ClassifierGraph(nn.Module):
    """Raw sequences and their lengths -> the task's logits and the weight of every step in the pooling."""

    def __init__(self, task) -> None:
        super().__init__()
        hold_task(self, task)
        # packing is a data-dependent op no graph holds; unpacked, the outputs at the valid steps are the same
        task.net.pack = False
        self.pooling = getattr(task.net, "pooling", "mean")  # LSTM-FCN averages its convolutions over time

    def forward(self, x: Tensor, lengths: Tensor):
        logits = self.task(x, lengths)
        if self.pooling == "attention":
            return logits, self.task.net.attention_weights
        steps = torch.arange(x.shape[1])[None, :]
        if self.pooling == "last":
            return logits, (steps == lengths[:, None] - 1).float()
        return logits, (steps < lengths[:, None]).float() / lengths[:, None].float()


class ForecastGraph(nn.Module):
    """A raw context (and the series index with ``scaler=train``) -> the task's raw forecast and attention."""

    def __init__(self, task) -> None:
        super().__init__()
        hold_task(self, task)
        self.scaling = task.scaling
        # the scaler's warning about a constant context is a data-dependent branch that only logs: the graph has
        # no log, so take it as said
        task.scaling._told_constant = True

    def forward(self, x: Tensor, series: Tensor | None = None):
        return self.task(x, series, return_attention=True)


# ---- what to trace, per family: name -> (adapter, example inputs, inputs, outputs) --------------------------------
def tensor_spec(name: str, shape: list, dtype: str = "float32") -> dict:
    """A graph input or output as the JSON lists it: named dimensions are dynamic."""
    return {"name": name, "shape": shape, "dtype": dtype}


def recurrent_graphs(net: nn.Module, mean: Tensor | None, std: Tensor | None) -> dict:
    channels, layers, hidden = net.input_size, net.num_layers, net.hidden_size
    outputs = net.head[-1].out_features
    state_names = ["h", "c"] if is_lstm(net) else ["h"]
    state = [tensor_spec(n, [layers, "batch", hidden]) for n in state_names]
    state_out = [tensor_spec(f"{n}_out", [layers, "batch", hidden]) for n in state_names]
    zeros = [torch.zeros(layers, 2, hidden) for _ in state_names]
    return {
        "step": (
            RecurrentGraph(net, True, mean, std),
            (torch.randn(2, channels), *zeros),
            [tensor_spec("x", ["batch", channels]), *state],
            [tensor_spec("y", ["batch", outputs]), *state_out],
        ),
        "chunk": (
            RecurrentGraph(net, False, mean, std),
            (torch.randn(2, 5, channels), *zeros),
            [tensor_spec("x", ["batch", "time", channels]), *state],
            [tensor_spec("y", ["batch", "time", outputs]), *state_out],
        ),
    }


def classifier_graphs(task) -> dict:
    channels, steps = task.net.input_size, 7
    logits = ["batch"] if task.binary else ["batch", task.net.num_classes]
    return {
        "classify": (
            ClassifierGraph(task),
            (torch.randn(3, steps, channels), torch.tensor([steps, 4, 1])),
            [tensor_spec("x", ["batch", "time", channels]), tensor_spec("lengths", ["batch"], "int64")],
            [tensor_spec("logits", logits), tensor_spec("weights", ["batch", "time"])],
        )
    }


def forecaster_graphs(task) -> dict:
    info, net = task.info, task.net
    context, horizon, targets = info["input_len"], info["horizon"], net.output_size
    by_series = task.hparams.scaler == "train"
    example = torch.randn(2, context, net.input_size).abs() + 1.0  # positive: a log transform needs it
    forecast = ["batch", horizon, targets] + ([net.num_quantiles] if net.num_quantiles > 1 else [])
    inputs = [tensor_spec("x", ["batch", context, net.input_size])]
    if by_series:
        inputs.append(tensor_spec("series", ["batch"], "int64"))
    return {
        "forecast": (
            ForecastGraph(task),
            (example, torch.zeros(2, dtype=torch.long)) if by_series else (example,),
            inputs,
            [tensor_spec("forecast", forecast), tensor_spec("attention", ["batch", horizon, net.num_heads, context])],
        )
    }


def family_graphs(family: str, task) -> dict:
    if family == "classifier":
        return classifier_graphs(task)
    if family == "forecaster":
        return forecaster_graphs(task)
    if family == "prices":
        pipeline = task.pipeline
        return recurrent_graphs(task.net, torch.as_tensor(pipeline.feature_mean), torch.as_tensor(pipeline.feature_std))
    return recurrent_graphs(task.net, None, None)


# ---- what the JSON says beside the graphs ------------------------------------------------------------------------
def family_details(family: str, task, ckpt: Path) -> dict:
    """Scaling statistics and what the outputs mean, per family."""
    if family == "signal":
        return {"scaling": None, "outputs": "y: the net's per-step regression of the target series (no scaling)"}
    if family == "prices":
        pipeline = task.pipeline.to_dict()
        return {
            "scaling": {"inside_graph": "x is z-scored by feature_mean / feature_std", **pipeline},
            "features": pipeline["features"],
            "outputs": (
                "y[..., 0]: the raw forecast r; target=close: last_close * exp(r * target_std + target_mean); "
                "target=return: expm1(r * target_std + target_mean); target=direction: sigmoid(r), P(rise)"
            ),
        }
    if family == "classifier":
        classes = class_names(ckpt) or [f"class_{k}" for k in range(task.net.num_classes)]
        pooling = getattr(task.net, "pooling", "mean")
        return {
            "scaling": {
                "inside_graph": "x is z-scored per channel",
                "input_mean": task.input_mean.tolist(),
                "input_std": task.input_std.tolist(),
            },
            "classes": classes,
            "binary": bool(task.binary),
            "threshold": float(task.decision_threshold) if task.binary else None,
            "pooling": pooling,
            "outputs": (
                "logits: binary, one logit (P(class 1) = sigmoid, positive at P >= threshold); else one per class "
                "(softmax). weights: "
                + {
                    "attention": "the attention pooling's weights over time (0 on padding)",
                    "last": "1 at each sequence's last valid step (pooling=last reads the forward direction there "
                    "and the backward one at step 0)",
                    "mean": "1/length on every valid step (the mean over time the pooling takes)",
                }[pooling]
            ),
        }
    info, hp = task.info, task.hparams
    return {
        "scaling": {
            "inside_graph": "the context is scaled and the forecast inverted inside the graph",
            "scaler": hp.scaler,
            "affine": bool(hp.scaler_affine),
            "log_transform": bool(hp.log_transform),
            "difference": bool(hp.difference),
            "base_forecast": hp.base_forecast,
            "series_loc": info.get("series_loc"),
            "series_scale": info.get("series_scale"),
        },
        "columns": info["columns"],
        "target_names": info["target_names"],
        "series_ids": info["series_ids"],
        "season_length": info["season_length"],
        "input_len": info["input_len"],
        "horizon": info["horizon"],
        "quantiles": task.quantile_levels,
        "outputs": "forecast: raw units, [batch, horizon, targets] (+ quantile levels in increasing order); "
        "attention: [batch, horizon, heads, context]",
    }


def class_names(ckpt: Path) -> list[str] | None:
    """The class names the run reported in its metrics.json (the checkpoint does not hold them)."""
    metrics = ckpt.resolve().parent.parent / "metrics.json"
    try:
        report = json.loads(metrics.read_text())
    except (OSError, ValueError):
        return None
    for stage in ("test_report", "val_report"):
        names = (report.get(stage) or {}).get("classes")
        if names:
            return [str(n) for n in names]
    return None


def config_hash(ckpt: Path) -> str | None:
    config = run_config_path(ckpt)
    return "sha256:" + hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None


# ---- writing ---------------------------------------------------------------------------------------------------
def output_prefix(ckpt: Path, out: str | None) -> Path:
    """Where the files go: ``out`` (a suffix of ours dropped) or the checkpoint's path without its suffix."""
    prefix = Path(out) if out else ckpt.with_suffix("")
    if prefix.suffix in (*FORMATS.values(), ".json"):
        prefix = prefix.with_suffix("")
    folder = prefix.parent
    if not folder.is_dir():
        raise ConfigError(f"out={out}: directory {folder} does not exist; create it or name an existing one")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"out={out or prefix}: directory {folder} is not writable; pass out=<writable dir>/<name>")
    return prefix


def write_graph(adapter: nn.Module, example: tuple, inputs: list[dict], outputs: list[dict], fmt: str, path: Path):
    adapter.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # tracing warns about every Python int it freezes (sizes, the horizon): intended, the named axes stay free
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(adapter, example, check_trace=False), str(path))
            return
        dynamic = {
            spec["name"]: {axis: dim for axis, dim in enumerate(spec["shape"]) if isinstance(dim, str)}
            for spec in inputs + outputs
        }
        torch.onnx.export(
            adapter,
            example,
            str(path),
            input_names=[s["name"] for s in inputs],
            output_names=[s["name"] for s in outputs],
            dynamic_axes={name: axes for name, axes in dynamic.items() if axes},
            opset_version=OPSET,
            dynamo=False,
        )


def export_checkpoint(ckpt_path: str | Path, fmt: str, out: str | None = None) -> list[Path]:
    """Write the graphs of the checkpoint at ``ckpt_path`` in ``fmt`` (``onnx`` or ``torchscript``) and their JSON;
    returns the paths written, the JSON last."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: unknown; choose one of {list(FORMATS)}")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401  (torch.onnx writes through it)
        except ImportError:
            raise ConfigError("format=onnx needs the onnx package: pip install 'lstmlab[export]'") from None
    ckpt = Path(ckpt_path)
    family, task = load_task(ckpt)
    prefix = output_prefix(ckpt, out)
    graphs = family_graphs(family, task)
    final = {name: prefix.with_name(f"{prefix.name}.{name}{FORMATS[fmt]}") for name in graphs}
    description = {
        "lstmlab_version": lstmlab.__version__,
        "torch_version": torch.__version__,
        "format": fmt,
        "opset": OPSET if fmt == "onnx" else None,
        "family": family,
        "net": type(task.net).__name__,
        "checkpoint": str(ckpt),
        "config_hash": config_hash(ckpt),
        "graphs": {
            name: {"file": final[name].name, "inputs": inputs, "outputs": outputs}
            for name, (_, _, inputs, outputs) in graphs.items()
        },
        **family_details(family, task, ckpt),
    }
    final["json"] = prefix.with_name(f"{prefix.name}.{fmt}.json")
    temporary = {name: path.with_name(f".{path.name}.{os.getpid()}.tmp") for name, path in final.items()}
    try:
        for name, (adapter, example, inputs, outputs) in graphs.items():
            write_graph(adapter, example, inputs, outputs, fmt, temporary[name])
        temporary["json"].write_text(json.dumps(description, indent=2) + "\n")
        for name, path in final.items():
            os.replace(temporary[name], path)
    except OSError as err:
        raise ConfigError(f"out={out or prefix}: cannot write {err.filename or prefix} ({err.strerror})") from None
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
    return list(final.values())
