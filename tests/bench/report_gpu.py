"""Render the GPU benchmark JSON (``tests/bench/test_bench_cupy.py``, pytest-benchmark
``--benchmark-json``) into Markdown and a summary JSON:

    python tests/bench/report_gpu.py bench-gpu.json --out docs/benchmarks-gpu.md --json summary.json

One row per benchmark: time (CUDA events, best of the rounds), GB/s (bytes read +
written), that as a fraction of the device copy bandwidth measured in the same run, and
whether the issue-12 target holds (streaming quantize / dequantize >= 80% of copy
bandwidth, fused 4-bit GEMV >= 70%, K-quant quantize >= 100x the Numba backend on 2
threads; the searches make K-quant quantize compute-bound, so it has no bandwidth target).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

TARGETS = {"gemv": 0.70, "stream": 0.80}


SPEEDUP_TARGET = 100.0


def _target(name: str) -> float | None:
    if "kquant" in name:
        return None
    if "gemv" in name:
        return TARGETS["gemv"]
    if any(k in name for k in ("quantize", "dequantize", "encode", "decode")):
        return TARGETS["stream"]
    return None


def summarize(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        target = _target(b["name"])
        frac = info.get("fraction_of_copy")
        rows.append({"name": b["name"], "seconds": info.get("seconds_cuda_events"), "GB/s": info.get("GB/s"),
                     "copy_GB/s": info.get("copy_GB/s"), "fraction_of_copy": frac, "target": target,
                     "met": None if target is None or frac is None else frac >= target,
                     "TOPS": info.get("TOPS"), "speedup": info.get("speedup_vs_numba_2_threads")})
        if rows[-1]["speedup"] is not None:
            rows[-1]["met"] = rows[-1]["speedup"] >= SPEEDUP_TARGET
    return rows


def render(rows: list[dict[str, Any]], machine: str) -> str:
    lines = ["# GPU benchmarks (cupy backend)", "", f"Machine: {machine}", "",
             "| benchmark | time (us) | GB/s | of copy | target | met |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        t = "" if r["seconds"] is None else f"{r['seconds'] * 1e6:.1f}"
        frac = "" if r["fraction_of_copy"] is None else f"{100 * r['fraction_of_copy']:.1f}%"
        target = "" if r["target"] is None else f">= {100 * r['target']:.0f}%"
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        extra = f" ({r['TOPS']} TOPS)" if r.get("TOPS") else ""
        if r.get("speedup") is not None:
            target, extra = f">= {SPEEDUP_TARGET:.0f}x Numba", f" ({r['speedup']}x Numba on 2 threads)"
        lines.append(f"| {r['name']}{extra} | {t} | {r['GB/s'] or ''} | {frac} | {target} | {met} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_file")
    parser.add_argument("--out", default="benchmarks-gpu.md")
    parser.add_argument("--json", dest="summary", default=None)
    args = parser.parse_args()
    data = json.loads(Path(args.json_file).read_text())
    rows = summarize(data)
    machine = data.get("machine_info", {}).get("node", "?")
    Path(args.out).write_text(render(rows, machine))
    if args.summary:
        Path(args.summary).write_text(json.dumps(rows, indent=1))
    print(render(rows, machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
