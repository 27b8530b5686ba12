"""Per-channel summary statistics of variable-length sequences: what the summary-statistics baseline sees
(``lstmlab.callbacks.baseline``), and what the classifier's head can see beside its pooled LSTM features
(``model.net.summary_stats=true``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def summary_features(x: Tensor, lengths: Tensor) -> Tensor:
    """[N, T, C] padded sequences -> [N, 5 C + 1]: mean, std, min, max, last per channel, log length."""
    lengths = lengths.to(x.device)
    mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).unsqueeze(-1)
    n = lengths.to(x.dtype)[:, None]
    mean = (x * mask).sum(1) / n
    std = ((((x - mean[:, None]) * mask) ** 2).sum(1) / n).sqrt()
    low = x.masked_fill(~mask, float("inf")).amin(1)
    high = x.masked_fill(~mask, float("-inf")).amax(1)
    # x.shape[0], not len(x): a traced graph (lstmlab-export) then keeps the batch size free
    last = x[torch.arange(x.shape[0], device=x.device), lengths - 1]
    return torch.cat([mean, std, low, high, last, n.log()], dim=1)


def standardisation(features: Tensor) -> tuple[Tensor, Tensor]:
    """Each column's mean and spread over ``features`` [N, F]; a column constant there gets spread 1 (centred, not
    scaled): dividing by its zero spread would blow up any other value it takes later (the log length of a train
    split of equal-length sequences)."""
    std = features.std(0, unbiased=False)
    return features.mean(0), torch.where(std > 1e-6, std, torch.ones_like(std))


class SummaryStatistics(nn.Module):
    """``summary_features`` of a batch, standardised by each feature's mean and spread over the train split
    (``fit``, at training set-up; saved with the net). Fixed statistics, not batch norm: a sequence's values never
    depend on its batch, so DDP ranks that each see part of a batch train as one process does."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.num_features = 5 * input_size + 1
        self.register_buffer("mean", torch.zeros(self.num_features))
        self.register_buffer("std", torch.ones(self.num_features))

    @torch.no_grad()
    def fit(
        self, x: Tensor, lengths: Tensor, normalise: Callable[[Tensor], Tensor] | None = None, chunk: int = 1024
    ) -> None:
        """The train split's statistics: ``x`` [N, T, C], ``lengths`` [N]; ``normalise`` turns ``x`` into what the
        net reads (the task's z-score), applied chunk by chunk so that no second copy of the split is made."""
        normalise = normalise or (lambda part: part)
        features = torch.cat(
            [summary_features(normalise(x[i : i + chunk]), lengths[i : i + chunk]) for i in range(0, len(x), chunk)]
        ).double()
        mean, std = standardisation(features)
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return (summary_features(x, lengths) - self.mean) / self.std
