"""The sequence-classification HDF5 schema: the casting generator writes it, users' files are read through it.

Schema (one file, N sequences of at most T_max steps, C channels, K classes):
    sequences  float32 [N, T_max, C]  zero-padded after each sequence's length
    lengths    int64   [N]            1 <= length <= T_max
    labels     int64   [N]            0 .. K-1
    split      uint8   [N]            optional: 0 train, 1 val, 2 test (absent: a seeded stratified split)
    attrs: channel_names [C], class_names [K] (optional strings; K = len(class_names), else max(labels) + 1)
Padding is never read: values past a sequence's length may be anything, NaN included.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmlab.data.hdf5 import atomic_h5, check_finite, open_h5, read_array
from lstmlab.errors import DataFileError


@dataclass(frozen=True)
class SequenceData:
    sequences: np.ndarray  # [N, T_max, C] float32, zero past each length
    lengths: np.ndarray  # [N] int64
    labels: np.ndarray  # [N] int64
    split: np.ndarray | None  # [N] uint8 or None
    channel_names: list[str]
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_channels(self) -> int:
        return self.sequences.shape[2]


def write_sequences(path: str | os.PathLike, data: SequenceData, params: dict | None = None) -> None:
    with atomic_h5(path) as f:
        f.create_dataset("sequences", data=data.sequences.astype(np.float32), compression="gzip", compression_opts=1)
        f.create_dataset("lengths", data=data.lengths.astype(np.int64))
        f.create_dataset("labels", data=data.labels.astype(np.int64))
        if data.split is not None:
            f.create_dataset("split", data=data.split.astype(np.uint8))
        f.attrs["channel_names"] = data.channel_names
        f.attrs["class_names"] = data.class_names
        if params is not None:
            f.attrs["generator"] = json.dumps(params, sort_keys=True)


def load_sequences(path: str | os.PathLike, key: str = "data.path") -> SequenceData:
    """Read and validate a sequence-classification file: HDF5 (schema in the module docstring), or by its suffix
    a UEA/UCR ``.ts``, ``.npz``, ``.csv`` or ``.parquet`` file (``sequence_formats``)."""
    from lstmlab.data.sequence_formats import READERS, read_sequence_file

    if Path(path).suffix.lower() in READERS:
        return read_sequence_file(path, key)
    with open_h5(path, key) as f:
        sequences = read_array(f, "sequences", 3, shape_doc="float [N, T_max, C]", finite=False)
        lengths = read_array(f, "lengths", 1, kind="i", shape_doc="int [N]")
        labels = read_array(f, "labels", 1, kind="i", shape_doc="int [N]")
        split = read_array(f, "split", 1, kind="i", shape_doc="uint8 [N]") if "split" in f else None
        channel_names = _names(f.attrs.get("channel_names"))
        class_names = _names(f.attrs.get("class_names"))
    return checked_sequences(path, sequences, lengths, labels, split, channel_names, class_names)


def checked_sequences(
    path,
    sequences: np.ndarray,
    lengths: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray | None,
    channel_names: list[str],
    class_names: list[str],
) -> SequenceData:
    """The schema's rules on arrays read from any format (values past a length are dropped): sizes, ranges,
    finite valid steps, and every class of the file's val/test splits present in its train split."""
    n, t_max, channels = sequences.shape
    for name, array in (("lengths", lengths), ("labels", labels), ("split", split)):
        if array is not None and array.shape[0] != n:
            raise DataFileError(f"{path}: dataset '{name}' has {array.shape[0]} entries; 'sequences' has N={n}")
    if n == 0 or channels == 0:
        raise DataFileError(f"{path}: dataset 'sequences' has shape {list(sequences.shape)}; needs N >= 1 and C >= 1")
    _check_values(path, "lengths", lengths, 1, t_max, f"1 <= length <= T_max = {t_max}")
    k = len(class_names) if class_names else int(labels.max()) + 1
    _check_values(
        path,
        "labels",
        labels,
        0,
        k - 1,
        f"class indices 0..K-1 with K = {k}" + (f" (attribute class_names lists {k} classes)" if class_names else ""),
    )
    if k < 2:
        raise DataFileError(f"{path}: dataset 'labels' holds a single class; classification needs K >= 2 classes")
    if split is not None:
        _check_values(path, "split", split, 0, 2, "0 (train), 1 (val) or 2 (test)")
        _check_classes_in_train(path, labels, split, class_names)
    if channel_names and len(channel_names) != channels:
        raise DataFileError(
            f"{path}: attribute channel_names lists {len(channel_names)} names; 'sequences' has C={channels} channels"
        )
    valid = np.arange(t_max)[None, :] < lengths[:, None]  # [N, T_max]
    check_finite(np.where(valid[..., None], sequences, 0.0), f"{path}: dataset 'sequences'")
    sequences = np.where(valid[..., None], sequences, 0.0).astype(np.float32)
    return SequenceData(
        sequences,
        lengths.astype(np.int64),
        labels.astype(np.int64),
        None if split is None else split.astype(np.uint8),
        channel_names or [f"channel_{c}" for c in range(channels)],
        class_names or [f"class_{c}" for c in range(k)],
    )


def _check_classes_in_train(path, labels: np.ndarray, split: np.ndarray, class_names: list[str]) -> None:
    """A class the file's own split puts into val or test but never into train cannot be learnt; refuse it.
    (A train split of a single class is the datamodule's to refuse, with the same words for every split.)"""
    train = set(np.unique(labels[split == 0]).tolist())
    if len(train) < 2:
        return
    for code, name in ((2, "test"), (1, "val")):
        unseen = sorted(set(np.unique(labels[split == code]).tolist()) - train)
        if unseen:
            k = unseen[0]
            shown = repr(class_names[k]) if class_names else f"class {k}"
            count = int(((split == code) & (labels == k)).sum())
            raise DataFileError(
                f"{path}: {shown} is in the {name} split ({count} sequence{'s' * (count != 1)}) but never in train; "
                "a model cannot learn it: move some of its sequences to train, or drop them"
            )


def _check_values(path, name: str, array: np.ndarray, low: int, high: int, expected: str) -> None:
    bad = np.flatnonzero((array < low) | (array > high))
    if bad.size:
        i = int(bad[0])
        raise DataFileError(
            f"{path}: dataset '{name}' holds {bad.size} values outside [{low}, {high}] "
            f"(first: {name}[{i}] = {int(array[i])}); expected {expected}"
        )


def _names(value) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, (str, bytes)) else list(value)
    return [v.decode() if isinstance(v, bytes) else str(v) for v in items]
