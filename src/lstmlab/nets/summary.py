"""Per-channel summary statistics of variable-length sequences: what the summary-statistics baseline sees
(``lstmlab.callbacks.baseline``), and what the classifier's head can see beside its pooled LSTM features
(``model.net.summary_stats=true``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


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


class SummaryStatistics(nn.Module):
    """``summary_features`` of a batch, batch-normalised (their scales differ: a log length beside z-scores)."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.num_features = 5 * input_size + 1
        self.norm = nn.BatchNorm1d(self.num_features)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        features = summary_features(x, lengths)
        if self.training and features.shape[0] == 1:  # a batch of one has no spread: normalise by the running one
            norm = self.norm
            return F.batch_norm(
                features, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
            )
        return self.norm(features)
