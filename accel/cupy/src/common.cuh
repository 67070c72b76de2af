// common.cuh: types and launch helpers shared by every kernel file of accel/cupy/src.
//
// Kernels are plain CUDA C++ compiled by NVRTC / nvcc for the GPU and, under
// REFQUANT_CUDA_SIM, by g++ against accel/cupy/sim/cuda_sim.h for the CPU. Bit-exact
// kernels are compiled with --fmad=false (no a*b+c contraction) and use only IEEE
// operations (+ - * / and conversions, round-to-nearest-even). No CUDA header is
// needed (16-bit floats are handled as bit patterns), so NVRTC compiles the files as
// they are.
#pragma once

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

// Grid-stride loop over 0..n-1: any grid covers any n, so the launch code picks the
// grid from the device (many blocks on a GPU, a few on the CPU simulator).
#define GRID_STRIDE(i, n) \
    for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
         i += static_cast<i64>(gridDim.x) * blockDim.x)

// Marks that some input was out of range; the host then asks the reference for the error.
__device__ __forceinline__ void flag_bad(int* bad) { atomicOr(bad, 1); }
