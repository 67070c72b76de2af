// cuda_sim.h: a small SIMT runtime that runs CUDA C++ kernels on the CPU.
//
// A .cu file of accel/cupy/src is compiled by g++ as C++ with this header included
// first. It supplies what the kernels use of the CUDA programming model (CUDA C++
// Programming Guide, sections "Built-in Variables", "Synchronization Functions",
// "Warp Shuffle Functions", "Warp Vote Functions", "Atomic Functions", and the
// cuda_fp16 / cuda_bf16 conversion intrinsics) and a runner, cuda_sim_launch, that
// executes one launch: the blocks one after another, the threads of a block as
// cooperative fibers (ucontext). A fiber runs until it reaches a barrier
// (__syncthreads*), a warp collective (__shfl*_sync, __ballot_sync, __any_sync,
// __all_sync, __syncwarp) or its end; a barrier is released when every live thread of
// the block waits at it, a warp collective when every lane of its mask waits with the
// same mask. The order in which runnable fibers are resumed is a launch parameter
// (forward, reverse, or shuffled per round from a seed), so a kernel that reads shared
// memory without the barrier it needs gives different results under different orders;
// shared memory starts every block filled with 0xff bytes.
// Misuse the guide calls undefined (a collective whose mask names an exited lane, a
// shuffle from a lane outside the mask, a barrier that can never be released) stops
// the launch with an error message instead of hanging.
//
// Arithmetic is the host's IEEE float32/float64 with round-to-nearest-even; the module
// is compiled with -ffp-contract=off, so a*b+c is two roundings, as nvcc --fmad=false.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __noinline__
#define __forceinline__ inline
#define __constant__
// Shared variables live in one linker section, which the runner fills with 0xff bytes
// (NaN / -1) before every block, as stale or uninitialized shared memory would be.
#define __shared__ static __attribute__((section("cuda_sim_shared")))
#define __launch_bounds__(...)
#define __restrict__ __restrict

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace cuda_sim {

enum FiberState { RUNNABLE, AT_BARRIER, AT_WARP, DONE };
enum Schedule { FORWARD = 0, REVERSE = 1, SHUFFLED = 2 };

struct Fiber {
    ucontext_t ctx;
    FiberState state;
    uint3 tid;
    unsigned linear, warp, lane;
    unsigned mask;          // warp collective: the participating lanes
    uint64_t value;         // warp collective / block barrier: this thread's operand
    uint64_t lanes[32];     // warp collective: every lane's operand at release
    uint64_t reduced;       // block barrier: __syncthreads_count / _and / _or result
    char* stack;
};

struct Launch {
    void (*entry)(void**);
    void** args;
    std::vector<Fiber> fibers;
    ucontext_t scheduler;
    std::vector<unsigned> order;
    std::mt19937_64 rng;
    int schedule;
    bool failed;
    char error[512];
};

inline Fiber* cur = nullptr;
inline Launch* launch = nullptr;
inline uint3 block_idx;
inline dim3 block_dim, grid_dim;
inline size_t stack_bytes = 256 * 1024;

[[noreturn]] inline void fail_and_leave(const char* msg) {
    if (!launch->failed) {
        launch->failed = true;
        std::snprintf(launch->error, sizeof launch->error, "thread (%u,%u,%u) of block (%u,%u,%u): %s", cur->tid.x,
                      cur->tid.y, cur->tid.z, block_idx.x, block_idx.y, block_idx.z, msg);
    }
    cur->state = DONE;
    swapcontext(&cur->ctx, &launch->scheduler);
    std::abort();  // a failed launch never resumes its fibers
}

inline void yield_to_scheduler() { swapcontext(&cur->ctx, &launch->scheduler); }

// One warp collective: publish this lane's operand, wait until every lane of `mask`
// has published with the same mask, then read the snapshot taken at release.
inline const uint64_t* warp_exchange(unsigned mask, uint64_t value) {
    if (!(mask >> cur->lane & 1u)) fail_and_leave("warp collective called with a mask that excludes the calling lane");
    cur->mask = mask;
    cur->value = value;
    cur->state = AT_WARP;
    yield_to_scheduler();
    return cur->lanes;
}

inline uint64_t block_barrier(uint64_t value) {
    cur->value = value;
    cur->state = AT_BARRIER;
    yield_to_scheduler();
    return cur->reduced;
}

inline void fiber_main() {
    launch->entry(launch->args);
    cur->state = DONE;
}

// Release warp collectives that are complete; returns whether any was released.
inline bool release_warps() {
    std::vector<Fiber>& f = launch->fibers;
    bool released = false;
    for (size_t i = 0; i < f.size(); ++i) {
        if (f[i].state != AT_WARP) continue;
        unsigned mask = f[i].mask, base = f[i].warp * 32;
        bool complete = true;
        for (unsigned l = 0; l < 32 && complete; ++l) {
            if (!(mask >> l & 1u)) continue;
            size_t j = base + l;
            if (j >= f.size() || f[j].state == DONE) {
                cur = &f[i];
                launch->failed = true;
                std::snprintf(launch->error, sizeof launch->error,
                              "warp %u: collective with mask 0x%08x names lane %u, which has exited or does not exist",
                              f[i].warp, mask, l);
                return false;
            }
            complete = f[j].state == AT_WARP && f[j].mask == mask;
        }
        if (!complete) continue;
        uint64_t snap[32] = {0};
        for (unsigned l = 0; l < 32; ++l)
            if (mask >> l & 1u) snap[l] = f[base + l].value;
        for (unsigned l = 0; l < 32; ++l) {
            if (!(mask >> l & 1u)) continue;
            std::memcpy(f[base + l].lanes, snap, sizeof snap);
            f[base + l].state = RUNNABLE;
        }
        released = true;
    }
    return released;
}

// Release the block barrier when every live thread waits at it.
inline bool release_block() {
    std::vector<Fiber>& f = launch->fibers;
    uint64_t count = 0, waiting = 0;
    for (Fiber& t : f) {
        if (t.state == DONE) continue;
        if (t.state != AT_BARRIER) return false;
        ++waiting;
        count += t.value != 0;
    }
    if (waiting == 0) return false;
    for (Fiber& t : f)
        if (t.state == AT_BARRIER) {
            t.reduced = count;
            t.state = RUNNABLE;
        }
    return true;
}

extern "C" char __start_cuda_sim_shared[] __attribute__((weak));
extern "C" char __stop_cuda_sim_shared[] __attribute__((weak));

inline void poison_shared() {
    if (__start_cuda_sim_shared != nullptr && __stop_cuda_sim_shared > __start_cuda_sim_shared)
        std::memset(__start_cuda_sim_shared, 0xff, __stop_cuda_sim_shared - __start_cuda_sim_shared);
}

inline void run_block() {
    Launch& L = *launch;
    unsigned n = static_cast<unsigned>(L.fibers.size());
    for (;;) {
        if (L.schedule == SHUFFLED) std::shuffle(L.order.begin(), L.order.end(), L.rng);
        bool ran = false;
        for (unsigned k = 0; k < n && !L.failed; ++k) {
            Fiber& t = L.fibers[L.order[k]];
            if (t.state != RUNNABLE) continue;
            cur = &t;
            swapcontext(&L.scheduler, &t.ctx);
            ran = true;
        }
        if (L.failed) return;
        if (ran) continue;
        if (release_warps() || L.failed) {
            if (L.failed) return;
            continue;
        }
        if (release_block()) continue;
        bool all_done = true;
        for (Fiber& t : L.fibers) all_done = all_done && t.state == DONE;
        if (all_done) return;
        L.failed = true;
        std::snprintf(L.error, sizeof L.error,
                      "block (%u,%u,%u) deadlocked: threads wait at a barrier or warp collective that the others "
                      "never reach",
                      block_idx.x, block_idx.y, block_idx.z);
        return;
    }
}

}  // namespace cuda_sim

// Runs entry(args) on every thread of grid x block; 0 on success, else -1 and `error`.
extern "C" int cuda_sim_launch(void (*entry)(void**), void** args, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, int schedule, unsigned long long seed, char* error,
                               int error_len) {
    using namespace cuda_sim;
    static std::vector<std::unique_ptr<char[]>> stacks;  // reused across launches
    Launch L;
    L.entry = entry;
    L.args = args;
    L.schedule = schedule;
    L.rng.seed(seed);
    L.failed = false;
    L.error[0] = 0;
    unsigned n = bx * by * bz;
    if (n == 0 || n > 1024) {
        std::snprintf(error, error_len, "block of %u threads (CUDA allows 1..1024)", n);
        return -1;
    }
    while (stacks.size() < n) stacks.emplace_back(new char[stack_bytes]);
    L.fibers.resize(n);
    L.order.resize(n);
    for (unsigned i = 0; i < n; ++i) L.order[i] = schedule == REVERSE ? n - 1 - i : i;
    launch = &L;
    block_dim = dim3(bx, by, bz);
    grid_dim = dim3(gx, gy, gz);
    for (unsigned z = 0; z < gz && !L.failed; ++z)
        for (unsigned y = 0; y < gy && !L.failed; ++y)
            for (unsigned x = 0; x < gx && !L.failed; ++x) {
                block_idx = uint3{x, y, z};
                poison_shared();
                for (unsigned i = 0; i < n; ++i) {
                    Fiber& t = L.fibers[i];
                    t.linear = i;
                    t.tid = uint3{i % bx, (i / bx) % by, i / (bx * by)};
                    t.warp = i / 32;
                    t.lane = i % 32;
                    t.state = RUNNABLE;
                    t.stack = stacks[i].get();
                    getcontext(&t.ctx);
                    t.ctx.uc_stack.ss_sp = t.stack;
                    t.ctx.uc_stack.ss_size = stack_bytes;
                    t.ctx.uc_link = &L.scheduler;
                    makecontext(&t.ctx, fiber_main, 0);
                }
                run_block();
            }
    launch = nullptr;
    cur = nullptr;
    if (L.failed) {
        std::snprintf(error, error_len, "%s", L.error);
        return -1;
    }
    return 0;
}

// ---- built-in variables -------------------------------------------------------------
#define threadIdx (::cuda_sim::cur->tid)
#define blockIdx (::cuda_sim::block_idx)
#define blockDim (::cuda_sim::block_dim)
#define gridDim (::cuda_sim::grid_dim)
#define warpSize 32

// ---- synchronization ----------------------------------------------------------------
inline void __syncthreads() { cuda_sim::block_barrier(0); }
inline int __syncthreads_count(int p) { return static_cast<int>(cuda_sim::block_barrier(p != 0)); }
inline int __syncthreads_and(int p) {
    uint64_t live = 0;
    for (auto& t : cuda_sim::launch->fibers) live += t.state != cuda_sim::DONE;
    return static_cast<uint64_t>(__syncthreads_count(p)) == live;
}
inline int __syncthreads_or(int p) { return __syncthreads_count(p) != 0; }
inline void __syncwarp(unsigned mask = 0xffffffffu) { cuda_sim::warp_exchange(mask, 0); }
inline void __threadfence() {}
inline void __threadfence_block() {}
inline unsigned __activemask() {
    unsigned m = 0, base = cuda_sim::cur->warp * 32;
    auto& f = cuda_sim::launch->fibers;
    for (unsigned l = 0; l < 32 && base + l < f.size(); ++l) m |= (f[base + l].state != cuda_sim::DONE) << l;
    return m;
}
[[noreturn]] inline void __trap() { cuda_sim::fail_and_leave("__trap()"); }

// ---- warp shuffle / vote (operands travel as 64-bit patterns) -----------------------
namespace cuda_sim {
template <typename T>
inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffle operand wider than 64 bits");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
inline T from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}
// Reads lane `src` of the snapshot, refusing a lane outside the mask (undefined in CUDA).
template <typename T>
inline T shfl_read(unsigned mask, const uint64_t* lanes, int src, T own) {
    if (src == static_cast<int>(cur->lane)) return own;
    if (!(mask >> src & 1u)) fail_and_leave("shuffle reads a lane outside the mask");
    return from_bits<T>(lanes[src]);
}
}  // namespace cuda_sim

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32) {
    const uint64_t* lanes = cuda_sim::warp_exchange(mask, cuda_sim::to_bits(var));
    int lane = cuda_sim::cur->lane;
    int src = (lane / width) * width + (srcLane % width + width) % width;
    return cuda_sim::shfl_read(mask, lanes, src, var);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    const uint64_t* lanes = cuda_sim::warp_exchange(mask, cuda_sim::to_bits(var));
    int lane = cuda_sim::cur->lane;
    int src = lane - static_cast<int>(delta);
    if ((lane % width) - static_cast<int>(delta) < 0) return var;
    return cuda_sim::shfl_read(mask, lanes, src, var);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    const uint64_t* lanes = cuda_sim::warp_exchange(mask, cuda_sim::to_bits(var));
    int lane = cuda_sim::cur->lane;
    if ((lane % width) + static_cast<int>(delta) >= width) return var;
    return cuda_sim::shfl_read(mask, lanes, lane + static_cast<int>(delta), var);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32) {
    const uint64_t* lanes = cuda_sim::warp_exchange(mask, cuda_sim::to_bits(var));
    int lane = cuda_sim::cur->lane;
    int src = lane ^ laneMask;
    if (src >= (lane / width + 1) * width) return var;  // later groups: own value (guide)
    return cuda_sim::shfl_read(mask, lanes, src, var);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
    const uint64_t* lanes = cuda_sim::warp_exchange(mask, predicate != 0);
    unsigned r = 0;
    for (unsigned l = 0; l < 32; ++l) r |= static_cast<unsigned>((mask >> l & 1u) && lanes[l]) << l;
    return r;
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) == mask; }

// ---- atomics (fibers never interleave inside one call, so plain read-modify-write) ---
namespace cuda_sim {
template <typename T, typename F>
inline T atomic_rmw(T* address, F update) {
    T old = *address;
    *address = update(old);
    return old;
}
}  // namespace cuda_sim
template <typename T> inline T atomicAdd(T* a, T v) { return cuda_sim::atomic_rmw(a, [v](T o) { return o + v; }); }
template <typename T> inline T atomicSub(T* a, T v) { return cuda_sim::atomic_rmw(a, [v](T o) { return o - v; }); }
template <typename T> inline T atomicMax(T* a, T v) { return cuda_sim::atomic_rmw(a, [v](T o) { return o < v ? v : o; }); }
template <typename T> inline T atomicMin(T* a, T v) { return cuda_sim::atomic_rmw(a, [v](T o) { return v < o ? v : o; }); }
template <typename T> inline T atomicOr(T* a, T v) { return cuda_sim::atomic_rmw(a, [v](T o) { return o | v; }); }
template <typename T> inline T atomicAnd(T* a, T v) { return cuda_sim::atomic_rmw(a, [v](T o) { return o & v; }); }
template <typename T> inline T atomicXor(T* a, T v) { return cuda_sim::atomic_rmw(a, [v](T o) { return o ^ v; }); }
template <typename T> inline T atomicExch(T* a, T v) { return cuda_sim::atomic_rmw(a, [v](T) { return v; }); }
template <typename T>
inline T atomicCAS(T* a, T compare, T v) { return cuda_sim::atomic_rmw(a, [=](T o) { return o == compare ? v : o; }); }
inline unsigned atomicInc(unsigned* address, unsigned val) {
    unsigned old = *address;
    *address = old >= val ? 0u : old + 1u;
    return old;
}

// ---- integer intrinsics ---------------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= (x >> i & 1u) << (31 - i);
    return r;
}
inline int __mul24(int a, int b) { return (a << 8 >> 8) * (b << 8 >> 8); }
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint64_t v = (static_cast<uint64_t>(y) << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; ++i) r |= static_cast<unsigned>(v >> (8 * ((s >> (4 * i)) & 7)) & 0xff) << (8 * i);
    return r;
}
// Four 8-bit products summed into a 32-bit accumulator (PTX dp4a: int32 wrap-around).
inline int __dp4a(int a, int b, int c) {
    uint32_t acc = static_cast<uint32_t>(c);
    for (int i = 0; i < 4; ++i)
        acc += static_cast<uint32_t>(static_cast<int>(static_cast<int8_t>(a >> (8 * i))) *
                                     static_cast<int>(static_cast<int8_t>(b >> (8 * i))));
    return static_cast<int>(acc);
}
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    for (int i = 0; i < 4; ++i) c += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
    return c;
}
using std::max;
using std::min;
inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned umax(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }

// ---- float intrinsics: IEEE round-to-nearest-even unless the suffix says otherwise ---
inline float __int_as_float(int x) { return cuda_sim::from_bits<float>(static_cast<uint32_t>(x)); }
inline int __float_as_int(float x) { return static_cast<int>(cuda_sim::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return cuda_sim::from_bits<float>(x); }
inline unsigned __float_as_uint(float x) { return static_cast<unsigned>(cuda_sim::to_bits(x)); }
inline double __longlong_as_double(long long x) { return cuda_sim::from_bits<double>(static_cast<uint64_t>(x)); }
inline long long __double_as_longlong(double x) { return static_cast<long long>(cuda_sim::to_bits(x)); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __saturatef(float x) { return x != x ? 0.0f : std::fmin(std::fmax(x, 0.0f), 1.0f); }
namespace cuda_sim {
// PTX cvt.rni/rzi/rmi/rpi.s32.f32: NaN -> 0, out of range saturates.
template <typename I>
inline I float_to_int(double r) {
    if (r != r) return 0;
    if (r <= static_cast<double>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
    if (r >= static_cast<double>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
    return static_cast<I>(r);
}
}  // namespace cuda_sim
inline int __float2int_rn(float x) { return cuda_sim::float_to_int<int>(std::nearbyint(static_cast<double>(x))); }
inline int __float2int_rz(float x) { return cuda_sim::float_to_int<int>(std::trunc(static_cast<double>(x))); }
inline int __float2int_rd(float x) { return cuda_sim::float_to_int<int>(std::floor(static_cast<double>(x))); }
inline int __float2int_ru(float x) { return cuda_sim::float_to_int<int>(std::ceil(static_cast<double>(x))); }
inline unsigned __float2uint_rn(float x) {
    return cuda_sim::float_to_int<unsigned>(std::nearbyint(static_cast<double>(x)));
}
inline long long __float2ll_rn(float x) { return cuda_sim::float_to_int<long long>(std::nearbyint(static_cast<double>(x))); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline float __ll2float_rn(long long x) { return static_cast<float>(x); }
inline int __double2int_rn(double x) { return cuda_sim::float_to_int<int>(std::nearbyint(x)); }
inline float __double2float_rn(double x) { return static_cast<float>(x); }
template <typename T>
inline T __ldg(const T* p) { return *p; }
using std::fabs;
using std::floor;
using std::sqrt;

#include "cuda_sim_fp16.h"
