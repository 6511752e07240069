/* qmatmul_avx2.c — AVX2 + FMA + F16C quantized matmul: kv_kernel_ops.qmatmul for every
 * kv_qmat format, equal to qmatmul_ref.c up to reassociation of fp32 sums.
 *
 * Pipeline stage: run. Issue 3. The algorithms of qmatmul_avx512.c at 8 lanes (read its
 * header first). Differences: vpermps on ymm reads 3 index bits, so a 16-entry table
 * (4-bit formats) is two ymm halves picked by bit 3 with a blend; 2- and 3-bit tables
 * fit one ymm (2-bit repeated twice). The GEMM reuses kernels_avx2.c's 6 x 16
 * microkernel on 128 x 256 dequantized blocks. */
#include <immintrin.h>

#include "kernels/kernels_internal.h"

#define AI static inline __attribute__((always_inline))

enum { K4 = 0, KB = 1, K8 = 2 };

typedef struct {
    __m256i c[4]; /* vpshufb controls for elements 8v .. 8v+7 of a 32-element unit */
    __m256i s[4]; /* vpsrlvd counts */
} kb_consts;

static kb_consts make_kb(int B) {
    kb_consts k;
    for (int v = 0; v < 4; v++) {
        int8_t c[32];
        int32_t s[8];
        for (int j = 0; j < 8; j++) {
            int bit = B * (8 * v + j);
            c[4 * j] = (int8_t)(bit >> 3);
            c[4 * j + 1] = (int8_t)((bit >> 3) + 1);
            c[4 * j + 2] = c[4 * j + 3] = (int8_t)0x80;
            s[j] = bit & 7;
        }
        k.c[v] = _mm256_loadu_si256((const __m256i *)c);
        k.s[v] = _mm256_loadu_si256((const __m256i *)s);
    }
    return k;
}

static int kind_of(const kv_qmat *w) {
    return w->qf.bits == 4 ? K4 : w->qf.bits == 8 ? K8 : KB;
}

/* Table of group gi: t[0] = entries 0-7, t[1] = 8-15 (K4); t[0] (KB); s in t[0] (K8). */
AI void table_of(const kv_qmat *w, size_t gi, __m256 t[2]) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i eight = _mm256_set1_epi32(8);
    switch (w->qf.fmt) {
    case KV_QFMT_MXFP4: {
        __m256 x = _mm256_set1_ps(kvk_e8m0(w->scales[gi]));
        t[0] = _mm256_mul_ps(_mm256_loadu_ps(kv_e2m1_values), x);
        t[1] = _mm256_mul_ps(_mm256_loadu_ps(kv_e2m1_values + 8), x);
        return;
    }
    case KV_QFMT_MXINT4: {
        __m256 x = _mm256_set1_ps(kvk_e8m0(w->scales[gi]));
        __m256 q = _mm256_set1_ps(0.25f);
        t[0] = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(iota), q), x);
        t[1] = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(iota, eight)), q), x);
        return;
    }
    default: {
        uint16_t h;
        memcpy(&h, w->scales + 2 * gi, 2);
        __m256 s = _mm256_set1_ps(_cvtsh_ss(h));
        const int B = w->qf.bits;
        if (B == 8) {
            t[0] = t[1] = s;
            return;
        }
        __m256i z = _mm256_set1_epi32(w->zeros[gi]);
        __m256i q = _mm256_and_si256(iota, _mm256_set1_epi32((1 << B) - 1));
        t[0] = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_sub_epi32(q, z)));
        t[1] = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_add_epi32(iota, eight), z)));
        return;
    }
    }
}

/* 16-entry lookup on the low 4 bits of each lane. */
AI __m256 lut16(const __m256 t[2], __m256i idx) {
    __m256 a = _mm256_permutevar8x32_ps(t[0], idx), b = _mm256_permutevar8x32_ps(t[1], idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

/* 32 dequantized weights from element k of row p into v[4]: K4: v[0], v[1] = even
 * elements 0-15 (halves), v[2], v[3] = odd; otherwise elements 8j .. 8j+7 in v[j]. */
AI void decode32(int kind, int B, const uint8_t *p, int64_t k, const __m256 t[2], __m256i z,
                 const kb_consts *kc, __m256 v[4]) {
    if (kind == K4) {
        for (int h = 0; h < 2; h++) {
            __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + ((size_t)k >> 1) + 8 * h)));
            v[h] = lut16(t, b);
            v[2 + h] = lut16(t, _mm256_srli_epi32(b, 4));
        }
    } else if (kind == KB) {
        __m256i u = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + (((size_t)k * (size_t)B) >> 3))));
        for (int j = 0; j < 4; j++)
            v[j] = _mm256_permutevar8x32_ps(t[0], _mm256_srlv_epi32(_mm256_shuffle_epi8(u, kc->c[j]), kc->s[j]));
    } else {
        for (int j = 0; j < 4; j++) {
            __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + k + 8 * j)));
            v[j] = _mm256_mul_ps(t[0], _mm256_cvtepi32_ps(_mm256_sub_epi32(b, z)));
        }
    }
}

/* ---- GEMV ------------------------------------------------------------------------ */

#define MAXR 2
#define MAXM 4

/* As in qmatmul_avx512.c: rows r .. r+R, M activation rows, inputs [k0, k1). For K4 the
 * activations xs are split per 32 inputs into 16 even then 16 odd, matching v[]. */
AI void gemv_tile(int kind, int R, int M, const kv_qmat *w, const kb_consts *kc,
                  const float *xs, int64_t ldxs, int64_t k0, int64_t k1, int64_t r,
                  float *y, int64_t ldy, const float *bias, int first) {
    const int B = w->qf.bits, G = w->qf.group;
    const uint8_t *row[MAXR];
    __m256 a0[MAXR][MAXM], a1[MAXR][MAXM];
    if (k0 == 0) kvk_prefetch_side(w, r, R);
#pragma GCC unroll 2
    for (int q = 0; q < R; q++) {
        row[q] = w->q + (size_t)(r + q) * (size_t)w->row_bytes;
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) a0[q][i] = a1[q][i] = _mm256_setzero_ps();
    }
    size_t gi = (size_t)(k0 / G); /* one division per tile, not per group */
    for (int64_t g0 = k0; g0 < k1; g0 += G, gi++) {
        __m256 t[MAXR][2];
        __m256i z[MAXR];
#pragma GCC unroll 2
        for (int q = 0; q < R; q++) {
            size_t idx = (size_t)(r + q) * (size_t)w->n_groups + gi;
            table_of(w, idx, t[q]);
            z[q] = kind == K8 ? _mm256_set1_epi32(w->zeros[idx]) : _mm256_setzero_si256();
        }
        for (int64_t k = g0; k < g0 + G; k += 32) {
            const float *xk = xs + (k - k0);
            /* one prefetch per 64 weight bytes (int3: per 48, which still reaches every line) */
            const int64_t ep = B == 3 ? 128 : 512 / B;
            const int pf = (k & (ep - 1)) == 0;
#pragma GCC unroll 2
            for (int q = 0; q < R; q++) {
                __m256 v[4];
                if (pf) kvk_prefetch_line(row[0], (size_t)w->row_bytes, R, (size_t)(k / ep) * (size_t)R + (size_t)q);
                decode32(kind, B, row[q], k, t[q], z[q], kc, v);
#pragma GCC unroll 4
                for (int i = 0; i < M; i++) {
                    const float *xi = xk + i * ldxs;
                    a0[q][i] = _mm256_fmadd_ps(_mm256_loadu_ps(xi), v[0], a0[q][i]);
                    a1[q][i] = _mm256_fmadd_ps(_mm256_loadu_ps(xi + 16), v[2], a1[q][i]);
                    a0[q][i] = _mm256_fmadd_ps(_mm256_loadu_ps(xi + 8), v[1], a0[q][i]);
                    a1[q][i] = _mm256_fmadd_ps(_mm256_loadu_ps(xi + 24), v[3], a1[q][i]);
                }
            }
        }
    }
#pragma GCC unroll 2
    for (int q = 0; q < R; q++) {
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) {
            __m256 v = _mm256_add_ps(a0[q][i], a1[q][i]);
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_movehdup_ps(h));
            float s = _mm_cvtss_f32(h);
            float *yo = y + i * ldy + r + q;
            if (!first) s = *yo + s;
            if (bias) s += bias[r + q];
            *yo = s;
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
    TILE_FN(kind, 2, 1) TILE_FN(kind, 1, 1) TILE_FN(kind, 2, 2) TILE_FN(kind, 1, 2) \
    TILE_FN(kind, 1, 3) TILE_FN(kind, 1, 4)
TILE_SET(K4)
TILE_SET(KB)
TILE_SET(K8)

typedef void (*tile_fn)(const kv_qmat *, const kb_consts *, const float *, int64_t, int64_t,
                        int64_t, int64_t, float *, int64_t, const float *, int);

static const tile_fn TILES[3][4][2] = {
    {{tile_K4_2_1, tile_K4_1_1}, {tile_K4_2_2, tile_K4_1_2}, {tile_K4_1_3, tile_K4_1_3}, {tile_K4_1_4, tile_K4_1_4}},
    {{tile_KB_2_1, tile_KB_1_1}, {tile_KB_2_2, tile_KB_1_2}, {tile_KB_1_3, tile_KB_1_3}, {tile_KB_1_4, tile_KB_1_4}},
    {{tile_K8_2_1, tile_K8_1_1}, {tile_K8_2_2, tile_K8_1_2}, {tile_K8_1_3, tile_K8_1_3}, {tile_K8_1_4, tile_K8_1_4}},
};
static const int TILE_R[4] = {2, 2, 1, 1};

/* x[k0 .. k0+len) of each row, split per 32 inputs into 16 even then 16 odd. */
static void split_even_odd(const float *x, int64_t m, int64_t ldx, int64_t k0, int64_t len,
                           float *out) {
    const __m256i pk = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < len; k += 32) {
            const float *s = x + i * ldx + k0 + k;
            float *d = out + i * len + k;
            for (int h = 0; h < 2; h++) {
                /* 16 inputs -> 8 even, 8 odd: within each ymm evens then odds, then
                 * the 128-bit halves regrouped */
                __m256 a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(s + 16 * h), pk);
                __m256 b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(s + 16 * h + 8), pk);
                _mm256_storeu_ps(d + 8 * h, _mm256_permute2f128_ps(a, b, 0x20));
                _mm256_storeu_ps(d + 16 + 8 * h, _mm256_permute2f128_ps(a, b, 0x31));
            }
        }
}

static void gemv(const float *x, int64_t m, int64_t ldx, const kv_qmat *w, const float *bias,
                 int64_t r0, int64_t r1, float *y, int64_t ldy, float *work) {
    const int kind = kind_of(w);
    const int64_t n = w->n_in;
    kb_consts kc = make_kb(w->qf.bits == 4 || w->qf.bits == 8 ? 2 : w->qf.bits);
    int64_t slab = n;
    if (kind == K4 && m * n > (int64_t)KV_MATMUL_WORK_FLOATS)
        slab = (int64_t)KV_MATMUL_WORK_FLOATS / m / 128 * 128;
    const tile_fn wide = TILES[kind][m - 1][0], one = TILES[kind][m - 1][1];
    const int R = TILE_R[m - 1];
    for (int64_t k0 = 0; k0 < n; k0 += slab) {
        int64_t len = n - k0 < slab ? n - k0 : slab;
        const float *xs = x + k0;
        int64_t ldxs = ldx;
        if (kind == K4) {
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

#define QNC KV_GEMM_BLOCK_NC_AVX2
#define QKC KV_GEMM_BLOCK_KC_AVX2

AI void deq_block(int kind, const kv_qmat *w, const kb_consts *kc, int64_t r, int64_t nr,
                  int64_t k0, int64_t kcols, float *dst) {
    const int B = w->qf.bits, G = w->qf.group;
    for (int64_t q = 0; q < nr; q++) {
        const uint8_t *row = w->q + (size_t)(r + q) * (size_t)w->row_bytes;
        float *d = dst + q * kcols;
        size_t idx = (size_t)(r + q) * (size_t)w->n_groups + (size_t)(k0 / G);
        for (int64_t g0 = k0; g0 < k0 + kcols; g0 += G, idx++) {
            __m256 t[2];
            table_of(w, idx, t);
            __m256i z = kind == K8 ? _mm256_set1_epi32(w->zeros[idx]) : _mm256_setzero_si256();
            for (int64_t k = g0; k < g0 + G; k += 32) {
                __m256 v[4];
                decode32(kind, B, row, k, t, z, kc, v);
                float *o = d + (k - k0);
                if (kind == K4) {
                    for (int h = 0; h < 2; h++) { /* even v[h], odd v[2+h]: elements 16h .. */
                        __m256 lo = _mm256_unpacklo_ps(v[h], v[2 + h]);
                        __m256 hi = _mm256_unpackhi_ps(v[h], v[2 + h]);
                        _mm256_storeu_ps(o + 16 * h, _mm256_permute2f128_ps(lo, hi, 0x20));
                        _mm256_storeu_ps(o + 16 * h + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
                    }
                } else {
                    for (int j = 0; j < 4; j++) _mm256_storeu_ps(o + 8 * j, v[j]);
                }
            }
        }
    }
}

#define KV_QDRV_ISA avx2
#include "kernels/qmatmul_driver.h"
