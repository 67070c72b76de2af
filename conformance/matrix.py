"""Run the conformance suite and build the op x format matrix, with live progress.

Each conformance test carries ``@pytest.mark.op(name)`` and (when the op has a format
axis) a ``fmt`` parameter; the plugin tags every report with its cell
``(backend, op, format)``, so the matrix is built the same way whether the tests run in
this process or in pytest-xdist workers. A cell is:

* ✅ every test of the cell passed (or xfailed as listed in the xfails file),
* ❌ at least one failed,
* ⬜ the backend does not declare the op/format (the test skipped as not implemented),
* ➖ not run (filtered out with ``--ops``).

Progress goes to the terminal while the suite runs: a line when a spec area of a
backend is done, and a heartbeat at least every ``heartbeat_s`` seconds otherwise
(tests done, the test that is running and for how long, an ETA).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

import pytest

from accel.ops import OP_SPECS
from conformance.harness import NOT_IMPLEMENTED

__all__ = ["Cell", "Matrix", "run_matrix", "run_matrices"]

PASS, FAIL, NOT_IMPL, NOT_RUN = "✅", "❌", "⬜", "➖"
_STATUS = {PASS: "pass", FAIL: "fail", NOT_IMPL: "not_implemented", NOT_RUN: "not_run"}


@dataclass
class Cell:
    passed: int = 0
    failed: int = 0
    not_implemented: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def symbol(self) -> str:
        if self.failed:
            return FAIL
        if self.passed:
            return PASS
        return NOT_IMPL


@dataclass
class Matrix:
    """The result of one backend: cells keyed by (op, format)."""

    backend: str
    cells: dict[tuple[str, str], Cell]
    exitstatus: int
    ops: frozenset[str] | None = None  # the ops that were run (None: all)
    header: str = ""

    @property
    def ok(self) -> bool:
        return self.exitstatus in (0, 5) and not any(c.failed for c in self.cells.values())

    def _symbol(self, op: str, fmt: str) -> str:
        if self.ops is not None and op not in self.ops:
            return NOT_RUN
        cell = self.cells.get((op, fmt))
        return cell.symbol if cell else NOT_IMPL

    def counts(self) -> dict[str, int]:
        """Cells by status, over every (op, format) of OP_SPECS that has conformance tests."""
        out = {"pass": 0, "fail": 0, "not_implemented": 0, "not_run": 0}
        for op, spec in OP_SPECS.items():
            for fmt in spec.formats or ("-",):
                if any(k[0] == op for k in self.cells) or (self.ops is not None and op not in self.ops):
                    out[_STATUS[self._symbol(op, fmt)]] += 1
        return out

    def verdict(self) -> str:
        c = self.counts()
        word = "PASS" if self.ok else "FAIL"
        cells = "cell" if c["pass"] == 1 else "cells"
        return (f"{self.backend}: {word}: {c['pass']} {cells} passed, {c['fail']} failed, "
                f"{c['not_implemented']} not implemented" + (f", {c['not_run']} not run" if c["not_run"] else ""))

    def to_records(self) -> list[dict[str, Any]]:
        records = []
        for (op, fmt), c in sorted(self.cells.items()):
            records.append({"backend": self.backend, "op": op, "format": fmt, "status": _STATUS[self._symbol(op, fmt)],
                            "passed": c.passed, "failed": c.failed, "not_implemented": c.not_implemented,
                            "failures": c.failures[:5]})
        return records

    def to_json(self) -> str:
        return json.dumps(self.to_records(), indent=2, ensure_ascii=False)

    def to_markdown(self) -> str:
        """One table per spec area: rows are ops, columns the formats of that area."""
        lines = [f"## Conformance matrix: backend `{self.backend}`", ""]
        if self.header:
            lines += [self.header, ""]
        lines += [f"{PASS} pass · {FAIL} fail · {NOT_IMPL} not implemented · {NOT_RUN} not run", ""]
        by_area: dict[str, list[str]] = defaultdict(list)
        for op, spec in OP_SPECS.items():
            by_area[spec.area].append(op)
        skipped_areas = []
        for area, ops in by_area.items():
            if self.ops is not None and not set(ops) & self.ops:
                skipped_areas.append(area)
                continue
            fmts: list[str] = []
            for op in ops:
                for f in OP_SPECS[op].formats or ("-",):
                    if f not in fmts:
                        fmts.append(f)
            lines += [f"### {area}", "", "| op | " + " | ".join(fmts) + " |", "|---|" + "---|" * len(fmts)]
            for op in ops:
                row = ["" if f not in (OP_SPECS[op].formats or ("-",)) else self._symbol(op, f) for f in fmts]
                lines.append(f"| {op} | " + " | ".join(row) + " |")
            lines.append("")
        if skipped_areas:
            lines += [f"Not run (--ops): {', '.join(skipped_areas)}", ""]
        untested = [op for op in OP_SPECS if not any(k[0] == op for k in self.cells)
                    and (self.ops is None or op in self.ops)]
        if untested:
            lines.append("Ops without conformance tests: " + ", ".join(untested))
        fails = [(k, c) for k, c in sorted(self.cells.items()) if c.failed]
        if fails:
            lines += ["", "### Failures", ""]
            for (op, fmt), c in fails:
                lines.append(f"- `{op}[{fmt}]`: {c.failures[0][:500] if c.failures else ''}")
        lines += ["", f"**Verdict** {self.verdict()}"]
        return "\n".join(lines)


def _area_of(nodeid: str) -> str:
    match = re.search(r"test_([A-Za-z0-9_]+)\.py::", nodeid)
    return match.group(1) if match else "other"


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class _Progress:
    """pytest plugin (main process) that builds the cells and prints progress."""

    def __init__(self, backends: list[str], write: Callable[[str], None], heartbeat_s: float) -> None:
        self.backends = backends
        self.write = write
        self.heartbeat_s = heartbeat_s
        self.cells: dict[str, dict[tuple[str, str], Cell]] = {b: defaultdict(Cell) for b in backends}
        self.totals: dict[tuple[str, str], int] = {}
        self.done: dict[tuple[str, str], int] = defaultdict(int)
        self.area_counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        self.errors: list[str] = []
        self.running: dict[str, float] = {}
        self.n_total = 0
        self.n_done = 0
        self.t0 = time.monotonic()
        self.last_output = time.monotonic()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._heartbeat, daemon=True)

    # -- output ---------------------------------------------------------------
    def _say(self, text: str) -> None:
        with self.lock:
            self.write(text)
            self.last_output = time.monotonic()

    def _heartbeat(self) -> None:
        while not self.stop.wait(1.0):
            if time.monotonic() - self.last_output < self.heartbeat_s:
                continue
            elapsed = time.monotonic() - self.t0
            eta = ""
            if self.n_done and self.n_total:
                eta = f", ETA ~{_fmt_s(elapsed / self.n_done * (self.n_total - self.n_done))}"
            running = ""
            if self.running:
                nodeid, since = min(self.running.items(), key=lambda kv: kv[1])
                running = f"; running {nodeid.split('::')[-1]} for {_fmt_s(time.monotonic() - since)}"
            self._say(f"  ... {self.n_done}/{self.n_total or '?'} tests done after {_fmt_s(elapsed)}{eta}{running}")

    # -- collection -------------------------------------------------------------
    def _backend_of(self, nodeid: str) -> str | None:
        params = nodeid.rpartition("[")[2]
        for b in sorted(self.backends, key=len, reverse=True):
            if params.startswith(b + "-") or params == b + "]":
                return b
        return None

    def _set_totals(self, nodeids: list[str]) -> None:
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for nodeid in nodeids:
            backend = self._backend_of(nodeid)
            if backend is not None:
                totals[(backend, _area_of(nodeid))] += 1
        self.totals = dict(totals)
        self.n_total = sum(totals.values())
        self._say(f"collected {self.n_total} conformance tests in {len(totals)} (backend, area) groups")

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not hasattr(session.config, "workerinput") and session.items:
            self._set_totals([item.nodeid for item in session.items])

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if not self.totals:
            self._set_totals(list(ids))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            text = str(report.longreprtext).strip().splitlines()
            self.errors.append(f"{report.nodeid or 'collection'}: {text[-1] if text else 'collection failed'}")

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        workers = getattr(session.config.option, "numprocesses", None)
        self._say(f"collecting the conformance tests{f' in {workers} worker processes' if workers else ''} ...")
        self.thread.start()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.stop.set()

    # -- results ----------------------------------------------------------------
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.running[nodeid] = time.monotonic()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        cell_id = dict(report.user_properties).get("refquant_cell")
        if report.when == "teardown":
            self.running.pop(report.nodeid, None)
            if cell_id is not None:
                self._test_done(report.nodeid, cell_id[0])
            return
        if cell_id is None:
            return
        backend, op, fmt = cell_id
        cell = self.cells.setdefault(backend, defaultdict(Cell))[(op, fmt)]
        counts = self.area_counts[(backend, _area_of(report.nodeid))]
        if not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        if report.skipped:
            text = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
            if hasattr(report, "wasxfail"):
                cell.passed += 1
                counts[0] += 1
            elif NOT_IMPLEMENTED in text:
                cell.not_implemented += 1
                counts[2] += 1
            else:
                cell.skipped += 1
        elif report.failed:
            cell.failed += 1
            counts[1] += 1
            last = str(report.longreprtext).strip().splitlines()[-1] if report.longreprtext else "failed"
            cell.failures.append(last)
            self._say(f"  FAILED {report.nodeid}: {last[:200]}")
        elif report.passed:
            cell.passed += 1
            counts[0] += 1

    def _test_done(self, nodeid: str, backend: str) -> None:
        area = _area_of(nodeid)
        key = (backend, area)
        self.done[key] += 1
        self.n_done += 1
        if self.done[key] == self.totals.get(key, -1):
            ok, failed, not_impl = self.area_counts[key]
            elapsed = time.monotonic() - self.t0
            self._say(f"  {backend:>12} · {area:<12} {self.done[key]:4d} tests: {ok} passed, {failed} failed, "
                      f"{not_impl} not implemented   [{self.n_done}/{self.n_total}, {_fmt_s(elapsed)}]")


def _terminal_writer() -> Callable[[str], None]:
    """Write to the terminal even while pytest captures file descriptor 1."""
    try:
        fd = os.dup(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (e.g. a notebook)
        stream: TextIO = sys.stdout
        return lambda text: (stream.write(text + "\n"), stream.flush())  # type: ignore[func-returns-value]
    return lambda text: os.write(fd, (text + "\n").encode())  # type: ignore[func-returns-value]


def run_matrices(backends: list[str], *, profile: str = "ci", examples: int | None = None,
                 xfails_file: str | None = None, ops: list[str] | None = None, workers: int = 0,
                 shrink: bool = True,
                 verbose: bool = False, heartbeat_s: float = 10.0, headers: dict[str, str] | None = None,
                 write: Callable[[str], None] | None = None) -> tuple[list[Matrix], str | None]:
    """Run the conformance suite once for all ``backends``: one matrix each, and the
    reason the suite could not run (collection error, usage error), or None.

    ``workers`` > 1 runs the tests in that many pytest-xdist processes (when
    pytest-xdist is installed); ``shrink=False`` passes ``--no-shrink`` (failures are
    reported unshrunk: a faster pass/fail verdict). Progress is written with ``write`` (default: the
    terminal), never silent for more than ``heartbeat_s`` seconds.
    """
    write = write or _terminal_writer()
    progress = _Progress(backends, write, heartbeat_s)
    args = ["--pyargs", "conformance", "--backend", ",".join(backends), "--profile", profile,
            "-p", "no:cacheprovider"]
    if examples is not None:
        args += ["--examples", str(examples)]
    if not shrink:
        args += ["--no-shrink"]
    if not verbose:
        args += ["-qq", "--no-header", "-rN", "--disable-warnings", "--tb=line"]
    if xfails_file:
        args += ["--xfails-file", xfails_file]
    if ops:
        args += ["--ops", ",".join(ops)]
    if workers > 1:
        args += ["-n", str(workers)]
    if verbose:
        status = pytest.main(args, plugins=[progress])
    else:
        # pytest's own dots and summary are replaced by the progress lines and the matrix.
        with open(os.devnull, "w") as devnull:
            saved = sys.stdout
            sys.stdout = devnull
            try:
                status = pytest.main(args, plugins=[progress])
            finally:
                sys.stdout = saved
    progress.stop.set()
    wanted = frozenset(ops) if ops else None
    matrices = [Matrix(backend=b, cells=dict(progress.cells.get(b, {})), exitstatus=int(status), ops=wanted,
                       header=(headers or {}).get(b, "")) for b in backends]
    error = None
    if progress.errors:
        error = progress.errors[0] + (f" (and {len(progress.errors) - 1} more)" if len(progress.errors) > 1 else "")
    elif int(status) in (2, 3, 4):
        error = f"pytest exited with status {int(status)} ({pytest.ExitCode(int(status)).name}); rerun with --verbose"
    elif progress.n_total == 0 and int(status) == 5:
        error = "no conformance test was collected (check --ops)"
    return matrices, error


def run_matrix(backend: str, *, profile: str = "ci", xfails_file: str | None = None,
               extra_args: list[str] | None = None, quiet: bool = True) -> Matrix:
    """Run the conformance suite against one ``backend`` and return its matrix.

    ``extra_args`` may hold ``["--ops", "a,b"]`` (kept for callers of the first version).
    """
    ops = None
    if extra_args:
        if len(extra_args) != 2 or extra_args[0] != "--ops":
            raise ValueError(f"extra_args={extra_args!r}: only ['--ops', 'a,b'] is supported")
        ops = [o.strip() for o in extra_args[1].split(",") if o.strip()]
    matrices, error = run_matrices([backend], profile=profile, xfails_file=xfails_file, ops=ops, verbose=not quiet)
    if error:
        raise RuntimeError(f"the conformance suite could not run for backend {backend!r}: {error}")
    return matrices[0]
