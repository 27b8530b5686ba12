"""Batches of the signal-extraction task: (sample, frequency) examples cut into time chunks, in order.

An example is a sample paired with one frequency k: its per-step input is ``[S(t), onehot(k)]`` and its
target the clean k-th component. Training batches are chunks of ``chunk_len`` steps of a group of examples,
delivered chunk after chunk, so that the task can carry the recurrent state from one batch to the next
(``first`` marks the chunk that starts the group's samples). Evaluation batches hold whole samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lstmlab.data.datamodule import LstmlabDataModule
from lstmlab.data.samplers import ChunkBatches, ChunkKey
from lstmlab.data.signals import SignalData, ensure_signals, load_signals
from lstmlab.data.splits import split_samples
from lstmlab.errors import ConfigError


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


class SignalDataModule(LstmlabDataModule):
    """Generates (or reads) the signal file, splits samples into train/val/test and serves chunk batches."""

    generate = staticmethod(ensure_signals)

    # the values come from conf/data/signals.yaml (tests: helpers.build_datamodule("signals", ...))
    def __init__(
        self,
        *,
        path: str | None,
        data_dir: str,
        generator: dict,
        chunk_len: int,
        batch_size: int,
        eval_batch_size: int | None,
        split_fractions: Sequence[float],
        seed: int,
        num_workers: int,
        pin_memory: bool,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.data: SignalData | None = None

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
        for name, samples in split_samples(len(self.data.mixed), self.hparams.split_fractions, self.seed).items():
            self.splits[name] = SignalChunks(self.data, samples, self.hparams.chunk_len if name == "train" else None)

    @property
    def frequencies(self) -> np.ndarray:
        return self.data.frequencies

    @property
    def num_inputs(self) -> int:
        return 1 + len(self.data.frequencies)

    def batch_order(self, split: str, batch_size: int, shuffle: bool) -> ChunkBatches:
        dataset = self.splits[split]
        return ChunkBatches(len(dataset), dataset.num_chunks, batch_size, shuffle, self.seed)
