"""Every option of the model and data groups, and every experiment preset, composes to a complete config whose
net and datamodule constructors accept what it gives.

Defaults live in the YAML only (the schemas are all ``???``, the constructors have none), so a key a YAML forgets
shows here as missing, and a key a constructor no longer takes (or still needs) fails its ``instantiate``. Nothing
is set up or trained.
"""

from __future__ import annotations

import inspect
from importlib.resources import files
from pathlib import Path

import pytest
import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from helpers import build_net, compose_train
from lstmlab import choices
from lstmlab.runner import build_task
from lstmlab.schemas import validate_config

CONF = Path(str(files("lstmlab.conf")))


def options(group: str) -> list[str]:
    """The options of a config group; ``model/<option>/<variant>.yaml`` files are options too (variants)."""
    names = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    variants = [f"{name}/{p.stem}" for name in names for p in sorted((CONF / group / name).glob("*.yaml"))]
    return names + variants


MODELS, DATA, EXPERIMENTS = options("model"), options("data"), options("experiment")
# sizes the YAML leaves null (taken from the data at set-up): any valid value builds the net
DATA_SIZES = {"input_size": 3, "output_size": 1, "num_classes": 2, "num_quantiles": 1, "time_pool": 1}


def test_every_group_is_found():
    assert {"stateful", "sequence", "bilstm_classifier/deep", "seq2seq_attention"} <= set(MODELS)
    assert {"signals", "casting", "prices", "series"} <= set(DATA) and "signal_l1" in EXPERIMENTS


def compose(tmp_path: Path, *overrides: str) -> DictConfig:
    # paths.root_dir: the default reads Hydra's runtime cwd, which only a real run sets
    cfg = compose_train(f"paths.root_dir={tmp_path}", *overrides)
    for group in ("model", "data"):  # the groups whose schemas leave every value to the YAML
        missing = sorted(OmegaConf.missing_keys(cfg[group]))
        assert not missing, f"{overrides}: {group} has no value for {missing}"
    validate_config(cfg)  # types were checked while composing; this checks choices and ranges
    return cfg


def data_sizes(net: DictConfig) -> dict[str, int]:
    return {key: value for key, value in DATA_SIZES.items() if key in net and net[key] is None}


def build_configured_net(net: DictConfig) -> nn.Module:
    return instantiate(net, **data_sizes(net))


def defaults_of(node: DictConfig) -> list[str]:
    """The parameters of ``node._target_`` that have a default: a second source of a value the YAML holds."""
    parameters = inspect.signature(get_class(node._target_)).parameters.values()
    return [p.name for p in parameters if p.default is not inspect.Parameter.empty]


@pytest.mark.parametrize("model", MODELS)
def test_model_option_is_complete_and_builds_its_net_and_task(model, tmp_path):
    cfg = compose(tmp_path, f"model={model}", "~experiment")
    assert not defaults_of(cfg.model) and not defaults_of(cfg.model.net)
    assert isinstance(build_configured_net(cfg.model.net), nn.Module)
    build_task(cfg.model)  # as lstmlab-train builds it: a size left null waits for the data (set-up)
    task = build_task(OmegaConf.merge(cfg.model, {"net": data_sizes(cfg.model.net)}))
    assert isinstance(task.net, nn.Module)
    # the task's own recurrent_lr_scale() with the YAML's optimizer and scheduler (a one-cycle schedule asks the
    # trainer for the run's length)
    task.trainer = pl.Trainer(max_epochs=-1, max_steps=10, logger=False, enable_checkpointing=False)
    task.configure_optimizers()


@pytest.mark.parametrize("data", DATA)
def test_data_option_is_complete_and_builds_its_datamodule(data, tmp_path):
    cfg = compose(tmp_path, f"data={data}", "~experiment")
    assert not defaults_of(cfg.data)
    instantiate(cfg.data, _convert_="all")  # the constructor only: no file is generated or read


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_is_complete_and_builds_its_net_and_datamodule(experiment, tmp_path):
    cfg = compose(tmp_path, f"experiment={experiment}")
    assert isinstance(build_configured_net(cfg.model.net), nn.Module)
    instantiate(cfg.data, _convert_="all")


# Every name a schema accepts (lstmlab.choices), the net it configures builds: the net's map and the list agree.
SMALL = {"hidden_size": 4, "num_layers": 1}
CHOICES = [
    *((model, {"cell": cell}) for model in ("stateful", "sequence", "bilstm_classifier") for cell in choices.CELLS),
    *((model, {"head_activation": name}) for model in ("stateful", "sequence") for name in choices.ACTIVATIONS),
    *((model, {"init": init}) for model in ("stateful", "sequence") for init in choices.INITS),
    *(("bilstm_classifier", {"activation": name}) for name in choices.ACTIVATIONS),
    *(("bilstm_classifier", {"pooling": pooling}) for pooling in choices.POOLINGS),
    *(("bilstm_classifier", {"norm": norm}) for norm in choices.NORMS),
    *(("bilstm_classifier", {"init": init}) for init in choices.BASIC_INITS),
    *(("bilstm_classifier", {"freeze": [part]}) for part in choices.FREEZE_PARTS),
    *(("seq2seq_attention", {"init": init}) for init in choices.BASIC_INITS),
]


@pytest.mark.parametrize(("model", "choice"), CHOICES, ids=[f"{m}-{k}={v}" for m, c in CHOICES for k, v in c.items()])
def test_every_choice_builds_its_net(model, choice):
    sizes = {
        "seq2seq_attention": {"input_size": 2, "output_size": 1, "num_quantiles": 1, "hidden_size": 4, "num_heads": 2},
        "bilstm_classifier": {**SMALL, "input_size": 2, "num_classes": 2},
    }.get(model, SMALL)
    assert isinstance(build_net(model, **sizes, **choice), nn.Module)
