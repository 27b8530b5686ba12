"""``python -m benchmarks [--quick] [--scale S] [--repeats N] [--device auto|cpu|cuda] [--out DIR] [--only KEY,...]``

Prints the markdown table; writes ``<out>/<date>.json`` (``<date>-quick.json`` with ``--quick``) and
``<out>/throughput_vs_length.png`` (``-quick`` likewise). Run from the repository root.

``python -m benchmarks --only classify_realdata [--quick] [--datasets A,B] [--seeds N] [--variants V,...]
[--overrides "k=v ..."] [--carve-val]``: issue 16's real-data accuracy table (needs ``pip install -e ".[bench]"``;
runs only when named in --only).

``python -m benchmarks --only forecast_realdata [--quick] [--series A,B] [--seeds N] [--overrides "k=v ..."]``:
issue 15's real-data forecasting table (MASE beside seasonal naive, AutoETS and neuralforecast's LSTM; needs
``pip install -e ".[bench]"``; runs only when named in --only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from benchmarks import (
    classifier_inference,
    classify_realdata,
    data_path,
    export_latency,
    forecast_realdata,
    framework_overhead,
    parallel_trials,
    price_streaming,
    startup_time,
    streaming_inference,
    sweep_efficiency,
    training_throughput,
)
from benchmarks.harness import Context, Measurement, Row, command_line, machine_info, positive_int
from benchmarks.memory import memory_row, peaks, reset_peaks
from benchmarks.report import markdown_table, plot_throughput, write_json

# the items of issue 7, in its order
MEASUREMENTS = {
    m.KEY: m
    for m in (
        training_throughput,
        framework_overhead,
        streaming_inference,
        classifier_inference,
        startup_time,
        data_path,
        sweep_efficiency,
        price_streaming,  # issue 5's streaming figures
        classify_realdata,  # issue 16's real-data accuracy table
        forecast_realdata,  # issue 15's real-data forecasting table
        parallel_trials,  # issue 18: parallel trials share the cores
        export_latency,  # issue 19: exported graphs vs PyTorch
    )
}
# measurements that run only when named in --only (hours of training on the full suite)
OPT_IN = {classify_realdata.KEY, forecast_realdata.KEY}
RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (1-2 minutes)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every workload size (samples, batches, calls); e.g. 0.05 for a smoke test",
    )
    parser.add_argument("--repeats", type=int, default=None, help="repeats of every measurement (default: its own)")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when available, else cpu"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's own, one per core)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="generated datasets cache (default $LSTMLAB_ROOT/data or ./data, as lstmlab-train)",
    )
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {','.join(MEASUREMENTS)}")
    shared = parser.add_argument_group(f"real-data benchmarks ({', '.join(sorted(OPT_IN))})")
    shared.add_argument("--seeds", type=positive_int, default=None, help="seeds per method (default 3; --quick: 1)")
    shared.add_argument(
        "--overrides",
        default="",
        help='Hydra overrides added to every lstmlab run, e.g. "trainer.max_steps=2000 model.net.hidden_size=64" '
        "(choose them on the validation figures the run reports, never on test)",
    )
    for module in MEASUREMENTS.values():
        if hasattr(module, "add_arguments"):  # a measurement's own options (classify_realdata: --datasets ...)
            module.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error(f"--scale={args.scale}: must be > 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device=cuda: no CUDA device is available; use --device cpu or auto")
    if args.only:
        unknown = set(args.only.split(",")) - set(MEASUREMENTS)
        if unknown:
            parser.error(f"--only: unknown {sorted(unknown)}; choose from {list(MEASUREMENTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    data_dir = args.data_dir or Path(os.environ.get("LSTMLAB_ROOT", ".")) / "data"
    work_dir = Path(tempfile.mkdtemp(prefix="lstmlab-bench-"))
    ctx = Context(
        quick=args.quick,
        scale=args.scale,
        repeats=args.repeats,
        device=device,
        out=args.out,
        data_dir=data_dir.resolve(),
        work_dir=work_dir,
    )
    keys = args.only.split(",") if args.only else [k for k in MEASUREMENTS if k not in OPT_IN]
    machine = machine_info(device)
    print(
        f"lstmlab benchmarks on {machine['device_name']} ({machine['cores']} cores, torch {machine['torch']}, "
        f"device {device.type}){' --quick' if args.quick else ''}",
        file=sys.stderr,
    )

    started = time.perf_counter()
    results: list[Measurement] = []
    failed = False
    try:
        for key in keys:
            module = MEASUREMENTS[key]
            t0 = time.perf_counter()
            reset_peaks(device)
            try:
                result = module.run(ctx, args) if hasattr(module, "add_arguments") else module.run(ctx)
            except Exception as err:  # one broken measurement must not hide the others' figures
                failed = True
                traceback.print_exc()
                result = Measurement(
                    key=key,
                    number=0,
                    title=key,
                    status=f"error: {type(err).__name__}: {err}",
                    rows=[Row(key, f"error: {type(err).__name__}: {err}", "-", "error")],
                )
            result.settings["seconds"] = round(time.perf_counter() - t0, 1)
            result.settings.update(peaks(device))
            results.append(result)
            print(
                f"  {key}: {result.settings['seconds']} s, peak host {result.settings['peak_host_mb']} MB",
                file=sys.stderr,
            )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    table = markdown_table(results) + "\n| " + " | ".join(memory_row(results)) + " |"
    suffix = "-quick" if args.quick else ""
    suffix += "-partial" if args.only else ""
    plot_name = f"throughput_vs_length{suffix}.png"
    throughput = next((m for m in results if m.key == training_throughput.KEY and m.series), None)
    if throughput is not None:
        plot_throughput(throughput.series, ctx.out / plot_name, machine)
    report = {
        "date": dt.date.today().isoformat(),
        "command": command_line(),
        "settings": {
            "quick": args.quick,
            "scale": args.scale,
            "repeats": args.repeats,
            "device": device.type,
            "threads": torch.get_num_threads(),
        },
        "machine": machine,
        "duration_s": round(time.perf_counter() - started, 1),
        "measurements": {m.key: m.to_json() for m in results},
        "plot": plot_name if throughput is not None else None,
        "table_markdown": table,
    }
    json_path = ctx.out / f"{report['date']}{suffix}.json"
    write_json(json_path, report)
    print(table)
    for m in results:  # a measurement's own tables (the real-data ones: figures per data set and method)
        if m.series.get("table_markdown"):
            print(f"\n{m.title}\n\n{m.series['table_markdown']}")
    print(
        f"\nwrote {json_path}"
        + (f" and {ctx.out / plot_name}" if throughput is not None else "")
        + f" in {report['duration_s']} s",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
