"""Compile every CUDA source of ``accel/cupy/src`` into the project's kernel caches:
the cuda-sim shared objects (g++) and the nvcc/ptxas reports (sm_80 and sm_90), both
under ``$REFQUANT_CACHE_DIR`` (default ``~/.cache/refquant``) and keyed by the sources'
hashes, so that tests and backends afterwards load instead of compiling.

``.ci/run`` runs it while the oldest-releases tests run, so that the main test command
does not spend its budget compiling; on a developer's machine the first test run fills
the same caches. Either compiler may be absent: its part is skipped with a message.

Usage: ``python tools/build_kernel_caches.py [--jobs N]``; exit status 1 if a source fails
to compile.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from accel.cupy import nvcc_check  # noqa: E402
from accel.cupy.sim import runtime  # noqa: E402


def _sim(path: Path) -> str:
    runtime.load_module(path)
    return f"cuda-sim {path.name}: ok"


def _nvcc(path: Path) -> str:
    report = nvcc_check.compile_file(path)
    if not report.ok:
        raise RuntimeError(f"nvcc {path.name} failed:\n{report.errors[-2000:]}")
    return f"nvcc {path.name}: ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="compilers run at once (default 2)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected at least 1")
    tasks = []
    if runtime.compiler() is None:
        print("no C++ compiler: cuda-sim objects not built")
    else:
        tasks += [(_sim, path) for path in nvcc_check.sources()]
    if nvcc_check.nvcc() is None:
        print("nvcc not found: nvcc reports not built")
    else:
        tasks += [(_nvcc, path) for path in nvcc_check.sources()]
    start, status = time.perf_counter(), 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(fn, path) for fn, path in tasks]
        for future in futures:
            try:
                print(future.result(), flush=True)
            except Exception as exc:  # report every failure, then fail
                print(exc, flush=True)
                status = 1
    print(f"{len(tasks)} compilations checked in {time.perf_counter() - start:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
