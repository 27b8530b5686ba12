"""``lstmlab-eval ckpt_path=...``: test a checkpoint with the config saved beside it."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from lstmlab.checkpoints import requested_checkpoints
from lstmlab.errors import reported_errors
from lstmlab.help_listing import list_groups_once
from lstmlab.schemas import register_schemas

register_schemas()
list_groups_once()


@hydra.main(version_base="1.3", config_path="pkg://lstmlab.conf", config_name="eval")
def main(cfg: DictConfig) -> dict:
    with reported_errors():
        ckpts = requested_checkpoints(cfg)  # a missing checkpoint or run config fails before torch is imported
        from lstmlab.runner import run_evaluation

        return run_evaluation(cfg, ckpts)


if __name__ == "__main__":
    main()
