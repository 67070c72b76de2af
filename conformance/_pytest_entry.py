"""The ``pytest11`` entry point: it loads the conformance plugin only when asked.

Installing refquant must not change other projects' pytest sessions, so this module
defines no option, fixture or setting of its own. It loads ``conformance.plugin`` when
the command line collects the conformance package (``pytest --pyargs conformance ...``):
options such as ``--backend`` must be known before pytest parses the command line, which
is earlier than the package's ``conftest.py`` is found.
"""

from __future__ import annotations

from typing import Any


def _collects_conformance(args: list[str]) -> bool:
    if "--pyargs" not in args:
        return False
    return any(a == "conformance" or a.startswith(("conformance.", "conformance::")) for a in args)


def pytest_load_initial_conftests(early_config: Any, parser: Any, args: list[str]) -> None:
    if _collects_conformance([str(a) for a in args]):
        early_config.pluginmanager.import_plugin("conformance.plugin")
