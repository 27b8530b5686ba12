"""Batches of variable-length sequences for classification: the casting generator's file or a user's file.

The datamodule splits the file (its ``split`` dataset, else a seeded stratified split), fits the per-channel
z-score on the valid steps of the train split, and counts the train classes. The task copies those statistics
into its checkpoint, so a checkpoint normalises new data the way it was trained. Batches are cut to the longest
sequence they hold; ``bucket_size`` > 1 groups sequences of similar length to cut padding further.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lstmlab.data.cached_file import FileOrGeneratedDataModule
from lstmlab.data.casting import ensure_casting
from lstmlab.data.ranks import RankShare
from lstmlab.data.sequences import SPLITS, SequenceData, load_sequences
from lstmlab.data.signal_datamodule import SignalDataModule, check_split_fractions
from lstmlab.errors import ConfigError, DataFileError


class SequenceBatches(Dataset):
    """Sequences of one split; ``dataset[indices]`` is the batch dict of those sequences."""

    def __init__(self, data: SequenceData, members: np.ndarray) -> None:
        self.members = members
        self.sequences = torch.from_numpy(data.sequences[members])
        self.lengths = torch.from_numpy(data.lengths[members])
        self.labels = torch.from_numpy(data.labels[members])

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, indices: Sequence[int]) -> dict:
        index = torch.as_tensor(indices, dtype=torch.long)
        lengths = self.lengths[index]
        return {
            "x": self.sequences[index, : int(lengths.max())],
            "lengths": lengths,
            "y": self.labels[index],
            "index": index,
        }


class LengthBuckets(Sampler[list[int]]):
    """Batches of ``batch_size`` indices; with ``bucket_size`` > 1, each run of ``bucket_size`` batches is
    sorted by length first, so a batch holds sequences of similar length (batch order still shuffled)."""

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, bucket_size: int = 1, seed: int = 0) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucket_size = bucket_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at the start of every epoch
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        batches = []
        span = self.batch_size * max(1, self.bucket_size)
        for begin in range(0, len(order), span):
            bucket = order[begin : begin + span]
            if self.bucket_size > 1:
                bucket = bucket[np.argsort(self.lengths[bucket], kind="stable")]
            batches += [bucket[i : i + self.batch_size].tolist() for i in range(0, len(bucket), self.batch_size)]
        if self.shuffle and self.bucket_size > 1:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return iter(batches)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


class SequenceClassificationDataModule(FileOrGeneratedDataModule):
    """Reads ``path`` (or generates the casting data into ``data_dir``) and serves train/val/test batches."""

    generate = staticmethod(ensure_casting)

    def __init__(
        self,
        path: str | None = None,
        data_dir: str = "data",
        generator: dict | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = 256,
        bucket_size: int = 8,
        split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.data: SequenceData | None = None
        self.splits: dict[str, SequenceBatches] = {}
        self.channel_mean: np.ndarray | None = None
        self.channel_std: np.ndarray | None = None


    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        data = load_sequences(self.file_path)
        if data.split is not None:
            members = {name: np.flatnonzero(data.split == code) for code, name in enumerate(SPLITS)}
            for name, idx in members.items():
                if idx.size == 0:
                    raise DataFileError(
                        f"{self.file_path}: dataset 'split' marks no sequence as {name} ({SPLITS.index(name)}); "
                        "mark some, or delete 'split' to get a stratified split by data.split_fractions"
                    )
        else:
            members = stratified_split(data.labels, self.hparams.split_fractions, self.hparams.split_seed)
        train_classes = np.unique(data.labels[members["train"]])
        if train_classes.size < 2:
            only = int(train_classes[0])
            raise DataFileError(
                f"{self.file_path}: the train split holds a single class ({only}, {data.class_names[only]!r}); "
                "training a classifier needs at least two classes in train: add sequences of the other classes "
                "or change 'split'"
            )
        self.data = data
        self.splits = {name: SequenceBatches(data, idx) for name, idx in members.items()}
        self.channel_mean, self.channel_std = channel_statistics(data.sequences[members["train"]], data.lengths[members["train"]])

    @property
    def num_channels(self) -> int:
        return self.data.num_channels

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    @property
    def channel_names(self) -> list[str]:
        return self.data.channel_names

    @property
    def train_class_counts(self) -> np.ndarray:
        return np.bincount(self.splits["train"].labels.numpy(), minlength=self.num_classes)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self.splits[split]
        bucket = self.hparams.bucket_size if shuffle else 1
        sampler = RankShare(LengthBuckets(dataset.lengths.numpy(), batch_size, shuffle, bucket, self.hparams.split_seed))
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=self.hparams.num_workers > 0,
        )

    # train: shuffled and bucketed; val/test: in order, eval_batch_size (the signal datamodule's rule)
    train_dataloader = SignalDataModule.train_dataloader
    val_dataloader = SignalDataModule.val_dataloader
    test_dataloader = SignalDataModule.test_dataloader


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


def channel_statistics(sequences: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over the valid steps only (padding ignored); std >= 1e-6."""
    valid = np.arange(sequences.shape[1])[None, :] < lengths[:, None]
    values = sequences[valid].astype(np.float64)  # [valid steps, C]
    return values.mean(0).astype(np.float32), np.maximum(values.std(0), 1e-6).astype(np.float32)
