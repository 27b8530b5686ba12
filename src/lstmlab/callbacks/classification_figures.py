"""TensorBoard figures of a classifier's test run: ROC and PR curves, confusion matrix, attention over time."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torchmetrics import functional as M

from lstmlab.callbacks.figure_writer import FigureCallback, figure_writers, publish_figures, subplots
from lstmlab.metrics import confusion_matrix


class ClassificationFigures(FigureCallback):
    """After testing: ``test/roc_pr`` (one-vs-rest curves per class when K > 2), ``test/confusion_matrix`` and,
    with attention pooling, ``test/attention``: the weights over time of ``attention_sequences`` test sequences
    of each of the first two classes, drawn over their first channel."""

    def __init__(self, attention_sequences: int = 3) -> None:
        self.attention_sequences = attention_sequences

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        outputs = getattr(pl_module, "epoch_outputs", {}).get("test")
        if not figure_writers(trainer) or outputs is None:
            return
        datamodule = trainer.datamodule
        probs, y = outputs["probs"].detach().cpu().clone(), outputs["y"].detach().cpu().clone()
        names, threshold = list(datamodule.class_names), float(pl_module.decision_threshold)
        attention = (
            self._attention_inputs(pl_module, datamodule)
            if getattr(pl_module.net, "pooling", None) == "attention"
            else None
        )

        def draw() -> dict:
            figures = {
                "test/roc_pr": draw_roc_pr(probs, y, names),
                "test/confusion_matrix": draw_confusion(probs, y, names, threshold),
            }
            if attention is not None:
                figures["test/attention"] = draw_attention(*attention)
            return figures

        publish_figures(trainer, draw)

    def _attention_inputs(self, pl_module, datamodule) -> tuple:
        """What ``draw_attention`` shows, taken on the training thread: the chosen sequences, their weights."""
        split = datamodule.splits["test"]
        chosen = []
        for cls in range(min(2, datamodule.num_classes)):
            chosen += torch.nonzero(split.labels == cls).flatten()[: self.attention_sequences].tolist()
        batch = split[chosen]
        with torch.no_grad():
            probs = pl_module.probabilities(pl_module(batch["x"].to(pl_module.device), batch["lengths"]))
        weights = pl_module.net.attention_weights.cpu().clone()
        return batch, weights, probs.cpu(), list(datamodule.class_names), datamodule.channel_names[0]


def draw_roc_pr(probs: torch.Tensor, y: torch.Tensor, class_names: list[str]):
    fig, (roc_ax, pr_ax) = subplots(1, 2, figsize=(9, 4))
    binary = probs.ndim == 1
    for k, name in enumerate(class_names):
        if binary and k == 0:
            continue
        score, target = (probs, y) if binary else (probs[:, k], (y == k).long())
        if target.min() == target.max():  # a class absent from test: no curve
            continue
        fpr, tpr, _ = M.roc(score, target, task="binary")
        precision, recall, _ = M.precision_recall_curve(score, target, task="binary")
        auc = float(M.auroc(score, target, task="binary"))
        ap = float(M.average_precision(score, target, task="binary"))
        roc_ax.plot(fpr.numpy(), tpr.numpy(), label=f"{name} (AUC {auc:.3f})")
        pr_ax.plot(recall.numpy(), precision.numpy(), label=f"{name} (AP {ap:.3f})")
        if binary:
            pr_ax.axhline(float(target.float().mean()), color="grey", linestyle=":", label="prevalence")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall")
    roc_ax.legend(fontsize="small")
    pr_ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def draw_confusion(probs: torch.Tensor, y: torch.Tensor, class_names: list[str], threshold: float):
    k = len(class_names)
    matrix = confusion_matrix(probs, y, k, threshold)
    fig, ax = subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
    ax.imshow(matrix.numpy(), cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center")
    ax.set_xticks(range(k), class_names, rotation=30)
    ax.set_yticks(range(k), class_names)
    title = f"threshold {threshold:.2f} (chosen on val)" if probs.ndim == 1 else "argmax"
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def draw_attention(batch: dict, weights: torch.Tensor, probs: torch.Tensor, class_names: list[str], channel: str):
    n = len(batch["y"])
    fig, axes = subplots(n, 1, figsize=(9, 1.5 * n + 0.5), squeeze=False)
    for ax, x, length, y, w, p in zip(axes[:, 0], batch["x"], batch["lengths"], batch["y"], weights, probs):
        steps = int(length)
        ax.plot(x[:steps, 0].numpy(), color="grey", linewidth=0.8)
        ax.set_ylabel(channel, fontsize="x-small")
        twin = ax.twinx()
        twin.fill_between(range(steps), w[:steps].numpy(), color="tab:red", alpha=0.5)
        score = f"p(defect) {float(p):.2f}" if p.ndim == 0 else f"p {p.numpy().round(2).tolist()}"
        ax.set_title(f"true: {class_names[int(y)]}, {score}", fontsize="small")
    axes[-1, 0].set_xlabel("time step (red: attention weight)")
    fig.tight_layout()
    return fig
