"""LSTM-FCN / MLSTM-FCN (``model=bilstm_classifier/lstm_fcn|mlstm_fcn``): shapes, padding, gradients, the SE blocks,
both LSTM inputs, and a run through the real CLI."""

from __future__ import annotations

import re

import pytest
import torch

from helpers import build_net, compose_train, read_metrics, run_cli
from lstmlab import choices
from lstmlab.errors import ConfigError
from lstmlab.nets.lstm_fcn import pool_factor
from lstmlab.schemas import validate_config
from lstmlab.tasks.classification import SequenceClassificationTask

LSTM_FCN, MLSTM_FCN = "bilstm_classifier/lstm_fcn", "bilstm_classifier/mlstm_fcn"
# small widths, the shipped structure (three blocks, SE reduction 16 where widths allow it)
SMALL = {
    "input_size": 3,
    "hidden_size": 8,
    "filters": [16, 32, 16],
    "shuffle_length": 24,
    "time_pool": 1,
    "time_pool_phases": True,
}


def small_net(model: str = MLSTM_FCN, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_net(model, **{"num_classes": 2, **SMALL, **overrides})


@pytest.mark.parametrize("lstm_input", choices.LSTM_INPUTS)
@pytest.mark.parametrize(("num_classes", "shape"), [(2, (4,)), (5, (4, 5))])
def test_logits_have_one_column_per_class_or_one_for_binary(num_classes, shape, lstm_input):
    net = small_net(num_classes=num_classes, lstm_input=lstm_input)
    assert net.input_size == 3 and net.num_classes == num_classes
    assert net(torch.randn(4, 20, 3), torch.tensor([20, 13, 5, 1])).shape == shape


# padded lengths of the batch: shorter and longer than shuffle_length (24: the channels mode crops past it)
@pytest.mark.parametrize("lstm_input", choices.LSTM_INPUTS)
@pytest.mark.parametrize("model", [LSTM_FCN, MLSTM_FCN])
@pytest.mark.parametrize(("pack", "summary_stats"), [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("time_pool", [1, 3])
def test_padding_changes_no_logit(model, lstm_input, pack, summary_stats, time_pool):
    """A sequence alone, and in a batch where it is padded with garbage beside longer ones: the same logits. The
    garbage stands for the task's z-score, which turns zero padding into -mean/std. With time_pool 3 the
    sequence's 11 steps end inside a window that reaches into the garbage."""
    net = small_net(
        model, lstm_input=lstm_input, pack=pack, num_classes=3, summary_stats=summary_stats, time_pool=time_pool
    ).eval()
    assert net.head.in_features == 16 + 8 + (5 * 3 + 1 if summary_stats else 0)
    torch.manual_seed(1)
    alone = torch.randn(1, 11, 3)
    batch = torch.randn(3, 30, 3) * 5 + 7  # garbage everywhere ...
    batch[0, :11] = alone[0]  # ... but on the valid steps of sequence 0
    with torch.no_grad():
        expected = net(alone, torch.tensor([11]))
        got = net(batch, torch.tensor([11, 30, 17]))
    torch.testing.assert_close(got[:1], expected, atol=1e-5, rtol=1e-5)


def window_means(x: torch.Tensor, start: int, k: int = 3) -> torch.Tensor:
    """[1, windows, C]: the means of x [T, C] over k steps at a time from ``start`` (the last window shorter)."""
    return torch.stack([x[i : i + k].mean(0) for i in range(start, len(x), k)])[None]


def test_time_pool_reads_the_sequence_averaged_over_each_window_of_its_own_steps():
    """time_pool=3 on 11 steps gives the logits of time_pool=1 on 4 steps: the means of steps 0-2, 3-5, 6-8 and
    of 9-10 (the last window over the sequence's own steps, not its padding)."""
    pooled = small_net(time_pool=3, time_pool_phases=False, num_classes=3).eval()
    plain = small_net(time_pool=1, num_classes=3).eval()  # the same seed: the same weights
    torch.manual_seed(3)
    x = torch.randn(2, 14, 3)
    x[0, 11:] = 50.0  # sequence 0 is 11 steps long; its padding is garbage
    averaged = window_means(x[0, :11], 0)
    with torch.no_grad():
        got = pooled(x, torch.tensor([11, 14]))[:1]
        torch.testing.assert_close(got, plain(averaged, torch.tensor([4])), atol=1e-5, rtol=1e-5)


def test_time_pool_phases_average_the_logits_over_the_k_window_starts_in_eval():
    """With time_pool_phases, eval gives the mean of the logits of the windows from steps 0, 1 and 2 (the first
    one or two steps dropped); a 2-step sequence has two phases, the second its last step alone."""
    pooled = small_net(time_pool=3, num_classes=3).eval()
    plain = small_net(time_pool=1, num_classes=3).eval()
    torch.manual_seed(3)
    x = torch.randn(2, 11, 3)
    with torch.no_grad():
        got = pooled(x, torch.tensor([11, 2]))

        def mean_logits(seq, starts):
            return torch.stack(
                [plain(w, torch.tensor([w.shape[1]])) for w in (window_means(seq, s) for s in starts)]
            ).mean(0)

        torch.testing.assert_close(got[:1], mean_logits(x[0], [0, 1, 2]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[1:], mean_logits(x[1, :2], [0, 1, 1]), atol=1e-5, rtol=1e-5)


def test_time_pool_phases_train_each_sequence_on_a_random_window_start():
    """In training a sequence's logits are those of one of its three phases, and across batches all three come up
    (a one-sequence batch: batch norm then takes that sequence's own statistics in both nets)."""
    pooled = small_net(time_pool=3, num_classes=3, lstm_dropout=0.0).train()
    plain = small_net(time_pool=1, num_classes=3, lstm_dropout=0.0).train()
    torch.manual_seed(4)
    x = torch.randn(1, 11, 3)
    with torch.no_grad():
        windows = [window_means(x[0], s) for s in range(3)]  # 4, 4 and 3 windows
        phases = [plain(w, torch.tensor([w.shape[1]])) for w in windows]
        seen = set()
        for _ in range(30):
            got = pooled(x, torch.tensor([11]))
            matches = [s for s, logits in enumerate(phases) if torch.allclose(got, logits, atol=1e-5)]
            assert len(matches) == 1
            seen.update(matches)
    assert seen == {0, 1, 2}


def test_time_pool_factor_is_the_smallest_that_fits_the_target():
    assert [pool_factor(n, 512) for n in (500, 512, 513, 1460)] == [1, 1, 2, 3]
    assert pool_factor(100_000, None) == 1


def test_training_batch_norm_statistics_come_from_the_valid_steps_only():
    net = small_net(LSTM_FCN).train()
    torch.manual_seed(2)
    x = torch.randn(2, 10, 3)
    lengths = torch.tensor([10, 6])
    net(x, lengths)
    reference = dict(net.conv_blocks[0].norm.named_buffers())
    garbage = torch.full((2, 16, 3), 100.0)  # longer padding, and garbage on it
    garbage[0, :10], garbage[1, :6] = x[0], x[1, :6]
    net2 = small_net(LSTM_FCN).train()
    net2(garbage, lengths)
    for name, value in net2.conv_blocks[0].norm.named_buffers():
        torch.testing.assert_close(value, reference[name])


@pytest.mark.parametrize("cell", choices.CELLS)
def test_every_cell_reads_the_last_valid_step_packed_or_not(cell):
    net = small_net(cell=cell, pack=False).eval()
    x, lengths = torch.randn(3, 12, 3), torch.tensor([12, 7, 3])
    with torch.no_grad():
        torch.testing.assert_close(net(x, lengths), small_net(cell=cell, pack=True).eval()(x, lengths))


@pytest.mark.parametrize("lstm_input", choices.LSTM_INPUTS)
def test_gradients_reach_both_branches_and_the_se_blocks(lstm_input):
    net = small_net(MLSTM_FCN, lstm_input=lstm_input, lstm_dropout=0.0).train()
    net(torch.randn(4, 20, 3), torch.tensor([20, 13, 5, 2])).sum().backward()
    for part in ("conv_blocks", "squeeze_excite", "lstm", "head"):
        grads = [p.grad for p in getattr(net, part).parameters()]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), part


def test_squeeze_excite_changes_the_output():
    x, lengths = torch.randn(4, 20, 3), torch.tensor([20, 13, 5, 2])
    plain, mlstm = small_net(LSTM_FCN).eval(), small_net(MLSTM_FCN).eval()
    assert plain.squeeze_excite is None and len(mlstm.squeeze_excite) == 2  # after the first two blocks
    with torch.no_grad():
        assert not torch.allclose(plain(x, lengths), mlstm(x, lengths), atol=1e-4)


@pytest.mark.parametrize(
    "bad",
    [{"lstm_input": "both"}, {"cell": "rnn"}, {"filters": [8, 8], "kernel_sizes": [3]}, {"time_pool": 0}],
    ids=str,
)
def test_a_bad_option_names_itself(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        small_net(**bad)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.net.lstm_input=both", "model.net.lstm_input must be one of ['time', 'channels']"),
        ("model.net.kernel_sizes=[8,5]", "model.net.kernel_sizes needs one kernel size per conv block"),
        ("model.net.time_pool_target=0", "model.net.time_pool_target must be > 0, got 0"),
    ],
)
def test_the_config_check_names_a_bad_value(override, message, tmp_path):
    cfg = compose_train("experiment=steel_defect", f"model={MLSTM_FCN}", f"paths.root_dir={tmp_path}", override)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(cfg)


def test_mlstm_fcn_through_the_cli_writes_the_test_metrics(tmp_path):
    run = tmp_path / "run"
    run_cli(
        "lstmlab.train",
        "experiment=steel_defect",
        f"model={MLSTM_FCN}",
        "debug=fast",
        "data.generator.n_sequences=90",
        "data.generator.min_length=31",
        "data.generator.max_length=60",
        "model.net.time_pool_target=30",  # every sequence 31-60 steps: pooled by 2
        "data.batch_size=16",
        "model.net.hidden_size=8",
        "model.net.filters=[16,32,16]",
        "model.net.summary_stats=true",
        "callbacks.performance.latency_sequences=4",
        "callbacks.performance.throughput_batch=16",
        "callbacks.progress=null",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    test = read_metrics(run)["test"]
    assert 0.0 <= test["test/auroc"] <= 1.0 and "test/aupr" in test and test["test/num_parameters"] > 0
    # the statistics were fitted on the train split at set-up (unfitted: mean 0, spread 1) and saved with the net
    checkpoint = next((run / "checkpoints").glob("*.ckpt"))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["state_dict"]["net.summary.mean"].abs().sum() > 0
    std = state["state_dict"]["net.summary.std"]
    assert not torch.equal(std, torch.ones_like(std))
    # the factor taken from the train split is saved: the checkpoint rebuilds the net that reads every 2 steps
    assert state["hyper_parameters"]["net"]["time_pool"] == 2
    assert SequenceClassificationTask.load_from_checkpoint(checkpoint).net.time_pool == 2
