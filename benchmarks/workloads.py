"""The work being timed, built from the project's real config: composed configs, data, nets, a train step.

Configs are composed from ``lstmlab.conf`` exactly as ``lstmlab-train`` composes them (schemas registered,
same root config and experiments), then shrunk with overrides; sizes of nets are read from them, never
restated here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from benchmarks.harness import Context


def compose_train_config(ctx: Context, overrides: Sequence[str] = (), run_dir: str | None = None) -> DictConfig:
    """``lstmlab-train``'s composed config with ``overrides``; data cached in ``ctx.data_dir``."""
    from hydra import compose, initialize_config_module

    from lstmlab.schemas import register_schemas, validate_config

    register_schemas()
    paths = [
        f"paths.root_dir={ctx.work_dir}",
        f"paths.data_dir={ctx.data_dir}",
        f"paths.output_dir={run_dir or ctx.work_dir / 'run'}",
        "extras.print_config=false",
    ]
    with initialize_config_module(config_module="lstmlab.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*paths, *overrides])
    validate_config(cfg)
    return cfg


def data_overrides(ctx: Context) -> list[str]:
    """The default data (200 samples of 1,000 steps) with the number of samples scaled (at least 10)."""
    return [f"data.generator.n_samples={ctx.size(200, 50, minimum=10)}"]


def net_kwargs(cfg: DictConfig) -> dict:
    """The whole ``model.net`` of a composed config, less ``_target_``, with the task's ``model.hidden_size`` /
    ``model.num_layers`` shortcuts applied as the task applies them: the experiment's net, every option of it."""
    from lstmlab.tasks.base import net_config

    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    net.pop("_target_")
    return net_config(net, cfg.model.get("hidden_size"), cfg.model.get("num_layers"))


def signal_datamodule(cfg: DictConfig):
    """The configured datamodule, its file generated (cached) and split."""
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def train_batches(datamodule, limit: int, device: torch.device) -> list[dict]:
    """The first ``limit`` batches of the real train loader (chunks in order, ``first`` marks a new group)."""
    batches = []
    for batch in datamodule.train_dataloader():
        batches.append({k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()})
        if len(batches) >= limit:
            break
    return batches


def chunked_batches(datamodule, chunk_len: int, span: int, batch_size: int, device: torch.device) -> list[dict]:
    """The first ``batch_size`` train examples over their first ``span`` steps, cut into chunks of ``chunk_len``."""
    dataset = datamodule.splits["train"]
    examples = torch.arange(min(batch_size, len(dataset)))
    sample, freq = examples // dataset.num_frequencies, examples % dataset.num_frequencies
    batches = []
    for start in range(0, span, chunk_len):
        batch = dataset.batch(sample, freq, start, start + chunk_len)
        batches.append({"x": batch["x"].to(device), "y": batch["y"].to(device), "first": start == 0})
    return batches


# ---- nets ------------------------------------------------------------------------------------------
class PlainLoopLSTM(nn.Module):
    """The step-by-step loop users write for L=1: one ``nn.LSTM`` call per time step, state detached each step.

    Same gradients as ``StatefulLSTM(tbptt_steps=1)`` (``tests/test_nets.py`` checks that equivalence).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_size: int,
        num_layers: int,
        head_hidden: Sequence[int],
        head_activation: str,
        **_: object,
    ) -> None:
        super().__init__()
        from lstmlab.nets.heads import make_head

        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.head = make_head(hidden_size, output_size, head_hidden, head_activation, dropout=0.0)  # as StatefulLSTM

    def forward(self, x: Tensor, state=None):
        outs = []
        for t in range(x.shape[1]):
            out, state = self.lstm(x[:, t : t + 1], state)
            state = tuple(s.detach() for s in state)
            outs.append(out)
        return self.head(torch.cat(outs, dim=1)), state


def build_net(kind: str, kwargs: dict, device: torch.device) -> nn.Module:
    """``stateful`` (L=1, tbptt_steps=1), ``sequence`` (L = chunk length) or ``plain_loop`` from ``net_kwargs``
    of either recurrent net: the same sizes and options, less the option one net has and the other lacks."""
    from lstmlab.nets.sequence import SequenceLSTM
    from lstmlab.nets.stateful import StatefulLSTM

    torch.manual_seed(0)
    if kind == "stateful":  # a stateful head has no dropout: the same net when head_dropout is 0 (sequence.yaml)
        net = StatefulLSTM(
            **{k: v for k, v in kwargs.items() if k not in ("tbptt_steps", "head_dropout")}, tbptt_steps=1
        )
    elif kind == "sequence":
        net = SequenceLSTM(**{k: v for k, v in kwargs.items() if k != "tbptt_steps"})
    elif kind == "plain_loop":
        net = PlainLoopLSTM(**kwargs)
    else:
        raise ValueError(kind)
    return net.to(device)


def detach(state):
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach(s) for s in state)
    return state


class TrainLoop:
    """Forward, MSE, backward and an Adam step per chunk; the state carried across the chunks of a sample."""

    def __init__(self, net: nn.Module, lr: float = 1e-3) -> None:
        self.net = net.train()
        self.optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        self.state = None

    def step(self, batch: dict) -> None:
        state = None if batch["first"] else self.state
        pred, state = self.net(batch["x"], state)
        loss = F.mse_loss(pred.squeeze(-1), batch["y"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.state = detach(state)

    def run(self, batches: list[dict]) -> None:
        for batch in batches:
            self.step(batch)


def time_steps(batches: list[dict]) -> int:
    """Time steps of all examples in ``batches``: what a steps/s figure counts."""
    return sum(b["x"].shape[0] * b["x"].shape[1] for b in batches)
