"""How the figure callbacks draw and publish: matplotlib on the Agg backend, each figure added to every TensorBoard
logger of the trainer, then closed.

matplotlib is imported when the first figure is drawn, not when a callback module is imported: instantiating the
callbacks of a run stays cheap, and a run that draws no figure never pays for the import.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: training nodes have no display, and an interactive backend would
    try to open windows from the training loop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subplots(*args: Any, **kwargs: Any):
    """A new figure and its axes (``plt.subplots`` arguments) on the Agg backend."""
    return pyplot().subplots(*args, **kwargs)


def figure_writers(trainer: pl.Trainer) -> list:
    """The experiments of the trainer's loggers that take figures (TensorBoard's ``SummaryWriter``); none on a
    rank > 0, so that a DDP run writes each figure once."""
    if not trainer.is_global_zero:
        return []
    return [lg.experiment for lg in trainer.loggers if hasattr(lg.experiment, "add_figure")]


def add_figures(writers: list, figures: dict[str, Any], global_step: int) -> None:
    """Add each ``tag -> figure`` to every writer, then close the figure: pyplot keeps every open figure alive,
    and a long run draws one per epoch."""
    plt = pyplot()
    for tag, figure in figures.items():
        for writer in writers:
            # closed once, below, when every writer has it (add_figure's default close=True closes at once)
            writer.add_figure(tag, figure, global_step=global_step, close=False)
        plt.close(figure)
