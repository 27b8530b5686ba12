"""Batches of the signal-extraction task: (sample, frequency) examples cut into time chunks, in order.

An example is a sample paired with one frequency k: its per-step input is ``[S(t), onehot(k)]`` and its
target the clean k-th component. Training batches are chunks of ``chunk_len`` steps of a group of examples,
delivered chunk after chunk, so that the task can carry the recurrent state from one batch to the next
(``first`` marks the chunk that starts the group's samples). Evaluation batches hold whole samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lstmlab.data.cached_file import FileOrGeneratedDataModule
from lstmlab.data.ranks import rank_and_world, share
from lstmlab.data.signals import SignalData, ensure_signals, load_signals
from lstmlab.errors import ConfigError

ChunkKey = tuple[tuple[int, ...], int]  # (example indices, chunk index)


class SignalChunks(Dataset):
    """Examples of one split; ``dataset[(examples, chunk)]`` is a batch dict of that chunk."""

    def __init__(self, data: SignalData, samples: np.ndarray, chunk_len: int | None) -> None:
        self.mixed = torch.from_numpy(data.mixed[samples])
        self.targets = torch.from_numpy(data.targets[samples])
        self.num_frequencies = self.targets.shape[1]
        self.steps = self.mixed.shape[1]
        self.chunk_len = chunk_len or self.steps
        self.num_chunks = math.ceil(self.steps / self.chunk_len)
        self.onehot = torch.eye(self.num_frequencies)

    def __len__(self) -> int:
        return self.mixed.shape[0] * self.num_frequencies

    def __getitem__(self, key: ChunkKey) -> dict:
        examples, chunk = key
        index = torch.as_tensor(examples)
        sample, freq = index // self.num_frequencies, index % self.num_frequencies
        start = chunk * self.chunk_len
        stop = min(start + self.chunk_len, self.steps)
        return self.batch(sample, freq, start, stop) | {"first": chunk == 0}

    def batch(self, sample: torch.Tensor, freq: torch.Tensor, start: int = 0, stop: int | None = None) -> dict:
        mixed = self.mixed[sample, start:stop]
        onehot = self.onehot[freq].unsqueeze(1).expand(-1, mixed.shape[1], -1)
        return {
            "x": torch.cat([mixed.unsqueeze(-1), onehot], dim=-1),
            "y": self.targets[sample, freq, start:stop],
            "freq_index": freq,
        }

    def whole_sample(self, position: int = 0) -> dict:
        """Sample ``position`` of this split with every frequency: x [K, T, 1+K], y [K, T]."""
        freq = torch.arange(self.num_frequencies)
        return self.batch(torch.full_like(freq, position), freq)


class ChunkSampler(Sampler[ChunkKey]):
    """Groups of ``batch_size`` examples (reshuffled every epoch when ``shuffle``), each group chunk by chunk.
    Under DDP each rank takes its share of every group (``lstmlab.data.ranks``)."""

    def __init__(self, num_examples: int, num_chunks: int, batch_size: int, shuffle: bool, seed: int = 0) -> None:
        self.num_examples = num_examples
        self.num_chunks = num_chunks
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at the start of every epoch
        self.epoch = epoch

    def __iter__(self) -> Iterator[ChunkKey]:
        order = np.arange(self.num_examples)
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(self.num_examples)
        rank, world = rank_and_world()
        for begin in range(0, self.num_examples, self.batch_size):
            group = tuple(share([int(i) for i in order[begin : begin + self.batch_size]], rank, world))
            for chunk in range(self.num_chunks):
                yield group, chunk

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.batch_size) * self.num_chunks


class SignalDataModule(FileOrGeneratedDataModule):
    """Generates (or reads) the signal file, splits samples into train/val/test and serves chunk batches."""

    generate = staticmethod(ensure_signals)

    def __init__(
        self,
        path: str | None = None,
        data_dir: str = "data",
        generator: dict | None = None,
        chunk_len: int = 50,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.data: SignalData | None = None
        self.splits: dict[str, SignalChunks] = {}


    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        self.data = load_signals(self.file_path)
        steps = self.data.mixed.shape[1]
        if self.hparams.chunk_len > steps:
            raise ConfigError(
                f"data.chunk_len={self.hparams.chunk_len} is longer than the samples ({steps} steps); "
                f"use data.chunk_len <= {steps}"
            )
        for name, samples in split_samples(len(self.data.mixed), self.hparams.split_fractions, self.hparams.split_seed).items():
            self.splits[name] = SignalChunks(self.data, samples, self.hparams.chunk_len if name == "train" else None)

    @property
    def frequencies(self) -> np.ndarray:
        return self.data.frequencies

    @property
    def num_inputs(self) -> int:
        return 1 + len(self.data.frequencies)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self.splits[split]
        sampler = ChunkSampler(len(dataset), dataset.num_chunks, batch_size, shuffle, self.hparams.split_seed)
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.eval_batch_size or self.hparams.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size or self.hparams.batch_size, shuffle=False)


def split_samples(n: int, fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """A seeded permutation of sample indices cut by ``fractions`` (train, val, test); each split non-empty."""
    check_split_fractions(fractions)
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(fractions[1] * n)))
    n_test = max(1, int(round(fractions[2] * n)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ConfigError(f"data: {n} samples are too few for split_fractions={list(fractions)}")
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


def check_split_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"data.split_fractions={list(fractions)}: need three positive fractions summing to 1")
