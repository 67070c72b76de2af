"""``python -m conformance [--backend NAME] [--profile P] [--examples N] [--no-shrink] [--markdown PATH] [--json PATH]``.

Runs the conformance suite against each backend (default: every backend that loads),
shows progress area by area, prints the op x format matrix with a verdict line per
backend, optionally writes it as Markdown / JSON, and exits non-zero if any cell failed
or the suite could not run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

PROFILE_EXAMPLES = {"ci": 20, "dev": 50, "thorough": 1000}


def _missing_test_dependencies() -> list[str]:
    return [name for name in ("pytest", "hypothesis") if importlib.util.find_spec(name) is None]


def _header(backend: object, name: str, profile: str, examples: int | None, workers: int) -> tuple[str, str | None]:
    """The header line of a backend, and a warning to print first (cold JIT cache)."""
    parts = [f"device {getattr(backend, 'device', '?')}", f"profile {profile}",
             f"{examples or PROFILE_EXAMPLES[profile]} Hypothesis examples per property test",
             f"{workers} worker process{'es' if workers != 1 else ''}" if workers > 1 else "in-process"]
    warning = None
    cache_state = getattr(backend, "cache_state", None)
    if callable(cache_state):
        state = cache_state()
        parts.append(f"JIT cache {state['state']}")
        if state["state"] != "warm":
            warning = (f"{name}: the JIT cache is {state['state']} ({state['detail']}): the first run compiles "
                       f"the kernels, about {state['estimate']} on this machine; later runs load them from the cache.")
    return f"**{name}**: " + ", ".join(parts), warning


def main(argv: list[str] | None = None, prog: str = "python -m conformance") -> int:
    """Run the matrix; ``prog`` is the command name shown in ``--help`` (``refquant conformance``)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the conformance suite against each backend (default: every backend that "
        "loads), print the op x format matrix with a verdict line per backend, optionally write it as "
        "Markdown / JSON; exit non-zero if any cell failed or the suite could not run.")
    parser.add_argument("--backend", action="append", default=None,
                        help="registered name or module:factory (repeatable; default: every backend that loads)")
    parser.add_argument("--profile", default="ci", choices=tuple(PROFILE_EXAMPLES),
                        help="Hypothesis profile: ci (20 examples, derandomized; default), dev (50), thorough (1000)")
    parser.add_argument("--examples", type=int, default=None, help="Hypothesis examples per property test "
                        "(overrides the profile's number)")
    parser.add_argument("--no-shrink", action="store_true",
                        help="report each failing test's first failing example without shrinking it (a faster verdict)")
    parser.add_argument("--xfails-file", default=None, help="known failures: one test id per line, '# reason'")
    parser.add_argument("--markdown", default=None, help="write the matrix as Markdown to this path")
    parser.add_argument("--json", default=None, help="write the matrix as JSON to this path")
    parser.add_argument("--ops", default=None, help="only these ops (comma-separated names from accel.ops)")
    parser.add_argument("--workers", type=int, default=None,
                        help="test processes (pytest-xdist; default: 2 when installed and no JIT cache is cold, else 1)")
    parser.add_argument("--verbose", action="store_true", help="show pytest's own output")
    args = parser.parse_args(argv)
    if args.examples is not None and args.examples < 1:
        parser.error(f"--examples {args.examples}: expected a positive number")

    missing = _missing_test_dependencies()
    if missing:
        print(f"cannot run the conformance suite: {' and '.join(missing)} not installed; "
              f"install them with: pip install 'refquant[conformance]'", file=sys.stderr)
        return 2

    from accel.ops import OP_SPECS
    from accel.registry import BackendLoadError, available_backends, get_backend
    from conformance.matrix import run_matrices

    ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    unknown = sorted(set(ops or ()) - set(OP_SPECS))
    if unknown:
        print(f"--ops: unknown op(s) {', '.join(unknown)}; known: {', '.join(OP_SPECS)}", file=sys.stderr)
        return 2

    names = args.backend
    loaded = {}
    if not names:
        names = []
        for name, info in available_backends().items():
            if info.loaded:
                names.append(name)
                loaded[name] = info.backend
            else:
                print(f"backend {name}: unavailable ({info.reason})")
    for name in names:
        if name not in loaded:
            try:
                loaded[name] = get_backend(name)
            except (BackendLoadError, ValueError, ImportError, AttributeError) as exc:
                print(f"cannot run the conformance suite for backend {name!r}: {exc}", file=sys.stderr)
                return 2
    ids = {name: (loaded[name].name if ":" not in name else name) for name in names}

    cold = False
    headers = {}
    warnings = []
    xdist = importlib.util.find_spec("xdist") is not None
    for name in names:
        cache_state = getattr(loaded[name], "cache_state", None)
        cold |= bool(callable(cache_state) and cache_state()["state"] == "cold")
    workers = args.workers if args.workers is not None else (2 if xdist and not cold and (os.cpu_count() or 1) > 1 else 1)
    if workers > 1 and not xdist:
        print("--workers needs pytest-xdist: pip install pytest-xdist", file=sys.stderr)
        return 2
    for name in names:
        header, warning = _header(loaded[name], ids[name], args.profile, args.examples, workers)
        headers[ids[name]] = header
        print(header.replace("**", ""))
        if warning:
            warnings.append(warning)
    for warning in warnings:
        print(warning)
    sys.stdout.flush()

    matrices, error = run_matrices(list(ids.values()), profile=args.profile, examples=args.examples,
                                   xfails_file=args.xfails_file, ops=ops, workers=workers, shrink=not args.no_shrink,
                                   verbose=args.verbose,
                                   headers=headers)
    if error:
        print(f"cannot run the conformance suite: {error}", file=sys.stderr)
        return 2
    ok = True
    markdown, records = [], []
    for matrix in matrices:
        text = matrix.to_markdown()
        print()
        print(text)
        markdown.append(text)
        records.extend(matrix.to_records())
        ok &= matrix.ok
    print()
    for matrix in matrices:
        print(f"verdict {matrix.verdict()}")
    if args.markdown:
        Path(args.markdown).write_text("\n\n".join(markdown) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
