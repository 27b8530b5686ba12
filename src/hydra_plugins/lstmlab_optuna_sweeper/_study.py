"""Samplers, the storage with its heartbeat, and a study-wide lock for several sweep processes.

The pruner factory is in ``lstmlab.optuna_trial``: a trial's pruning callback builds the same pruner from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from hydra_plugins.lstmlab_optuna_sweeper._space import grid_of
from lstmlab.optuna_trial import SweeperConfigError, construct_checked

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "grid", "cmaes", "nsgaii")


def make_sampler(
    name: str, seed: int | None, args: dict[str, Any], distributions: dict[str, BaseDistribution]
) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return construct_checked("hydra.sweeper.sampler", optuna.samplers.TPESampler, args, seed=seed)
    if name == "random":
        return construct_checked("hydra.sweeper.sampler", optuna.samplers.RandomSampler, args, seed=seed)
    if name == "grid":
        grid = {key: grid_of(key, d) for key, d in distributions.items()}
        return construct_checked(
            "hydra.sweeper.sampler", optuna.samplers.GridSampler, args, search_space=grid, seed=seed
        )
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise SweeperConfigError(
                "hydra.sweeper.sampler=cmaes: needs the cmaes package; pip install 'lstmlab[cmaes]'"
            ) from None
        return construct_checked("hydra.sweeper.sampler", optuna.samplers.CmaEsSampler, args, seed=seed)
    if name == "nsgaii":
        return construct_checked("hydra.sweeper.sampler", optuna.samplers.NSGAIISampler, args, seed=seed)
    raise SweeperConfigError(f"hydra.sweeper.sampler={name}: must be one of {list(SAMPLERS)}")


def mask_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: say it as given
        return url


def resolve_url(url: str) -> str:
    """``postgresql://...`` names no driver, and SQLAlchemy's default driver for it changed (psycopg2 up to 2.0,
    psycopg 3 from 2.1): use whichever of the two is installed, or say how to install one."""
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    import importlib.util

    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    raise SweeperConfigError(
        f"hydra.sweeper.storage={mask_password(url)}: no PostgreSQL driver installed; pip install 'lstmlab[postgres]'"
    )


def make_storage(url: str, heartbeat_interval: int, grace_period: int | None) -> optuna.storages.RDBStorage:
    """An RDB storage whose running trials carry a heartbeat; a stale one is failed and retried once."""
    storages = optuna.storages
    retry_cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    params = inspect.signature(optuna.storages.RDBStorage).parameters
    callback_kw = (
        "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else "failed_trial_callback"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = retry_cls(max_retry=1)
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                **{callback_kw: retry},
            )
        except ImportError as err:
            driver = "pip install 'lstmlab[postgres]'" if url.startswith("postgres") else "install its driver"
            raise SweeperConfigError(
                f"hydra.sweeper.storage={mask_password(url)}: no database driver ({err}); {driver}"
            ) from None
        except Exception as err:  # a URL that does not parse, a server that does not answer
            raise SweeperConfigError(
                f"hydra.sweeper.storage={mask_password(url)}: cannot open the storage "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from None


@contextlib.contextmanager
def study_lock(url: str, study_name: str) -> Iterator[None]:
    """Held while a process counts the study's trials and asks for new ones, so that several processes on one
    study never start more than ``n_trials``. PostgreSQL and MySQL: a server-side advisory lock; SQLite: a lock
    file beside the database (processes of one machine); anything else: no lock (a warning is logged once)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            yield
            return
        lock_path = Path(database + ".lock")
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if backend in ("postgresql", "mysql", "mariadb"):
        from sqlalchemy import text

        key = f"lstmlab-optuna/{study_name}"
        if backend == "postgresql":
            acquire, release = "SELECT pg_advisory_lock(hashtext(:k))", "SELECT pg_advisory_unlock(hashtext(:k))"
        else:
            key = key[:64]
            acquire, release = "SELECT GET_LOCK(:k, -1)", "SELECT RELEASE_LOCK(:k)"
        with _lock_engine(url).connect() as conn:
            conn.execute(text(acquire), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text(release), {"k": key})
                conn.commit()
        return
    if url not in _warned:
        _warned.add(url)
        log.warning(
            "storage %s: no cross-process lock for this backend; concurrent sweeps may overshoot n_trials", backend
        )
    yield


_warned: set[str] = set()
_engines: dict[str, Any] = {}


def _lock_engine(url: str) -> Any:
    if url not in _engines:
        import sqlalchemy

        _engines[url] = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    return _engines[url]


class Heartbeat:
    """Records a heartbeat for each running trial of this process every ``interval`` seconds (a daemon thread),
    so that other processes can tell a trial of a dead process from a slow one."""

    def __init__(self, storage: optuna.storages.RDBStorage, interval: float) -> None:
        self.storage = storage
        self.interval = interval
        self.trial_ids: set[int] = set()
        self.guard = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)
        self.thread.start()

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)
        with self.guard:
            self.trial_ids.add(trial_id)

    def remove(self, trial_id: int) -> None:
        with self.guard:
            self.trial_ids.discard(trial_id)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.guard:
                ids = list(self.trial_ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # a database hiccup must not kill the thread
                    log.debug("heartbeat of trial id %s failed: %s", trial_id, err)

    def stop(self) -> None:
        self.stopped.set()
