"""Where the kernels of ``accel/cupy/src`` run: a CUDA device through CuPy, or the CPU
through the cuda-sim runtime.

Both devices offer the same small interface to the launch code of every op
(``accel/cupy/<area>.py``): ``asarray`` / ``to_numpy`` / ``empty`` / ``zeros`` /
``contiguous`` for arrays, ``launch(module, kernel, grid, block, args)`` for a kernel
(arrays as pointers, NumPy scalars by value as their dtype, the ``cupy.RawKernel``
convention), ``constant(key, host)`` for a small read-only table the kernels take (copied
to the device once per key), and ``max_blocks``, the grid size beyond which grid-stride kernels gain
nothing on this device. The op's geometry and argument list are computed once, in its
launch code, for both devices, so the CPU path runs the real launch code.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from accel.cupy.sim.runtime import SRC_DIR

__all__ = ["SimDevice", "CupyDevice", "cupy_unavailable_reason", "NVRTC_OPTIONS"]

# Bit-exact kernels: no FMA contraction, IEEE division and square root, no flush to zero.
NVRTC_OPTIONS = ("--std=c++17", "--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--ftz=false")


class SimDevice:
    """The CPU: kernels compiled with g++ against ``cuda_sim.h``, blocks run one after
    another, threads as fibers. ``REFQUANT_SIM_MAX_BLOCKS`` (default 4) caps grids,
    ``REFQUANT_SIM_SCHEDULE`` (forward / reverse / shuffled) orders the fibers."""

    kind = "cuda-sim"

    def __init__(self) -> None:
        from accel.cupy.sim import runtime

        if runtime.compiler() is None:
            raise RuntimeError("no C++ compiler (g++ or $CXX): cuda-sim compiles the CUDA sources with one")
        self._runtime = runtime
        self.max_blocks = int(os.environ.get("REFQUANT_SIM_MAX_BLOCKS", "4"))
        self.schedule = os.environ.get("REFQUANT_SIM_SCHEDULE", "forward")
        if self.schedule not in runtime.SCHEDULES:
            raise ValueError(f"REFQUANT_SIM_SCHEDULE={self.schedule!r}; allowed: {', '.join(runtime.SCHEDULES)}")

    def asarray(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def empty(self, shape: Any, dtype: Any) -> np.ndarray:
        out = np.empty(shape, dtype)
        out.reshape(-1).view(np.uint8)[:] = 0xFF   # an element a kernel forgets to write shows
        return out

    def zeros(self, shape: Any, dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype)

    def contiguous(self, x: Any, dtype: Any) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=dtype)

    def constant(self, key: str, host: np.ndarray) -> np.ndarray:
        """A read-only table for the kernels (the host array itself: already in CPU memory)."""
        return np.ascontiguousarray(host)

    def launch(self, module: str, kernel: str, grid: Sequence[int], block: Sequence[int], args: Sequence[Any]) -> None:
        self._runtime.load_module(module).launch(kernel, tuple(grid), tuple(block), args, schedule=self.schedule)

    def synchronize(self) -> None:
        pass


def cupy_unavailable_reason() -> str | None:
    """Why the cupy backend cannot run here (CuPy missing, no CUDA device), or None."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy built for another CUDA
        return f"CuPy is not importable ({type(exc).__name__}: {exc}); install refquant[cuda12] or refquant[cuda13]"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"no CUDA device ({type(exc).__name__}: {exc})"
    if count < 1:
        return "no CUDA device (cudaGetDeviceCount() = 0)"
    return None


class CupyDevice:
    """A CUDA device through CuPy: each ``.cu`` file becomes one ``cupy.RawModule``
    (NVRTC, :data:`NVRTC_OPTIONS`); arrays are CuPy arrays."""

    kind = "cupy"

    def __init__(self) -> None:
        reason = cupy_unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        import cupy

        self.cp = cupy
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        self.name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        self.max_blocks = int(props["multiProcessorCount"]) * 16
        self._constants: dict[str, Any] = {}

    def asarray(self, x: Any) -> Any:
        arr = np.asarray(x) if isinstance(x, np.ndarray) or not hasattr(x, "__cuda_array_interface__") else x
        if isinstance(arr, np.ndarray) and arr.dtype.name == "bfloat16":
            # CuPy has no bfloat16 arrays: the exact float32 widening goes to the device
            # (ops that compare in the input's dtype then see float32)
            arr = arr.astype(np.float32)
        return self.cp.asarray(arr)

    def to_numpy(self, x: Any) -> np.ndarray:
        return self.cp.asnumpy(x)

    def empty(self, shape: Any, dtype: Any) -> Any:
        return self.cp.empty(shape, dtype)

    def zeros(self, shape: Any, dtype: Any) -> Any:
        return self.cp.zeros(shape, dtype)

    def contiguous(self, x: Any, dtype: Any) -> Any:
        return self.cp.ascontiguousarray(self.cp.asarray(x, dtype=dtype))

    def constant(self, key: str, host: np.ndarray) -> Any:
        """A read-only table for the kernels (codebooks, LUTs, ggml's grids, format fields),
        copied to the device on first use of ``key`` and kept: no host-to-device copy per call."""
        table = self._constants.get(key)
        if table is None:
            table = self._constants[key] = self.cp.ascontiguousarray(self.cp.asarray(host))
        return table

    def launch(self, module: str, kernel: str, grid: Sequence[int], block: Sequence[int], args: Sequence[Any]) -> None:
        _raw_module(module).get_function(kernel)(tuple(grid), tuple(block), tuple(args))

    def synchronize(self) -> None:
        self.cp.cuda.Device().synchronize()


_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)


def inline_source(path: Path, seen: set[str] | None = None) -> str:
    """``path`` with its local ``#include "x.cuh"`` lines replaced by the headers' text
    (each header once, as ``#pragma once`` would): CuPy caches a compiled module by its
    source text, so every header a kernel depends on must be part of that text."""
    seen = set() if seen is None else seen

    def expand(match: re.Match[str]) -> str:
        header = path.parent / match.group(1)
        if header.name in seen:
            return ""
        seen.add(header.name)
        return inline_source(header, seen).replace("#pragma once", "")

    return _INCLUDE.sub(expand, path.read_text())


@lru_cache(maxsize=None)
def _raw_module(module: str) -> Any:
    import cupy

    return cupy.RawModule(code=inline_source(Path(SRC_DIR) / f"{module}.cu"), options=NVRTC_OPTIONS)
