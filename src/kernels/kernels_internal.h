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

/* qmatmul_q8_<isa>.c: the q8 path (kernels.h); the AVX-512 one needs VNNI + VBMI */
void kv_qmatmul_q8_avx2(const float *x, int64_t m, int64_t ldx, const kv_qmat *w,
                        const float *bias, int64_t r0, int64_t r1, float *y, int64_t ldy,
                        float *work);
void kv_qmatmul_q8_avx512(const float *x, int64_t m, int64_t ldx, const kv_qmat *w,
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

/* ---- GEMV weight prefetch ---- */

/* A GEMV tile reads its R rows as R interleaved streams of only row_bytes each, too
 * short for the hardware stream prefetcher to ramp up, and R streams per thread make
 * the memory system reorder: the cold GEMVs waited at ~40-75% of the read bandwidth
 * (bench_qmatmul). So the SIMD GEMVs request the rows ahead themselves, in address
 * order: the p-th request of a tile (p = step * R + q, one per 64 weight bytes of a
 * row) goes to line p of that region, one sequential stream per thread. Steps of
 * fewer than 64 bytes (the exact int3 kernel's 48) run a little further ahead each step
 * and the q8 int3 kernel's 96-byte steps request two lines each; requests are
 * hints and never fault.
 *
 * How far ahead: KV_PF_TILES tiles, and never less than KV_PF_MIN bytes (at ~40 GB/s
 * per core and ~100 ns to DRAM, 4 KB are in flight; a 2-row distance of a 2560-wide
 * int4 matrix, 2.5 KB, left the single-row GEMV at ~75%).
 *
 * Single rows. With weights from DRAM at ~80 GB/s, one row at a time (R = 1: the
 * demand loads are one sequential stream too) beat 4-row tiles by 5-15 points of the
 * read bandwidth (q8 int4 and MX, bf16), where the activation row stays in L1 beside
 * the weight stream; where it does not (a 25600-wide q8 row, 38 KB; bf16 rows past
 * 6k inputs as fp32) re-reading it per row from L2 cost more than the tiles' shared
 * loads, so those keep R = 4 (kvk_gemv_single; 25600-wide q8 int4 single rows: 30
 * GB/s, tiles 54-66). Cutting such rows into K blocks that fit L1 (blocks outermost)
 * was tried and lost too (q8 int4 44 -> 33 GB/s at ~45): the rows become strided
 * segments that the hardware prefetchers overrun. q8 int2 keeps 4-row tiles whatever
 * the width (qmatmul_q8_avx512.c says why). */
#define KV_PF_TILES 2
#define KV_PF_MIN 8192
#define KV_GEMV_ACT_L1 (24 << 10)
static inline int kvk_gemv_single(size_t act_bytes) { return act_bytes <= KV_GEMV_ACT_L1; }
/* Bytes ahead for tiles of R rows of row_bytes each (no division: this runs per line,
 * and gcc does not hoist a division, which may trap, out of the loop). */
static inline size_t kvk_pf_dist(size_t row_bytes, int R) {
    const size_t d = (size_t)(KV_PF_TILES * R) * row_bytes;
    return d < KV_PF_MIN ? KV_PF_MIN : d;
}
/* base + off as an address, not pointer arithmetic: the target may lie past the end of
 * the array (the last tiles), which a pointer may not point to but a prefetch may. */
static inline void kvk_prefetch_at(const void *base, size_t off) {
    __builtin_prefetch((const void *)((uintptr_t)base + off), 0, 3);
}
static inline void kvk_prefetch_line(const uint8_t *tile, size_t row_bytes, int R, size_t p) {
    kvk_prefetch_at(tile, kvk_pf_dist(row_bytes, R) + p * 64);
}

/* The side arrays (scales, zeros: n_groups entries of `es` bytes per row) of the R rows
 * as far ahead as kvk_prefetch_line's. A prefetch past the end of an array does not fault. */
static inline void kvk_prefetch_side(const kv_qmat *w, int64_t r, int R) {
    const size_t ng = (size_t)w->n_groups, es = w->qf.fmt == KV_QFMT_INT ? 2 : 1;
    const size_t rb = (size_t)w->row_bytes;
    const size_t row = (size_t)r + (kvk_pf_dist(rb, R) + rb - 1) / rb; /* once per tile */
    for (size_t o = (row * ng * es) & ~(size_t)63; o < (row + (size_t)R) * ng * es; o += 64)
        kvk_prefetch_at(w->scales, o);
    if (w->zeros)
        for (size_t o = (row * ng) & ~(size_t)63; o < (row + (size_t)R) * ng; o += 64) kvk_prefetch_at(w->zeros, o);
}

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


/* ---- the q8 path's shared scalar pieces (kernels.h: "the int8-activation path") ----
 * Every ISA quantizes activations with these block rules and computes X_g with
 * kvq8_group_sums, so the integers and X_g are bit-identical across ISAs. */

/* Block scale d and its inverse id from the block's amax (and whether it holds a
 * non-finite value): NaN for a non-finite block, 0 below 2^-100 (127 / amax would
 * overflow for tiny subnormals; such a block contributes < 2^-95 |w|). */
static inline float kvq8_scale(float amax, int nonfinite, float *id) {
    *id = 0.0f;
    if (nonfinite) return __builtin_nanf("");
    if (!(amax >= 0x1p-100f)) return 0.0f;
    *id = 127.0f / amax;
    return amax / 127.0f;
}

/* x8 = rne(v) clamped to [-127, 127] (v = x * id; the default rounding mode is RNE,
 * which is what cvtps2dq uses too). */
static inline int8_t kvq8_round(float v) {
    float r = __builtin_nearbyintf(v);
    if (r > 127.0f) r = 127.0f;
    if (r < -127.0f) r = -127.0f;
    return (int8_t)r;
}

/* One block of KV_Q8_BLOCK activations: q[], *xs = sum q; returns d. */
static inline float kvq8_quant_block(const float *x, int8_t *q, int32_t *xs) {
    float amax = 0.0f, id;
    int bad = 0;
    for (int j = 0; j < KV_Q8_BLOCK; j++) {
        float a = __builtin_fabsf(x[j]);
        bad |= !(a <= 3.40282347e38f);
        if (a > amax) amax = a;
    }
    float d = kvq8_scale(amax, bad, &id);
    int32_t s = 0;
    for (int j = 0; j < KV_Q8_BLOCK; j++) {
        q[j] = d == d && d > 0.0f ? kvq8_round(x[j] * id) : 0;
        s += q[j];
    }
    *xs = s;
    return d;
}

/* X_g = sum_{b in g} d_b * (float)xs_b, blocks in order, for groups [0, ng). */
static inline void kvq8_group_sums(const float *d, const int32_t *xs, int64_t ng, int bpg,
                                   float *X) {
    for (int64_t g = 0; g < ng; g++) {
        float s = 0.0f;
        for (int b = 0; b < bpg; b++) s += d[g * bpg + b] * (float)xs[g * bpg + b];
        X[g] = s;
    }
}

/* The SIMD q8 kernels' kinds of weight decoding (qmatmul_q8_avx2.c, _avx512.c). */
enum { KQ_Q4 = 0, KQ_QF4, KQ_QI4, KQ_Q3, KQ_Q2, KQ_Q8 }; /* int4, mxfp4, mxint4, int3, int2, int8 */
static inline int kvq8_kind(const kv_qmat *w) {
    if (w->qf.fmt == KV_QFMT_MXFP4) return KQ_QF4;
    if (w->qf.fmt == KV_QFMT_MXINT4) return KQ_QI4;
    return w->qf.bits == 4 ? KQ_Q4 : w->qf.bits == 3 ? KQ_Q3 : w->qf.bits == 2 ? KQ_Q2 : KQ_Q8;
}

/* The weight side: code c of element k as the unsigned integer the dot product uses,
 * the group's offset z and scale s (w = s * (c - z) exactly). */
static inline uint32_t kvq8_code(const kv_qmat *w, uint32_t c) {
    static const uint8_t fp4[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};
    switch (w->qf.fmt) {
    case KV_QFMT_MXFP4: return fp4[c & 15];
    case KV_QFMT_MXINT4: return c ^ 8u;
    default: return c;
    }
}
static inline int32_t kvq8_zero(const kv_qmat *w, size_t gi) {
    switch (w->qf.fmt) {
    case KV_QFMT_MXFP4: return 12;
    case KV_QFMT_MXINT4: return 8;
    default: return w->zeros[gi];
    }
}
static inline float kvq8_wscale(const kv_qmat *w, size_t gi) {
    switch (w->qf.fmt) {
    case KV_QFMT_MXFP4: return kvk_e8m0(w->scales[gi]) * 0.5f;
    case KV_QFMT_MXINT4: return kvk_e8m0(w->scales[gi]) * 0.25f;
    default: return kvk_f16(w->scales + 2 * gi);
    }
}

#endif
