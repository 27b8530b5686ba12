"""TensorBoard figure of prediction vs target on a fixed validation sample, once per validation epoch."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from lstmlab.callbacks.figure_writer import FigureCallback, figure_writers, publish_figures, subplots


class PredictionFigure(FigureCallback):
    """Plots the net's output and the clean target of every frequency for validation sample ``sample``.

    ``max_steps`` limits the plotted span so the waveforms stay readable.
    """

    def __init__(self, sample: int = 0, max_steps: int = 400, tag: str = "val/prediction") -> None:
        self.sample = sample
        self.max_steps = max_steps
        self.tag = tag

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:  # the sanity check runs before any training: nothing worth a figure yet
            return
        if not figure_writers(trainer):
            return
        batch = trainer.datamodule.splits["val"].whole_sample(self.sample)
        with torch.no_grad():
            pred, _ = pl_module(batch["x"].to(pl_module.device))
        pred, target = pred.cpu()[:, : self.max_steps].clone(), batch["y"][:, : self.max_steps].clone()
        names, title = list(pl_module.target_names), f"validation sample {self.sample}, epoch {trainer.current_epoch}"
        publish_figures(trainer, lambda: {self.tag: draw_prediction(pred, target, names, title)})


def draw_prediction(pred: torch.Tensor, target: torch.Tensor, names: list[str], title: str):
    fig, axes = subplots(len(names), 1, figsize=(9, 1.8 * len(names)), sharex=True, squeeze=False)
    for ax, p, t, name in zip(axes[:, 0], pred, target, names):
        ax.plot(t.numpy(), label="target", color="black", linewidth=1.2)
        ax.plot(p.numpy(), label="prediction", color="tab:orange", linewidth=1.0)
        ax.set_ylabel(name)
    axes[0, 0].legend(loc="upper right", fontsize="small")
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("time step")
    fig.tight_layout()
    return fig
