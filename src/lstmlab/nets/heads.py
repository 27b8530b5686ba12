"""Output heads: a linear projection or an MLP with configurable hidden layers."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "elu": nn.ELU}


def make_head(
    in_features: int,
    out_features: int,
    hidden: Sequence[int] = (),
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """``Linear`` when ``hidden`` is empty, else ``Linear -> act -> dropout`` per hidden width, then ``Linear``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"head_activation={activation!r}: unknown; choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
