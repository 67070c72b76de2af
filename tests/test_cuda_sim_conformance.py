"""CI runs the conformance suite against ``cuda-sim``: the CUDA kernels of
accel/cupy/src, executed on the CPU by the SIMT simulator, must pass every cell the
CUDA backends claim (the CI profile; ``--profile thorough`` for sweeps).

The suite runs in a subprocess (``python -m conformance --backend cuda-sim``), so its
Hypothesis settings and plugin state stay apart from this run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from accel.cupy import cuda_backend
from accel.cupy.sim import runtime

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(runtime.compiler() is None, reason="no C++ compiler (g++) for cuda-sim")
def test_cuda_sim_passes_every_claimed_cell(tmp_path):
    out = tmp_path / "matrix.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "conformance", "--backend", "cuda-sim", "--profile", "ci",
                           "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    records = json.loads(out.read_text())
    status = {(r["op"], r["format"]): r["status"] for r in records}
    claimed = {(op, fmt) for op, (_, cap) in cuda_backend._OPS.items()
               for fmt in (sorted(cap.formats) if cap.formats is not None else ["-"])}
    failed = sorted((op, fmt) for (op, fmt), s in status.items() if s == "fail")
    assert not failed, failed
    missing = sorted((op, str(fmt)) for op, fmt in claimed if status.get((op, fmt)) != "pass")
    assert not missing, f"claimed but not passed: {missing}"
