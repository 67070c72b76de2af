// gguf.cu: ggml's dequantize_row_* for every GGUF type refquant defines (ggml-quants.c
// @ d99724f2), one thread per ggml block (grid-stride), each kernel the C function's
// float32 operations in its order (compiled without FMA contraction): bit-exact.
#include "gguf_blocks.cuh"

// F16 / BF16: one element per "block" (2 bytes), exact widening.
extern "C" __global__ void gguf_dequantize_f16(const u16* h, i64 n, float* out) {
    GRID_STRIDE(i, n) { out[i] = fp16_to_f32(h[i]); }
}
extern "C" __global__ void gguf_dequantize_bf16(const u16* h, i64 n, float* out) {
    GRID_STRIDE(i, n) { out[i] = __uint_as_float(static_cast<u32>(h[i]) << 16); }
}

// One kernel per block type: data (nb, type_size) -> out (nb, block_size).
extern "C" __global__ void gguf_dequantize_q4_0(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q4_0(data + b * 18, out + b * 32); }
}
extern "C" __global__ void gguf_dequantize_q4_1(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q4_1(data + b * 20, out + b * 32); }
}
extern "C" __global__ void gguf_dequantize_q5_0(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q5(data + b * 22, out + b * 32, 0); }
}
extern "C" __global__ void gguf_dequantize_q5_1(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q5(data + b * 24, out + b * 32, 1); }
}
extern "C" __global__ void gguf_dequantize_q8_0(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q8(data + b * 34, out + b * 32, 2); }
}
extern "C" __global__ void gguf_dequantize_q8_1(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q8(data + b * 36, out + b * 32, 4); }
}
extern "C" __global__ void gguf_dequantize_q2_k(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q2_k(data + b * 84, out + b * 256); }
}
extern "C" __global__ void gguf_dequantize_q3_k(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q3_k(data + b * 110, out + b * 256); }
}
extern "C" __global__ void gguf_dequantize_q4_k(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q45_k(data + b * 144, out + b * 256, 0); }
}
extern "C" __global__ void gguf_dequantize_q5_k(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q45_k(data + b * 176, out + b * 256, 1); }
}
extern "C" __global__ void gguf_dequantize_q6_k(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q6_k(data + b * 210, out + b * 256); }
}
extern "C" __global__ void gguf_dequantize_q8_k(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_q8_k(data + b * 292, out + b * 256); }
}
extern "C" __global__ void gguf_dequantize_tq1_0(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_tq1_0(data + b * 54, out + b * 256); }
}
extern "C" __global__ void gguf_dequantize_tq2_0(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_tq2_0(data + b * 66, out + b * 256); }
}
extern "C" __global__ void gguf_dequantize_iq4_nl(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_iq4_nl(data + b * 18, out + b * 32); }
}
extern "C" __global__ void gguf_dequantize_iq4_xs(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_iq4_xs(data + b * 136, out + b * 256); }
}
extern "C" __global__ void gguf_dequantize_mxfp4(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_mxfp4(data + b * 17, out + b * 32); }
}
extern "C" __global__ void gguf_dequantize_nvfp4(const u8* data, i64 nb, float* out) {
    GRID_STRIDE(b, nb) { dq_nvfp4(data + b * 36, out + b * 64); }
}
