"""Classification metrics of probabilities against labels, used by the classifier task and its baselines alike."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import functional as M


def classification_metrics(
    probs: Tensor, y: Tensor, num_classes: int, threshold: float, stage: str
) -> dict[str, Tensor]:
    """AUROC, AUPR (average precision), accuracy and F1 of probabilities ``probs`` against labels ``y``."""
    if num_classes == 2:
        kw: dict[str, Any] = {"task": "binary"}
        hard = dict(kw, threshold=threshold)
    else:
        kw = {"task": "multiclass", "num_classes": num_classes, "average": "macro"}
        hard = kw
    values = {
        "auroc": M.auroc(probs, y, **kw),
        "aupr": M.average_precision(probs, y, **kw),
        "accuracy": M.accuracy(probs, y, **dict(hard, average="micro") if num_classes > 2 else hard),
        "f1": M.f1_score(probs, y, **hard),
    }
    values = {
        f"{stage}/{name}": torch.nan_to_num(value.float(), nan=0.5 if name == "auroc" else 0.0)
        for name, value in values.items()
    }
    if num_classes == 2:
        values[f"{stage}/threshold"] = torch.tensor(threshold)
    return values


def best_f1_threshold(probs: Tensor, y: Tensor) -> float:
    """The probability threshold (predict positive at >= it) that maximises F1 on these labels, in the middle
    (in logit space) of the gap between the last sequence it calls positive and the first it calls negative.

    Not at the edge of that gap: a small validation set is often separated with probabilities near 0 and 1, and
    a threshold at its lowest positive (0.999, say) calls most test positives negative; the middle keeps the
    margin on both sides (0.5 between saturated classes).
    """
    if y.sum() == 0:
        return 0.5
    order = torch.argsort(probs, descending=True)
    ranked, hits = probs[order], y[order].float()
    tp = hits.cumsum(0)
    k = torch.arange(1, len(hits) + 1, device=probs.device)
    f1 = 2 * tp / (k + hits.sum())  # 2 P R / (P + R) with P = tp / k and R = tp / positives
    cut = int(torch.argmax(f1))
    if cut + 1 == len(ranked):  # everything called positive: no gap below
        return float(ranked[cut])
    edges = torch.logit(ranked[cut : cut + 2].double(), eps=1e-12)
    return float(torch.sigmoid(edges.mean()))


def predicted_classes(probs: Tensor, threshold: float) -> Tensor:
    """Hard predictions: binary ``probs`` [N] at ``threshold``, K-class ``probs`` [N, K] by argmax."""
    return (probs >= threshold).long() if probs.ndim == 1 else probs.argmax(-1)


def confusion_matrix(probs: Tensor, y: Tensor, num_classes: int, threshold: float) -> Tensor:
    """[K, K] counts: row the true class, column the predicted one."""
    return M.confusion_matrix(predicted_classes(probs, threshold), y, task="multiclass", num_classes=num_classes)


def class_report(probs: Tensor, y: Tensor, class_names: list[str], threshold: float) -> dict[str, list]:
    """Per-class precision, recall and support, and the confusion matrix (rows true, columns predicted), as lists
    for metrics.json; binary predictions at ``threshold`` as for accuracy and F1."""
    k = len(class_names)
    pred = predicted_classes(probs, threshold)
    per_class: dict[str, Any] = {"task": "multiclass", "num_classes": k, "average": None}
    return {
        "classes": list(class_names),
        "precision": [round(float(v), 6) for v in M.precision(pred, y, **per_class)],
        "recall": [round(float(v), 6) for v in M.recall(pred, y, **per_class)],
        "support": torch.bincount(y, minlength=k).tolist(),
        "confusion_matrix": confusion_matrix(probs, y, k, threshold).tolist(),
    }
