"""Performance summary of a classifier at test end, each figure against the target a deployment expects.

Logged as ``test/latency_p50_ms``, ``test/latency_p99_ms`` (batch 1, one test sequence per call),
``test/throughput_seq_per_s`` (batches of ``throughput_batch``), ``test/peak_memory_mb`` (CUDA: peak allocated;
CPU: the process's peak resident set), ``test/num_parameters`` and ``test/model_size_mb``; the table with
AUC-ROC and AUC-PR is printed and written to ``performance.md`` in the run directory.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)

TARGETS = {  # metric: (target, higher is better)
    "test/auroc": (0.88, True),
    "test/aupr": (0.75, True),
    "test/latency_p50_ms": (200.0, False),
    "test/latency_p99_ms": (200.0, False),
    "test/model_size_mb": (50.0, False),
}


class PerformanceSummary(pl.Callback):
    def __init__(self, latency_sequences: int = 50, throughput_batch: int = 256, throughput_repeats: int = 2) -> None:
        self.latency_sequences = latency_sequences
        self.throughput_batch = throughput_batch
        self.throughput_repeats = throughput_repeats

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        split = trainer.datamodule.splits["test"]
        device = pl_module.device
        latencies = []
        for i in range(min(self.latency_sequences, len(split))):
            batch = split[[i]]
            latencies.append(_timed(pl_module, batch, device))
        batch = split[list(range(min(self.throughput_batch, len(split))))]
        best = min(_timed(pl_module, batch, device) for _ in range(self.throughput_repeats))
        size = sum(t.numel() * t.element_size() for t in [*pl_module.parameters(), *pl_module.buffers()])
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2**20
        else:  # ru_maxrss is KiB on Linux, bytes on macOS
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
        values = {
            "test/latency_p50_ms": float(np.percentile(latencies, 50)) * 1e3,
            "test/latency_p99_ms": float(np.percentile(latencies, 99)) * 1e3,
            "test/throughput_seq_per_s": len(batch["y"]) / best,
            "test/peak_memory_mb": peak,
            "test/num_parameters": float(sum(p.numel() for p in pl_module.parameters())),
            "test/model_size_mb": size / 2**20,
        }
        for name, value in values.items():
            pl_module.log(name, value)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        table = performance_table(metrics)
        print(table, flush=True)
        out = Path(trainer.default_root_dir, "performance.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")


def _timed(pl_module: pl.LightningModule, batch: dict, device: torch.device) -> float:
    x, lengths = batch["x"].to(device), batch["lengths"]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    pl_module.probabilities(pl_module(x, lengths))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def performance_table(metrics: dict[str, float]) -> str:
    rows = ["| figure | value | target | met |", "|---|---|---|---|"]
    for name in (
        "test/auroc",
        "test/aupr",
        "test/baseline_auroc",
        "test/baseline_aupr",
        "test/latency_p50_ms",
        "test/latency_p99_ms",
        "test/throughput_seq_per_s",
        "test/peak_memory_mb",
        "test/num_parameters",
        "test/model_size_mb",
    ):
        if name not in metrics:
            continue
        value = metrics[name]
        target, met = "", ""
        if name in TARGETS:
            goal, higher = TARGETS[name]
            target = f"{'>' if higher else '<'} {goal:g}"
            met = "yes" if (value > goal if higher else value < goal) else "no"
        shown = f"{value:,.0f}" if name == "test/num_parameters" else f"{value:.4g}"
        rows.append(f"| {name.removeprefix('test/')} | {shown} | {target} | {met} |")
    return "\n".join(rows)
