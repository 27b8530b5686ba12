"""LSTM-FCN and MLSTM-FCN (Karim et al. 2017, 2019): a fully convolutional branch and an LSTM branch over the same
input, their features concatenated before the output layer.

FCN branch: ``len(filters)`` blocks of Conv1d ('same' padding) -> BatchNorm1d -> ReLU; with ``squeeze_excite``
(MLSTM-FCN) a squeeze-and-excite block after every block but the last; then global average pooling over time.
LSTM branch: an LSTM whose last step's output goes through dropout (the papers' 0.8). ``lstm_input`` says what it
reads: ``time``, the T steps of C channels (its output after each sequence's last valid step), or ``channels``,
the papers' "dimension shuffle": C steps of ``shuffle_length`` values each, every sequence zero beyond its length
and zero-padded or cropped to ``shuffle_length`` steps (steps past it are not read by this branch).

Long sequences: with ``time_pool`` k > 1 both branches read the input averaged over k steps at a time (windows
from step 0, a sequence's last window over its own steps only), so a 1,460-step sequence costs its 1,460 / k steps.
The task chooses k from the data when the config leaves it null: the smallest that brings the train split's
longest sequence within ``time_pool_target`` steps (``pool_factor``); the checkpoint keeps it. With
``time_pool_phases`` the windows need not start at step 0: in training each sequence starts them at a random one of
the k phases (its first 0 to k - 1 steps dropped), which shows the net k pooled versions of every train sequence,
and in eval the logits are the mean over the k phases (k forward passes), so they do not hang on where the
windows happen to fall.

Padding: batches are zero-padded to their longest sequence, and the task's z-score turns those zeros into
``-mean/std``, so the net sets every step at or past ``lengths`` back to 0 first. The FCN branch keeps it so
after every block (the next convolution then sees exactly the zeros of 'same' padding of the sequence alone),
computes batch-norm statistics, squeeze-and-excite means and the final average over the valid steps only. The
logits of a sequence thus do not depend on its batch's padding (in eval mode; in training, batch norm uses the
batch's statistics, as any batch norm does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from lstmlab.choices import CELLS, LSTM_INPUTS
from lstmlab.nets.cells import init_recurrent, make_recurrent
from lstmlab.nets.summary import SummaryStatistics


def valid_mask(lengths: Tensor, steps: int) -> Tensor:
    """[batch, 1, steps]: 1.0 at the valid steps of each sequence, 0.0 on its padding."""
    t = torch.arange(steps, device=lengths.device)
    return (t[None, :] < lengths[:, None]).unsqueeze(1).float()


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time of ``x`` [batch, channels, T] at the valid steps of ``mask`` [batch, 1, T]: [batch, channels]."""
    return (x * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def pool_factor(longest: int, target: int | None) -> int:
    """The smallest k that brings ``longest`` steps within ``target`` (1 for null: never pool)."""
    return 1 if target is None else max(1, math.ceil(longest / target))


def pool_in_time(x: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``x`` [batch, T, C] averaged over windows of ``k`` steps, the valid ones only: [batch, ceil(T / k), C] and
    each sequence's pooled length (a window of padding alone is 0 and past that length)."""
    mask = valid_mask(lengths, x.shape[1])  # [batch, 1, T]
    sums = F.avg_pool1d(x.transpose(1, 2) * mask, k, k, ceil_mode=True)
    counts = F.avg_pool1d(mask, k, k, ceil_mode=True)
    return (sums / counts.clamp(min=1e-12)).transpose(1, 2), torch.div(lengths + k - 1, k, rounding_mode="floor")


def drop_first_steps(x: Tensor, lengths: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` [batch, T, C] with each sequence's first ``offsets[b]`` steps dropped (it starts at step 0 again; the
    steps moved in at the end are past its new length) and the new lengths. Offsets must be < each length."""
    steps = torch.arange(x.shape[1], device=x.device)
    index = (steps[None, :] + offsets[:, None]).clamp(max=x.shape[1] - 1)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[2])), lengths - offsets


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over [batch, channels, T] whose training statistics come from the valid steps only."""

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        if not self.training:
            return super().forward(x)
        count = mask.sum()
        mean = (x * mask).sum((0, 2)) / count
        var = (((x - mean[None, :, None]) ** 2) * mask).sum((0, 2)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                unbiased = var * count / (count - 1).clamp(min=1.0)
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
        out = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)
        return out * self.weight[None, :, None] + self.bias[None, :, None] if self.affine else out


class SqueezeExcite(nn.Module):
    """Channel gates ``sigmoid(W2 relu(W1 mean_t(x)))`` (Hu et al. 2018), the mean over the valid steps."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        squeezed = max(1, channels // reduction)
        self.gate = nn.Sequential(nn.Linear(channels, squeezed), nn.ReLU(), nn.Linear(squeezed, channels), nn.Sigmoid())

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return x * self.gate(masked_mean(x, mask)).unsqueeze(-1)


class ConvBlock(nn.Module):
    """Conv1d ('same' padding) -> BatchNorm1d over the valid steps -> ReLU, zero again on the padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)  # 'same', the odd step on the right (as Keras)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)
        self.norm = MaskedBatchNorm1d(out_channels)
        nn.init.kaiming_uniform_(self.conv.weight, nonlinearity="relu")  # the papers' he_uniform

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(F.pad(x, self.pad)), mask)) * mask


class LSTMFCN(nn.Module):
    """``x`` [batch, T, input_size] and ``lengths`` [batch] -> logits [batch] (binary) or [batch, K].

    ``squeeze_excite=True`` makes it an MLSTM-FCN. ``num_classes`` = 2 gives one logit, K > 2 gives K.
    ``pack`` (``lstm_input=time``): pack each batch for the LSTM (skips the padded steps), or run the padded
    steps and read the output at each sequence's last valid step (same values; the default, faster on CPU and on
    cuDNN, whose persistent kernel takes padded batches only: ``LSTMClassifier``); null: pack on CUDA only.
    ``summary_stats``: the output layer also reads each sequence's standardised summary statistics, as
    ``LSTMClassifier``'s head can (``lstmlab.nets.summary``), computed on the steps as given, before pooling.
    ``time_pool``: the k of the module docstring; ``time_pool_target`` is the rule the task chose it by (kept
    here so that the checkpoint's net config says it); ``time_pool_phases``: the random phase in training and the
    mean over the k phases in eval (no effect at k = 1).
    """

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        hidden_size: int,
        cell: str,
        lstm_input: str,
        shuffle_length: int,
        lstm_dropout: float,
        filters: Sequence[int],
        kernel_sizes: Sequence[int],
        squeeze_excite: bool,
        se_reduction: int,
        pack: bool | None,
        summary_stats: bool,
        time_pool: int,
        time_pool_target: int | None,
        time_pool_phases: bool,
    ) -> None:
        super().__init__()
        if lstm_input not in LSTM_INPUTS:
            raise ValueError(f"lstm_input={lstm_input!r}: unknown; choose one of {list(LSTM_INPUTS)}")
        if cell not in CELLS:
            raise ValueError(f"cell={cell!r}: unknown; choose one of {list(CELLS)}")
        if len(filters) != len(kernel_sizes) or not filters:
            raise ValueError(
                f"filters={list(filters)} and kernel_sizes={list(kernel_sizes)}: one kernel size per block"
            )
        if time_pool is None or time_pool < 1:  # None: the YAML's null reached the net without the task
            raise ValueError(
                f"time_pool={time_pool!r}: give a factor >= 1 (null is for the task to fill from the data)"
            )
        self.input_size = input_size
        self.num_classes = num_classes
        self.lstm_input = lstm_input
        self.shuffle_length = shuffle_length
        self.pack = pack
        self.time_pool = time_pool
        self.time_pool_phases = time_pool_phases
        widths = [input_size, *filters]
        self.conv_blocks = nn.ModuleList(
            ConvBlock(widths[i], widths[i + 1], kernel_sizes[i]) for i in range(len(filters))
        )
        # MLSTM-FCN: a squeeze-and-excite block after every conv block but the last
        self.squeeze_excite = (
            nn.ModuleList(SqueezeExcite(width, se_reduction) for width in filters[:-1]) if squeeze_excite else None
        )
        steps_width = input_size if lstm_input == "time" else shuffle_length
        self.lstm = make_recurrent(cell, steps_width, hidden_size, num_layers=1, dropout=0.0)
        init_recurrent(self.lstm, "xavier_orthogonal")
        self.lstm_dropout = nn.Dropout(lstm_dropout)
        self.summary = SummaryStatistics(input_size) if summary_stats else None
        statistics = self.summary.num_features if self.summary is not None else 0
        self.head = nn.Linear(filters[-1] + hidden_size + statistics, 1 if num_classes == 2 else num_classes)

    def fcn_features(self, x: Tensor, mask: Tensor) -> Tensor:
        """[batch, C, T] zero on padding -> [batch, filters[-1]]: the average over the valid steps."""
        out = x
        for i, block in enumerate(self.conv_blocks):
            out = block(out, mask)
            if self.squeeze_excite is not None and i < len(self.squeeze_excite):
                out = self.squeeze_excite[i](out, mask)
        return masked_mean(out, mask)

    def lstm_features(self, x: Tensor, lengths: Tensor) -> Tensor:
        """[batch, C, T] zero on padding -> [batch, hidden_size]: the LSTM's output after its last step."""
        if self.lstm_input == "channels":  # C steps of shuffle_length values: the papers' dimension shuffle
            x = F.pad(x, (0, max(0, self.shuffle_length - x.shape[-1])))[..., : self.shuffle_length]
            return self.lstm(x)[0][:, -1]
        x = x.transpose(1, 2)  # [batch, T, C]
        if self.pack if self.pack is not None else x.is_cuda:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            state = self.lstm(packed)[1]
            return (state[0] if isinstance(state, tuple) else state)[-1]  # h_n: after each sequence's last step
        out = self.lstm(x)[0]
        # out.shape[0], not len(out): a traced graph (lstmlab-export) then keeps the batch size free
        return out[torch.arange(out.shape[0], device=out.device), lengths.to(out.device) - 1]

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        lengths = lengths.to(x.device)
        statistics = [self.summary(x, lengths)] if self.summary is not None else []
        k = self.time_pool
        if k == 1:
            return self.classify(x, lengths, statistics)
        if not self.time_pool_phases:
            return self.classify(*pool_in_time(x, lengths, k), statistics)
        if self.training:  # a random phase per sequence; a sequence of n < k steps has n phases
            offsets = torch.minimum(torch.randint(k, lengths.shape, device=x.device), lengths - 1)
            return self.classify(*pool_in_time(*drop_first_steps(x, lengths, offsets), k), statistics)
        phases = [
            self.classify(*pool_in_time(*drop_first_steps(x, lengths, (lengths - 1).clamp(max=phase)), k), statistics)
            for phase in range(k)
        ]
        return torch.stack(phases).mean(0)

    def classify(self, x: Tensor, lengths: Tensor, statistics: list[Tensor]) -> Tensor:
        """The logits of ``x`` [batch, T, C] as the branches read it (pooled or not) and of the summary statistics."""
        mask = valid_mask(lengths, x.shape[1])
        x = x.transpose(1, 2) * mask  # [batch, C, T]; the padding back to 0 (the z-score moved it)
        branches = [self.fcn_features(x, mask), self.lstm_dropout(self.lstm_features(x, lengths))]
        features = torch.cat(branches + statistics, dim=-1)
        logits = self.head(features)
        return logits.squeeze(-1) if self.num_classes == 2 else logits
