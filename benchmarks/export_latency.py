"""Issue 19: the exported graphs against the PyTorch model they came from, on the same machine in the same run.

* ``step()`` of the ``signal_l1`` net for one stream: PyTorch's ``StatefulLSTM.step()``, the exported ``step``
  graph on ONNX Runtime (numpy state carried between calls) and on TorchScript (tensor state carried); each call
  timed on its own, p50 and p99 per block of calls, the figures the median (min, max) over blocks;
* the ``steel_defect`` classifier, one 500-step sequence (batch 1): the task's forward vs its ``classify`` graph.

The nets are untrained (their cost does not depend on their weights) and every runtime gets one thread: a
latency-bound service runs one stream per core, and a net this small gains nothing from more.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks.harness import Context, Measurement, Row, interleaved, percentile, ratio, show, stats, verdict
from benchmarks.workloads import compose_train_config, net_kwargs

KEY = "export_latency"
TITLE = "19. exported graphs: step() and classifier latency, PyTorch vs ONNX Runtime vs TorchScript"
GOAL_MS = 0.1
GOAL_SPEEDUP = 3.0
GOAL = f"ONNX Runtime step() p99 <= {GOAL_MS:g} ms, >= {GOAL_SPEEDUP:g}x faster than PyTorch step()"
RUNTIMES = ("pytorch", "onnxruntime", "torchscript")


def session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def block_of_calls(call: Callable[[], object], calls: int, blocks: dict[str, list[list[float]]], name: str) -> float:
    """Time ``calls`` calls one by one (milliseconds), keep the block, return its p50."""
    block = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        call()
        block.append((time.perf_counter_ns() - t0) / 1e6)
    blocks[name].append(block)
    return percentile(block, 50)


def step_calls(net, ctx: Context) -> dict[str, Callable[[], object]]:
    """One ``step()`` call per runtime for one stream, each carrying its own state from call to call."""
    from lstmlab.exporting import recurrent_graphs, write_graph

    adapter, example, inputs, outputs = recurrent_graphs(net, None, None)["step"]
    onnx_path, script_path = ctx.work_dir / "signal.step.onnx", ctx.work_dir / "signal.step.pt"
    write_graph(adapter, example, inputs, outputs, "onnx", onnx_path)
    write_graph(adapter, example, inputs, outputs, "torchscript", script_path)
    x = torch.randn(1, net.input_size)
    ort_session, script = session(onnx_path), torch.jit.load(str(script_path))
    zeros = np.zeros((net.num_layers, 1, net.hidden_size), np.float32)
    ort_state = {"h": zeros, "c": zeros}
    script_state = [torch.from_numpy(zeros), torch.from_numpy(zeros)]
    feed_x = x.numpy()
    net.reset_state()

    def ort_step() -> None:
        _, ort_state["h"], ort_state["c"] = ort_session.run(None, {"x": feed_x, **ort_state})

    def script_step() -> None:
        with torch.no_grad():
            _, script_state[0], script_state[1] = script(x, *script_state)

    return {"pytorch": lambda: net.step(x), "onnxruntime": ort_step, "torchscript": script_step}


def classifier_calls(ctx: Context) -> tuple[dict[str, Callable[[], object]], str]:
    from lstmlab.data.casting import CHANNELS
    from lstmlab.exporting import classifier_graphs, write_graph
    from lstmlab.runner import build_task

    cfg = compose_train_config(ctx, ["experiment=steel_defect"])
    cfg.model.net.input_size, cfg.model.net.num_classes = len(CHANNELS), 2
    task = build_task(cfg.model).eval()
    adapter, example, inputs, outputs = classifier_graphs(task)["classify"]
    path = ctx.work_dir / "classifier.classify.onnx"
    write_graph(adapter, example, inputs, outputs, "onnx", path)
    ort_session = session(path)
    length = int(cfg.data.generator.max_length)
    x, lengths = torch.randn(1, length, len(CHANNELS)), torch.tensor([length])
    feed = {"x": x.numpy(), "lengths": lengths.numpy()}

    def pytorch() -> None:
        with torch.inference_mode():
            task(x, lengths)

    net = task.net
    shape = f"hidden {net.hidden_size} x {net.num_layers}, {'bi' if net.bidirectional else 'uni'}directional"
    return {"pytorch": pytorch, "onnxruntime": lambda: ort_session.run(None, feed)}, f"{length} steps, {shape}"


def run(ctx: Context) -> Measurement:
    from lstmlab.nets.stateful import StatefulLSTM

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        kwargs = net_kwargs(compose_train_config(ctx, ["experiment=signal_l1"]))
        net = StatefulLSTM(**kwargs).eval()
        calls, repeats = ctx.size(2000, 500, minimum=50), ctx.reps(5, 3)
        steps = step_calls(net, ctx)
        blocks: dict[str, list[list[float]]] = {name: [] for name in RUNTIMES}
        cases = {name: (lambda n=name: block_of_calls(steps[n], calls, blocks, n)) for name in RUNTIMES}
        medians = interleaved(cases, repeats)
        classify, shape = classifier_calls(ctx)
        classifier_blocks: dict[str, list[list[float]]] = {name: [] for name in classify}
        classifier_medians = interleaved(
            {
                name: (lambda n=name: block_of_calls(classify[n], ctx.size(100, 30, 10), classifier_blocks, n))
                for name in classify
            },
            repeats,
        )
    finally:
        torch.set_num_threads(threads)

    figures: dict = {}
    for name in RUNTIMES:
        kept = blocks[name][1:]  # the first block of each was the warm-up
        figures[f"step_p50_ms_{name}"] = stats([percentile(b, 50) for b in kept], "ms")
        figures[f"step_p99_ms_{name}"] = stats([percentile(b, 99) for b in kept], "ms")
    figures["step_speedup_onnxruntime_vs_pytorch"] = stats(ratio(medians["pytorch"], medians["onnxruntime"]), "x")
    figures["step_speedup_torchscript_vs_pytorch"] = stats(ratio(medians["pytorch"], medians["torchscript"]), "x")
    for name in classify:
        kept = classifier_blocks[name][1:]
        figures[f"classifier_p50_ms_{name}"] = stats([percentile(b, 50) for b in kept], "ms")
        figures[f"classifier_p99_ms_{name}"] = stats([percentile(b, 99) for b in kept], "ms")
    figures["classifier_speedup_onnxruntime_vs_pytorch"] = stats(
        ratio(classifier_medians["pytorch"], classifier_medians["onnxruntime"]), "x"
    )
    speedup = figures["step_speedup_onnxruntime_vs_pytorch"]["median"]
    met = figures["step_p99_ms_onnxruntime"]["median"] <= GOAL_MS and speedup >= GOAL_SPEEDUP

    def latency(prefix: str, name: str) -> str:
        return f"{name}: p50 {show(figures[f'{prefix}_p50_ms_{name}'])}, p99 {show(figures[f'{prefix}_p99_ms_{name}'])}"

    size = f"hidden {kwargs['hidden_size']} x {kwargs['num_layers']} layer"
    rows = [
        Row(
            f"19. step(), 1 stream (signal_l1 net, {size}; {calls} calls per block, 1 thread)",
            "; ".join(latency("step", name) for name in RUNTIMES)
            + f"; ONNX Runtime {show(figures['step_speedup_onnxruntime_vs_pytorch'])} faster than PyTorch",
            GOAL,
            verdict(met),
        ),
        Row(
            f"19. classifier, batch 1 x {shape} (1 thread)",
            "; ".join(latency("classifier", name) for name in classify)
            + f"; ONNX Runtime {show(figures['classifier_speedup_onnxruntime_vs_pytorch'])} faster than PyTorch",
        ),
    ]
    return Measurement(
        key=KEY,
        number=19,
        title=TITLE,
        goal=GOAL,
        met=met,
        figures=figures,
        rows=rows,
        settings={"calls_per_block": calls, "repeats": repeats, "threads": 1, "device": "cpu"},
        notes="CPU only: the exported graphs are served on ONNX Runtime's CPU provider",
    )
