"""A Hydra callback that checks, before a run or sweep starts, that its output directory can be written.

Hydra would otherwise fail inside its own set-up with a traceback; this fails first, with one line.
Only Hydra is imported here: Hydra instantiates it on every start, ``--help`` aside.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lstmlab.errors import EXIT_BAD_INPUT


def ensure_writable(directory: str, key: str) -> None:
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        print(
            f"error: {key}={directory}: cannot write there ({err.strerror}); choose a writable directory",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_BAD_INPUT) from None


class WritableOutputDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        ensure_writable(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        ensure_writable(config.hydra.sweep.dir, "hydra.sweep.dir")
