"""Every parameter of a public function has a stated type and range in its docstring.

A public function is one named in the ``__all__`` of a module of ``refquant`` outside
``refquant.apps`` (command-line code) and ``refquant.prepare`` (each ``prepare_<op>`` is
documented by the op it prepares), in a module whose name does not start with ``_``.
"Stated" is checked as far as it can be read mechanically: the docstring has a numpydoc
``Parameters`` section, and each parameter (``*args`` / ``**kwargs`` included) is named in an
entry ``name : spec`` (or ``a, b : spec`` for several) whose spec is not empty. The spec is
where the range goes (``{2, 3, 4, 8}``, ``int >= 1``, ``ndarray of float32, shape (n, 256)``);
that it is the range the code enforces is for review to keep true.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import refquant

# numpydoc section headers: a title line underlined with dashes
_HEADER = re.compile(r"^(\w[\w ]*)\n-+$", re.MULTILINE)
# an entry line of the Parameters section: "name : spec", "a, b : spec", "**kwargs : spec"
_ENTRY = re.compile(r"^(\*{0,2}\w+(?:, \*{0,2}\w+)*)(?: : (.*\S))?\s*$")


def _public_functions() -> dict[str, object]:
    found = {}
    for info in pkgutil.walk_packages(refquant.__path__, "refquant."):
        parts = info.name.split(".")
        if "apps" in parts or "prepare" in parts or parts[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            f = getattr(module, name, None)
            if inspect.isfunction(f) and f.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = f
    return found


def _stated(doc: str) -> dict[str, str]:
    """Parameter name -> its spec, from the entries (unindented lines) of the Parameters section."""
    headers = list(_HEADER.finditer(doc))
    for i, h in enumerate(headers):
        if h.group(1) == "Parameters":
            end = headers[i + 1].start() if i + 1 < len(headers) else len(doc)
            section = doc[h.end():end]
            break
    else:
        return {}
    stated = {}
    for line in section.splitlines():
        m = _ENTRY.match(line)
        if m:
            for name in m.group(1).split(", "):
                stated[name.lstrip("*")] = m.group(2) or ""
    return stated


def _unstated(f: object) -> list[str]:
    stated = _stated(inspect.getdoc(f) or "")
    return [p for p in inspect.signature(f).parameters if not stated.get(p)]


def test_every_public_parameter_has_a_stated_range():
    functions = _public_functions()
    assert len(functions) > 200  # the walk reaches the package
    missing = {q: m for q, f in functions.items() if (m := _unstated(f))}
    assert not missing, "parameters without a 'name : type and range' entry:\n" + "\n".join(
        f"{q}: {', '.join(m)}" for q, m in sorted(missing.items()))


def test_the_reader_finds_what_is_missing():
    """The check above could pass by reading every docstring as complete: planted ones."""

    def documented(x, n_bits=4, *args, **kwargs):
        """Summary naming x and n_bits in prose.

        Parameters
        ----------
        x : ndarray of float32, shape (n,)
            Values.
        n_bits, args : int in 1..8
        kwargs
            No spec.

        Returns
        -------
        n_bits : int
        """

    def prose_only(x, n_bits=4):
        """``x`` and ``n_bits`` named, no Parameters section."""

    assert _unstated(documented) == ["kwargs"]
    assert _unstated(prose_only) == ["x", "n_bits"]
    assert _stated(inspect.getdoc(documented)) == {"x": "ndarray of float32, shape (n,)", "n_bits": "int in 1..8",
                                                   "args": "int in 1..8", "kwargs": ""}
