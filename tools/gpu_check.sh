#!/usr/bin/env bash
# GPU verification of the cupy backend, for a machine with a CUDA device (at most 8
# minutes on one H200). Writes JSON + Markdown under $OUT (default ./gpu-check):
#   1. the conformance suite against `cupy` (REFQUANT_REQUIRE_GPU=1: no silent skips);
#   2. compute-sanitizer memcheck over a short conformance subset;
#   3. the GPU benchmarks (tests/bench/test_bench_cupy.py), rendered by
#      tests/bench/report_gpu.py into benchmarks-gpu.md (copy that to docs/).
# Each step's log and exit status are kept; the script exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check}"
mkdir -p "$OUT"
export REFQUANT_REQUIRE_GPU=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
status=0
step() {  # step NAME TIMEOUT_S CMD...: run, log to $OUT/NAME.log, record the status
    local name="$1" limit="$2"; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0))}" >>"$OUT/steps.jsonl"
    echo "$name: rc=$rc ($((SECONDS - t0)) s)"
    [ "$rc" -eq 0 ] || status=1
}
: >"$OUT/steps.jsonl"
"$PY" -c "import cupy; p = cupy.cuda.runtime.getDeviceProperties(0); print(p['name'].decode(), cupy.__version__)" \
    | tee "$OUT/device.txt"
step conformance 180 "$PY" -m pytest --pyargs conformance --backend cupy -q -p no:cacheprovider \
    --junitxml="$OUT/conformance.xml"
step gpu_tests 60 "$PY" -m pytest tests/test_cuda_backends.py -q -p no:cacheprovider -m gpu
if command -v compute-sanitizer >/dev/null; then
    step memcheck 120 compute-sanitizer --tool memcheck --error-exitcode 1 "$PY" -m pytest --pyargs conformance \
        --backend cupy -q -p no:cacheprovider --profile ci \
        -k "encode_float_random or decode_float_every or bnb_quantize_4bit or int8_vectorwise or gguf_dequantize or gguf_dequant_matmul or test_pack or gptq_dequantize"
else
    echo '{"step": "memcheck", "rc": 127, "seconds": 0, "note": "compute-sanitizer not found"}' >>"$OUT/steps.jsonl"
    status=1
fi
step bench 120 "$PY" -m pytest tests/bench/test_bench_cupy.py --benchmark-only -q -p no:cacheprovider \
    --benchmark-json="$OUT/bench-gpu.json"
step report 20 "$PY" tests/bench/report_gpu.py "$OUT/bench-gpu.json" --out "$OUT/benchmarks-gpu.md" \
    --json "$OUT/summary.json"
exit $status
