"""Structured-config schemas of the data and model groups, and range checks of the composed config.

The YAML files of a group list their schema first in their defaults (``/schema/model@_here_: sequence``), so
Hydra rejects an unknown key or a value of the wrong type while composing, naming the key. Ranges
(``hidden_size > 0``, ``0 <= dropout < 1`` ...) are checked by ``validate_config`` before any work starts.
Only dataclasses and OmegaConf here: this module is on the ``--help`` path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from lstmlab.errors import ConfigError

Problem = tuple[str, str]  # (key relative to the node, what is wrong and how to fix it)


def _positive(name: str, value: Any) -> Iterator[Problem]:
    if value is not None and value <= 0:
        yield name, f"must be > 0, got {value}"


def _fraction(name: str, value: float) -> Iterator[Problem]:
    if not 0.0 <= value < 1.0:
        yield name, f"must be in [0, 1), got {value}"


def _one_of(name: str, value: Any, choices: tuple) -> Iterator[Problem]:
    if value not in choices:
        yield name, f"must be one of {list(choices)}, got {value!r}"


@dataclass
class RecurrentNetSchema:
    _target_: str = "???"
    input_size: int = 5
    output_size: int = 1
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    cell: str = "lstm"
    head_hidden: list[int] = field(default_factory=list)
    head_activation: str = "relu"
    init: str = "xavier_orthogonal"
    # init=oscillators: the first layer's oscillator periods [shortest, longest] and amplitude decay, in steps
    init_periods: list[float] = field(default_factory=lambda: [4.0, 200.0])
    init_decay_steps: float = 50.0
    # keep the first layer's cell-state dynamics as initialised; its output gate and the head train
    freeze_cell_dynamics: bool = False

    def problems(self) -> Iterator[Problem]:
        yield from _positive("input_size", self.input_size)
        yield from _positive("output_size", self.output_size)
        yield from _positive("hidden_size", self.hidden_size)
        if self.num_layers < 1:
            yield "num_layers", f"must be >= 1, got {self.num_layers}"
        yield from _fraction("dropout", self.dropout)
        yield from _one_of("cell", self.cell, ("lstm", "gru"))
        yield from _one_of("head_activation", self.head_activation, ("relu", "gelu", "tanh", "silu", "elu"))
        yield from _one_of("init", self.init, ("default", "xavier_orthogonal", "oscillators"))
        if self.init == "oscillators" and self.cell != "lstm":
            yield "cell", f"must be 'lstm' with init=oscillators (an LSTM's cell states oscillate), got {self.cell!r}"
        if self.freeze_cell_dynamics and self.cell != "lstm":
            yield "cell", f"must be 'lstm' with freeze_cell_dynamics=true (it freezes LSTM gates), got {self.cell!r}"
        if len(self.init_periods) != 2 or not 2 <= self.init_periods[0] <= self.init_periods[1]:
            yield "init_periods", f"must be [shortest, longest] in steps with 2 <= shortest <= longest, got {list(self.init_periods)}"
        yield from _positive("init_decay_steps", self.init_decay_steps)
        for width in self.head_hidden:
            yield from _positive("head_hidden", width)


@dataclass
class StatefulNetSchema(RecurrentNetSchema):
    _target_: str = "lstmlab.nets.stateful.StatefulLSTM"
    tbptt_steps: int = 1

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        if self.tbptt_steps < 1:
            yield "tbptt_steps", f"must be >= 1, got {self.tbptt_steps}"


@dataclass
class SequenceNetSchema(RecurrentNetSchema):
    _target_: str = "lstmlab.nets.sequence.SequenceLSTM"
    head_dropout: float = 0.0

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        yield from _fraction("head_dropout", self.head_dropout)


@dataclass
class RegressionTaskSchema:
    _target_: str = "lstmlab.tasks.regression.SignalRegressionTask"
    net: RecurrentNetSchema = field(default_factory=RecurrentNetSchema)
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: Optional[dict[str, Any]] = None
    hidden_size: Optional[int] = None
    num_layers: Optional[int] = None
    metric_skip_steps: int = 0
    recurrent_lr_scale: float = 1.0

    def problems(self) -> Iterator[Problem]:
        yield from _positive("hidden_size", self.hidden_size)
        if self.recurrent_lr_scale < 0:
            yield "recurrent_lr_scale", f"must be >= 0 (0 freezes the recurrent weights), got {self.recurrent_lr_scale}"
        if getattr(self.net, "freeze_cell_dynamics", False) and self.optimizer.get("weight_decay"):
            yield "optimizer.weight_decay", (
                f"must be 0 with model.net.freeze_cell_dynamics=true (it would shrink the frozen weights), "
                f"got {self.optimizer['weight_decay']}"
            )
        if self.num_layers is not None and self.num_layers < 1:
            yield "num_layers", f"must be >= 1, got {self.num_layers}"
        if self.metric_skip_steps < 0:
            yield "metric_skip_steps", f"must be >= 0, got {self.metric_skip_steps}"
        lr = self.optimizer.get("lr")
        if lr is not None and lr <= 0:
            yield "optimizer.lr", f"must be > 0, got {lr}"


@dataclass
class StatefulTaskSchema(RegressionTaskSchema):
    net: StatefulNetSchema = field(default_factory=StatefulNetSchema)


@dataclass
class SequenceTaskSchema(RegressionTaskSchema):
    net: SequenceNetSchema = field(default_factory=SequenceNetSchema)


@dataclass
class SignalGeneratorSchema:
    n_samples: int = 200
    sampling_rate: float = 100.0
    duration: float = 10.0
    frequencies: list[float] = field(default_factory=lambda: [1.0, 3.0, 5.0, 7.0])
    amplitude_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    noise_std: float = 0.1
    seed: int = 42

    def problems(self) -> Iterator[Problem]:
        if self.n_samples < 3:
            yield "n_samples", f"must be >= 3 (train, val and test need one each), got {self.n_samples}"
        yield from _positive("sampling_rate", self.sampling_rate)
        yield from _positive("duration", self.duration)
        if not self.frequencies:
            yield "frequencies", "must list at least one frequency in Hz"
        for f in self.frequencies:
            if not 0 < f < self.sampling_rate / 2:
                yield "frequencies", f"{f} Hz must lie in (0, sampling_rate/2 = {self.sampling_rate / 2})"
        if len(self.amplitude_range) != 2 or self.amplitude_range[0] > self.amplitude_range[1]:
            yield "amplitude_range", f"must be [low, high] with low <= high, got {self.amplitude_range}"
        if self.noise_std < 0:
            yield "noise_std", f"must be >= 0, got {self.noise_std}"


@dataclass
class SignalDataSchema:
    _target_: str = "lstmlab.data.signal_datamodule.SignalDataModule"
    path: Optional[str] = None
    data_dir: str = "data"
    generator: SignalGeneratorSchema = field(default_factory=SignalGeneratorSchema)
    chunk_len: int = 50
    batch_size: int = 32
    eval_batch_size: Optional[int] = None
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    split_seed: int = 0
    num_workers: int = 0
    pin_memory: bool = False

    def problems(self) -> Iterator[Problem]:
        yield from _positive("chunk_len", self.chunk_len)
        yield from _positive("batch_size", self.batch_size)
        yield from _positive("eval_batch_size", self.eval_batch_size)
        if self.num_workers < 0:
            yield "num_workers", f"must be >= 0, got {self.num_workers}"


@dataclass
class PriceSequenceTaskSchema(SequenceTaskSchema):
    _target_: str = "lstmlab.tasks.price_forecast.PriceForecastTask"


@dataclass
class PriceStatefulTaskSchema(StatefulTaskSchema):
    _target_: str = "lstmlab.tasks.price_forecast.PriceForecastTask"


@dataclass
class PriceGeneratorSchema:
    n_steps: int = 20000
    start_price: float = 100.0
    regime_mean_length: float = 400.0
    drift_range: list[float] = field(default_factory=lambda: [-0.0008, 0.0008])
    volatility_range: list[float] = field(default_factory=lambda: [0.004, 0.012])
    cycle_periods: list[float] = field(default_factory=lambda: [40.0, 110.0])
    cycle_amplitude: float = 0.03
    base_volume: float = 1e6
    seed: int = 7

    def problems(self) -> Iterator[Problem]:
        if self.n_steps < 2:
            yield "n_steps", f"must be >= 2, got {self.n_steps}"
        yield from _positive("start_price", self.start_price)
        yield from _positive("regime_mean_length", self.regime_mean_length)
        for name in ("drift_range", "volatility_range"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or low_high[0] > low_high[1]:
                yield name, f"must be [low, high] with low <= high, got {low_high}"
        if self.volatility_range and min(self.volatility_range) < 0:
            yield "volatility_range", f"must be >= 0, got {self.volatility_range}"
        for period in self.cycle_periods:
            yield from _positive("cycle_periods", period)


@dataclass
class PriceColumnsSchema:
    date: str = "Date"
    open: str = "Open"
    high: str = "High"
    low: str = "Low"
    close: str = "Close"
    volume: str = "Volume"


@dataclass
class PriceFeaturesSchema:
    buffer_size: int = 64
    step_size: int = 5
    ma_window: int = 10
    extras: list[str] = field(default_factory=lambda: ["returns", "volume"])
    price_scale: str = "last_close"

    def problems(self) -> Iterator[Problem]:
        from lstmlab.data.price_features import feature_problems  # numpy only: fine on the --help path

        yield from feature_problems(dataclasses.asdict(self))


@dataclass
class PriceDataSchema:
    _target_: str = "lstmlab.data.price_datamodule.PriceDataModule"
    path: Optional[str] = None
    data_dir: str = "data"
    generator: PriceGeneratorSchema = field(default_factory=PriceGeneratorSchema)
    columns: PriceColumnsSchema = field(default_factory=PriceColumnsSchema)
    features: PriceFeaturesSchema = field(default_factory=PriceFeaturesSchema)
    seq_len: int = 16
    horizon: int = 5
    target: str = "close"
    batch_size: int = 64
    eval_batch_size: Optional[int] = None
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    num_workers: int = 0
    pin_memory: bool = False
    chunked: bool = False

    def problems(self) -> Iterator[Problem]:
        for name in ("seq_len", "horizon", "batch_size", "eval_batch_size"):
            yield from _positive(name, getattr(self, name))
        # case-insensitive: data.target=Close works
        yield from _one_of("target", str(self.target).lower(), ("close", "return", "direction"))
        if self.num_workers < 0:
            yield "num_workers", f"must be >= 0, got {self.num_workers}"


@dataclass
class Seq2SeqNetSchema:
    _target_: str = "lstmlab.nets.seq2seq.Seq2SeqAttention"
    # null: taken from the data (targets + covariates, targets)
    input_size: Optional[int] = None
    output_size: Optional[int] = None
    hidden_size: int = 64
    encoder_hidden_size: Optional[int] = None
    encoder_layers: int = 2
    decoder_layers: int = 2
    bidirectional: bool = True
    num_heads: int = 4
    dropout: float = 0.0
    attention_dropout: float = 0.0
    layer_norm: bool = True
    init: str = "xavier_orthogonal"

    def problems(self) -> Iterator[Problem]:
        for name in ("input_size", "output_size", "hidden_size", "encoder_hidden_size", "num_heads"):
            yield from _positive(name, getattr(self, name))
        for name in ("encoder_layers", "decoder_layers"):
            if getattr(self, name) < 1:
                yield name, f"must be >= 1, got {getattr(self, name)}"
        yield from _fraction("dropout", self.dropout)
        yield from _fraction("attention_dropout", self.attention_dropout)
        yield from _one_of("init", self.init, ("default", "xavier_orthogonal"))
        if self.num_heads > 0 and self.hidden_size > 0 and self.hidden_size % self.num_heads:
            divisors = [d for d in range(1, min(self.hidden_size, 16) + 1) if self.hidden_size % d == 0]
            yield "num_heads", (
                f"must divide the attention dimension model.net.hidden_size={self.hidden_size}, got {self.num_heads}; "
                f"use num_heads in {divisors} or change hidden_size"
            )


@dataclass
class TeacherForcingSchema:
    ratio: float = 1.0
    schedule: str = "linear"
    end_ratio: float = 0.0
    decay_epochs: int = 10
    k: float = 5.0

    def problems(self) -> Iterator[Problem]:
        for name in ("ratio", "end_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                yield name, f"must be in [0, 1], got {getattr(self, name)}"
        yield from _one_of("schedule", self.schedule, ("constant", "linear", "inverse_sigmoid"))
        yield from _positive("decay_epochs", self.decay_epochs)
        yield from _positive("k", self.k)


@dataclass
class Seq2SeqForecastTaskSchema:
    _target_: str = "lstmlab.tasks.seq2seq_forecast.Seq2SeqForecastTask"
    net: Seq2SeqNetSchema = field(default_factory=Seq2SeqNetSchema)
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: Optional[dict[str, Any]] = None
    loss: str = "mse"
    teacher_forcing: TeacherForcingSchema = field(default_factory=TeacherForcingSchema)

    def problems(self) -> Iterator[Problem]:
        yield from _one_of("loss", self.loss, ("mse", "mae"))
        lr = self.optimizer.get("lr")
        if lr is not None and lr <= 0:
            yield "optimizer.lr", f"must be > 0, got {lr}"


@dataclass
class SeriesGeneratorSchema:
    n_steps: int = 5000
    periods: list[float] = field(default_factory=lambda: [24.0, 168.0])
    amplitudes: list[float] = field(default_factory=lambda: [1.0, 0.8])
    trend: float = 0.5
    noise_std: float = 0.1
    seed: int = 7

    def problems(self) -> Iterator[Problem]:
        yield from _positive("n_steps", self.n_steps)
        if len(self.periods) != len(self.amplitudes):
            yield "amplitudes", f"needs one amplitude per period ({len(self.periods)}), got {len(self.amplitudes)}"
        for period in self.periods:
            yield from _positive("periods", period)
        if self.noise_std < 0:
            yield "noise_std", f"must be >= 0, got {self.noise_std}"


@dataclass
class SeriesDataSchema:
    _target_: str = "lstmlab.data.series_datamodule.SeriesDataModule"
    path: Optional[str] = None
    data_dir: str = "data"
    generator: SeriesGeneratorSchema = field(default_factory=SeriesGeneratorSchema)
    time_column: Optional[str] = None
    targets: list[str] = field(default_factory=lambda: ["value"])
    covariates: list[str] = field(default_factory=list)
    missing: str = "error"
    input_len: int = 96
    horizon: int = 24
    stride: int = 1
    season_length: int = 24
    split_fractions: Optional[list[float]] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    split_dates: Optional[list[str]] = None
    batch_size: int = 64
    eval_batch_size: Optional[int] = None
    shuffle_seed: int = 0
    num_workers: int = 0
    pin_memory: bool = False

    def problems(self) -> Iterator[Problem]:
        for name in ("input_len", "horizon", "stride", "season_length", "batch_size", "eval_batch_size"):
            yield from _positive(name, getattr(self, name))
        yield from _one_of("missing", self.missing, ("error", "ffill"))
        if not self.targets:
            yield "targets", "is empty; name at least one column to forecast, e.g. data.targets=[load]"
        if self.num_workers < 0:
            yield "num_workers", f"must be >= 0, got {self.num_workers}"


def _learning_rate(optimizer: dict) -> Iterator[Problem]:
    lr = optimizer.get("lr")
    if lr is not None and lr <= 0:
        yield "optimizer.lr", f"must be > 0, got {lr}"


@dataclass
class ClassifierNetSchema:
    _target_: str = "lstmlab.nets.classifier.LSTMClassifier"
    # null: taken from the data (its channels, its classes)
    input_size: Optional[int] = None
    num_classes: Optional[int] = None
    hidden_size: int = 64
    num_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.2
    cell: str = "lstm"
    pooling: str = "attention"
    attention_size: int = 64
    hidden_dims: list[int] = field(default_factory=lambda: [32])
    activation: str = "relu"
    head_dropout: float = 0.3
    norm: str = "none"
    init: str = "xavier_orthogonal"
    freeze: list[str] = field(default_factory=list)
    pack: Optional[bool] = None

    def problems(self) -> Iterator[Problem]:
        yield from _positive("input_size", self.input_size)
        if self.num_classes is not None and self.num_classes < 2:
            yield "num_classes", f"must be >= 2 (or null: taken from the data), got {self.num_classes}"
        yield from _positive("hidden_size", self.hidden_size)
        if self.num_layers < 1:
            yield "num_layers", f"must be >= 1, got {self.num_layers}"
        yield from _fraction("dropout", self.dropout)
        yield from _fraction("head_dropout", self.head_dropout)
        yield from _one_of("cell", self.cell, ("lstm", "gru"))
        yield from _one_of("pooling", self.pooling, ("last", "mean", "attention"))
        yield from _positive("attention_size", self.attention_size)
        yield from _one_of("activation", self.activation, ("relu", "gelu", "tanh", "silu", "elu"))
        yield from _one_of("norm", self.norm, ("none", "batchnorm", "layernorm"))
        yield from _one_of("init", self.init, ("default", "xavier_orthogonal"))
        for width in self.hidden_dims:
            yield from _positive("hidden_dims", width)
        for part in self.freeze:
            yield from _one_of("freeze", part, ("lstm", "attention", "head"))


@dataclass
class ClassificationTaskSchema:
    _target_: str = "lstmlab.tasks.classification.SequenceClassificationTask"
    net: ClassifierNetSchema = field(default_factory=ClassifierNetSchema)
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: Optional[dict[str, Any]] = None
    class_weighting: str = "balanced"

    def problems(self) -> Iterator[Problem]:
        yield from _one_of("class_weighting", self.class_weighting, ("balanced", "none"))
        yield from _learning_rate(self.optimizer)


@dataclass
class CastingGeneratorSchema:
    n_sequences: int = 4000
    min_length: int = 100
    max_length: int = 500
    defect_rate: float = 0.15
    label_noise: float = 0.01
    event_amplitude: list[float] = field(default_factory=lambda: [3.5, 6.0])
    seed: int = 7

    def problems(self) -> Iterator[Problem]:
        if self.n_sequences < 3:
            yield "n_sequences", f"must be >= 3 (train, val and test need one each), got {self.n_sequences}"
        yield from _positive("min_length", self.min_length)
        if self.max_length < self.min_length:
            yield "max_length", f"must be >= min_length = {self.min_length}, got {self.max_length}"
        if not 0.0 < self.defect_rate < 1.0:
            yield "defect_rate", f"must be in (0, 1), got {self.defect_rate}"
        if not 0.0 <= self.label_noise < 0.5:
            yield "label_noise", f"must be in [0, 0.5), got {self.label_noise}"
        if len(self.event_amplitude) != 2 or not 0 <= self.event_amplitude[0] <= self.event_amplitude[1]:
            yield "event_amplitude", f"must be [low, high] with 0 <= low <= high, got {self.event_amplitude}"


@dataclass
class SequenceDataSchema:
    _target_: str = "lstmlab.data.sequence_datamodule.SequenceClassificationDataModule"
    path: Optional[str] = None
    data_dir: str = "data"
    generator: CastingGeneratorSchema = field(default_factory=CastingGeneratorSchema)
    batch_size: int = 64
    eval_batch_size: Optional[int] = 256
    bucket_size: int = 8
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    split_seed: int = 0
    num_workers: int = 0
    pin_memory: bool = False

    def problems(self) -> Iterator[Problem]:
        yield from _positive("batch_size", self.batch_size)
        yield from _positive("eval_batch_size", self.eval_batch_size)
        if self.bucket_size < 1:
            yield "bucket_size", f"must be >= 1 (1: no length bucketing), got {self.bucket_size}"
        if self.num_workers < 0:
            yield "num_workers", f"must be >= 0, got {self.num_workers}"


SCHEMAS = {
    "schema/model": {"bilstm_classifier": ClassificationTaskSchema, "stateful": StatefulTaskSchema, "sequence": SequenceTaskSchema,
                     "price_sequence": PriceSequenceTaskSchema, "price_stateful": PriceStatefulTaskSchema,
                     "seq2seq_attention": Seq2SeqForecastTaskSchema},
    "schema/data": {"casting": SequenceDataSchema, "signals": SignalDataSchema, "prices": PriceDataSchema, "series": SeriesDataSchema},
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
    """Raise ``ConfigError`` naming the first key whose value is out of range."""
    for group in ("data", "model"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(node)):
            for key, message in _walk(OmegaConf.to_object(node), group):
                raise ConfigError(f"{key} {message}")
    trainer = cfg.get("trainer") or {}
    epochs = trainer.get("max_epochs")
    if epochs is not None and epochs != -1 and epochs < 1:
        raise ConfigError(f"trainer.max_epochs {'must be >= 1 (or -1 for no limit)'}, got {epochs}")
    clip = trainer.get("gradient_clip_val")
    if clip is not None and clip < 0:
        raise ConfigError(f"trainer.gradient_clip_val must be >= 0 (or null for no clipping), got {clip}")
