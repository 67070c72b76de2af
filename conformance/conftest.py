"""Loads the conformance plugin whenever pytest collects this package.

``pytest --pyargs conformance --backend NAME`` then works from any directory without
an entry point that would load the plugin into every other project's pytest session.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # A no-op when the plugin is already loaded (-p conformance.plugin, this repo's conftest).
    pluginmanager.import_plugin("conformance.plugin")
