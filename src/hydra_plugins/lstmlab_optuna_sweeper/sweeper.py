"""The Hydra Sweeper class. Light on purpose: Hydra imports this module on every start."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class LstmlabOptunaSweeper(Sweeper):
    """Optuna on current versions: persistent and shared studies, pruning, resume. See ``config.py``."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.impl: Any | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra_plugins.lstmlab_optuna_sweeper._impl import OptunaSweep

        self.impl = OptunaSweep(self.settings)
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        assert self.impl is not None, "setup() first"
        return self.impl.sweep(arguments)
