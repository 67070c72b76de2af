"""``python -m conformance --backend NAME [--markdown PATH] [--json PATH]``.

Runs the conformance suite against each backend (default: every backend that loads),
prints the op x format matrix, optionally writes it as Markdown / JSON, and exits
non-zero if any cell failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accel.registry import available_backends
from conformance.matrix import run_matrix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", default=None,
                        help="registered name or module:factory (repeatable; default: every backend that loads)")
    parser.add_argument("--profile", default="ci", choices=("ci", "dev", "thorough"))
    parser.add_argument("--xfails-file", default=None)
    parser.add_argument("--markdown", default=None, help="write the matrix as Markdown to this path")
    parser.add_argument("--json", default=None, help="write the matrix as JSON to this path")
    parser.add_argument("--ops", default=None, help="only these ops (comma-separated names from accel.ops)")
    parser.add_argument("--verbose", action="store_true", help="show pytest's own output")
    args = parser.parse_args(argv)

    names = args.backend
    if not names:
        names = []
        for name, info in available_backends().items():
            if info.loaded:
                names.append(name)
            else:
                print(f"backend {name}: unavailable ({info.reason})")
    ok = True
    markdown, records = [], []
    for name in names:
        matrix = run_matrix(name, profile=args.profile, xfails_file=args.xfails_file, quiet=not args.verbose,
                            extra_args=["--ops", args.ops] if args.ops else None)
        text = matrix.to_markdown()
        print(text)
        print()
        markdown.append(text)
        records.extend(matrix.to_records())
        ok &= matrix.ok
    if args.markdown:
        Path(args.markdown).write_text("\n\n".join(markdown) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
