"""Signal data: deterministic generation, the HDF5 schema, the cache, atomic writes and validation."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

from helpers import build_datamodule
from lstmlab.data.signals import cached_signals_path, ensure_signals, generate_signals, load_signals, write_signals
from lstmlab.data.splits import split_samples
from lstmlab.errors import ConfigError, DataFileError

SMALL = dict(
    n_samples=6,
    sampling_rate=50.0,
    duration=2.0,
    frequencies=[1.0, 3.0, 5.0, 7.0],
    amplitude_range=[0.5, 1.5],
    noise_std=0.1,
    seed=7,
)


def test_generator_is_deterministic_and_seed_dependent():
    a, b = generate_signals(**SMALL), generate_signals(**SMALL)
    np.testing.assert_array_equal(a.mixed, b.mixed)
    np.testing.assert_array_equal(a.targets, b.targets)
    c = generate_signals(**{**SMALL, "seed": 8})
    assert not np.allclose(a.mixed, c.mixed)


def test_generated_components_are_the_requested_sinusoids():
    data = generate_signals(**SMALL)
    assert data.mixed.shape == (6, 100) and data.targets.shape == (6, 4, 100)
    assert data.mixed.dtype == np.float32
    noise = data.mixed - data.targets.sum(axis=1)
    assert abs(noise.std() - 0.1) < 0.02
    # each component is a pure sinusoid at its frequency: its spectrum peaks there
    spectrum = np.abs(np.fft.rfft(data.targets, axis=-1))
    freqs = np.fft.rfftfreq(100, d=1 / 50.0)
    np.testing.assert_allclose(freqs[spectrum.argmax(-1)], np.broadcast_to([1.0, 3.0, 5.0, 7.0], (6, 4)))
    amplitude = np.abs(data.targets).max(-1)
    assert (amplitude >= 0.45).all() and (amplitude <= 1.5).all()


def test_file_schema_round_trip(tmp_path):
    path = ensure_signals(tmp_path, SMALL)
    with h5py.File(path) as f:
        assert set(f) == {"mixed_signal", "targets", "frequencies"}
        assert f["mixed_signal"].shape == (6, 100) and f["targets"].shape == (6, 4, 100)
        assert f.attrs["sampling_rate"] == 50.0 and f.attrs["seed"] == 7
    loaded = load_signals(path)
    np.testing.assert_array_equal(loaded.mixed, generate_signals(**SMALL).mixed)
    np.testing.assert_array_equal(loaded.frequencies, [1.0, 3.0, 5.0, 7.0])


def test_cache_is_reused_and_keyed_by_parameters(tmp_path):
    path = ensure_signals(tmp_path, SMALL)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = path.stat().st_mtime_ns
    assert ensure_signals(tmp_path, SMALL) == path and path.stat().st_mtime_ns == mtime
    other = ensure_signals(tmp_path, {**SMALL, "noise_std": 0.2})
    assert other != path and hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "signals.h5"

    class Boom:
        mixed = np.zeros((3, 5), np.float32)
        targets = property(lambda self: (_ for _ in ()).throw(RuntimeError("disk full")))

    with pytest.raises(RuntimeError, match="disk full"):
        write_signals(path, Boom())
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_cached_file_is_regenerated(tmp_path):
    path = cached_signals_path(tmp_path, SMALL)
    path.write_bytes(b"not hdf5 at all")
    assert ensure_signals(tmp_path, SMALL) == path
    load_signals(path)


def _user_file(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=value)
    return path


@pytest.mark.parametrize(
    "datasets, message",
    [
        (dict(mixed_signal=np.zeros((4, 10)), frequencies=np.ones(2)), "dataset 'targets' is missing"),
        (
            dict(mixed_signal=np.zeros((4, 10)), targets=np.zeros((4, 2, 9)), frequencies=np.ones(2)),
            "expected [N, K, T]",
        ),
        (
            dict(mixed_signal=np.zeros(10), targets=np.zeros((4, 2, 10)), frequencies=np.ones(2)),
            "expected 2 dimensions",
        ),
        (dict(mixed_signal=np.full((4, 10), np.nan), targets=np.zeros((4, 2, 10)), frequencies=np.ones(2)), "NaN/Inf"),
    ],
)
def test_bad_user_files_are_named(tmp_path, datasets, message):
    path = _user_file(tmp_path / "mine.h5", **datasets)
    with pytest.raises(DataFileError, match=message.replace("[", r"\[")) as err:
        load_signals(path)
    assert str(path) in str(err.value)


def test_missing_file_names_the_key(tmp_path):
    with pytest.raises(DataFileError, match="data.path=.*nope.h5: file not found"):
        load_signals(tmp_path / "nope.h5")


def test_splits_are_disjoint_seeded_and_complete():
    splits = split_samples(50, [0.8, 0.1, 0.1], seed=3)
    assert [len(s) for s in splits.values()] == [40, 5, 5]
    assert sorted(np.concatenate(list(splits.values()))) == list(range(50))
    assert all((a == b).all() for a, b in zip(splits.values(), split_samples(50, [0.8, 0.1, 0.1], 3).values()))
    with pytest.raises(ConfigError, match="split_fractions"):
        split_samples(50, [0.5, 0.6, 0.1], 0)


def test_training_batches_come_chunk_by_chunk_with_inputs_and_targets(tmp_path):
    dm = build_datamodule("signals", data_dir=str(tmp_path), generator=SMALL, chunk_len=30, batch_size=5)
    dm.prepare_data()
    dm.setup("fit")
    data = load_signals(dm.file_path)
    train = dm.splits["train"]
    batches = list(dm.train_dataloader())
    chunks = train.num_chunks
    assert chunks == 4 and len(batches) == 4 * chunks  # 4 train samples x 4 freqs = 16 examples, 4 groups
    assert [b["first"] for b in batches[:chunks]] == [True, False, False, False]
    assert [b["x"].shape[1] for b in batches[:chunks]] == [30, 30, 30, 10]
    # a chunk's inputs are [S(t), onehot(k)] and its target the k-th clean component of the same sample
    b = batches[1]
    for x, y, k in zip(b["x"], b["y"], b["freq_index"]):
        sample = int(np.flatnonzero((data.mixed[:, 30:60] == x[:, 0].numpy()).all(axis=1))[0])
        np.testing.assert_array_equal(x[:, 1:].numpy(), np.tile(np.eye(4)[k], (30, 1)))
        np.testing.assert_array_equal(y.numpy(), data.targets[sample, k, 30:60])
    # every train example appears exactly once per epoch; order changes between epochs
    sampler = dm.train_dataloader().sampler

    def groups():
        return [key[0] for key in sampler if key[1] == 0]

    first_epoch = groups()
    assert sorted(i for g in first_epoch for i in g) == list(range(16))
    sampler.set_epoch(1)
    assert groups() != first_epoch
    evaluation = next(iter(dm.val_dataloader()))
    assert evaluation["x"].shape == (4, 100, 5) and evaluation["first"]


def test_chunk_longer_than_samples_is_refused(tmp_path):
    dm = build_datamodule("signals", data_dir=str(tmp_path), generator=SMALL, chunk_len=500)
    with pytest.raises(ConfigError, match="data.chunk_len=500 is longer than the samples \\(100 steps\\)"):
        dm.setup("fit")
