"""Helpers that test modules import (``from helpers import ...``: pytest puts tests/ on ``sys.path``).

One section per concern, each named for what it gives; fixtures stay in conftest.py.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from omegaconf import DictConfig, OmegaConf


# ---- the shipped config: compose it, build its nets from it ----------------------------------------------------
def compose_train(*overrides: str) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` as ``lstmlab-train`` composes it (schemas registered)."""
    from hydra import compose, initialize_config_module

    from lstmlab.schemas import register_schemas

    register_schemas()
    with initialize_config_module(config_module="lstmlab.conf", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@cache
def _shipped_net(model: str) -> DictConfig:
    # the model option alone, without the default experiment on top: the values its YAML ships
    return compose_train(f"model={model}", "~experiment").model.net


def net_kwargs(model: str, **overrides: Any) -> dict[str, Any]:
    """The arguments ``conf/model/<model>.yaml`` gives its net (``model.net`` less ``_target_``), ``overrides``
    on top."""
    kwargs = OmegaConf.to_container(_shipped_net(model), resolve=True)
    kwargs.pop("_target_")
    return kwargs | overrides


def build_net(model: str, **overrides: Any):
    """The net of ``model=<model>`` with the shipped values, ``overrides`` replacing some: a test states only what it
    varies and gets the real defaults for the rest. Sizes the YAML leaves to the data (null) must be given.

    The class is called directly, not through ``hydra.utils.instantiate``, so that a constructor's own error (a
    ``ValueError`` naming the option) reaches the test as it is rather than wrapped in an InstantiationException.
    """
    from hydra.utils import get_class

    return get_class(_shipped_net(model)._target_)(**net_kwargs(model, **overrides))
