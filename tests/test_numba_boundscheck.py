"""No Numba kernel reads or writes out of bounds on input that passed preparation.

The Numba backend is compiled a second time with bounds checking on every array access
(``NUMBA_BOUNDSCHECK=1``, in its own cache directory so the checked machine code never
mixes with the fast one) and the whole conformance suite runs against it: every op, every
format, with the suite's adversarial inputs (degenerate and inconsistent parameters,
zero-width shapes, tiny and huge magnitudes) going through the dispatcher's preparation
first. An out-of-bounds access raises IndexError there and fails the run.

The checked compilation is cached in ``$REFQUANT_BOUNDSCHECK_CACHE`` (default: the
temporary directory), so only the first run on a machine pays for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("REFQUANT_BOUNDSCHECK_CACHE", Path(tempfile.gettempdir()) / "refquant-numba-boundscheck"))

# proof that the flag reaches the compiler: a kernel reading one past the end must raise
_CANARY = """
import numba, numpy as np
@numba.njit  # the backend's options, less cache (a -c script has no file to cache beside)
def past_end(a):
    return a[a.size]
try:
    past_end(np.zeros(3))
except IndexError:
    print("boundscheck on")
"""


def _env() -> dict[str, str]:
    return dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(CACHE),
                PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def test_boundscheck_flag_reaches_the_compiler():
    out = subprocess.run([sys.executable, "-c", _CANARY], env=_env(), cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert "boundscheck on" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
def test_conformance_suite_with_bounds_checked_kernels():
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "conformance", "-p", "no:cacheprovider", "-q", "--no-header",
           "-x", "--backend", "numba", "--profile", "boundscheck"]
    result = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=1800)
    tail = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"bounds-checked numba backend failed the conformance suite:\n{tail}"
    assert "passed" in result.stdout, tail
