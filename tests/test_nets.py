"""The nets: the L=1 fast path equals the step-by-step loop; streaming and chunked calls agree."""

from __future__ import annotations

import pytest
import torch

from helpers import build_net
from lstmlab.nets.sequence import SequenceLSTM
from lstmlab.nets.stateful import StatefulLSTM
from lstmlab.tasks.base import detach_state

# the model option whose YAML holds each net's values (tests/helpers.py: build_net)
MODEL_OF = {StatefulLSTM: "stateful", SequenceLSTM: "sequence"}


def random_state(net: StatefulLSTM, batch: int):
    def layer():
        h = torch.randn(1, batch, net.hidden_size)
        return (h, torch.randn_like(h)) if net.cell == "lstm" else h

    return [layer() for _ in range(net.num_layers)]


def step_by_step(net: StatefulLSTM, x, state, tbptt_steps: int):
    """The plain loop users write: one recurrent call per step, state detached every tbptt_steps steps."""
    outs = []
    for t in range(x.shape[1]):
        if t % tbptt_steps == 0:
            state = detach_state(state)
        out, state = net._forward_full(x[:, t : t + 1], state)
        outs.append(out)
    return torch.cat(outs, dim=1), state


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("tbptt_steps", [1, 4, 7])
def test_truncated_fast_path_equals_step_by_step_loop(cell, tbptt_steps):
    torch.manual_seed(0)
    net = build_net("stateful", hidden_size=12, num_layers=3, cell=cell, tbptt_steps=tbptt_steps, head_hidden=[6])
    x, y = torch.randn(4, 30, 5), torch.randn(4, 30, 1)  # 30 steps: a short last window for 4 and 7
    state = random_state(net, 4)

    fast, fast_state = net(x, state)
    torch.nn.functional.mse_loss(fast, y).backward()
    fast_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()

    ref, ref_state = step_by_step(net, x, state, tbptt_steps)
    torch.nn.functional.mse_loss(ref, y).backward()
    ref_grads = [p.grad.clone() for p in net.parameters()]

    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-5)
    for (name, _), g_fast, g_ref in zip(net.named_parameters(), fast_grads, ref_grads):
        torch.testing.assert_close(g_fast, g_ref, atol=1e-6, rtol=1e-5, msg=f"gradient of {name}")
    for a, b in zip(fast_state, ref_state):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_truncation_changes_gradients_but_not_outputs():
    """tbptt_steps=1 and full BPTT give the same outputs and different recurrent gradients."""
    torch.manual_seed(1)
    x, y = torch.randn(2, 20, 5), torch.randn(2, 20, 1)
    grads = {}
    outputs = {}
    for steps in (1, 20):
        torch.manual_seed(2)
        net = build_net("stateful", hidden_size=8, num_layers=1, tbptt_steps=steps)
        out, _ = net(x)
        torch.nn.functional.mse_loss(out, y).backward()
        grads[steps] = net.layers[0].weight_hh_l0.grad.clone()
        outputs[steps] = out.detach()
    torch.testing.assert_close(outputs[1], outputs[20])
    assert not torch.allclose(grads[1], grads[20])


def test_dropout_masks_are_shared_by_both_passes():
    """With dropout, the fast path still equals a loop that drops the same units."""
    torch.manual_seed(3)
    net = build_net("stateful", hidden_size=10, num_layers=2, dropout=0.3, tbptt_steps=1).train()
    x = torch.randn(3, 15, 5)
    torch.manual_seed(4)
    fast, _ = net(x)
    torch.manual_seed(4)
    masks = net._dropout_masks(x)
    outs, state = [], None
    for t in range(15):
        out, state = net._forward_full(x[:, t : t + 1], detach_state(state), [m[:, t : t + 1] for m in masks])
        outs.append(out)
    torch.testing.assert_close(fast, torch.cat(outs, 1), atol=1e-6, rtol=1e-5)


def test_streaming_step_matches_whole_sequence_and_reset_forgets():
    torch.manual_seed(5)
    net = build_net("stateful", hidden_size=8, num_layers=2).eval()
    x = torch.randn(3, 25, 5)
    with torch.no_grad():
        whole, _ = net(x)
    net.reset_state()
    streamed = torch.stack([net.step(x[:, t]) for t in range(25)], dim=1)
    torch.testing.assert_close(streamed, whole, atol=1e-6, rtol=1e-5)

    net.reset_state()
    first = net.step(x[:, 0])
    net.step(x[:, 1])
    net.reset_state()
    torch.testing.assert_close(net.step(x[:, 0]), first)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sequence_net_carries_state_across_windows(cell):
    torch.manual_seed(6)
    net = build_net("sequence", hidden_size=8, num_layers=2, cell=cell, head_hidden=[4], head_activation="tanh").eval()
    x = torch.randn(2, 40, 5)
    with torch.no_grad():
        whole, _ = net(x)
        first, state = net(x[:, :25])
        second, _ = net(x[:, 25:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-6, rtol=1e-5)


def test_unknown_cell_and_activation_are_named():
    with pytest.raises(ValueError, match="cell='rnn'"):
        build_net("stateful", cell="rnn")
    with pytest.raises(ValueError, match="head_activation='swish'"):
        build_net("sequence", head_activation="swish")


def cell_states(layer: torch.nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """The cell state after every step of one sample, [time, hidden] (nn.LSTM returns only the last)."""
    state, cells = None, []
    for t in range(x.shape[1]):
        _, state = layer(x[:, t : t + 1], state)
        cells.append(state[1][0, 0])
    return torch.stack(cells)


@pytest.mark.parametrize("net_class", [StatefulLSTM, SequenceLSTM])
def test_oscillator_init_rotates_each_pair_at_its_period_and_decays(net_class):
    torch.manual_seed(0)
    periods, decay = [10.0, 80.0], 50.0
    net = build_net(
        MODEL_OF[net_class],
        hidden_size=8,
        num_layers=2,
        init="oscillators",
        init_periods=periods,
        init_decay_steps=decay,
    )
    first = net.layers[0] if net_class is StatefulLSTM else net.rnn
    x = torch.zeros(1, 120, 5)
    x[0, 0] = torch.tensor([0.5, 1.0, 0.0, 0.0, 0.0])  # an impulse, then silence: the layer's own dynamics
    with torch.no_grad():
        c = cell_states(first, x).double()
    z = torch.complex(c[:, 0::2], c[:, 1::2])  # one complex number per pair of units
    advance = z[11:] / z[10:-1]  # per step, after the impulse
    expected = torch.tensor([10.0, 20.0, 40.0, 80.0], dtype=torch.float64)  # log-spaced over [10, 80]
    torch.testing.assert_close(advance.angle().mean(0), 2 * torch.pi / expected, rtol=1e-3, atol=0)
    torch.testing.assert_close(
        advance.abs().mean(0),
        torch.full((4,), torch.exp(torch.tensor(-1 / decay)).item(), dtype=torch.float64),
        rtol=1e-3,
        atol=0,
    )
    # a filter bank, not a random recurrence: a unit's amplitude stays within tanh's near-linear range
    assert c.abs().max() < 0.2


def test_oscillator_init_is_an_lstm_first_layer_only():
    torch.manual_seed(1)
    net = build_net("stateful", hidden_size=8, num_layers=2, init="oscillators")
    upper = build_net("stateful", hidden_size=8, num_layers=2, init="xavier_orthogonal").layers[1]
    assert net.layers[0].weight_hh_l0[:16].abs().sum() == 0  # gates read no recurrence at first
    assert net.layers[1].weight_hh_l0.shape == upper.weight_hh_l0.shape
    assert net.layers[1].weight_hh_l0[:8].abs().sum() > 0  # the layer above starts orthogonal, as before
    with pytest.raises(ValueError, match="init='oscillators' needs LSTM cells"):
        build_net("stateful", cell="gru", init="oscillators")
    with pytest.raises(ValueError, match=r"periods=\[1.0, 50.0\]"):
        build_net("sequence", init="oscillators", init_periods=[1.0, 50.0])


@pytest.mark.parametrize("net_class", [StatefulLSTM, SequenceLSTM])
def test_frozen_cell_dynamics_train_only_the_output_gate_of_the_first_layer(net_class):
    torch.manual_seed(2)
    net = build_net(
        MODEL_OF[net_class], hidden_size=8, num_layers=2, init="oscillators", freeze_cell_dynamics=True, head_hidden=[4]
    )
    first = net.layers[0] if net_class is StatefulLSTM else net.rnn
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=0.05)
    x, y = torch.randn(3, 30, 5), torch.randn(3, 30, 1)
    for _ in range(3):
        optimizer.zero_grad()
        ((net(x)[0] - y) ** 2).mean().backward()
        optimizer.step()
    changed = {
        name: (p.detach() - before[name]).abs().amax(dim=-1) if p.dim() > 1 else (p.detach() - before[name]).abs()
        for name, p in net.named_parameters()
    }
    rows = slice(0, 24)  # input, forget and candidate gates of 8 units
    prefix = "layers.0." if net_class is StatefulLSTM else "rnn."
    assert changed[f"{prefix}weight_hh_l0"].amax() == 0 and changed[f"{prefix}bias_hh_l0"].amax() == 0
    assert changed[f"{prefix}weight_ih_l0"][rows].amax() == 0 and changed[f"{prefix}bias_ih_l0"][rows].amax() == 0
    assert (changed[f"{prefix}weight_ih_l0"][24:] > 0).all() and (changed[f"{prefix}bias_ih_l0"][24:] > 0).all()
    assert changed["head.0.weight"].amax() > 0
    upper = "layers.1.weight_hh_l0" if net_class is StatefulLSTM else "rnn.weight_hh_l1"
    assert changed[upper].amax() > 0  # layers above the first train as usual
    assert first.weight_hh_l0.requires_grad is False


def readout_r2(layer: torch.nn.LSTM, data) -> list[float]:
    """R² on 10 unseen samples of a per-frequency least-squares readout of ``layer``'s hidden states, fitted on 30."""
    x = torch.zeros(40, data.mixed.shape[1], 5)
    x[..., 0] = torch.from_numpy(data.mixed[:40])
    with torch.no_grad():
        h, _ = layer(x)
    features = torch.cat([h, torch.ones_like(h[..., :1])], dim=-1).double()
    fit, held_out = features[:30].flatten(0, 1), features[30:].flatten(0, 1)
    targets = torch.from_numpy(data.targets[:40]).double()
    scores = []
    for k in range(targets.shape[1]):
        weights = torch.linalg.lstsq(fit, targets[:30, k].flatten()).solution
        truth = targets[30:, k].flatten()
        scores.append((1 - ((held_out @ weights - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()).item())
    return scores


def test_untrained_oscillator_bank_holds_each_frequency_for_a_linear_readout():
    """What the L=1 presets rely on (docs/signal-l1-oscillator-bank.md#what-the-untrained-bank-already-holds):
    before any training, the bank's hidden states carry every component of the mixed signal (1 kHz: 10,000 steps
    a sample) for a linear readout; a random recurrence of the same size does not."""
    from lstmlab.data.signals import generate_signals

    data = generate_signals(n_samples=40, sampling_rate=1000.0, duration=10.0)
    torch.manual_seed(3)
    bank = build_net(
        "stateful", hidden_size=64, num_layers=1, init="oscillators", init_periods=[40, 2000], init_decay_steps=500
    )
    random = build_net("stateful", hidden_size=64, num_layers=1, init="xavier_orthogonal")
    assert min(readout_r2(bank.layers[0], data)) > 0.95
    assert sum(readout_r2(random.layers[0], data)) / 4 < 0.7


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 64, 300])
def test_cell_recurrence_scan_equals_the_step_loop(steps):
    """Accelerators run the cell-state recurrence as a log-depth scan: the values of the CPU's step loop."""
    from lstmlab.nets.stateful import _linear_recurrence

    torch.manual_seed(steps)
    forget, written = torch.rand(steps, 4, 8, dtype=torch.float64), torch.randn(steps, 4, 8, dtype=torch.float64)
    c0 = torch.randn(4, 8, dtype=torch.float64)
    loop = _linear_recurrence(forget, written, c0, log_depth=False)
    scan = _linear_recurrence(forget, written, c0, log_depth=True)
    torch.testing.assert_close(scan, loop, rtol=1e-12, atol=1e-12)
    assert torch.equal(loop[0], c0)
    torch.testing.assert_close(loop[-1], forget[-2] * loop[-2] + written[-2] if steps > 1 else c0)
