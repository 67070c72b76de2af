"""This repository's pytest configuration: the conformance plugin (``--backend``,
``--profile``, ``--examples``, ``--xfails-file``, ``--ops``) for every test run here."""

pytest_plugins = ["conformance.plugin"]
