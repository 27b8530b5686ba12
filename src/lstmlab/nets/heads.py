"""Output heads: a linear projection or an MLP with configurable hidden layers."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lstmlab.choices import ACTIVATIONS

# the module of each name in lstmlab.choices.ACTIVATIONS (the list the schemas check)
ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}
assert tuple(ACTIVATION_MODULES) == ACTIVATIONS, "map exactly the names of lstmlab.choices.ACTIVATIONS, in order"


def make_head(
    in_features: int,
    out_features: int,
    hidden: Sequence[int],
    activation: str,
    dropout: float,
) -> nn.Sequential:
    """``Linear`` when ``hidden`` is empty, else ``Linear -> act -> dropout`` per hidden width, then ``Linear``."""
    if activation not in ACTIVATION_MODULES:
        raise ValueError(f"head_activation={activation!r}: unknown; choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATION_MODULES[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
