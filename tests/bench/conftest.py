"""Benchmarks run only when asked for: ``pytest tests/bench --benchmark-only``.

In the default test run (``pytest``) every test in this folder is skipped, so the
suite stays fast; performance is measured here, never asserted in unit tests. At the end of
a run, after pytest-benchmark's timing table, GB/s and the fraction of this machine's copy
bandwidth are printed for every benchmark that recorded them (``_bandwidth.record``).
"""

from __future__ import annotations

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    if config.getoption("--benchmark-only", default=False):
        return
    skip = pytest.mark.skip(reason="benchmark: run with `pytest tests/bench --benchmark-only`")
    for item in items:
        if "tests/bench/" in item.nodeid.replace("\\", "/"):
            item.add_marker(skip)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    from tests.bench._bandwidth import summary_lines

    session = getattr(config, "_benchmarksession", None)  # pytest-benchmark's, when it is installed
    lines = summary_lines(getattr(session, "benchmarks", ()))
    if lines:
        terminalreporter.section("GB/s and fraction of copy bandwidth")
        for line in lines:
            terminalreporter.write_line(line)


# The GGUF benchmark modules share their inputs; each module sets its own SHAPE.
@pytest.fixture(scope="module")
def weight(request):  # type: ignore[no-untyped-def]
    """float32 weights of the module's ``SHAPE``, standard normal (seed 0)."""
    return np.random.default_rng(0).standard_normal(request.module.SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def imatrix(request):  # type: ignore[no-untyped-def]
    """A positive importance vector over the module's ``SHAPE[1]`` input columns (seed 1)."""
    return np.random.default_rng(1).gamma(1.0, 1.0, request.module.SHAPE[1]).astype(np.float32)
