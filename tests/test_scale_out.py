"""DDP through Lightning with 2 CPU processes over gloo (``trainer=ddp_sim``): the code path of ``trainer=ddp``,
where rank 0's Trainer re-runs the command for rank 1 into the same Hydra run dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch.distributed as dist

from helpers import SMALL_SWEEP, TINY, TINY_CLASSIFIER, TINY_PRICES, TINY_SERIES, run_cli

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)

CASES = {
    "signal_l50": ([*TINY, "data.generator.n_samples=20"], "test/r2"),
    # no dropout: each rank draws the masks of its half of a batch from its own generator, so with dropout the two
    # layouts train on different weights (enough to move the AUC-ROC of the 14 test sequences by 0.08)
    "steel_defect": ([*TINY_CLASSIFIER, "trainer.max_epochs=2", "model.net.head_dropout=0"], "test/auroc"),
    "price_forecast": (TINY_PRICES, "test/mse"),
    "seq2seq_forecast": ([*TINY_SERIES, "data.generator.n_steps=1000"], "test/mae"),
}


def run_dirs(root: Path) -> list[Path]:
    """The run dirs Hydra made under ``root/outputs/<date>/<time>``."""
    return sorted(p for p in root.glob("outputs/*/*") if p.is_dir())


def event_files(run: Path) -> list[Path]:
    return sorted(run.rglob("events.out.tfevents.*"))


def written_tags(run: Path) -> set[str]:
    """The scalar and image tags of all the run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for f in event_files(run):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 1, "images": 1})
        acc.Reload()
        tags |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
    return tags


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_train_like_one_and_write_one_run_dir(tmp_path, case):
    overrides, metric = CASES[case]
    env = {"LSTMLAB_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}  # both runs read one generated data file
    results = {}
    for name, extra in (("one", []), ("ddp", ["trainer=ddp_sim"])):
        cwd = tmp_path / name
        cwd.mkdir()
        # the Hydra run dir is left to its default (outputs/<date>/<time>): rank 1 must reuse rank 0's
        proc = run_cli("lstmlab.train", *overrides, *extra, cwd=cwd, env=env)
        runs = run_dirs(cwd)
        assert len(runs) == 1, (runs, proc.stderr[-2000:])
        run = runs[0]
        results[name] = (run, json.loads((run / "metrics.json").read_text()))

    (one_run, one), (ddp_run, ddp) = results["one"], results["ddp"]
    # each rank took half of every batch: together they trained on the batches one process did, with DDP's
    # averaged gradients, and the test metrics are synced over both halves of the test split; only the order
    # of float sums may differ (tolerance 1e-3 relative)
    assert ddp["global_steps"] == one["global_steps"]
    assert ddp["test"][metric] == pytest.approx(one["test"][metric], rel=1e-3, abs=1e-4)
    assert ddp["test"]["test/loss"] == pytest.approx(one["test"]["test/loss"], rel=1e-3)
    # rank 0 alone wrote logs and checkpoints: every event file from one process, the one-process run's tags, one
    # config (how many files the tags are spread over depends on when the writer was reopened, not on the ranks)
    assert len({f.name.split(".")[-2] for f in event_files(ddp_run)}) == 1  # events.out.tfevents.<t>.<host>.<pid>.<n>
    assert written_tags(ddp_run) == written_tags(one_run) != set()
    assert sorted(p.name for p in (ddp_run / "checkpoints").iterdir()) == sorted(
        p.name for p in (one_run / "checkpoints").iterdir()
    )
    assert (ddp_run / ".hydra" / "config.yaml").is_file()


# ---- launchers ---------------------------------------------------------------------------------------
def test_joblib_launcher_runs_the_sweeps_trials_two_at_a_time(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[dist]'")
    import optuna
    from optuna.trial import TrialState

    sweep = tmp_path / "sweep"
    run_cli(
        "lstmlab.train",
        "-m",
        *SMALL_SWEEP,
        "hydra.sweeper.n_trials=4",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    trials = optuna.load_study(study_name="signal", storage=f"sqlite:///{sweep / 'optuna.db'}").trials
    assert len(trials) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert sorted(int(p.parent.parent.name) for p in sweep.glob("*/.hydra/config.yaml")) == [0, 1, 2, 3]
    # the sweeper took its n_jobs from the launcher: trials 0 and 1 ran at the same time, in two processes
    first, second = trials[0], trials[1]
    assert second.datetime_start < first.datetime_complete and first.datetime_start < second.datetime_complete
    # side by side, the trials share the cores instead of each taking all of them (threads: null)
    share = max(1, (os.cpu_count() or 1) // 2)
    for log in sweep.glob("*/train.log"):
        assert f"torch intra-op threads: {share}" in log.read_text(), log


def test_threads_sets_a_runs_torch_threads(tmp_path):
    run_cli(
        "lstmlab.train", *TINY, "threads=1", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert "torch intra-op threads: 1" in (tmp_path / "run" / "train.log").read_text()


def test_slurm_launcher_asks_for_the_trainers_devices_and_nodes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[dist]'")
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from lstmlab.schemas import register_schemas

    register_schemas()
    with initialize_config_module(config_module="lstmlab.conf", version_base="1.3"):
        cfg = compose(
            config_name="train",
            return_hydra_config=True,
            overrides=[
                "experiment=steel_defect",
                "trainer=ddp",
                "trainer.devices=4",
                "trainer.num_nodes=2",
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
            ],
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert OmegaConf.select(cfg, "trainer.strategy") == "ddp" and cfg.trainer.use_distributed_sampler is False
