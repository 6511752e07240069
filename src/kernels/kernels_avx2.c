/* kernels_avx2.c — AVX2 + FMA + F16C versions of the ops in kernels_ref.c.
 *
 * Only this file is compiled with AVX2 flags; dispatch.c calls it only on CPUs that
 * report avx2, fma and f16c. Same algorithms as kernels_avx512.c at 8 lanes:
 * m <= 4 streams each weight row once (GEMV), m > 4 widens/transposes NC x KC weight
 * blocks into `work` and runs a 6 x 16 microkernel (12 ymm accumulators). Every
 * output is an fp32 sum equal to the ref's up to reassociation. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels_internal.h"

#define AI static inline __attribute__((always_inline))

AI __m256 wload8(kv_dtype t, const void *p) {
    if (t == KV_DTYPE_BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)p);
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    if (t == KV_DTYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    return _mm256_loadu_ps(p);
}

/* First n (< 8) weights at p, the other lanes 0; AVX2 has no 16-bit masked load, so
 * the tail goes through a small zeroed buffer. */
AI __m256 wload8_part(kv_dtype t, const void *p, int64_t n) {
    uint32_t buf[8] = {0};
    memcpy(buf, p, (size_t)n * kv_dtype_size(t));
    return wload8(t, buf);
}

AI __m256 xload8_part(const float *p, int64_t n) {
    float buf[8] = {0};
    memcpy(buf, p, (size_t)n * sizeof(float));
    return _mm256_loadu_ps(buf);
}

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- GEMV: m in 1..4 ------------------------------------------------------------ */

#define GV_MAXR 4
#define GV_MAXM 4

AI void gemv_tile(kv_dtype t, int R, int M, const float *x, int64_t ldx, const kv_wmat *w,
                  int64_t r, const float *bias, float *y, int64_t ldy) {
    const int64_t n = w->n_in;
    const size_t es = kv_dtype_size(t), rb = (size_t)w->ld * es;
    const char *row[GV_MAXR];
    __m256 a0[GV_MAXR][GV_MAXM], a1[GV_MAXR][GV_MAXM];
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
        row[q] = (const char *)w->data + (size_t)(r + q) * rb;
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) a0[q][i] = a1[q][i] = _mm256_setzero_ps();
    }
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        const int pf = (((size_t)k * es) & 63) < 16 * es; /* the step starting each line */
#pragma GCC unroll 4
        for (int q = 0; q < R; q++) {
            if (pf) kvk_prefetch_line((const uint8_t *)row[0], rb, R, (((size_t)k * es) >> 6) * (size_t)R + (size_t)q);
            __m256 w0 = wload8(t, row[q] + (size_t)k * es);
            __m256 w1 = wload8(t, row[q] + (size_t)(k + 8) * es);
#pragma GCC unroll 4
            for (int i = 0; i < M; i++) {
                a0[q][i] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i * ldx + k), w0, a0[q][i]);
                a1[q][i] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i * ldx + k + 8), w1, a1[q][i]);
            }
        }
    }
    if (k + 8 <= n) {
#pragma GCC unroll 4
        for (int q = 0; q < R; q++) {
            __m256 w0 = wload8(t, row[q] + (size_t)k * es);
#pragma GCC unroll 4
            for (int i = 0; i < M; i++)
                a0[q][i] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i * ldx + k), w0, a0[q][i]);
        }
        k += 8;
    }
    if (k < n) {
#pragma GCC unroll 4
        for (int q = 0; q < R; q++) {
            __m256 w1 = wload8_part(t, row[q] + (size_t)k * es, n - k);
#pragma GCC unroll 4
            for (int i = 0; i < M; i++)
                a1[q][i] = _mm256_fmadd_ps(xload8_part(x + i * ldx + k, n - k), w1, a1[q][i]);
        }
    }
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) {
            float s = hsum8(_mm256_add_ps(a0[q][i], a1[q][i]));
            if (bias) s += bias[r + q];
            y[i * ldy + r + q] = s;
        }
    }
}

/* ---- GEMM: m > 4 ---------------------------------------------------------------- */

#define MR 6
#define NR 16  /* 2 ymm */
#define KC 256 /* a 16 x 256 fp32 panel is 16 KiB */
#define NC 128

/* In-register 8 x 8 transpose: v[i] lane j -> v[j] lane i. */
AI void transpose8(__m256 v[8]) {
    __m256 t[8], u[8];
    for (int g = 0; g < 2; g++) {
        t[4 * g + 0] = _mm256_unpacklo_ps(v[4 * g], v[4 * g + 1]);
        t[4 * g + 1] = _mm256_unpackhi_ps(v[4 * g], v[4 * g + 1]);
        t[4 * g + 2] = _mm256_unpacklo_ps(v[4 * g + 2], v[4 * g + 3]);
        t[4 * g + 3] = _mm256_unpackhi_ps(v[4 * g + 2], v[4 * g + 3]);
        /* within each 128-bit lane L: u[4g + c] = column 4L + c of rows 4g .. 4g + 3 */
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        v[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        v[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* `next` (the block packed after this one) is not prefetched here: untried at 8 lanes. */
AI void pack_w(kv_dtype t, const kv_wmat *w, int64_t j0, int64_t nj, int64_t k0, int64_t kc,
               float *dst, const char *next, int64_t next_nj, int64_t next_kc) {
    (void)next, (void)next_nj, (void)next_kc;
    const size_t es = kv_dtype_size(t), rb = (size_t)w->ld * es;
    for (int64_t p = 0; p * NR < nj; p++) {
        float *pd = dst + p * kc * NR;
        for (int s = 0; s < NR / 8; s++) {
            int64_t jr = j0 + p * NR + s * 8;
            int64_t nv = nj - p * NR - s * 8;
            nv = nv < 0 ? 0 : nv > 8 ? 8 : nv;
            const char *base = (const char *)w->data + (size_t)jr * rb + (size_t)k0 * es;
            for (int64_t kk = 0; kk < kc; kk += 8) {
                int64_t kn = kc - kk < 8 ? kc - kk : 8;
                __m256 v[8];
                for (int q = 0; q < 8; q++) {
                    const char *src = base + (size_t)q * rb + (size_t)kk * es;
                    v[q] = q >= nv ? _mm256_setzero_ps()
                           : kn == 8 ? wload8(t, src)
                                     : wload8_part(t, src, kn);
                }
                transpose8(v);
                for (int q = 0; q < kn; q++) _mm256_store_ps(pd + (kk + q) * NR + s * 8, v[q]);
            }
        }
    }
}

AI void ukr(int mr, int64_t kc, const float *x, int64_t ldx, const float *wp, float *y,
            int64_t ldy, int64_t nr, int first, const float *bias) {
    __m256 c[MR][2];
    const int full = nr == NR;
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        if (first) {
            c[i][0] = c[i][1] = _mm256_setzero_ps();
        } else if (full) {
            c[i][0] = _mm256_loadu_ps(y + i * ldy);
            c[i][1] = _mm256_loadu_ps(y + i * ldy + 8);
        } else {
            float buf[NR] = {0};
            memcpy(buf, y + i * ldy, (size_t)nr * sizeof(float));
            c[i][0] = _mm256_loadu_ps(buf);
            c[i][1] = _mm256_loadu_ps(buf + 8);
        }
    }
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(wp + k * NR), b1 = _mm256_load_ps(wp + k * NR + 8);
#pragma GCC unroll 6
        for (int i = 0; i < mr; i++) {
            __m256 a = _mm256_broadcast_ss(x + i * ldx + k);
            c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
        }
    }
    float bb[NR] = {0};
    if (bias) memcpy(bb, bias, (size_t)nr * sizeof(float));
    __m256 bv0 = _mm256_loadu_ps(bb), bv1 = _mm256_loadu_ps(bb + 8);
#pragma GCC unroll 6
    for (int i = 0; i < mr; i++) {
        if (bias) {
            c[i][0] = _mm256_add_ps(c[i][0], bv0);
            c[i][1] = _mm256_add_ps(c[i][1], bv1);
        }
        if (full) {
            _mm256_storeu_ps(y + i * ldy, c[i][0]);
            _mm256_storeu_ps(y + i * ldy + 8, c[i][1]);
        } else {
            float buf[NR];
            _mm256_storeu_ps(buf, c[i][0]);
            _mm256_storeu_ps(buf + 8, c[i][1]);
            memcpy(y + i * ldy, buf, (size_t)nr * sizeof(float));
        }
    }
}

_Static_assert(NC == KV_GEMM_BLOCK_NC_AVX2 && KC == KV_GEMM_BLOCK_KC_AVX2, "block sizes");
#define KV_DRV_SINGLE(w) 0 /* 4-row tiles: not measured on an AVX2-only machine */
#define KV_DRV_ISA avx2
#include "kernels/matmul_driver.h"

/* ---- elementwise ops ------------------------------------------------------------- */

/* exp(x), Cephes expf scheme as in kernels_avx512.c; 2^n is built in the exponent
 * field, so x is clamped to [-87.3, 88.0] (n in [-126, 127]): softmax and SiLU only
 * lose values below 1e-38 relative to their sums. NaN propagates through the clamps. */
AI __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
    x = _mm256_max_ps(_mm256_set1_ps(-87.33654f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i pow2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(e, _mm256_castsi256_ps(pow2));
}

static void rmsnorm_avx2(const float *x, const float *w, int64_t n, float eps, float *out) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        v = _mm256_mul_ps(v, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    double sb[4];
    _mm256_storeu_pd(sb, _mm256_add_pd(s0, s1));
    double ss = (sb[0] + sb[1]) + (sb[2] + sb[3]);
    for (; i < n; i++) ss += (double)(x[i] * x[i]);
    float var = (float)(ss / (double)n);
    float r = 1.0f / sqrtf(var + eps);
    __m256 rv = _mm256_set1_ps(r);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(w + i),
                                                _mm256_mul_ps(_mm256_loadu_ps(x + i), rv)));
    for (; i < n; i++) out[i] = w[i] * (x[i] * r);
}

static void rope_avx2(float *x, const float *c, const float *s, int64_t half) {
    int64_t i = 0;
    for (; i + 8 <= half; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + half + i);
        __m256 cv = _mm256_loadu_ps(c + i), sv = _mm256_loadu_ps(s + i);
        _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_mul_ps(a, cv), _mm256_mul_ps(b, sv)));
        _mm256_storeu_ps(x + half + i, _mm256_add_ps(_mm256_mul_ps(b, cv), _mm256_mul_ps(a, sv)));
    }
    for (; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * c[i] - b * s[i];
        x[i + half] = b * c[i] + a * s[i];
    }
}

static void softmax_avx2(float *x, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    __m256 mxv = _mm256_set1_ps(mx), sv = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mxv));
        _mm256_storeu_ps(x + i, e);
        sv = _mm256_add_ps(sv, e);
    }
    float sum = hsum8(sv);
    if (i < n) {
        float buf[8];
        _mm256_storeu_ps(buf, exp8(_mm256_sub_ps(xload8_part(x + i, n - i), mxv)));
        for (int64_t j = 0; j < n - i; j++) {
            x[i + j] = buf[j];
            sum += buf[j];
        }
    }
    __m256 sumv = _mm256_set1_ps(sum);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), sumv));
    for (; i < n; i++) x[i] = x[i] / sum;
}

static void silu_mul_avx2(const float *g, const float *u, float *out, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 sg = _mm256_div_ps(gv, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(sg, _mm256_loadu_ps(u + i)));
    }
    if (i < n) {
        __m256 gv = xload8_part(g + i, n - i), uv = xload8_part(u + i, n - i);
        __m256 sg = _mm256_div_ps(gv, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
        float buf[8];
        _mm256_storeu_ps(buf, _mm256_mul_ps(sg, uv));
        memcpy(out + i, buf, (size_t)(n - i) * sizeof(float));
    }
}

static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    if (i < n) s1 = _mm256_fmadd_ps(xload8_part(a + i, n - i), xload8_part(b + i, n - i), s1);
    return hsum8(_mm256_add_ps(s0, s1));
}

static void axpy_avx2(float a, const float *x, float *y, int64_t n) {
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

const kv_kernel_ops kv_kernels_avx2 = {
    .isa = KV_ISA_AVX2,
    .matmul = matmul_avx2,
    .rmsnorm = rmsnorm_avx2,
    .rope = rope_avx2,
    .softmax = softmax_avx2,
    .silu_mul = silu_mul_avx2,
    .dot = dot_avx2,
    .axpy = axpy_avx2,
    .qmatmul = kv_qmatmul_avx2,
};
