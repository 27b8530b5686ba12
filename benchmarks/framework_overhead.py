"""2. Framework overhead: epochs of ``lstmlab-train``'s Trainer vs a hand-written PyTorch loop.

The Lightning side is built as ``lstmlab-train`` builds it (``lstmlab.runner``'s helpers on the composed
``signal_l50`` config: the real datamodule, task, callbacks, TensorBoard logger and trainer settings) with
``trainer.max_epochs=3``; the timed part is ``trainer.fit``, start and end included. The hand-written side does
the same forward/backward/clip/Adam work on the same batches of a fresh datamodule, then a validation pass and
the plateau scheduler step, three times; it has no checkpoints, metrics objects, logging, figures or progress
bar: that difference is the overhead measured. Three epochs rather than one, because a run is many epochs: the
fit's fixed start and end (the sanity check, the last figure, the checkpoints) are paid once per run, and a
figure drawn in the background overlaps the next epoch's training. The figure is the hand loop's time over the
Trainer's (1.0 = no overhead); both are also given per epoch.

A second row says where a training step's time goes, from one more fit and hand loop after the timed repeats
(the Trainer's clock is a callback, added to that fit only; the hand loop's timers, about 2 us of a step of 4 ms
or more, run in every repeat): the mean host time per step between steps (fetching the batch and moving
it to the device; for the Trainer also its loop bookkeeping and batch hooks), in the forward pass (with the
zeroing of the gradients), in the backward pass and in the optimizer (clipping and the step). On a GPU these are
host times: the kernels run behind them, so they show the Python work each side queues per step.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from itertools import count

import torch
import torch.nn.functional as F
import torch.utils.deterministic

from benchmarks.harness import Context, Measurement, Row, interleaved, ratio, show, stats, timed, verdict
from benchmarks.workloads import compose_train_config, data_overrides, detach

KEY = "framework_overhead"
TITLE = "Framework overhead"
GOAL_RATIO = 0.9
GOAL = f"Trainer >= {GOAL_RATIO}x hand loop"
EPOCHS = 3


def run(ctx: Context) -> Measurement:
    accelerator = "gpu" if ctx.device.type == "cuda" else "cpu"
    overrides = [
        "experiment=signal_l50",
        *data_overrides(ctx),
        f"trainer.max_epochs={EPOCHS}",
        f"trainer.accelerator={accelerator}",
    ]
    cfg = compose_train_config(ctx, overrides)
    runs = count()
    deterministic = torch.are_deterministic_algorithms_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    try:
        samples = interleaved(
            {
                "lightning": lambda: lightning_epoch(ctx, overrides, next(runs)),
                "hand_loop": lambda: hand_epochs(ctx, cfg, EPOCHS),
            },
            ctx.reps(5, 2),
        )
        trainer_phases, hand_phases = StepPhases(), StepPhases()
        lightning_epoch(ctx, overrides, next(runs), trainer_phases.clock())
        hand_epochs(ctx, cfg, EPOCHS, hand_phases)
    finally:
        torch.use_deterministic_algorithms(deterministic)  # the Trainer's deterministic=true is process-wide
        torch.utils.deterministic.fill_uninitialized_memory = fill  # and so is the run's memory fill
    trainer_ms, hand_ms = trainer_phases.per_step_ms(), hand_phases.per_step_ms()
    figures = {
        "lightning_epoch_s": stats([t / EPOCHS for t in samples["lightning"]], "s"),
        "hand_loop_epoch_s": stats([t / EPOCHS for t in samples["hand_loop"]], "s"),
        "ratio_lightning_vs_hand_loop": stats(ratio(samples["hand_loop"], samples["lightning"]), "x"),
        **{f"trainer_{phase}_ms": stats([ms], "ms") for phase, ms in trainer_ms.items()},
        **{f"hand_loop_{phase}_ms": stats([ms], "ms") for phase, ms in hand_ms.items()},
    }
    met = figures["ratio_lightning_vs_hand_loop"]["median"] >= GOAL_RATIO
    batches = len(_datamodule(cfg).train_dataloader())
    rows = [
        Row(
            f"2. {EPOCHS}-epoch fit, lstmlab-train's Trainer vs hand-written loop ({batches} train batches + "
            "validation per epoch)",
            f"per epoch: Trainer {show(figures['lightning_epoch_s'])}; hand loop {show(figures['hand_loop_epoch_s'])}; "
            f"speed **{show(figures['ratio_lightning_vs_hand_loop'])}**",
            GOAL,
            verdict(met),
        ),
        Row(
            "2. where a training step's host time goes, ms a step (one more fit and hand loop, after the timed ones)",
            "; ".join(
                f"{phase.replace('_', ' ')}: Trainer {trainer_ms[phase]:.2f}, hand loop {hand_ms[phase]:.2f}"
                for phase in StepPhases.PHASES
            ),
        ),
    ]
    return Measurement(
        key=KEY,
        number=2,
        title=TITLE,
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        settings={
            "overrides": overrides,
            "epochs": EPOCHS,
            "train_batches": batches,
            "repeats": len(samples["lightning"]),
        },
    )


def _datamodule(cfg):
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@contextlib.contextmanager
def quiet():
    """No progress bar, info lines or warnings on the benchmark's own output."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class StepPhases:
    """Host time per training step in four phases, summed over the steps: between steps, forward (with the
    zeroing of the gradients), backward, optimizer (clipping and the step)."""

    PHASES = ("between_steps", "forward", "backward", "optimizer")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.PHASES, 0.0)
        self.steps = 0

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds

    def per_step_ms(self) -> dict[str, float]:
        return {name: 1000 * total / max(1, self.steps) for name, total in self.seconds.items()}

    def clock(self):
        """A callback that clocks the Trainer's steps into these phases (validation left out)."""
        import pytorch_lightning as pl

        phases = self

        class Clock(pl.Callback):
            last_end: float | None = None  # when the previous step ended; None at an epoch's first step
            then = 0.0  # when the running phase began

            def lap(self, phase: str) -> None:
                now = time.perf_counter()
                phases.add(phase, now - self.then)
                self.then = now

            def on_train_batch_start(self, *args) -> None:
                self.then = time.perf_counter()
                if self.last_end is not None:
                    phases.add("between_steps", self.then - self.last_end)
                phases.steps += 1

            def on_before_backward(self, *args) -> None:
                self.lap("forward")

            def on_after_backward(self, *args) -> None:
                self.lap("backward")

            def on_train_batch_end(self, *args) -> None:
                self.lap("optimizer")
                self.last_end = self.then

            def on_train_epoch_end(self, *args) -> None:
                self.last_end = None  # the validation between epochs is not a gap between steps

        return Clock()


def lightning_epoch(ctx: Context, overrides: list[str], index: int, *extra_callbacks) -> float:
    """``trainer.fit`` (``trainer.max_epochs`` of ``overrides``), everything built as ``lstmlab.runner.run_training``
    builds it (``extra_callbacks`` appended)."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from lstmlab.runner import apply_memory_fill, build_task, instantiate_all

    cfg = compose_train_config(ctx, overrides, run_dir=str(ctx.work_dir / f"fit-{index}"))
    with quiet():
        apply_memory_fill(cfg)
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.data, _convert_="all")
        task = build_task(cfg.model)
        callbacks = instantiate_all(cfg.get("callbacks")) + list(extra_callbacks)
        loggers = instantiate_all(cfg.get("logger"))
        trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        return timed(lambda: trainer.fit(task, datamodule=datamodule), ctx)


def hand_epochs(ctx: Context, cfg, epochs: int = 1, phases: StepPhases | None = None) -> float:
    """The same data, net, optimizer, clipping and scheduler in a plain loop: ``epochs`` times a train epoch, then
    validation; with ``phases``, each step's phases clocked into it."""
    from hydra.utils import instantiate

    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.data, _convert_="all")
    net = instantiate(cfg.model.net).to(ctx.device)
    optimizer = instantiate(cfg.model.optimizer)(params=net.parameters())
    scheduler = instantiate(cfg.model.scheduler)(optimizer=optimizer) if cfg.model.get("scheduler") else None
    clip = cfg.trainer.get("gradient_clip_val")
    device = ctx.device
    phases = phases if phases is not None else StepPhases()  # the clocks cost ~2 us of a step of 4 ms or more

    def fit() -> None:
        datamodule.prepare_data()
        datamodule.setup("fit")
        for _ in range(epochs):
            epoch()

    def epoch() -> None:
        net.train()
        state = None
        batches = iter(datamodule.train_dataloader())
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            x, y = batch["x"].to(device), batch["y"].to(device)
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            pred, new_state = net(x, None if batch["first"] else state)
            loss = F.mse_loss(pred.squeeze(-1), y)
            t2 = time.perf_counter()
            loss.backward()
            t3 = time.perf_counter()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
            state = detach(new_state)
            for phase, seconds in zip(StepPhases.PHASES, (t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)):
                phases.add(phase, seconds)
            phases.steps += 1
        net.eval()
        total, n = torch.zeros((), device=device), 0
        with torch.no_grad():
            for batch in datamodule.val_dataloader():
                pred, _ = net(batch["x"].to(device))
                total += F.mse_loss(pred.squeeze(-1), batch["y"].to(device), reduction="sum")
                n += batch["y"].numel()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(float(total) / n)
        elif scheduler is not None:
            scheduler.step()

    return timed(fit, ctx)
