"""4. Classifier inference: latency per sequence (batch 1, length 500), throughput at batch 256, model size.

Not built yet: it comes with the steel-defect classifier issue. Then time the ``bilstm_classifier`` model's
forward here (interleaved repeats, as the other measurements do) and report its goal: < 5 ms per sequence
(reference targets: < 200 ms and < 50 MB).
"""

from __future__ import annotations

from benchmarks.harness import Context, Measurement, not_built

KEY = "classifier_inference"
TITLE = "4. classifier inference (batch 1 x 500 steps; batch 256; model size)"
GOAL = "< 5 ms per sequence"


def run(ctx: Context) -> Measurement:
    return not_built(KEY, 4, TITLE, GOAL, "the steel-defect classifier issue")
