"""The recurrent cell factory shared by every net: LSTM or GRU layers, and their initialisation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lstmlab.choices import CELLS, INITS

# the module of each name in lstmlab.choices.CELLS (the list the schemas check)
CELL_MODULES: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}
assert tuple(CELL_MODULES) == CELLS, "map exactly the names of lstmlab.choices.CELLS, in order"


def make_recurrent(
    cell: str, input_size: int, hidden_size: int, *, num_layers: int, dropout: float, **kwargs
) -> nn.RNNBase:
    """A batch-first ``nn.LSTM`` / ``nn.GRU`` (cuDNN on GPU) of ``num_layers`` layers, ``dropout`` between them."""
    if cell not in CELL_MODULES:
        raise ValueError(f"cell={cell!r}: unknown recurrent cell; choose one of {sorted(CELLS)}")
    return CELL_MODULES[cell](
        input_size,
        hidden_size,
        num_layers=num_layers,
        dropout=dropout if num_layers > 1 else 0.0,
        batch_first=True,
        **kwargs,
    )


def init_recurrent(
    module: nn.RNNBase, scheme: str, periods: Sequence[float] | None = None, decay_steps: float | None = None
) -> None:
    """Initialise a recurrent module's weights by ``scheme``:

    - ``default``: torch's own (uniform in +-1/sqrt(hidden));
    - ``xavier_orthogonal``: Xavier input weights, orthogonal recurrent weights per gate, zero biases with
      forget bias 1 (keeps the cell state alive early in training, which long signals need);
    - ``oscillators`` (LSTM only): ``xavier_orthogonal``, then the first layer becomes a bank of damped
      oscillators (see ``init_oscillator_bank``) with ``periods`` [shortest, longest] in steps and amplitudes
      that decay by 1/e in ``decay_steps`` steps (both required for this scheme only).
    """
    if scheme not in INITS:
        raise ValueError(f"init={scheme!r}: unknown initialisation; choose one of {list(INITS)}")
    if scheme == "default":
        return
    _init_xavier_orthogonal(module)
    if scheme == "oscillators":
        if not isinstance(module, nn.LSTM):
            raise ValueError(f"init='oscillators' needs LSTM cells, got {type(module).__name__}; use cell=lstm")
        if periods is None or decay_steps is None:
            raise ValueError("init='oscillators' needs init_periods and init_decay_steps (model.net)")
        init_oscillator_bank(module, periods, decay_steps)


def _init_xavier_orthogonal(module: nn.RNNBase) -> None:
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


def init_oscillator_bank(lstm: nn.LSTM, periods: Sequence[float], decay_steps: float) -> None:
    """Make the first layer of ``lstm`` a bank of damped oscillators, one per pair of hidden units.

    Pairs of cell states rotate, ``c_t ~ r R(2 pi / period) c_{t-1} + input``, so they hold the recent input
    band-passed around their period (keep the bank with ``FrozenCellDynamics``). Periods are log-spaced over
    ``periods`` (in steps); the decay ``r = exp(-1 / decay_steps)`` sets each filter's bandwidth.
    Why: docs/signal-l1-oscillator-bank.md#why-build-the-memory-instead-of-learning-it (maths: #building-the-bank).

    The rotation is exact for small cell states: input and output gates start at sigmoid(0) = 1/2, the forget
    gate at ``r``, and the candidate's recurrent weights of each pair add ``r (R - I)`` through ``h = o tanh(c)``.
    The candidate's input weights are small (scaled by ``1 - r``) so a filter's response stays in tanh's linear
    range; the gates get no recurrent weights, only small input weights, so they start constant.
    """
    shortest, longest = (float(p) for p in periods)
    if not 2.0 <= shortest <= longest:
        raise ValueError(f"oscillator periods={list(periods)}: need 2 <= shortest <= longest (in steps)")
    if decay_steps <= 0:
        raise ValueError(f"oscillator decay_steps={decay_steps}: must be > 0 (steps)")
    hidden = lstm.hidden_size
    pairs = hidden // 2
    radius = math.exp(-1.0 / decay_steps)
    gate_open = 0.5  # sigmoid(0): input and output gates at zero bias
    gate_gain = gate_open * gate_open  # input gate x output gate; tanh'(0) = 1
    angles = 2 * math.pi / torch.logspace(math.log10(shortest), math.log10(longest), max(pairs, 1))
    w_ih, w_hh, b_ih, b_hh = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0
    _, forget_gate, candidate, _ = (slice(k * hidden, (k + 1) * hidden) for k in range(4))
    with torch.no_grad():
        w_hh.zero_()
        b_hh.zero_()
        b_ih.zero_()
        b_ih[forget_gate] = math.log(radius / (1.0 - radius))  # sigmoid(bias) = radius
        nn.init.uniform_(w_ih, -0.1, 0.1)
        w_ih[candidate] = torch.randn(hidden, w_ih.shape[1]) * (1.0 - radius) / gate_open
        rotation = w_hh[candidate]
        for pair, angle in enumerate(angles[:pairs].tolist()):
            a, b = 2 * pair, 2 * pair + 1
            diagonal = radius * (math.cos(angle) - 1.0) / gate_gain
            coupling = radius * math.sin(angle) / gate_gain
            rotation[a, a] = rotation[b, b] = diagonal
            rotation[a, b], rotation[b, a] = -coupling, coupling


class FrozenCellDynamics(nn.Module):
    """Keeps the cell-state dynamics of ``lstm``'s first layer as initialised; its output gate still trains.

    Frozen: the recurrent weights and biases (``requires_grad=False``), and the input, forget and candidate
    rows of the input weights and biases (their gradients are zeroed by hooks; a weight decay in the optimizer
    would still shrink them, so use none). Attach it to the net that owns ``lstm`` so the mask moves with it.
    Why: docs/signal-l1-oscillator-bank.md#keeping-the-bank.
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if not isinstance(lstm, nn.LSTM):
            raise ValueError(f"freeze_cell_dynamics needs LSTM cells, got {type(lstm).__name__}; use cell=lstm")
        hidden = lstm.hidden_size
        rows = (torch.arange(4 * hidden) >= 3 * hidden).float()  # the output gate's rows (gate order i, f, g, o)
        self.register_buffer("output_gate_rows", rows, persistent=False)
        lstm.weight_hh_l0.requires_grad_(False)
        lstm.bias_hh_l0.requires_grad_(False)
        lstm.weight_ih_l0.register_hook(self._mask_weight_grad)
        lstm.bias_ih_l0.register_hook(self._mask_bias_grad)

    def _mask_weight_grad(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.output_gate_rows.unsqueeze(1)

    def _mask_bias_grad(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.output_gate_rows
