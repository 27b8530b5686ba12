"""5. Start-up: wall time of ``lstmlab-train --help`` and ``--cfg job`` next to a bare ``import hydra``.

Each command is a fresh subprocess (the console script beside this interpreter, else ``python -m
lstmlab.train``) run in an empty scratch directory; the three commands are interleaved, after one untimed run
of each to warm the file cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import Context, Measurement, Row, interleaved, show, stats, verdict

KEY = "startup_time"
TITLE = "Start-up"
GOAL_S = 1.0
GOAL = f"--help and --cfg job < {GOAL_S:g} s"


def train_command() -> list[str]:
    script = Path(sys.executable).parent / "lstmlab-train"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lstmlab.train"]


def run(ctx: Context) -> Measurement:
    cwd = ctx.work_dir / "startup"
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    commands = {
        "import_hydra": [sys.executable, "-c", "import hydra"],
        "help": [*train_command(), "--help"],
        "cfg_job": [*train_command(), "--cfg", "job"],
    }

    def case(command: list[str]):
        def wall() -> float:
            start = time.perf_counter()
            subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, timeout=120)
            return time.perf_counter() - start

        return wall

    samples = interleaved({name: case(cmd) for name, cmd in commands.items()}, ctx.reps(7, 3))
    figures = {f"{name}_s": stats(values, "s") for name, values in samples.items()}
    met = max(figures["help_s"]["median"], figures["cfg_job_s"]["median"]) < GOAL_S
    rows = [
        Row(
            "5. start-up: `lstmlab-train --help`, `--cfg job` (bare `python -c 'import hydra'` beside)",
            f"--help **{show(figures['help_s'])}**; --cfg job **{show(figures['cfg_job_s'])}**; "
            f"import hydra {show(figures['import_hydra_s'])}",
            GOAL,
            verdict(met),
        )
    ]
    return Measurement(
        key=KEY,
        number=5,
        title=TITLE,
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        settings={"commands": {k: " ".join(v) for k, v in commands.items()}, "repeats": len(samples["help"])},
    )
