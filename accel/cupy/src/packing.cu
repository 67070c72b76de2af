// packing.cu: pack / unpack (every layout of refquant.packing.LAYOUTS) and ternary packing.
//
// Every layout is a bit stream: code k holds stream bits [bits*k, bits*(k+1)), cut into
// containers of W = 8 or 32 bits. low_first puts stream bit s at container bit s % W
// (a code's low bit first); high_first at bit W-1 - s % W (a code's high bit first);
// awq is low_first over codes permuted within each group of 8 (slot i holds code
// AWQ_ORDER[i]). pack writes one container per thread from the codes that overlap it;
// unpack reads one code per thread from the (at most two) containers it overlaps.
// Ternary: five trits per byte, ceil(q * 256 / 243) with q their base-3 number (ggml
// TQ1_0), read back as ((byte * 3**n) mod 256 * 3) >> 8.
#include "common.cuh"

__device__ __forceinline__ int awq_slot_code(int slot) {   // AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
    return slot < 4 ? 2 * slot : 2 * (slot - 4) + 1;
}
__device__ __forceinline__ int awq_code_slot(int code) {   // its inverse (0, 4, 1, 5, 2, 6, 3, 7)
    return (code & 1) ? 4 + code / 2 : code / 2;
}

// order: 0 low_first, 1 high_first, 2 awq. out holds rows x units containers of width W.
template <typename Code, typename Unit>
__device__ void pack_rows(const Code* __restrict__ codes, Unit* __restrict__ out, i64 rows, i64 n, i64 units,
                          int bits, int width, int order, int* bad) {
    const i64 top = (1 << bits) - 1;
    GRID_STRIDE(t, rows * units) {
        i64 r = t / units, j = t - r * units;
        i64 first = (j * width) / bits, last = (j * width + width - 1) / bits;
        u64 acc = 0;
        for (i64 k = first; k <= last; ++k) {
            i64 src = k;
            if (order == 2) src = (k & ~7LL) + awq_slot_code(static_cast<int>(k & 7));
            i64 v = src < n ? static_cast<i64>(codes[r * n + src]) : 0;
            if (v < 0 || v > top) {
                flag_bad(bad);
                v = 0;
            }
            // position of the code's lowest bit in the container (may be negative or past W)
            i64 s = order == 1 ? j * width + width - (k + 1) * bits : k * bits - j * width;
            acc |= s >= 0 ? static_cast<u64>(v) << s : static_cast<u64>(v) >> (-s);
        }
        out[t] = static_cast<Unit>(acc & ((width == 32) ? 0xffffffffULL : 0xffULL));
    }
}

template <typename Unit>
__device__ void unpack_rows(const Unit* __restrict__ packed, u8* __restrict__ out, i64 rows, i64 count, i64 units,
                            int bits, int width, int order) {
    const u64 mask = (1u << bits) - 1u;
    GRID_STRIDE(t, rows * count) {
        i64 r = t / count, k = t - r * count;
        i64 slot = order == 2 ? (k & ~7LL) + awq_code_slot(static_cast<int>(k & 7)) : k;
        i64 j = (slot * bits) / width;
        u64 c0 = static_cast<u64>(packed[r * units + j]) & (width == 32 ? 0xffffffffULL : 0xffULL);
        u64 c1 = j + 1 < units ? static_cast<u64>(packed[r * units + j + 1]) & (width == 32 ? 0xffffffffULL : 0xffULL) : 0;
        i64 off = slot * bits - j * width;
        u64 v = order == 1 ? ((c0 << width) | c1) >> (2 * width - off - bits) : (c0 | (c1 << width)) >> off;
        out[t] = static_cast<u8>(v & mask);
    }
}

extern "C" __global__ void pack_u8_u8(const u8* codes, u8* out, i64 rows, i64 n, i64 units, int bits, int width,
                                      int order, int* bad) {
    pack_rows(codes, out, rows, n, units, bits, width, order, bad);
}
extern "C" __global__ void pack_i64_u8(const i64* codes, u8* out, i64 rows, i64 n, i64 units, int bits, int width,
                                       int order, int* bad) {
    pack_rows(codes, out, rows, n, units, bits, width, order, bad);
}
extern "C" __global__ void pack_u8_u32(const u8* codes, u32* out, i64 rows, i64 n, i64 units, int bits, int width,
                                       int order, int* bad) {
    pack_rows(codes, out, rows, n, units, bits, width, order, bad);
}
extern "C" __global__ void pack_i64_u32(const i64* codes, u32* out, i64 rows, i64 n, i64 units, int bits, int width,
                                        int order, int* bad) {
    pack_rows(codes, out, rows, n, units, bits, width, order, bad);
}
extern "C" __global__ void unpack_u8(const u8* packed, u8* out, i64 rows, i64 count, i64 units, int bits, int width,
                                     int order) {
    unpack_rows(packed, out, rows, count, units, bits, width, order);
}
extern "C" __global__ void unpack_u32(const u32* packed, u8* out, i64 rows, i64 count, i64 units, int bits, int width,
                                      int order) {
    unpack_rows(packed, out, rows, count, units, bits, width, order);
}

template <typename Code>
__device__ void pack_trits(const Code* __restrict__ trits, u8* __restrict__ out, i64 rows, i64 n, i64 units, int* bad) {
    GRID_STRIDE(t, rows * units) {
        i64 r = t / units, j = t - r * units;
        u32 q = 0;
        for (int k = 0; k < 5; ++k) {   // first trit most significant
            i64 idx = 5 * j + k;
            i64 v = idx < n ? static_cast<i64>(trits[r * n + idx]) : 0;
            if (v < 0 || v > 2) {
                flag_bad(bad);
                v = 0;
            }
            q = q * 3u + static_cast<u32>(v);
        }
        out[t] = static_cast<u8>((q * 256u + 242u) / 243u);
    }
}

extern "C" __global__ void pack_ternary_u8(const u8* trits, u8* out, i64 rows, i64 n, i64 units, int* bad) {
    pack_trits(trits, out, rows, n, units, bad);
}
extern "C" __global__ void pack_ternary_i64(const i64* trits, u8* out, i64 rows, i64 n, i64 units, int* bad) {
    pack_trits(trits, out, rows, n, units, bad);
}

extern "C" __global__ void unpack_ternary(const u8* packed, u8* out, i64 rows, i64 count, i64 units) {
    const u32 pow3[5] = {1, 3, 9, 27, 81};
    GRID_STRIDE(t, rows * count) {
        i64 r = t / count, k = t - r * count;
        u32 b = packed[r * units + k / 5];
        u32 v = (b * pow3[k % 5]) & 0xffu;
        out[t] = static_cast<u8>((v * 3u) >> 8);
    }
}
