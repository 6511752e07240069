/* qmatmul_avx512.c — AVX-512 (F/BW/VL/DQ) quantized matmul: kv_kernel_ops.qmatmul for
 * every kv_qmat format, equal to qmatmul_ref.c up to the rounding order of fp32 sums.
 *
 * Pipeline stage: run. Issue 3. Activations stay fp32 (no int8 quantization of x) and
 * the weights are dequantized exactly (the f32 values kv_dequantize_ref gives), or for
 * the wide 4-bit GEMV below an exact factorisation of them.
 *
 * Decode (m <= 4), a GEMV that streams each packed row once. The dequantization is a
 * table lookup: within one group every element maps through the same 16 values
 * T[c] = s * (c - z) (INT) or E2M1[c] * X / int4[c] * X (MX), so the group's table
 * lives in one zmm and vpermps (which reads only the low 4 bits of each index lane)
 * turns 16 codes into 16 dequantized weights in one instruction:
 *  - 4-bit (int4, mxfp4, mxint4): 16 bytes = 32 elements, vpmovzxbd puts byte j in
 *    lane j; lane j indexes element 2j (low nibble) directly and element 2j+1 after a
 *    4-bit shift. The activations are split once per call into even/odd halves per
 *    32 inputs (in `work`) so both halves meet their weights without a shuffle:
 *    3 vector ops + 2 FMAs per 32 weights.
 *  - 2/3-bit: 32 elements = 8/12 bytes, broadcast to all four 128-bit lanes;
 *    vpshufb moves the two bytes holding element j into lane j, vpsrlvd shifts it to
 *    bit 0, and the table (repeated every 2^B entries) ignores the neighbour's bits.
 *  - 8-bit: vpmovzxbd, subtract z, convert, times s.
 *  - wide 4-bit (int4 with G % 128 == 0, mxfp4, mxint4, n_in % 128 == 0): 64 bytes
 *    in one zmm, no widening (gemv_tile_w below). int4-g128 then needs no shuffle at
 *    all: q - z is made exact in fp32 with a vpternlogd and a subtraction, summed
 *    against x over the group, and the group's s multiplies the partial sum once (the
 *    llama2.c order: scale applied once per group). MX keeps the table lookup of the
 *    unscaled grid and multiplies each block's partial sum by its 2^e, which is exact.
 *    Both differ from the ref only by rounding order (tests/test_qkernels.c bounds it).
 * Each output has two accumulators (even/odd, or first/second 16 of each 32), summed
 * at the end: its order of operations does not depend on which rows share a tile.
 *
 * Prefill (m > 4): a 256 x 128 block of W is dequantized to fp32 rows in `work` and
 * handed to the fp32 GEMM block of kernels_avx512.c (same packing, same 6 x 64
 * microkernel), so outputs equal that GEMM on the dequantized weights, op for op. */
#include <immintrin.h>

#include "kernels/kernels_internal.h"

#define AI static inline __attribute__((always_inline))

enum { K4 = 0, KB = 1, K8 = 2 }; /* kinds of element decoding (see above) */

typedef struct {
    __m512i c0, c1; /* vpshufb controls: elements 0-15 / 16-31 of a 32-element unit */
    __m512i s0, s1; /* vpsrlvd counts */
} kb_consts;

static kb_consts make_kb(int B) {
    int8_t c[2][64];
    int32_t s[2][16];
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 16; j++) {
            int bit = B * (16 * h + j);
            c[h][4 * j] = (int8_t)(bit >> 3);
            c[h][4 * j + 1] = (int8_t)((bit >> 3) + 1);
            c[h][4 * j + 2] = c[h][4 * j + 3] = (int8_t)0x80;
            s[h][j] = bit & 7;
        }
    kb_consts k;
    k.c0 = _mm512_loadu_si512(c[0]);
    k.c1 = _mm512_loadu_si512(c[1]);
    k.s0 = _mm512_loadu_si512(s[0]);
    k.s1 = _mm512_loadu_si512(s[1]);
    return k;
}

static int kind_of(const kv_qmat *w) {
    return w->qf.bits == 4 ? K4 : w->qf.bits == 8 ? K8 : KB;
}

/* The lookup table of group gi (row-major index r * n_groups + g); for K8, s in every
 * lane (z comes from zero_of). */
AI __m512 table_of(const kv_qmat *w, size_t gi) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    switch (w->qf.fmt) {
    case KV_QFMT_MXFP4:
        return _mm512_mul_ps(_mm512_loadu_ps(kv_e2m1_values), _mm512_set1_ps(kvk_e8m0(w->scales[gi])));
    case KV_QFMT_MXINT4: {
        /* nibble c -> sign-extended c / 4 */
        __m512i k = _mm512_srai_epi32(_mm512_slli_epi32(iota, 28), 28);
        __m512 e = _mm512_mul_ps(_mm512_cvtepi32_ps(k), _mm512_set1_ps(0.25f));
        return _mm512_mul_ps(e, _mm512_set1_ps(kvk_e8m0(w->scales[gi])));
    }
    default: {
        uint16_t h;
        memcpy(&h, w->scales + 2 * gi, 2);
        __m512 s = _mm512_set1_ps(_cvtsh_ss(h));
        if (w->qf.bits == 8) return s;
        __m512i q = _mm512_and_si512(iota, _mm512_set1_epi32((1 << w->qf.bits) - 1));
        return _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(w->zeros[gi]))));
    }
    }
}

/* 32 dequantized weights starting at element k (a multiple of 32) of row p: lo/hi are
 * elements (even, odd) for K4, (0-15, 16-31) otherwise. */
AI void decode32(int kind, int B, const uint8_t *p, int64_t k, __m512 t, __m512i z,
                 const kb_consts *kc, __m512 *lo, __m512 *hi) {
    if (kind == K4) {
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + ((size_t)k >> 1))));
        *lo = _mm512_permutexvar_ps(v, t);
        *hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t);
    } else if (kind == KB) {
        __m512i u = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p + (((size_t)k * (size_t)B) >> 3))));
        __m512i e0 = _mm512_srlv_epi32(_mm512_shuffle_epi8(u, kc->c0), kc->s0);
        __m512i e1 = _mm512_srlv_epi32(_mm512_shuffle_epi8(u, kc->c1), kc->s1);
        *lo = _mm512_permutexvar_ps(e0, t);
        *hi = _mm512_permutexvar_ps(e1, t);
    } else {
        __m512i v0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + k)));
        __m512i v1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + k + 16)));
        *lo = _mm512_mul_ps(t, _mm512_cvtepi32_ps(_mm512_sub_epi32(v0, z)));
        *hi = _mm512_mul_ps(t, _mm512_cvtepi32_ps(_mm512_sub_epi32(v1, z)));
    }
}

/* ---- GEMV ------------------------------------------------------------------------ */

#define MAXR 4
#define MAXM 4

/* Rows r .. r+R against M activation rows over inputs [k0, k1) (whole groups).
 * xs: activations of this slab (K4: even/odd split per 32; else plain, from k0), rows
 * ldxs apart. first: store, else add to y; bias only on the last slab. */
AI void gemv_tile(int kind, int R, int M, const kv_qmat *w, const kb_consts *kc,
                  const float *xs, int64_t ldxs, int64_t k0, int64_t k1, int64_t r,
                  float *y, int64_t ldy, const float *bias, int first) {
    const int B = w->qf.bits, G = w->qf.group;
    const uint8_t *row[MAXR];
    __m512 a0[MAXR][MAXM], a1[MAXR][MAXM];
    if (k0 == 0) kvk_prefetch_side(w, r, R);
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
        row[q] = w->q + (size_t)(r + q) * (size_t)w->row_bytes;
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) a0[q][i] = a1[q][i] = _mm512_setzero_ps();
    }
    size_t gi = (size_t)(k0 / G); /* one division per tile, not per group */
    for (int64_t g0 = k0; g0 < k1; g0 += G, gi++) {
        __m512 t[MAXR];
        __m512i z[MAXR];
#pragma GCC unroll 4
        for (int q = 0; q < R; q++) {
            size_t idx = (size_t)(r + q) * (size_t)w->n_groups + gi;
            t[q] = table_of(w, idx);
            z[q] = kind == K8 ? _mm512_set1_epi32(w->zeros[idx]) : _mm512_setzero_si512();
        }
        for (int64_t k = g0; k < g0 + G; k += 32) {
            const float *xk = xs + (k - k0);
            /* one prefetch per 64 weight bytes (int3: per 48, which still reaches every line) */
            const int64_t ep = B == 3 ? 128 : 512 / B;
            const int pf = (k & (ep - 1)) == 0;
#pragma GCC unroll 4
            for (int q = 0; q < R; q++) {
                __m512 lo, hi;
                if (pf) kvk_prefetch_line(row[0], (size_t)w->row_bytes, R, (size_t)(k / ep) * (size_t)R + (size_t)q);
                decode32(kind, B, row[q], k, t[q], z[q], kc, &lo, &hi);
#pragma GCC unroll 4
                for (int i = 0; i < M; i++) {
                    a0[q][i] = _mm512_fmadd_ps(_mm512_loadu_ps(xk + i * ldxs), lo, a0[q][i]);
                    a1[q][i] = _mm512_fmadd_ps(_mm512_loadu_ps(xk + i * ldxs + 16), hi, a1[q][i]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(a0[q][i], a1[q][i]));
            float *yo = y + i * ldy + r + q;
            if (!first) s = *yo + s;
            if (bias) s += bias[r + q];
            *yo = s;
        }
    }
}

/* The wide 4-bit GEMV (int4 with G a multiple of 128, mxfp4, mxint4; n_in a multiple
 * of 128): 64 bytes = 128 elements in one zmm without widening; lane j holds elements
 * 8j .. 8j+7, so vpermps on (v >> 4t) yields element 8j+t in lane j for t = 0..7, one
 * shuffle per 16 weights instead of 1.5 (the vpmovzxbd goes). The activations are
 * split per 128 inputs into 8 vectors, vector t = x[8j + t]. INT: the chunk is inside
 * one group, one table. MX: lanes 4b .. 4b+3 belong to block b of the chunk, so the
 * table is the unscaled element grid and each lane's partial sum is multiplied by its
 * block's 2^e (exact: a power of two) when added to the accumulator. */
AI void gemv_tile_w(int mx, int R, int M, const kv_qmat *w, const float *xs, int64_t ldxs,
                    int64_t k0, int64_t k1, int64_t r, float *y, int64_t ldy, const float *bias,
                    int first) {
    const int64_t G = w->qf.group;
    const uint8_t *row[MAXR];
    __m512 a0[MAXR][MAXM], a1[MAXR][MAXM];
    const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 grid = _mm512_setzero_ps();
    if (mx) {
        const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        grid = w->qf.fmt == KV_QFMT_MXFP4
                   ? _mm512_loadu_ps(kv_e2m1_values)
                   : _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(iota, 28), 28)),
                                   _mm512_set1_ps(0.25f));
    }
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
        row[q] = w->q + (size_t)(r + q) * (size_t)w->row_bytes;
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) a0[q][i] = a1[q][i] = _mm512_setzero_ps();
    }
    size_t gi = (size_t)(k0 / G);
    int gshift = 0;
    while (((int64_t)1 << gshift) < G) gshift++;
    /* Set before the loop: gcc cannot see that k0 is group-aligned, so the first
     * iteration always loads t/c for int formats. */
    __m512 t[MAXR], c[MAXR];
    for (int q = 0; q < MAXR; q++) t[q] = c[q] = _mm512_setzero_ps();
    const __m512i nib = _mm512_set1_epi32(15), magic = _mm512_set1_epi32(0x4B000000);
    if (k0 == 0) kvk_prefetch_side(w, r, R);
    for (int64_t k = k0; k < k1; k += 128) {
        const float *xk = xs + (k - k0);
#pragma GCC unroll 4
        for (int q = 0; q < R; q++) {
            kvk_prefetch_line(row[0], (size_t)w->row_bytes, R, (size_t)(k / 128) * (size_t)R + (size_t)q);
            __m512i v = _mm512_loadu_si512(row[q] + ((size_t)k >> 1));
            __m512 sc = _mm512_setzero_ps();
            if (mx) {
                uint32_t e4;
                memcpy(&e4, w->scales + (size_t)(r + q) * (size_t)w->n_groups + ((size_t)k >> 5), 4);
                __m512i e = _mm512_permutexvar_epi32(quad, _mm512_cvtepu8_epi32(_mm_cvtsi32_si128((int)e4)));
                sc = _mm512_scalef_ps(_mm512_set1_ps(1.0f),
                                      _mm512_cvtepi32_ps(_mm512_sub_epi32(e, _mm512_set1_epi32(127))));
                t[q] = grid;
            } else if (((k - k0) & (G - 1)) == 0) { /* G is a power of two: no division */
                /* int: no table; t = the group's s, c = 2^23 + z (see below) */
                size_t idx = (size_t)(r + q) * (size_t)w->n_groups + gi + ((size_t)(k - k0) >> gshift);
                uint16_t h;
                memcpy(&h, w->scales + 2 * idx, 2);
                t[q] = _mm512_set1_ps(_cvtsh_ss(h));
                c[q] = _mm512_set1_ps(8388608.0f + (float)w->zeros[idx]);
            }
            __m512 p0[MAXM], p1[MAXM];
#pragma GCC unroll 8
            for (int h = 0; h < 8; h++) {
                __m512 wt;
                if (mx) {
                    wt = _mm512_permutexvar_ps(h ? _mm512_srli_epi32(v, 4 * h) : v, t[q]);
                } else {
                    /* q - z exactly, without a shuffle: the nibble as the low mantissa
                     * bits of 2^23 (and + or in one vpternlogd), minus 2^23 + z */
                    __m512i qb = _mm512_ternarylogic_epi32(h ? _mm512_srli_epi32(v, 4 * h) : v, nib, magic, 0xEA);
                    wt = _mm512_sub_ps(_mm512_castsi512_ps(qb), c[q]);
                }
#pragma GCC unroll 4
                for (int i = 0; i < M; i++) {
                    __m512 xv = _mm512_loadu_ps(xk + i * ldxs + 16 * h);
                    {
                        if (h == 0) p0[i] = _mm512_mul_ps(xv, wt);
                        else if (h == 1) p1[i] = _mm512_mul_ps(xv, wt);
                        else if (h & 1) p1[i] = _mm512_fmadd_ps(xv, wt, p1[i]);
                        else p0[i] = _mm512_fmadd_ps(xv, wt, p0[i]);
                    }
                }
            }
            if (mx) {
#pragma GCC unroll 4
                for (int i = 0; i < M; i++) {
                    a0[q][i] = _mm512_fmadd_ps(p0[i], sc, a0[q][i]);
                    a1[q][i] = _mm512_fmadd_ps(p1[i], sc, a1[q][i]);
                }
            } else {
#pragma GCC unroll 4
                for (int i = 0; i < M; i++) {
                    a0[q][i] = _mm512_fmadd_ps(p0[i], t[q], a0[q][i]);
                    a1[q][i] = _mm512_fmadd_ps(p1[i], t[q], a1[q][i]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) {
            float sum = _mm512_reduce_add_ps(_mm512_add_ps(a0[q][i], a1[q][i]));
            float *yo = y + i * ldy + r + q;
            if (!first) sum = *yo + sum;
            if (bias) sum += bias[r + q];
            *yo = sum;
        }
    }
}

#define TILE_FN(kind, R, M)                                                                    \
    static void tile_##kind##_##R##_##M(const kv_qmat *w, const kb_consts *kc, const float *xs,  \
                                        int64_t ldxs, int64_t k0, int64_t k1, int64_t r,         \
                                        float *y, int64_t ldy, const float *bias, int first) {   \
        gemv_tile(kind, R, M, w, kc, xs, ldxs, k0, k1, r, y, ldy, bias, first);                  \
    }
#define TILE_SET(kind) \
    TILE_FN(kind, 4, 1) TILE_FN(kind, 1, 1) TILE_FN(kind, 2, 2) TILE_FN(kind, 1, 2) \
    TILE_FN(kind, 1, 3) TILE_FN(kind, 1, 4)
TILE_SET(K4)
TILE_SET(KB)
TILE_SET(K8)

#define WTILE_FN(mx, R, M)                                                                     \
    static void wtile_##mx##_##R##_##M(const kv_qmat *w, const kb_consts *kc, const float *xs,   \
                                       int64_t ldxs, int64_t k0, int64_t k1, int64_t r, float *y,\
                                       int64_t ldy, const float *bias, int first) {              \
        (void)kc;                                                                                \
        gemv_tile_w(mx, R, M, w, xs, ldxs, k0, k1, r, y, ldy, bias, first);                     \
    }
#define WTILE_SET(mx) \
    WTILE_FN(mx, 4, 1) WTILE_FN(mx, 1, 1) WTILE_FN(mx, 2, 2) WTILE_FN(mx, 1, 2) \
    WTILE_FN(mx, 1, 3) WTILE_FN(mx, 1, 4)
WTILE_SET(0)
WTILE_SET(1)

typedef void (*tile_fn)(const kv_qmat *, const kb_consts *, const float *, int64_t, int64_t,
                        int64_t, int64_t, float *, int64_t, const float *, int);

/* [kind][0: the wide tile, 1: one row] for m = 1..4 */
static const tile_fn TILES[3][4][2] = {
    {{tile_K4_4_1, tile_K4_1_1}, {tile_K4_2_2, tile_K4_1_2}, {tile_K4_1_3, tile_K4_1_3}, {tile_K4_1_4, tile_K4_1_4}},
    {{tile_KB_4_1, tile_KB_1_1}, {tile_KB_2_2, tile_KB_1_2}, {tile_KB_1_3, tile_KB_1_3}, {tile_KB_1_4, tile_KB_1_4}},
    {{tile_K8_4_1, tile_K8_1_1}, {tile_K8_2_2, tile_K8_1_2}, {tile_K8_1_3, tile_K8_1_3}, {tile_K8_1_4, tile_K8_1_4}},
};
static const int TILE_R[4] = {4, 2, 1, 1};

/* [0: int, 1: mx][m - 1][wide, one row] */
static const tile_fn WTILES[2][4][2] = {
    {{wtile_0_4_1, wtile_0_1_1}, {wtile_0_2_2, wtile_0_1_2}, {wtile_0_1_3, wtile_0_1_3}, {wtile_0_1_4, wtile_0_1_4}},
    {{wtile_1_4_1, wtile_1_1_1}, {wtile_1_2_2, wtile_1_1_2}, {wtile_1_1_3, wtile_1_1_3}, {wtile_1_1_4, wtile_1_1_4}},
};

/* x[k0 .. k0+len) of each row, per 128 inputs as 8 vectors of 16: vector t = x[8j + t]. */
static void split_by8(const float *x, int64_t m, int64_t ldx, int64_t k0, int64_t len, float *out) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < len; k += 128)
            for (int t = 0; t < 8; t++)
                for (int j = 0; j < 16; j++) out[i * len + k + 16 * t + j] = x[i * ldx + k0 + k + 8 * j + t];
}

/* x[k0 .. k0+len) of each row, split per 32 inputs into 16 even then 16 odd. */
static void split_even_odd(const float *x, int64_t m, int64_t ldx, int64_t k0, int64_t len,
                           float *out) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < len; k += 32) {
            __m512 v0 = _mm512_loadu_ps(x + i * ldx + k0 + k), v1 = _mm512_loadu_ps(x + i * ldx + k0 + k + 16);
            _mm512_storeu_ps(out + i * len + k, _mm512_permutex2var_ps(v0, ev, v1));
            _mm512_storeu_ps(out + i * len + k + 16, _mm512_permutex2var_ps(v0, od, v1));
        }
}

static void gemv(const float *x, int64_t m, int64_t ldx, const kv_qmat *w, const float *bias,
                 int64_t r0, int64_t r1, float *y, int64_t ldy, float *work) {
    const int kind = kind_of(w);
    const int64_t n = w->n_in;
    kb_consts kc = make_kb(w->qf.bits == 4 || w->qf.bits == 8 ? 2 : w->qf.bits);
    /* K4 activations are split into `work`, a slab of inputs at a time when m rows of
     * n_in do not fit (slabs are whole multiples of 128, so of every group size) */
    int64_t slab = n;
    if (kind == K4 && m * n > (int64_t)KV_MATMUL_WORK_FLOATS)
        slab = (int64_t)KV_MATMUL_WORK_FLOATS / m / 128 * 128;
    const int is_mx = w->qf.fmt != KV_QFMT_INT;
    const int w8 = kind == K4 && n % 128 == 0 && (is_mx || w->qf.group % 128 == 0);
    const tile_fn wide = w8 ? WTILES[is_mx][m - 1][0] : TILES[kind][m - 1][0];
    const tile_fn one = w8 ? WTILES[is_mx][m - 1][1] : TILES[kind][m - 1][1];
    const int R = TILE_R[m - 1];
    for (int64_t k0 = 0; k0 < n; k0 += slab) {
        int64_t len = n - k0 < slab ? n - k0 : slab;
        const float *xs = x + k0;
        int64_t ldxs = ldx;
        if (w8) {
            split_by8(x, m, ldx, k0, len, work);
            xs = work;
            ldxs = len;
        } else if (kind == K4) {
            split_even_odd(x, m, ldx, k0, len, work);
            xs = work;
            ldxs = len;
        }
        const float *b = k0 + len == n ? bias : NULL;
        int64_t r = r0;
        for (; r + R <= r1; r += R) wide(w, &kc, xs, ldxs, k0, k0 + len, r, y, ldy, b, k0 == 0);
        for (; r < r1; r++) one(w, &kc, xs, ldxs, k0, k0 + len, r, y, ldy, b, k0 == 0);
    }
}

/* ---- GEMM ------------------------------------------------------------------------ */

#define QNC KV_GEMM_BLOCK_NC_AVX512
#define QKC KV_GEMM_BLOCK_KC_AVX512

/* W[r .. r+nr, k0 .. k0+kc) dequantized into dst[nr][kc] (natural element order). */
AI void deq_block(int kind, const kv_qmat *w, const kb_consts *kc, int64_t r, int64_t nr,
                  int64_t k0, int64_t kcols, float *dst) {
    const int B = w->qf.bits, G = w->qf.group;
    const __m512i il0 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i il1 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int64_t q = 0; q < nr; q++) {
        const uint8_t *row = w->q + (size_t)(r + q) * (size_t)w->row_bytes;
        float *d = dst + q * kcols;
        size_t idx = (size_t)(r + q) * (size_t)w->n_groups + (size_t)(k0 / G);
        for (int64_t g0 = k0; g0 < k0 + kcols; g0 += G, idx++) {
            __m512 t = table_of(w, idx);
            __m512i z = kind == K8 ? _mm512_set1_epi32(w->zeros[idx]) : _mm512_setzero_si512();
            for (int64_t k = g0; k < g0 + G; k += 32) {
                __m512 lo, hi;
                decode32(kind, B, row, k, t, z, kc, &lo, &hi);
                if (kind == K4) {
                    __m512 a = _mm512_permutex2var_ps(lo, il0, hi), b = _mm512_permutex2var_ps(lo, il1, hi);
                    lo = a;
                    hi = b;
                }
                _mm512_storeu_ps(d + (k - k0), lo);
                _mm512_storeu_ps(d + (k - k0) + 16, hi);
            }
        }
    }
}

#define KV_QDRV_ISA avx512
#include "kernels/qmatmul_driver.h"
