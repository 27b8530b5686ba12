"""HDF5 plumbing shared by every dataset: atomic writes, content hashes and schema checks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np

from lstmlab.errors import DataFileError


def params_hash(params: Mapping) -> str:
    """A short stable hash of generator parameters: the cache key of a generated file."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Write an HDF5 file under a temporary name and rename it into place only once complete.

    A killed writer leaves at most a ``*.tmp-<pid>`` file, never a partial file under the final name; two
    writers of the same file each rename a complete file, so the survivor is valid either way.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_file(path: Path, read: Callable[[Path], object], write: Callable[[Path], None]) -> Path:
    """``path`` once it holds a file that ``read`` accepts: a missing or unreadable one (``read`` raises
    ``DataFileError``) is written first by ``write``, in place and atomically (``atomic_h5``)."""
    if path.exists():
        try:
            read(path)
            return path
        except DataFileError:
            pass  # an unreadable leftover, e.g. of a killed writer: write it anew
    write(path)
    return path


def open_h5(path: str | os.PathLike, key: str) -> h5py.File:
    """Open a user's HDF5 file for reading, with an error naming the config ``key`` that pointed to it."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{key}={path}: file not found; pass an existing HDF5 file or {key}=null to generate data")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataFileError(f"{key}={path}: not a readable HDF5 file ({err})") from None


def read_array(
    f: h5py.File, name: str, ndim: int, kind: str = "f", shape_doc: str = "", finite: bool = True
) -> np.ndarray:
    """Read dataset ``name`` and check its rank, dtype kind ('f' float, 'i' integer) and (``finite``) finiteness."""
    where = f"{f.filename}: dataset '{name}'"
    if name not in f:
        raise DataFileError(f"{where} is missing; expected {shape_doc} (see README, 'HDF5 schemas')")
    array = f[name][()]
    if array.ndim != ndim:
        raise DataFileError(f"{where} has shape {list(array.shape)}; expected {ndim} dimensions {shape_doc}")
    if kind == "f" and array.dtype.kind not in "fiu":
        raise DataFileError(f"{where} has dtype {array.dtype}; expected a float array {shape_doc}")
    if kind == "i" and array.dtype.kind not in "iu":
        raise DataFileError(f"{where} has dtype {array.dtype}; expected an integer array {shape_doc}")
    if finite and kind == "f":
        check_finite(array, where)
    return array


def check_finite(array: np.ndarray, where: str) -> None:
    """Raise naming how many values are NaN/Inf and the index of the first one."""
    bad = ~np.isfinite(array)
    if bad.any():
        first = [int(i) for i in np.argwhere(bad)[0]]
        raise DataFileError(
            f"{where} holds {int(bad.sum())} NaN/Inf values (first at index {first}); clean or drop those samples"
        )
