"""What every measurement shares: the run's settings, interleaved timing, summary statistics, result rows."""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

NOT_BUILT = "n/a (not built yet)"


@dataclass
class Context:
    """The run's settings. ``scale`` multiplies every workload size (data, timed iterations, streams)."""

    quick: bool
    scale: float
    repeats: int | None  # None: each measurement's own default (fewer with --quick)
    device: torch.device
    out: Path
    data_dir: Path
    work_dir: Path  # scratch space (Trainer run dirs); removed at the end

    def reps(self, full: int, quick: int) -> int:
        """Repeats of a measurement: ``--repeats`` if given, else its full or quick default."""
        if self.repeats is not None:
            return max(1, self.repeats)
        return quick if self.quick else full

    def size(self, full: float, quick: float, minimum: int = 1) -> int:
        """A workload size (iterations, samples ...): the full or quick base times ``--scale``."""
        return max(minimum, int(round((quick if self.quick else full) * self.scale)))

    def sync(self) -> None:
        """Wait for the device: timings on a GPU must not stop while kernels are still queued."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@dataclass
class Row:
    """One line of the table: what was measured, the figures, the goal and whether it is met."""

    what: str
    figures: str
    goal: str = "-"
    met: str = "-"  # "met", "missed", "-" (no goal) or NOT_BUILT


@dataclass
class Measurement:
    key: str  # "training_throughput"
    number: int  # the item of issue 7
    title: str
    goal: str | None = None
    met: bool | None = None
    status: str = "measured"  # or NOT_BUILT
    figures: dict[str, dict] = field(default_factory=dict)  # name -> stats(...)
    rows: list[Row] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # the workload sizes used
    notes: str = ""
    series: dict[str, Any] = field(default_factory=dict)  # data behind the plot

    def to_json(self) -> dict:
        return {
            "number": self.number,
            "title": self.title,
            "status": self.status,
            "goal": self.goal,
            "met": self.met,
            "figures": self.figures,
            "settings": self.settings,
            "notes": self.notes,
            **({"series": self.series} if self.series else {}),
        }


def not_built(key: str, number: int, title: str, goal: str, issue: str) -> Measurement:
    """A measurement whose subject has not landed yet: a row that says so, no figures."""
    return Measurement(
        key=key,
        number=number,
        title=title,
        goal=goal,
        status=NOT_BUILT,
        rows=[Row(title, NOT_BUILT, goal, NOT_BUILT)],
        notes=f"comes with {issue}",
    )


def names_from(choices: Iterable[str], what: str) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated, non-empty subset of ``choices`` (``what`` names them in the error)."""
    allowed = list(choices)

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; choose from {','.join(allowed)}")
        return names

    return parse


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: need an integer >= 1")
    return int(text)


# ---- timing ----------------------------------------------------------------------------------------
def interleaved(cases: dict[str, Callable[[], float]], repeats: int, warmup: bool = True) -> dict[str, list[float]]:
    """Run every case once per repeat, rotating the order each repeat (ABC, BCA, CAB ...).

    Each callable does one repeat of its case and returns the figure of that repeat. Slow and fast phases of
    a shared machine then fall on every case alike, and ``ratio(a, b)`` pairs repeats measured side by side.
    """
    names = list(cases)
    if warmup:
        for name in names:
            cases[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            gc.collect()
            samples[name].append(cases[name]())
    return samples


def timed(fn: Callable[[], Any], ctx: Context) -> float:
    """Seconds ``fn`` takes, the device drained before and after."""
    ctx.sync()
    start = time.perf_counter()
    fn()
    ctx.sync()
    return time.perf_counter() - start


def stats(values: list[float], unit: str) -> dict:
    """Median, min and max of the repeats (the raw values kept for whoever wants more)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "unit": unit,
        "values": [round(v, 6) for v in values],
    }


def ratio(a: list[float], b: list[float]) -> list[float]:
    """Per-repeat ratios a/b of two interleaved cases."""
    return [x / y for x, y in zip(a, b)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))
    return ordered[index]


# ---- formatting ------------------------------------------------------------------------------------
def number(x: float) -> str:
    """3 significant digits, thousands separated: 123,000 / 45.6 / 0.789."""
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        digits = len(str(int(abs(x))))
        return f"{round(x, 3 - digits):,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def show(figure: dict, unit: str | None = None) -> str:
    """``median unit (min-max)`` of a stats dict."""
    unit = figure["unit"] if unit is None else unit
    sep = "" if unit in ("x", "%") else " "
    spread = f" ({number(figure['min'])}-{number(figure['max'])})" if figure["n"] > 1 else ""
    return f"{number(figure['median'])}{sep}{unit}{spread}"


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "missed")


# ---- the machine -----------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict:
    import h5py
    import hydra
    import numpy
    import pytorch_lightning

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "hydra": hydra.__version__,
        "numpy": numpy.__version__,
        "h5py": h5py.__version__,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cuda_available": torch.cuda.is_available(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": git_commit(),
    }
    return info


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def command_line() -> str:
    return " ".join(["python -m benchmarks", *sys.argv[1:]])
