"""6. Data path: HDF5 loading and batching vs the training step, with the default ``num_workers``.

* HDF5 load: ``setup()`` of a fresh ``SignalDataModule`` on the cached file (read, split, tensors);
* loader: one epoch of the real ``train_dataloader()`` (batches moved to the device), per batch;
* step: the ``signal_l50`` net's forward, backward and Adam step on the same batches, held in memory.

The goal figure is loader time over step time per batch.
"""

from __future__ import annotations

from benchmarks.harness import Context, Measurement, Row, interleaved, ratio, show, stats, timed, verdict
from benchmarks.workloads import (
    TrainLoop,
    build_net,
    compose_train_config,
    data_overrides,
    net_kwargs,
    signal_datamodule,
    train_batches,
)

KEY = "data_path"
TITLE = "Data path"
GOAL_PCT = 10.0
GOAL = f"loader < {GOAL_PCT:g}% of step time"


def run(ctx: Context) -> Measurement:
    from hydra.utils import instantiate

    cfg = compose_train_config(ctx, ["experiment=signal_l50", *data_overrides(ctx)])
    datamodule = signal_datamodule(cfg)  # generates (or finds) the file before anything is timed
    loader = datamodule.train_dataloader()
    n_batches = len(loader)
    batches = train_batches(datamodule, n_batches, ctx.device)
    steps = sum(b["x"].shape[0] * b["x"].shape[1] for b in batches)
    train = TrainLoop(build_net("sequence", net_kwargs(cfg), ctx.device), float(cfg.model.optimizer.lr))
    train.run(batches[:2])

    def hdf5_load() -> float:
        fresh = instantiate(cfg.data, _convert_="all")
        return timed(lambda: fresh.setup("fit"), ctx) * 1e3

    def loader_epoch() -> float:
        def drain() -> None:
            for batch in datamodule.train_dataloader():
                batch["x"].to(ctx.device), batch["y"].to(ctx.device)

        return timed(drain, ctx) / n_batches * 1e3

    def step_epoch() -> float:
        return timed(lambda: train.run(batches), ctx) / n_batches * 1e3

    samples = interleaved({"hdf5": hdf5_load, "loader": loader_epoch, "step": step_epoch}, ctx.reps(5, 3))
    figures = {
        "hdf5_load_ms": stats(samples["hdf5"], "ms"),
        "loader_ms_per_batch": stats(samples["loader"], "ms"),
        "step_ms_per_batch": stats(samples["step"], "ms"),
        "loader_time_steps_per_s": stats([steps / n_batches / (ms / 1e3) for ms in samples["loader"]], "steps/s"),
        "loader_pct_of_step": stats([100 * r for r in ratio(samples["loader"], samples["step"])], "%"),
    }
    met = figures["loader_pct_of_step"]["median"] < GOAL_PCT
    workers = datamodule.hparams.num_workers
    rows = [
        Row(
            f"6. data path: train loader (num_workers={workers}) vs training step, per batch "
            f"({n_batches} batches of {tuple(batches[0]['x'].shape)})",
            f"HDF5 load {show(figures['hdf5_load_ms'])}; loader {show(figures['loader_ms_per_batch'])} "
            f"({show(figures['loader_time_steps_per_s'])}); step {show(figures['step_ms_per_batch'])}; "
            f"loader/step **{show(figures['loader_pct_of_step'])}**",
            GOAL,
            verdict(met),
        )
    ]
    return Measurement(
        key=KEY,
        number=6,
        title=TITLE,
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        settings={
            "batches": n_batches,
            "num_workers": workers,
            "samples": int(cfg.data.generator.n_samples),
            "repeats": len(samples["step"]),
        },
    )
