"""TensorBoard figures of the multi-step forecaster: history + forecast (a fan chart with quantiles) + truth on a
few test windows, and the attention weights (decoder step x input step, one panel per head) of the first."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from lstmlab.callbacks.figure_writer import FigureCallback, figure_writers, publish_figures, subplots


class ForecastFigures(FigureCallback):
    """At the end of testing: ``test/forecast`` and ``test/attention`` figures on ``num_windows`` test windows
    spread evenly over the test split (the first target; seasonal naive dashed for comparison)."""

    def __init__(self, num_windows: int = 4, tag_prefix: str = "test") -> None:
        self.num_windows = num_windows
        self.tag_prefix = tag_prefix

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        if not figure_writers(trainer):
            return
        windows = trainer.datamodule.splits["test"]
        chosen = np.unique(np.linspace(0, len(windows) - 1, self.num_windows).round().astype(int)).tolist()
        batch = windows[chosen]
        with torch.no_grad():
            forecast, attention = pl_module(
                batch["x"].to(pl_module.device), batch["series"].to(pl_module.device), return_attention=True
            )
        naive = pl_module.baselines(batch["x"])["seasonal_naive"]
        name = pl_module.info["target_names"][0]
        history, truth = batch["x"][..., 0].clone(), batch["y"][..., 0].clone()
        forecast, naive, attention = forecast.cpu()[:, :, 0].clone(), naive[..., 0].clone(), attention[0].cpu()

        def draw() -> dict:
            return {
                f"{self.tag_prefix}/forecast": draw_forecasts(history, truth, forecast, naive, chosen, name),
                f"{self.tag_prefix}/attention": draw_attention(attention, f"test window {chosen[0]}"),
            }

        publish_figures(trainer, draw)


def draw_forecasts(history, truth, forecast, naive, windows: list[int], name: str):
    """``forecast`` [B, H] points, or [B, H, Q] quantiles: a fan chart (the outer band shaded, the median drawn)."""
    fig, axes = subplots(len(windows), 1, figsize=(9, 2.0 * len(windows)), squeeze=False)
    past = np.arange(-history.shape[1], 0)
    future = np.arange(truth.shape[1])
    for ax, h, t, f, n, w in zip(axes[:, 0], history, truth, forecast, naive, windows):
        ax.plot(past, h.numpy(), color="gray", linewidth=1.0, label="history")
        ax.plot(future, t.numpy(), color="black", linewidth=1.2, label="truth")
        if f.dim() == 2:
            ax.fill_between(future, f[:, 0].numpy(), f[:, -1].numpy(), color="tab:orange", alpha=0.25, label="band")
            f = f[:, f.shape[1] // 2]
        ax.plot(future, f.numpy(), color="tab:orange", linewidth=1.2, label="forecast")
        ax.plot(future, n.numpy(), color="tab:blue", linewidth=0.8, linestyle="--", label="seasonal naive")
        ax.axvline(-0.5, color="gray", linewidth=0.5)
        ax.set_ylabel(f"{name}\nwindow {w}")
    axes[0, 0].legend(loc="upper left", fontsize="small", ncol=4)
    axes[-1, 0].set_xlabel("step (0 = first forecast step)")
    fig.tight_layout()
    return fig


def draw_attention(weights: torch.Tensor, title: str):
    """``weights`` [horizon, heads, input_len] -> one heat map per head."""
    heads = weights.shape[1]
    fig, axes = subplots(1, heads, figsize=(3.2 * heads, 3.4), squeeze=False)
    for head, ax in enumerate(axes[0]):
        image = ax.imshow(weights[:, head].numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_title(f"head {head}")
        ax.set_xlabel("input step")
        if head == 0:
            ax.set_ylabel("forecast step")
    fig.subplots_adjust(top=0.82, bottom=0.17, left=0.06, right=0.9)
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.02)
    fig.suptitle(f"attention weights, {title}")
    return fig
