"""4. Classifier inference: latency per sequence (batch 1, length 500), throughput at batch 256, model size.

The ``steel_defect`` experiment's composed config gives the net (``model=bilstm_classifier``: its width,
depth, pooling and head, read from the config, never restated here); its input is the casting data's channels.
The net is in eval mode under ``torch.inference_mode``, untrained (its cost does not depend on its weights).

* latency: one forward of one 500-step sequence (the data's longest), each call timed on its own; p50 and p99
  per repeat, the figures are the median (min, max) over repeats. With one torch thread (the goal: a serving
  process per core) and, interleaved, torch's default threads;
* throughput: sequences per second of forwards at batch 256 with lengths drawn like the data's (100-500 steps,
  padded to the batch's longest), torch's default threads; on a GPU also the same batch on the machine's CPU,
  interleaved, and their ratio (the GPU goal: >= 20x the CPU); on a GPU also each way to run the recurrence
  there (packed or padded batches: cuDNN's standard or persistent kernels);
* size: parameters and the bytes of the saved ``state_dict``.
"""

from __future__ import annotations

import copy
import io
import time

import torch

from benchmarks.harness import Context, Measurement, Row, interleaved, percentile, ratio, show, stats, timed, verdict
from benchmarks.workloads import compose_train_config

KEY = "classifier_inference"
TITLE = "4. classifier inference (batch 1 x 500 steps; batch 256; model size)"
GOAL_MS = 5.0
GOAL = f"< {GOAL_MS:g} ms per sequence (batch 1, p50)"
REFERENCE_MS, REFERENCE_MB = 200.0, 50.0  # the reference design's targets
GPU_GOAL_RATIO = 20.0  # batch-256 throughput on a GPU over the same machine's CPU


def state_dict_bytes(net: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getbuffer().nbytes


# on a GPU, batch-256 throughput and batch-1 latency of each way to run the recurrence (net.pack)
GPU_VARIANTS = {"packed": True, "padded": False}


def with_pack(net, pack: bool | None):
    """A copy of ``net`` that runs its recurrence packed or padded as ``pack`` says."""
    variant = copy.deepcopy(net)
    variant.pack = pack
    return variant


def variant_throughput(net, many, lengths, pack: bool | None, ctx: Context):
    """Sequences per second of ``net`` run with ``pack`` set as given."""
    variant = with_pack(net, pack)

    def throughput() -> float:
        with torch.inference_mode():
            return len(lengths) / timed(lambda: variant(many, lengths), ctx)

    return throughput


def variant_latency(net, one, one_length, pack: bool, ctx: Context, calls: int):
    """The median milliseconds of ``calls`` single-sequence forwards of ``net`` run as ``variant_throughput``."""
    variant = with_pack(net, pack)

    def latency() -> float:
        block = []
        with torch.inference_mode():
            for _ in range(calls):
                block.append(timed(lambda: variant(one, one_length), ctx) * 1e3)
        return percentile(block, 50)

    return latency


def run(ctx: Context) -> Measurement:
    from hydra.utils import instantiate

    from lstmlab.data.casting import CHANNELS

    cfg = compose_train_config(ctx, ["experiment=steel_defect"])
    gen = cfg.data.generator
    torch.manual_seed(0)
    net = instantiate(cfg.model.net, input_size=len(CHANNELS), num_classes=2).to(ctx.device).eval()
    length, batch = gen.max_length, 256
    one = torch.randn(1, length, len(CHANNELS), device=ctx.device)
    one_length = torch.tensor([length], device=ctx.device)
    lengths = torch.randint(gen.min_length, gen.max_length + 1, (batch,), device=ctx.device)
    many = torch.randn(batch, int(lengths.max()), len(CHANNELS), device=ctx.device)
    calls = ctx.size(200, 50, minimum=10)
    default_threads = torch.get_num_threads()
    latencies: dict[str, list[list[float]]] = {"one_thread": [], "default": []}

    def latency(case: str) -> float:
        torch.set_num_threads(1 if case == "one_thread" else default_threads)
        block = []
        try:
            with torch.inference_mode():
                for _ in range(calls):
                    ctx.sync()
                    t0 = time.perf_counter_ns()
                    net(one, one_length)
                    ctx.sync()
                    block.append((time.perf_counter_ns() - t0) / 1e6)
        finally:
            torch.set_num_threads(default_threads)
        latencies[case].append(block)
        return percentile(block, 50)

    cases = {
        "one_thread": lambda: latency("one_thread"),
        "default": lambda: latency("default"),
        "batch": variant_throughput(net, many, lengths, net.pack, ctx),
    }
    on_gpu = ctx.device.type == "cuda"
    if on_gpu:  # the same net and batch on this machine's CPU: the ratio the GPU goal is stated in
        cpu_net, cpu_many, cpu_lengths = copy.deepcopy(net).cpu(), many.cpu(), lengths.cpu()

        def cpu_throughput() -> float:
            with torch.inference_mode():
                t0 = time.perf_counter()
                cpu_net(cpu_many, cpu_lengths)
                return batch / (time.perf_counter() - t0)

        cases["batch_cpu"] = cpu_throughput
        for name, pack in GPU_VARIANTS.items():
            cases[f"batch_{name}"] = variant_throughput(net, many, lengths, pack, ctx)
            cases[f"latency_{name}"] = variant_latency(net, one, one_length, pack, ctx, calls)
    repeats = ctx.reps(5, 3)
    samples = interleaved(cases, repeats)
    figures = {}
    for case, suffix in (("one_thread", ""), ("default", "_default_threads")):
        blocks = latencies[case][1:]  # the first block was the warm-up
        figures[f"latency_p50_ms{suffix}"] = stats([percentile(b, 50) for b in blocks], "ms")
        figures[f"latency_p99_ms{suffix}"] = stats([percentile(b, 99) for b in blocks], "ms")
    figures["batch_256_sequences_per_s"] = stats(samples["batch"], "seq/s")
    if on_gpu:
        figures["batch_256_sequences_per_s_cpu"] = stats(samples["batch_cpu"], "seq/s")
        figures["ratio_gpu_vs_cpu_batch_256"] = stats(ratio(samples["batch"], samples["batch_cpu"]), "x")
        for name in GPU_VARIANTS:
            figures[f"batch_256_sequences_per_s_{name}"] = stats(samples[f"batch_{name}"], "seq/s")
            figures[f"latency_p50_ms_{name}"] = stats(samples[f"latency_{name}"], "ms")
            figures[f"ratio_{name}_vs_cpu_batch_256"] = stats(
                ratio(samples[f"batch_{name}"], samples["batch_cpu"]), "x"
            )
    n_params = sum(p.numel() for p in net.parameters())
    size_mb = state_dict_bytes(net) / 1e6
    figures["parameters"] = stats([float(n_params)], "params")
    figures["size_mb"] = stats([size_mb], "MB")
    met = figures["latency_p50_ms"]["median"] < GOAL_MS
    shape = (
        f"hidden {net.hidden_size} x {net.num_layers} layer, {'bi' if net.bidirectional else 'uni'}directional, "
        f"{net.pooling} pooling"
    )
    rows = [
        Row(
            f"4. classifier, batch 1 x {length} steps ({shape}; 1 torch thread)",
            f"p50 **{show(figures['latency_p50_ms'])}**, p99 {show(figures['latency_p99_ms'])}",
            GOAL,
            verdict(met),
        ),
        Row(
            f"4. classifier, batch 1 x {length} steps, torch's default {default_threads} threads",
            f"p50 {show(figures['latency_p50_ms_default_threads'])}, "
            f"p99 {show(figures['latency_p99_ms_default_threads'])}",
        ),
        Row(
            f"4. classifier, batch {batch} ({gen.min_length}-{gen.max_length} steps); model size",
            f"{show(figures['batch_256_sequences_per_s'])}; {n_params:,} parameters, {size_mb:.3f} MB",
            f"reference: < {REFERENCE_MS:g} ms, < {REFERENCE_MB:g} MB",
            verdict(figures["latency_p99_ms"]["median"] < REFERENCE_MS and size_mb < REFERENCE_MB),
        ),
    ]
    if on_gpu:
        rows.append(
            Row(
                f"4. classifier, batch {batch}: GPU (net defaults) vs this machine's CPU ({default_threads} threads)",
                f"GPU {show(figures['batch_256_sequences_per_s'])}; "
                f"CPU {show(figures['batch_256_sequences_per_s_cpu'])}; "
                f"**{show(figures['ratio_gpu_vs_cpu_batch_256'])}**",
                f">= {GPU_GOAL_RATIO:g}x CPU",
                verdict(figures["ratio_gpu_vs_cpu_batch_256"]["median"] >= GPU_GOAL_RATIO),
            )
        )
        variants = "; ".join(
            f"{name} {show(figures[f'batch_256_sequences_per_s_{name}'])} "
            f"({show(figures[f'ratio_{name}_vs_cpu_batch_256'])}), "
            f"batch 1 p50 {show(figures[f'latency_p50_ms_{name}'])}"
            for name in GPU_VARIANTS
        )
        rows.append(
            Row(
                f"4. classifier on the GPU, batch {batch} and 1: packed or padded batches (net.pack)",
                variants,
            )
        )
    return Measurement(
        key=KEY,
        number=4,
        title=TITLE,
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        settings={
            "length": length,
            "batch": batch,
            "calls_per_repeat": calls,
            "repeats": repeats,
            "torch_threads_default": default_threads,
            "pack": net.pack,
            "device": str(ctx.device),
        },
    )
