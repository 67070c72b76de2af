"""Measure whole-checkpoint quantization at scale: peak RSS on a >= 8 GB checkpoint, and
throughput serial vs a 2-worker Dask cluster (issue 16). Not a test: it takes minutes.

    python tools/checkpoint_scale.py --dir /tmp/scale [--gb 8] [--backend numba] [--sample-layers 2]

1. Writes a synthetic LLaMA-shaped bf16 checkpoint of at least ``--gb`` GB lazily
   (refquant.checkpoint.synthetic: a few MB of memory), LLaMA-7B widths (hidden 4096,
   ffn 11008, vocab 32000), as many blocks as needed, 4 shards.
2. Runs ``refquant quantize SRC --to q4_k_m`` on it in a child process and reports its
   peak resident set (``getrusage(RUSAGE_CHILDREN).ru_maxrss``), wall time and MB/s.
3. On a smaller checkpoint of ``--sample-layers`` blocks: wall time serial, and with a
   ``LocalCluster`` of 2 single-threaded worker processes (``--dask``).

Prints one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from refquant.checkpoint import synthetic  # noqa: E402


def make(folder: Path, n_layers: int) -> tuple[Path, int]:
    cfg = synthetic.llama_config(hidden=4096, n_layers=n_layers, n_heads=32, n_kv_heads=32, intermediate=11008,
                                 vocab=32000, dtype="bfloat16")
    nbytes = 2 * sum(int(__import__("math").prod(s)) for s in synthetic.llama_tensor_shapes(cfg).values())
    if not (folder / "config.json").is_file():
        t = time.perf_counter()
        synthetic.write_llama(folder, cfg, n_shards=4)
        print(f"wrote {folder} ({nbytes / 1e9:.2f} GB) in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    return folder, nbytes


def run(args: list[str]) -> dict:
    """Run ``python -m refquant quantize ...`` in a fresh child; wall time and its peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "refquant", "quantize", *args], env=env, check=True)
    wall = time.perf_counter() - t
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak_kib / 1024, 1),
            "peak_rss_is_this_child": peak_kib > before}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--gb", type=float, default=8.0)
    p.add_argument("--recipe", default="q4_k_m")
    p.add_argument("--backend", default="numba", help="'reference' for refquant.gguf.quantize (slow)")
    p.add_argument("--sample-layers", type=int, default=2)
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    per_layer = 2 * (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096)
    n_layers = max(1, int(-(-(args.gb * 1e9 - 2 * 2 * 32000 * 4096) // per_layer)))
    out: dict = {"recipe": args.recipe, "backend": args.backend, "cpus": os.cpu_count(),
                 "load_avg_start": os.getloadavg()}
    backend = ["--backend", args.backend] if args.backend != "reference" else []
    if not args.skip_big:
        src, nbytes = make(args.dir / f"llama-{n_layers}l", n_layers)
        dst = args.dir / f"big-{args.recipe}.gguf"
        r = run([str(src), "--to", args.recipe, "--out", str(dst), "--restart", *backend])
        out["big"] = {"layers": n_layers, "source_gb": round(nbytes / 1e9, 2), **r,
                      "mb_per_s": round(nbytes / 1e6 / r["wall_s"], 1), "output_gb": round(dst.stat().st_size / 1e9, 2)}
        dst.unlink()
    if args.skip_throughput:
        print(json.dumps(out, indent=2))
        return
    src, nbytes = make(args.dir / f"llama-{args.sample_layers}l", args.sample_layers)
    serial = run([str(src), "--to", args.recipe, "--out", str(args.dir / "s.gguf"), "-q", "--restart", *backend])
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = run([str(src), "--to", args.recipe, "--out", str(args.dir / "d.gguf"), "-q", "--restart",
                    "--dask", cluster.scheduler_address, *backend])
    same = (args.dir / "s.gguf").read_bytes() == (args.dir / "d.gguf").read_bytes()
    out["throughput"] = {"source_gb": round(nbytes / 1e9, 2),
                         "serial_mb_per_s": round(nbytes / 1e6 / serial["wall_s"], 1),
                         "dask2_mb_per_s": round(nbytes / 1e6 / dask["wall_s"], 1),
                         "serial_wall_s": serial["wall_s"], "dask2_wall_s": dask["wall_s"],
                         "byte_identical": same}
    out["load_avg_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
