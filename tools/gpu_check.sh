#!/usr/bin/env bash
# GPU verification of the cupy backend, for a machine with a CUDA device (at most 8
# minutes on one H200: every step's timeout is cut to what is left of a 460 s budget;
# memcheck, the slowest, runs last with what remains).
# Writes JSON + Markdown under $OUT (default ./gpu-check):
#   1. the conformance suite against `cupy` (REFQUANT_REQUIRE_GPU=1: no silent skips),
#      every op the backend claims (microscaling, ternary_matmul, the IQ grid types too);
#   2. the GPU-vs-simulator bit-for-bit test and the other `gpu` tests;
#   3. the GPU benchmarks (tests/bench/test_bench_cupy.py), rendered by
#      tests/bench/report_gpu.py into benchmarks-gpu.md (copy that to docs/);
#   4. compute-sanitizer memcheck over a short conformance subset (one or two formats of
#      each kernel file, the new MX / NVFP4 / ternary / IQ-grid kernels and the IQ grid
#      searches included).
# Each step's log and exit status are kept in $OUT/steps.jsonl; the script exits non-zero
# if any failed. Needs CuPy for the machine's CUDA, pytest-benchmark, hypothesis, g++.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check}"
mkdir -p "$OUT"
export REFQUANT_REQUIRE_GPU=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-460}"
status=0
step() {  # step NAME TIMEOUT_S CMD...: run (timeout cut to the budget left), log to $OUT/NAME.log
    local name="$1" limit="$2"; shift 2
    local left=$((BUDGET_S - SECONDS))
    if [ "$left" -lt 10 ]; then
        echo "{\"step\": \"$name\", \"rc\": 124, \"seconds\": 0, \"note\": \"budget spent\"}" >>"$OUT/steps.jsonl"
        echo "$name: skipped (budget spent)"; status=1; return
    fi
    [ "$limit" -le "$left" ] || limit=$left
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"limit_s\": $limit}" >>"$OUT/steps.jsonl"
    echo "$name: rc=$rc ($((SECONDS - t0)) s)"
    [ "$rc" -eq 0 ] || status=1
}
: >"$OUT/steps.jsonl"
"$PY" -c "import cupy; p = cupy.cuda.runtime.getDeviceProperties(0); print(p['name'].decode(), cupy.__version__)" \
    | tee "$OUT/device.txt"
# the simulator's kernels are compiled once, up front, so the timed steps do not pay g++
step warm_sim 60 "$PY" -c "from accel.cupy.sim import runtime; from accel.cupy.nvcc_check import sources; \
[runtime.load_module(p.stem) for p in sources()]"
step conformance 150 "$PY" -m conformance --backend cupy --profile ci --workers 1 \
    --json "$OUT/conformance.json" --markdown "$OUT/conformance.md"
step gpu_tests 40 "$PY" -m pytest tests/test_cuda_backends.py -q -p no:cacheprovider -m gpu
step bench 120 "$PY" -m pytest tests/bench/test_bench_cupy.py --benchmark-only -q -p no:cacheprovider \
    --benchmark-json="$OUT/bench-gpu.json"
step report 15 "$PY" tests/bench/report_gpu.py "$OUT/bench-gpu.json" --out "$OUT/benchmarks-gpu.md" \
    --json "$OUT/summary.json"
# about 110 tests: every kernel file, a few formats each (on cuda-sim: 7 CPU-s)
MEMCHECK_K='encode_float_random or decode_float_every or bnb_quantize_4bit or int8_vectorwise or test_pack
 or gptq_dequantize or mx_quantize_any or mx_dequantize_every or nvfp4_quantize or nvfp4_dequantize or ternary_matmul
 or ((test_gguf_dequantize or test_gguf_dequant_matmul) and not degenerate
     and (q4_k or q6_k or iq2_xxs or iq3_s or iq1_m or nvfp4))
 or (test_gguf_quantize and not degenerate and (iq2_xs or iq3_s or iq1_m))
 or (test_rtn_quantize and 4bit_g128) or (test_gptq_quantize and 3bit_g128) or (test_awq_quantize and 4bit_perchannel)'
MEMCHECK_K="${MEMCHECK_K//$'\n'/ }"
if command -v compute-sanitizer >/dev/null; then
    step memcheck 90 compute-sanitizer --tool memcheck --error-exitcode 1 "$PY" -m pytest --pyargs conformance \
        --backend cupy -q -p no:cacheprovider --profile ci --examples 5 -x -k "$MEMCHECK_K"
else
    echo '{"step": "memcheck", "rc": 127, "seconds": 0, "note": "compute-sanitizer not found"}' >>"$OUT/steps.jsonl"
    status=1
fi
exit $status
