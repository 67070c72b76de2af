"""Render the op list of docs/backends.md from ``accel.ops.OP_SPECS``.

The guide's section between ``<!-- ops:begin -->`` and ``<!-- ops:end -->`` is this
script's output; ``tests/test_examples.py`` fails when it differs from the table, so a
new op cannot be missing from the guide.

    python tools/backend_ops_doc.py           # rewrite the section in docs/backends.md
    python tools/backend_ops_doc.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BEGIN, END = "<!-- ops:begin -->", "<!-- ops:end -->"
GUIDE = Path(__file__).resolve().parent.parent / "docs" / "backends.md"


def render() -> str:
    """The op list, grouped by spec area in OP_SPECS order (Markdown)."""
    from accel.ops import OP_SPECS

    areas: dict[str, list[str]] = {}
    for spec in OP_SPECS.values():
        formats = ", ".join(f"`{f}`" for f in spec.formats) if spec.formats else "none (one matrix column)"
        prepare = f"`{spec.prepare}`" if spec.prepare else "the reference signature only (no value checks)"
        lines = [f"- **`{spec.name}`**: `{spec.doc}`",
                 f"  - formats: {formats}",
                 f"  - reference `{spec.reference}`; prepared by {prepare}"
                 + ("; takes `out=` (an array, or a tuple in the result's order; capability `out=True` writes it)"
                    if spec.out else "")]
        areas.setdefault(spec.area, []).append("\n".join(lines))
    parts = [f"{len(OP_SPECS)} ops in {len(areas)} areas (generated from `accel.ops.OP_SPECS` by "
             "`tools/backend_ops_doc.py`)."]
    for area, entries in areas.items():
        parts.append(f"#### {area}\n\n" + "\n".join(entries))
    return "\n\n".join(parts) + "\n"


def section(text: str) -> str:
    """The generated section of the guide's ``text`` (ValueError without the markers)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{GUIDE}: the markers {BEGIN} ... {END} are missing")
    return text[start + len(BEGIN):end].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when the guide is out of date")
    args = parser.parse_args(argv)
    text = GUIDE.read_text()
    fresh = render()
    if section(text) == fresh:
        return 0
    if args.check:
        print(f"{GUIDE} is out of date: run python tools/backend_ops_doc.py", file=sys.stderr)
        return 1
    start, end = text.find(BEGIN) + len(BEGIN), text.find(END)
    GUIDE.write_text(text[:start] + "\n" + fresh + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
