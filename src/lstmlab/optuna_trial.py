"""The contract between the ``lstmlab_optuna`` sweeper and a trial's job, in one module that both sides read.

The sweeper (``hydra_plugins.lstmlab_optuna_sweeper``) writes each job's overrides: the sampled values and the
job config's ``optuna:`` block (``TrialLink``). The job's runner reads that block back and its pruning callback
(``lstmlab.callbacks.pruning``) builds the same pruner (``make_pruner``) and marks a pruned trial with
``PRUNED_AT_EPOCH``, which the sweeper reads. Free of torch and Lightning, and Optuna is imported only inside
the functions that build its objects: the CLI's ``--help`` path and the sweeper's start import this module.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    import optuna

# the job config's key of the block (conf/train.yaml holds its `optuna: null` slot)
CONFIG_KEY = "optuna"

# names of a trial's user attributes
PRUNED_AT_EPOCH = "pruned_at_epoch"  # set by the job's pruning callback; the sweeper then records PRUNED
EPOCHS = "epochs"  # epochs the job ran
ERROR = "error"  # the job's own failure: counts towards n_trials
INTERRUPTED = "interrupted"  # the sweep was stopped (Ctrl-C, SIGTERM): not counted, queued again
OUTPUT_DIR = "output_dir"  # the job's run dir
RETRY_OF = "retry_of"  # on a queued trial: the number of the trial it repeats

PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")


_ctrl_c_seen = False


@contextlib.contextmanager
def ctrl_c_remembered() -> Iterator[None]:
    """While a sweep runs, Ctrl-C raises KeyboardInterrupt as usual and is also remembered.

    Python drops a KeyboardInterrupt raised inside a finalizer or a weakref callback ("Exception ignored in: ...";
    an import's module lock has one), and a trial's job would then run on as if no one had pressed Ctrl-C. The
    trial's pruning callback and the sweeper ask ``ctrl_c_seen()`` between steps and stop there instead.
    """
    global _ctrl_c_seen
    _ctrl_c_seen = False
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def remember(signum, frame):
        global _ctrl_c_seen
        _ctrl_c_seen = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, remember)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def ctrl_c_seen() -> bool:
    """Whether Ctrl-C was pressed during this process's sweep (``ctrl_c_remembered``)."""
    return _ctrl_c_seen


class SweeperConfigError(ValueError):
    """A ``hydra.sweeper.*`` setting that cannot work; the message starts with the key."""


@dataclass(frozen=True)
class TrialLink:
    """How a job reaches its trial: the ``optuna:`` block that the sweeper sets in the job's config."""

    storage: str
    study_name: str
    trial_id: int
    number: int
    pruner: str = "none"
    pruner_args: dict[str, Any] = field(default_factory=dict)

    def job_override(self) -> str:
        """The override that sets this block in the job's config."""
        return f"++{CONFIG_KEY}={format_value(asdict(self))}"

    @classmethod
    def from_job_config(cls, cfg: DictConfig) -> TrialLink | None:
        """The block of a trial's job config; None when the job is no trial (``optuna: null``)."""
        block = cfg.get(CONFIG_KEY)
        if not block:
            return None
        return cls(**OmegaConf.to_container(block, resolve=True))


_PLAIN = re.compile(r"^[A-Za-z_][\w./-]*$")


def format_value(value: Any) -> str:
    """A Python value as Hydra override text (strings quoted when they need it)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in ("null", "true", "false", "nan", "inf"):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as an override")


def construct_checked(key: str, cls: type, args: dict[str, Any], **fixed: Any) -> Any:
    """``cls(**fixed, **args)`` for a sampler or pruner; arguments it refuses fail naming ``<key>_args``."""
    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**fixed, **args)
    except (TypeError, ValueError) as err:
        raise SweeperConfigError(f"{key}_args={args}: {cls.__name__} refuses them ({err})") from None


def make_pruner(name: str, args: dict[str, Any] | None = None) -> optuna.pruners.BasePruner:
    """The pruner ``hydra.sweeper.pruner`` names; the sweeper and the trial's job build it alike."""
    import optuna

    args = dict(args or {})
    classes = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }
    if name not in classes:
        raise SweeperConfigError(f"hydra.sweeper.pruner={name}: must be one of {list(PRUNERS)}")
    if name == "percentile":
        args.setdefault("percentile", 25.0)
    return construct_checked("hydra.sweeper.pruner", classes[name], args)
