#!/usr/bin/env bash
# Issue 18's GPU checks in one command, for a lent GPU machine (the `device` tool's run):
#   bash scripts/gpu_checks.sh [benchmark keys, default: the GPU rows]
# Expects a python3 with torch (CUDA) and Lightning; packages it lacks travel as wheels in .whl/.
# Writes under $OUT (default ./gpu_out): the card, `pytest -m gpu`'s log, the benchmark JSON and log.
# PYTEST_K=<expr> runs the matching GPU tests only; PYTEST_TIMEOUT, BENCH_TIMEOUT (per key) and BENCH_ARGS as named.
set -o pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
ONLY=${1:-training_throughput,streaming_inference,classifier_inference,framework_overhead}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
# the package reads its configs as lstmlab.conf (the wheel maps conf/ there); from a checkout, link it
[ -e src/lstmlab/conf ] || ln -s ../../conf src/lstmlab/conf
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/card.txt"
python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/card.txt"
timeout "${PYTEST_TIMEOUT:-150}" python3 -m pytest -m gpu -q -p no:cacheprovider ${PYTEST_K:+-k "$PYTEST_K"} tests/test_gpu.py 2>&1 | tee "$OUT/pytest_gpu.log" | tail -25
# one benchmark process per key, each under its own limit: a slow key costs its own figures only
for key in ${ONLY//,/ }; do
  timeout "${BENCH_TIMEOUT:-110}" python3 -m benchmarks --device cuda --only "$key" ${BENCH_ARGS:-} --out "$OUT/bench/$key" 2>&1 \
    | tee -a "$OUT/bench.log" | grep -E '^\|' | tail -12
done
tar czf "$OUT/bench.tgz" -C "$OUT" bench && rm -rf "$OUT/bench"
