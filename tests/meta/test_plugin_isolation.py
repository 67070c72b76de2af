"""Installing refquant changes nobody else's pytest sessions.

A throwaway project with its own Hypothesis profile named ``ci``, its own ``backend``
fixture and its own ``--backend`` / ``--profile`` options runs in the environment where
refquant is installed: its settings, fixture and options are its own. The conformance
plugin is loaded only when the conformance package is collected.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

_CONFTEST = '''
from hypothesis import settings

settings.register_profile("ci", max_examples=3)
settings.load_profile("ci")
THEIRS = repr(settings.default)  # what their profile gives (Hypothesis adds its own CI defaults under CI=true)


def pytest_addoption(parser):
    parser.addoption("--backend", default="theirs")
    parser.addoption("--profile", default="none")


import pytest


@pytest.fixture
def backend(request):
    return request.config.getoption("--backend")
'''

_TESTS = '''
from hypothesis import given, settings, strategies as st

from conftest import THEIRS

seen = []


@given(st.integers())
def test_property(x):
    seen.append(x)


def test_their_settings_are_untouched():
    assert len(seen) == 3  # their max_examples, not refquant's 20
    assert settings.default.max_examples == 3
    assert repr(settings.default) == THEIRS


def test_their_backend_fixture(backend):
    assert backend == "theirs"


def test_no_refquant_plugin(pytestconfig):
    # Only the entry point's loader is there, and it did not load the plugin.
    assert pytestconfig.pluginmanager.get_plugin("conformance.plugin") is None
    assert not hasattr(pytestconfig.option, "examples")
'''


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "REFQUANT_"))}
    return env


def test_other_project_keeps_its_settings_fixture_and_options(tmp_path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(_CONFTEST))
    (tmp_path / "test_theirs.py").write_text(textwrap.dedent(_TESTS))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                             "-W", "ignore::pytest.PytestConfigWarning"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout


@pytest.mark.slow
def test_conformance_package_loads_its_plugin_from_anywhere(tmp_path):
    """``pytest --pyargs conformance --backend NAME`` works outside the repository."""
    result = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "conformance", "-q", "-p", "no:cacheprovider",
                             "--backend", "reference", "--ops", "pack_ternary", "--examples", "3"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "passed" in result.stdout and "PytestUnknownMarkWarning" not in result.stdout
