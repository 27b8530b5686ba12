"""Peak memory of each measurement: this process's resident set (host) and torch's CUDA allocator (device).

Linux keeps a process's peak resident set (``VmHWM`` in ``/proc/self/status``) and resets it when ``5`` is
written to ``/proc/self/clear_refs``: each measurement's own peak, not the run's so far. Work done in child
processes (the CLI runs of the sweep rows) is not counted: those rows give the figures of the benchmark
process only. Elsewhere (no ``/proc``) the host figure is None.
"""

from __future__ import annotations

from pathlib import Path

import torch

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")
HOST_GOAL_MB = 2048.0  # the 10,000-step signal runs (streaming_inference's whole sample) stay under 2 GB


def reset_peaks(device: torch.device) -> None:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:  # not Linux, or not allowed: the peak then counts from the process start
        pass
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peaks(device: torch.device) -> dict[str, float | None]:
    """``peak_host_mb`` (resident set) and ``peak_device_mb`` (CUDA allocator; None on a CPU run)."""
    host = None
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                host = round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    device_mb = round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None
    return {"peak_host_mb": host, "peak_device_mb": device_mb}


def memory_row(results: list) -> tuple[str, str, str, str]:
    """The table's memory row: each measurement's peaks, and the 2 GB host goal of the 10,000-step runs."""
    parts, streaming = [], None
    for m in sorted(results, key=lambda m: m.number):
        host, dev = m.settings.get("peak_host_mb"), m.settings.get("peak_device_mb")
        if host is None and dev is None:
            continue
        parts.append(
            f"{m.key} {host:,.0f} MB" + (f" / {dev:,.0f} MB" if dev is not None else "")
            if host is not None
            else f"{m.key} - / {dev:,.0f} MB"
        )
        if m.key == "streaming_inference" and m.settings.get("sample_steps", 0) >= 10_000:
            streaming = host  # the goal is stated for the full 10,000-step sample (not --scale'd below it)
    met = "-" if streaming is None else ("met" if streaming < HOST_GOAL_MB else "missed")
    return (
        "memory: peak host (this process's resident set) / device (CUDA allocator) per measurement",
        "; ".join(parts) or "-",
        f"10,000-step signal runs (streaming_inference) < {HOST_GOAL_MB / 1024:g} GB host",
        met,
    )
