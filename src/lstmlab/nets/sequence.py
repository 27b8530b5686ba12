"""The sequence (L>1) recurrent net: a window of L steps per call through a stacked ``nn.LSTM`` and a head."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lstmlab.nets.cells import FrozenCellDynamics, init_recurrent, make_recurrent
from lstmlab.nets.heads import make_head


class SequenceLSTM(nn.Module):
    """``x`` [batch, L, input_size] -> per-step outputs [batch, L, output_size]; the state can be carried on.

    The init and freeze options act on the first layer of the stack, as in ``StatefulLSTM``.
    """

    # The values come from conf/model/sequence.yaml (model.net); tests and benchmarks build the net from it too.
    def __init__(
        self,
        *,
        input_size: int,
        output_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        cell: str,
        head_hidden: Sequence[int],
        head_activation: str,
        init: str,
        head_dropout: float,
        init_periods: Sequence[float],
        init_decay_steps: float,
        freeze_cell_dynamics: bool,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.rnn = make_recurrent(cell, input_size, hidden_size, num_layers=num_layers, dropout=dropout)
        init_recurrent(self.rnn, init, init_periods, init_decay_steps)
        self.frozen = FrozenCellDynamics(self.rnn) if freeze_cell_dynamics else None
        self.head = make_head(hidden_size, output_size, head_hidden, head_activation, head_dropout)

    def forward(self, x: Tensor, state=None) -> tuple[Tensor, object]:
        out, state = self.rnn(x, state)
        return self.head(out), state
