"""Every deliberately broken backend must fail the conformance suite.

Each mutant overrides one or a few ops of the reference backend; the suite is run
against it (only the tests of the overridden ops, via the plugin's ``--ops``) in a
subprocess, exactly as a third party would run it, and must exit with failures.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conformance.mutants import all_mutants, target_of

MUTANTS = all_mutants()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_suite_catches_mutant(name):
    factory = MUTANTS[name]
    backend = factory()
    ops = sorted(backend._overrides)
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "conformance", "-p", "no:cacheprovider", "-q",
           "--no-header", "-x", "--backend", target_of(factory), "--ops", ",".join(ops), "--profile", "ci",
           "--no-shrink"]  # a verdict is all this needs: shrinking a large failing array took minutes
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 1, f"mutant {name} (ops {ops}) was not caught (exit {result.returncode}):\n{tail}"
    assert f"mutant-{name}" in result.stdout, f"failure did not come from the mutant backend:\n{tail}"


def test_mutants_are_loadable_by_target_string():
    import accel

    for name, factory in MUTANTS.items():
        backend = accel.get_backend(target_of(factory))
        assert backend.name == f"mutant-{name}"
        assert backend._overrides, name


def test_no_shrink_settings_drop_only_the_shrink_phases():
    from hypothesis import Phase

    from conformance.plugin import hypothesis_settings

    shrinking, fast = hypothesis_settings("ci"), hypothesis_settings("ci", shrink=False)
    assert Phase.shrink in shrinking.phases and Phase.generate in shrinking.phases
    assert set(shrinking.phases) - set(fast.phases) == {Phase.shrink, Phase.explain}
    assert (fast.max_examples, fast.derandomize) == (shrinking.max_examples, shrinking.derandomize)
