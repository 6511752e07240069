/* kernels_internal.h — what the kernel files share beyond kernels.h (not public API):
 * the per-ISA entry points the tables in kernels_<isa>.c point to, the fp32 GEMM block
 * the quantized GEMM reuses, and the scalar decoders of the kv_qmat layout.
 *
 * Pipeline stage: run. Issue 3. */
#ifndef KVANT_KERNELS_INTERNAL_H
#define KVANT_KERNELS_INTERNAL_H

#include <string.h>

#include "kvant/kernels.h"

/* qmatmul_<isa>.c: kv_kernel_ops.qmatmul */
void kv_qmatmul_ref(const float *x, int64_t m, int64_t ldx, const kv_qmat *w, const float *bias,
                    int64_t r0, int64_t r1, float *y, int64_t ldy, float *work);
void kv_qmatmul_avx2(const float *x, int64_t m, int64_t ldx, const kv_qmat *w, const float *bias,
                     int64_t r0, int64_t r1, float *y, int64_t ldy, float *work);
void kv_qmatmul_avx512(const float *x, int64_t m, int64_t ldx, const kv_qmat *w,
                       const float *bias, int64_t r0, int64_t r1, float *y, int64_t ldy,
                       float *work);

/* kernels_<isa>.c: one block of the fp32 GEMM, exactly as its matmul runs it:
 * y[0..m, 0..nc) (+)= x[0..m, 0..kc) * B^T with B = wb[nc][kc] fp32 row-major;
 * first: start from zero, else add to y; bias (or NULL) is added after the sum.
 * panel: KV_GEMM_PANEL_FLOATS floats, 64-byte aligned. nc <= KV_GEMM_BLOCK_NC_<isa>,
 * kc <= KV_GEMM_BLOCK_KC_<isa> (the blocking the fp32 GEMM uses). */
#define KV_GEMM_PANEL_FLOATS ((size_t)256 * 128)
#define KV_GEMM_BLOCK_NC_AVX512 256
#define KV_GEMM_BLOCK_KC_AVX512 128
#define KV_GEMM_BLOCK_NC_AVX2 128
#define KV_GEMM_BLOCK_KC_AVX2 256
void kv_gemm_block_avx2(const float *x, int64_t m, int64_t ldx, const float *wb, int64_t nc,
                        int64_t kc, float *y, int64_t ldy, int first, const float *bias,
                        float *panel);
void kv_gemm_block_avx512(const float *x, int64_t m, int64_t ldx, const float *wb, int64_t nc,
                          int64_t kc, float *y, int64_t ldy, int first, const float *bias,
                          float *panel);

/* ---- scalar decoders of the kv_qmat layout (the specification) ---- */

/* Element k (B bits, B <= 8) of a row's LSB-first bit string. */
static inline uint32_t kvk_get_bits(const uint8_t *row, int64_t k, int B) {
    uint64_t bit = (uint64_t)k * (uint64_t)B;
    const uint8_t *p = row + (bit >> 3);
    unsigned sh = (unsigned)(bit & 7);
    uint32_t v = p[0];
    if (sh + (unsigned)B > 8) v |= (uint32_t)p[1] << 8;
    return (v >> sh) & ((1u << B) - 1u);
}

/* E8M0 byte -> 2^(e - 127) as an f32 (2^-127 is a subnormal, still exact); 0xFF -> NaN. */
static inline float kvk_e8m0(uint8_t e) {
    uint32_t u = e == 0xFF ? 0x7FC00000u : e == 0 ? 0x00400000u : (uint32_t)e << 23;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* mxint4 element: two's complement nibble k -> k / 4. */
static inline float kvk_int4_elem(uint32_t c) {
    int k = (c & 8) ? (int)c - 16 : (int)c;
    return (float)k * 0.25f;
}

static inline float kvk_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return kv_f16_to_f32(h);
}

/* Dequantized element (r, k): one f32 product, as kv_dequantize_ref computes it. */
static inline float kvk_deq(const kv_qmat *w, int64_t r, int64_t k) {
    const int B = w->qf.bits;
    const int64_t g = k / w->qf.group;
    uint32_t c = kvk_get_bits(w->q + (size_t)r * (size_t)w->row_bytes, k, B);
    const size_t gi = (size_t)r * (size_t)w->n_groups + (size_t)g;
    switch (w->qf.fmt) {
    case KV_QFMT_MXFP4: return kv_e2m1_values[c] * kvk_e8m0(w->scales[gi]);
    case KV_QFMT_MXINT4: return kvk_int4_elem(c) * kvk_e8m0(w->scales[gi]);
    default: return kvk_f16(w->scales + 2 * gi) * (float)((int32_t)c - (int32_t)w->zeros[gi]);
    }
}

#endif
