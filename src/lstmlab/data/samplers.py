"""The order in which a datamodule serves its batches: seeded per epoch, shared among DDP ranks, resumable.

Every epoch's order is drawn from ``(seed, epoch)`` alone, so it is the same in every process and after a
restart; a run resumed from a checkpoint saved mid-epoch skips the batches that epoch has already trained on
(``resume_at``) and goes on exactly as the uninterrupted run would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from lstmlab.data.ranks import rank_and_world, share


class EpochBatches(Sampler):
    """Subclasses list one epoch's batches (``epoch_batches``) and may say how a rank takes its share of one."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def epoch_batches(self, rng: np.random.Generator) -> list:
        raise NotImplementedError

    def rank_share(self, batch, rank: int, world: int):
        return share(batch, rank, world)

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at the start of every epoch
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """In epoch ``epoch``, serve only the batches after the first ``batches_done``."""
        self._resume = (epoch, batches_done)

    def __iter__(self) -> Iterator:
        skip = 0
        if self._resume is not None:
            # Lightning makes a resumed run's first iterator before it sets the epoch: take it from the checkpoint
            self.epoch, skip = self._resume
            self._resume = None
        batches = self.epoch_batches(np.random.default_rng((self.seed, self.epoch)))[skip:]
        rank, world = rank_and_world()
        return (self.rank_share(batch, rank, world) for batch in batches)


class IndexBatches(EpochBatches):
    """Batches of ``batch_size`` indices, shuffled when ``shuffle``. With ``lengths`` and ``bucket_size`` > 1,
    each run of ``bucket_size`` batches is sorted by length first, so a batch holds items of similar length
    (the order of the batches is still shuffled)."""

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        lengths: np.ndarray | None = None,
        bucket_size: int = 1,
    ) -> None:
        super().__init__(seed)
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.bucket_size = bucket_size if lengths is not None else 1

    def epoch_batches(self, rng: np.random.Generator) -> list[list[int]]:
        order = rng.permutation(self.num_items) if self.shuffle else np.arange(self.num_items)
        batches = []
        span = self.batch_size * max(1, self.bucket_size)
        for begin in range(0, len(order), span):
            bucket = order[begin : begin + span]
            if self.bucket_size > 1:
                bucket = bucket[np.argsort(self.lengths[bucket], kind="stable")]
            batches += [bucket[i : i + self.batch_size].tolist() for i in range(0, len(bucket), self.batch_size)]
        if self.shuffle and self.bucket_size > 1:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __len__(self) -> int:
        return math.ceil(self.num_items / self.batch_size)


ChunkKey = tuple[tuple[int, ...], int]  # (example indices, chunk index)


class ChunkBatches(EpochBatches):
    """Groups of ``batch_size`` examples (reshuffled every epoch when ``shuffle``), each served chunk by chunk,
    so a stateful task carries its recurrent state from one chunk of a group to the next. Under DDP each rank
    takes its share of every group: a sample's chunks stay on one rank."""

    def __init__(self, num_examples: int, num_chunks: int, batch_size: int, shuffle: bool, seed: int) -> None:
        super().__init__(seed)
        self.num_examples = num_examples
        self.num_chunks = num_chunks
        self.batch_size = batch_size
        self.shuffle = shuffle

    def epoch_batches(self, rng: np.random.Generator) -> list[ChunkKey]:
        order = rng.permutation(self.num_examples) if self.shuffle else np.arange(self.num_examples)
        groups = [tuple(int(i) for i in order[b : b + self.batch_size]) for b in range(0, len(order), self.batch_size)]
        return [(group, chunk) for group in groups for chunk in range(self.num_chunks)]

    def rank_share(self, batch: ChunkKey, rank: int, world: int) -> ChunkKey:
        group, chunk = batch
        return tuple(share(group, rank, world)), chunk

    def __len__(self) -> int:
        return math.ceil(self.num_examples / self.batch_size) * self.num_chunks


class StreamChunks(EpochBatches):
    """The chunks of one stream, in order (``0 .. num_chunks - 1``). A stream cannot be split among DDP ranks
    without cutting its state: every rank trains on every chunk, so W processes train as one does."""

    def __init__(self, num_chunks: int) -> None:
        super().__init__(seed=0)
        self.num_chunks = num_chunks

    def epoch_batches(self, rng: np.random.Generator) -> list[int]:
        return list(range(self.num_chunks))

    def rank_share(self, batch: int, rank: int, world: int) -> int:
        return batch

    def __len__(self) -> int:
        return self.num_chunks
