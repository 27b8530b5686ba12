"""1. Training throughput of the stateful L=1 net (tbptt_steps=1) vs the sequence net at L=50 vs a plain loop.

All three train the same sizes (the ``signal_l50`` net: hidden size, layers, head) on the same batches of the
real train loader (chunks of 50 steps, state carried across the chunks of a sample), one forward, backward
and Adam step per chunk. The figure is time steps trained per second (examples x steps per chunk / s).
The sweep behind the plot repeats this for chunk lengths from 10 to 1,000 steps.
"""

from __future__ import annotations

from benchmarks.harness import Context, Measurement, Row, interleaved, ratio, show, stats, timed, verdict
from benchmarks.workloads import (
    TrainLoop,
    build_net,
    chunked_batches,
    compose_train_config,
    data_overrides,
    net_kwargs,
    signal_datamodule,
    time_steps,
    train_batches,
)

KEY = "training_throughput"
TITLE = "L=1 training throughput"
GOAL_RATIO = 0.8
GOAL = f"L=1 >= {GOAL_RATIO}x L=50"
KINDS = {"stateful": "L=1 stateful", "sequence": "L=50 sequence", "plain_loop": "plain step loop"}
LENGTHS = (10, 20, 50, 100, 200, 500, 1000)
QUICK_LENGTHS = (10, 50, 200, 500)
UNIT = "steps/s"


def run(ctx: Context) -> Measurement:
    cfg = compose_train_config(ctx, ["experiment=signal_l50", *data_overrides(ctx)])
    kwargs = net_kwargs(cfg)
    lr = float(cfg.model.optimizer.lr)
    datamodule = signal_datamodule(cfg)
    batches = train_batches(datamodule, ctx.size(40, 12, minimum=2), ctx.device)
    steps = time_steps(batches)
    repeats = ctx.reps(7, 3)

    loops = {kind: TrainLoop(build_net(kind, kwargs, ctx.device), lr) for kind in KINDS}
    for loop in loops.values():
        loop.run(batches[:2])  # warm-up: allocator, oneDNN primitives
    samples = interleaved(
        {kind: (lambda loop=loop: steps / timed(lambda: loop.run(batches), ctx)) for kind, loop in loops.items()},
        repeats,
        warmup=False,
    )
    figures = {f"{kind}_steps_per_s": stats(samples[kind], UNIT) for kind in KINDS}
    figures["ratio_l1_vs_l50"] = stats(ratio(samples["stateful"], samples["sequence"]), "x")
    figures["ratio_plain_loop_vs_l50"] = stats(ratio(samples["plain_loop"], samples["sequence"]), "x")
    figures["speedup_l1_vs_plain_loop"] = stats(ratio(samples["stateful"], samples["plain_loop"]), "x")
    met = figures["ratio_l1_vs_l50"]["median"] >= GOAL_RATIO

    series = length_sweep(ctx, datamodule, kwargs, lr)
    size = (
        f"hidden {kwargs['hidden_size']} x {kwargs['num_layers']} layers, "
        f"batch {batches[0]['x'].shape[0]}, chunk {batches[0]['x'].shape[1]}"
    )
    l1, l50, plain = (figures[f"{k}_steps_per_s"] for k in KINDS)
    rows = [
        Row(
            f"1. L=1 training (tbptt_steps=1) vs L=50 ({size}; fwd+bwd+Adam per chunk)",
            f"L=1 {show(l1)}; L=50 {show(l50)}; ratio **{show(figures['ratio_l1_vs_l50'])}**",
            GOAL,
            verdict(met),
        ),
        Row(
            "1. plain step-by-step loop (one nn.LSTM call per step)",
            f"{show(plain)}; {show(figures['ratio_plain_loop_vs_l50'])} of L=50; "
            f"L=1 is {show(figures['speedup_l1_vs_plain_loop'])} faster",
        ),
    ]
    return Measurement(
        key=KEY,
        number=1,
        title=TITLE,
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        series=series,
        settings={"net": kwargs, "lr": lr, "batches": len(batches), "time_steps_per_repeat": steps, "repeats": repeats},
    )


def length_sweep(ctx: Context, datamodule, kwargs: dict, lr: float) -> dict:
    """Time steps/s of the three nets for every chunk length (the window L of the sequence net)."""
    total = datamodule.splits["train"].steps
    batch_size = datamodule.hparams.batch_size
    span_target = ctx.size(1000, 500)
    lengths = [n for n in (QUICK_LENGTHS if ctx.quick else LENGTHS) if n <= min(total, max(50, span_target))]
    repeats = ctx.reps(3, 2)
    series: dict = {
        "chunk_len": lengths,
        "batch_size": batch_size,
        "repeats": repeats,
        **{kind: {"median": [], "min": [], "max": []} for kind in KINDS},
    }
    for chunk_len in lengths:
        span = min(total, max(chunk_len, span_target // chunk_len * chunk_len))
        batches = chunked_batches(datamodule, chunk_len, span, batch_size, ctx.device)
        steps = time_steps(batches)
        loops = {kind: TrainLoop(build_net(kind, kwargs, ctx.device), lr) for kind in KINDS}
        for loop in loops.values():
            loop.run(batches[:1])
        samples = interleaved(
            {
                kind: (lambda loop=loop, steps=steps, batches=batches: steps / timed(lambda: loop.run(batches), ctx))
                for kind, loop in loops.items()
            },
            repeats,
            warmup=False,
        )
        for kind in KINDS:
            figure = stats(samples[kind], UNIT)
            for key in ("median", "min", "max"):
                series[kind][key].append(figure[key])
    return series
