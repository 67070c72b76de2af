"""CUDA backends (entry points ``refquant.backends: cupy`` and ``cuda-sim``).

The kernels are CUDA C++ files in ``src/`` (one per spec area, shared device helpers in
``src/*.cuh``), launched by one Python function per op (``<area>.py``: geometry and
argument marshalling). ``cupy`` loads them with ``cupy.RawModule`` on a CUDA device;
``cuda-sim`` compiles them with g++ against the SIMT runtime in ``sim/`` and runs them
on the CPU, so CI checks the real kernels and launch code without a GPU. Importing this
package needs neither CuPy nor a GPU; ``accel.available_backends()`` reports ``cupy``
as unavailable with the reason (CuPy missing, no CUDA device).
"""

from __future__ import annotations

__all__ = ["backend", "sim_backend"]


def backend():  # type: ignore[no-untyped-def]
    """Entry-point factory of ``cupy``: the kernels on a CUDA GPU."""
    from accel.cupy.cuda_backend import cupy_backend

    return cupy_backend()


def sim_backend():  # type: ignore[no-untyped-def]
    """Entry-point factory of ``cuda-sim``: the same kernels on the CPU."""
    from accel.cupy.cuda_backend import sim_backend as make

    return make()
