"""Build a ``.cu`` file of ``accel/cupy/src`` with g++ against ``cuda_sim.h`` and launch
its kernels on the CPU.

:func:`load_module` compiles one source file as C++ (``-ffp-contract=off``: no FMA
contraction, like ``nvcc --fmad=false``) into a shared library, with one trampoline per
``extern "C" __global__`` kernel that unpacks a ``void**`` argument array into the
kernel's parameters (template deduction from the kernel's own signature). Libraries
are cached under ``$REFQUANT_CACHE_DIR/cuda-sim`` (default ``~/.cache/refquant``) by
the SHA-256 of the sources, the headers, the flags and the compiler version, so a run
compiles each file once and later runs not at all. :class:`SimModule` launches a kernel
with NumPy arrays (passed as device pointers) and NumPy scalars (passed by value as
their dtype), the same argument list a ``cupy.RawKernel`` takes.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["SimError", "SimModule", "load_module", "compiler", "SIM_DIR", "SRC_DIR", "SCHEDULES"]

SIM_DIR = Path(__file__).resolve().parent
SRC_DIR = SIM_DIR.parent / "src"
SCHEDULES = {"forward": 0, "reverse": 1, "shuffled": 2}
CXXFLAGS = ("-std=c++17", "-O2", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared",
            "-fno-strict-aliasing", "-w")
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\([^)]*\)\s+)?void\s+(\w+)\s*\(')
_LOCK = threading.Lock()          # fibers use process-wide state: one launch at a time
_MODULES: dict[tuple[str, ...], "SimModule"] = {}


class SimError(RuntimeError):
    """A kernel launch the runtime refused or stopped (the message says where and why)."""


def compiler() -> str | None:
    """The C++ compiler used (``$CXX`` or g++), or None when there is none."""
    return shutil.which(os.environ.get("CXX", "g++"))


def _cache_dir() -> Path:
    root = os.environ.get("REFQUANT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "refquant")
    path = Path(root) / "cuda-sim"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wrapper(source: Path, kernels: Sequence[str]) -> str:
    lines = ['#include "cuda_sim.h"', f'#include "{source}"', "",
             "namespace cuda_sim {",
             "template <auto F> struct Entry;",
             "template <typename... A, void (*F)(A...)> struct Entry<F> {",
             "    template <std::size_t... I> static void call(void** a, std::index_sequence<I...>) {",
             "        F(*static_cast<A*>(a[I])...);",
             "    }",
             "    static void run(void** a) { call(a, std::index_sequence_for<A...>{}); }",
             "};",
             "}  // namespace cuda_sim", ""]
    lines += [f'extern "C" void* cuda_sim_entry_{k}() {{ return (void*)&cuda_sim::Entry<&{k}>::run; }}'
              for k in kernels]
    return "\n".join(lines) + "\n"


def _build(source: Path) -> tuple[Path, list[str]]:
    cxx = compiler()
    if cxx is None:
        raise SimError("no C++ compiler (g++ or $CXX) found: the cuda-sim backend compiles kernels with one")
    text = source.read_text()
    kernels = _KERNEL.findall(text)
    digest = hashlib.sha256()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    for part in (text, version, " ".join(CXXFLAGS), str(source)):
        digest.update(part.encode())
    for header in sorted(list(SIM_DIR.glob("*.h")) + list(SRC_DIR.glob("*.cuh"))):
        digest.update(header.name.encode() + header.read_bytes())
    target = _cache_dir() / f"{source.stem}-{digest.hexdigest()[:20]}.so"
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            wrapper = Path(tmp) / f"{source.stem}_sim.cpp"
            wrapper.write_text(_wrapper(source, kernels))
            built = Path(tmp) / target.name
            cmd = [cxx, *CXXFLAGS, f"-I{SIM_DIR}", f"-I{SRC_DIR}", "-DREFQUANT_CUDA_SIM=1", str(wrapper), "-o", str(built)]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise SimError(f"g++ could not compile {source.name} for cuda-sim:\n{result.stderr[-4000:]}")
            os.replace(built, target)   # atomic: concurrent workers may build the same file
    return target, kernels


@dataclass
class _Kernel:
    name: str
    entry: int


class SimModule:
    """One compiled ``.cu`` file: ``launch(kernel, grid, block, args)`` runs a kernel."""

    def __init__(self, source: Path) -> None:
        path, kernels = _build(source)
        self.source = source
        self._lib = ctypes.CDLL(str(path))
        self._lib.cuda_sim_launch.restype = ctypes.c_int
        self._lib.cuda_sim_launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_uint] * 6 + [
            ctypes.c_int, ctypes.c_ulonglong, ctypes.c_char_p, ctypes.c_int]
        self.kernels: dict[str, _Kernel] = {}
        for name in kernels:
            getter = getattr(self._lib, f"cuda_sim_entry_{name}")
            getter.restype = ctypes.c_void_p
            self.kernels[name] = _Kernel(name, getter())

    def launch(self, kernel: str, grid: tuple[int, ...], block: tuple[int, ...], args: Sequence[Any], *,
               schedule: str = "forward", seed: int = 0) -> None:
        """Run ``kernel`` over ``grid`` x ``block``; NumPy arrays are passed as pointers,
        NumPy scalars by value (their dtype is the parameter's type)."""
        try:
            k = self.kernels[kernel]
        except KeyError:
            raise SimError(f"{self.source.name} has no kernel {kernel!r}; it has {sorted(self.kernels)}") from None
        holders = [_marshal(a, i, kernel) for i, a in enumerate(args)]
        argv = (ctypes.c_void_p * max(1, len(holders)))(*[ctypes.cast(ctypes.pointer(h), ctypes.c_void_p)
                                                           for h in holders])
        g = tuple(grid) + (1,) * (3 - len(grid))
        b = tuple(block) + (1,) * (3 - len(block))
        err = ctypes.create_string_buffer(512)
        with _LOCK:
            rc = self._lib.cuda_sim_launch(k.entry, argv, *g, *b, SCHEDULES[schedule], seed, err, len(err))
        if rc != 0:
            raise SimError(f"{self.source.name}:{kernel}<<<{g}, {b}>>>: {err.value.decode()}")


_CTYPE = {np.dtype(np.int8): ctypes.c_int8, np.dtype(np.uint8): ctypes.c_uint8,
          np.dtype(np.int16): ctypes.c_int16, np.dtype(np.uint16): ctypes.c_uint16,
          np.dtype(np.int32): ctypes.c_int32, np.dtype(np.uint32): ctypes.c_uint32,
          np.dtype(np.int64): ctypes.c_int64, np.dtype(np.uint64): ctypes.c_uint64,
          np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}


def _marshal(a: Any, i: int, kernel: str) -> Any:
    if isinstance(a, np.ndarray):
        if not a.flags.c_contiguous:
            raise SimError(f"{kernel}: argument {i} is a non-contiguous array")
        return ctypes.c_void_p(a.ctypes.data)
    if isinstance(a, np.generic) and a.dtype in _CTYPE:
        return _CTYPE[a.dtype](a.item())
    raise SimError(f"{kernel}: argument {i} is {type(a).__name__}; pass an array or a NumPy scalar of the "
                   "parameter's exact type")


def load_module(name_or_path: str | Path) -> SimModule:
    """The compiled module of ``accel/cupy/src/<name>.cu`` (or of a path), cached per process."""
    path = Path(name_or_path)
    if path.suffix != ".cu":
        path = SRC_DIR / f"{name_or_path}.cu"
    key = (str(path.resolve()), path.read_text())
    if key not in _MODULES:
        _MODULES[key] = SimModule(path.resolve())
    return _MODULES[key]
