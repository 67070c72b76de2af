"""The package's import graph, read from the source: the core (every module of ``refquant``
outside ``refquant.apps``) never imports the backends, the conformance suite or the apps
(``refquant._backend``, the ``backend=`` argument, imports accel inside its function), and
gains no import cycle (KNOWN_CYCLES, now empty, is where a tolerated one would be named).

Every import statement counts, including the ones inside functions (a lazy import is still a
dependency), and importing ``a.b.c`` counts as importing the packages ``a.b`` and ``a`` too
(their ``__init__`` runs first). Lazy re-exports through ``importlib.import_module`` (the
``__getattr__`` of ``refquant``, ``refquant.io`` and ``refquant.gguf``) are facades, not
dependencies of the module they serve, and are not statements, so they do not count.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "refquant"
# what the core must not depend on: the layers built on top of it
FORBIDDEN = ("accel", "conformance", "refquant.apps", "tests")
# The one sanctioned exception: the ``backend=`` argument of public functions imports accel
# lazily, only when a backend other than the reference is asked for.
BACKEND_ARGUMENT = "refquant._backend"

# Import cycles the core has: none. The test fails when one appears; a module that needs
# another one's name at run time and is needed by it has a responsibility in the wrong place
# (move the shared piece into a lower module both import).
KNOWN_CYCLES: list[list[str]] = []


@functools.cache
def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of refquant."""
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


@functools.cache
def _imported_names(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of everything ``module`` imports; ``from a import b`` gives ``a.b``
    (``b`` may be a module or an attribute: the caller resolves it)."""
    is_package = path.name == "__init__.py"
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names += [(node.lineno, f"{source}.{alias.name}") for alias in node.names]
    return names


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> refquant modules it imports (the longest existing module prefix of each
    imported name, and that module's parent packages)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for _, name in _imported_names(module, path):
            parts = name.split(".")
            target = next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in mods), None)
            if target is None:
                continue
            tparts = target.split(".")
            for k in range(1, len(tparts) + 1):
                dep = ".".join(tparts[:k])
                if dep != module and not module.startswith(dep + "."):  # a package's own parents run first anyway
                    edges[module].add(dep)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _core(mods: dict[str, Path]) -> dict[str, Path]:
    """The modules other than the apps and ``python -m refquant`` (which runs the apps' CLI)."""
    return {m: p for m, p in mods.items()
            if m not in ("refquant.apps", "refquant.__main__") and not m.startswith("refquant.apps.")}


def test_the_core_never_imports_backends_conformance_or_apps():
    offending = []
    for module, path in _core(_modules()).items():
        if module == BACKEND_ARGUMENT:
            continue
        for line, name in _imported_names(module, path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                offending.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not offending, "\n".join(offending)


def test_the_core_gains_no_import_cycle():
    core = _core(_modules())
    edges = {m: e & core.keys() for m, e in _graph(core).items()}
    assert sorted(_cycles(edges)) == sorted(KNOWN_CYCLES)


def test_the_backend_argument_imports_accel_only_inside_its_function():
    path = _modules()[BACKEND_ARGUMENT]
    top_level = {n for node in ast.parse(path.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))
                 for n in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])}
    assert not any(n.split(".")[0] in ("accel", "conformance") for n in top_level)


def test_the_cycle_finder_finds_cycles():
    """The checks above could pass by finding nothing: the same functions see a planted cycle."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(edges) == [["a", "b", "c"]]
    mods = _modules()
    graph = _graph(mods)
    assert {"refquant._validate", "refquant.errors", "refquant.formats.bnb", "refquant.quantized_tensor"} <= graph["refquant.bnb"]
    assert "refquant.layouts.bnb_state" in graph["refquant.bnb"]
    apps = {n for _, n in _imported_names("refquant.apps.quantize", mods["refquant.apps.quantize"])}
    assert "accel" in apps  # the walk reaches imports inside functions


def test_a_leaf_module_imports_alone_without_its_package_siblings():
    """``refquant.io`` resolves its names lazily: the type table loads without the file reader,
    and the bitsandbytes layout loads without the container it lays out."""
    code = ("import sys; import refquant.layouts.bnb_state, refquant.io.ggml_types; "
            "print('refquant.io.gguf_file' in sys.modules, 'refquant.bnb' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_sources_are_cited_inside_the_repository():
    """Docstrings and comments cite papers and upstream files (collected in docs/sources.md),
    never the project's design notes outside the repository."""
    notes = [n + ".md" for n in ("DESIGN", "FACTS", "FAILURES", "STYLE")] + ["/work/" + "shared"]
    offending = []
    for folder in ("refquant", "accel", "conformance", "tests", "docs", "tools"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix not in (".py", ".md", ".cu", ".cuh", ".h", ".txt") or not path.is_file():
                continue
            text = path.read_text(errors="replace")
            offending += [f"{path.relative_to(REPO)} cites {n}" for n in notes if n in text]
    assert not offending, "\n".join(offending)
    assert "ggml-org/ggml" in (REPO / "docs" / "sources.md").read_text()


def test_backends_import_no_private_refquant_name():
    """Backends hold kernels only: what they take from refquant (tables, prepared-argument
    types, public helpers) is public API, so a refactor of refquant's private helpers can
    never break a backend silently."""
    private = []
    for path in sorted((REPO / "accel").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for line, name in _imported_names(module, path):
            dotted = name.split(".")
            if dotted[0] == "refquant" and any(part.startswith("_") for part in dotted):
                private.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert not private, "\n".join(private)
