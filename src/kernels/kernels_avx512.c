/* kernels_avx512.c — AVX-512 (F/BW/VL/DQ) versions of the ops in kernels_ref.c.
 *
 * Only this file is compiled with AVX-512 flags; dispatch.c calls it only on CPUs
 * that report avx512f/bw/vl/dq. Weights are widened to fp32 exactly (bf16: shift
 * left 16; f16: vcvtph2ps) and every product accumulates in fp32 with FMA, so results
 * equal the ref up to reassociation of the sums.
 *
 * matmul, two regimes:
 *  - m <= 4 (decode): a GEMV that streams each weight row once and dots it with the
 *    m activation rows; the per-output order of operations is the same whatever
 *    the row grouping, so the thread split cannot change results.
 *  - m > 4 (prefill): a GEMM. A block of NC weight rows x KC inputs is widened and
 *    transposed into `work` as panels Wp[KC][NR] (one conversion per block, reused
 *    by every activation row), then a 6 x 64 register-blocked microkernel
 *    (24 zmm accumulators) broadcasts x[i, k] against four 16-wide weight vectors.
 *    Each output is a plain k-sequential FMA chain. */
#include <immintrin.h>
#include <math.h>

#include "kernels/kernels_internal.h"

#define AI static inline __attribute__((always_inline))

/* ---- loads: 16 weights -> 16 fp32 -------------------------------------------- */

AI __m512 wload16(kv_dtype t, const void *p) {
    if (t == KV_DTYPE_BF16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)p);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    if (t == KV_DTYPE_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_loadu_ps(p);
}

/* Masked: lanes outside mk read nothing and are 0. */
AI __m512 wload16_mask(kv_dtype t, const void *p, __mmask16 mk) {
    if (t == KV_DTYPE_BF16) {
        __m256i h = _mm256_maskz_loadu_epi16(mk, p);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    if (t == KV_DTYPE_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, p));
    return _mm512_maskz_loadu_ps(mk, p);
}

AI __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1u); }

/* ---- GEMV: m in 1..4 ------------------------------------------------------------ */

#define GV_MAXR 4
#define GV_MAXM 4

/* R weight rows (starting at row r) against M activation rows. For every (row, x row)
 * pair the sequence is fixed: two accumulators over 32-wide steps, one 16-wide step,
 * one masked tail, then (a0 + a1) reduced — independent of R and M. */
AI void gemv_tile(kv_dtype t, int R, int M, const float *x, int64_t ldx, const kv_wmat *w,
                  int64_t r, const float *bias, float *y, int64_t ldy) {
    const int64_t n = w->n_in;
    const size_t rb = (size_t)w->ld * kv_dtype_size(t);
    const char *row[GV_MAXR];
    __m512 a0[GV_MAXR][GV_MAXM], a1[GV_MAXR][GV_MAXM];
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
        row[q] = (const char *)w->data + (size_t)(r + q) * rb;
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) a0[q][i] = a1[q][i] = _mm512_setzero_ps();
    }
    const size_t es = kv_dtype_size(t);
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
#pragma GCC unroll 4
        for (int q = 0; q < R; q++) {
            /* 32 elements: one line (bf16, f16) or two (f32) */
            const size_t pl = ((size_t)(k / 32) * (size_t)R + (size_t)q) * (es / 2);
            kvk_prefetch_line((const uint8_t *)row[0], rb, R, pl);
            if (es == 4) kvk_prefetch_line((const uint8_t *)row[0], rb, R, pl + 1);
            __m512 w0 = wload16(t, row[q] + (size_t)k * es);
            __m512 w1 = wload16(t, row[q] + (size_t)(k + 16) * es);
#pragma GCC unroll 4
            for (int i = 0; i < M; i++) {
                a0[q][i] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i * ldx + k), w0, a0[q][i]);
                a1[q][i] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i * ldx + k + 16), w1, a1[q][i]);
            }
            /* 4-row tiles of one x row (rows whose fp32 x outgrows L1): each row's
             * loads in program order, x loaded again per row. Measured, not derived:
             * 2560x9728 bf16 57 -> 64 GB/s, 5120x25600 63 -> 67 (of ~80); the 2-row
             * tiles of m = 2 lost a third by it (in L2: 64 -> 44 GB/s), so not there */
            if (R > 1 && M == 1) __asm__ volatile("" ::: "memory");
        }
    }
    if (k + 16 <= n) {
#pragma GCC unroll 4
        for (int q = 0; q < R; q++) {
            __m512 w0 = wload16(t, row[q] + (size_t)k * es);
#pragma GCC unroll 4
            for (int i = 0; i < M; i++)
                a0[q][i] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i * ldx + k), w0, a0[q][i]);
        }
        k += 16;
    }
    if (k < n) {
        __mmask16 mk = tail_mask(n - k);
#pragma GCC unroll 4
        for (int q = 0; q < R; q++) {
            __m512 w1 = wload16_mask(t, row[q] + (size_t)k * es, mk);
#pragma GCC unroll 4
            for (int i = 0; i < M; i++)
                a1[q][i] =
                    _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, x + i * ldx + k), w1, a1[q][i]);
        }
    }
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(a0[q][i], a1[q][i]));
            if (bias) s += bias[r + q];
            y[i * ldy + r + q] = s;
        }
    }
}

/* ---- GEMM: m > 4 ---------------------------------------------------------------- */

#define MR 6   /* activation rows per microkernel */
#define NR 64  /* weight rows (outputs) per microkernel: 4 zmm */
#define KC 128 /* inputs per packed block: a 64 x 128 fp32 panel is 32 KiB, L1-resident */
#define NC 256 /* weight rows per packed block: 4 panels, 128 KiB, L2-resident */

/* In-register transpose of a 16 x 16 fp32 tile: v[i] lane j -> v[j] lane i. */
AI void transpose16(__m512 v[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    /* within each 128-bit lane L: u[4g + c] = column 4L + c of rows 4g .. 4g + 3 */
    for (int g = 0; g < 4; g++) {
        __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
        __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    /* gather lane L of u[c], u[4 + c], u[8 + c], u[12 + c] into column 4L + c */
    for (int c = 0; c < 4; c++) {
        __m512 lo01 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
        __m512 hi01 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
        __m512 lo23 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
        __m512 hi23 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
        v[0 + c] = _mm512_shuffle_f32x4(lo01, lo23, 0x88);
        v[4 + c] = _mm512_shuffle_f32x4(lo01, lo23, 0xDD);
        v[8 + c] = _mm512_shuffle_f32x4(hi01, hi23, 0x88);
        v[12 + c] = _mm512_shuffle_f32x4(hi01, hi23, 0xDD);
    }
}

/* Widen and transpose W[j0 .. j0 + nj, k0 .. k0 + kc] into panels dst[p][kc][NR]
 * (panel p holds rows j0 + p*NR ..); rows past nj are zero.
 *
 * A block's rows are short runs (KC elements) far apart, which the hardware prefetcher
 * follows poorly, so packing would wait on DRAM latency: every load also prefetches
 * (into L2) the same place of the block packed next, `next` (rows next_j0 .., inputs
 * next_k0 ..; NULL when none), which then arrives while the microkernels compute. */
AI void pack_w(kv_dtype t, const kv_wmat *w, int64_t j0, int64_t nj, int64_t k0, int64_t kc,
               float *dst, const char *next, int64_t next_nj, int64_t next_kc) {
    const size_t es = kv_dtype_size(t), rb = (size_t)w->ld * es;
    for (int64_t p = 0; p * NR < nj; p++) {
        float *pd = dst + p * kc * NR;
        for (int s = 0; s < NR / 16; s++) {
            int64_t jr = j0 + p * NR + s * 16;
            int64_t nv = nj - p * NR - s * 16;
            nv = nv < 0 ? 0 : nv > 16 ? 16 : nv;
            const char *base = (const char *)w->data + (size_t)jr * rb + (size_t)k0 * es;
            for (int64_t kk = 0; kk < kc; kk += 16) {
                int64_t kn = kc - kk < 16 ? kc - kk : 16;
                __mmask16 mk = tail_mask(kn);
                __m512 v[16];
                int64_t pr = p * NR + s * 16;
                for (int q = 0; q < 16; q++) {
                    if (next && pr + q < next_nj && kk < next_kc)
                        _mm_prefetch(next + (size_t)(pr + q) * rb + (size_t)kk * es, _MM_HINT_T1);
                    v[q] = q < nv ? wload16_mask(t, base + (size_t)q * rb + (size_t)kk * es, mk)
                                  : _mm512_setzero_ps();
                }
                transpose16(v);
                for (int q = 0; q < kn; q++) _mm512_store_ps(pd + (kk + q) * NR + s * 16, v[q]);
            }
        }
    }
}

/* y[0..mr, 0..nr) (+)= x[0..mr, 0..kc) * Wp[kc][NR]; `first` starts from zero, else
 * from y; bias (non-NULL only on the last k block) is added after the sum. */
AI void ukr(int mr, int64_t kc, const float *x, int64_t ldx, const float *wp, float *y,
            int64_t ldy, int64_t nr, int first, const float *bias) {
    __m512 c[MR][4];
    __mmask16 mk[4];
    for (int v = 0; v < 4; v++) {
        int64_t left = nr - 16 * v;
        mk[v] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? 0 : tail_mask(left);
    }
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            c[i][v] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mk[v], y + i * ldy + 16 * v);
    for (int64_t k = 0; k < kc; k++) {
        const float *b = wp + k * NR;
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        __m512 b2 = _mm512_load_ps(b + 32), b3 = _mm512_load_ps(b + 48);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            __m512 a = _mm512_set1_ps(x[i * ldx + k]);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
            c[i][2] = _mm512_fmadd_ps(a, b2, c[i][2]);
            c[i][3] = _mm512_fmadd_ps(a, b3, c[i][3]);
        }
    }
    if (bias) {
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            __m512 bv = _mm512_maskz_loadu_ps(mk[v], bias + 16 * v);
#pragma GCC unroll 6
            for (int i = 0; i < mr; i++) c[i][v] = _mm512_add_ps(c[i][v], bv);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(y + i * ldy + 16 * v, mk[v], c[i][v]);
}

_Static_assert(NC == KV_GEMM_BLOCK_NC_AVX512 && KC == KV_GEMM_BLOCK_KC_AVX512, "block sizes");
/* single rows where x (fp32) stays in L1 (kernels_internal.h) */
#define KV_DRV_SINGLE(w) kvk_gemv_single((size_t)(w)->n_in * sizeof(float))
#define KV_DRV_ISA avx512
#include "kernels/matmul_driver.h"

/* ---- elementwise ops ------------------------------------------------------------- */

/* exp(x) for fp32 lanes, Cephes expf scheme: n = round(x log2 e), r = x - n ln 2 in
 * two parts, degree-6 polynomial, scaled by 2^n with vscalefps (which also produces
 * correct subnormals and zero). About 1-2 ulp; NaN propagates. */
AI __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.3762626647949f), x);
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 e = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(e, n);
}

static void rmsnorm_avx512(const float *x, const float *w, int64_t n, float eps, float *out) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        v = _mm512_mul_ps(v, v);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
    }
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (; i < n; i++) ss += (double)(x[i] * x[i]);
    float var = (float)(ss / (double)n);
    float r = 1.0f / sqrtf(var + eps);
    __m512 rv = _mm512_set1_ps(r);
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i,
                         _mm512_mul_ps(_mm512_loadu_ps(w + i), _mm512_mul_ps(_mm512_loadu_ps(x + i), rv)));
    for (; i < n; i++) out[i] = w[i] * (x[i] * r);
}

static void rope_avx512(float *x, const float *c, const float *s, int64_t half) {
    int64_t i = 0;
    for (; i + 16 <= half; i += 16) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + half + i);
        __m512 cv = _mm512_loadu_ps(c + i), sv = _mm512_loadu_ps(s + i);
        _mm512_storeu_ps(x + i, _mm512_sub_ps(_mm512_mul_ps(a, cv), _mm512_mul_ps(b, sv)));
        _mm512_storeu_ps(x + half + i, _mm512_add_ps(_mm512_mul_ps(b, cv), _mm512_mul_ps(a, sv)));
    }
    for (; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * c[i] - b * s[i];
        x[i + half] = b * c[i] + a * s[i];
    }
}

static void softmax_avx512(float *x, int64_t n) {
    __m512 mv = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
    if (i < n) mv = _mm512_mask_max_ps(mv, tail_mask(n - i), mv, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
    float mx = _mm512_reduce_max_ps(mv);
    __m512 mxv = _mm512_set1_ps(mx), sv = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), mxv));
        _mm512_storeu_ps(x + i, e);
        sv = _mm512_add_ps(sv, e);
    }
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), mxv));
        _mm512_mask_storeu_ps(x + i, mk, e);
        sv = _mm512_add_ps(sv, _mm512_maskz_mov_ps(mk, e));
    }
    __m512 sum = _mm512_set1_ps(_mm512_reduce_add_ps(sv));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_div_ps(_mm512_loadu_ps(x + i), sum));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, mk, _mm512_div_ps(_mm512_maskz_loadu_ps(mk, x + i), sum));
    }
}

static void silu_mul_avx512(const float *g, const float *u, float *out, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gv = _mm512_loadu_ps(g + i);
        __m512 sg = _mm512_div_ps(gv, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(sg, _mm512_loadu_ps(u + i)));
    }
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        __m512 gv = _mm512_maskz_loadu_ps(mk, g + i);
        __m512 sg = _mm512_div_ps(gv, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
        _mm512_mask_storeu_ps(out + i, mk, _mm512_mul_ps(sg, _mm512_maskz_loadu_ps(mk, u + i)));
    }
}

static float dot_avx512(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xFFFF : tail_mask(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a + i), _mm512_maskz_loadu_ps(mk, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void axpy_avx512(float a, const float *x, float *y, int64_t n) {
    __m512 av = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 mk = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, mk,
                              _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(mk, x + i), _mm512_maskz_loadu_ps(mk, y + i)));
    }
}

const kv_kernel_ops kv_kernels_avx512 = {
    .isa = KV_ISA_AVX512,
    .matmul = matmul_avx512,
    .rmsnorm = rmsnorm_avx512,
    .rope = rope_avx512,
    .softmax = softmax_avx512,
    .silu_mul = silu_mul_avx512,
    .dot = dot_avx512,
    .axpy = axpy_avx512,
    .qmatmul = kv_qmatmul_avx512,
};
