"""Encoder-decoder LSTM with multi-head attention: ``input_len`` observed steps in, ``horizon`` steps out.

The encoder (stacked, uni- or bidirectional) reads the window; its last layer's final state is bridged to
every decoder layer's state. The decoder (stacked) takes the previous value of the targets at each step; its
top output is the attention query over the encoder outputs (keys and values), and the context is combined
with that output before the projection to the targets. The encoder outputs are projected to keys and values once
per window, not at every decoder step (what calling ``nn.MultiheadAttention`` step by step would do: for a context
of 104 steps and a horizon of 13, most of a training step's time); the parameters stay ``nn.MultiheadAttention``'s.
The targets are the first ``output_size`` input channels, so the decoder starts from the last observed value. With
``num_quantiles`` Q > 1 the projection gives Q values per target (levels in increasing order) and the decoder feeds
back the middle one (the median).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lstmlab.choices import BASIC_INITS
from lstmlab.errors import ConfigError
from lstmlab.nets.cells import init_recurrent, make_recurrent


def check_heads(num_heads: int, attention_dim: int) -> None:
    """Multi-head attention splits the attention dimension evenly between the heads."""
    if num_heads < 1 or attention_dim % num_heads:
        divisors = [d for d in range(1, min(attention_dim, 16) + 1) if attention_dim % d == 0]
        raise ConfigError(
            f"model.net.num_heads={num_heads} does not divide the attention dimension "
            f"model.net.hidden_size={attention_dim}; use num_heads in {divisors} or change hidden_size"
        )


class AttentionMemory(NamedTuple):
    """The encoder outputs as the attention's keys and values, split into heads: [B, heads, L, head_dim] each."""

    keys: Tensor
    values: Tensor


def input_projections(attention: nn.MultiheadAttention) -> list[tuple[Tensor, Tensor | None]]:
    """``attention``'s query, key and value projections as (weight, bias) pairs."""
    e = attention.embed_dim
    if attention._qkv_same_embed_dim:
        weights = [attention.in_proj_weight[i * e : (i + 1) * e] for i in range(3)]
    else:
        weights = [attention.q_proj_weight, attention.k_proj_weight, attention.v_proj_weight]
    bias = attention.in_proj_bias
    return [(w, None if bias is None else bias[i * e : (i + 1) * e]) for i, w in enumerate(weights)]


class Seq2SeqAttention(nn.Module):
    """``x`` [batch, input_len, input_size] -> forecast [batch, horizon, output_size] (+ a quantile axis when
    ``num_quantiles`` > 1) (+ attention weights)."""

    # The values come from conf/model/seq2seq_attention.yaml (model.net; the sizes left null there are the data's);
    # tests build the net from it too (tests/helpers.py: build_net).
    def __init__(
        self,
        *,
        input_size: int,
        output_size: int,
        num_quantiles: int,
        hidden_size: int,
        num_heads: int,
        encoder_hidden_size: int | None,
        encoder_layers: int,
        decoder_layers: int,
        bidirectional: bool,
        dropout: float,
        attention_dropout: float,
        layer_norm: bool,
        init: str,
    ) -> None:
        super().__init__()
        check_heads(num_heads, hidden_size)
        if init not in BASIC_INITS:  # encoder and decoder layers start alike: an oscillator bank is a first layer's job
            raise ValueError(f"init={init!r}: unknown; choose one of {list(BASIC_INITS)}")
        if output_size > input_size:
            raise ConfigError(
                f"model.net.output_size={output_size} exceeds input_size={input_size}: targets are input channels too"
            )
        if num_quantiles < 1:
            raise ConfigError(f"model.net.num_quantiles={num_quantiles} must be >= 1")
        self.input_size = input_size
        self.output_size = output_size
        self.num_quantiles = num_quantiles
        self.num_heads = num_heads
        encoder_hidden = encoder_hidden_size or hidden_size
        directions = 2 if bidirectional else 1
        encoded = directions * encoder_hidden
        self.decoder_layers = decoder_layers
        self.hidden_size = hidden_size
        self.encoder = make_recurrent(
            "lstm", input_size, encoder_hidden, num_layers=encoder_layers, dropout=dropout, bidirectional=bidirectional
        )
        self.decoder = make_recurrent("lstm", output_size, hidden_size, num_layers=decoder_layers, dropout=dropout)
        for rnn in (self.encoder, self.decoder):
            init_recurrent(rnn, init)
        self.bridge_h = nn.Linear(encoded, decoder_layers * hidden_size)
        self.bridge_c = nn.Linear(encoded, decoder_layers * hidden_size)
        self.memory_norm = nn.LayerNorm(encoded) if layer_norm else nn.Identity()
        self.attention = nn.MultiheadAttention(
            hidden_size, num_heads, dropout=attention_dropout, kdim=encoded, vdim=encoded, batch_first=True
        )
        self.combine = nn.Linear(2 * hidden_size, hidden_size)
        self.combined_norm = nn.LayerNorm(hidden_size) if layer_norm else nn.Identity()
        self.project = nn.Linear(hidden_size, output_size * num_quantiles)

    # ---- pieces ---------------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[AttentionMemory, tuple[Tensor, Tensor]]:
        """The attention memory (the encoder outputs [B, L, D_enc] projected to keys and values) and the bridged
        decoder state."""
        memory, (h_n, c_n) = self.encoder(x)
        directions = 2 if self.encoder.bidirectional else 1

        def top_layer(state: Tensor) -> Tensor:  # [layers * dirs, B, E] -> [B, dirs * E]
            state = state.view(self.encoder.num_layers, directions, state.shape[1], state.shape[2])[-1]
            return state.permute(1, 0, 2).reshape(state.shape[1], -1)

        def to_decoder(linear: nn.Linear, state: Tensor) -> Tensor:
            out = linear(top_layer(state)).view(-1, self.decoder_layers, self.hidden_size)
            return out.permute(1, 0, 2).contiguous()

        state = (torch.tanh(to_decoder(self.bridge_h, h_n)), to_decoder(self.bridge_c, c_n))
        memory = self.memory_norm(memory)
        _, key, value = input_projections(self.attention)
        keys, values = (self.split_heads(F.linear(memory, *projection)) for projection in (key, value))
        return AttentionMemory(keys, values), state

    def split_heads(self, x: Tensor) -> Tensor:  # [B, n, heads * head_dim] -> [B, heads, n, head_dim]
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.attention.head_dim).transpose(1, 2)

    def attend(self, query: Tensor, memory: AttentionMemory, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """``nn.MultiheadAttention``'s output for ``query`` [B, n, E] over ``memory``, and (``need_weights``) its
        per-head weights [B, heads, n, L] (after attention dropout, as it returns them)."""
        (weight, bias), _, _ = input_projections(self.attention)
        q = self.split_heads(F.linear(query, weight, bias))
        dropout = self.attention.dropout if self.training else 0.0
        if need_weights:
            weights = torch.softmax(q @ memory.keys.transpose(-2, -1) / math.sqrt(self.attention.head_dim), dim=-1)
            weights = F.dropout(weights, dropout) if dropout > 0 else weights
            context = weights @ memory.values
        else:
            weights = None
            context = F.scaled_dot_product_attention(q, memory.keys, memory.values, dropout_p=dropout)
        context = context.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)
        return self.attention.out_proj(context), weights

    def decode(self, inputs: Tensor, memory: AttentionMemory, state, need_weights: bool):
        """Decoder steps for ``inputs`` [B, n, K] -> predictions [B, n, K] (or [B, n, K, Q]),
        weights [B, n, heads, L], state."""
        out, state = self.decoder(inputs, state)
        context, weights = self.attend(out, memory, need_weights)
        combined = self.combined_norm(torch.tanh(self.combine(torch.cat([out, context], dim=-1))))
        weights = weights.permute(0, 2, 1, 3) if need_weights else None
        out = self.project(combined)
        if self.num_quantiles > 1:
            out = out.view(*out.shape[:-1], self.output_size, self.num_quantiles)
        return out, weights, state

    def point(self, prediction: Tensor) -> Tensor:
        """The value fed back to the next decoder step: the prediction, or its middle quantile."""
        return prediction[..., self.num_quantiles // 2] if self.num_quantiles > 1 else prediction

    # ---- forecasting ----------------------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        horizon: int,
        target: Tensor | None = None,
        teacher_forcing_ratio: float = 0.0,
        return_attention: bool = False,
    ):
        """Forecast ``horizon`` steps. Only in training mode, and only with ``target`` [B, horizon, K], does a
        step feed the true previous value (with probability ``teacher_forcing_ratio``, drawn per step);
        otherwise every step feeds back the net's own prediction (pure autoregression; ``target`` unread)."""
        memory, state = self.encode(x)
        previous = x[:, -1:, : self.output_size]
        forced = torch.zeros(horizon, dtype=torch.bool)
        if self.training and target is not None and teacher_forcing_ratio > 0:
            forced = torch.rand(horizon) < teacher_forcing_ratio
        if bool(forced[:-1].all()) and horizon > 1 and target is not None and self.training:
            # every input after the first is the truth: all steps in one parallel pass
            inputs = torch.cat([previous, target[:, :-1]], dim=1)
            predictions, weights, _ = self.decode(inputs, memory, state, return_attention)
        else:
            steps, step_weights = [], []
            for t in range(horizon):
                prediction, weights, state = self.decode(previous, memory, state, return_attention)
                steps.append(prediction)
                step_weights.append(weights)
                previous = target[:, t : t + 1] if bool(forced[t]) else self.point(prediction)
            predictions = torch.cat(steps, dim=1)
            weights = torch.cat(step_weights, dim=1) if return_attention else None
        return (predictions, weights) if return_attention else predictions
