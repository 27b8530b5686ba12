"""The stateful (L=1) recurrent net: one time step per call at inference, explicit state between calls.

Training semantics follow truncated BPTT of ``tbptt_steps``: the state entering every window of
``tbptt_steps`` steps is a constant (detached), so with ``tbptt_steps=1`` the gradient of each step's loss
flows through that step only. Written as a loop, that is one ``nn.LSTM`` call per time step. Here the same
gradients are computed in two vectorised passes instead:

1. a no-grad pass over the whole chunk gives the state before every window (``nn.LSTM`` yields every ``h``;
   the cell states ``c`` follow from the gates, which are known once every ``h`` is, by the linear recurrence
   ``c_t = f_t * c_{t-1} + i_t * g_t``);
2. one batched recurrent call with grad runs all windows side by side, each from its detached start state.

The values are those of the step-by-step loop and so are the gradients (``tests/test_nets.py`` checks both).

For LSTM layers with ``tbptt_steps=1`` (the L=1 default) every window is a single step, so pass 2 is written
out as one cell step over all time steps at once (two matrix products and the gate arithmetic), its gates
shared with the cell-state recurrence of pass 1: an ``nn.LSTM`` call on windows of length 1 costs more than
the step itself (docs/benchmarks.md#performance: the L=1 path against the plain step-by-step loop).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmlab.nets.cells import FrozenCellDynamics, init_recurrent, make_recurrent
from lstmlab.nets.heads import make_head

# Per layer: (h, c) for an LSTM layer, h for a GRU layer; shaped [1, batch, hidden] as torch's RNNs take them.
State = list


class StatefulLSTM(nn.Module):
    """Stacked single-layer recurrent cells with explicit state, a streaming ``step`` API and a head.

    ``init``, ``init_periods`` and ``init_decay_steps``: how the recurrent layers start
    (``lstmlab.nets.cells.init_recurrent``; ``oscillators`` makes the first layer a filter bank);
    ``freeze_cell_dynamics`` keeps the first layer's cell dynamics as they start (``FrozenCellDynamics``).
    """

    # The values come from conf/model/stateful.yaml (model.net); tests and benchmarks build the net from it too.
    def __init__(
        self,
        *,
        hidden_size: int,
        num_layers: int,
        tbptt_steps: int,
        head_hidden: Sequence[int],
        input_size: int,
        output_size: int,
        dropout: float,
        cell: str,
        head_activation: str,
        init: str,
        init_periods: Sequence[float],
        init_decay_steps: float,
        freeze_cell_dynamics: bool,
    ) -> None:
        super().__init__()
        if tbptt_steps < 1:
            raise ValueError(f"tbptt_steps={tbptt_steps}: must be >= 1")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.dropout = dropout
        self.tbptt_steps = tbptt_steps
        self.layers = nn.ModuleList(
            # one module per layer: the truncated passes run layer by layer, dropout masks between them
            make_recurrent(cell, input_size if i == 0 else hidden_size, hidden_size, num_layers=1, dropout=0.0)
            for i in range(num_layers)
        )
        for i, layer in enumerate(self.layers):
            # an oscillator bank is a first layer's job: the layers above it read it
            scheme = "xavier_orthogonal" if init == "oscillators" and i > 0 else init
            init_recurrent(layer, scheme, init_periods, init_decay_steps)
        self.frozen = FrozenCellDynamics(self.layers[0]) if freeze_cell_dynamics else None
        # dropout 0: model.net of a stateful net has no head_dropout option (StatefulNetSchema)
        self.head = make_head(hidden_size, output_size, head_hidden, head_activation, dropout=0.0)
        self.state: State | None = None

    # ---- streaming ---------------------------------------------------------------------------------
    def reset_state(self) -> None:
        """Forget the carried state: call between independent samples."""
        self.state = None

    @torch.no_grad()
    def step(self, x_t: Tensor) -> Tensor:
        """One time step for a batch of streams: ``x_t`` [batch, input_size] -> [batch, output_size]."""
        y, self.state = self._forward_full(x_t.unsqueeze(1), self.state)
        return y[:, 0]

    # ---- chunks ------------------------------------------------------------------------------------
    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``x`` [batch, time, input_size] -> outputs [batch, time, output_size] and the state after the last step.

        With grad enabled and chunks longer than ``tbptt_steps``, gradients are truncated every
        ``tbptt_steps`` steps; without grad this is a plain pass over the chunk.
        """
        if torch.is_grad_enabled() and self.tbptt_steps < x.shape[1]:
            return self._forward_truncated(x, state)
        return self._forward_full(x, state)

    def _forward_full(self, x: Tensor, state: State | None, masks: list[Tensor] | None = None):
        new_state = []
        inp = x
        for i, layer in enumerate(self.layers):
            out, layer_state = layer(inp, None if state is None else state[i])
            new_state.append(layer_state)
            inp = self._between_layers(out, i, masks)
        return self.head(inp), new_state

    def _forward_truncated(self, x: Tensor, state: State | None):
        masks = self._dropout_masks(x) if self.training and self.dropout > 0 else None
        if self.tbptt_steps == 1 and self.cell == "lstm":
            return self._forward_single_steps(x, state, masks)
        with torch.no_grad():
            window_starts, final_state = self._window_start_states(x, state, masks)
        inp = x
        for i, layer in enumerate(self.layers):
            out = self._run_windows(layer, inp, window_starts[i])
            inp = self._between_layers(out, i, masks)
        return self.head(inp), final_state

    def _forward_single_steps(self, x: Tensor, state: State | None, masks: list[Tensor] | None):
        """``tbptt_steps=1`` for LSTM layers: per layer, a no-grad pass for the hidden states entering every
        step, then one cell step with grad at every time step from those (detached) states."""
        batch = x.shape[0]
        inp, final_state = x, []
        for i, layer in enumerate(self.layers):
            layer_state = None if state is None else state[i]
            with torch.no_grad():
                out, last = layer(inp, layer_state)
            final_state.append(last)
            if layer_state is None:
                h0 = c0 = out.new_zeros(batch, self.hidden_size)
            else:
                h0, c0 = layer_state[0][0], layer_state[1][0]
            h_before = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)  # h entering step t
            out = _lstm_single_steps(layer, inp, h_before, c0)
            inp = self._between_layers(out, i, masks)
        return self.head(inp), final_state

    def _between_layers(self, out: Tensor, index: int, masks: list[Tensor] | None) -> Tensor:
        if index == self.num_layers - 1:
            return out
        if masks is not None:
            return out * masks[index]
        return F.dropout(out, self.dropout, self.training)

    def _dropout_masks(self, x: Tensor) -> list[Tensor]:
        # Both passes must drop the same units, so the masks are drawn once per chunk.
        keep = 1.0 - self.dropout
        shape = (x.shape[0], x.shape[1], self.hidden_size)
        return [
            torch.bernoulli(torch.full(shape, keep, device=x.device, dtype=x.dtype)) / keep
            for _ in range(self.num_layers - 1)
        ]

    def _window_start_states(self, x: Tensor, state: State | None, masks):
        """Per layer, the state [windows, batch, hidden] (h, and c for LSTM) entering every truncation window."""
        batch, steps, _ = x.shape
        stride = self.tbptt_steps
        starts, final_state = [], []
        inp = x
        for i, layer in enumerate(self.layers):
            layer_state = None if state is None else state[i]
            out, last = layer(inp, layer_state)
            final_state.append(last)
            h0 = out.new_zeros(batch, self.hidden_size) if layer_state is None else _hidden(layer_state)[0]
            h_before = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)  # h entering step t
            if isinstance(layer, nn.LSTM):
                c0 = torch.zeros_like(h0) if layer_state is None else layer_state[1][0]
                c_before = _cells_before_steps(layer, inp, h_before, c0)
                starts.append((h_before[:, ::stride], c_before[:, ::stride]))
            else:
                starts.append((h_before[:, ::stride],))
            inp = self._between_layers(out, i, masks)
        return starts, final_state

    def _run_windows(self, layer: nn.RNNBase, inp: Tensor, start: tuple[Tensor, ...]) -> Tensor:
        """All truncation windows of one layer in a single batched call, each from its own start state."""
        batch, steps, features = inp.shape
        stride = self.tbptt_steps
        full = steps // stride
        pieces = []
        if full:
            windows = inp[:, : full * stride].reshape(batch * full, stride, features)
            h0 = tuple(s[:, :full].reshape(1, batch * full, -1).contiguous() for s in start)
            out, _ = layer(windows, h0 if len(h0) == 2 else h0[0])
            pieces.append(out.reshape(batch, full * stride, -1))
        if full * stride < steps:  # a shorter last window
            h0 = tuple(s[:, full].unsqueeze(0).contiguous() for s in start)
            out, _ = layer(inp[:, full * stride :], h0 if len(h0) == 2 else h0[0])
            pieces.append(out)
        return torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]


def _hidden(layer_state) -> Tensor:
    return layer_state[0] if isinstance(layer_state, tuple) else layer_state


def _cells_before_steps(layer: nn.LSTM, inp: Tensor, h_before: Tensor, c0: Tensor) -> Tensor:
    """The LSTM cell state entering every step, from the inputs and the hidden states entering every step."""
    gates = F.linear(inp, layer.weight_ih_l0, layer.bias_ih_l0) + F.linear(
        h_before, layer.weight_hh_l0, layer.bias_hh_l0
    )
    i, f, g, _ = gates.transpose(0, 1).chunk(4, dim=-1)  # time-major: cheap per-step slices
    return _linear_recurrence(torch.sigmoid(f), torch.sigmoid(i) * torch.tanh(g), c0).transpose(0, 1)


def _linear_recurrence(forget: Tensor, written: Tensor, c0: Tensor, log_depth: bool | None = None) -> Tensor:
    """The cell states entering every step, ``c_0 = c0`` and ``c_{t+1} = forget_t * c_t + written_t``.

    Time-major [time, batch, hidden]. On a CPU a loop of one fused multiply-add per step is the cheapest. On an
    accelerator each of those is a kernel launch that costs more than its arithmetic, so the recurrence runs
    as a log-depth scan instead (Hillis-Steele: after the pass with offset k, step t holds the composition of
    the k steps before it): 3 log2(time) launches instead of time. Products of forget gates only shrink, so
    unlike a cumulative-product formula nothing is divided and nothing overflows. ``log_depth`` forces either.
    """
    steps = forget.shape[0]
    cells = written.new_empty(steps, *written.shape[1:])
    cells[0] = c0
    if steps == 1:
        return cells
    if not (written.device.type != "cpu" if log_depth is None else log_depth):
        for t in range(steps - 1):
            torch.addcmul(written[t], forget[t], cells[t], out=cells[t + 1])
        return cells
    # step t of (gain, offset) maps c_{t} to c_{t+1}; the first one is composed with c0 up front
    gain, offset = forget[:-1].clone(), written[:-1].clone()
    offset[0].addcmul_(gain[0], c0)
    gain[0] = 0.0
    k = 1
    while k < steps - 1:
        offset[k:] = torch.addcmul(offset[k:], gain[k:], offset[:-k])
        gain[k:] = gain[k:] * gain[:-k]
        k *= 2
    cells[1:] = offset
    return cells


def _lstm_single_steps(layer: nn.LSTM, inp: Tensor, h_before: Tensor, c0: Tensor) -> Tensor:
    """The LSTM cell applied at every step (with grad) to the detached state entering that step.

    ``h_before`` [batch, time, hidden] holds the hidden states entering the steps; the cell states entering
    them follow, without grad, from the same gates by ``c_t = f_t * c_{t-1} + i_t * g_t`` from ``c0``.
    """
    batch, steps, hidden = h_before.shape
    gates = torch.addmm(
        F.linear(inp.reshape(batch * steps, -1), layer.weight_ih_l0, layer.bias_ih_l0 + layer.bias_hh_l0),
        h_before.reshape(batch * steps, hidden),
        layer.weight_hh_l0.t(),
    ).view(batch, steps, 4 * hidden)
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    written = i * g
    with torch.no_grad():  # time-major: cheap per-step slices
        cells = _linear_recurrence(f.transpose(0, 1), written.transpose(0, 1), c0)
    return o * torch.tanh(torch.addcmul(written, f, cells.transpose(0, 1)))
