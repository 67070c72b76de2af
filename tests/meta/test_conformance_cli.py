"""The conformance runner as users run it: matrix output, JSON/Markdown files, exit
codes, op selection, xfails files and third-party backends given as module:factory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest


def _run(args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "conformance", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)


@pytest.mark.slow
def test_reference_matrix_for_selected_ops(tmp_path):
    md, js = tmp_path / "m.md", tmp_path / "m.json"
    result = _run(["--backend", "reference", "--ops", "encode_float,pack", "--markdown", str(md), "--json", str(js)])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "| encode_float | ✅ | ✅ | ✅ | ✅ | ✅ |" in result.stdout
    records = json.loads(js.read_text())
    ops = {r["op"] for r in records}
    assert ops == {"encode_float", "pack"}
    assert all(r["status"] == "pass" and r["passed"] > 0 for r in records)
    assert "encode_float" in md.read_text()


@pytest.mark.slow
def test_third_party_backend_partial_and_broken(tmp_path):
    """A backend outside the repo: one op right (pass), one wrong (fail), the rest not implemented."""
    (tmp_path / "mybackend.py").write_text(textwrap.dedent("""
        import numpy as np
        import refquant
        from accel.protocol import OpCapability

        class Mine:
            name = "mine"
            device = "cpu"
            def capabilities(self):
                return {"decode_float": OpCapability(frozenset({"float16"})),
                        "encode_float": OpCapability(frozenset({"float16"}))}
            def asarray(self, x):
                return np.asarray(x)
            def to_numpy(self, x):
                return x
            def decode_float(self, bits, fmt):
                return refquant.decode_float(bits, fmt)
            def encode_float(self, x, fmt, saturate=False):
                # truncation instead of round-to-nearest-even: must fail
                return (np.asarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)

        def make():
            return Mine()
    """))
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    js = tmp_path / "m.json"
    result = _run(["--backend", "mybackend:make", "--ops", "encode_float,decode_float,pack", "--json", str(js),
                   "--no-shrink"], cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout[-3000:]
    status = {(r["op"], r["format"]): r["status"] for r in json.loads(js.read_text())}
    assert status[("decode_float", "float16")] == "pass"
    assert status[("encode_float", "float16")] == "fail"
    assert status[("encode_float", "bfloat16")] == "not_implemented"
    assert status[("pack", "4bit")] == "not_implemented"


@pytest.mark.slow
def test_xfails_file_marks_known_failures_and_reports_stale_entries(tmp_path):
    xf = tmp_path / "xfails.txt"
    xf.write_text("test_no_such_test[reference]  # stale on purpose\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "conformance", "-q", "-p", "no:cacheprovider",
                             "--ops", "decode_float", "--xfails-file", str(xf)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "match no collected test" in result.stdout and "test_no_such_test" in result.stdout


def test_unknown_backend_is_a_clear_error():
    result = _run(["--backend", "definitely_not_a_backend", "--ops", "pack"])
    assert result.returncode != 0
    assert "unknown backend 'definitely_not_a_backend'" in (result.stdout + result.stderr)


def test_progress_header_and_verdict_lines():
    result = _run(["--backend", "reference", "--ops", "pack_ternary,unpack_ternary", "--examples", "2",
                   "--workers", "1"])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "reference: device cpu, profile ci, 2 Hypothesis examples per property test, in-process" in out
    collected = re.search(r"collected (\d+) conformance tests", out)
    assert collected, out[-2000:]
    assert int(collected.group(1)) >= 2
    assert "reference · packing" in out and "2 tests: 2 passed, 0 failed, 0 not implemented" in out
    assert "verdict reference: PASS: 2 cells passed, 0 failed, 0 not implemented" in out
    assert "Not run (--ops): floats" in out  # filtered areas are "not run", not "not implemented"


def test_refquant_cli_takes_the_same_options():
    result = subprocess.run([sys.executable, "-m", "refquant", "conformance", "--backend", "reference",
                             "--ops", "pack_ternary", "--examples", "2", "--workers", "1"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "verdict reference: PASS" in result.stdout


def test_a_run_that_cannot_start_says_why_in_one_line(tmp_path):
    unknown_op = _run(["--backend", "reference", "--ops", "no_such_op"])
    assert unknown_op.returncode == 2
    assert unknown_op.stderr.strip().splitlines() == [
        unknown_op.stderr.strip().splitlines()[0]] and "unknown op(s) no_such_op" in unknown_op.stderr
    (tmp_path / "brokenbackend.py").write_text("raise ImportError('the vendor library is missing')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    broken = _run(["--backend", "brokenbackend:make"], cwd=tmp_path, env=env)
    assert broken.returncode == 2
    lines = broken.stderr.strip().splitlines()
    assert len(lines) == 1 and "the vendor library is missing" in lines[0], broken.stderr
