"""Train / val / test splits: the rules every datamodule follows, written once.

Samples that are independent of each other (signal samples, sequences) are split at random, seeded, or
stratified by class; examples ordered in time (prices, series) are cut into consecutive segments, so that
no later value trains a model that is scored on an earlier one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmlab.errors import ConfigError

SPLITS = ("train", "val", "test")


def check_split_fractions(fractions: Sequence[float] | None) -> None:
    """Three positive fractions summing to 1, else a ``ConfigError`` naming ``data.split_fractions``."""
    values = list(fractions or [])
    if len(values) != 3 or any(f <= 0 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"data.split_fractions={values}: need three positive fractions summing to 1")


def split_sizes(n: int, fractions: Sequence[float]) -> dict[str, int]:
    """How many of ``n`` samples go to each split: val and test get at least one each, train the rest."""
    check_split_fractions(fractions)
    n_val = max(1, int(round(fractions[1] * n)))
    n_test = max(1, int(round(fractions[2] * n)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ConfigError(f"data: {n} samples are too few for split_fractions={list(fractions)}")
    return {"train": n_train, "val": n_val, "test": n_test}


def split_samples(n: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """A seeded permutation of sample indices cut by ``fractions`` (train, val, test); each split non-empty."""
    sizes = split_sizes(n, fractions)
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = sizes["train"], sizes["val"]
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """Each class cut by ``fractions`` (train, val, test) after a seeded shuffle, so the splits keep the class mix."""
    check_split_fractions(fractions)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(round(fractions[1] * idx.size))
        n_test = int(round(fractions[2] * idx.size))
        n_train = idx.size - n_val - n_test
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train : n_train + n_val])
        parts["test"].append(idx[n_train + n_val :])
    split = {name: np.sort(np.concatenate(p)) for name, p in parts.items()}
    for name, idx in split.items():
        if idx.size == 0:
            raise ConfigError(
                f"data: {labels.size} sequences are too few for split_fractions={list(fractions)} "
                f"(the {name} split is empty); add sequences or change data.split_fractions"
            )
    return split


def carve_validation(
    labels: np.ndarray, train: np.ndarray, fractions: Sequence[float], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split the ``train`` members of a file that marks only train and test into train and val, stratified by
    class in the ratio of ``fractions``' first two (train : val): every class with two or more members gives val
    at least one, and keeps at least one in train."""
    check_split_fractions(fractions)
    share = fractions[1] / (fractions[0] + fractions[1])
    rng = np.random.default_rng(seed)
    kept, carved = [], []
    for cls in np.unique(labels[train]):
        members = rng.permutation(train[labels[train] == cls])
        n_val = min(max(1, int(round(share * members.size))), members.size - 1)
        carved.append(members[:n_val])
        kept.append(members[n_val:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(carved))


def split_in_time(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    """Where val and test begin among ``n`` examples in time order (the sizes of ``split_sizes``)."""
    sizes = split_sizes(n, fractions)
    return sizes["train"], sizes["train"] + sizes["val"]


def split_time_axis(num_steps: int, fractions: Sequence[float] | None, dates: Sequence | None, times) -> list[int]:
    """[0, val_begin, test_begin, num_steps]: three consecutive segments of a time axis, cut by ``dates``
    ([val_start, test_start], dates for a date column, numbers for a numeric one; ``times`` the series' stamps,
    a pandas Index) or else by ``fractions`` of the steps."""
    if dates is not None:
        if times is None:
            raise ConfigError("data.split_dates needs time stamps: set data.time_column; or use data.split_fractions")
        if len(dates) != 2:
            raise ConfigError(f"data.split_dates={list(dates)}: give two dates, [val_start, test_start]")
        import pandas as pd

        stamps = pd.Index(times)
        try:
            if isinstance(stamps, pd.DatetimeIndex):
                cuts = [pd.Timestamp(str(d)) for d in dates]
                if stamps.tz is not None:
                    cuts = [c.tz_localize(stamps.tz) if c.tzinfo is None else c.tz_convert(stamps.tz) for c in cuts]
            else:
                cuts = [float(d) for d in dates]
        except (ValueError, TypeError):
            raise ConfigError(
                f"data.split_dates={list(dates)}: not in the time column's format (dates for a date column, numbers "
                "for a numeric one)"
            ) from None
        if not cuts[0] < cuts[1]:
            raise ConfigError(f"data.split_dates={list(dates)}: need val_start < test_start")
        return [0, int(stamps.searchsorted(cuts[0])), int(stamps.searchsorted(cuts[1])), num_steps]
    check_split_fractions(fractions)
    n_train = int(round(fractions[0] * num_steps))
    n_val = int(round(fractions[1] * num_steps))
    return [0, n_train, n_train + n_val, num_steps]
