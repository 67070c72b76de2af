"""Run the conformance suite and build the op x format matrix.

Each conformance test carries ``@pytest.mark.op(name)`` and (when the op has a format
axis) a ``fmt`` parameter. A cell is:

* ✅ every test of the cell passed (or xfailed as listed in the xfails file),
* ❌ at least one failed,
* ⬜ the backend does not declare the op/format (the test skipped as not implemented).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from accel.ops import OP_SPECS
from conformance.harness import NOT_IMPLEMENTED

__all__ = ["Cell", "Matrix", "run_matrix"]

PASS, FAIL, NOT_IMPL = "✅", "❌", "⬜"


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
    backend: str
    cells: dict[tuple[str, str], Cell]
    exitstatus: int

    @property
    def ok(self) -> bool:
        return self.exitstatus in (0, 5) and not any(c.failed for c in self.cells.values())

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {"backend": self.backend, "op": op, "format": fmt, "status": {PASS: "pass", FAIL: "fail", NOT_IMPL: "not_implemented"}[c.symbol],
             "passed": c.passed, "failed": c.failed, "not_implemented": c.not_implemented, "failures": c.failures[:5]}
            for (op, fmt), c in sorted(self.cells.items())
        ]

    def to_json(self) -> str:
        return json.dumps(self.to_records(), indent=2, ensure_ascii=False)

    def to_markdown(self) -> str:
        """One table per spec area: rows are ops, columns the formats of that area."""
        lines = [f"## Conformance matrix: backend `{self.backend}`", "",
                 f"{PASS} pass · {FAIL} fail · {NOT_IMPL} not implemented", ""]
        by_area: dict[str, list[str]] = defaultdict(list)
        for op, spec in OP_SPECS.items():
            by_area[spec.area].append(op)
        for area, ops in by_area.items():
            fmts: list[str] = []
            for op in ops:
                for f in OP_SPECS[op].formats or ("-",):
                    if f not in fmts:
                        fmts.append(f)
            lines += [f"### {area}", "", "| op | " + " | ".join(fmts) + " |", "|---|" + "---|" * len(fmts)]
            for op in ops:
                row = []
                for f in fmts:
                    if f not in (OP_SPECS[op].formats or ("-",)):
                        row.append("")
                        continue
                    cell = self.cells.get((op, f))
                    row.append(cell.symbol if cell else NOT_IMPL)
                lines.append(f"| {op} | " + " | ".join(row) + " |")
            lines.append("")
        untested = [op for op in OP_SPECS if not any(k[0] == op for k in self.cells)]
        if untested:
            lines.append("Ops without conformance tests: " + ", ".join(untested))
        fails = [(k, c) for k, c in sorted(self.cells.items()) if c.failed]
        if fails:
            lines += ["", "### Failures", ""]
            for (op, fmt), c in fails:
                lines.append(f"- `{op}[{fmt}]`: {c.failures[0][:500] if c.failures else ''}")
        return "\n".join(lines)


class _Collector:
    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], Cell] = defaultdict(Cell)

    @staticmethod
    def _key(item: pytest.Item) -> tuple[str, str] | None:
        marker = item.get_closest_marker("op")
        if marker is None or not marker.args:
            return None
        params = getattr(getattr(item, "callspec", None), "params", {})
        fmt = params.get("fmt", "-")
        return marker.args[0], str(fmt)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any):  # type: ignore[no-untyped-def]
        outcome = yield
        report = outcome.get_result()
        key = self._key(item)
        if key is None:
            return
        cell = self.cells[key]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.skipped:
                text = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
                if hasattr(report, "wasxfail"):
                    cell.passed += 1
                elif NOT_IMPLEMENTED in text:
                    cell.not_implemented += 1
                else:
                    cell.skipped += 1
            elif report.failed:
                cell.failed += 1
                cell.failures.append(str(report.longreprtext).strip().splitlines()[-1] if report.longreprtext else "failed")
            elif report.passed:
                cell.passed += 1


def run_matrix(backend: str, *, profile: str = "ci", xfails_file: str | None = None,
               extra_args: list[str] | None = None, quiet: bool = True) -> Matrix:
    """Run the conformance suite against ``backend`` and return its matrix."""
    collector = _Collector()
    args = ["--pyargs", "conformance", "--backend", backend, "--profile", profile, "-p", "no:cacheprovider"]
    if quiet:
        args += ["-q", "--no-header", "-rN"]
    if xfails_file:
        args += ["--xfails-file", xfails_file]
    args += extra_args or []
    status = pytest.main(args, plugins=[collector])
    return Matrix(backend=backend, cells=dict(collector.cells), exitstatus=int(status))
