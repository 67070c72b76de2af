"""This repository's pytest configuration: the conformance plugin (``--backend``,
``--profile``, ``--examples``, ``--xfails-file``, ``--ops``) for every test run here."""

pytest_plugins = ["conformance.plugin"]


def pytest_collection_modifyitems(items):  # type: ignore[no-untyped-def]
    """Slow tests first: with pytest-xdist they then start early instead of ending a
    run on one busy worker while the other waits."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
