"""What a run does once its config is composed: build the objects, fit, test, write results.

Entry points call ``run_training`` / ``run_evaluation``; everything heavy is imported here, not there.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lstmlab.checkpoints import (
    load_task_checkpoint,
    read_checkpoint,
    saved_run_config,
)
from lstmlab.errors import ConfigError, in_multirun
from lstmlab.optuna_trial import TrialLink

log = logging.getLogger(__name__)


def run_training(cfg: DictConfig, resume_from: Path | None) -> float | None:
    """Fit and test as configured, from ``resume_from`` if given; write metrics.json; return
    ``cfg.optimized_metric`` (for sweepers). The entry point checked ``cfg`` (``validate_config``) and found
    ``resume_from`` (``requested_checkpoint``) before importing torch."""
    output_dir = Path(cfg.paths.output_dir)
    with claimed_output_dir(output_dir):
        return _fit_and_test(cfg, output_dir, resume_from)


def _fit_and_test(cfg: DictConfig, output_dir: Path, resume_from: Path | None) -> float | None:
    if resume_from is not None:
        read_checkpoint(resume_from)  # a file that would run code is refused before any work
    check_output_dir(output_dir, resuming=resume_from is not None)
    apply_process_settings(cfg)
    started = time.perf_counter()
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data, _convert_="all")
    task = build_task(cfg.model)
    callbacks = instantiate_all(cfg.get("callbacks"))
    trial_link = TrialLink.from_job_config(cfg)
    if trial_link is not None:  # a trial of the lstmlab_optuna sweeper: report each epoch, stop when pruned
        from lstmlab.callbacks.pruning import OptunaPruning

        callbacks.append(OptunaPruning(trial_link, monitor=cfg.optimized_metric))
    loggers = instantiate_loggers(cfg, trial_link)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    if cfg.get("train", True):
        try:
            trainer.fit(
                task, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None, weights_only=True
            )
        except SIGTERMException:
            if in_multirun():
                raise
            stop_after_sigterm(output_dir)
    val_metrics = scalar_metrics(trainer.callback_metrics, "val/")

    test_metrics: dict[str, float] = {}
    best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test", True):
        # test the best checkpoint; without one (fast_dev_run, no checkpoint callback) the final weights
        if best_path:
            read_checkpoint(best_path)
        trainer.test(task, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True)
        test_metrics = scalar_metrics(trainer.callback_metrics, "test/")

    backtest_metrics = {}
    if cfg.get("test", True) and (cfg.get("backtest") or {}).get("origins"):
        backtest_metrics = run_backtest(trainer, task, datamodule, cfg.backtest, best_path or None)

    results = {
        "val": val_metrics,
        "test": test_metrics,
        **({"backtest": backtest_metrics} if backtest_metrics else {}),
        "epochs": trainer.current_epoch,
        "global_steps": trainer.global_step,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "best_checkpoint": best_path or None,
        **stage_reports(task),
    }
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", results)
        pruned = any(getattr(c, "pruned_at_epoch", None) for c in trainer.callbacks)
        log_hparams(trainer, cfg, {**val_metrics, **test_metrics}, trial_link, pruned)
    log.info("results: %s", json.dumps({k: results[k] for k in ("test", "wall_time_s", "epochs")}))
    return optimized_value(cfg, {**val_metrics, **test_metrics})


def run_evaluation(cfg: DictConfig, ckpts: list[Path]) -> dict[str, float]:
    """Test ``ckpts`` (``cfg.ckpt_path``, as ``requested_checkpoints`` found them) on the data of the run that wrote
    them; write metrics.json into this run's dir."""
    from lstmlab.onnx_runtime import check_runtime

    runtime = check_runtime(cfg.get("runtime"))
    threads = apply_process_settings(cfg)
    ckpt = ckpts[0]
    saved = saved_run_config(ckpt)
    saved.paths = cfg.paths  # resolve the saved run's paths in this process
    if cfg.get("data_path"):  # the same model on another file of the run's schema
        saved.data.path = cfg.data_path

    datamodule = instantiate(saved.data, _convert_="all")
    task = load_task_checkpoint(get_class(saved.model._target_), ckpt, "lstmlab-train for this run")
    if len(ckpts) > 1:
        task = seed_ensemble(task, ckpts, saved, runtime)
    exported = None
    if runtime == "onnx":  # the graphs lstmlab-export wrote beside the checkpoint do the forward passes
        from lstmlab.onnx_runtime import use_onnx

        exported = use_onnx(task, ckpt, threads)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    predictions = Path(cfg.predictions) if cfg.get("predictions") else None
    if predictions is not None:
        check_predictions(predictions, cfg.split, datamodule)
    if (cfg.get("backtest") or {}).get("origins"):
        metrics = run_backtest(trainer, task, datamodule, cfg.backtest, None)
        results = {"backtest": metrics, "checkpoint": str(ckpt)}
    else:
        run = trainer.test if cfg.split == "test" else trainer.validate
        run(task, datamodule=datamodule)
        metrics = scalar_metrics(trainer.callback_metrics, f"{cfg.split}/")
        results = {cfg.split: metrics, "checkpoint": str(ckpt), **stage_reports(task)}
    if len(ckpts) > 1:
        results["checkpoint"] = [str(path) for path in ckpts]
    if predictions is not None:
        write_predictions(trainer, task, datamodule, predictions)
        results["predictions"] = str(predictions)
    if exported is not None:
        results |= {"runtime": runtime, "exported": str(exported)}
    write_json(Path(cfg.paths.output_dir) / "metrics.json", results)
    return metrics


def seed_ensemble(first, ckpts: list[Path], saved: DictConfig, runtime: str):
    """A task that scores the checkpoints' tasks as one (``ckpt_path=[a,b,...]``): classifiers their mean class
    probabilities, forecasters their median forecast (the task's ``ensemble_of``); runs of one model on one data
    file (seeds, or settings that keep what the task's ``ensemble_shared`` names)."""
    if runtime != "torch" or not hasattr(first, "ensemble_of"):
        raise ConfigError(
            f"ckpt_path=[{','.join(map(str, ckpts))}]: several checkpoints make a seed ensemble of classifiers and "
            "forecasters, scored with runtime=torch; pass one checkpoint for this run"
        )
    members = [first]
    shared = first.ensemble_shared()
    for ckpt in ckpts[1:]:
        other = saved_run_config(ckpt)
        if other.model._target_ != saved.model._target_ or other.data.get("path") != saved.data.get("path"):
            raise ConfigError(
                f"ckpt_path: {ckpt} is a {other.model._target_.rsplit('.', 1)[-1]} run on "
                f"data.path={other.data.get('path')}, {ckpts[0]} one on data.path={saved.data.get('path')}: "
                "an ensemble's members must be runs of one task on one data file"
            )
        member = load_task_checkpoint(get_class(saved.model._target_), ckpt, "lstmlab-train")
        own = member.ensemble_shared()
        if own != shared:
            differ = [key for key in shared if own.get(key) != shared[key]]
            raise ConfigError(
                f"ckpt_path: {ckpt} has {', '.join(f'{k}={own.get(k)}' for k in differ)}, {ckpts[0]} "
                f"{', '.join(f'{k}={shared[k]}' for k in differ)}: an ensemble's members must share them"
            )
        members.append(member)
    host = copy.deepcopy(first)
    host.ensemble_of(members)
    return host


def check_predictions(path: Path, split: str, datamodule) -> None:
    """``predictions=<file>`` before any work: a .csv or .parquet file, the test split, a run that predicts."""
    if path.suffix not in (".csv", ".parquet") or split != "test":
        raise ConfigError(
            f"predictions={path}: write the predictions of the test split to a .csv or .parquet file "
            "(split=test, the default)"
        )
    kind = type(datamodule)  # not set up yet: ask the class, not its properties
    if not (hasattr(kind, "window_origins") or hasattr(kind, "class_names")):
        raise ConfigError(
            "predictions=... applies to forecasting (data=series) and sequence-classification runs; "
            "set predictions=null"
        )


def write_predictions(trainer: pl.Trainer, task, datamodule, path: Path) -> None:
    """The test split's predictions as a table (forecasts or class probabilities), written whole or not at all
    (a temporary file renamed into place)."""
    if hasattr(datamodule, "window_origins"):
        table = forecast_table(trainer, task, datamodule)
    else:
        table = classification_table(trainer, task, datamodule)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    if path.suffix == ".parquet":
        table.to_parquet(partial, index=False)
    else:
        table.to_csv(partial, index=False)
    partial.replace(path)
    log.info("predictions written to %s (%d rows)", path, len(table))


def forecast_table(trainer: pl.Trainer, task, datamodule):
    """One row per test (or backtest) window, forecast step and target: series, origin, start (the first
    forecast step's stamp), step (1..horizon), target, actual, and ``forecast`` or one ``q<level>`` column per
    quantile."""
    import pandas as pd
    import torch

    forecasts = torch.cat(trainer.predict(task, datamodule=datamodule)).cpu()  # [N, H, K] or [N, H, K, Q]
    windows = datamodule.splits["test"]
    actual = windows[list(range(len(windows)))]["y"]
    levels = task.quantile_levels
    columns = [f"q{level:g}" for level in levels] if levels else ["forecast"]
    n, horizon, targets = actual.shape
    table = pd.DataFrame(
        [
            {**where, "step": h + 1, "target": name, "actual": float(actual[i, h, k])}
            for i, where in enumerate(datamodule.window_origins("test"))
            for h in range(horizon)
            for k, name in enumerate(task.info["target_names"])
        ]
    )
    values = forecasts.reshape(n * horizon * targets, -1).numpy()
    for j, column in enumerate(columns):
        table[column] = values[:, j]
    return table


def classification_table(trainer: pl.Trainer, task, datamodule):
    """One row per test sequence, in the split's order: index (its position in the test split), sequence (its
    row in the data file), label (the true class's name), predicted (the predicted class's name: argmax, or for
    two classes the decision threshold chosen on validation, as for test/accuracy) and ``p_<class name>``, the
    probability of each class."""
    import pandas as pd
    import torch

    from lstmlab.metrics import predicted_classes

    probs = torch.cat(trainer.predict(task, datamodule=datamodule)).cpu()  # [N] binary, [N, K] otherwise
    predicted = predicted_classes(probs, float(task.decision_threshold)).numpy()
    if probs.ndim == 1:
        probs = torch.stack([1 - probs, probs], dim=-1)
    test = datamodule.splits["test"]
    names = task.class_names(datamodule)
    table = pd.DataFrame(
        {
            "index": range(len(test)),
            "sequence": test.members,
            "label": [names[k] for k in test.labels.tolist()],
            "predicted": [names[k] for k in predicted],
        }
    )
    for k, name in enumerate(names):
        table[f"p_{name}"] = probs[:, k].double().numpy()
    return table


def run_backtest(trainer: pl.Trainer, task, datamodule, backtest: DictConfig, ckpt_path: str | None) -> dict:
    """A rolling-origin test: ``backtest.origins`` forecast origins per series, ``backtest.step`` steps apart
    (null: the horizon), the latest forecasting each series' last steps; ``backtest/<metric>`` over all origins
    and ``backtest/<metric>_origin_<i>`` per origin (0 = the earliest), logged like the test metrics."""
    if not hasattr(datamodule, "set_backtest"):
        raise ConfigError("backtest.origins applies to forecasting runs (data=series); set backtest.origins=0")
    step = backtest.get("step") or datamodule.hparams.horizon
    datamodule.set_backtest(int(backtest.origins), int(step))
    trainer.test(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    return scalar_metrics(trainer.callback_metrics, "backtest/")


# ---- helpers ---------------------------------------------------------------------------------------
def _other_ddp_rank() -> bool:
    """True in the processes DDP starts for ranks > 0 (LOCAL_RANK set by rank 0's Trainer)."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0


@contextmanager
def claimed_output_dir(output_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run dir while the run lasts, so that a second lstmlab-train cannot write
    into it at the same time: two runs started in the same second get the same default run dir. The lock
    is the OS's (``flock``), released when the run ends or its process dies, so a crash leaves nothing behind.
    DDP's other ranks share rank 0's run dir by design and take no lock."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs are not guarded against each other
        yield
        return
    if _other_ddp_rank():
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / ".lstmlab-run.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                f"hydra.run.dir={output_dir} is in use by another lstmlab-train running now (runs started in the "
                "same second share the default run dir); give each run its own hydra.run.dir=..."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check_output_dir(output_dir: Path, resuming: bool) -> None:
    """Fail before any work when the run dir already holds another run's results (never overwrite them).
    DDP's other ranks (started by rank 0's Trainer, LOCAL_RANK set) share rank 0's run dir by design."""
    if _other_ddp_rank():
        return
    if not resuming and ((output_dir / "checkpoints").exists() or (output_dir / "metrics.json").exists()):
        raise ConfigError(
            f"hydra.run.dir={output_dir} already holds a run; pass resume=true to continue it, "
            "or another hydra.run.dir (the default makes a new one per run)"
        )


def stop_after_sigterm(output_dir: Path) -> None:
    """SIGTERM: last.ckpt is saved (SigtermCheckpoint); say how to resume and exit with 128 + SIGTERM."""
    print(
        f"stopped by SIGTERM, checkpoint saved; resume with: lstmlab-train <same overrides> "
        f"hydra.run.dir={output_dir} resume=true",
        file=sys.stderr,
    )
    raise SystemExit(143)


def build_task(model_cfg: DictConfig) -> pl.LightningModule:
    """The task gets plain dicts for its net / optimizer configs, so it can save and rebuild them."""
    kwargs = OmegaConf.to_container(model_cfg, resolve=True)
    target = kwargs.pop("_target_")
    return get_class(target)(**kwargs)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Every ``_target_`` node of a group such as ``callbacks`` or ``logger`` (null entries switched off)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def stage_reports(task: pl.LightningModule) -> dict[str, Any]:
    """What a task reports per stage beyond scalars (a classifier: per-class precision, recall, confusion matrix),
    as ``<stage>_report`` entries of metrics.json."""
    return {f"{stage}_report": report for stage, report in sorted(getattr(task, "stage_reports", {}).items())}


def scalar_metrics(metrics: dict, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(prefix)}


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | list[float] | None:
    """The value of ``optimized_metric``, or the values of a list of them (multi-objective sweeps)."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    names = list(name) if isinstance(name, ListConfig) else [name]
    for each in names:
        if each.startswith("val/") and not any(key.startswith("val/") for key in metrics):
            interval = OmegaConf.select(cfg, "trainer.val_check_interval")
            raise ConfigError(
                f"optimized_metric={each!r}: no validation ran during training (trainer.val_check_interval={interval} "
                "steps, trainer.check_val_every_n_epoch); validate more often or train longer"
            )
        if each not in metrics:
            raise ConfigError(f"optimized_metric={each!r} was not logged; logged metrics: {sorted(metrics)}")
    return [metrics[each] for each in names] if isinstance(name, ListConfig) else metrics[name]


def log_hparams(
    trainer: pl.Trainer, cfg: DictConfig, metrics: dict[str, float], trial: TrialLink | None, pruned: bool
) -> None:
    """TensorBoard's HPARAMS row of this run (``lstmlab.hparams_view``): the settings that tell runs apart and
    the run's own metric tags; a pruned trial's ``trial_state`` says ``pruned``."""
    from lstmlab.hparams_view import changed_keys, compared_params, hparams_summaries, metric_tags

    searched = trial_params(trial)
    params = compared_params(cfg, job_overrides(), searched, group_choices())
    params["num_parameters"] = sum(p.numel() for p in trainer.lightning_module.parameters())
    if trial is not None:
        params["trial_state"] = "pruned" if pruned else "complete"
    tags = metric_tags(cfg.get("optimized_metric"), metrics)
    leading = searched or changed_keys(job_overrides())
    summaries = hparams_summaries(params, tags, leading)
    for logger in trainer.loggers:
        if isinstance(logger, pl.loggers.TensorBoardLogger):
            for summary in summaries:
                logger.experiment._get_file_writer().add_summary(summary)  # reopened: testing closed it
            logger.finalize("success")


def job_overrides() -> list[str]:
    """This job's command-line (or sweeper) overrides; none outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def group_choices() -> dict[str, Any]:
    """The option of each config group this run composed (``experiment`` -> ``signal_l50`` ...)."""
    from hydra.core.hydra_config import HydraConfig

    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def trial_params(trial: TrialLink | None) -> dict[str, Any]:
    """A trial's searched parameters, as the study holds them (empty outside an Optuna sweep)."""
    if trial is None:
        return {}
    import optuna

    return dict(optuna.storages.get_storage(trial.storage).get_trial(trial.trial_id).params)


def instantiate_loggers(cfg: DictConfig, trial: TrialLink | None) -> list[Any]:
    """``logger``'s entries; in a sweep the TensorBoard logger writes into ``<sweep dir>/<run name>/`` (the job's
    number and its parameters), so one ``tensorboard --logdir <sweep dir>`` compares the trials by name."""
    group = cfg.get("logger")
    if not group:
        return []
    label = sweep_run_label(trial)
    loggers = []
    for node in group.values():
        if not (isinstance(node, DictConfig) and "_target_" in node):
            continue
        if label is not None and node._target_.endswith("TensorBoardLogger"):
            from hydra.core.hydra_config import HydraConfig

            root = Path(HydraConfig.get().sweep.dir)
            loggers.append(instantiate(node, save_dir=str(root), name=label, version=""))
        else:
            loggers.append(instantiate(node))
    return loggers


def sweep_run_label(trial: TrialLink | None) -> str | None:
    """``"trial 007 hidden_size=16 num_layers=2 lr=0.003"`` for job 7 of an Optuna sweep (its searched parameters
    by the last part of their keys; ``"trial 007"`` under another sweeper); None outside a sweep."""
    if not in_multirun():
        return None
    from hydra.core.hydra_config import HydraConfig

    job = HydraConfig.get().job
    # an Optuna trial's searched values; another sweeper's jobs differ in keys it alone knows: HPARAMS shows them
    shown = " ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in trial_params(trial).items())
    return f"trial {int(job.num):03d} {shown}".strip().replace("/", "_")[:120]


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def parallel_jobs() -> int:
    """How many runs of this sweep share the machine now: ``hydra.launcher.n_jobs`` under a launcher that runs
    jobs side by side on it (joblib; -1 = one per core), else 1."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return 1
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n_jobs = int(launcher.get("n_jobs") or 1)
    return (os.cpu_count() or 1) if n_jobs < 0 else n_jobs


def apply_process_settings(cfg: DictConfig) -> int:
    """What a train or eval run sets for its whole process before building anything: warnings and the printed
    config (``extras``), torch's threads, the deterministic memory fill. Returns the thread count."""
    apply_extras(cfg)
    threads = apply_threads(cfg)
    apply_memory_fill(cfg)
    return threads


def apply_threads(cfg: DictConfig) -> int:
    """torch's intra-op threads for this run: ``threads``, or with null the cores shared out among the runs
    side by side (two runs that each use every core thrash: 17x slower each on 2 cores). Returns the count."""
    import torch

    threads = cfg.get("threads")
    if threads is None:
        jobs = parallel_jobs()
        if jobs <= 1:
            return torch.get_num_threads()
        threads = max(1, (os.cpu_count() or 1) // jobs)
    if int(threads) < 1:
        raise ConfigError(f"threads={threads} must be >= 1 (or null: every core, shared among parallel jobs)")
    torch.set_num_threads(int(threads))
    log.info("torch intra-op threads: %d", int(threads))
    return int(threads)


def apply_memory_fill(cfg: DictConfig) -> None:
    """``fill_uninitialized_memory``: under ``trainer.deterministic`` torch fills every new tensor (NaN for floats)
    before an op writes it, so that even a read of unwritten memory repeats. No lstmlab op reads such memory, and on
    the CPU the fill made the LSTM's forward and backward 15-20 % slower, so the configs turn it off; the same seed
    still gives the same metrics (tests/test_cli.py::test_same_seed_same_metrics)."""
    import torch.utils.deterministic

    torch.utils.deterministic.fill_uninitialized_memory = bool(cfg.fill_uninitialized_memory)


def apply_extras(cfg: DictConfig) -> None:
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("print_config"):
        from rich.console import Console
        from rich.syntax import Syntax

        shown = {k: v for k, v in cfg.items() if k != "hydra"}
        Console(stderr=True).print(Syntax(OmegaConf.to_yaml(shown, resolve=False), "yaml", theme="ansi_dark"))


def write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2, sort_keys=True))
    tmp.replace(path)
