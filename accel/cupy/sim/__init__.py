"""cuda-sim: the SIMT runtime (``cuda_sim.h``) and its build and launch code
(``runtime.py``) that run the CUDA kernels of ``accel/cupy/src`` on the CPU."""
