"""Compile the kernels of ``accel/cupy/src`` with the machine's nvcc and report what ptxas
says about each one (registers, stack, spills) and what instructions their PTX holds.

Used by ``tests/test_cuda_nvcc.py`` (every file compiles for sm_80 and sm_90, no spills
in streaming kernels, no ``fma.rn.f32`` in bit-exact kernels) and runnable by hand:
``python -m accel.cupy.nvcc_check`` prints the table. Flags are the NVRTC options the
cupy backend uses (:data:`accel.cupy.device.NVRTC_OPTIONS`). Reports are cached under
``$REFQUANT_CACHE_DIR/nvcc`` by the SHA-256 of the sources, flags and nvcc version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accel.cupy.device import NVRTC_OPTIONS
from accel.cupy.sim.runtime import SRC_DIR

__all__ = ["ARCHS", "KernelReport", "FileReport", "nvcc", "compile_file", "sources"]

ARCHS = ("sm_80", "sm_90")
_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_USAGE = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


@dataclass
class KernelReport:
    """ptxas's numbers for one kernel on one architecture, and its PTX's FMA count."""

    name: str
    arch: str
    registers: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    fma_f32: int = 0


@dataclass
class FileReport:
    source: str
    ok: bool
    errors: str = ""
    seconds: float = 0.0
    kernels: list[KernelReport] = field(default_factory=list)


def nvcc() -> str | None:
    """Path of nvcc ($NVCC, PATH, or /usr/local/cuda/bin), or None."""
    for cand in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.exists(cand):
            return cand
    return None


def sources() -> list[Path]:
    return sorted(SRC_DIR.glob("*.cu"))


def _flags() -> list[str]:
    return [o for o in NVRTC_OPTIONS if not o.startswith("--std")] + ["-std=c++17", f"-I{SRC_DIR}"]


def _cache_key(path: Path, compiler: str) -> str:
    h = hashlib.sha256()
    h.update(subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.encode())
    h.update(" ".join(_flags() + list(ARCHS)).encode())
    for p in [path] + sorted(SRC_DIR.glob("*.cuh")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:24]


def _ptx_fma_counts(ptx: str) -> dict[str, int]:
    """fma.rn.f32 instructions per .entry of a PTX file."""
    counts: dict[str, int] = {}
    parts = re.split(r"\.visible\s+\.entry\s+(\w+)", ptx)
    for name, body in zip(parts[1::2], parts[2::2]):
        counts[name] = len(re.findall(r"\bfma\.rn(?:\.ftz)?\.f32\b", body))
    return counts


def compile_file(path: Path, compiler: str | None = None) -> FileReport:
    """Compile one ``.cu`` file for every arch in :data:`ARCHS` (``-Xptxas -v``, keeping the
    PTX of the first); the report is cached."""
    import time

    compiler = compiler or nvcc()
    if compiler is None:
        raise RuntimeError("nvcc not found")
    root = Path(os.environ.get("REFQUANT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "refquant")) / "nvcc"
    root.mkdir(parents=True, exist_ok=True)
    cached = root / f"{path.stem}-{_cache_key(path, compiler)}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        return FileReport(**{**data, "kernels": [KernelReport(**k) for k in data["kernels"]]})
    t0 = time.perf_counter()
    gencode = [f"-gencode=arch=compute_{a[3:]},code={a}" for a in ARCHS]
    with tempfile.TemporaryDirectory() as tmp:
        # one compilation for every arch; --keep leaves the PTX it generated for each
        fat = subprocess.run([compiler, *_flags(), *gencode, "-Xptxas", "-v", "-fatbin", "--keep", "--keep-dir", tmp,
                              "-o", os.path.join(tmp, "k.fatbin"), str(path)], capture_output=True, text=True)
        ptx_files = sorted(Path(tmp).glob("*.ptx"))
        ptx_text = "".join(p.read_text() for p in ptx_files if ARCHS[0][3:] in p.name)
    report = FileReport(path.name, fat.returncode == 0 and bool(ptx_text),
                        errors=fat.stderr if fat.returncode else ("" if ptx_text else "no PTX kept"),
                        seconds=round(time.perf_counter() - t0, 2))
    fma = _ptx_fma_counts(ptx_text)
    current: KernelReport | None = None
    for line in fat.stderr.splitlines():
        if m := _ENTRY.search(line):
            current = KernelReport(m.group(1), m.group(2), fma_f32=fma.get(m.group(1), 0))
            report.kernels.append(current)
        elif current is not None and (m := _USAGE.search(line)):
            current.stack, current.spill_stores, current.spill_loads = map(int, m.groups())
        elif current is not None and (m := _REGS.search(line)):
            current.registers = int(m.group(1))
    if report.ok:
        cached.write_text(json.dumps(asdict(report)))
    return report


def main() -> int:
    compiler = nvcc()
    if compiler is None:
        print("nvcc not found", file=sys.stderr)
        return 1
    status = 0
    for path in sources():
        rep = compile_file(path, compiler)
        print(f"{rep.source}: {'ok' if rep.ok else 'FAILED'} ({rep.seconds}s)")
        if not rep.ok:
            print(rep.errors)
            status = 1
        for k in rep.kernels:
            print(f"  {k.arch} {k.name:28s} regs={k.registers:3d} stack={k.stack:4d} "
                  f"spills={k.spill_stores}/{k.spill_loads} fma.f32={k.fma_f32}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
