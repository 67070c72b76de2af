// gguf_iqgrid.cu: gguf_dequantize for ggml's grid types IQ2_XXS ... IQ1_M, one thread
// per super-block of 256 (grid-stride); the decoders are gguf_iqgrid.cuh's. Every kernel
// takes the type's grid and ksigns_iq2xs (device tables from the launch code).
#include "gguf_iqgrid.cuh"

extern "C" __global__ void gguf_dequantize_iq2_xxs(const u8* data, i64 nb, const u8* grid, const u8* ksigns, float* out) {
    GRID_STRIDE(b, nb) { dq_iq2_xxs(data + b * 66, out + b * 256, grid, ksigns); }
}
extern "C" __global__ void gguf_dequantize_iq2_xs(const u8* data, i64 nb, const u8* grid, const u8* ksigns, float* out) {
    GRID_STRIDE(b, nb) { dq_iq2_xs(data + b * 74, out + b * 256, grid, ksigns); }
}
extern "C" __global__ void gguf_dequantize_iq2_s(const u8* data, i64 nb, const u8* grid, const u8* ksigns, float* out) {
    GRID_STRIDE(b, nb) { dq_iq2_s(data + b * 82, out + b * 256, grid, ksigns); }
}
extern "C" __global__ void gguf_dequantize_iq3_xxs(const u8* data, i64 nb, const u8* grid, const u8* ksigns, float* out) {
    GRID_STRIDE(b, nb) { dq_iq3_xxs(data + b * 98, out + b * 256, grid, ksigns); }
}
extern "C" __global__ void gguf_dequantize_iq3_s(const u8* data, i64 nb, const u8* grid, const u8* ksigns, float* out) {
    GRID_STRIDE(b, nb) { dq_iq3_s(data + b * 110, out + b * 256, grid, ksigns); }
}
extern "C" __global__ void gguf_dequantize_iq1_s(const u8* data, i64 nb, const u8* grid, const u8* ksigns, float* out) {
    GRID_STRIDE(b, nb) { dq_iq1_s(data + b * 50, out + b * 256, grid, ksigns); }
}
extern "C" __global__ void gguf_dequantize_iq1_m(const u8* data, i64 nb, const u8* grid, const u8* ksigns, float* out) {
    GRID_STRIDE(b, nb) { dq_iq1_m(data + b * 56, out + b * 256, grid, ksigns); }
}
