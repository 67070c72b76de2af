"""This repository's pytest configuration: the conformance plugin (``--backend``,
``--profile``, ``--examples``, ``--xfails-file``, ``--ops``) for every test run here."""

import os

pytest_plugins = ["conformance.plugin"]

# BLAS/OpenMP pools, one thread each in pytest-xdist workers (read when a worker first loads
# the library). With ``-n auto`` every core already runs a worker: a second pool thread per
# worker only contends, and a small float32 LAPACK call (GPTQ's Cholesky of a 192 x 192
# Hessian) then took up to 400x longer. Results do not depend on the thread count.
_ONE_THREAD = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def pytest_configure(config):  # type: ignore[no-untyped-def]
    """Runs in the controller before pytest-xdist starts its workers, which inherit the
    environment; an explicit setting by the user wins."""
    if getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        for name in _ONE_THREAD:
            os.environ.setdefault(name, "1")


def pytest_collection_modifyitems(items):  # type: ignore[no-untyped-def]
    """Slow tests first: with pytest-xdist they then start early instead of ending a
    run on one busy worker while the other waits."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
