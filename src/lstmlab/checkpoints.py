"""Reading checkpoints back, with one error that says which file and what to pass instead.

A checkpoint is data, not code: every read goes through ``read_checkpoint`` (``torch.load(weights_only=True)``),
and Lightning is handed the file only after that read succeeded, with ``weights_only=True`` too. lstmlab's own
checkpoints hold tensors and plain containers only (dicts, lists, str, numbers, ``OrderedDict``), so no allowlist
of extra types is needed; a file whose pickle names any other global is refused before anything in it runs.

torch is imported where a file is read, not at the top: the entry points check what a command asks for
(``requested_checkpoint``, ``requested_checkpoints``) before torch and Lightning are imported, so that a mistyped
path is refused in a second, not after five.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from lstmlab.errors import ConfigError

EXAMPLE = "ckpt_path=outputs/<date>/<time>/checkpoints/best.ckpt"
WRITTEN_BY = "lstmlab-train"
log = logging.getLogger(__name__)

# Keys that tasks and nets gained after checkpoints of them had been saved, each with the value that computes what
# those checkpoints computed (before patch_len a classifier's LSTM read every step; before interval_calibration a
# forecaster's band was not calibrated). A checkpoint without one loads with these values, named in one warning,
# so a new option does not strand a trained model; the YAML stays the one source of values for new runs, whose
# configs name every key. Task keys by the name of the task class that has them (a subclass inherits them: the signal
# and price tasks recurrent_lr_scale), net keys (hyper_parameters.net) by the net's _target_.
ADDED_TASK_KEYS: dict[str, dict] = {
    "RecurrentNetTask": {"recurrent_lr_scale": 1.0},
    "Seq2SeqForecastTask": {"base_forecast": "none", "interval_calibration": "none"},
}
RECURRENT_INIT_KEYS = {"init_periods": None, "init_decay_steps": None, "freeze_cell_dynamics": False}
ADDED_NET_KEYS: dict[str, dict] = {
    "lstmlab.nets.classifier.LSTMClassifier": {"summary_stats": False, "summary_linear": False, "patch_len": 1},
    "lstmlab.nets.lstm_fcn.LSTMFCN": {
        "summary_stats": False,
        "time_pool": 1,
        "time_pool_target": None,
        "time_pool_phases": False,
    },
    "lstmlab.nets.sequence.SequenceLSTM": RECURRENT_INIT_KEYS,
    "lstmlab.nets.stateful.StatefulLSTM": RECURRENT_INIT_KEYS,
}


# Run configs (<run>/.hydra/config.yaml) saved before a class or a datamodule key was renamed or added: lstmlab-eval
# rebuilds the run's task class and data from them. Renamed classes and keys read as today's; added data keys get
# the value that rebuilds the run's data as it was (splits drawn with seed 0 before data.seed; a series' context
# was always data.input_len before context_multiple, whose first default was 2).
RENAMED_TARGETS = {
    "lstmlab.tasks.regression.SignalRegressionTask": "lstmlab.tasks.signal_regression.SignalRegressionTask",
    "lstmlab.data.sequence_datamodule.SequenceClassificationDataModule": (
        "lstmlab.data.classification_datamodule.SequenceClassificationDataModule"
    ),
}
RENAMED_DATA_KEYS = {"split_seed": "seed", "shuffle_seed": "seed"}
ADDED_DATA_KEYS: dict[str, dict] = {
    "lstmlab.data.price_datamodule.PriceDataModule": {"seed": 0, "chunked": False},
    "lstmlab.data.series_datamodule.SeriesDataModule": {
        "freq": None,
        "id_column": None,
        "short_series": "error",
        "val_steps": None,
        "test_steps": None,
        "context_multiple": 2,
    },
}


def check_checkpoint_file(path: str | Path, what: str = "a .ckpt file") -> Path:
    """``path`` as a ``Path``, or a ``ConfigError`` naming ``ckpt_path`` when there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={path}: checkpoint not found; pass {what}, e.g. {EXAMPLE}")
    return path


def requested_checkpoint(cfg: DictConfig, output_dir: Path) -> Path | None:
    """The checkpoint ``lstmlab-train`` is asked to start from: this run dir's last.ckpt for ``resume=true`` or
    ``ckpt_path=last``, the file ``ckpt_path`` names, or None; a ``ConfigError`` when that file is not there."""
    ckpt = cfg.get("ckpt_path")
    if cfg.get("resume") or ckpt == "last":
        last = output_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise ConfigError(
                f"resume=true: no {last} to resume from; pass hydra.run.dir=<the interrupted run's directory>"
            )
        return last
    return None if ckpt is None else check_checkpoint_file(ckpt, "a .ckpt file, 'last' or null")


def requested_checkpoints(cfg: DictConfig) -> list[Path]:
    """The checkpoints ``lstmlab-eval`` is asked to score (``ckpt_path``: one, or a list for a seed ensemble), each
    with its run config beside it; a ``ConfigError`` for a missing one, a missing config or an unknown ``split``."""
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConfigError("ckpt_path is required: lstmlab-eval ckpt_path=outputs/<date>/<time>/checkpoints/best.ckpt")
    if cfg.split not in ("test", "val"):
        raise ConfigError(f"split={cfg.split!r} must be 'test' or 'val'")
    value = cfg.ckpt_path
    paths = [str(v) for v in value] if isinstance(value, (ListConfig, list, tuple)) else [str(value)]
    if not paths:
        raise ConfigError("ckpt_path=[]: name a checkpoint, or several for a seed ensemble: ckpt_path=[a.ckpt,b.ckpt]")
    ckpts = [check_checkpoint_file(path) for path in paths]
    for ckpt in ckpts:
        if not (config := run_config_path(ckpt)).is_file():
            raise ConfigError(
                f"ckpt_path={ckpt}: no run config beside it (expected {config}); "
                "evaluate checkpoints inside the run directory that lstmlab-train wrote"
            )
    return ckpts


def saved_run_config(ckpt: Path) -> DictConfig:
    """The config of the run that wrote ``ckpt`` (``<run>/.hydra/config.yaml``, checked by ``requested_checkpoints``),
    read as today's names."""
    saved_path = run_config_path(ckpt)
    saved = OmegaConf.load(saved_path)
    upgrade_run_config(saved, saved_path)  # a run of an earlier lstmlab: today's class names and data keys
    return saved


def read_checkpoint(path: str | Path, written_by: str = WRITTEN_BY) -> dict:
    """The contents of the checkpoint at ``path`` (on the CPU), unpickled with ``weights_only=True``.

    A file whose pickle needs anything beyond tensors and plain containers is refused with a one-line
    ``ConfigError`` that names the file and the global it would load; a damaged or foreign file likewise says so.
    """
    import torch

    path = check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConfigError(refusal(path, err, written_by)) from None
    except Exception as err:
        raise ConfigError(
            f"ckpt_path={path}: not a readable checkpoint ({type(err).__name__}: {one_line(err)}); "
            f"pass a checkpoint written by {written_by}"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(
            f"ckpt_path={path}: not a checkpoint (it holds a {type(checkpoint).__name__}, not a dict); "
            f"pass a checkpoint written by {written_by}"
        )
    return checkpoint


def load_task_checkpoint(task_class: type, path: str | Path, written_by: str):
    """``task_class.load_from_checkpoint(path)`` on the CPU, after ``read_checkpoint`` accepted the file; a foreign
    or damaged file raises a ``ConfigError`` that names the file and says it should be a checkpoint ``written_by``
    (not how unpickling failed)."""
    checkpoint = read_checkpoint(path, written_by)
    overrides, added = keys_added_since(checkpoint.get("hyper_parameters"), task_class)
    if added:
        settings = ", ".join(f"{key}={json.dumps(value)}" for key, value in added.items())  # YAML's spelling
        log.warning(f"ckpt_path={path}: saved before these keys existed; loaded with {settings}")
    try:
        return task_class.load_from_checkpoint(path, map_location="cpu", weights_only=True, **overrides)
    except Exception as err:
        raise ConfigError(
            f"ckpt_path={path}: not a readable {task_class.__name__} checkpoint ({type(err).__name__}: "
            f"{one_line(err)}); pass a checkpoint written by {written_by}"
        ) from None


def keys_added_since(hyper_parameters: object, task_class: type) -> tuple[dict, dict]:
    """For a checkpoint's saved ``hyper_parameters``: the ``load_from_checkpoint`` overrides that add the
    ``ADDED_TASK_KEYS`` / ``ADDED_NET_KEYS`` it lacks (``net`` whole), and those keys by their config names
    (``model.<key>``, ``model.net.<key>``) with their values; both empty when it lacks none."""
    if not isinstance(hyper_parameters, Mapping):
        return {}, {}
    task_keys = {
        key: value
        for cls in reversed(task_class.__mro__)  # a subclass's entry over its base's
        for key, value in ADDED_TASK_KEYS.get(cls.__name__, {}).items()
    }
    overrides = lacking(task_keys, hyper_parameters)
    added = {f"model.{key}": value for key, value in overrides.items()}
    net = hyper_parameters.get("net")
    if isinstance(net, Mapping):
        net_added = lacking(ADDED_NET_KEYS.get(net.get("_target_"), {}), net)
        if net_added:
            overrides["net"] = {**net, **net_added}
            added.update({f"model.net.{key}": value for key, value in net_added.items()})
    return overrides, added


def lacking(added_keys: dict, saved: Mapping) -> dict:
    """The entries of ``added_keys`` whose key ``saved`` does not have."""
    return {key: value for key, value in added_keys.items() if key not in saved}


def refusal(path: Path, err: Exception, written_by: str) -> str:
    """The one line for a file that ``weights_only=True`` would not unpickle, naming what it would have loaded."""
    names = unsafe_globals(path) or re.findall(r"GLOBAL (\S+)", str(err))
    if names:
        return (
            f"ckpt_path={path}: refused: loading it would run code (pickled {', '.join(names)}); lstmlab checkpoints "
            f"hold only tensors and plain containers — re-save it or pass a checkpoint written by {written_by}"
        )
    # no global named: an object the weights-only unpickler cannot build, or a damaged pickle
    reason = one_line(err).split("WeightsUnpickler error:")[-1].split(". ")[0].strip()
    return (
        f"ckpt_path={path}: refused: it holds more than tensors and plain containers ({reason}); "
        f"re-save it or pass a checkpoint written by {written_by}"
    )


def unsafe_globals(path: Path) -> list[str]:
    """The globals outside torch's weights-only allowlist that the file's pickle names, found by reading the pickle's
    opcodes (nothing is unpickled); empty for a file in the legacy (non-zip) format, which this scan cannot read."""
    import torch

    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:
        return []


def one_line(err: Exception) -> str:
    """The error's text on one line: torch's unpickling errors span several, and the CLI prints one."""
    return " ".join(str(err).split())[:300]


def run_config_path(ckpt: Path) -> Path:
    """``<run>/.hydra/config.yaml`` of a checkpoint in ``<run>/checkpoints/``."""
    return ckpt.resolve().parent.parent / ".hydra" / "config.yaml"


def upgrade_run_config(saved, path: Path) -> None:
    """Bring a saved run config (an OmegaConf ``DictConfig``) to today's class names and data keys, in place, with
    one warning naming every change (``RENAMED_TARGETS``, ``RENAMED_DATA_KEYS``, ``ADDED_DATA_KEYS``)."""
    changes = []
    for group in ("model", "data"):
        target = (saved.get(group) or {}).get("_target_")
        if target in RENAMED_TARGETS:
            saved[group]._target_ = RENAMED_TARGETS[target]
            changes.append(f"{group}._target_={RENAMED_TARGETS[target]} (was {target})")
    data = saved.get("data") or {}
    for old, new in RENAMED_DATA_KEYS.items():
        if old in data and new not in data:
            data[new] = data.pop(old)
            changes.append(f"data.{new}={json.dumps(data[new])} (was data.{old})")
    for key, value in lacking(ADDED_DATA_KEYS.get(data.get("_target_"), {}), data).items():
        data[key] = value
        changes.append(f"data.{key}={json.dumps(value)}")
    if changes:
        log.warning(f"{path}: written by an earlier lstmlab; read with {', '.join(changes)}")
