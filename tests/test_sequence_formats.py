"""Sequence-classification files of the field's formats (.ts through aeon, .npz, CSV / Parquet long tables) read
into the same ``SequenceData`` as the HDF5 schema; their bad input through the real CLI; the per-class report of
metrics.json."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from helpers import TINY_CLASSIFIER, read_metrics, run_cli
from lstmlab.data.sequences import SequenceData, load_sequences, write_sequences
from lstmlab.errors import ConfigError, DataFileError

CLASSES = ["down", "flat", "up"]  # the .ts header declares them in this (sorted) order
CHANNELS = ["channel_0", "channel_1"]


def reference(n_train: int = 6, n_test: int = 3, seed: int = 0) -> SequenceData:
    """Unequal lengths (3..6 steps), two channels, three classes in train and test; values exact in float32."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    lengths = np.array([3 + i % 4 for i in range(n)], np.int64)
    sequences = (rng.integers(-40, 40, size=(n, int(lengths.max()), 2)) / 4).astype(np.float32)
    sequences[np.arange(sequences.shape[1])[None, :] >= lengths[:, None]] = 0.0
    labels = np.array([i % 3 for i in range(n)], np.int64)
    split = np.array([0] * n_train + [2] * n_test, np.uint8)
    return SequenceData(sequences, lengths, labels, split, CHANNELS, CLASSES)


def with_val(data: SequenceData, members: slice) -> SequenceData:
    """``data`` with ``members`` of its train split moved to val (the datamodule is not asked to carve one)."""
    split = data.split.copy()
    split[members] = 1
    return SequenceData(**{**data.__dict__, "split": split})


def nan_padded(data: SequenceData, extra_steps: int = 2) -> np.ndarray:
    """[N, T, C] values with NaN after each length (and ``extra_steps`` all-NaN steps at the end)."""
    x = np.pad(data.sequences.astype(np.float64), ((0, 0), (0, extra_steps), (0, 0)))
    x[np.arange(x.shape[1])[None, :] >= data.lengths[:, None]] = np.nan
    return x


# ---- writers: one small real file per format -------------------------------------------------------------------
def write_ts(path, data: SequenceData, members=None, classes=CLASSES) -> None:
    """The UEA text format written by hand: a header, then one case a line, channels split by ':', the label last."""
    lines = [
        "# written by test_sequence_formats",
        "@problemName Toy",
        "@timeStamps false",
        "@missing false",
        "@univariate false",
        f"@dimensions {data.num_channels}",
        "@equalLength false",
        f"@classLabel true {' '.join(classes)}",
        "@data",
    ]
    for i in range(len(data.labels)) if members is None else members:
        channels = [",".join(f"{v:g}" for v in data.sequences[i, : data.lengths[i], c]) for c in range(2)]
        lines.append(":".join([*channels, data.class_names[data.labels[i]]]))
    path.write_text("\n".join(lines) + "\n")


def write_ts_pair(tmp_path, data: SequenceData, name: str = "Toy"):
    train = tmp_path / f"{name}_TRAIN.ts"
    write_ts(train, data, np.flatnonzero(data.split == 0))
    write_ts(tmp_path / f"{name}_TEST.ts", data, np.flatnonzero(data.split == 2))
    return train


def write_npz(path, data: SequenceData, layout: str = "NTC", declare: bool = False, **changes) -> None:
    x = nan_padded(data)
    content = {
        "X": x if layout == "NTC" else np.swapaxes(x, 1, 2),
        "y": np.array(data.class_names)[data.labels],
        "split": data.split.astype(np.int64),
        **({"layout": np.array(layout)} if declare else {}),
    }
    for name, edit in changes.items():
        content[name] = edit(content[name])
    np.savez(path, **content)


def long_table(data: SequenceData, split_names: bool = True):
    import pandas as pd

    rows = []
    for i in range(len(data.labels)):
        for t in range(data.lengths[i]):
            split = ("train", "val", "test")[data.split[i]] if split_names else int(data.split[i])
            rows.append(
                {
                    "sequence": f"s{i:02d}",
                    "step": 10 * t,
                    **{name: float(data.sequences[i, t, c]) for c, name in enumerate(data.channel_names)},
                    "label": data.class_names[data.labels[i]],
                    "split": split,
                }
            )
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # rows in any order: `step` orders them


def write_csv(path, data: SequenceData, edit=None) -> None:
    table = long_table(data)
    (edit(table) if edit else table).to_csv(path, index=False)


WRITERS = {
    "ts": ("Toy_TRAIN.ts", lambda p, d: write_ts_pair(p.parent, d)),
    "npz_ntc": ("user.npz", lambda p, d: write_npz(p, d, "NTC")),
    "npz_nct": ("user.npz", lambda p, d: write_npz(p, d, "NCT")),
    "npz_nct_declared": ("user.npz", lambda p, d: write_npz(p, d, "NCT", declare=True)),
    "csv": ("user.csv", write_csv),
    "parquet": ("user.parquet", lambda p, d: long_table(d, split_names=False).to_parquet(p, index=False)),
}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_each_format_reads_the_same_sequence_data_as_hdf5(tmp_path, fmt):
    data = reference()
    write_sequences(tmp_path / "user.h5", data)
    expected = load_sequences(tmp_path / "user.h5")
    name, write = WRITERS[fmt]
    write(tmp_path / name, data)
    got = load_sequences(tmp_path / name)
    for field in ("sequences", "lengths", "labels", "split"):
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field), err_msg=field)
    assert got.sequences.dtype == np.float32 and got.sequences.shape == (9, 6, 2)
    assert (got.class_names, got.channel_names) == (CLASSES, CHANNELS)


def test_ts_alone_and_npz_without_split_leave_the_split_to_the_datamodule(tmp_path):
    data = reference()
    write_ts(tmp_path / "Toy_TEST.ts", data)  # a _TEST file alone: no official split
    assert load_sequences(tmp_path / "Toy_TEST.ts").split is None
    write_npz(tmp_path / "user.npz", data, y=lambda y: np.array([1, 5, 10] * 3))
    content = dict(np.load(tmp_path / "user.npz"))
    del content["split"]
    np.savez(tmp_path / "nosplit.npz", **content)
    got = load_sequences(tmp_path / "nosplit.npz")
    assert got.split is None and got.class_names == ["1", "5", "10"]  # numeric labels sorted as numbers


def test_npz_of_equal_t_and_c_needs_a_layout(tmp_path):
    np.savez(tmp_path / "square.npz", X=np.zeros((4, 3, 3)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataFileError, match=r"T and C cannot be told apart; store layout='NTC'"):
        load_sequences(tmp_path / "square.npz")
    np.savez(tmp_path / "square.npz", X=np.zeros((4, 3, 3)), y=np.array([0, 1, 0, 1]), layout="NCT")
    assert load_sequences(tmp_path / "square.npz").sequences.shape == (4, 3, 3)


def test_missing_aeon_names_the_extra(tmp_path, monkeypatch):
    write_ts(tmp_path / "Toy_TEST.ts", reference())
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)  # `from aeon.datasets import ...` raises ImportError
    with pytest.raises(ConfigError, match=r'needs aeon, an optional extra: pip install -e "\.\[formats\]"'):
        load_sequences(tmp_path / "Toy_TEST.ts")


# ---- bad input ----------------------------------------------------------------------------------------------
def _ragged_ts(tmp_path):
    path = tmp_path / "Ragged_TRAIN.ts"
    write_ts(path, reference())
    lines = path.read_text().splitlines()
    lines[-2] = lines[-2].replace(":", ",7:", 1)  # one more value in channel 0 than in channel 1
    path.write_text("\n".join(lines) + "\n")
    return path


def _class_only_in_test(tmp_path):
    data = reference()
    train = tmp_path / "Novel_TRAIN.ts"
    write_ts(train, data, [i for i in np.flatnonzero(data.split == 0) if data.labels[i] != 2])
    write_ts(tmp_path / "Novel_TEST.ts", data, np.flatnonzero(data.split == 2))
    return train


def _ragged_npz(tmp_path):
    path = tmp_path / "ragged.npz"
    # sequence 5 (4 steps): channel 1 ends after 2 steps, channel 0 after 4
    write_npz(path, reference(), X=lambda x: _with(x, (5, slice(2, None), 1), np.nan))
    return path


def _ragged_csv(tmp_path):
    path = tmp_path / "ragged.csv"
    write_csv(
        path,
        reference(),
        edit=lambda t: t.assign(channel_1=t["channel_1"].mask(t["sequence"].eq("s03") & t["step"].eq(10))),
    )
    return path


def _unlabelled_csv(tmp_path):
    path = tmp_path / "unlabelled.csv"
    write_csv(path, reference(), edit=lambda t: t.assign(label=t["label"].mask(t["sequence"].eq("s02"))))
    return path


def _unlabelled_parquet(tmp_path):
    path = tmp_path / "unlabelled.parquet"
    table = long_table(reference())
    table.assign(label=table["label"].mask(table["sequence"].eq("s01"))).to_parquet(path, index=False)
    return path


def _nan_inside_npz(tmp_path):
    path = tmp_path / "holes.npz"
    write_npz(path, reference(), X=lambda x: _with(x, (5, 1, 0), np.nan))
    return path


def _with(x, index, value):
    x = x.copy()
    x[index] = value
    return x


# (id, file maker, what the one line says besides the file's name)
BAD = [
    ("ts_ragged_channels", _ragged_ts, "ragged channels: case 8 has 7 values in channel 0 but 6 in channel 1"),
    ("ts_class_only_in_test", _class_only_in_test, "'up' is in the test split (1 sequence) but never in train"),
    ("npz_ragged_channels", _ragged_npz, "ragged channels: X[5] has channels of [4, 2] steps"),
    ("npz_nan_inside", _nan_inside_npz, "1 missing value(s) (NaN) inside sequences, the first in X[5] at step 1"),
    ("csv_ragged_channels", _ragged_csv, "ragged channels: sequence 's03' has no finite value in channel 'channel_1'"),
    ("csv_label_missing", _unlabelled_csv, "sequence 's02' (train split) has no label"),
    ("parquet_label_missing", _unlabelled_parquet, "sequence 's01' (train split) has no label"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_loader_refuses_bad_files_naming_them(tmp_path, case):
    _, make, expected = case
    path = make(tmp_path)
    with pytest.raises(DataFileError) as err:
        load_sequences(path)
    assert expected in str(err.value) and str(path) in str(err.value)


# one file per kind of bad input through the CLI (the other formats' cases: the loader test above)
CLI_BAD = ["ts_ragged_channels", "ts_class_only_in_test", "csv_label_missing"]


@pytest.mark.parametrize("case", [c for c in BAD if c[0] in CLI_BAD], ids=CLI_BAD)
def test_bad_files_exit_2_through_the_cli_with_one_line(tmp_path, case):
    _, make, expected = case
    path = make(tmp_path)
    proc = run_cli(
        "lstmlab.train",
        *TINY_CLASSIFIER,
        f"data.path={path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0] and str(path) in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "run" / "checkpoints").exists()


# ---- a tiny steel_defect run on an .npz file: the per-class report in metrics.json, eval, channel mismatch ---------
@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("formats")
    write_npz(tmp / "three.npz", with_val(reference(n_train=36, n_test=12, seed=1), slice(30, 36)))  # 30 / 6 / 12
    run = tmp / "run"
    run_cli(
        "lstmlab.train",
        *TINY_CLASSIFIER,
        "trainer.max_epochs=2",
        # validate every epoch (whatever the experiment's budget says), so that best.ckpt and val_report exist
        "trainer.check_val_every_n_epoch=1",
        "++trainer.val_check_interval=1.0",
        f"data.path={tmp / 'three.npz'}",
        f"hydra.run.dir={run}",
        cwd=tmp,
    )
    return run


def test_metrics_json_holds_the_per_class_report(npz_run):
    metrics = read_metrics(npz_run)
    for stage, size in (("test", 12), ("val", 6)):
        report = metrics[f"{stage}_report"]
        assert report["classes"] == CLASSES
        matrix = np.array(report["confusion_matrix"])
        assert matrix.shape == (3, 3) and matrix.sum() == size
        assert report["support"] == matrix.sum(1).tolist() == [size // 3] * 3
        assert len(report["precision"]) == len(report["recall"]) == 3
        recall = np.diag(matrix) / matrix.sum(1)
        np.testing.assert_allclose(report["recall"], recall, atol=1e-6)
    accuracy = np.trace(np.array(metrics["test_report"]["confusion_matrix"])) / 12
    assert accuracy == pytest.approx(metrics["test"]["test/accuracy"], abs=1e-6)


def test_eval_writes_the_report_and_refuses_other_channel_counts(npz_run, tmp_path):
    ckpt = npz_run / "checkpoints" / "best.ckpt"
    run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={ckpt}",
        "extras.print_config=false",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["test_report"] == read_metrics(npz_run)["test_report"]

    data = with_val(reference(), slice(4, 6))
    three = np.concatenate([data.sequences, data.sequences[..., :1]], axis=2)
    path = tmp_path / "three_channels.csv"
    write_csv(path, SequenceData(**{**data.__dict__, "sequences": three, "channel_names": ["a", "b", "c"]}))
    proc = run_cli(
        "lstmlab.evaluate",
        f"ckpt_path={ckpt}",
        f"data_path={path}",
        f"hydra.run.dir={tmp_path / 'bad'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"the data file {path} has 3 channels but the model takes 2" in errors[0]
