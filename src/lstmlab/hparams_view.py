"""What TensorBoard's HPARAMS shows of a run: the settings that tell runs apart, and the run's own metrics.

The full composed config stays in ``.hydra/config.yaml``; HPARAMS gets, in this order, the keys the command line
or the sweeper changed (a trial's searched parameters first among them), then a short list of the settings
that matter for every model family (sizes, depth, direction, dropout, learning rate, batch size, context,
seed), never ``_target_``, paths or callback and logger plumbing. Its metric columns are tags the run already
logs (``val/...``, ``test/...``; the optimized metric first): they are declared, not logged again, so SCALARS
holds no one-point ``hparams/*`` copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

# the settings shown for every run, where its config has them (the signal and price tasks keep their sizes on
# ``model``, the classifier and the forecaster on ``model.net``)
FAMILY_KEYS = (
    "experiment",
    "model.net.hidden_size",
    "model.hidden_size",
    "model.net.num_layers",
    "model.num_layers",
    "model.net.encoder_layers",
    "model.net.decoder_layers",
    "model.net.bidirectional",
    "model.bidirectional",
    "model.net.dropout",
    "model.dropout",
    "model.optimizer.lr",
    "model.loss",
    "data.batch_size",
    "data.chunk_len",
    "data.input_len",
    "data.horizon",
    "seed",
)
# command-line keys that say where or how a run writes, or which search it belongs to, not what it learns
PLUMBING_GROUPS = ("hydra", "optuna", "paths", "extras", "callbacks", "logger", "debug", "hparams_search")
PLUMBING_KEYS = (
    "trainer.accelerator",
    "trainer.devices",
    "threads",
    "fill_uninitialized_memory",
    "ckpt_path",
    "resume",
)
PLUMBING_LEAVES = ("_target_", "path", "data_dir")
MAX_METRICS = 10
# comparison forecasts and baselines logged beside the model's own metrics
BESIDE_THE_MODEL = ("_seasonal_naive", "_last_value", "baseline", "persistence", "_origin_")


def _is_plumbing(key: str) -> bool:
    dotted = key.replace("/", ".")
    return (
        dotted.split(".", 1)[0] in PLUMBING_GROUPS
        or dotted in PLUMBING_KEYS
        or dotted.rsplit(".", 1)[-1] in PLUMBING_LEAVES
    )


def changed_keys(overrides: Iterable[str]) -> dict[str, str]:
    """``key -> value text`` of the command line's (or a sweeper's) overrides, plumbing left out."""
    changed = {}
    for text in overrides:
        key, _, value = text.partition("=")
        key = key.lstrip("+~")
        if key and not _is_plumbing(key):
            changed[key] = value
    return changed


def _scalar(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return str(value)


def compared_params(
    cfg: DictConfig, overrides: Sequence[str], first: Mapping[str, Any] = (), choices: Mapping[str, Any] = ()
) -> dict[str, Any]:
    """The HPARAMS columns of a run: ``first`` (a trial's searched parameters), the changed keys, then
    ``FAMILY_KEYS``; a config group (``experiment``, ``model=bilstm_classifier/deep``) shows the option chosen
    (``choices``: Hydra's runtime choices, group -> option)."""
    changed = changed_keys(overrides)
    params: dict[str, Any] = {k: _scalar(v) for k, v in dict(first).items()}
    for key in [*changed, *FAMILY_KEYS]:
        if key in params:
            continue
        if key in choices and choices[key] is not None:
            params[key] = str(choices[key])
            continue
        value = OmegaConf.select(cfg, key.replace("/", "."), default=None)
        if isinstance(value, DictConfig) or (value is None and key in changed):
            if key in changed:  # a config group chosen on the command line: its option's name
                params[key] = changed[key]
            continue
        if value is not None:
            params[key] = _scalar(value)
    return params


def metric_tags(optimized: str | Sequence[str] | None, logged: Iterable[str]) -> list[str]:
    """The metric columns: the optimized metric(s), then the run's validation and test metrics (the model's
    own aggregates, not the baselines' beside them nor per-target variants), at most ``MAX_METRICS``."""
    names = [optimized] if isinstance(optimized, str) else list(optimized or [])
    logged = list(logged)
    own = [k for k in logged if k.startswith(("val/", "test/")) and not any(b in k for b in BESIDE_THE_MODEL)]
    # a per-target or per-class variant (val/mae_1hz beside val/mae) makes way for the aggregates
    own = [k for k in own if not any(k.startswith(m + "_") for m in own if m != k)]
    ordered = [n for n in names if n in logged] + sorted(own, key=lambda k: (not k.startswith("val/"), k))
    return list(dict.fromkeys(ordered))[:MAX_METRICS]


def hparams_summaries(params: Mapping[str, Any], metrics: Sequence[str], leading: Iterable[str] = ()) -> list:
    """The three HPARAMS summaries of a run (experiment: columns and metrics; session start: this run's values;
    session end) as TensorBoard protos; the metric values are read by TensorBoard from the run's own tags.

    TensorBoard orders the columns by whether their values differ between runs, then by name, and shows the
    first five: marking the ``leading`` keys (a trial's searched parameters) as differing puts them on screen."""
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from torch.utils.tensorboard.summary import hparams

    from lstmlab.loggers import filed_tag

    experiment, session_start, session_end = hparams(dict(params), {name: 0.0 for name in metrics})
    leading = set(leading)
    metadata = experiment.value[0].metadata.plugin_data
    data = HParamsPluginData.FromString(metadata.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in leading
    for metric in data.experiment.metric_infos:  # read from the tag the logger wrote, titled by the metric's name
        metric.display_name = metric.name.tag
        metric.name.tag = filed_tag(metric.name.tag)
    metadata.content = data.SerializeToString()
    return [experiment, session_start, session_end]
