"""Build the API reference (HTML) from the docstrings with pdoc; any warning is an error.

    pip install -e ".[docs]"
    python tools/build_api_docs.py [--out build/api] [MODULE ...]   # default: MODULES

``tests/test_docs.py`` runs it, so a docstring that pdoc cannot render (a name in
``__all__`` that does not resolve, a broken cross-reference, an import error) fails the
suite. Names that refquant re-exports lazily (module ``__getattr__``) are resolved first,
as a user's first access would, so that pdoc sees them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

# refquant's public submodules are listed in its __all__ (pdoc follows it); accel's and the
# conformance suite's are named here: what a user or a backend author imports.
MODULES = ("refquant", "refquant.prepare", "accel", "accel.protocol", "accel.ops", "accel.registry",
           "accel.dispatch", "accel.reference", "conformance.harness", "conformance.contracts",
           "conformance.plugin", "conformance.matrix")


def _resolve_lazy_exports(names: list[str]) -> None:
    """Access every ``__all__`` name of each module, so that lazy re-exports are in its namespace."""
    for name in names:
        module = importlib.import_module(name)
        if callable(module.__dict__.get("__getattr__")):
            for export in getattr(module, "__all__", ()):
                getattr(module, export)


def build(out: Path, modules: tuple[str, ...] = MODULES) -> tuple[list[Path], list[str]]:
    """Write the HTML reference of ``modules`` (and their submodules) to ``out``.

    Returns the pages written and every warning pdoc emitted (one line each; the build
    counts as failed when there is any)."""
    import pdoc
    import pdoc.extract

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _resolve_lazy_exports(pdoc.extract.walk_specs(list(modules)))
        pdoc.render.configure(docformat="numpy", show_source=False)
        pdoc.pdoc(*modules, output_directory=out)
    problems = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return sorted(out.rglob("*.html")), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES), help="modules to document (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("build/api"), help="output folder (default: build/api)")
    args = parser.parse_args(argv)
    files, problems = build(args.out, tuple(args.modules))
    for problem in problems:
        print(f"pdoc: {problem}", file=sys.stderr)
    print(f"{len(files)} pages in {args.out}; {len(problems)} warnings")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
