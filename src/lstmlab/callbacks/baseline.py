"""The summary-statistics baseline: logistic regression on per-channel statistics, scored on the same test split.

It sees what a non-sequential model sees: each channel's mean, standard deviation, minimum, maximum and last
value (valid steps only) and the log length. Whatever the sequence model scores above it comes from order and
timing. Fitted at test time on the train split of the run's datamodule; logged as ``test/baseline_*``.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from lstmlab.metrics import best_f1_threshold, classification_metrics
from lstmlab.nets.summary import standardisation, summary_features


def fit_logistic_regression(
    features: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    l2: float = 1e-3,
    class_weight: torch.Tensor | None = None,
):
    """Standardised features, multinomial (binary: one logit) logistic regression by L-BFGS; returns a scorer."""
    mean, std = standardisation(features)
    z = (features - mean) / std
    outputs = 1 if num_classes == 2 else num_classes
    weight = torch.zeros(z.shape[1], outputs, requires_grad=True)
    bias = torch.zeros(outputs, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def loss_of(logits: torch.Tensor) -> torch.Tensor:
        if num_classes == 2:
            return F.binary_cross_entropy_with_logits(logits[:, 0], y.float(), pos_weight=class_weight)
        return F.cross_entropy(logits, y, weight=class_weight)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_of(z @ weight + bias) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)

    def probabilities(new: torch.Tensor) -> torch.Tensor:
        logits = ((new - mean) / std) @ weight.detach() + bias.detach()
        return torch.sigmoid(logits[:, 0]) if num_classes == 2 else torch.softmax(logits, -1)

    return probabilities


class SummaryStatsBaseline(pl.Callback):
    """Logs ``test/baseline_auroc``, ``test/baseline_aupr``, ``test/baseline_accuracy``, ``test/baseline_f1``
    (binary: at the F1-best threshold on the val split, as the model's)."""

    def __init__(self, l2: float = 1e-3) -> None:
        self.l2 = l2

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        k = datamodule.num_classes
        splits = {name: datamodule.splits[name] for name in ("train", "val", "test")}
        feats = {name: summary_features(s.sequences, s.lengths) for name, s in splits.items()}
        with torch.inference_mode(False), torch.enable_grad():  # test runs under inference mode
            score = fit_logistic_regression(
                feats["train"], splits["train"].labels, k, self.l2, pl_module.class_weight.detach().cpu()
            )
        threshold = best_f1_threshold(score(feats["val"]), splits["val"].labels) if k == 2 else 0.5
        metrics = classification_metrics(score(feats["test"]), splits["test"].labels, k, threshold, "test")
        for name, value in metrics.items():
            pl_module.log(name.replace("test/", "test/baseline_"), value)
