"""The lstmlab_optuna Hydra sweeper: search-space grammar, and real multiruns through the CLI on real SQLite and
PostgreSQL storages (pruning, failures, resume, a killed sweep, two processes on one study)."""

from __future__ import annotations

import contextlib
import csv
import glob
import importlib.util
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from helpers import SMALL_SWEEP, run_cli
from hydra_plugins.lstmlab_optuna_sweeper._space import SweeperConfigError, format_value, parse_search_space
from hydra_plugins.lstmlab_optuna_sweeper._study import resolve_url
from lstmlab.callbacks.pruning import OptunaPruning
from lstmlab.optuna_trial import TrialLink, ctrl_c_remembered, ctrl_c_seen

# one torch thread per process: several sweep processes share 2 cores without oversubscription
ENV = {"OMP_NUM_THREADS": "1"}
SEARCHED = {"model.hidden_size", "model.num_layers", "model.optimizer.lr"}


def sweep_cli(sweep: Path, *overrides: str, check: bool = True):
    return run_cli(
        "lstmlab.train",
        "-m",
        *SMALL_SWEEP,
        *overrides,
        f"hydra.sweep.dir={sweep}",
        cwd=sweep.parent,
        check=check,
        env=ENV,
    )


def load(sweep: Path, name: str = "signal") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'optuna.db'}")


def rows(sweep: Path) -> list[dict]:
    with open(sweep / "trials.csv") as handle:
        return list(csv.DictReader(handle))


# ---- grammar -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        ("choice(4, 8, 16)", CategoricalDistribution([4, 8, 16])),
        ("4,8,16", CategoricalDistribution([4, 8, 16])),
        ("choice(adam, sgd)", CategoricalDistribution(["adam", "sgd"])),
        ("choice([8,8],[16])", CategoricalDistribution(["[8,8]", "[16]"])),
        ("range(1, 4)", IntDistribution(1, 3)),
        ("range(2, 11, 4)", IntDistribution(2, 10, step=4)),
        ("range(5, 0, -2)", IntDistribution(1, 5, step=2)),
        ("range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.4, step=0.1)),
        ("shuffle(range(1, 4))", CategoricalDistribution([1, 2, 3])),
        ("interval(0.1, 0.5)", FloatDistribution(0.1, 0.5)),
        ("int(interval(2, 9))", IntDistribution(2, 9)),
        ("tag(log, interval(0.0001, 0.1))", FloatDistribution(0.0001, 0.1, log=True)),
        ("tag(log, int(interval(4, 64)))", IntDistribution(4, 64, log=True)),
    ],
)
def test_grammar_to_distributions(value, expected):
    space = parse_search_space({"a.b": value}, [])
    got = space.distributions["a.b"]
    assert type(got) is type(expected)
    for attr in ("choices", "low", "high", "step", "log"):
        if hasattr(expected, attr):
            assert getattr(got, attr) == pytest.approx(getattr(expected, attr)), attr
    # every value of the distribution goes back to the job as an override that parses to that value
    sample = got.choices[-1] if isinstance(got, CategoricalDistribution) else got.high
    (line,) = space.overrides({"a.b": sample})
    (parsed,) = OverridesParser.create().parse_overrides([line])
    assert parsed.get_key_element() == "a.b" and not parsed.is_sweep_override()
    if isinstance(sample, (int, float)):
        assert parsed.value() == pytest.approx(sample)
    elif value.startswith("choice(["):
        assert parsed.value() == [16]


def test_command_line_wins_and_plain_values_pass_through():
    space = parse_search_space({"a": "choice(1,2)", "b": "interval(0,1)"}, ["b=0.5", "c=range(1,3)", "+d=x"])
    assert set(space.distributions) == {"a", "c"}
    assert space.fixed == ["b=0.5", "+d=x"]
    assert format_value("sqlite:////tmp/x y/optuna.db") == "'sqlite:////tmp/x y/optuna.db'"
    assert format_value({"a": [1, None, True], "b": "it's"}) == "{a:[1,null,true],b:'it\\'s'}"


@pytest.mark.parametrize(
    "value, message",
    [
        ("choice(", "cannot parse"),
        ("interval(3, 1)", "low must be below high"),
        ("tag(log, interval(0, 1))", "log scale needs low > 0"),
        ("tag(lg, interval(1, 2))", "unknown tag"),
        ("tag(log, range(1, 4))", "needs interval"),
        ("range(4, 1)", "empty"),
    ],
)
def test_bad_search_space_names_the_key(value, message):
    with pytest.raises(SweeperConfigError, match=rf"^hydra\.sweeper\.params\.model\.x: .*{message}"):
        parse_search_space({"model.x": value}, [])


def test_plugin_discovery_imports_neither_optuna_nor_sqlalchemy():
    code = (
        "import sys, hydra_plugins.lstmlab_optuna_sweeper.config, hydra_plugins.lstmlab_optuna_sweeper.sweeper;"
        "heavy = [m for m in ('optuna', 'sqlalchemy', 'torch') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_trial_link_round_trips_from_sweeper_to_job_config():
    """The overrides the sweeper writes for a trial, composed into the job's config, read back as that trial."""
    from hydra import compose, initialize_config_module

    from hydra_plugins.lstmlab_optuna_sweeper._impl import OptunaSweep
    from lstmlab.schemas import register_schemas

    sweeper = OptunaSweep(
        {"study_name": "signal", "pruner": "percentile", "pruner_args": {"percentile": 30.0, "n_warmup_steps": 1}}
    )
    sweeper.url = "sqlite:////tmp/a dir/optuna.db"  # a path that needs quoting in an override
    sweeper.space = parse_search_space({"model.hidden_size": "choice(4, 8)"}, [])
    study = optuna.create_study(study_name="signal")
    study.ask()  # trial id and number differ from 0
    trial = study.ask(sweeper.space.distributions)
    register_schemas()
    with initialize_config_module(config_module="lstmlab.conf", version_base="1.3"):
        job = compose(config_name="train", overrides=sweeper.job_overrides(trial), return_hydra_config=True)
        plain = compose(config_name="train")
    assert job.model.hidden_size == trial.params["model.hidden_size"] and job.hydra.sweep.subdir == str(trial.number)
    assert TrialLink.from_job_config(job) == TrialLink(
        storage="sqlite:////tmp/a dir/optuna.db",
        study_name="signal",
        trial_id=trial._trial_id,
        number=trial.number,
        pruner="percentile",
        pruner_args={"percentile": 30.0, "n_warmup_steps": 1},
    )
    assert TrialLink.from_job_config(plain) is None
    # the CLI's --help path may import the contract: it must not pull in torch
    subprocess.run(
        [sys.executable, "-c", "import lstmlab.optuna_trial, sys; assert 'torch' not in sys.modules"], check=True
    )


def test_bad_sweeper_config_is_one_line_naming_the_key(tmp_path):
    proc = sweep_cli(tmp_path / "sweep", "hydra.sweeper.pruner=sometimes", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: hydra.sweeper.pruner=sometimes: must be one of")
    proc = sweep_cli(tmp_path / "sweep", "hydra.sweeper.sampler=grid", check=False)  # lr is an interval
    assert proc.returncode == 2
    assert "error: hydra.sweeper.params.model.optimizer.lr: sampler=grid needs choice" in proc.stderr
    assert not (tmp_path / "sweep" / "optuna.db").exists()


# ---- real multiruns ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_sweep_writes_study_results_and_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    proc = sweep_cli(sweep, "hydra.sweeper.n_trials=6")
    study = load(sweep)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert all(set(t.params) == SEARCHED for t in study.trials)
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.best_value == pytest.approx(study.best_value)
    assert results.best_params == study.best_params and results.best_trial == study.best_trial.number
    table = rows(sweep)
    assert [r["number"] for r in table] == [str(i) for i in range(6)]
    assert all(r["state"] == "COMPLETE" and r["epochs"] == "2" and float(r["duration_s"]) > 0 for r in table)
    assert {r["params.model.hidden_size"] for r in table} <= {"4", "8", "16"}
    # each trial ran in its own dir named by its number, with the sampled values in its config
    for t in study.trials:
        job = OmegaConf.load(sweep / str(t.number) / ".hydra" / "config.yaml")
        assert job.model.hidden_size == t.params["model.hidden_size"]
        assert job.model.optimizer.lr == pytest.approx(t.params["model.optimizer.lr"])
        assert job.optuna.number == t.number and t.intermediate_values.keys() == {1, 2}
    assert "Optuna trials" in proc.stdout
    first = [t.params for t in study.trials]
    check_the_sweep_reads_in_tensorboard_and_its_report(sweep, study)

    # a process that died right after creating a trial, before its first heartbeat, left it RUNNING
    assert study.ask().number == 6
    # resume with a larger total: the orphan is failed (not counted), only the missing trials run; a rerun of
    # a finished study adds none
    sweep_cli(sweep, "hydra.sweeper.n_trials=8")
    trials = load(sweep).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6 + [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert [t.params for t in trials[:6]] == first
    sweep_cli(sweep, "hydra.sweeper.n_trials=8")
    assert len(load(sweep).trials) == 9 and len(rows(sweep)) == 9


def hparams_of_runs(root: Path) -> dict[str, dict]:
    """TensorBoard run name (its dir under ``root``) -> HPARAMS columns, values and metrics, and its scalar tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    runs: dict[str, dict] = {}
    for events in root.glob("*/events.out.tfevents*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        run = runs.setdefault(events.parent.name, {"scalars": set()})
        run["scalars"] |= set(accumulator.Tags()["scalars"])
        try:  # a run's writer reopened after testing writes a second events file, the HPARAMS summaries only
            contents = accumulator.PluginTagToContent("hparams")
        except KeyError:
            contents = {}
        for tag, content in contents.items():
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if tag == "_hparams_/experiment":
                run["columns"] = [h.name for h in data.experiment.hparam_infos]
                run["differs"] = {h.name for h in data.experiment.hparam_infos if h.differs}
                run["metrics"] = [m.name.tag for m in data.experiment.metric_infos]
            elif tag == "_hparams_/session_start_info":
                values = data.session_start_info.hparams
                run["values"] = {k: getattr(v, v.WhichOneof("kind")) for k, v in values.items()}
    return runs


def check_the_sweep_reads_in_tensorboard_and_its_report(sweep: Path, study: optuna.Study) -> None:
    """One TensorBoard root per sweep, a run per trial named by its number and values, HPARAMS led by the searched
    keys; report.md with Optuna's figures, also as TensorBoard images, and lstmlab-report drawing it again."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = hparams_of_runs(sweep)
    trials = {f"trial {t.number:03d}": t for t in study.trials}
    assert {name[:9] for name in runs if name != "study"} == set(trials)
    for name, run in runs.items():
        if name == "study":
            continue
        trial = trials[name[:9]]
        assert f"hidden_size={trial.params['model.hidden_size']} " in name
        # TensorBoard shows the differing columns first, then by name, five of them: the searched ones lead
        assert {c for c in run["columns"] if c in run["differs"]} == SEARCHED and run["metrics"][0] == "val/loss_best"
        assert run["values"]["model.hidden_size"] == trial.params["model.hidden_size"]
        assert run["values"]["trial_state"] == "complete" and set(run["metrics"]) <= run["scalars"]
    report = (sweep / "report.md").read_text()
    assert f"**Best trial {study.best_trial.number}**" in report and "**Mattered most**" in report
    for figure in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (sweep / "report" / f"{figure}.png").stat().st_size > 0 and f"report/{figure}.png" in report
    images = EventAccumulator(str(next((sweep / "study").glob("events*"))), {"images": 0})
    images.Reload()
    assert {"study/optimization_history", "study/param_importances"} <= set(images.Tags()["images"])
    (sweep / "report.md").unlink()
    run_cli("lstmlab.report", str(sweep), cwd=sweep.parent)
    assert "**Mattered most**" in (sweep / "report.md").read_text()


def test_bad_trials_are_pruned(tmp_path):
    sweep = tmp_path / "sweep"
    # a 6-point grid (its order fixed by the seed) where the tiny learning rate never learns; the median rule
    # compares each trial with the trials completed so far from the second epoch on
    sweep_cli(
        sweep,
        "trainer.max_epochs=4",
        "model.hidden_size=choice(8,16)",
        "model.num_layers=1",
        "model.optimizer.lr=choice(0.03,0.01,0.000001)",
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.seed=1",
        "hydra.sweeper.pruner=median",
        "+hydra.sweeper.pruner_args.n_startup_trials=2",
        "+hydra.sweeper.pruner_args.n_warmup_steps=1",
    )
    trials = load(sweep).trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, [(t.number, t.state, t.params, t.intermediate_values) for t in trials]
    assert len(trials) == 6 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6  # the whole grid, once
    for t in pruned:  # stopped cleanly after the epoch the pruner named, value = its last report
        epochs = t.user_attrs["epochs"]
        assert epochs < 4 and epochs == len(t.intermediate_values) == t.user_attrs["pruned_at_epoch"]
        assert t.value == t.intermediate_values[epochs]
    assert all(t.user_attrs["epochs"] == 4 for t in trials if t.state == TrialState.COMPLETE)
    assert {r["state"] for r in rows(sweep)} == {"PRUNED", "COMPLETE"}
    # HPARAMS marks them in its trial_state column
    runs = hparams_of_runs(sweep)
    for t in trials:
        (run,) = [r for name, r in runs.items() if name.startswith(f"trial {t.number:03d} ")]
        assert run["values"]["trial_state"] == ("pruned" if t.state == TrialState.PRUNED else "complete")


def test_failing_trial_is_fail_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    sweep_cli(
        sweep,
        "model.hidden_size=choice(-1,8)",
        "model.num_layers=1",
        "model.optimizer.lr=choice(0.003)",
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.max_failure_rate=0.5",
    )
    trials = load(sweep).trials
    assert sorted((t.params["model.hidden_size"], t.state.name) for t in trials) == [(-1, "FAIL"), (8, "COMPLETE")]
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    assert failed.user_attrs["error"] == "ConfigError: model.hidden_size must be > 0, got -1"
    assert "ConfigError" in (sweep / str(failed.number) / "error.txt").read_text()
    assert "hidden_size must be > 0" in next(r["error"] for r in rows(sweep) if r["state"] == "FAIL")

    # past max_failure_rate the sweep stops with one line and a non-zero status; results are still written
    stopped = tmp_path / "stopped"
    proc = sweep_cli(
        stopped,
        "model.hidden_size=choice(-1,-2,8)",
        "model.num_layers=1",
        "model.optimizer.lr=choice(0.003)",
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.max_failure_rate=0",
        check=False,
    )
    assert proc.returncode == 1
    assert "error: hydra.sweeper.max_failure_rate=0" in proc.stderr and "1 of n_trials=3 trials failed" in proc.stderr
    assert [r["state"] for r in rows(stopped)] == [t.state.name for t in load(stopped).trials]


def test_several_objectives(tmp_path):
    sweep = tmp_path / "sweep"
    sweep_cli(
        sweep,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler=nsgaii",
        "hydra.sweeper.direction=[minimize,maximize]",
        "optimized_metric=[val/loss_best,val/r2]",
    )
    study = optuna.load_study(study_name="signal", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    for t in study.trials:
        metrics = OmegaConf.load(sweep / str(t.number) / "metrics.json").val
        assert t.values == pytest.approx([metrics["val/loss_best"], metrics["val/r2"]])
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert sorted(b.number for b in results.best_trials) == sorted(t.number for t in study.best_trials)
    assert rows(sweep)[0].keys() >= {"value_0", "value_1"}


def _trial_states(db: Path) -> dict[int, str]:
    """number -> state, read straight from the SQLite file (cheap enough to poll while a sweep writes it)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return dict(con.execute("SELECT number, state FROM trials"))
    except sqlite3.Error:  # not created yet
        return {}


def _start_and_stop(sweep: Path, sig: signal.Signals, *overrides: str, exclude: tuple = ()) -> int:
    """Start a sweep, send ``sig`` once one of its trials runs, wait for the process; the trial's number."""
    args = [sys.executable, "-m", "lstmlab.train", "-m", *SMALL_SWEEP, *overrides, f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONFAULTHANDLER": "1", **ENV}
    log = sweep.parent / f"sweep-{sig.name}.log"  # its output, and every thread's stack if it fails to stop
    with log.open("w") as out:
        proc = subprocess.Popen(
            args, cwd=sweep.parent, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = None
    try:
        deadline = time.monotonic() + 300
        while running is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            # a trial whose job has started (its dir exists), so that it has its parameters
            running = next(
                (
                    n
                    for n, s in _trial_states(sweep / "optuna.db").items()
                    if s == "RUNNING" and n not in exclude and (sweep / str(n) / ".hydra").is_dir()
                ),
                None,
            )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig if running is not None else signal.SIGKILL)
        try:
            proc.wait(timeout=300)  # a graceful stop ends the running trial first; slow under a full suite
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGABRT)  # faulthandler writes every thread's stack to the log
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(
                f"the sweep still ran 300 s after {sig.name}; its output and stacks:\n{log.read_text()[-12000:]}"
            ) from None
    assert running is not None, "the sweep ended before a trial of its own was seen running"
    return running


def test_a_ctrl_c_that_python_drops_still_stops_the_trial(monkeypatch):
    """Python drops a KeyboardInterrupt raised inside a finalizer (a sweep's Ctrl-C once vanished that way inside
    an import's lock callback and the sweep ran on); the sweep remembers the Ctrl-C and the trial stops at its next
    batch, as the sweeper stops after the jobs it launched."""
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: dropped.append(info.exc_type))

    class RaisesCtrlCWhenCollected:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    with ctrl_c_remembered():
        assert not ctrl_c_seen()
        RaisesCtrlCWhenCollected()  # collected at once: the KeyboardInterrupt is raised in __del__ and dropped
        assert dropped == [KeyboardInterrupt] and ctrl_c_seen()
        callback = OptunaPruning(TrialLink(storage="sqlite://", study_name="s", trial_id=0, number=0), "val/loss")
        with pytest.raises(KeyboardInterrupt):
            callback.on_train_batch_start(None, None, None, 0)
    assert signal.getsignal(signal.SIGINT) is before
    with ctrl_c_remembered():  # the next sweep in this process starts afresh
        assert not ctrl_c_seen()


def test_killed_or_interrupted_sweep_resumes_without_losing_a_trial(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    settings = ("trainer.max_epochs=4", "hydra.sweeper.n_trials=3", "hydra.sweeper.heartbeat_interval=1")
    # SIGKILL: the trial stays RUNNING in storage, its heartbeat stops
    orphan = _start_and_stop(sweep, signal.SIGKILL, *settings)
    assert _trial_states(sweep / "optuna.db")[orphan] == "RUNNING"
    # Ctrl-C: the rerun marks the trial it was running as interrupted and queues it again at once (a long grace
    # period here, so that this rerun does not already find the killed trial stale and pick its retry)
    interrupted = _start_and_stop(sweep, signal.SIGINT, *settings, "hydra.sweeper.grace_period=3600", exclude=(orphan,))
    assert _trial_states(sweep / "optuna.db")[orphan] == "RUNNING"
    study = load(sweep)
    assert study.trials[interrupted].state == TrialState.FAIL and "interrupted" in study.trials[interrupted].user_attrs
    assert any(t.state == TrialState.WAITING and t.user_attrs.get("retry_of") == interrupted for t in study.trials)

    sweep_cli(sweep, *settings)
    trials = load(sweep).trials
    # the dead process's trial was failed (not counted) once its heartbeat was older than the grace period,
    # and run again with the same parameters; so was the interrupted one; the study has its 3 trials
    stale = trials[orphan]
    assert stale.state == TrialState.FAIL and "error" not in stale.user_attrs
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == orphan]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE and retried[0].params == stale.params
    again = [t for t in trials if t.user_attrs.get("retry_of") == interrupted]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE
    assert again[0].params == trials[interrupted].params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    notes = {int(r["number"]): r["error"] for r in rows(sweep)}
    assert "stale" in notes[orphan] and "KeyboardInterrupt" in notes[interrupted] or "SystemExit" in notes[interrupted]


# ---- PostgreSQL: two sweep processes on one study ----------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found and shutil.which("apt-get") and os.geteuid() == 0:
        for cmd in (
            ["apt-get", "install", "-y", "-q", "postgresql"],
            ["sh", "-c", "apt-get update -q && apt-get install -y -q postgresql"],
        ):
            try:
                if (
                    subprocess.run(
                        cmd, capture_output=True, timeout=300, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                    ).returncode
                    == 0
                ):
                    break
            except subprocess.TimeoutExpired:  # no package mirror answering: skip, do not hang the suite
                break
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on a loopback port (Debian's packages, installed if missing and root)."""
    if not any(importlib.util.find_spec(driver) for driver in ("psycopg", "psycopg2")):
        pytest.skip("no PostgreSQL driver is installed: pip install -e '.[postgres]'")
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server: install Debian's postgresql package (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="lstmlab-pg-"))
    data, port = root / "data", _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    try:
        subprocess.run(
            [*run_as, bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *run_as,
                bindir / "pg_ctl",
                "-D",
                data,
                "-l",
                root / "log",
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.SubprocessError, OSError) as err:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL from {bindir}: {err}")
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*run_as, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_two_sweeps_share_one_postgresql_study(tmp_path, postgres_url):
    common = [
        sys.executable,
        "-m",
        "lstmlab.train",
        "-m",
        *SMALL_SWEEP,
        "hydra.sweeper.n_trials=6",
        f"hydra.sweeper.storage={postgres_url}",
        "hydra.sweeper.study_name=shared",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **ENV}
    procs = [
        subprocess.Popen(
            [*common, f"hydra.sweep.dir={tmp_path / name}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="shared", storage=resolve_url(postgres_url)).trials
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # every trial ran exactly once, in one of the two sweeps (its dir named by its number)
    ran = sorted(int(p.parent.parent.name) for p in tmp_path.glob("[ab]/*/.hydra/config.yaml"))
    assert ran == list(range(6))
    # trials draw with seed + number: the two processes did not sample the same start points
    assert len({t.params["model.optimizer.lr"] for t in trials}) == 6
