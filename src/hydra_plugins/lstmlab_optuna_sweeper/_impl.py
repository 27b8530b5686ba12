"""The sweep: ask the study for trials, launch them as Hydra jobs, tell it how they ended, write the results.

Trials count towards ``n_trials`` study-wide (COMPLETE, PRUNED, failed with an error, and those running or
waiting in any process), so rerunning a sweep adds only the missing trials and several processes on one
storage stop at exactly ``n_trials``: counting and asking happen under a study-wide lock (``_study.study_lock``).
A trial of a process that died stops sending heartbeats; the next process that looks fails it and queues its
parameters again (once). Ctrl-C or SIGTERM fails the running trials as interrupted and queues them again too.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.lstmlab_optuna_sweeper._space import SearchSpace, parse_search_space
from hydra_plugins.lstmlab_optuna_sweeper._study import (
    SAMPLERS,
    Heartbeat,
    make_sampler,
    make_storage,
    mask_password,
    resolve_url,
    study_lock,
)
from lstmlab.optuna_trial import (
    EPOCHS,
    ERROR,
    INTERRUPTED,
    OUTPUT_DIR,
    PRUNED_AT_EPOCH,
    PRUNERS,
    RETRY_OF,
    SweeperConfigError,
    TrialLink,
    ctrl_c_remembered,
    ctrl_c_seen,
    make_pruner,
)

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
TRIALS_FILE = "trials.csv"
DIRECTIONS = ("minimize", "maximize")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def counts_towards_budget(trial: FrozenTrial) -> bool:
    """Trials that use up ``n_trials``: all but those failed without an error of their own (a dead process's
    stale trial, an interrupted one), which are queued again instead."""
    if trial.state == TrialState.FAIL:
        return ERROR in trial.user_attrs
    return True


class OptunaSweep:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.s = {key: _plain(value) for key, value in settings.items()}
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        if self.s["n_jobs"] is None:  # as many trials at once as a parallel launcher runs (joblib's n_jobs)
            parallel = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
            if isinstance(parallel, int) and parallel < 0:  # joblib's -1: every core, -2: all but one ...
                parallel = (os.cpu_count() or 1) + 1 + parallel
            self.s["n_jobs"] = parallel if isinstance(parallel, int) and parallel > 0 else 1

    # ---- settings ------------------------------------------------------------------------------------
    def check_settings(self) -> list[str]:
        s = self.s
        directions = s["direction"] if isinstance(s["direction"], list) else [s["direction"]]
        if not directions or any(d not in DIRECTIONS for d in directions):
            raise SweeperConfigError(
                f"hydra.sweeper.direction={s['direction']}: must be minimize, maximize or a list of them"
            )
        if s["sampler"] not in SAMPLERS:
            raise SweeperConfigError(f"hydra.sweeper.sampler={s['sampler']}: must be one of {list(SAMPLERS)}")
        if s["pruner"] not in PRUNERS:
            raise SweeperConfigError(f"hydra.sweeper.pruner={s['pruner']}: must be one of {list(PRUNERS)}")
        if s["pruner"] != "none" and len(directions) > 1:
            raise SweeperConfigError(
                f"hydra.sweeper.pruner={s['pruner']}: Optuna prunes single-objective studies only; "
                "use pruner=none with several directions"
            )
        for key, low in (("n_trials", 1), ("n_jobs", 1), ("heartbeat_interval", 1)):
            if not isinstance(s[key], int) or s[key] < low:
                raise SweeperConfigError(f"hydra.sweeper.{key}={s[key]}: must be an integer >= {low}")
        if s.get("grace_period") is not None and s["grace_period"] <= s["heartbeat_interval"]:
            raise SweeperConfigError(
                f"hydra.sweeper.grace_period={s['grace_period']}: "
                f"must exceed heartbeat_interval={s['heartbeat_interval']}"
            )
        if not 0.0 <= float(s["max_failure_rate"]) <= 1.0:
            raise SweeperConfigError(f"hydra.sweeper.max_failure_rate={s['max_failure_rate']}: must be in [0, 1]")
        if not s["study_name"]:
            raise SweeperConfigError("hydra.sweeper.study_name: must not be empty")
        make_pruner(s["pruner"], s["pruner_args"])  # bad pruner_args fail here, naming the key
        return directions

    # ---- the sweep -----------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        try:
            return self._sweep(arguments)
        except SweeperConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    def _sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        s = self.s
        directions = self.check_settings()
        space = parse_search_space(s["params"] or {}, arguments)
        if not space.distributions:
            raise SweeperConfigError(
                "hydra.sweeper.params: nothing to search; give at least one choice(...), range(...) or interval(...)"
            )
        n_trials = s["n_trials"]
        make_sampler(s["sampler"], s["seed"], s["sampler_args"], space.distributions)  # bad sampler settings fail now
        if s["sampler"] == "grid":
            size = _grid_size(space)
            if size < n_trials:
                log.info("sampler=grid: %d points in the grid, n_trials %d -> %d", size, n_trials, size)
                n_trials = size
        self.compose_one(space)

        sweep_dir = Path(self.config.hydra.sweep.dir).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        url = resolve_url(s["storage"] or f"sqlite:///{sweep_dir / 'optuna.db'}")
        name = s["study_name"]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with study_lock(url, name):
            storage = make_storage(url, s["heartbeat_interval"], s["grace_period"])
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                directions=directions,
                load_if_exists=True,
                sampler=make_sampler(s["sampler"], s["seed"], s["sampler_args"], space.distributions),
            )
        if [d.name.lower() for d in study.directions] != directions:
            raise SweeperConfigError(
                f"hydra.sweeper.direction={s['direction']}: study {name!r} in {mask_password(url)} was created with "
                f"{[d.name.lower() for d in study.directions]}; use another study_name or the same direction"
            )
        previous = study.get_trials(deepcopy=False)
        log.info(
            "Optuna study %r in %s: sampler=%s pruner=%s direction=%s n_trials=%d (%d already counted)",
            name,
            mask_password(url),
            s["sampler"],
            s["pruner"],
            ",".join(directions),
            n_trials,
            sum(counts_towards_budget(t) for t in previous),
        )
        self.study, self.storage, self.url, self.sweep_dir, self.space = study, storage, url, sweep_dir, space
        self.n_trials, self.directions = n_trials, directions
        heartbeat = Heartbeat(storage, s["heartbeat_interval"])
        try:
            with ctrl_c_remembered():
                self.run_trials(heartbeat)
        finally:
            heartbeat.stop()
            self.write_results()
        self.print_table()
        self.write_report()

    def write_report(self) -> None:
        """report.md and the study's figures in the sweep dir (lstmlab.study_report); a report that cannot be drawn
        costs the sweep nothing: it is said, and ``lstmlab-report <sweep dir>`` can draw it later."""
        from lstmlab.study_report import write_report

        try:
            log.info("study report: %s", write_report(self.study, self.sweep_dir, mask_password(self.url)))
        except Exception as err:  # noqa: BLE001 - the trials are done and saved whatever the figures do
            name = type(err).__name__
            log.warning("study report not written (%s: %s); run lstmlab-report %s", name, err, self.sweep_dir)

    def compose_one(self, space: SearchSpace) -> None:
        """Compose the config of one trial before anything is stored: a wrong key fails now, once."""
        example = {}
        for key, dist in space.distributions.items():
            example[key] = dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low
        assert self.hydra_context is not None
        self.hydra_context.config_loader.load_sweep_config(
            master_config=self.config, sweep_overrides=space.overrides(example)
        )

    def ask_batch(self, heartbeat: Heartbeat, batch: list[optuna.trial.Trial]) -> list[FrozenTrial]:
        """Under the study lock: fail stale trials, count, and ask for as many trials as may start now (appended
        to ``batch`` one by one, so that an interruption knows which exist). Returns the trials counted."""
        s, study = self.s, self.study
        with study_lock(self.url, s["study_name"]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(study)
            self.fail_orphans()
            trials = study.get_trials(deepcopy=False)
            waiting = sorted(t.number for t in trials if t.state == TrialState.WAITING)
            used = sum(counts_towards_budget(t) for t in trials)
            k = min(s["n_jobs"], len(waiting) + max(0, self.n_trials - used))
            next_new = len(trials)
            for _ in range(k):
                number = waiting.pop(0) if waiting else next_new
                next_new += number == next_new
                # a sampler per trial, seeded by the trial's number: reproducible, and no two processes of a
                # shared study draw the same random start points (the grid is shuffled once, by the seed itself:
                # GridSampler maps trial numbers to grid points)
                seed = s["seed"] if s["seed"] is None or s["sampler"] == "grid" else s["seed"] + number
                study.sampler = make_sampler(s["sampler"], seed, s["sampler_args"], self.space.distributions)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    trial = study.ask(self.space.distributions)
                batch.append(trial)
                heartbeat.add(trial._trial_id)
        return trials

    def fail_orphans(self) -> None:
        """A RUNNING trial without any heartbeat, seen under the study lock, was created by a process that died
        (or was interrupted) before its first heartbeat: Optuna's stale check never sees those. Fail it and, if
        it had its parameters, queue them again."""
        running = {t._trial_id: t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        if not running:
            return
        from sqlalchemy import bindparam, text

        query = text("SELECT trial_id FROM trial_heartbeats WHERE trial_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
        with self.storage.engine.connect() as conn:
            beating = {row[0] for row in conn.execute(query, {"ids": list(running)})}
        for trial_id, trial in running.items():
            if trial_id in beating:
                continue
            try:
                self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if set(trial.params) == set(self.space.distributions):
                self.study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
            log.warning(
                "trial %d was left running without a heartbeat by a process that stopped: failed%s",
                trial.number,
                ", queued again" if trial.params else "",
            )

    def run_trials(self, heartbeat: Heartbeat) -> None:
        job_idx = 0
        waiting_announced = False
        while True:
            batch: list[optuna.trial.Trial] = []
            try:
                trials = self.ask_batch(heartbeat, batch)
                if batch:
                    waiting_announced = False
                    overrides = [self.job_overrides(trial) for trial in batch]
                    for trial in batch:
                        shown = self.space.overrides(trial.params)[len(self.space.fixed) :]
                        log.info("trial %d: %s", trial.number, " ".join(shown))
                    returns = self.launcher.launch(overrides, initial_job_idx=job_idx)
            except BaseException as err:  # Ctrl-C, SIGTERM, a launcher that broke: nothing of the batch is lost
                for trial in batch:
                    self.requeue(trial, f"{type(err).__name__}: {err}")
                    heartbeat.remove(trial._trial_id)
                raise
            if not batch:
                running = [t.number for t in trials if t.state == TrialState.RUNNING]
                if not running:
                    return
                if not waiting_announced:
                    log.info(
                        "n_trials reached; waiting for trial(s) %s running elsewhere (retried here if their "
                        "process died)",
                        running,
                    )
                    waiting_announced = True
                time.sleep(min(2.0, self.s["heartbeat_interval"]))
                continue
            job_idx += len(batch)
            for trial, ret in zip(batch, returns):
                self.record(trial, ret)
                heartbeat.remove(trial._trial_id)
            self.write_results()
            if ctrl_c_seen():  # pressed while the jobs ended, or dropped by Python inside one: stop here
                log.warning("Ctrl-C: the sweep stops after trial(s) %s", [t.number for t in batch])
                raise KeyboardInterrupt
            self.check_failures()

    def job_overrides(self, trial: optuna.trial.Trial) -> list[str]:
        """The sampled values, the trial's own output dir (its number), and how to reach the trial."""
        link = TrialLink(
            storage=self.url,
            study_name=self.s["study_name"],
            trial_id=trial._trial_id,
            number=trial.number,
            pruner=self.s["pruner"],
            pruner_args=self.s["pruner_args"] or {},
        )
        return [*self.space.overrides(trial.params), f"hydra.sweep.subdir={trial.number}", link.job_override()]

    def requeue(self, trial: optuna.trial.Trial, reason: str) -> None:
        """Fail an interrupted trial without counting it, and queue its parameters again."""
        try:
            trial.set_user_attr(INTERRUPTED, reason[:500] or "interrupted")
            self.tell(trial, None, TrialState.FAIL)
            if set(trial.params) == set(self.space.distributions):
                self.study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
            log.warning("trial %d interrupted (%s): queued again for the next run", trial.number, reason)
        except Exception as err:  # the storage may be what broke
            log.error("trial %d: could not record the interruption: %s", trial.number, err)

    def record(self, trial: optuna.trial.Trial, ret: JobReturn) -> None:
        output_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg else None
        stored = self.storage.get_trial(trial._trial_id)  # what the job's pruning callback wrote
        epochs = read_epochs(output_dir)
        if epochs is None:
            epochs = len(stored.intermediate_values) or None
        if epochs is not None:
            trial.set_user_attr(EPOCHS, epochs)
        if output_dir is not None:
            trial.set_user_attr(OUTPUT_DIR, str(output_dir))
        values, state, error = None, TrialState.COMPLETE, None
        try:
            result = ret.return_value
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except Exception as err:
            error = f"{type(err).__name__}: {err}".strip()
            if output_dir is not None:
                output_dir.mkdir(parents=True, exist_ok=True)
                (output_dir / "error.txt").write_text("".join(traceback.format_exception(err)))
        else:
            if PRUNED_AT_EPOCH in stored.user_attrs:
                state = TrialState.PRUNED
            else:
                values, error = self.to_values(result)
        if error is not None:
            state = TrialState.FAIL
            trial.set_user_attr(ERROR, error[:1000])
        frozen = self.tell(trial, values, state)
        shown = ", ".join(f"{v:.6g}" for v in frozen.values) if frozen.values else "-"
        extra = f" ({error})" if error else ""
        log.info("trial %d %s: value %s, %s epochs%s", trial.number, frozen.state.name, shown, epochs, extra)

    def tell(self, trial: optuna.trial.Trial, values: Any, state: TrialState) -> FrozenTrial:
        """GridSampler calls study.stop() after the last grid point, which only works inside optimize(); the
        trial's state is stored before that error, so it is safe to ignore."""
        try:
            return self.study.tell(trial, values=values, state=state, skip_if_finished=True)
        except RuntimeError as err:
            if "Study.stop" not in str(err):
                raise
            return self.storage.get_trial(trial._trial_id)

    def to_values(self, result: Any) -> tuple[list[float] | None, str | None]:
        n = len(self.directions)
        items = list(result) if isinstance(result, (list, tuple, ListConfig)) else [result]
        if len(items) != n:
            return None, f"the job returned {result!r}; {n} value(s) expected for direction={self.directions}"
        try:
            values = [float(v) for v in items]
        except (TypeError, ValueError):
            return None, f"the job returned {result!r}, not a number (is optimized_metric set?)"
        if not all(math.isfinite(v) for v in values):
            return None, f"the job returned {result!r}"
        return values, None

    def check_failures(self) -> None:
        failed = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if ERROR in t.user_attrs]
        allowed = self.s["max_failure_rate"] * self.n_trials
        if len(failed) > allowed:
            last = failed[-1]
            self.write_results()
            print(
                f"error: hydra.sweeper.max_failure_rate={self.s['max_failure_rate']}: {len(failed)} of "
                f"n_trials={self.n_trials} trials failed (at most {allowed:g} allowed); last: trial {last.number}: "
                f"{last.user_attrs[ERROR].splitlines()[0]}; the trials' error.txt files have the tracebacks",
                file=sys.stderr,
            )
            raise SystemExit(1)

    # ---- results -------------------------------------------------------------------------------------
    def write_results(self) -> None:
        if not hasattr(self, "study"):
            return
        trials = self.study.get_trials(deepcopy=False)
        states = {state.name: sum(t.state == state for t in trials) for state in TrialState}
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": self.s["study_name"],
            "storage": mask_password(self.url),
            "direction": self.directions if len(self.directions) > 1 else self.directions[0],
            "n_trials": self.n_trials,
            "trials": {k: v for k, v in states.items() if v},
        }
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if complete and len(self.directions) == 1:
            best = self.study.best_trial
            results.update(best_trial=best.number, best_value=best.value, best_params=best.params)
        elif complete:
            results["best_trials"] = [
                {"number": t.number, "values": t.values, "params": t.params} for t in self.study.best_trials
            ]
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / RESULTS_FILE)
        write_trials_csv(self.sweep_dir / TRIALS_FILE, trials, len(self.directions))

    def print_table(self) -> None:
        from rich.console import Console
        from rich.table import Table

        trials = self.study.get_trials(deepcopy=False)
        keys = param_keys(trials)
        shown = trials
        caption = f"study {self.s['study_name']!r}: {len(trials)} trials, results in {self.sweep_dir}"
        if len(trials) > 25:
            sign = 1 if self.directions[0] == "minimize" else -1
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            shown = sorted(done, key=lambda t: sign * t.values[0])[:20]
            caption = f"best 20 of {len(trials)} trials; all of them in {self.sweep_dir / TRIALS_FILE}"
        table = Table(title="Optuna trials", caption=caption)
        for column in ("#", "state", "value", *keys, "epochs", "duration"):
            table.add_column(column, justify="right" if column not in ("state",) else "left")
        for t in shown:
            value = ", ".join(f"{v:.5g}" for v in t.values) if t.values else ""
            duration = f"{t.duration.total_seconds():.1f}s" if t.duration else ""
            table.add_row(
                str(t.number),
                t.state.name,
                value,
                *(_short(t.params.get(k, "")) for k in keys),
                str(t.user_attrs.get(EPOCHS, "")),
                duration,
            )
        Console().print(table)


def _grid_size(space: SearchSpace) -> int:
    from hydra_plugins.lstmlab_optuna_sweeper._space import grid_of

    return math.prod(len(grid_of(k, d)) for k, d in space.distributions.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def read_epochs(output_dir: Path | None) -> int | None:
    try:
        return int(json.loads((output_dir / "metrics.json").read_text())["epochs"])  # type: ignore[operator]
    except (OSError, TypeError, KeyError, ValueError):
        return None


def param_keys(trials: Sequence[FrozenTrial]) -> list[str]:
    keys: list[str] = []
    for t in trials:
        keys += [k for k in t.params if k not in keys]
    return keys


def write_trials_csv(path: Path, trials: Sequence[FrozenTrial], n_objectives: int) -> None:
    keys = param_keys(trials)
    value_columns = ["value"] if n_objectives == 1 else [f"value_{i}" for i in range(n_objectives)]
    header = ["number", "state", *value_columns, *(f"params.{k}" for k in keys), "epochs", "duration_s", "error"]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for t in trials:
            values = list(t.values) if t.values else [""] * n_objectives
            note = t.user_attrs.get(ERROR) or t.user_attrs.get(INTERRUPTED) or ""
            if t.state == TrialState.FAIL and not note:
                note = "stale: its process stopped sending heartbeats; queued again"
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    *values,
                    *(t.params.get(k, "") for k in keys),
                    t.user_attrs.get(EPOCHS, ""),
                    f"{t.duration.total_seconds():.3f}" if t.duration else "",
                    note.splitlines()[0] if note else "",
                ]
            )
    tmp.replace(path)
