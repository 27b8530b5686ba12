"""Fixtures shared by the tests; the helpers they use (tiny CLI runs, data files) live in helpers.py."""

from __future__ import annotations

import pytest

from helpers import train


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny sequence-model run shared by the read-only tests (eval, TensorBoard, checkpoint)."""
    tmp = tmp_path_factory.mktemp("trained")
    _, run = train(tmp, "trainer.max_epochs=3", "data.generator.n_samples=24", "model.hidden_size=16")
    return run
