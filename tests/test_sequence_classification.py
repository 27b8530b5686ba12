"""Sequence classification in-process: the HDF5 schema and its loader, the datamodule, the classifier net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import build_datamodule, build_net, with_value, write_user_file
from lstmlab.data.casting import ensure_casting, generate_casting
from lstmlab.data.classification_datamodule import channel_statistics
from lstmlab.data.sequences import load_sequences
from lstmlab.data.splits import carve_validation, stratified_split
from lstmlab.errors import DataFileError
from lstmlab.nets.summary import summary_features

BAD_FILES = {
    "label_above_k": (
        dict(labels=lambda a: with_value(a, 4, 3)),
        "dataset 'labels' holds 1 values outside [0, 2] (first: labels[4] = 3)",
    ),
    "label_negative": (dict(labels=lambda a: with_value(a, 7, -1)), "(first: labels[7] = -1)"),
    "length_zero": (
        dict(lengths=lambda a: with_value(a, 2, 0)),
        "dataset 'lengths' holds 1 values outside [1, 12] (first: lengths[2] = 0)",
    ),
    "length_above_t_max": (
        dict(lengths=lambda a: with_value(a, 5, 13)),
        "(first: lengths[5] = 13); expected 1 <= length <= T_max = 12",
    ),
    "nan_in_sequence": (
        dict(sequences=lambda a: with_value(a, (3, 1, 2), np.nan)),
        "holds 1 NaN/Inf values (first at index [3, 1, 2])",
    ),
    "inf_in_sequence": (dict(sequences=lambda a: with_value(a, (9, 0, 0), np.inf)), "(first at index [9, 0, 0])"),
    "missing_labels": (dict(labels=lambda a: None), "dataset 'labels' is missing"),
    "labels_wrong_count": (dict(labels=lambda a: a[:-1]), "dataset 'labels' has 29 entries; 'sequences' has N=30"),
    "channel_names_mismatch": (
        dict(attrs=lambda a: {**a, "channel_names": ["a", "b"]}),
        "channel_names lists 2 names; 'sequences' has C=3",
    ),
    "split_code_unknown": (
        dict(split=lambda a: np.full(30, 3, np.uint8)),
        "dataset 'split' holds 30 values outside [0, 2]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_loader_rejects_each_bad_input_naming_it(tmp_path, case):
    changes, expected = BAD_FILES[case]
    path = write_user_file(tmp_path / "user.h5", **changes)
    with pytest.raises(DataFileError) as err:
        load_sequences(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_loader_ignores_padding_even_nan(tmp_path):
    path = write_user_file(
        tmp_path / "user.h5",
        sequences=lambda a: with_value(a, (0, 11, 0), np.nan),
        lengths=lambda a: with_value(a, 0, 5),
    )
    data = load_sequences(path)
    assert data.num_classes == 3 and data.num_channels == 3
    assert data.class_names == ["c0", "c1", "c2"] and data.channel_names == ["channel_0", "channel_1", "channel_2"]
    assert (data.sequences[0, 5:] == 0).all()


def test_single_class_in_the_train_split_is_refused(tmp_path):
    # the file's own split puts only class 0 into train
    path = write_user_file(
        tmp_path / "user.h5",
        classes=2,
        split=lambda _: np.where(np.arange(30) % 2 == 0, 0, np.where(np.arange(30) % 3 == 0, 1, 2)).astype(np.uint8),
    )
    datamodule = build_datamodule("casting", path=str(path), data_dir=str(tmp_path))
    with pytest.raises(DataFileError, match=r"the train split holds a single class \(0, 'c0'\)"):
        datamodule.setup("fit")


def test_datamodule_split_normalisation_and_batches(tmp_path):
    path = write_user_file(tmp_path / "user.h5", n=60, sequences=lambda a: a * 3.0 + 10.0)
    datamodule = build_datamodule("casting", path=str(path), data_dir=str(tmp_path), batch_size=8, seed=3)
    datamodule.setup("fit")
    train = datamodule.splits["train"]
    # statistics over valid steps only: padding zeros would pull the mean of ~10 far down
    expected_mean, expected_std = channel_statistics(train.sequences.numpy(), train.lengths.numpy())
    assert np.allclose(datamodule.channel_mean, expected_mean) and (np.abs(expected_mean - 10) < 1.0).all()
    assert (np.abs(datamodule.channel_std - 3) < 0.6).all()
    assert datamodule.train_class_counts.tolist() == [14, 14, 14]  # stratified 70 % of 20 per class
    sizes = {name: len(s) for name, s in datamodule.splits.items()}
    assert sizes == {"train": 42, "val": 9, "test": 9}
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["x"].shape[1] == int(batch["lengths"].max()) and batch["x"].shape[0] == 8


def test_stratified_split_keeps_the_class_mix_and_is_seeded():
    labels = np.array([0] * 85 + [1] * 15)
    split = stratified_split(labels, (0.7, 0.15, 0.15), seed=1)
    assert [int(labels[split[s]].sum()) for s in ("train", "val", "test")] == [11, 2, 2]
    again = stratified_split(labels, (0.7, 0.15, 0.15), seed=1)
    assert all((split[s] == again[s]).all() for s in split)
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(100))


def test_a_file_with_only_train_and_test_gets_a_stratified_val_from_train(tmp_path):
    # official splits (UCR/UEA): 36 train sequences of 3 classes, no val; the val is carved from train only
    labels = np.array([0] * 12 + [1] * 12 + [2] * 12 + [0, 1, 2] * 10)
    split = np.array([0] * 36 + [2] * 30, dtype=np.uint8)
    train, val = carve_validation(labels, np.flatnonzero(split == 0), (0.7, 0.15, 0.15), seed=0)
    assert np.bincount(labels[val]).tolist() == [2, 2, 2] and np.bincount(labels[train]).tolist() == [10, 10, 10]
    assert set(val) | set(train) == set(range(36)) and not set(val) & set(train)
    # two sequences of a class: one for each; one sequence: it stays in train
    train, val = carve_validation(np.array([0, 0, 1]), np.arange(3), (0.7, 0.15, 0.15), seed=0)
    assert labels_of(np.array([0, 0, 1]), val) == [0] and labels_of(np.array([0, 0, 1]), train) == [0, 1]


def labels_of(labels: np.ndarray, members: np.ndarray) -> list[int]:
    return sorted(labels[members].tolist())


def test_casting_generator_is_seeded_cached_and_imbalanced(tmp_path):
    params = {"n_sequences": 400, "min_length": 100, "max_length": 200, "seed": 3}
    a, b = generate_casting(**params), generate_casting(**params)
    assert np.array_equal(a.sequences, b.sequences) and np.array_equal(a.labels, b.labels)
    assert a.sequences.shape == (400, 200, 5) and 100 <= a.lengths.min() and a.lengths.max() <= 200
    assert 0.10 < a.labels.mean() < 0.22
    path = ensure_casting(tmp_path, params)
    stamp = path.stat().st_mtime_ns
    assert ensure_casting(tmp_path, params) == path and path.stat().st_mtime_ns == stamp  # cached
    data = load_sequences(path)
    assert data.channel_names[0] == "mould_level" and data.class_names == ["normal", "defect"]
    assert not list(tmp_path.glob("*.tmp-*"))


# ---- the net ----------------------------------------------------------------------------------------
NETS = {
    "bi_attention": dict(bidirectional=True, pooling="attention"),
    "bi_last": dict(bidirectional=True, pooling="last"),
    "uni_mean": dict(bidirectional=False, pooling="mean", norm="layernorm"),
    "bi_last_packed": dict(bidirectional=True, pooling="last", pack=True),
    "bi_attention_summary": dict(bidirectional=True, pooling="attention", summary_stats=True),
    "bi_attention_patches": dict(bidirectional=True, pooling="attention", summary_stats=True, patch_len=4),
    "bi_last_patches": dict(bidirectional=True, pooling="last", patch_len=2),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_padding_never_changes_the_logits(name):
    torch.manual_seed(0)
    net = build_net(
        "bilstm_classifier", input_size=3, num_classes=3, hidden_size=8, num_layers=2, hidden_dims=[6], **NETS[name]
    ).eval()
    x = torch.randn(2, 9, 3)
    lengths = torch.tensor([9, 5])
    with torch.no_grad():
        reference = net(x, lengths)
        # the same sequences padded to T_max = 20 (zeros) and 31 (garbage): same logits
        zero_pad = net(torch.cat([x, torch.zeros(2, 11, 3)], 1), lengths)
        noise_pad = net(torch.cat([x, 100 * torch.randn(2, 22, 3)], 1), lengths)
        alone = net(x[1:, :5], lengths[1:])
    assert torch.allclose(zero_pad, reference, atol=1e-5)
    assert torch.allclose(noise_pad, reference, atol=1e-5)
    assert torch.allclose(alone, reference[1:], atol=1e-5)


def test_summary_statistics_are_the_baselines_features_of_each_sequence_alone():
    """The head's statistics (``summary_stats``) of a padded batch are each sequence's own: per channel mean, std,
    min, max and last valid value, and the log length; the net standardises them by the statistics it was fitted
    on, and a feature constant there is centred, never divided by its zero spread."""
    torch.manual_seed(0)
    x = torch.randn(3, 8, 2)
    lengths = torch.tensor([8, 5, 1])
    padded = x.clone()
    padded[1, 5:], padded[2, 1:] = 1e3, -1e3  # garbage after the valid steps
    features = summary_features(padded, lengths)
    for i, n in enumerate(lengths.tolist()):
        seq = x[i, :n]
        expected = torch.cat(
            [seq.mean(0), seq.std(0, unbiased=False), seq.amin(0), seq.amax(0), seq[-1], torch.tensor([n]).log()]
        )
        assert torch.allclose(features[i], expected, atol=1e-6)

    net = build_net("bilstm_classifier", input_size=2, num_classes=3, hidden_size=4, summary_stats=True)
    assert net.head[0].in_features == 2 * 4 + 5 * 2 + 1
    train = torch.randn(50, 8, 2) * 3 + 1
    net.summary.fit(train, torch.full((50,), 8), chunk=16)  # chunks: the same statistics as all at once
    standardised = net.summary(train, torch.full((50,), 8))
    assert torch.allclose(standardised[:, :-1].mean(0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(standardised[:, :-1].std(0, unbiased=False), torch.ones(10), atol=1e-4)
    assert (standardised[:, -1] == 0).all() and net.summary.std[-1] == 1.0  # one length in train: centred only
    shorter = net.summary(train[:2], torch.tensor([8, 4]))
    assert float(shorter[1, -1]) == pytest.approx(float(torch.tensor(4.0).log() - torch.tensor(8.0).log()))


def test_summary_linear_adds_a_linear_read_of_the_statistics_to_the_head():
    """``summary_linear`` starts at zero (the net begins as the head alone) and adds W z + b to the logits, z the
    sequence's standardised statistics: padding leaves it unchanged; without the statistics it is refused."""
    x, lengths = torch.randn(3, 9, 2), torch.tensor([9, 4, 1])
    nets = {}
    for wide in (False, True):
        torch.manual_seed(0)
        nets[wide] = build_net(
            "bilstm_classifier", input_size=2, num_classes=3, hidden_size=4, summary_stats=True, summary_linear=wide
        ).eval()
    wide = nets[True]
    with torch.no_grad():
        assert torch.equal(wide(x, lengths), nets[False](x, lengths))
        nn.init.normal_(wide.summary_linear.weight)
        nn.init.normal_(wide.summary_linear.bias)
        z = wide.summary(x, lengths)
        expected = nets[False](x, lengths) + z @ wide.summary_linear.weight.T + wide.summary_linear.bias
        assert torch.allclose(wide(x, lengths), expected, atol=1e-5)
        padded = torch.cat([x, 50 * torch.randn(3, 6, 2)], 1)
        assert torch.allclose(wide(padded, lengths), expected, atol=1e-5)
    with pytest.raises(ValueError, match="summary_linear=true .* set summary_stats=true"):
        build_net("bilstm_classifier", input_size=2, num_classes=3, summary_stats=False, summary_linear=True)


@pytest.mark.parametrize("patch_len", [1, 2])
def test_attention_weights_sum_to_one_over_valid_steps_only(patch_len):
    torch.manual_seed(0)
    net = build_net(
        "bilstm_classifier",
        input_size=2,
        num_classes=2,
        hidden_size=4,
        num_layers=1,
        pooling="attention",
        patch_len=patch_len,
    ).eval()
    lengths = torch.tensor([7, 3, 1])
    net(torch.randn(3, 7, 2), lengths)
    weights = net.attention_weights
    assert weights.shape == (3, 7)
    assert torch.allclose(weights.sum(1), torch.ones(3))
    padding = torch.arange(7)[None, :] >= lengths[:, None]
    assert (weights[padding] == 0).all() and (weights[~padding] > 0).all()
    assert weights[2, 0] == 1.0
    if patch_len == 2:  # the two steps of a patch share its weight
        assert weights[0, 0] == weights[0, 1] and weights[1, 0] == weights[1, 1]


def test_patches_are_runs_of_steps_entering_the_recurrence_as_one_step():
    """``patch_len`` = 3 over C channels is the same net as ``patch_len`` = 1 over 3 C channels fed each run of
    three steps side by side; a sequence's lengths count its patches, a partial last one included."""
    torch.manual_seed(0)
    options = dict(num_classes=3, hidden_size=4, pooling="mean", head_dropout=0.0, summary_stats=False)
    patched = build_net("bilstm_classifier", input_size=2, patch_len=3, **options).eval()
    stepwise = build_net("bilstm_classifier", input_size=6, patch_len=1, **options).eval()
    stepwise.load_state_dict(patched.state_dict())
    x, lengths = torch.randn(2, 9, 2), torch.tensor([9, 7])
    side_by_side = x.reshape(2, 3, 6).clone()
    side_by_side[1, 2, 2:] = 0.0  # the second sequence's last patch holds its step 6 and two padded steps
    with torch.no_grad():
        assert torch.allclose(patched(x, lengths), stepwise(side_by_side, torch.tensor([3, 3])), atol=1e-6)
    with pytest.raises(ValueError, match="patch_len=0: must be >= 1"):
        build_net("bilstm_classifier", input_size=2, num_classes=3, patch_len=0)


def test_freeze_stops_the_named_parts_from_learning():
    torch.manual_seed(0)
    net = build_net(
        "bilstm_classifier",
        input_size=2,
        num_classes=2,
        hidden_size=4,
        num_layers=2,
        norm="batchnorm",
        freeze=["lstm", "attention"],
    )
    frozen = {k: v.clone() for k, v in net.named_parameters() if k.startswith(("lstm.", "attention."))}
    head = {k: v.clone() for k, v in net.named_parameters() if k.startswith("head.")}
    assert frozen and all(not p.requires_grad for k, p in net.named_parameters() if k in frozen)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)  # even given all parameters
    for _ in range(2):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            net(torch.randn(4, 6, 2), torch.tensor([6, 4, 2, 1])), torch.tensor([0.0, 1.0, 0.0, 1.0])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    params = dict(net.named_parameters())
    assert all(torch.equal(params[k], v) and params[k].grad is None for k, v in frozen.items())
    assert any(not torch.equal(params[k], v) for k, v in head.items())
    with pytest.raises(ValueError, match="unknown part 'encoder'"):
        build_net("bilstm_classifier", input_size=5, num_classes=2, freeze=["encoder"])


def test_the_decision_threshold_sits_in_the_middle_of_the_validation_gap():
    """A separable validation set with saturated probabilities gives the middle of its gap (0.59 between 0.999 and
    0.002), not its lowest positive (0.999): test positives just below the validation ones stay positive."""
    from lstmlab.metrics import best_f1_threshold

    saturated = torch.tensor([0.9995, 0.999, 0.9992, 0.001, 0.0005, 0.002])
    y = torch.tensor([1, 1, 1, 0, 0, 0])
    gap_middle = torch.sigmoid((torch.logit(torch.tensor(0.999)) + torch.logit(torch.tensor(0.002))) / 2)
    assert best_f1_threshold(saturated, y) == pytest.approx(float(gap_middle), abs=1e-4)  # 0.59
    overlapping = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.3, 0.2])
    threshold = best_f1_threshold(overlapping, torch.tensor([1, 1, 0, 1, 0, 0]))
    assert 0.3 < threshold < 0.6  # F1 is best calling the top four positive: the cut lies between 0.6 and 0.3
    assert best_f1_threshold(torch.tensor([0.4, 0.3]), torch.tensor([0, 0])) == 0.5  # no positive: 0.5
