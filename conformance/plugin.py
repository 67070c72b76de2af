"""pytest plugin of the conformance suite. It is loaded only when asked for.

Nothing is installed into other projects' pytest sessions: there is no ``pytest11``
entry point. The plugin is loaded

* by ``conformance/conftest.py`` whenever pytest collects the conformance package
  (``pytest --pyargs conformance ...``, ``python -m conformance``),
* by this repository's root ``conftest.py``, or explicitly with ``-p conformance.plugin``.

Options: ``--backend NAME[,NAME...]`` (registered name or ``module:factory``; env var
``REFQUANT_BACKEND``; default ``reference``), ``--profile ci|dev|thorough`` (env var
``REFQUANT_PROFILE``, ini option ``refquant_profile``), ``--examples N`` (Hypothesis examples per test, overriding the
profile), ``--no-shrink`` (a failing property test reports its first failing example,
unshrunk), ``--xfails-file PATH`` (known failures, one test id per line with a
``# reason``) and ``--ops a,b`` (only the conformance tests of these ops).

What it changes, and only then:

* conformance tests (those carrying ``@pytest.mark.op``) run under the chosen refquant
  profile (``ci`` when none is chosen), applied to those tests alone;
* ``--profile`` / ``--examples`` / ``REFQUANT_PROFILE`` also load that profile as the
  session's Hypothesis default, because the user asked for it;
* the ``refquant_backend`` argument (a name no other project uses) is parametrized over
  the chosen backends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

try:
    from hypothesis import HealthCheck, Phase, settings
except ImportError:  # pragma: no cover - hypothesis comes with the conformance extra
    settings = None  # type: ignore[assignment]

PROFILES = ("ci", "dev", "thorough", "boundscheck")
DEFAULT_PROFILE = "ci"
BACKEND_ARG = "refquant_backend"
# (max_examples, derandomize). ci is bounded and derandomized so that a run is
# reproducible and fits the CI budget; thorough is for local sweeps.
# boundscheck: few examples, for tests/test_numba_boundscheck.py (the suite on bounds-checked kernels).
_PROFILE_SETTINGS = {"ci": (20, True), "dev": (50, False), "thorough": (1000, False), "boundscheck": (4, True)}

MARKERS = (
    "op(name): the Backend op a conformance test checks (refquant conformance suite)",
    "slow: long-running test (still run by CI)",
    "gpu: needs a CUDA device and CuPy; skipped without one unless REFQUANT_REQUIRE_GPU=1",
)


def _profile_name(name: str) -> str:
    # Namespaced so that loading the plugin never replaces a project's own "ci" profile.
    return f"refquant-{name}"


def hypothesis_settings(profile: str, examples: int | None = None, shrink: bool = True) -> Any:
    """The Hypothesis ``settings`` object of a refquant profile (``examples`` overrides its size).

    ``shrink=False`` drops Hypothesis' shrink and explain phases: a failing test reports the
    first failing example it generated, as found. Shrinking a large failing array can take
    minutes; a pass/fail gate (CI on a backend known to be broken, the mutant tests) does
    not need the minimal example.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}: expected one of {', '.join(PROFILES)}")
    if examples is not None and examples < 1:
        raise ValueError(f"examples={examples!r}: expected a positive number of Hypothesis examples")
    max_examples, derandomize = _PROFILE_SETTINGS[profile]
    phases = settings.default.phases
    if not shrink:
        phases = tuple(p for p in phases if p not in (Phase.shrink, Phase.explain))
    return settings(
        max_examples=examples or max_examples,
        phases=phases,
        derandomize=derandomize,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("refquant", "refquant conformance")
    group.addoption("--backend", action="store", default=None,
                    help="backend(s) to check: registered name or module:factory, comma-separated (default: reference)")
    group.addoption("--profile", action="store", default=None, choices=PROFILES,
                    help="Hypothesis profile: ci (bounded, derandomized; the default for conformance tests), "
                         "dev, thorough")
    group.addoption("--examples", action="store", type=int, default=None,
                    help="Hypothesis examples per property test (overrides the profile's number)")
    group.addoption("--no-shrink", action="store_true", default=False,
                    help="report the first failing example as found, without shrinking it (faster pass/fail)")
    group.addoption("--xfails-file", action="store", default=None,
                    help="file of known-failing test ids (one per line, '# reason' comments)")
    group.addoption("--ops", action="store", default=None,
                    help="only run conformance tests of these ops (comma-separated op names)")
    parser.addini("refquant_profile", "Hypothesis profile of the whole session when --profile is not given "
                  "(ci, dev, thorough; empty: conformance tests only, under ci)", default="")


def _backend_names(config: pytest.Config) -> list[str]:
    raw = config.getoption("--backend") or os.environ.get("REFQUANT_BACKEND") or "reference"
    return [name.strip() for name in raw.split(",") if name.strip()]


def _chosen_profile(config: pytest.Config) -> str | None:
    profile = (config.getoption("--profile") or os.environ.get("REFQUANT_PROFILE")
               or str(config.getini("refquant_profile") or "") or None)
    if profile is not None and profile not in PROFILES:
        raise pytest.UsageError(f"refquant profile {profile!r} (REFQUANT_PROFILE or the refquant_profile ini "
                                f"option): expected one of {', '.join(PROFILES)}")
    return profile


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    asked = _chosen_profile(config)
    examples = config.getoption("--examples")
    shrink = not config.getoption("--no-shrink")
    if settings is not None:
        chosen = hypothesis_settings(asked or DEFAULT_PROFILE, examples, shrink)
        config._refquant_settings = chosen  # type: ignore[attr-defined]
        if asked is not None or examples is not None or not shrink:
            # Asked for by name: the whole session runs under it (property tests bind
            # their settings when their module is imported, so this is the moment).
            settings.register_profile(_profile_name(asked or DEFAULT_PROFILE), chosen)
            settings.load_profile(_profile_name(asked or DEFAULT_PROFILE))
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
    if BACKEND_ARG not in metafunc.fixturenames:
        return
    from accel.registry import get_backend

    names = _backend_names(metafunc.config)
    # Loading errors surface here, naming the backend (BackendLoadError).
    backends = [get_backend(n) for n in names]
    ids = [b.name if ":" not in n else n for b, n in zip(backends, names)]
    known = metafunc.config.__dict__.setdefault("_refquant_backend_ids", {})
    known.update({id(b): i for b, i in zip(backends, ids)})
    metafunc.parametrize(BACKEND_ARG, backends, ids=ids)


def _apply_profile(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Conformance tests run under the refquant profile, whatever the session default is."""
    chosen = getattr(config, "_refquant_settings", None)
    if chosen is None:
        return
    seen: set[int] = set()
    for item in items:
        fn = getattr(item, "obj", None)
        if item.get_closest_marker("op") is None or not getattr(fn, "is_hypothesis_test", False):
            continue
        if id(fn) not in seen:
            seen.add(id(fn))
            chosen(fn)  # settings(...)(test) after @given: public Hypothesis API


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _apply_profile(config, items)
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


def _cell_of(item: pytest.Item) -> tuple[str, str, str] | None:
    """(backend id, op, format) of a conformance test, or None for any other test."""
    marker = item.get_closest_marker("op")
    params = getattr(getattr(item, "callspec", None), "params", {})
    if marker is None or not marker.args or BACKEND_ARG not in params:
        return None
    backend = params[BACKEND_ARG]
    name = getattr(item.config, "_refquant_backend_ids", {}).get(id(backend), getattr(backend, "name", str(backend)))
    return str(name), str(marker.args[0]), str(params.get("fmt", "-"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any):  # type: ignore[no-untyped-def]
    """Tag each conformance report with its matrix cell, so that the matrix runner can
    read it in the main process also when pytest-xdist runs the tests in workers."""
    outcome = yield
    cell = _cell_of(item)
    if cell is not None:
        outcome.get_result().user_properties.append(("refquant_cell", cell))
