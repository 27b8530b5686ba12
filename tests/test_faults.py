"""Faults a long run survives, each done for real: SIGKILL and SIGTERM of a training process, killed and
concurrent data generation, a diverging loss, an unwritable or reused run dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY, read_metrics, run_cli, train

# epochs of about a second each, so that a signal lands mid-training
LONGER = ["data.generator.n_samples=48", "data.generator.duration=4.0", "trainer.max_epochs=4", "model.hidden_size=16"]


def start_training(tmp_path: Path, run: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lstmlab.train", *TINY, *LONGER, *overrides, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path} appeared:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_sigkill_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    _, reference = train(tmp_path, *LONGER, run_dir="reference")

    killed = tmp_path / "killed"
    proc = start_training(tmp_path, killed)
    wait_for(killed / "checkpoints" / "last.ckpt", proc)  # the first epoch is saved
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()

    train(tmp_path, *LONGER, "resume=true", run_dir="killed")
    assert read_metrics(killed)["test"] == read_metrics(reference)["test"]
    resumed, expected = weights(killed), weights(reference)
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)


# a checkpoint every 7 optimizer steps: most of them fall inside an epoch (an epoch here is 80 steps)
STEP_CHECKPOINTS = ["callbacks.model_checkpoint.every_n_train_steps=7"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_ends_bit_identical(tmp_path):
    _, reference = train(tmp_path, *LONGER, *STEP_CHECKPOINTS, run_dir="reference")

    killed = tmp_path / "killed"
    proc = start_training(tmp_path, killed, *STEP_CHECKPOINTS)
    wait_for(killed / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    done = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    assert 0 < done < 80, f"the kill was meant to land inside an epoch; the checkpoint is after batch {done}"

    train(tmp_path, *LONGER, *STEP_CHECKPOINTS, "resume=true", run_dir="killed")
    assert read_metrics(killed)["test"] == read_metrics(reference)["test"]
    assert read_metrics(killed)["global_steps"] == read_metrics(reference)["global_steps"]
    resumed, expected = weights(killed), weights(reference)
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)


def test_sigterm_saves_a_checkpoint_exits_cleanly_and_resumes(tmp_path):
    run = tmp_path / "run"
    proc = start_training(tmp_path, run)
    wait_for(run / "checkpoints" / "last.ckpt", proc)
    (run / "checkpoints" / "last.ckpt").unlink()  # so the file below can only come from the SIGTERM handler
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr and "resume=true" in stderr
    assert (run / "checkpoints" / "last.ckpt").is_file()
    train(tmp_path, *LONGER, "resume=true", run_dir="run")
    assert read_metrics(run)["epochs"] == 4


def test_a_diverging_loss_stops_with_a_clear_message(tmp_path):
    proc, run = train(
        tmp_path, "model.optimizer.lr=1e30", "trainer.gradient_clip_val=null", "model.scheduler=null", check=False
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = [text for text in proc.stderr.splitlines() if text.startswith("error:")]
    assert line and "training loss became" in line[0] and "epoch" in line[0] and "model.optimizer.lr" in line[0]
    assert not (run / "metrics.json").exists()


def test_a_run_dir_is_never_reused(tmp_path):
    _, run = train(tmp_path, "trainer.max_epochs=1")
    before = (run / "metrics.json").read_bytes()
    proc, _ = train(tmp_path, "trainer.max_epochs=1", check=False)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr and "resume=true" in proc.stderr
    assert (run / "metrics.json").read_bytes() == before


def test_two_runs_started_together_into_one_run_dir_do_not_mix(tmp_path):
    # what two jobs started in the same second get from the default hydra.run.dir
    run = tmp_path / "shared"
    runs = [start_training(tmp_path, run) for _ in range(2)]
    outcomes = [(proc.wait(timeout=600), proc.stderr.read()) for proc in runs]
    assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
    refused = next(err for code, err in outcomes if code == 2)
    assert f"hydra.run.dir={run}" in refused and "Traceback" not in refused
    assert read_metrics(run)["epochs"] == 4
    writers = {
        f.name.split(".")[-2] for f in (run / "tensorboard").glob("events.out.tfevents.*")
    }  # ...<host>.<pid>.<n>
    assert len(writers) == 1


def test_an_unwritable_run_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = run_cli("lstmlab.train", *TINY, f"hydra.run.dir={blocker}/run", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert f"hydra.run.dir={blocker}/run: cannot write there" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing generated, nothing trained


GENERATE = """
import sys
from lstmlab.data.signals import ensure_signals
ensure_signals(sys.argv[1], dict(n_samples=int(sys.argv[2]), sampling_rate=1000.0, duration=10.0,
               frequencies=[1.0, 3.0, 5.0, 7.0], amplitude_range=[0.5, 1.5], noise_std=0.1, seed=1))
"""


def _params(n: int) -> dict:
    return dict(
        n_samples=n,
        sampling_rate=1000.0,
        duration=10.0,
        frequencies=[1.0, 3.0, 5.0, 7.0],
        amplitude_range=[0.5, 1.5],
        noise_std=0.1,
        seed=1,
    )


def test_killed_generation_leaves_no_valid_looking_file(tmp_path):
    from lstmlab.data.signals import cached_signals_path, ensure_signals, load_signals

    final = cached_signals_path(tmp_path, _params(400))
    proc = subprocess.Popen([sys.executable, "-c", GENERATE, str(tmp_path), "400"])
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*.tmp-*")) and time.monotonic() < deadline:  # the write has begun
        assert proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not final.exists()
    assert ensure_signals(tmp_path, _params(400)) == final
    assert load_signals(final).mixed.shape == (400, 10000)


def test_concurrent_generation_gives_one_valid_file(tmp_path):
    from lstmlab.data.signals import cached_signals_path, generate_signals, load_signals

    procs = [subprocess.Popen([sys.executable, "-c", GENERATE, str(tmp_path), "60"]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert [p.name for p in tmp_path.iterdir()] == [cached_signals_path(tmp_path, _params(60)).name]
    np.testing.assert_array_equal(
        load_signals(cached_signals_path(tmp_path, _params(60))).targets, generate_signals(**_params(60)).targets
    )
