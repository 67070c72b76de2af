// reduce.cuh: block-wide reductions (warp shuffles, then one shared slot per warp).
// Every thread of the block must call them (they contain __syncthreads), and the block
// size must be a multiple of 32 (the shuffles name the full warp).
#pragma once
#include "common.cuh"

__device__ __forceinline__ u32 warp_max_u32(u32 v) {
    for (int off = 16; off > 0; off >>= 1) {
        u32 o = __shfl_xor_sync(0xffffffffu, v, off);
        v = o > v ? o : v;
    }
    return v;
}

__device__ __forceinline__ u32 block_max_u32(u32 v) {
    __shared__ u32 partial[32];
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    v = warp_max_u32(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        u32 w = lane < (blockDim.x + 31u) / 32u ? partial[lane] : 0u;
        w = warp_max_u32(w);
        if (lane == 0) partial[0] = w;
    }
    __syncthreads();
    u32 r = partial[0];
    __syncthreads();   // partial is reused by the next call
    return r;
}

// Block-wide float32 sum (tree order over lanes, then over warps): for Nmse kernels.
__device__ __forceinline__ float block_sum_f32(float v) {
    __shared__ float partial_f[32];
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) partial_f[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < (blockDim.x + 31u) / 32u ? partial_f[lane] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) w += __shfl_xor_sync(0xffffffffu, w, off);
        if (lane == 0) partial_f[0] = w;
    }
    __syncthreads();
    float r = partial_f[0];
    __syncthreads();
    return r;
}
