// Kernels that exercise the cuda-sim runtime itself (tests/test_cuda_sim.py): each
// checks one part of the CUDA programming model as the programming guide defines it.

// Block sum by a shared-memory tree with __syncthreads between the levels.
extern "C" __global__ void block_sum(const int* x, int* out) {
    __shared__ int s[256];
    unsigned t = threadIdx.x;
    s[t] = x[blockIdx.x * blockDim.x + t];
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) s[t] += s[t + half];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}

// The same tree without the barriers: a data race the runtime must expose.
extern "C" __global__ void block_sum_racy(const int* x, int* out) {
    __shared__ int s[256];
    unsigned t = threadIdx.x;
    s[t] = x[blockIdx.x * blockDim.x + t];
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) s[t] += s[t + half];
    }
    if (t == 0) out[blockIdx.x] = s[0];
}

// out[t] = s[(t + 1) % n] after every thread wrote s[t] = x[t]; `synced` chooses
// whether the barrier in between is there.
extern "C" __global__ void rotate(const int* x, int* out, int synced) {
    __shared__ int s[1024];
    unsigned t = threadIdx.x;
    s[t] = x[t];
    if (synced) __syncthreads();
    out[t] = s[(t + 1) % blockDim.x];
}

// Every warp shuffle variant: out[k * n + i] for variant k, thread i.
extern "C" __global__ void shuffles(const int* x, int* out, int delta, int width) {
    unsigned i = threadIdx.x, n = blockDim.x;
    int v = x[i];
    out[0 * n + i] = __shfl_sync(0xffffffffu, v, delta, width);
    out[1 * n + i] = __shfl_up_sync(0xffffffffu, v, delta, width);
    out[2 * n + i] = __shfl_down_sync(0xffffffffu, v, delta, width);
    out[3 * n + i] = __shfl_xor_sync(0xffffffffu, v, delta, width);
    float f = __shfl_xor_sync(0xffffffffu, static_cast<float>(v) + 0.5f, 1);
    out[4 * n + i] = static_cast<int>(f * 2.0f);
}

// Warp sum by __shfl_down_sync: the usual reduction.
extern "C" __global__ void warp_sum(const float* x, float* out) {
    float v = x[blockIdx.x * blockDim.x + threadIdx.x];
    for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
    if (threadIdx.x % 32 == 0) out[(blockIdx.x * blockDim.x + threadIdx.x) / 32] = v;
}

// Votes: ballot / any / all of x[i] != 0 over the full warp and over the even lanes.
extern "C" __global__ void votes(const int* x, unsigned* out) {
    unsigned i = threadIdx.x, w = i / 32;
    int p = x[i];
    unsigned b = __ballot_sync(0xffffffffu, p);
    int any = __any_sync(0xffffffffu, p), all = __all_sync(0xffffffffu, p);
    if (i % 32 == 0) {
        out[4 * w + 0] = b;
        out[4 * w + 1] = static_cast<unsigned>(any);
        out[4 * w + 2] = static_cast<unsigned>(all);
    }
    if (i % 2 == 0) {
        unsigned even = __ballot_sync(0x55555555u, p);
        if (i % 32 == 0) out[4 * w + 3] = even;
    }
}

// A collective whose mask names lanes that already returned: undefined, refused.
extern "C" __global__ void shuffle_exited_lane(int* out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 0);
}

// Lane 0 waits in a shuffle with lane 1 while lane 1 waits at the block barrier.
extern "C" __global__ void divergent_barrier_deadlock(int* out) {
    if (threadIdx.x == 0) {
        out[0] = __shfl_sync(0x3u, 1, 1);
    } else {
        __syncthreads();
    }
}

// Atomics from every thread of every block into one counter / histogram / max.
extern "C" __global__ void atomics(const int* x, int n, int* sum, unsigned* hist, int* mx, float* fsum,
                                   int* order_seen) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(sum, x[i]);
    atomicAdd(&hist[x[i] & 7], 1u);
    atomicMax(mx, x[i]);
    atomicAdd(fsum, 1.0f);
    int ticket = atomicAdd(order_seen, 1);
    atomicCAS(order_seen + 1 + ticket, 0, 1);
}

// __syncthreads_count / _and / _or over x[i] != 0.
extern "C" __global__ void sync_votes(const int* x, int* out) {
    int p = x[threadIdx.x];
    int c = __syncthreads_count(p);
    int a = __syncthreads_and(p);
    int o = __syncthreads_or(p);
    if (threadIdx.x == 0) {
        out[0] = c;
        out[1] = a;
        out[2] = o;
    }
}

// fp16 / bf16 intrinsics over arrays: widening, and narrowing in each rounding mode.
extern "C" __global__ void half_convert(const unsigned short* h, const float* f, long long n, float* h2f, float* b2f,
                                        unsigned short* f2h, unsigned short* f2b) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        h2f[i] = __half2float(__ushort_as_half(h[i]));
        b2f[i] = __bfloat162float(__ushort_as_bfloat16(h[i]));
        f2h[4 * i + 0] = __half_as_ushort(__float2half_rn(f[i]));
        f2h[4 * i + 1] = __half_as_ushort(__float2half_rz(f[i]));
        f2h[4 * i + 2] = __half_as_ushort(__float2half_rd(f[i]));
        f2h[4 * i + 3] = __half_as_ushort(__float2half_ru(f[i]));
        f2b[4 * i + 0] = __bfloat16_as_ushort(__float2bfloat16_rn(f[i]));
        f2b[4 * i + 1] = __bfloat16_as_ushort(__float2bfloat16_rz(f[i]));
        f2b[4 * i + 2] = __bfloat16_as_ushort(__float2bfloat16_rd(f[i]));
        f2b[4 * i + 3] = __bfloat16_as_ushort(__float2bfloat16_ru(f[i]));
    }
}

// __dp4a (signed and unsigned) and float -> int rounding intrinsics.
extern "C" __global__ void int_intrinsics(const int* a, const int* b, const float* f, int n, int* dot, unsigned* udot,
                                          int* rn) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    dot[i] = __dp4a(a[i], b[i], i);
    udot[i] = __dp4a(static_cast<unsigned>(a[i]), static_cast<unsigned>(b[i]), static_cast<unsigned>(i));
    rn[i] = __float2int_rn(f[i]);
}
