"""``python -m benchmarks``: lstmlab measured against its peers and its limits (issue 7).

One module per measurement, each with a ``run(ctx) -> Measurement``; ``__main__`` runs them in order, prints
the markdown table and writes ``<out>/<date>.json`` and ``<out>/throughput_vs_length.png``. Every goal is a
ratio or a percentile measured side by side in the same run, repeats interleaved so that the noise of a
shared machine hits both sides; nothing here asserts a speed.
"""
