"""``lstmlab-train``: compose a run from conf/ and hand it to the runner.

Only Hydra is imported before the arguments are parsed, so ``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from lstmlab.checkpoints import requested_checkpoint
from lstmlab.errors import reported_errors
from lstmlab.help_listing import list_groups_once
from lstmlab.schemas import register_schemas, validate_config

register_schemas()
list_groups_once()


@hydra.main(version_base="1.3", config_path="pkg://lstmlab.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with reported_errors():
        # an out-of-range value or a checkpoint that is not there fails before torch is imported (a second, not five)
        validate_config(cfg)
        resume_from = requested_checkpoint(cfg, Path(cfg.paths.output_dir))
        from lstmlab.runner import run_training

        return run_training(cfg, resume_from)


if __name__ == "__main__":
    main()
