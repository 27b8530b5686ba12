"""The recurrent cell factory shared by every net: LSTM or GRU layers, and their initialisation."""

from __future__ import annotations

from torch import nn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
INITS = ("default", "xavier_orthogonal")


def make_recurrent(
    cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0, **kwargs
) -> nn.RNNBase:
    """A batch-first ``nn.LSTM`` / ``nn.GRU`` (cuDNN on GPU)."""
    if cell not in CELLS:
        raise ValueError(f"cell={cell!r}: unknown recurrent cell; choose one of {sorted(CELLS)}")
    return CELLS[cell](
        input_size,
        hidden_size,
        num_layers=num_layers,
        dropout=dropout if num_layers > 1 else 0.0,
        batch_first=True,
        **kwargs,
    )


def init_recurrent(module: nn.RNNBase, scheme: str) -> None:
    """Xavier input weights, orthogonal recurrent weights per gate, zero biases with forget bias 1.

    The forget bias of 1 keeps the cell state alive early in training, which long signals need.
    """
    if scheme not in INITS:
        raise ValueError(f"init={scheme!r}: unknown initialisation; choose one of {list(INITS)}")
    if scheme == "default":
        return
    gates = 4 if isinstance(module, nn.LSTM) else 3
    hidden = module.hidden_size
    for name, param in module.named_parameters():
        if name.startswith("weight_ih"):
            nn.init.xavier_uniform_(param)
        elif name.startswith("weight_hh"):
            for block in param.data.split(hidden, dim=0):
                nn.init.orthogonal_(block)
        elif name.startswith("bias"):
            nn.init.zeros_(param)
            if gates == 4 and name.startswith("bias_ih"):
                param.data[hidden : 2 * hidden] = 1.0
