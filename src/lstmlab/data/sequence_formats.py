"""Sequence-classification files in the field's formats, read by suffix into ``SequenceData`` (HDF5: sequences.py).

``.ts``       UEA/UCR text format, read by aeon's loader (extra ``formats``). ``<Name>_TRAIN.ts`` with a
              ``<Name>_TEST.ts`` beside it: both are read, split 0 (train) / 2 (test). Classes in the order of the
              header's ``@classLabel`` values (aeon lower-cases the file).
``.npz``      ``X`` float [N, T, C] or [N, C, T] (or [N, T]: one channel), ``y`` [N] ints or strings; optional
              ``split`` [N] (0/1/2 or train/val/test), ``channel_names`` [C], ``layout`` ('NTC' or 'NCT'). Without
              ``layout``, T is the axis along which NaN pads the ends of sequences, else the longer axis.
``.csv``      long tables, one row per time step: ``sequence`` (id), ``step`` (orders a sequence's rows),
``.parquet``  ``label``, optional ``split``; every other column is a channel (numbers). Read by pandas (extra).

Unequal lengths: NaN after a sequence's last step is padding (``.ts``/``.npz``); a table's sequence has as many
steps as rows. Classes without an order of their own are sorted (numerically when all labels are numbers).
Refused with one line naming the file: ragged channels (channels of one sequence of unequal length, or a table
cell left empty), a sequence without a label, NaN inside a sequence; ``checked_sequences`` adds the schema's rules
(a class of val/test never seen in train among them).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lstmlab.data.hdf5 import check_finite
from lstmlab.data.sequences import SequenceData, checked_sequences
from lstmlab.errors import ConfigError, DataFileError

INSTALL_FORMATS = 'pip install -e ".[formats]"'
TABLE_COLUMNS = ("sequence", "step", "label")  # and optional "split"; every other column is a channel
SPLIT_NAMES = {"train": 0, "val": 1, "test": 2, "0": 0, "1": 1, "2": 2}
LAYOUTS = ("NTC", "NCT")


def read_sequence_file(path: str | os.PathLike, key: str = "data.path") -> SequenceData:
    """Read a ``.ts``, ``.npz``, ``.csv`` or ``.parquet`` sequence-classification file (by its suffix)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{key}={path}: file not found; pass an existing file or {key}=null to generate data")
    return READERS[path.suffix.lower()](path)


# ---- UEA/UCR .ts --------------------------------------------------------------------------------------
def read_ts(path: Path) -> SequenceData:
    """``path``, and its ``_TEST`` sibling when ``path`` is a ``<Name>_TRAIN.ts`` (official split)."""
    files = [path]
    if path.stem.upper().endswith("_TRAIN"):
        test = path.with_name(path.stem[:-5] + ("TEST" if path.stem[-5:].isupper() else "test") + path.suffix)
        if test.is_file():
            files.append(test)
    parts = [_load_ts(file) for file in files]
    declared = list(dict.fromkeys(value for _, _, values in parts for value in values))
    t_max = max(x.shape[1] for x, _, _ in parts)
    channels = {x.shape[2] for x, _, _ in parts}
    if len(channels) > 1:
        raise DataFileError(
            f"{path}: {files[0].name} and {files[1].name} have {' and '.join(str(x.shape[2]) for x, _, _ in parts)} "
            "channels; train and test files need the same channels"
        )
    x = np.concatenate(
        [np.pad(x, ((0, 0), (0, t_max - x.shape[1]), (0, 0)), constant_values=np.nan) for x, _, _ in parts]
    )
    raw = np.concatenate([y for _, y, _ in parts])
    split = None if len(parts) == 1 else np.repeat(np.array([0, 2], np.uint8), [len(y) for _, y, _ in parts])
    cases = np.concatenate([np.arange(1, len(y) + 1) for _, y, _ in parts])
    origin = np.repeat(np.arange(len(parts)), [len(y) for _, y, _ in parts])

    def describe(i: int) -> str:
        return f"case {cases[i]} of {files[origin[i]].name}"

    sequences, lengths = nan_padded(path, x, describe)
    labels, class_names = encode_labels(path, raw, split, describe, declared)
    names = [f"channel_{c}" for c in range(sequences.shape[2])]
    return checked_sequences(path, sequences, lengths, labels, split, names, class_names)


def _load_ts(file: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One .ts file through aeon: NaN-padded values [N, T, C], labels [N] (strings) and the declared classes."""
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError:
        raise ConfigError(f"{file}: reading .ts files needs aeon, an optional extra: {INSTALL_FORMATS}") from None
    try:
        data, y, meta = load_from_ts_file(str(file), return_meta_data=True)
    except (OSError, ValueError, IndexError) as err:
        raise DataFileError(_ts_problem(file, err)) from None
    if meta.get("targetlabel") or not meta.get("classlabel"):
        raise DataFileError(
            f"{file}: holds no class labels (@classLabel true <classes> is missing or @targetLabel is set); "
            "lstmlab classifies: give every case a class label"
        )
    cases = [np.asarray(case, dtype=np.float64) for case in data]  # each [C, T_i]
    if not cases:
        raise DataFileError(f"{file}: holds no cases after @data")
    x = np.full((len(cases), max(c.shape[1] for c in cases), cases[0].shape[0]), np.nan)
    for i, case in enumerate(cases):
        x[i, : case.shape[1]] = case.T
    return x, np.asarray(y, dtype=object), [str(v) for v in meta.get("class_values") or []]


def _ts_problem(file: Path, err: Exception) -> str:
    ragged = re.search(r"Channel (\d+) in case (\d+).*?Saw (\d+) in the first channel but (\d+)", str(err))
    if ragged:
        channel, case, first, other = ragged.groups()
        return (
            f"{file}: ragged channels: case {case} has {first} values in channel 0 but {other} in channel {channel}; "
            "every channel of a case needs the same number of steps (cut them to one length)"
        )
    text = " ".join(str(err).split())
    return f"{file}: not a readable .ts file ({text}); see README 'Sequence files' for the format"


# ---- NumPy .npz ---------------------------------------------------------------------------------------
def read_npz(path: Path) -> SequenceData:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataFileError(f"{path}: not a readable .npz file ({err})") from None
    with archive:
        try:
            content = {name: archive[name] for name in archive.files}
        except ValueError as err:  # object arrays: not loaded without pickle
            raise DataFileError(
                f"{path}: {err}; store X as a float array (NaN-padded) and y, split, channel_names as plain arrays"
            ) from None
    for name in ("X", "y"):
        if name not in content:
            raise DataFileError(
                f"{path}: array '{name}' is missing (it holds {sorted(content)}); expected X float [N, T, C] or "
                "[N, C, T] and y [N] (see README 'Sequence files')"
            )
    x = content["X"]
    if x.dtype.kind not in "fiub" or x.ndim not in (2, 3):
        raise DataFileError(
            f"{path}: array 'X' has shape {list(x.shape)} and dtype {x.dtype}; expected float [N, T, C]"
        )
    x = x.astype(np.float64)
    x = x[..., None] if x.ndim == 2 else np.swapaxes(x, 1, 2) if _npz_layout(path, x, content) == "NCT" else x
    n = x.shape[0]
    y, split = content["y"], content.get("split")
    for name, array in (("y", y), ("split", split)):
        if array is not None and (array.ndim != 1 or array.shape[0] != n):
            raise DataFileError(f"{path}: array '{name}' has shape {list(array.shape)}; expected [N] with N={n} (X)")
    split = None if split is None else encode_split(path, split.astype(str).tolist(), lambda i: f"X[{i}]")

    def describe(i: int) -> str:
        return f"X[{i}]"

    sequences, lengths = nan_padded(path, x, describe)
    labels, class_names = encode_labels(path, y.astype(object), split, describe)
    names = [str(v) for v in content["channel_names"]] if "channel_names" in content else []
    return checked_sequences(path, sequences, lengths, labels, split, names, class_names)


def _npz_layout(path: Path, x: np.ndarray, content: dict) -> str:
    """'NTC' or 'NCT': the ``layout`` entry, else the axis that NaN pads at the end of a sequence, else the longer."""
    if "layout" in content:
        layout = str(content["layout"]).upper()
        if layout not in LAYOUTS:
            raise DataFileError(f"{path}: array 'layout' holds {layout!r}; expected one of {list(LAYOUTS)}")
        return layout
    missing = np.isnan(x)
    padded = {"NTC": bool(missing[:, -1, :].all(-1).any()), "NCT": bool(missing[:, :, -1].all(-1).any())}
    if padded["NTC"] != padded["NCT"]:
        return "NTC" if padded["NTC"] else "NCT"
    if x.shape[1] != x.shape[2]:
        return "NTC" if x.shape[1] > x.shape[2] else "NCT"
    raise DataFileError(
        f"{path}: X has shape {list(x.shape)}: T and C cannot be told apart; "
        "store layout='NTC' ([N, T, C]) or layout='NCT' ([N, C, T]) in the file"
    )


# ---- long tables: CSV, Parquet --------------------------------------------------------------------------
def read_table(path: Path) -> SequenceData:
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError(
            f"{path}: reading CSV/Parquet tables needs pandas, an optional extra: {INSTALL_FORMATS}"
        ) from None
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype={"sequence": str, "label": str, "split": str}, skipinitialspace=True)
        else:
            frame = pd.read_parquet(path)
    except ImportError as err:
        raise ConfigError(f"{path}: reading Parquet needs pyarrow ({err}): {INSTALL_FORMATS}") from None
    except (OSError, ValueError) as err:
        raise DataFileError(f"{path}: not a readable table ({' '.join(str(err).split())})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
    channels = [c for c in frame.columns if c not in (*TABLE_COLUMNS, "split")]
    if missing or not channels:
        raise DataFileError(
            f"{path}: columns {list(frame.columns)} lack {missing or 'a channel column'}; a long table needs "
            "'sequence', 'step', 'label', one numeric column per channel and optionally 'split' "
            "(README 'Sequence files')"
        )
    if frame["sequence"].isna().any() or frame["step"].isna().any():
        row = int(np.flatnonzero(frame["sequence"].isna() | frame["step"].isna())[0])
        raise DataFileError(f"{path}: row {row + 1} has no 'sequence' or 'step'; every row needs both")
    try:
        values = frame[channels].to_numpy(dtype=np.float64, na_value=np.nan)
        steps = frame["step"].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as err:
        raise DataFileError(f"{path}: 'step' and the channel columns {channels} must hold numbers ({err})") from None
    ids = frame["sequence"].astype(str).str.strip().to_numpy()
    names, seq = np.unique(ids, return_inverse=True)
    numbers = [_number(name) for name in names]
    if None not in numbers:  # numeric ids in numeric order
        rank = np.argsort(np.argsort(numbers, kind="stable"))
        names, seq = names[np.argsort(rank)], rank[seq]
    rows = np.lexsort((steps, seq))  # sequence by sequence, each in step order
    seq, steps, values = seq[rows], steps[rows], values[rows]

    def describe(i: int) -> str:
        return f"sequence {names[i]!r}"

    repeated = np.flatnonzero((seq[1:] == seq[:-1]) & (steps[1:] == steps[:-1]))
    if repeated.size:
        i = repeated[0]
        raise DataFileError(f"{path}: {describe(seq[i])} has two rows at step {steps[i]:g}; one row per step")
    empty = ~np.isfinite(values)
    if empty.any():
        r, c = np.argwhere(empty)[0]
        kind = "ragged channels: " if not empty[r].all() else ""
        raise DataFileError(
            f"{path}: {kind}{describe(seq[r])} has no finite value in channel {channels[c]!r} at step {steps[r]:g} "
            f"(table row {rows[r] + 1}); every row needs a number in every channel"
        )
    lengths = np.bincount(seq).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    sequences = np.zeros((lengths.size, int(lengths.max()), len(channels)), np.float32)
    sequences[seq, np.arange(seq.size) - start[seq]] = values
    split = None
    if "split" in frame.columns:
        split = encode_split(path, _per_sequence(path, _cells(frame["split"])[rows], seq, "split", describe), describe)
    raw = _per_sequence(path, _cells(frame["label"])[rows], seq, "label", describe)
    labels, class_names = encode_labels(path, np.asarray(raw, dtype=object), split, describe)
    return checked_sequences(path, sequences, lengths, labels, split, channels, class_names)


def _cells(column) -> np.ndarray:
    """A column's cells as Python objects, every kind of missing value (NaN, None, pandas' NA) as None."""
    return column.astype(object).where(column.notna(), None).to_numpy(object)


def _per_sequence(path: Path, column: np.ndarray, seq: np.ndarray, name: str, describe: Callable) -> list:
    """The one value a column holds for each sequence (rows left empty take the others' value)."""
    result = []
    for i, part in enumerate(np.split(column, np.flatnonzero(np.diff(seq)) + 1)):
        values = list(dict.fromkeys(v for v in part if not _missing(v)))
        if len(values) > 1:
            raise DataFileError(f"{path}: {describe(i)} has {name} values {values[:3]}; one {name} per sequence")
        result.append(values[0] if values else None)
    return result


# ---- shared by the formats --------------------------------------------------------------------------
def nan_padded(path: Path, x: np.ndarray, describe: Callable[[int], str]) -> tuple[np.ndarray, np.ndarray]:
    """Values [N, T, C] with NaN after each sequence's end -> zero-padded float32 values [N, longest, C] and
    lengths. Channels of one sequence must end at the same step; NaN before that end is a missing value, refused."""
    if 0 in x.shape:
        raise DataFileError(
            f"{path}: the sequences have shape {list(x.shape)}; needs N >= 1 sequences, C >= 1 channels"
        )
    steps = np.arange(1, x.shape[1] + 1)
    ends = np.where(~np.isnan(x), steps[None, :, None], 0).max(axis=1)  # [N, C] last present step
    ragged = np.flatnonzero((ends != ends[:, :1]).any(axis=1))
    if ragged.size:
        i = int(ragged[0])
        raise DataFileError(
            f"{path}: ragged channels: {describe(i)} has channels of {ends[i].tolist()} steps; every channel of a "
            "sequence needs the same length (NaN only pads after the end of all channels)"
        )
    lengths = ends[:, 0].astype(np.int64)
    if (lengths == 0).any():
        raise DataFileError(f"{path}: {describe(int(np.flatnonzero(lengths == 0)[0]))} holds no values (all NaN)")
    valid = steps[None, :] <= lengths[:, None]
    inside = np.where(valid[..., None], x, 0.0)
    bad = np.isnan(inside)
    if bad.any():
        i, t, c = (int(v) for v in np.argwhere(bad)[0])
        raise DataFileError(
            f"{path}: {int(bad.sum())} missing value(s) (NaN) inside sequences, the first in {describe(i)} at step "
            f"{t}, channel {c}; NaN may only pad after a sequence's end: fill or drop them"
        )
    check_finite(inside, f"{path}: the sequences")
    return inside[:, : int(lengths.max())].astype(np.float32), lengths


def encode_labels(
    path: Path,
    raw: np.ndarray,
    split: np.ndarray | None,
    describe: Callable[[int], str],
    declared: list[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Labels (ints or strings) -> class indices 0..K-1 and class names: in ``declared`` order, else sorted
    (numerically when all are numbers). A sequence without a label is refused."""
    names = [None if _missing(v) else _label_name(v) for v in raw]
    unlabelled = [i for i, name in enumerate(names) if name is None]
    if unlabelled:
        i = unlabelled[0]
        where = "" if split is None else f" ({('train', 'val', 'test')[int(split[i])]} split)"
        raise DataFileError(
            f"{path}: {describe(i)}{where} has no label ({len(unlabelled)} of {len(names)} sequences unlabelled); "
            "every sequence needs its class: label it or drop it"
        )
    seen = set(names)
    if declared:
        unknown = sorted(seen - set(declared))
        if unknown:
            i = names.index(unknown[0])
            raise DataFileError(f"{path}: {describe(i)} has label {unknown[0]!r}, not among the declared {declared}")
        classes = [c for c in declared if c in seen]
    else:
        classes = sorted(seen, key=_number) if all(_number(c) is not None for c in seen) else sorted(seen)
    index = {name: k for k, name in enumerate(classes)}
    return np.array([index[name] for name in names], dtype=np.int64), classes


def encode_split(path: Path, raw, describe: Callable[[int], str]) -> np.ndarray:
    codes = [SPLIT_NAMES.get(_label_name(v).lower()) if not _missing(v) else None for v in raw]
    bad = [i for i, code in enumerate(codes) if code is None]
    if bad:
        raise DataFileError(
            f"{path}: {describe(bad[0])} has split {raw[bad[0]]!r}; expected train/val/test or 0/1/2 for every sequence"
        )
    return np.array(codes, dtype=np.uint8)


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return isinstance(value, (str, bytes)) and not value.strip()


def _label_name(value) -> str:
    """The text of a label: bytes decoded, integral floats (a label column with gaps) written as ints."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip()


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


READERS: dict[str, Callable[[Path], SequenceData]] = {
    ".ts": read_ts,
    ".npz": read_npz,
    ".csv": read_table,
    ".parquet": read_table,
    ".pq": read_table,
}
