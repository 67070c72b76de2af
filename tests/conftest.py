"""Shared test configuration. Hypothesis profiles (ci / dev / thorough) are registered
by the conformance plugin (``conformance/plugin.py``) and selected with ``--profile``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator: tests never touch NumPy's global RNG."""
    return np.random.default_rng(20261127)


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """GPU tests skip cleanly without a device unless REFQUANT_REQUIRE_GPU=1."""
    if os.environ.get("REFQUANT_REQUIRE_GPU") == "1":
        return
    try:
        import cupy  # noqa: F401

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="no CUDA device (set REFQUANT_REQUIRE_GPU=1 to make this a failure)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
