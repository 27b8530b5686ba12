"""The outputs of a run: the markdown table, the JSON file and the throughput-vs-length plot."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.harness import Measurement

HEADER = "| measurement | figures: median (min-max over repeats) | goal | met |\n|---|---|---|---|"


def markdown_table(measurements: list[Measurement]) -> str:
    lines = [HEADER]
    for m in sorted(measurements, key=lambda m: m.number):
        for row in m.rows:
            lines.append(f"| {row.what} | {row.figures} | {row.goal} | {row.met} |")
    return "\n".join(lines)


def write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    tmp.replace(path)


def plot_throughput(series: dict, path: Path, machine: dict) -> None:
    """Training time steps/s against chunk length for the three nets, min-max of the repeats shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.training_throughput import KINDS

    labels = {
        "stateful": "L=1 stateful (tbptt_steps=1)",
        "sequence": "sequence net (L = chunk length; L=50 at 50)",
        "plain_loop": "plain step-by-step loop (nn.LSTM per step)",
    }
    lengths = series["chunk_len"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for kind, color in zip(KINDS, ("tab:blue", "tab:orange", "tab:gray")):
        ax.plot(lengths, series[kind]["median"], marker="o", color=color, label=labels[kind])
        ax.fill_between(lengths, series[kind]["min"], series[kind]["max"], color=color, alpha=0.2)
    if 50 in lengths:
        ax.axvline(50, color="black", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length: time steps per chunk (one optimizer step per chunk)")
    ax.set_ylabel("training throughput (time steps / s)")
    ax.set_title(
        f"fwd+bwd+Adam, batch {series['batch_size']} - {machine['device_name']} "
        f"({machine['device']}, torch {machine['torch']})",
        fontsize="small",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
