"""pytest plugin (entry point ``pytest11: refquant_conformance``).

Adds ``--backend NAME[,NAME...]`` (registered name or ``module:factory``; env var
``REFQUANT_BACKEND``), ``--profile ci|thorough|dev`` (Hypothesis profile; env var
``REFQUANT_PROFILE``; default ``ci``) and ``--xfails-file PATH`` (known failures, one
test id per line with a ``# reason``). Without ``--backend`` it does nothing to test
suites that do not ask for the ``backend`` argument; conformance tests then run
against the reference backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    settings = None

PROFILES = ("ci", "dev", "thorough", "boundscheck")

if settings is not None:
    _common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True)
    # ci: bounded and derandomized so a run is reproducible and fits the CI budget.
    settings.register_profile("ci", max_examples=20, derandomize=True, **_common)
    settings.register_profile("dev", max_examples=50, **_common)
    # few examples: tests/test_numba_boundscheck.py runs the suite with bounds-checked kernels
    settings.register_profile("boundscheck", max_examples=4, derandomize=True, **_common)
    settings.register_profile("thorough", max_examples=1000, **_common)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("refquant", "refquant conformance")
    group.addoption("--backend", action="store", default=None,
                    help="backend(s) to check: registered name or module:factory, comma-separated (default: reference)")
    group.addoption("--profile", action="store", default=None, choices=PROFILES,
                    help="Hypothesis profile: ci (bounded, derandomized; default), dev, thorough")
    group.addoption("--xfails-file", action="store", default=None,
                    help="file of known-failing test ids (one per line, '# reason' comments)")
    group.addoption("--ops", action="store", default=None,
                    help="only run conformance tests of these ops (comma-separated op names)")


def _backend_names(config: pytest.Config) -> list[str]:
    raw = config.getoption("--backend") or os.environ.get("REFQUANT_BACKEND") or "reference"
    return [name.strip() for name in raw.split(",") if name.strip()]


def pytest_configure(config: pytest.Config) -> None:
    profile = config.getoption("--profile") or os.environ.get("REFQUANT_PROFILE") or "ci"
    if settings is not None:
        settings.load_profile(profile)
    config._refquant_xfails = _read_xfails(config.getoption("--xfails-file"))  # type: ignore[attr-defined]
    config._refquant_xfails_used = set()  # type: ignore[attr-defined]


def _read_xfails(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        test_id, _, reason = line.partition("#")
        if test_id.strip():
            out[test_id.strip()] = reason.strip() or "listed in xfails file"
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "refquant_backend" not in metafunc.fixturenames:
        return
    from accel.registry import get_backend

    names = _backend_names(metafunc.config)
    # Loading errors surface here, naming the backend (BackendLoadError).
    backends = [get_backend(n) for n in names]
    metafunc.parametrize("refquant_backend", backends, ids=[b.name if ":" not in n else n for b, n in zip(backends, names)])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ops = config.getoption("--ops")
    if ops:
        wanted = {op.strip() for op in ops.split(",") if op.strip()}
        keep, drop = [], []
        for item in items:
            marker = item.get_closest_marker("op")
            (keep if marker is not None and marker.args and marker.args[0] in wanted else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    xfails: dict[str, str] = config._refquant_xfails  # type: ignore[attr-defined]
    if not xfails:
        return
    for item in items:
        for key in (item.nodeid, item.name):
            if key in xfails:
                item.add_marker(pytest.mark.xfail(reason=xfails[key], strict=True))
                config._refquant_xfails_used.add(key)  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    xfails: dict[str, str] = getattr(config, "_refquant_xfails", {})
    unused = sorted(set(xfails) - getattr(config, "_refquant_xfails_used", set()))
    if unused:
        terminalreporter.write_line("xfails-file entries that match no collected test (stale?):", yellow=True)
        for entry in unused:
            terminalreporter.write_line(f"  {entry}")
