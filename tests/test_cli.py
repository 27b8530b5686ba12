"""The command line, end to end: real subprocess runs of lstmlab-train / lstmlab-eval with tiny configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from helpers import TINY, read_metrics, run_cli, train

# the signal experiments (their metrics are checked below); other experiments are run through the CLI by
# their own test files (price_forecast: tests/test_prices.py)
EXPERIMENTS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment").glob("signal_*.yaml"))


def test_cfg_job_prints_the_composed_default(tmp_path):
    out = run_cli("lstmlab.train", "--cfg", "job", cwd=tmp_path).stdout
    assert "_target_: lstmlab.nets.sequence.SequenceLSTM" in out
    assert "chunk_len: 50" in out and "- l50" in out
    override = run_cli("lstmlab.train", "--cfg", "job", "experiment=signal_l1", "model.hidden_size=128", cwd=tmp_path)
    assert "lstmlab.nets.stateful.StatefulLSTM" in override.stdout and "hidden_size: 128" in override.stdout


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_with_fast_dev_run(tmp_path, experiment):
    proc, run = train(tmp_path, f"experiment={experiment}", "debug=fast", "data.generator.n_samples=6")
    assert (run / ".hydra" / "config.yaml").is_file()
    metrics = read_metrics(run)
    assert set(metrics["test"]) >= {"test/r2", "test/mse", "test/mae", "test/r2_1hz", "test/r2_7hz"}


def test_training_writes_checkpoints_metrics_and_learns(trained_run):
    metrics = read_metrics(trained_run)
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert metrics["epochs"] == 3 and metrics["wall_time_s"] > 0
    assert metrics["val"]["val/loss_best"] == pytest.approx(
        min(metrics["val"]["val/loss"], metrics["val"]["val/loss_best"])
    )
    # the signals have unit-scale components; an untrained net has R² near 0 or below
    assert metrics["test"]["test/r2"] > 0.2


def test_eval_reproduces_the_test_metrics_of_the_run(trained_run, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={ckpt}",
        "extras.print_config=false",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=trained_run.parent,
    )
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    original = read_metrics(trained_run)["test"]
    assert evaluated.keys() == original.keys()
    for key, value in original.items():
        assert evaluated[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_checkpoint_rebuilds_the_task_with_no_arguments(trained_run):
    from lstmlab.tasks.signal_regression import SignalRegressionTask

    task = SignalRegressionTask.load_from_checkpoint(trained_run / "checkpoints" / "best.ckpt", map_location="cpu")
    assert task.net.hidden_size == 16 and task.net.num_layers == 1
    pred, _ = task(torch.zeros(2, 7, 5))
    assert pred.shape == (2, 7)


def _plugin_content(acc: EventAccumulator, plugin: str) -> dict:
    try:
        return acc.PluginTagToContent(plugin)
    except KeyError:  # this event file holds nothing of that plugin
        return {}


def test_tensorboard_has_scalars_hparams_and_figures(trained_run):
    logdir = trained_run / "tensorboard"
    files = sorted(logdir.glob("events.out.tfevents.*"))
    assert files
    scalars, images, hparams, columns, metrics, metric_tags, figures = set(), set(), {}, [], [], [], 0
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
        images |= set(acc.Tags()["images"])
        if "val/prediction" in acc.Tags()["images"]:
            figures += len(acc.Images("val/prediction"))
        for tag, content in _plugin_content(acc, "hparams").items():
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if tag == "_hparams_/session_start_info":
                hparams.update(data.session_start_info.hparams)
            if tag == "_hparams_/experiment":
                columns = [h.name for h in data.experiment.hparam_infos]
                metrics = [m.display_name for m in data.experiment.metric_infos]
                metric_tags = [m.name.tag for m in data.experiment.metric_infos]
    assert {"train/loss_epoch", "val/loss", "val/r2", "val/r2_3hz", "val/loss_best", "~test/r2"} <= scalars
    # SCALARS lists tag groups by name and opens on the first: the training curves come first; Lightning's epoch
    # and learning rates and the one-point test metrics are filed last, and no tag sits in a group of its own
    groups = sorted({tag.split("/", 1)[0] for tag in scalars})
    assert "~trainer/epoch" in scalars and all("/" in tag for tag in scalars)
    assert groups == ["train", "val", "~test", "~trainer"], groups
    assert "val/prediction" in images
    # HPARAMS: what the command line changed first, then the family's short list; no plumbing keys
    changed = ["data.generator.n_samples", "data.generator.duration", "data.batch_size", "model.hidden_size"]
    assert columns[:4] == changed
    assert {"experiment", "model.num_layers", "model.optimizer.lr", "data.chunk_len", "seed"} <= set(columns)
    assert len(columns) <= 16 and not [c for c in columns if "_target_" in c or "callbacks" in c or "path" in c]
    assert hparams["model.hidden_size"].number_value == 16 and hparams["data.chunk_len"].number_value == 50
    assert hparams["experiment"].string_value == "signal_l50"
    # its metrics are the run's own tags, the optimized one first, declared without one-point hparams/* copies
    # titled by the metrics' names, read from the tags the logger wrote
    assert metrics[0] == "val/loss_best" and "test/r2" in metrics and set(metric_tags) <= scalars
    assert not [tag for tag in scalars if tag.startswith("hparams/")]
    assert figures == 3  # one per validation epoch


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path):
    _, a = train(tmp_path, "experiment=signal_l1", run_dir="a")
    _, b = train(tmp_path, "experiment=signal_l1", run_dir="b")
    assert read_metrics(a)["test"] == read_metrics(b)["test"]
    _, c = train(tmp_path, "experiment=signal_l1", "seed=7", run_dir="c")
    assert read_metrics(c)["test"] != read_metrics(a)["test"]


def _scalar_series(run: Path, tag: str) -> list[float]:
    values = []
    for f in sorted((run / "tensorboard").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            values += [e.value for e in acc.Scalars(tag)]
    return values


def test_recurrent_lr_scale_slows_or_freezes_the_recurrent_weights(tmp_path):
    from lstmlab.tasks.signal_regression import SignalRegressionTask

    # a tenth: under the one-cycle schedule of signal_l1 the recurrent weights' rate is 0.1x the rest's at every step
    _, slow = train(
        tmp_path,
        "experiment=signal_l1",
        "model.recurrent_lr_scale=0.1",
        "trainer.log_every_n_steps=1",
        "callbacks.lr_monitor.logging_interval=step",
        run_dir="slow",
    )
    others = _scalar_series(slow, "~trainer/lr-Adam/others")
    recurrent = _scalar_series(slow, "~trainer/lr-Adam/recurrent")
    assert len(others) == len(recurrent) > 2
    assert len(set(others)) > 2  # the schedule moves
    assert recurrent == pytest.approx([0.1 * lr for lr in others], rel=1e-6)
    # zero: the recurrence stays the oscillator bank it started as; the gates' input weights and the head train
    _, frozen = train(tmp_path, "experiment=signal_l1", "model.recurrent_lr_scale=0", run_dir="frozen")
    checkpoint = torch.load(frozen / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    trained = checkpoint["state_dict"]
    start = SignalRegressionTask(**checkpoint["hyper_parameters"]).state_dict()
    assert torch.equal(trained["net.layers.0.weight_hh_l0"], start["net.layers.0.weight_hh_l0"])
    assert not torch.allclose(trained["net.layers.0.weight_ih_l0"], start["net.layers.0.weight_ih_l0"])
    assert not torch.allclose(trained["net.head.0.weight"], start["net.head.0.weight"])


def test_overrides_reach_the_run(tmp_path):
    _, run = train(
        tmp_path,
        "model=sequence",
        "model.hidden_size=6",
        "model.num_layers=3",
        "trainer.max_epochs=1",
        "trainer.gradient_clip_val=0.5",
    )
    from omegaconf import OmegaConf

    saved = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert saved.trainer.gradient_clip_val == 0.5
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state["net.rnn.weight_hh_l2"].shape == (24, 6)  # 3 layers of 4 gates x 6 units
    assert read_metrics(run)["epochs"] == 1


def test_multirun_makes_one_run_dir_per_job(tmp_path):
    sweep = tmp_path / "multirun"
    run_cli(
        "lstmlab.train",
        "-m",
        *TINY,
        "trainer.max_epochs=1",
        "model.hidden_size=4,8",
        "model.num_layers=1,2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    # one TensorBoard root: each job's run beside the job dirs, named by its number
    boards = sorted(p.name for p in sweep.iterdir() if p.name.startswith("trial "))
    assert boards == ["trial 000", "trial 001", "trial 002", "trial 003"]
    from omegaconf import OmegaConf

    combos = {
        (
            OmegaConf.load(j / ".hydra" / "config.yaml").model.hidden_size,
            OmegaConf.load(j / ".hydra" / "config.yaml").model.num_layers,
        )
        for j in jobs
    }
    assert combos == {(4, 1), (4, 2), (8, 1), (8, 2)}
    assert all((j / "metrics.json").is_file() and (j / "checkpoints" / "best.ckpt").is_file() for j in jobs)


def test_console_script_help_lists_the_groups(tmp_path):
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("lstmlab-train")  # installed beside this interpreter
    assert exe.is_file(), "the lstmlab-train console script is not installed"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    for group in ("data:", "model:", "trainer:", "experiment:", "callbacks:", "logger:", "debug:"):
        assert group in out
    assert "signal_l1" in out and "stateful" in out


def test_fast_help_prints_exactly_hydras_own_help(tmp_path):
    """The help path shares one config repository between group listings; the text must not change."""
    import subprocess
    import sys

    def help_text(flag: str, fast: bool) -> str:
        disable = "" if fast else "import lstmlab.help_listing as h; h.list_groups_once = lambda *a, **k: None; "
        code = (
            f"import sys, runpy; sys.argv = ['lstmlab-train', '{flag}']; {disable}"
            "runpy.run_module('lstmlab.train', run_name='__main__')"
        )
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
        ).stdout

    for flag in ("--help", "--hydra-help"):
        fast = help_text(flag, fast=True)
        assert "== Configuration groups ==" in fast or "Hydra (" in fast
        assert fast == help_text(flag, fast=False), flag
