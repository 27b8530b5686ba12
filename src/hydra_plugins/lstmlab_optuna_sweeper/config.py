"""The sweeper's settings (``hydra.sweeper.*``), registered as ``hydra/sweeper=lstmlab_optuna``."""

# no `from __future__ import annotations`: Hydra executes this module before it is in sys.modules, and
# dataclasses then cannot resolve string annotations
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class LstmlabOptunaSweeperConf:
    _target_: str = "hydra_plugins.lstmlab_optuna_sweeper.sweeper.LstmlabOptunaSweeper"
    # tpe, random, grid, cmaes, nsgaii; extra constructor arguments in sampler_args
    sampler: str = "tpe"
    # trial N samples with seed + N: reproducible, and different in every process of a shared study
    seed: Optional[int] = 0
    sampler_args: Dict[str, Any] = field(default_factory=dict)
    # none, median, percentile, successive_halving, hyperband; constructor arguments in pruner_args
    pruner: str = "none"
    pruner_args: Dict[str, Any] = field(default_factory=dict)
    # minimize | maximize, or a list of them for several objectives (optimized_metric a list too)
    direction: Any = "minimize"
    # an Optuna RDB URL; null: sqlite:///<hydra.sweep.dir>/optuna.db
    storage: Optional[str] = None
    study_name: str = "lstmlab"
    # total finished trials of the study, counting those already in storage
    n_trials: int = 20
    # trials launched together (in parallel with a parallel Hydra launcher); null: the launcher's n_jobs
    # (hydra/launcher=joblib hydra.launcher.n_jobs=4), else 1
    n_jobs: Optional[int] = None
    # stop once more than max_failure_rate * n_trials trials of the study have failed
    max_failure_rate: float = 0.25
    # seconds between heartbeats of running trials; a trial silent for grace_period (default 2 x interval) is
    # failed and retried once by the next sweep process that looks
    heartbeat_interval: int = 30
    grace_period: Optional[int] = None
    # search space in Hydra's sweep grammar: choice(...), range(...), interval(...), int(interval(...)),
    # tag(log, interval(...)); a plain value is passed to every trial unchanged
    params: Dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="lstmlab_optuna", node=LstmlabOptunaSweeperConf, provider="lstmlab"
)
