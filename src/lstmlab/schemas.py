"""Structured-config schemas of the data and model groups, and range checks of the composed config.

The YAML files of a group list their schema first in their defaults (``/schema/model@_here_: sequence``), so
Hydra rejects an unknown key or a value of the wrong type while composing, naming the key. A schema holds types,
and its ``problems()`` the choices (from ``lstmlab.choices``) and ranges (``hidden_size > 0``,
``0 <= dropout < 1`` ...) that ``validate_config`` checks before any work starts. Defaults live in the YAML of
each group only: every field here is ``MISSING`` (``???``), so a YAML that forgets a key fails by name instead of
falling back to a second, silently different default. Only dataclasses and OmegaConf here: this module is on
the ``--help`` path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from lstmlab.choices import (
    ACTIVATIONS,
    BASE_FORECASTS,
    BASIC_INITS,
    CELLS,
    CLASS_WEIGHTINGS,
    FORECAST_SCALERS,
    FREEZE_PARTS,
    INITS,
    INTERVAL_CALIBRATIONS,
    LOSSES,
    LSTM_INPUTS,
    MISSING_POLICIES,
    NORMS,
    POOLINGS,
    PRICE_TARGETS,
    SHORT_SERIES_POLICIES,
    TEACHER_FORCING_SCHEDULES,
)
from lstmlab.errors import ConfigError

Problem = tuple[str, str]  # (key relative to the node, what is wrong and how to fix it)


def _is_set(value: Any) -> bool:
    # null has no range, and MISSING is reported as missing by validate_config, not as out of range; skipping
    # both also lets a test check one field of a schema built with only the fields it needs
    return value is not None and not (isinstance(value, str) and value == MISSING)


def _positive(name: str, value: Any) -> Iterator[Problem]:
    if _is_set(value) and value <= 0:
        yield name, f"must be > 0, got {value}"


def _at_least(name: str, value: Any, low: float, why: str = "") -> Iterator[Problem]:
    if _is_set(value) and value < low:
        yield name, f"must be >= {low}{f' ({why})' if why else ''}, got {value}"


def _fraction(name: str, value: Any) -> Iterator[Problem]:
    if _is_set(value) and not 0.0 <= value < 1.0:
        yield name, f"must be in [0, 1), got {value}"


def _one_of(name: str, value: Any, choices: tuple) -> Iterator[Problem]:
    if _is_set(value) and value not in choices:
        yield name, f"must be one of {list(choices)}, got {value!r}"


def _low_high(name: str, value: Any) -> Iterator[Problem]:
    if _is_set(value) and (len(value) != 2 or value[0] > value[1]):
        yield name, f"must be [low, high] with low <= high, got {value}"


def _each_positive(name: str, values: Any) -> Iterator[Problem]:
    for value in values if _is_set(values) else ():
        yield from _positive(name, value)


def _learning_rate(optimizer: Any) -> Iterator[Problem]:
    lr = optimizer.get("lr") if _is_set(optimizer) else None
    yield from _positive("optimizer.lr", lr)


# ---- signal regression: stateful (L=1) and sequence (L>1) nets ----------------------------------------------
@dataclass
class RecurrentNetSchema:
    _target_: str = MISSING
    input_size: int = MISSING
    output_size: int = MISSING
    hidden_size: int = MISSING
    num_layers: int = MISSING
    dropout: float = MISSING
    cell: str = MISSING
    head_hidden: list[int] = MISSING
    head_activation: str = MISSING
    init: str = MISSING
    init_periods: list[float] = MISSING
    init_decay_steps: float = MISSING
    freeze_cell_dynamics: bool = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _positive("input_size", self.input_size)
        yield from _positive("output_size", self.output_size)
        yield from _positive("hidden_size", self.hidden_size)
        yield from _at_least("num_layers", self.num_layers, 1)
        yield from _fraction("dropout", self.dropout)
        yield from _one_of("cell", self.cell, CELLS)
        yield from _one_of("head_activation", self.head_activation, ACTIVATIONS)
        yield from _one_of("init", self.init, INITS)
        if self.init == "oscillators" and _is_set(self.cell) and self.cell != "lstm":
            yield "cell", f"must be 'lstm' with init=oscillators (an LSTM's cell states oscillate), got {self.cell!r}"
        if self.freeze_cell_dynamics is True and _is_set(self.cell) and self.cell != "lstm":
            yield "cell", f"must be 'lstm' with freeze_cell_dynamics=true (it freezes LSTM gates), got {self.cell!r}"
        periods = self.init_periods
        if _is_set(periods) and (len(periods) != 2 or not 2 <= periods[0] <= periods[1]):
            yield (
                "init_periods",
                (f"must be [shortest, longest] in steps with 2 <= shortest <= longest, got {list(periods)}"),
            )
        yield from _positive("init_decay_steps", self.init_decay_steps)
        yield from _each_positive("head_hidden", self.head_hidden)


@dataclass
class StatefulNetSchema(RecurrentNetSchema):
    tbptt_steps: int = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        yield from _at_least("tbptt_steps", self.tbptt_steps, 1)


@dataclass
class SequenceNetSchema(RecurrentNetSchema):
    head_dropout: float = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        yield from _fraction("head_dropout", self.head_dropout)


@dataclass
class TaskSchema:
    """What every task takes: its net, an optimizer and a scheduler (``_partial_`` nodes; scheduler null: none)."""

    _target_: str = MISSING
    net: Any = MISSING
    optimizer: dict[str, Any] = MISSING
    scheduler: Optional[dict[str, Any]] = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _learning_rate(self.optimizer)


@dataclass
class RecurrentTaskSchema(TaskSchema):
    """A task around a stateful or sequence net: signal regression and price forecasting."""

    net: RecurrentNetSchema = MISSING
    hidden_size: Optional[int] = MISSING
    num_layers: Optional[int] = MISSING
    recurrent_lr_scale: float = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _positive("hidden_size", self.hidden_size)
        yield from _at_least("recurrent_lr_scale", self.recurrent_lr_scale, 0, "0 freezes the recurrent weights")
        weight_decay = self.optimizer.get("weight_decay") if _is_set(self.optimizer) else None
        if getattr(self.net, "freeze_cell_dynamics", False) is True and weight_decay:
            yield (
                "optimizer.weight_decay",
                (
                    f"must be 0 with model.net.freeze_cell_dynamics=true (it would shrink the frozen weights), "
                    f"got {weight_decay}"
                ),
            )
        yield from _at_least("num_layers", self.num_layers, 1)
        yield from super().problems()


@dataclass
class RegressionTaskSchema(RecurrentTaskSchema):
    metric_skip_steps: int = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        yield from _at_least("metric_skip_steps", self.metric_skip_steps, 0)


@dataclass
class StatefulTaskSchema(RegressionTaskSchema):
    net: StatefulNetSchema = MISSING


@dataclass
class SequenceTaskSchema(RegressionTaskSchema):
    net: SequenceNetSchema = MISSING


@dataclass
class DataSchema:
    """What every datamodule takes: its file or its generator's, batch sizes, the seed, the loader's workers."""

    _target_: str = MISSING
    path: Optional[str] = MISSING
    data_dir: str = MISSING
    generator: Any = MISSING  # each data schema types its generator's parameters
    batch_size: int = MISSING
    eval_batch_size: Optional[int] = MISSING
    seed: int = MISSING
    num_workers: int = MISSING
    pin_memory: bool = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _positive("batch_size", self.batch_size)
        yield from _positive("eval_batch_size", self.eval_batch_size)
        yield from _at_least("num_workers", self.num_workers, 0)


@dataclass
class SignalGeneratorSchema:
    n_samples: int = MISSING
    sampling_rate: float = MISSING
    duration: float = MISSING
    frequencies: list[float] = MISSING
    amplitude_range: list[float] = MISSING
    noise_std: float = MISSING
    seed: int = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _at_least("n_samples", self.n_samples, 3, "train, val and test need one each")
        yield from _positive("sampling_rate", self.sampling_rate)
        yield from _positive("duration", self.duration)
        if _is_set(self.frequencies):
            if not self.frequencies:
                yield "frequencies", "must list at least one frequency in Hz"
            nyquist = self.sampling_rate / 2 if _is_set(self.sampling_rate) else float("inf")
            for f in self.frequencies:
                if not 0 < f < nyquist:
                    yield "frequencies", f"{f} Hz must lie in (0, sampling_rate/2 = {nyquist})"
        yield from _low_high("amplitude_range", self.amplitude_range)
        yield from _at_least("noise_std", self.noise_std, 0)


@dataclass
class SignalDataSchema(DataSchema):
    generator: SignalGeneratorSchema = MISSING
    chunk_len: int = MISSING
    split_fractions: list[float] = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        yield from _positive("chunk_len", self.chunk_len)


# ---- price forecasting: the same nets over price-window features ---------------------------------------------
@dataclass
class PriceSequenceTaskSchema(RecurrentTaskSchema):
    net: SequenceNetSchema = MISSING


@dataclass
class PriceStatefulTaskSchema(RecurrentTaskSchema):
    net: StatefulNetSchema = MISSING


@dataclass
class PriceGeneratorSchema:
    n_steps: int = MISSING
    start_price: float = MISSING
    regime_mean_length: float = MISSING
    drift_range: list[float] = MISSING
    volatility_range: list[float] = MISSING
    cycle_periods: list[float] = MISSING
    cycle_amplitude: float = MISSING
    base_volume: float = MISSING
    seed: int = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _at_least("n_steps", self.n_steps, 2)
        yield from _positive("start_price", self.start_price)
        yield from _positive("regime_mean_length", self.regime_mean_length)
        yield from _low_high("drift_range", self.drift_range)
        yield from _low_high("volatility_range", self.volatility_range)
        if _is_set(self.volatility_range) and self.volatility_range and min(self.volatility_range) < 0:
            yield "volatility_range", f"must be >= 0, got {self.volatility_range}"
        yield from _each_positive("cycle_periods", self.cycle_periods)


@dataclass
class PriceColumnsSchema:
    date: str = MISSING
    open: str = MISSING
    high: str = MISSING
    low: str = MISSING
    close: str = MISSING
    volume: str = MISSING


@dataclass
class PriceFeaturesSchema:
    buffer_size: int = MISSING
    step_size: int = MISSING
    ma_window: int = MISSING
    extras: list[str] = MISSING
    price_scale: str = MISSING

    def problems(self) -> Iterator[Problem]:
        from lstmlab.data.price_features import feature_problems  # numpy only: fine on the --help path

        yield from feature_problems(dataclasses.asdict(self))


@dataclass
class PriceDataSchema(DataSchema):
    generator: PriceGeneratorSchema = MISSING
    columns: PriceColumnsSchema = MISSING
    features: PriceFeaturesSchema = MISSING
    seq_len: int = MISSING
    horizon: int = MISSING
    target: str = MISSING
    split_fractions: list[float] = MISSING
    chunked: bool = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        for name in ("seq_len", "horizon"):
            yield from _positive(name, getattr(self, name))
        if _is_set(self.target):  # case-insensitive: data.target=Close works
            yield from _one_of("target", str(self.target).lower(), PRICE_TARGETS)


# ---- multi-step forecasting: the seq2seq attention net -------------------------------------------------------
@dataclass
class Seq2SeqNetSchema:
    _target_: str = MISSING
    input_size: Optional[int] = MISSING
    output_size: Optional[int] = MISSING
    num_quantiles: Optional[int] = MISSING
    hidden_size: int = MISSING
    encoder_hidden_size: Optional[int] = MISSING
    encoder_layers: int = MISSING
    decoder_layers: int = MISSING
    bidirectional: bool = MISSING
    num_heads: int = MISSING
    dropout: float = MISSING
    attention_dropout: float = MISSING
    layer_norm: bool = MISSING
    init: str = MISSING

    def problems(self) -> Iterator[Problem]:
        for name in ("input_size", "output_size", "num_quantiles", "hidden_size", "encoder_hidden_size", "num_heads"):
            yield from _positive(name, getattr(self, name))
        for name in ("encoder_layers", "decoder_layers"):
            yield from _at_least(name, getattr(self, name), 1)
        yield from _fraction("dropout", self.dropout)
        yield from _fraction("attention_dropout", self.attention_dropout)
        yield from _one_of("init", self.init, BASIC_INITS)
        heads, width = self.num_heads, self.hidden_size
        if _is_set(heads) and _is_set(width) and heads > 0 and width > 0 and width % heads:
            divisors = [d for d in range(1, min(width, 16) + 1) if width % d == 0]
            yield (
                "num_heads",
                (
                    f"must divide the attention dimension model.net.hidden_size={width}, got {heads}; "
                    f"use num_heads in {divisors} or change hidden_size"
                ),
            )


@dataclass
class TeacherForcingSchema:
    ratio: float = MISSING
    schedule: str = MISSING
    end_ratio: float = MISSING
    decay_steps: int = MISSING
    k: float = MISSING

    def problems(self) -> Iterator[Problem]:
        for name in ("ratio", "end_ratio"):
            value = getattr(self, name)
            if _is_set(value) and not 0.0 <= value <= 1.0:
                yield name, f"must be in [0, 1], got {value}"
        yield from _one_of("schedule", self.schedule, TEACHER_FORCING_SCHEDULES)
        yield from _positive("decay_steps", self.decay_steps)
        yield from _positive("k", self.k)


@dataclass
class Seq2SeqForecastTaskSchema(TaskSchema):
    net: Seq2SeqNetSchema = MISSING
    loss: str = MISSING
    quantiles: list[float] = MISSING
    scaler: str = MISSING
    scaler_affine: bool = MISSING
    log_transform: bool = MISSING
    difference: bool = MISSING
    base_forecast: str = MISSING
    interval_calibration: str = MISSING
    teacher_forcing: TeacherForcingSchema = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _one_of("loss", self.loss, LOSSES)
        yield from _one_of("scaler", self.scaler, FORECAST_SCALERS)
        yield from _one_of("base_forecast", self.base_forecast, BASE_FORECASTS)
        yield from _one_of("interval_calibration", self.interval_calibration, INTERVAL_CALIBRATIONS)
        if self.difference is True and _is_set(self.base_forecast) and self.base_forecast != "none":
            yield "base_forecast", "and model.difference=true both re-express the target; choose one"
        if _is_set(self.quantiles):
            if any(not 0 < q < 1 for q in self.quantiles) or list(self.quantiles) != sorted(set(self.quantiles)):
                yield "quantiles", f"must be increasing levels strictly between 0 and 1, got {list(self.quantiles)}"
            elif _is_set(self.loss) and self.loss == "quantile" and 0.5 not in self.quantiles:
                yield "quantiles", f"must hold the median 0.5 (the point forecast), got {list(self.quantiles)}"
        yield from super().problems()


@dataclass
class SeriesGeneratorSchema:
    n_steps: int = MISSING
    periods: list[float] = MISSING
    amplitudes: list[float] = MISSING
    trend: float = MISSING
    noise_std: float = MISSING
    seed: int = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _positive("n_steps", self.n_steps)
        if _is_set(self.periods) and _is_set(self.amplitudes) and len(self.periods) != len(self.amplitudes):
            yield "amplitudes", f"needs one amplitude per period ({len(self.periods)}), got {len(self.amplitudes)}"
        yield from _each_positive("periods", self.periods)
        yield from _at_least("noise_std", self.noise_std, 0)


@dataclass
class SeriesDataSchema(DataSchema):
    generator: SeriesGeneratorSchema = MISSING
    time_column: Optional[str] = MISSING
    id_column: Optional[str] = MISSING
    freq: Optional[str] = MISSING
    targets: list[str] = MISSING
    covariates: list[str] = MISSING
    missing: str = MISSING
    short_series: str = MISSING
    input_len: Optional[int] = MISSING
    context_multiple: int = MISSING
    horizon: int = MISSING
    stride: int = MISSING
    season_length: int = MISSING
    split_fractions: Optional[list[float]] = MISSING
    split_dates: Optional[list[str]] = MISSING
    val_steps: Optional[int] = MISSING
    test_steps: Optional[int] = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        for name in ("input_len", "context_multiple", "horizon", "stride", "season_length", "val_steps", "test_steps"):
            yield from _positive(name, getattr(self, name))
        yield from _one_of("missing", self.missing, MISSING_POLICIES)
        yield from _one_of("short_series", self.short_series, SHORT_SERIES_POLICIES)
        if _is_set(self.targets) and not self.targets:
            yield "targets", "is empty; name at least one column to forecast, e.g. data.targets=[load]"


# ---- sequence classification: the (bi)LSTM classifier --------------------------------------------------------
@dataclass
class ClassifierNetSchema:
    _target_: str = MISSING
    input_size: Optional[int] = MISSING
    num_classes: Optional[int] = MISSING
    hidden_size: int = MISSING
    num_layers: int = MISSING
    bidirectional: bool = MISSING
    dropout: float = MISSING
    cell: str = MISSING
    pooling: str = MISSING
    attention_size: int = MISSING
    hidden_dims: list[int] = MISSING
    activation: str = MISSING
    head_dropout: float = MISSING
    norm: str = MISSING
    init: str = MISSING
    freeze: list[str] = MISSING
    pack: Optional[bool] = MISSING
    summary_stats: bool = MISSING
    summary_linear: bool = MISSING
    patch_len: int = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _positive("input_size", self.input_size)
        yield from _at_least("num_classes", self.num_classes, 2, "or null: taken from the data")
        yield from _positive("patch_len", self.patch_len)
        yield from _positive("hidden_size", self.hidden_size)
        yield from _at_least("num_layers", self.num_layers, 1)
        yield from _fraction("dropout", self.dropout)
        yield from _fraction("head_dropout", self.head_dropout)
        yield from _one_of("cell", self.cell, CELLS)
        yield from _one_of("pooling", self.pooling, POOLINGS)
        yield from _positive("attention_size", self.attention_size)
        yield from _one_of("activation", self.activation, ACTIVATIONS)
        yield from _one_of("norm", self.norm, NORMS)
        yield from _one_of("init", self.init, BASIC_INITS)
        yield from _each_positive("hidden_dims", self.hidden_dims)
        for part in self.freeze if _is_set(self.freeze) else ():
            yield from _one_of("freeze", part, FREEZE_PARTS)
        if self.summary_linear is True and self.summary_stats is False:
            yield "summary_linear", "true maps the summary statistics to the logits: set summary_stats=true as well"


@dataclass
class ClassificationTaskSchema(TaskSchema):
    net: ClassifierNetSchema = MISSING
    class_weighting: str = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _one_of("class_weighting", self.class_weighting, CLASS_WEIGHTINGS)
        yield from super().problems()


@dataclass
class LSTMFCNNetSchema:
    """LSTM-FCN / MLSTM-FCN (``lstmlab.nets.lstm_fcn.LSTMFCN``): conv blocks and an LSTM side by side."""

    _target_: str = MISSING
    input_size: Optional[int] = MISSING
    num_classes: Optional[int] = MISSING
    hidden_size: int = MISSING
    cell: str = MISSING
    lstm_input: str = MISSING
    shuffle_length: int = MISSING
    lstm_dropout: float = MISSING
    filters: list[int] = MISSING
    kernel_sizes: list[int] = MISSING
    squeeze_excite: bool = MISSING
    se_reduction: int = MISSING
    pack: Optional[bool] = MISSING
    summary_stats: bool = MISSING
    time_pool: Optional[int] = MISSING
    time_pool_target: Optional[int] = MISSING
    time_pool_phases: bool = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _positive("input_size", self.input_size)
        yield from _at_least("num_classes", self.num_classes, 2, "or null: taken from the data")
        yield from _positive("hidden_size", self.hidden_size)
        yield from _one_of("cell", self.cell, CELLS)
        yield from _one_of("lstm_input", self.lstm_input, LSTM_INPUTS)
        yield from _positive("shuffle_length", self.shuffle_length)
        yield from _fraction("lstm_dropout", self.lstm_dropout)
        yield from _each_positive("filters", self.filters)
        yield from _each_positive("kernel_sizes", self.kernel_sizes)
        filters, kernels = self.filters, self.kernel_sizes
        if _is_set(filters) and _is_set(kernels) and (not filters or len(filters) != len(kernels)):
            problem = f"needs one kernel size per conv block of filters={list(filters)}, got {list(kernels)}"
            yield "kernel_sizes", problem
        yield from _at_least("se_reduction", self.se_reduction, 1)
        yield from _positive("time_pool", self.time_pool)
        yield from _positive("time_pool_target", self.time_pool_target)


@dataclass
class LSTMFCNTaskSchema(ClassificationTaskSchema):
    net: LSTMFCNNetSchema = MISSING


@dataclass
class CastingGeneratorSchema:
    n_sequences: int = MISSING
    min_length: int = MISSING
    max_length: int = MISSING
    defect_rate: float = MISSING
    label_noise: float = MISSING
    event_amplitude: list[float] = MISSING
    seed: int = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from _at_least("n_sequences", self.n_sequences, 3, "train, val and test need one each")
        yield from _positive("min_length", self.min_length)
        if _is_set(self.min_length) and _is_set(self.max_length) and self.max_length < self.min_length:
            yield "max_length", f"must be >= min_length = {self.min_length}, got {self.max_length}"
        if _is_set(self.defect_rate) and not 0.0 < self.defect_rate < 1.0:
            yield "defect_rate", f"must be in (0, 1), got {self.defect_rate}"
        if _is_set(self.label_noise) and not 0.0 <= self.label_noise < 0.5:
            yield "label_noise", f"must be in [0, 0.5), got {self.label_noise}"
        amplitude = self.event_amplitude
        if _is_set(amplitude) and (len(amplitude) != 2 or not 0 <= amplitude[0] <= amplitude[1]):
            yield "event_amplitude", f"must be [low, high] with 0 <= low <= high, got {amplitude}"


@dataclass
class ClassificationDataSchema(DataSchema):
    generator: CastingGeneratorSchema = MISSING
    bucket_size: int = MISSING
    split_fractions: list[float] = MISSING

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        yield from _at_least("bucket_size", self.bucket_size, 1, "1: no length bucketing")


SCHEMAS = {
    "schema/model": {
        "bilstm_classifier": ClassificationTaskSchema,
        "lstm_fcn": LSTMFCNTaskSchema,
        "stateful": StatefulTaskSchema,
        "sequence": SequenceTaskSchema,
        "price_sequence": PriceSequenceTaskSchema,
        "price_stateful": PriceStatefulTaskSchema,
        "seq2seq_attention": Seq2SeqForecastTaskSchema,
    },
    "schema/data": {
        "casting": ClassificationDataSchema,
        "signals": SignalDataSchema,
        "prices": PriceDataSchema,
        "series": SeriesDataSchema,
    },
}


def register_schemas() -> None:
    store = ConfigStore.instance()
    for group, nodes in SCHEMAS.items():
        for name, node in nodes.items():
            store.store(group=group, name=name, node=node)


def _walk(obj: Any, prefix: str) -> Iterator[Problem]:
    if dataclasses.is_dataclass(obj):
        if hasattr(obj, "problems"):
            for key, message in obj.problems():
                yield f"{prefix}.{key}", message
        for f in dataclasses.fields(obj):
            yield from _walk(getattr(obj, f.name), f"{prefix}.{f.name}")


def validate_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` naming the first key that has no value or whose value is out of range."""
    for group in ("data", "model"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(node)):
            for key in sorted(OmegaConf.missing_keys(node)):  # full keys: model.net.dropout
                raise ConfigError(
                    f"{key} has no value (???): set it on the command line ({key}=...) "
                    f"or in the YAML of the {group} option"
                )
            for key, message in _walk(OmegaConf.to_object(node), group):
                raise ConfigError(f"{key} {message}")
    trainer = cfg.get("trainer") or {}
    epochs = trainer.get("max_epochs")
    if epochs is not None and epochs != -1 and epochs < 1:
        raise ConfigError(f"trainer.max_epochs {'must be >= 1 (or -1 for no limit)'}, got {epochs}")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and clip < 0:
        raise ConfigError(f"trainer.gradient_clip_val must be >= 0 (or null for no clipping), got {clip}")
