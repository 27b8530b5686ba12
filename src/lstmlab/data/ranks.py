"""Data parallelism (DDP): every rank trains on its share of each batch.

``data.batch_size`` stays the batch of one optimizer step, whatever the number of processes (as in
lightning-hydra-template): rank r of W takes items r, r + W, ... of every batch, so W ranks together see the
batches one process would, and DDP's averaged gradients are those of the whole batch (exactly so when W divides
the batch). Splitting each batch, not handing whole batches to ranks, also keeps a sample's chunks in order on
one rank, which the stateful models need: their state runs on from chunk to chunk. The datamodules' samplers
(``lstmlab.data.samplers``) do this, so the trainer configs set ``use_distributed_sampler: false``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def share(batch: Sequence[T], rank: int, world: int) -> list[T]:
    """Rank ``rank``'s items of ``batch``. A batch smaller than the world leaves some ranks nothing: they take its
    first item instead, because every rank must step together."""
    if world == 1:
        return list(batch)
    return list(batch[rank::world]) or [batch[0]]
