"""``lstmlab-stream ckpt_path=... source=ticks.csv|-``: live forecasts of a price_forecast checkpoint.

Only Hydra is imported before the arguments are parsed; torch comes with ``lstmlab.streaming``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from lstmlab.errors import reported_errors


@hydra.main(version_base="1.3", config_path="pkg://lstmlab.conf", config_name="stream")
def main(cfg: DictConfig) -> int:
    with reported_errors():
        from lstmlab.streaming import run_stream

        return run_stream(cfg)


if __name__ == "__main__":
    main()
