"""The documentation runs: every ```python block of the README and the guides is executed,
the backend guide lists every op of OP_SPECS, and its example backend passes the
conformance suite. A block that is illustration only is fenced as ```text or ```py."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Pages whose python blocks run (each page's blocks in order, in one namespace).
# Page -> the optional packages its examples use (the page is skipped, naming them, without).
PAGES = {"README.md": ("numba", "safetensors"), "docs/backends.md": (), "docs/tutorial-quantize.md": ("safetensors",),
         "docs/tutorial-backend.md": (), "docs/tutorial-compare.md": ("safetensors", "tokenizers")}
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
MINIMAL_OPS = "decode_float,codebook_decode,int8_matmul,int8_vectorwise_dequant"


def python_blocks(text: str) -> list[str]:
    """The code of each block fenced exactly as ```python (nested indentation removed)."""
    return [block for block in _BLOCK.findall(text)]


def test_python_blocks_found():
    """The extractor sees fenced blocks and nothing else (a test of the test)."""
    text = "a\n```python\nx = 1\n```\n```py\ny = 2\n```\n```python\nz = 3\n```\n"
    assert python_blocks(text) == ["x = 1\n", "z = 3\n"]


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, tmp_path, monkeypatch):
    for module in PAGES[page]:
        pytest.importorskip(module, reason=f"the examples of {page} use {module}")
    path = ROOT / page
    blocks = python_blocks(path.read_text())
    assert blocks, f"{page} has no ```python block"
    (tmp_path / "models").symlink_to(ROOT / "models")  # the examples' paths are the repository's
    monkeypatch.chdir(tmp_path)  # files the examples write land here
    monkeypatch.syspath_prepend(str(ROOT))
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for number, code in enumerate(blocks, 1):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(code, f"{page} block {number}", "exec"), namespace)  # noqa: S102 - the docs' own code
            except Exception as exc:
                raise AssertionError(f"{page}, python block {number} fails: {type(exc).__name__}: {exc}\n{code}") from exc


def _tool(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backend_guide_lists_every_op():
    from accel.ops import OP_SPECS

    tool = _tool("backend_ops_doc")
    listed = tool.section((ROOT / "docs" / "backends.md").read_text())
    assert listed == tool.render(), "docs/backends.md's op list is out of date: run python tools/backend_ops_doc.py"
    for op, spec in OP_SPECS.items():
        assert f"**`{op}`**: `{spec.doc}`" in listed


@pytest.mark.slow
def test_minimal_backend_passes_conformance():
    """examples/minimal_backend.py, checked exactly as docs/backends.md tells a backend author."""
    result = subprocess.run([sys.executable, "-m", "conformance", "--backend", "examples.minimal_backend:make_backend",
                             "--ops", MINIMAL_OPS, "--examples", "5", "--workers", "1"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdict = [line for line in result.stdout.splitlines() if line.startswith("verdict ")]
    assert len(verdict) == 1 and verdict[0].startswith(
        "verdict examples.minimal_backend:make_backend: PASS: 9 cells passed, 0 failed, 5 not implemented, "), verdict
    assert "| decode_float | ✅ | ✅ | ⬜ | ⬜ | ⬜ | ⬜ | ⬜ |" in result.stdout


@pytest.mark.slow
def test_api_reference_builds_without_warnings(tmp_path):
    """The pdoc API reference of the public modules (tools/build_api_docs.py), warnings as errors."""
    pytest.importorskip("pdoc", reason="the API reference needs pdoc: pip install -e '.[docs]'")
    pages, problems = _tool("build_api_docs").build(tmp_path)
    assert not problems, "\n".join(problems)
    names = {p.relative_to(tmp_path).as_posix() for p in pages}
    assert {"refquant.html", "refquant/gguf.html", "refquant/bnb.html", "accel/protocol.html", "accel/ops.html",
            "accel/registry.html", "conformance/harness.html"} <= names
    assert "quantize_4bit" in (tmp_path / "refquant" / "bnb.html").read_text()


def test_report_columns_are_documented():
    """Every column of both report tables is explained in the tutorial, as under the table."""
    from refquant.apps.lm_report import PERPLEXITY_COLUMNS
    from refquant.apps.report import COLUMNS

    text = (ROOT / "docs" / "tutorial-quantize.md").read_text()
    for name, _ in (*COLUMNS, *PERPLEXITY_COLUMNS):
        assert f"\n| {name} | " in text, f"column {name!r} is not explained in docs/tutorial-quantize.md"
