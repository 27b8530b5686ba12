"""8. Price streaming (issue 5): ticks per second through ``lstmlab-stream``'s pipeline, latency per prediction.

The ``price_forecast`` experiment's composed config gives the series, the feature settings, the normalisation
and the net; the ticks of the generated series are replayed one by one through ``PriceStreamer.push`` (what
``lstmlab-stream`` and ``stream_predictions`` call per tick: buffer shift, window features every ``step_size``
ticks, normalisation, one forward of the net over ``seq_len`` windows). Always on the CPU, as a live feed runs.

* throughput: every tick replayed / wall time of the replay (CSV parsing and JSON output not included);
* latency: each ``push`` that returns a prediction, timed on its own; p50 and p99 per replay, figures are the
  median (min, max) over the replays. The net is untrained: its cost does not depend on its weights.

With one torch thread (``lstmlab-stream``'s ``threads=1``; the goal) and, interleaved, torch's default threads:
a forward over 16 windows is too small to split, and on a busy machine the threads wait on each other.
"""

from __future__ import annotations

import time

import torch

from benchmarks.harness import Context, Measurement, Row, interleaved, percentile, show, stats, verdict
from benchmarks.workloads import compose_train_config

KEY = "price_streaming"
TITLE = "Price streaming"
GOAL_MS = 10.0
GOAL = f"p99 < {GOAL_MS:g} ms per prediction, 1 stream, CPU"


def run(ctx: Context) -> Measurement:
    from hydra.utils import instantiate

    from lstmlab.runner import build_task
    from lstmlab.streaming import PriceStreamer, Tick

    n_steps = ctx.size(20_000, 5_000, minimum=2_000)
    cfg = compose_train_config(ctx, ["experiment=price_forecast", f"data.generator.n_steps={n_steps}"])
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    torch.manual_seed(0)
    task = build_task(cfg.model)
    task.pipeline = datamodule.pipeline
    series = datamodule.series
    ticks = [Tick(float(c), float(v), str(d)) for d, c, v in zip(series.dates, series.close, series.volume)]
    latencies: dict[str, list[list[float]]] = {"one_thread": [], "default": []}
    default_threads = torch.get_num_threads()

    def replay(case: str) -> float:
        torch.set_num_threads(1 if case == "one_thread" else default_threads)
        try:
            streamer = PriceStreamer(task)
            clock = time.perf_counter_ns
            block = []
            start = clock()
            for tick in ticks:
                t0 = clock()
                record = streamer.push(tick)
                if record is not None:
                    block.append((clock() - t0) / 1e6)
            elapsed = (clock() - start) / 1e9
        finally:
            torch.set_num_threads(default_threads)
        latencies[case].append(block)
        return len(ticks) / elapsed

    repeats = ctx.reps(5, 3)
    throughput = interleaved({case: lambda case=case: replay(case) for case in latencies}, repeats)
    figures = {}
    for case, suffix in (("one_thread", ""), ("default", "_default_threads")):
        blocks = latencies[case][1:]  # the first replay was the warm-up
        figures[f"ticks_per_s{suffix}"] = stats(throughput[case], "ticks/s")
        figures[f"latency_p50_ms{suffix}"] = stats([percentile(b, 50) for b in blocks], "ms")
        figures[f"latency_p99_ms{suffix}"] = stats([percentile(b, 99) for b in blocks], "ms")
    met = figures["latency_p99_ms"]["median"] < GOAL_MS
    p = datamodule.pipeline
    net = f"hidden {task.net.hidden_size} x {task.net.num_layers} layer"
    rows = [
        Row(
            f"8. price stream, 1 feed ({len(ticks):,} ticks; buffer {p.features.buffer_size}, "
            f"step {p.features.step_size}, {p.seq_len} windows of {len(p.features.names)} features, {net}; "
            "1 torch thread, lstmlab-stream's default)",
            f"{show(figures['ticks_per_s'])}; per prediction p50 {show(figures['latency_p50_ms'])}, "
            f"p99 **{show(figures['latency_p99_ms'])}**",
            GOAL,
            verdict(met),
        ),
        Row(
            f"8. price stream, 1 feed, torch's default {default_threads} threads",
            f"{show(figures['ticks_per_s_default_threads'])}; per prediction p50 "
            f"{show(figures['latency_p50_ms_default_threads'])}, p99 {show(figures['latency_p99_ms_default_threads'])}",
        ),
    ]
    return Measurement(
        key=KEY,
        number=8,
        title=TITLE,
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        settings={
            "ticks": len(ticks),
            "predictions_per_replay": len(latencies["default"][0]),
            "repeats": repeats,
            "features": p.features.to_dict(),
            "seq_len": p.seq_len,
            "torch_threads_default": default_threads,
        },
    )
