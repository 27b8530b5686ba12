"""A datamodule's data file: the user's (``data.path``) or one its generator writes, cached by parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytorch_lightning as pl


class FileOrGeneratedDataModule(pl.LightningDataModule):
    """Subclasses set ``generate`` (``ensure_*(data_dir, generator_params) -> Path``) and save ``path``,
    ``data_dir`` and ``generator`` as hyperparameters."""

    generate: Callable[[str, dict], Path]

    @property
    def file_path(self) -> str:
        if self.hparams.path is not None:
            return str(self.hparams.path)
        return str(type(self).generate(self.hparams.data_dir, dict(self.hparams.generator or {})))

    def prepare_data(self) -> None:
        self.file_path  # generates and caches the file once, before any process reads it
