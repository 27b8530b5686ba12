"""Hydra's sweep grammar -> Optuna distributions, and sampled values -> override strings.

| grammar                              | distribution                                   |
|--------------------------------------|------------------------------------------------|
| ``choice(a, b, ...)`` / ``a,b,...``  | CategoricalDistribution([a, b, ...])           |
| ``range(start, stop[, step])``       | IntDistribution / FloatDistribution with step, stop excluded as in Hydra |
| ``shuffle(range(...))``              | CategoricalDistribution of the range's values  |
| ``interval(low, high)``              | FloatDistribution(low, high)                   |
| ``int(interval(low, high))``         | IntDistribution(low, high)                     |
| ``tag(log, interval(...))``          | the same with ``log=True``                     |
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from lstmlab.optuna_trial import SweeperConfigError, format_value


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    # categorical values that are not plain scalars (lists, dicts, strings to quote) -> their override text
    renderers: dict[str, Callable[[Any], str]] = field(default_factory=dict)
    # overrides passed unchanged to every trial
    fixed: list[str] = field(default_factory=list)

    def overrides(self, params: dict[str, Any]) -> list[str]:
        sampled = [f"{name}={self.renderers.get(name, format_value)(value)}" for name, value in params.items()]
        return [*self.fixed, *sampled]


def parse_search_space(params: dict[str, Any], arguments: list[str]) -> SearchSpace:
    """``hydra.sweeper.params`` and the command line's overrides (which win for the same key)."""
    parser = OverridesParser.create()
    lines = [(f"hydra.sweeper.params.{key}", f"{key}={value}") for key, value in params.items()]
    lines += [(line, line) for line in arguments]
    by_key: dict[str, tuple[str, Override]] = {}
    for origin, line in lines:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException as err:
            message = str(err).splitlines()[-2] if len(str(err).splitlines()) > 1 else str(err)
            raise SweeperConfigError(f"{origin}: cannot parse {line!r}: {message}") from None
        by_key[override.get_key_element()] = (origin, override)

    space = SearchSpace()
    for key, (origin, override) in by_key.items():
        if not override.is_sweep_override():
            space.fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
            continue
        if override.is_hydra_override():
            raise SweeperConfigError(f"{origin}: hydra.* keys cannot be searched")
        try:
            distribution, renderer = to_distribution(override)
        except (ValueError, TypeError) as err:
            raise SweeperConfigError(f"{origin}: {err}") from None
        space.distributions[key] = distribution
        if renderer is not None:
            space.renderers[key] = renderer
    return space


def to_distribution(override: Override) -> tuple[BaseDistribution, Callable[[Any], str] | None]:
    value = override.value()
    unknown = set(getattr(value, "tags", ())) - {"log"}
    if unknown:
        raise ValueError(f"unknown tag(s) {sorted(unknown)}: the only tag understood is log")
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return _categorical(override)
    if isinstance(value, RangeSweep):
        if "log" in value.tags:
            raise ValueError("tag(log, ...) needs interval(...); range(...) is evenly stepped")
        values = list(override.sweep_iterator())
        if not values:
            raise ValueError(f"{override.input_line}: the range is empty")
        step = abs(value.step)
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(min(values), max(values), step=step), None
        low, high = min(values), max(values)
        return FloatDistribution(low, low + round((high - low) / step) * step, step=step), None
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        low, high = value.start, value.end
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("interval(low, high) needs two finite bounds")
        if low >= high:
            raise ValueError(f"interval({low}, {high}): low must be below high")
        if log and low <= 0:
            raise ValueError(f"tag(log, interval({low}, {high})): a log scale needs low > 0")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log), None
        return FloatDistribution(float(low), float(high), log=log), None
    raise ValueError(f"{override.input_line}: unsupported sweep")


def _categorical(override: Override) -> tuple[CategoricalDistribution, Callable[[Any], str]]:
    raw = list(override.sweep_iterator())
    encoded = list(override.sweep_iterator(transformer=Transformer.encode))
    if isinstance(override.value(), RangeSweep):  # shuffle(range(...)): keep the declared order
        raw, encoded = sorted(raw), sorted(encoded)
    choices: list[Any] = []
    text: dict[Any, str] = {}
    for r, e in zip(raw, encoded):
        # Optuna stores scalars; lists and dicts are kept as their override text
        choice = e if isinstance(r, (list, dict)) else r
        if choice in text:
            raise ValueError(f"choice {choice!r} is listed twice")
        choices.append(choice)
        text[choice] = e if isinstance(r, (list, dict)) else format_value(r)
    return CategoricalDistribution(choices), lambda v: text[v]


def grid_of(name: str, distribution: BaseDistribution) -> list[Any]:
    """The values GridSampler walks for one parameter: only choice(...) and range(...) are finite grids."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        n = round((distribution.high - distribution.low) / distribution.step)
        return [distribution.low + i * distribution.step for i in range(n + 1)]
    raise SweeperConfigError(
        f"hydra.sweeper.params.{name}: sampler=grid needs choice(...) or range(...), not an interval"
    )
