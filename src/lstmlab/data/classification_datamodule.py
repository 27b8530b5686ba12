"""Batches of variable-length sequences for classification: the casting generator's file or a user's file.

The datamodule splits the file (its ``split`` dataset, else a seeded stratified split), fits the per-channel
z-score on the valid steps of the train split, and counts the train classes. The task copies those statistics
into its checkpoint, so a checkpoint normalises new data the way it was trained. Batches are cut to the longest
sequence they hold; ``bucket_size`` > 1 groups sequences of similar length to cut padding further.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lstmlab.data.casting import ensure_casting
from lstmlab.data.datamodule import LstmlabDataModule
from lstmlab.data.samplers import IndexBatches
from lstmlab.data.sequences import SequenceData, load_sequences
from lstmlab.data.splits import SPLITS, carve_validation, stratified_split
from lstmlab.errors import DataFileError


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


class SequenceClassificationDataModule(LstmlabDataModule):
    """Reads ``path`` (or generates the casting data into ``data_dir``) and serves train/val/test batches."""

    generate = staticmethod(ensure_casting)

    # the values come from conf/data/casting.yaml (tests: helpers.build_datamodule("casting", ...))
    def __init__(
        self,
        *,
        path: str | None,
        data_dir: str,
        generator: dict,
        batch_size: int,
        eval_batch_size: int | None,
        bucket_size: int,
        split_fractions: Sequence[float],
        seed: int,
        num_workers: int,
        pin_memory: bool,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.data: SequenceData | None = None
        self.channel_mean: np.ndarray | None = None
        self.channel_std: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        data = load_sequences(self.file_path)
        if data.split is not None:
            members = {name: np.flatnonzero(data.split == code) for code, name in enumerate(SPLITS)}
            if members["val"].size == 0 and members["train"].size > 1:  # official train/test splits: carve val
                members["train"], members["val"] = carve_validation(
                    data.labels, members["train"], self.hparams.split_fractions, self.seed
                )
            for name, idx in members.items():
                if idx.size == 0:
                    raise DataFileError(
                        f"{self.file_path}: dataset 'split' marks no sequence as {name} ({SPLITS.index(name)}); "
                        "mark some, or delete 'split' to get a stratified split by data.split_fractions"
                    )
        else:
            members = stratified_split(data.labels, self.hparams.split_fractions, self.seed)
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
        self.channel_mean, self.channel_std = channel_statistics(
            data.sequences[members["train"]], data.lengths[members["train"]]
        )

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

    def batch_order(self, split: str, batch_size: int, shuffle: bool) -> IndexBatches:
        """Training batches bucketed by length (``bucket_size``), evaluation batches in order."""
        dataset = self.splits[split]
        bucket = self.hparams.bucket_size if shuffle else 1
        return IndexBatches(len(dataset), batch_size, shuffle, self.seed, dataset.lengths.numpy(), bucket)


def channel_statistics(sequences: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over the valid steps only (padding ignored); std >= 1e-6."""
    valid = np.arange(sequences.shape[1])[None, :] < lengths[:, None]
    values = sequences[valid].astype(np.float64)  # [valid steps, C]
    return values.mean(0).astype(np.float32), np.maximum(values.std(0), 1e-6).astype(np.float32)
