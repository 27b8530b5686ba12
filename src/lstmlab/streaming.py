"""Live price forecasts from a trained checkpoint: ticks in, one prediction per ``step_size`` ticks out.

``lstmlab-stream`` (``stream.py``) calls ``run_stream``; Python code can use ``PriceStreamer`` or
``stream_predictions(ticks, checkpoint)`` directly with any iterable of ticks. The feature settings,
normalisation and target come from the checkpoint; the buffer and the features are those of training
(``lstmlab.data.price_features``), so a stream over a CSV sees exactly the inputs training saw.

A tick that cannot be used (a malformed or blank line, a non-numeric or non-positive price, a date not after the
previous tick's) is skipped with a warning on stderr, and the stream goes on.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from lstmlab.checkpoints import check_checkpoint_file, load_task_checkpoint
from lstmlab.data.price_features import FeatureBuffer, PricePipeline
from lstmlab.data.prices import DEFAULT_COLUMNS, header_names, header_positions, parse_price, parse_row
from lstmlab.errors import ConfigError, DataFileError
from lstmlab.onnx_runtime import OnnxGraph, check_runtime, read_export


@dataclass(frozen=True)
class Tick:
    close: float
    volume: float | None = None
    date: str | None = None


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def load_task(ckpt_path: str | Path):
    """The ``PriceForecastTask`` of a checkpoint written by ``lstmlab-train experiment=price_forecast``."""
    from lstmlab.tasks.price_forecast import PriceForecastTask

    path = check_checkpoint_file(ckpt_path, "a .ckpt file of a price_forecast run")
    task = load_task_checkpoint(PriceForecastTask, path, "lstmlab-train experiment=price_forecast")
    if task.pipeline is None:
        raise ConfigError(
            f"ckpt_path={path}: the checkpoint holds no price features (feature settings and "
            "normalisation); pass a checkpoint written by lstmlab-train experiment=price_forecast"
        )
    return task.eval()


def check_features(pipeline: PricePipeline, requested: Mapping[str, Any] | None, ckpt_path: str | Path) -> None:
    """Every feature setting the stream config names (non-null) must be the checkpoint's own."""
    trained = pipeline.features.to_dict()
    for key, value in (requested or {}).items():
        if value is None:
            continue
        if key not in trained:
            raise ConfigError(f"features.{key}: unknown feature setting; known: {sorted(trained)}")
        wanted = list(value) if isinstance(value, (list, tuple)) else value
        if wanted != trained[key]:
            raise ConfigError(
                f"features.{key}={wanted} but the checkpoint {ckpt_path} was trained with {key}={trained[key]}; "
                f"drop the override (features.{key}=null takes the checkpoint's) or train a model with these features"
            )


class OnnxPriceModel:
    """A price model exported by ``lstmlab-export`` (``runtime=onnx``), run by ONNX Runtime from the JSON beside
    ``ckpt_path`` (``best.ckpt`` -> ``best.onnx.json``), which holds the pipeline; the graphs z-score raw features.
    A stateful model carries its state from window to window through the ``step`` graph; a sequence model reads
    each window of ``seq_len`` feature vectors through the ``chunk`` graph from a zero state, as it was trained."""

    def __init__(self, ckpt_path: str | Path) -> None:
        info, described = read_export(ckpt_path, "prices", "streams a price model exported with format=onnx")
        self.pipeline = PricePipeline.from_dict(info["scaling"])
        # one window is too small to split across cores (see stream.yaml threads)
        self.graph = OnnxGraph(described, info, "step" if self.pipeline.stateful else "chunk", threads=1)
        self.reset_state()

    def reset_state(self) -> None:
        self.state = self.graph.zero_state(1)

    def raw_output(self, features: np.ndarray) -> torch.Tensor:
        """Raw features [C] (stateful: one step, the state carried) or [seq_len, C] (a window) -> raw output [1]."""
        y, *after = self.graph.run({"x": features[None].astype(np.float32), **self.state})
        if self.pipeline.stateful:
            self.state = dict(zip(self.state, after))
            return torch.from_numpy(y[:, 0])
        return torch.from_numpy(y[:, -1, 0])


class PriceStreamer:
    """Holds the tick buffer and the last ``seq_len`` feature vectors; ``push`` returns a prediction or None.

    A stateful model (trained with ``data.chunked=true``) instead carries its (h, c) from window to window with
    ``net.step()``: a prediction at every window, from the first.
    """

    def __init__(self, task, emit_features: bool = False) -> None:
        self.onnx = isinstance(task, OnnxPriceModel)
        self.task = task if self.onnx else task.eval()
        self.pipeline: PricePipeline = task.pipeline
        if self.pipeline.stateful:
            (self.task if self.onnx else self.task.net).reset_state()
        self.buffer = FeatureBuffer(self.pipeline.features)
        self.sequence = np.zeros((self.pipeline.seq_len, len(self.pipeline.features.names)), np.float32)
        # the exported graphs z-score the features themselves: they get them raw
        self.raw_sequence = np.zeros(self.sequence.shape) if self.onnx else None
        self.windows = 0
        self.ticks = 0
        self.emit_features = emit_features

    def push(self, tick: Tick) -> dict | None:
        self.ticks += 1
        features = self.buffer.push(tick.close, tick.volume)
        if features is None:
            return None
        self.sequence[:-1] = self.sequence[1:]
        self.sequence[-1] = self.pipeline.normalise(features)
        if self.onnx:
            self.raw_sequence[:-1] = self.raw_sequence[1:]
            self.raw_sequence[-1] = features
        self.windows += 1
        record: dict[str, Any] = {"tick": self.ticks, "date": tick.date, "close": tick.close}
        raw = self.raw_forecast()
        if raw is not None:
            value = self.pipeline.output(raw.double(), torch.tensor([tick.close], dtype=torch.float64))
            record |= {
                "target": self.pipeline.target,
                "horizon": self.pipeline.horizon,
                "prediction": float(value[0]),
                "rise": bool(self.pipeline.rises(raw)[0]),
            }
        elif not self.emit_features:
            return None
        if self.emit_features:
            record["features"] = features.tolist()
        return record

    @torch.no_grad()
    def raw_forecast(self) -> torch.Tensor | None:
        """The net's raw output [1] for the newest window; None while fewer than ``seq_len`` windows were seen."""
        if self.onnx:
            if self.pipeline.stateful:
                return self.task.raw_output(self.raw_sequence[-1])
            return self.task.raw_output(self.raw_sequence) if self.windows >= self.pipeline.seq_len else None
        if self.pipeline.stateful:  # advance the carried (h, c) by the newest window
            return self.task.net.step(torch.from_numpy(self.sequence[-1:]))[:, 0]
        if self.windows < self.pipeline.seq_len:
            return None
        return self.task(torch.from_numpy(self.sequence).unsqueeze(0))


def stream_predictions(ticks: Iterable, checkpoint, emit_features: bool = False) -> Iterator[dict]:
    """Predictions for an iterable of ticks (``Tick``, a close as a number, a mapping with ``close`` and
    ``volume``/``date`` keys, or a ``(date, close[, volume])`` tuple); ``checkpoint`` is a path or a loaded task."""
    task = load_task(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    streamer = PriceStreamer(task, emit_features)
    needs_volume = streamer.pipeline.features.uses_volume
    for n, item in enumerate(ticks, start=1):
        try:
            tick = as_tick(item, needs_volume)
        except ValueError as err:
            warn(f"tick {n}: {err}; skipped")
            continue
        record = streamer.push(tick)
        if record is not None:
            yield record


def as_tick(item: Any, needs_volume: bool) -> Tick:
    if isinstance(item, Tick):
        tick = item
    elif isinstance(item, Mapping):
        volume = item.get("volume")
        tick = Tick(
            parse_price(item.get("close"), "close"),
            None if volume is None else parse_price(volume, "volume"),
            None if item.get("date") is None else str(item["date"]),
        )
    elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
        tick = Tick(
            parse_price(item[1], "close"), parse_price(item[2], "volume") if len(item) == 3 else None, str(item[0])
        )
    else:
        tick = Tick(parse_price(item, "close"))
    if not tick.close > 0 or not math.isfinite(tick.close):
        raise ValueError(f"close {tick.close} is not a positive price")
    if needs_volume and tick.volume is None:
        raise ValueError("no volume, and the model's features use it")
    return tick


def csv_ticks(
    lines: Iterable[str],
    columns: Mapping[str, str],
    needs_volume: bool,
    name: str,
    on_skip: Callable[[str], None] = warn,
) -> Iterator[Tick]:
    """Ticks of CSV text (a header row first); bad rows and dates out of order are reported and skipped."""
    rows = csv.reader(lines)
    header = next(rows, None)
    if header is None:
        raise DataFileError(f"source={name}: no header row; expected CSV with the columns {dict(columns)}")
    required = ("date", "close", "volume") if needs_volume else ("date", "close")
    positions = header_positions(header, columns, required, f"source={name}")
    positions = {role: i for role, i in positions.items() if role in required}
    found = header_names(header, positions)
    last_key, last_date = -math.inf, None
    for line, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            on_skip(f"{name} line {line}: blank line (a gap in the feed); skipped")
            continue
        try:
            stamp, order, values = parse_row(row, positions, found)
        except ValueError as err:
            on_skip(f"{name} line {line}: {err}; skipped")
            continue
        if order <= last_key:
            on_skip(f"{name} line {line}: date {stamp!r} is not after the previous tick's {last_date!r}; skipped")
            continue
        last_key, last_date = order, stamp
        yield Tick(values["close"], values.get("volume"), stamp)


def open_source(source: str) -> tuple[TextIO, str]:
    if source == "-":
        return sys.stdin, "stdin"
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"source={source}: file not found; pass a CSV file of ticks, or source=- to read stdin")
    return path.open(newline=""), str(path)


def run_stream(cfg) -> int:
    """``lstmlab-stream``: predictions as JSON lines (or a table) on stdout; returns the number of predictions."""
    from omegaconf import OmegaConf

    for key in ("ckpt_path", "source"):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(
                f"{key} is required: lstmlab-stream ckpt_path=outputs/<date>/<time>/checkpoints/best.ckpt "
                "source=ticks.csv (or source=- for stdin)"
            )
    if cfg.format not in ("jsonl", "table"):
        raise ConfigError(f"format={cfg.format!r} must be 'jsonl' or 'table'")
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    runtime = check_runtime(cfg.get("runtime"))
    task = OnnxPriceModel(cfg.ckpt_path) if runtime == "onnx" else load_task(cfg.ckpt_path)
    pipeline = task.pipeline
    check_features(pipeline, OmegaConf.to_container(cfg.features) if cfg.get("features") else None, cfg.ckpt_path)
    columns = {
        **DEFAULT_COLUMNS,
        **pipeline.columns,
        **{k: v for k, v in (OmegaConf.to_container(cfg.columns) if cfg.get("columns") else {}).items() if v},
    }
    stream, name = open_source(str(cfg.source))
    write = table_writer(pipeline) if cfg.format == "table" else json_writer
    count = 0
    try:
        ticks = csv_ticks(stream, columns, pipeline.features.uses_volume, name)
        for record in stream_predictions(ticks, task, emit_features=bool(cfg.emit_features)):
            write(record)
            count += "prediction" in record
    finally:
        if stream is not sys.stdin:
            stream.close()
    print(f"{count} predictions", file=sys.stderr)
    return count


def json_writer(record: dict) -> None:
    print(json.dumps(record), flush=True)


def table_writer(pipeline: PricePipeline) -> Callable[[dict], None]:
    from rich.console import Console

    console = Console(highlight=False)
    console.print(
        f"[bold]{'tick':>8} {'date':<20} {'close':>12} {pipeline.target + ' +' + str(pipeline.horizon):>14} "
        f"{'rise':>5}[/bold]"
    )

    def write(record: dict) -> None:
        if "prediction" in record:
            console.print(
                f"{record['tick']:>8} {str(record['date']):<20} {record['close']:>12.4f} "
                f"{record['prediction']:>14.4f} {'yes' if record['rise'] else 'no':>5}"
            )

    return write
