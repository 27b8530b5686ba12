"""What every datamodule shares: its data file, its loaders and where a resumed run picks up its batches.

A datamodule reads ``data.path`` or a file its generator writes (cached by the generator's parameters, made
once in ``prepare_data`` before any process reads it), fills ``splits`` in ``setup`` and says in what order
a split's batches come (``batch_order``); the loaders are built here, one way for all: batches are made by
the datasets themselves (``dataset[batch]``), shared among DDP ranks and ordered by ``(seed, epoch)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from lstmlab.data.samplers import EpochBatches


class LstmlabDataModule(pl.LightningDataModule):
    """Subclasses set ``generate`` (``ensure_*(data_dir, generator_params) -> Path``), save ``path``,
    ``data_dir``, ``generator``, ``batch_size``, ``eval_batch_size``, ``num_workers`` and ``pin_memory`` as
    hyperparameters, fill ``splits`` in ``setup`` and implement ``batch_order``."""

    generate: Callable[[str, dict], Path]

    def __init__(self) -> None:
        super().__init__()
        self.splits: dict[str, Dataset] = {}
        self._resume_point: tuple[int, int] | None = None

    # ---- the data file ----------------------------------------------------------------------------------
    @property
    def file_path(self) -> str:
        if self.hparams.path is not None:
            return str(self.hparams.path)
        return str(type(self).generate(self.hparams.data_dir, dict(self.hparams.generator)))

    def prepare_data(self) -> None:
        _ = self.file_path  # generates and caches the file once, before any process reads it

    # ---- loaders ----------------------------------------------------------------------------------------
    @property
    def seed(self) -> int:
        """``data.seed``: the order of the batches and, where a split is drawn at random, the split."""
        return int(self.hparams.seed)

    def dataset(self, split: str) -> Dataset:
        """What the loader of ``split`` indexes (``dataset[item]`` is a whole batch)."""
        return self.splits[split]

    def batch_order(self, split: str, batch_size: int, shuffle: bool) -> EpochBatches:
        """The sampler of ``split``: the items its dataset gets, batch by batch."""
        raise NotImplementedError

    def loader(self, split: str) -> DataLoader:
        """Training batches reshuffled every epoch; evaluation batches in order, ``eval_batch_size`` each."""
        train = split == "train"
        batch_size = self.hparams.batch_size if train else self.hparams.eval_batch_size or self.hparams.batch_size
        order = self.batch_order(split, batch_size, shuffle=train)
        if train and self._resume_point is not None:
            order.resume_at(*self._resume_point)
            self._resume_point = None
        workers = self.hparams.num_workers
        return DataLoader(
            self.dataset(split),
            sampler=order,
            batch_size=None,
            num_workers=workers,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("test")

    # ---- resuming mid-epoch: the checkpoint says how far the epoch got ----------------------------------
    def state_dict(self) -> dict[str, Any]:
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:  # saved at the end of an epoch: the next one starts afresh
            return {"epoch": trainer.current_epoch + 1, "train_batches_done": 0}
        return {"epoch": trainer.current_epoch, "train_batches_done": done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._resume_point = (int(state_dict["epoch"]), int(state_dict["train_batches_done"]))
