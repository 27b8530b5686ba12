"""Fixtures shared by the tests; the helpers they use (tiny CLI runs, data files) live in helpers.py."""

from __future__ import annotations

import os

import pytest

# pytest-xdist runs the test files on one worker per core (pyproject's addopts). Each worker and every CLI run it
# starts keep torch to one thread: runs side by side that each use every core thrash (17x slower each on 2 cores).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

from helpers import train


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny sequence-model run shared by the read-only tests (eval, TensorBoard, checkpoint)."""
    tmp = tmp_path_factory.mktemp("trained")
    _, run = train(tmp, "trainer.max_epochs=3", "data.generator.n_samples=24", "model.hidden_size=16")
    return run
