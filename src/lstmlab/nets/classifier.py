"""Sequence classifier: a (bi)directional LSTM over packed sequences, a pooling over time and an MLP head.

Packing means the recurrence never sees a padded step, and the pooling masks padding out, so the logits of a
sequence do not depend on how much padding its batch adds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmlab.choices import ACTIVATIONS, BASIC_INITS, FREEZE_PARTS, NORMS, POOLINGS
from lstmlab.nets.cells import init_recurrent, make_recurrent
from lstmlab.nets.heads import ACTIVATION_MODULES
from lstmlab.nets.summary import SummaryStatistics


class AttentionPooling(nn.Module):
    """Additive attention over time: ``softmax_t(v . tanh(W h_t))`` over the valid steps only."""

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))

    def forward(self, out: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.score(out).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # exactly 0 on padding
        return torch.bmm(weights.unsqueeze(1), out).squeeze(1), weights


def make_classifier_head(
    in_features: int, out_features: int, hidden_dims: Sequence[int], activation: str, dropout: float, norm: str
) -> nn.Sequential:
    """``[Linear -> norm -> act -> dropout] * len(hidden_dims) -> Linear``."""
    if activation not in ACTIVATION_MODULES:
        raise ValueError(f"activation={activation!r}: unknown; choose one of {sorted(ACTIVATIONS)}")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: unknown; choose one of {list(NORMS)}")
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden_dims:
        layers.append(nn.Linear(width, size))
        if norm == "batchnorm":
            layers.append(nn.BatchNorm1d(size))
        elif norm == "layernorm":
            layers.append(nn.LayerNorm(size))
        layers.append(ACTIVATION_MODULES[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def reverse_valid(x: Tensor, lengths: Tensor) -> Tensor:
    """Each sequence's first ``length`` steps in reverse order, its padding left in place (its own inverse)."""
    t = torch.arange(x.shape[1], device=x.device)
    index = lengths.to(x.device)[:, None] - 1 - t[None, :]
    index = torch.where(index >= 0, index, t[None, :])
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class LSTMClassifier(nn.Module):
    """``x`` [batch, T, input_size] and ``lengths`` [batch] -> logits [batch] (binary) or [batch, K].

    The recurrence is a stack of layers, each a forward LSTM and (``bidirectional``) a backward LSTM that reads
    every sequence reversed within its own length, so both directions start at a real step and padding only
    ever follows the valid steps. ``pack=True`` also packs each call (the padded steps are skipped); ``pack=False``
    (the default) runs them and discards their outputs; ``null`` packs on CUDA only. Outputs at valid steps are
    the same either way. Padding is the faster on both devices: on CPU the packed kernels cost 2-5x more than the
    padding they skip, and on CUDA a packed batch runs cuDNN's standard algorithm where a padded one gets its
    persistent kernel (LSTMs up to 192 units; an H100 ran the default net 10x faster padded, docs/benchmarks.md).

    ``num_classes`` = 2 gives one logit (binary), K > 2 gives K. After each forward, ``attention_weights``
    [batch, T] holds the pooling weights of that batch (``pooling='attention'``; else None). ``freeze`` lists
    parts (``lstm``, ``attention``, ``head``) that stop receiving gradients, for transfer learning.
    ``summary_stats`` hands the head each sequence's per-channel mean, std, min, max and last value and its log
    length (standardised over the train split) beside the pooled features: what the summary-statistics baseline
    sees, so the net does not have to learn them through the recurrence. ``summary_linear`` also maps them straight
    to the logits, beside the head (a wide-and-deep head: the baseline's linear model inside the net, starting at
    zero): on a few dozen sequences the deep head can overfit what a linear read of the statistics already gets.
    ``patch_len`` > 1 feeds the recurrence runs of that many steps side by side, one recurrent step each (as
    PatchTST does for transformers): a long sequence takes fewer, richer recurrent steps; the statistics still
    read every step.
    """

    # The values come from conf/model/bilstm_classifier.yaml (sizes left null there are the data's); tests build
    # the net from it too (tests/helpers.py: build_net).
    def __init__(
        self,
        *,
        input_size: int,
        num_classes: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        dropout: float,
        cell: str,
        pooling: str,
        attention_size: int,
        hidden_dims: Sequence[int],
        activation: str,
        head_dropout: float,
        norm: str,
        init: str,
        freeze: Sequence[str],
        pack: bool | None,
        summary_stats: bool,
        summary_linear: bool,
        patch_len: int,
    ) -> None:
        super().__init__()
        if patch_len < 1:
            raise ValueError(f"patch_len={patch_len}: must be >= 1 (1: every step its own recurrent step)")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}: unknown; choose one of {list(POOLINGS)}")
        if summary_linear and not summary_stats:
            raise ValueError("summary_linear=true maps the summary statistics to the logits: set summary_stats=true")
        if init not in BASIC_INITS:  # every layer starts alike: an oscillator bank is a first layer's job
            raise ValueError(f"init={init!r}: unknown; choose one of {list(BASIC_INITS)}")
        self.input_size = input_size
        self.num_classes = num_classes
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.pack = pack
        self.patch_len = patch_len
        directions = 2 if bidirectional else 1
        features = hidden_size * directions
        self.lstm = nn.ModuleList()
        for layer in range(num_layers):
            width = input_size * patch_len if layer == 0 else features
            # one layer per module: the backward direction reads each sequence reversed within its own length
            self.lstm.append(
                nn.ModuleList(
                    make_recurrent(cell, width, hidden_size, num_layers=1, dropout=0.0) for _ in range(directions)
                )
            )
        for layer in self.lstm:
            for rnn in layer:
                init_recurrent(rnn, init)
        self.between_layers = nn.Dropout(dropout)
        self.attention = AttentionPooling(features, attention_size) if pooling == "attention" else None
        self.summary = SummaryStatistics(input_size) if summary_stats else None
        head_inputs = features + (self.summary.num_features if self.summary is not None else 0)
        outputs = 1 if num_classes == 2 else num_classes
        self.head = make_classifier_head(head_inputs, outputs, hidden_dims, activation, head_dropout, norm)
        self.summary_linear = nn.Linear(self.summary.num_features, outputs) if summary_linear else None
        if self.summary_linear is not None:
            nn.init.zeros_(self.summary_linear.weight)
            nn.init.zeros_(self.summary_linear.bias)
        self.attention_weights: Tensor | None = None
        self.freeze(freeze)

    def freeze(self, parts: Sequence[str]) -> None:
        """Stop gradients to the named parts (their parameters get ``requires_grad=False``)."""
        for part in parts:
            if part not in FREEZE_PARTS:
                raise ValueError(f"freeze={list(parts)}: unknown part {part!r}; choose from {list(FREEZE_PARTS)}")
            module = getattr(self, part)
            for param in module.parameters() if module is not None else ():
                param.requires_grad_(False)

    def _run(self, rnn: nn.RNNBase, x: Tensor, lengths: Tensor) -> Tensor:
        if self.pack if self.pack is not None else x.is_cuda:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            return pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=x.shape[1])[0]
        return rnn(x)[0]

    def sequence_outputs(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Last layer's outputs [batch, T, hidden * directions] (zero on padding) and the valid-step mask."""
        mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]).unsqueeze(-1)
        out = x
        for depth, layer in enumerate(self.lstm):
            if depth > 0:
                out = self.between_layers(out)
            directions = [self._run(layer[0], out, lengths)]
            if self.bidirectional:
                directions.append(reverse_valid(self._run(layer[1], reverse_valid(out, lengths), lengths), lengths))
            out = torch.cat(directions, dim=-1) * mask
        return out, mask.squeeze(-1)

    def encode(self, x: Tensor, lengths: Tensor) -> Tensor:
        """What the head reads: the pooled features [batch, hidden * directions], then (``summary_stats``) the
        sequences' standardised summary statistics [batch, 5 input_size + 1]."""
        pooled = self.pool(x, lengths)
        if self.summary is None:
            return pooled
        return torch.cat([pooled, self.summary(x, lengths)], dim=-1)

    def patches(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The recurrence's input: runs of ``patch_len`` steps side by side [batch, ceil(T / patch_len),
        patch_len * channels] (the steps after a sequence's end zeroed, so padding never enters a patch) and the
        sequences' lengths in patches."""
        if self.patch_len == 1:
            return x, lengths
        batch, steps, channels = x.shape
        valid = torch.arange(steps, device=x.device)[None, :] < lengths.to(x.device)[:, None]
        x = F.pad(x * valid.unsqueeze(-1), (0, 0, 0, (-steps) % self.patch_len))
        patched = x.reshape(batch, x.shape[1] // self.patch_len, self.patch_len * channels)
        return patched, torch.div(lengths + self.patch_len - 1, self.patch_len, rounding_mode="floor")

    def pool(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Pooled features [batch, hidden * directions]."""
        patched, patch_lengths = self.patches(x, lengths)
        out, mask = self.sequence_outputs(patched, patch_lengths)
        self.attention_weights = None
        if self.pooling == "last":  # forward direction after the last valid step, backward after step 0
            # out.shape[0], not len(out): a traced graph (lstmlab-export) then keeps the batch size free
            last = out[torch.arange(out.shape[0], device=out.device), patch_lengths.to(out.device) - 1]
            return torch.cat([last[:, : self.hidden_size], out[:, 0, self.hidden_size :]], dim=-1)
        if self.pooling == "mean":
            return out.sum(1) / patch_lengths.to(out)[:, None]
        pooled, weights = self.attention(out, mask)
        self.attention_weights = weights if self.patch_len == 1 else self.step_weights(weights, lengths, x.shape[1])
        return pooled

    def step_weights(self, patch_weights: Tensor, lengths: Tensor, steps: int) -> Tensor:
        """Attention over patches [batch, patches] as weights per input step [batch, steps]: each patch's weight
        shared evenly by its valid steps, so they still sum to one over the valid steps and padding gets none."""
        t = torch.arange(steps, device=patch_weights.device)
        patch = torch.div(t, self.patch_len, rounding_mode="floor")
        lengths = lengths.to(patch_weights.device)[:, None]
        valid_in_patch = (lengths - patch[None, :] * self.patch_len).clamp(1, self.patch_len)
        return torch.where(t[None, :] < lengths, patch_weights[:, patch] / valid_in_patch, 0.0)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        features = self.encode(x, lengths)
        logits = self.head(features)
        if self.summary_linear is not None:  # the statistics are the encoding's last columns
            logits = logits + self.summary_linear(features[:, -self.summary_linear.in_features :])
        return logits.squeeze(-1) if self.num_classes == 2 else logits
