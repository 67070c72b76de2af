"""Benchmarks run only when asked for: ``pytest tests/bench --benchmark-only``.

In the default test run (``pytest``) every test in this folder is skipped, so the
suite stays fast; performance is measured here, never asserted in unit tests.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    if config.getoption("--benchmark-only", default=False):
        return
    skip = pytest.mark.skip(reason="benchmark: run with `pytest tests/bench --benchmark-only`")
    for item in items:
        if "tests/bench/" in item.nodeid.replace("\\", "/"):
            item.add_marker(skip)
