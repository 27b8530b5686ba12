"""A checkpoint is data, not code: every entry point that reads one refuses a pickle that would run code.

The malicious file is a dict saved with ``torch.save`` whose pickle holds an object with ``__reduce__``: unpickled
without ``weights_only=True`` it creates a marker file. Each entry point must print one line naming the file, exit
non-zero, and leave no marker.
"""

from __future__ import annotations

import shutil
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from helpers import TINY, run_cli
from lstmlab.checkpoints import load_task_checkpoint, read_checkpoint, unsafe_globals
from lstmlab.errors import ConfigError

REFUSED = "refused: loading it would run code (pickled builtins.exec)"


class Payload:
    """Creates ``marker`` when unpickled by a full unpickler; ``weights_only=True`` must never get that far."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def write_malicious_checkpoint(path: Path, marker: Path, legacy: bool = False) -> Path:
    """A file shaped like a Lightning checkpoint, with the payload where hyperparameters go."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"state_dict": {"net.weight": torch.zeros(2)}, "hyper_parameters": {"net": Payload(marker)}}
    torch.save(content, path, _use_new_zipfile_serialization=not legacy)
    return path


def assert_refused_in_one_line(proc, ckpt: Path, marker: Path) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith(f"error: ckpt_path={ckpt}: {REFUSED}"), errors[0]
    assert "re-save it or pass a checkpoint written by lstmlab-train" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


@pytest.fixture(scope="module")
def malicious(tmp_path_factory):
    """(directory, malicious checkpoint, marker path); the marker is what running the payload would create."""
    tmp = tmp_path_factory.mktemp("malicious")
    marker = tmp / "PWNED"
    ckpt = write_malicious_checkpoint(tmp / "shared" / "model.ckpt", marker)
    # the payload is live: a full unpickle of this very file creates the marker (checked, then undone)
    torch.load(ckpt, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return tmp, ckpt, marker


@pytest.fixture(scope="module")
def refused_resume(malicious):
    """``lstmlab-train <tiny signal run> ckpt_path=<malicious>``; Hydra saves the run's real config before the run
    starts, so the run dir also serves as the run layout that ``lstmlab-eval`` expects."""
    tmp, ckpt, _ = malicious
    run = tmp / "run"
    proc = run_cli("lstmlab.train", *TINY, f"ckpt_path={ckpt}", f"hydra.run.dir={run}", cwd=tmp, check=False)
    return proc, run


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy_format"])
def test_load_task_checkpoint_refuses_a_pickle_that_would_run_code(tmp_path, legacy):
    from lstmlab.tasks.signal_regression import SignalRegressionTask

    marker = tmp_path / "PWNED"
    ckpt = write_malicious_checkpoint(tmp_path / "model.ckpt", marker, legacy=legacy)
    for load in (lambda: read_checkpoint(ckpt), lambda: load_task_checkpoint(SignalRegressionTask, ckpt, "x")):
        with pytest.raises(ConfigError) as err:
            load()
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"ckpt_path={ckpt}: refused: loading it would run code (pickled ")
        assert "exec" in message
    assert not marker.exists()


def test_resume_from_a_pickle_that_would_run_code_is_refused(malicious, refused_resume):
    _, ckpt, marker = malicious
    proc, run = refused_resume
    assert_refused_in_one_line(proc, ckpt, marker)
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists()


def test_eval_of_a_pickle_that_would_run_code_is_refused(malicious, refused_resume, tmp_path):
    _, ckpt, marker = malicious
    _, run = refused_resume
    assert (run / ".hydra" / "config.yaml").is_file()
    best = run / "checkpoints" / "best.ckpt"
    best.parent.mkdir(exist_ok=True)
    shutil.copy(ckpt, best)
    proc = run_cli(
        "lstmlab.evaluate", f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path, check=False
    )
    assert_refused_in_one_line(proc, best, marker)
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_stream_from_a_pickle_that_would_run_code_is_refused(malicious, tmp_path):
    _, ckpt, marker = malicious
    ticks = tmp_path / "ticks.csv"
    ticks.write_text("date,close,volume\n" + "".join(f"2024-01-{d:02d},{100 + d},1000\n" for d in range(1, 29)))
    proc = run_cli("lstmlab.stream", f"ckpt_path={ckpt}", f"source={ticks}", cwd=tmp_path, check=False)
    assert_refused_in_one_line(proc, ckpt, marker)
    assert proc.stdout == ""


def plain_types(value, path: str = "checkpoint") -> list[str]:
    """Where ``value`` holds anything but tensors, plain containers and scalars (empty: all plain)."""
    if isinstance(value, (dict, OrderedDict)):
        return [bad for k, v in value.items() for bad in plain_types(k, path) + plain_types(v, f"{path}[{k!r}]")]
    if isinstance(value, (list, tuple)):
        return [bad for i, v in enumerate(value) for bad in plain_types(v, f"{path}[{i}]")]
    if value is None or isinstance(value, (torch.Tensor, str, bytes, int, float, bool)):
        return []
    return [f"{path}: {type(value).__module__}.{type(value).__qualname__}"]


def test_our_checkpoints_are_plain_and_still_load(trained_run):
    """What lstmlab-train writes needs no allowlist; the other families' checkpoints are read through the same
    ``load_task_checkpoint`` by the eval and stream tests of test_steel_defect_cli, test_series and test_prices."""
    from lstmlab.tasks.signal_regression import SignalRegressionTask

    for name in ("best.ckpt", "last.ckpt"):
        ckpt = trained_run / "checkpoints" / name
        assert unsafe_globals(ckpt) == []
        content = read_checkpoint(ckpt)
        assert plain_types(content) == []
        assert {"state_dict", "hyper_parameters", "optimizer_states", "callbacks", "loops"} <= set(content)
    task = load_task_checkpoint(SignalRegressionTask, trained_run / "checkpoints" / "best.ckpt", "lstmlab-train")
    for name, tensor in read_checkpoint(trained_run / "checkpoints" / "best.ckpt")["state_dict"].items():
        torch.testing.assert_close(task.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
