"""How the figure callbacks draw and publish: matplotlib figures (its object API on the Agg canvas, no pyplot state)
drawn and added to every TensorBoard logger of the trainer on one background thread.

A figure costs a validation epoch about a quarter of a second of drawing and PNG encoding; on the training
thread that is time the next epoch waits for (docs/benchmarks.md, framework overhead). A callback therefore
takes what a figure shows off the model on the training thread (small CPU tensors) and hands a ``draw`` function
to ``publish_figures``; one worker thread draws and writes the figures in the order they came. Every
``FigureCallback`` waits for them at the end of each fit, validate or test (before Lightning closes the
loggers), so an event file holds all of its figures once ``trainer.fit`` or ``trainer.test`` returns, and an
error in drawing surfaces there.

matplotlib is imported when the first figure is drawn, not when a callback module is imported: instantiating the
callbacks of a run stays cheap, and a run that draws no figure never pays for the import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytorch_lightning as pl

Draw = Callable[[], dict[str, Any]]  # -> {tag: matplotlib figure}

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pending: list[Future] = []


def subplots(*args: Any, figsize: tuple[float, float] | None = None, **kwargs: Any):
    """A new figure on the Agg canvas and its axes (``plt.subplots`` arguments). Built without pyplot, whose
    global figure registry is not for threads, and closed by being dropped."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(*args, **kwargs)


def figure_writers(trainer: pl.Trainer) -> list:
    """The experiments of the trainer's loggers that take figures (TensorBoard's ``SummaryWriter``); none on a
    rank > 0, so that a DDP run writes each figure once."""
    if not trainer.is_global_zero:
        return []
    return [lg.experiment for lg in trainer.loggers if hasattr(lg.experiment, "add_figure")]


def publish_figures(trainer: pl.Trainer, draw: Draw) -> None:
    """Queue ``draw`` (run on the figure thread) and the writing of its figures at the trainer's current step.
    ``draw`` must only read what it closes over: CPU copies taken by the caller."""
    global _executor
    writers = figure_writers(trainer)
    if not writers:
        return
    import matplotlib.figure  # noqa: F401  imported here, once, rather than by the worker under the import lock

    step = trainer.global_step
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmlab-figures")
        _pending.append(_executor.submit(_draw_and_write, draw, writers, step))


def _draw_and_write(draw: Draw, writers: list, step: int) -> None:
    for tag, figure in draw().items():
        for writer in writers:
            writer.add_figure(tag, figure, global_step=step, close=False)


def wait_for_figures() -> None:
    """Block until every queued figure is written; raise the first drawing error."""
    with _lock:
        pending = list(_pending)
        _pending.clear()
    errors = [f.exception() for f in pending]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first


class FigureCallback(pl.Callback):
    """A callback that publishes figures: the run's figures are all written when a trainer stage ends."""

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        wait_for_figures()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        try:
            wait_for_figures()
        except Exception:  # the run's own exception is the one to report
            pass
