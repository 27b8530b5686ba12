"""3. Streaming inference of the ``signal_l1`` net: ``StatefulLSTM.step()`` latency and throughput.

* latency of one ``step()`` call for one stream, each call timed on its own: p50 and p99 per block of calls;
  the figures are the median (min, max) of the blocks' percentiles; with torch's default threads (the goal)
  and, interleaved, with one thread (what a latency-bound streaming service would set);
* throughput in stream-steps/s for 1, 64 and 1,024 concurrent streams (one ``step()`` advances every stream);
* a whole 10,000-step sample (1 kHz for 10 s, the ``signals_10k`` rate) in one chunked forward vs
  10,000 ``step()`` calls.
"""

from __future__ import annotations

import time

import torch

from benchmarks.harness import (
    Context,
    Measurement,
    Row,
    interleaved,
    percentile,
    ratio,
    show,
    stats,
    timed,
    verdict,
)
from benchmarks.workloads import compose_train_config, net_kwargs

KEY = "streaming_inference"
TITLE = "Streaming inference"
GOAL_MS = 1.0
GOAL = f"p99 < {GOAL_MS:g} ms per step, 1 stream"
STREAMS = (1, 64, 1024)


def run(ctx: Context) -> Measurement:
    from lstmlab.nets.stateful import StatefulLSTM

    cfg = compose_train_config(ctx, ["experiment=signal_l1"])
    kwargs = net_kwargs(cfg)
    torch.manual_seed(0)
    net = StatefulLSTM(**kwargs).to(ctx.device).eval()
    repeats = ctx.reps(5, 3)
    calls = ctx.size(2000, 500, minimum=50)
    figures: dict = {}

    # latency, one stream
    x1 = torch.randn(1, kwargs["input_size"], device=ctx.device)
    net.reset_state()
    for _ in range(50):
        net.step(x1)
    threads = torch.get_num_threads()
    blocks = interleaved(
        {"default": lambda: step_latencies(net, x1, calls, ctx), "one_thread": lambda: one_thread(net, x1, calls, ctx)},
        repeats,
        warmup=False,
    )
    for name, suffix in (("default", ""), ("one_thread", "_1_thread")):
        figures[f"latency_p50_ms{suffix}"] = stats([percentile(b, 50) for b in blocks[name]], "ms")
        figures[f"latency_p99_ms{suffix}"] = stats([percentile(b, 99) for b in blocks[name]], "ms")
    met = figures["latency_p99_ms"]["median"] < GOAL_MS

    # throughput, concurrent streams
    def streams_case(n: int):
        x = torch.randn(n, kwargs["input_size"], device=ctx.device)
        steps = max(20, calls // max(1, n // 64))  # fewer calls for wide batches: similar time per case

        def case() -> float:
            net.reset_state()
            return n * steps / timed(lambda: [net.step(x) for _ in range(steps)], ctx)

        return case

    samples = interleaved({n: streams_case(n) for n in STREAMS}, repeats)
    for n in STREAMS:
        figures[f"throughput_{n}_streams_steps_per_s"] = stats(samples[n], "steps/s")

    # a whole sample: chunked forward vs step by step
    length = ctx.size(10_000, 10_000, minimum=200)
    x = sample_input(length, kwargs["input_size"], ctx.device)

    def chunked() -> float:
        with torch.no_grad():
            return length / timed(lambda: net(x), ctx)

    def stepped() -> float:
        def loop() -> None:
            net.reset_state()
            for t in range(length):
                net.step(x[:, t])

        return length / timed(loop, ctx)

    whole = interleaved({"chunked": chunked, "step": stepped}, ctx.reps(3, 2))
    figures["sample_chunked_steps_per_s"] = stats(whole["chunked"], "steps/s")
    figures["sample_step_by_step_steps_per_s"] = stats(whole["step"], "steps/s")
    figures["speedup_chunked_vs_step"] = stats(ratio(whole["chunked"], whole["step"]), "x")

    size = f"hidden {kwargs['hidden_size']} x {kwargs['num_layers']} layer"
    rows = [
        Row(
            f"3. step() latency, 1 stream (signal_l1 net, {size}; {calls} calls per block, {threads} torch threads)",
            f"p50 {show(figures['latency_p50_ms'])}; p99 **{show(figures['latency_p99_ms'])}**",
            GOAL,
            verdict(met),
        ),
        Row(
            "3. step() latency, 1 stream, torch.set_num_threads(1)",
            f"p50 {show(figures['latency_p50_ms_1_thread'])}; p99 {show(figures['latency_p99_ms_1_thread'])}",
        ),
        Row(
            "3. step() throughput, concurrent streams",
            "; ".join(f"{n}: {show(figures[f'throughput_{n}_streams_steps_per_s'])}" for n in STREAMS),
        ),
        Row(
            f"3. whole {length:,}-step sample: one chunked forward vs step()",
            f"chunked {show(figures['sample_chunked_steps_per_s'])}; "
            f"step {show(figures['sample_step_by_step_steps_per_s'])}; "
            f"chunked is {show(figures['speedup_chunked_vs_step'])} faster",
        ),
    ]
    return Measurement(
        key=KEY,
        number=3,
        title=TITLE,
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        settings={
            "net": kwargs,
            "calls_per_block": calls,
            "repeats": repeats,
            "sample_steps": length,
            "torch_threads": threads,
        },
    )


def one_thread(net, x, calls: int, ctx: Context) -> list[float]:
    """``step_latencies`` with one intra-op thread (a streaming service's setting), then the threads restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return step_latencies(net, x, calls, ctx)
    finally:
        torch.set_num_threads(threads)


def step_latencies(net, x, calls: int, ctx: Context) -> list[float]:
    """Milliseconds of every one of ``calls`` consecutive ``step()`` calls."""
    out = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        start = clock()
        net.step(x)
        ctx.sync()
        out.append((clock() - start) / 1e6)
    return out


def sample_input(length: int, input_size: int, device: torch.device) -> torch.Tensor:
    """One generated 1 kHz sample with the one-hot of its first frequency: ``[1, length, input_size]``."""
    from lstmlab.data.signals import generate_signals

    data = generate_signals(n_samples=1, sampling_rate=1000.0, duration=length / 1000.0)
    mixed = torch.from_numpy(data.mixed[0, :length]).unsqueeze(-1)
    onehot = torch.zeros(length, input_size - 1)
    onehot[:, 0] = 1.0
    return torch.cat([mixed, onehot], dim=-1).unsqueeze(0).to(device)
