/* test_kernels.c — every SIMD kernel against its scalar ref, and the matmul against
 * plain double-precision math on the dequantized weights.
 *
 * Sizes are odd on purpose (1, 7, 31, 33, 127, 129, 1023 inputs; 1, 2, 3, 5, 17 rows)
 * so every vector tail, microkernel edge and packing block boundary runs. ISAs the CPU
 * lacks are skipped with a note. */
#include <stdint.h>

#include "kvant/kernels.h"
#include "test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / (double)(1ull << 52) - 1.0);
}

static void fill(float *p, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) p[i] = frand() * scale;
}

/* Random weights of dtype t, [n_out, ld]; also their exact fp32 values. */
static void *make_w(kv_dtype t, int64_t n_out, int64_t ld, float *wf) {
    size_t es = kv_dtype_size(t);
    void *w = malloc((size_t)(n_out * ld) * es + 1);
    for (int64_t i = 0; i < n_out * ld; i++) {
        float f = frand() * 0.5f;
        if (t == KV_DTYPE_BF16) {
            uint16_t h = kv_f32_to_bf16(f);
            ((uint16_t *)w)[i] = h;
            wf[i] = kv_bf16_to_f32(h);
        } else if (t == KV_DTYPE_F16) {
            uint16_t h = kv_f32_to_f16(f);
            ((uint16_t *)w)[i] = h;
            wf[i] = kv_f16_to_f32(h);
        } else {
            ((float *)w)[i] = f;
            wf[i] = f;
        }
    }
    return w;
}

static const kv_kernel_ops *simd[2];
static int n_simd;

static void setup_isas(void) {
    kv_isa want[2] = {KV_ISA_AVX2, KV_ISA_AVX512};
    for (int i = 0; i < 2; i++) {
        const kv_kernel_ops *k = kv_kernels_for(want[i]);
        if (k) simd[n_simd++] = k;
        else fprintf(stderr, "  note: CPU lacks %s, its kernels are not tested\n", kv_isa_name(want[i]));
    }
}

static const int64_t N_IN[] = {1, 7, 31, 33, 127, 129, 1023};
static const int64_t M[] = {1, 2, 3, 5, 17};
static const kv_dtype DT[] = {KV_DTYPE_BF16, KV_DTYPE_F16, KV_DTYPE_F32};

/* One matmul case: rows [r0, r1) of an n_out x n_in matrix (row stride n_in + pad),
 * against m activation rows (stride n_in + 3); each SIMD table vs ref, both vs double. */
static void matmul_case(kv_dtype t, int64_t m, int64_t n_in, int64_t n_out, int64_t r0,
                        int64_t r1, int with_bias, int64_t pad) {
    const int64_t ldx = n_in + 3, ld = n_in + pad, ldy = n_out + 5;
    float *wf = malloc(sizeof(float) * (size_t)(n_out * ld));
    void *w = make_w(t, n_out, ld, wf);
    kv_wmat wm = {t, w, n_out, n_in, ld};
    float *x = malloc(sizeof(float) * (size_t)(m * ldx));
    fill(x, m * ldx, 1.0f);
    float *bias = malloc(sizeof(float) * (size_t)n_out);
    fill(bias, n_out, 1.0f);
    size_t ny = (size_t)(m * ldy);
    float *yr = malloc(sizeof(float) * ny), *ys = malloc(sizeof(float) * ny);
    float *yd = malloc(sizeof(float) * ny), *bound = malloc(sizeof(float) * ny);
    float *work = aligned_alloc(64, KV_MATMUL_WORK_FLOATS * sizeof(float));
    for (size_t i = 0; i < ny; i++) yr[i] = ys[i] = yd[i] = 7.0f; /* sentinel */
    kv_kernels_ref.matmul(x, m, ldx, &wm, with_bias ? bias : NULL, r0, r1, yr, ldy, work);

    /* double reference and the rounding bound: an fp32 sum of n products, in any order,
     * is within n * 2^-24 * sum|x w| of the exact sum (Higham's gamma_n), and two such
     * sums are within twice that of each other. */
    double max_ref_err = 0;
    int ref_bad = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t r = 0; r < n_out; r++) {
            size_t o = (size_t)(i * ldy + r);
            if (r < r0 || r >= r1) {
                bound[o] = 0;
                continue;
            }
            double s = 0, a = 0;
            for (int64_t k = 0; k < n_in; k++) {
                double p = (double)x[i * ldx + k] * (double)wf[r * ld + k];
                s += p;
                a += fabs(p);
            }
            if (with_bias) {
                s += bias[r];
                a += fabs(bias[r]);
            }
            yd[o] = (float)s;
            bound[o] = (float)((double)(n_in + 2) * 0x1p-24 * a + 1e-30);
            double e = fabs((double)yr[o] - s);
            if (e > max_ref_err) max_ref_err = e;
            if (!(e <= bound[o] + 0x1p-24 * fabs(s))) ref_bad++;
        }
    CHECK_MSG(ref_bad == 0, "ref matmul %s m=%lld n_in=%lld: %d outputs outside the gamma_n bound",
              kv_dtype_name(t), (long long)m, (long long)n_in, ref_bad);

    for (int s = 0; s < n_simd; s++) {
        for (size_t i = 0; i < ny; i++) ys[i] = 7.0f;
        simd[s]->matmul(x, m, ldx, &wm, with_bias ? bias : NULL, r0, r1, ys, ldy, work);
        int bad = 0, touched = 0, bad_d = 0;
        double max_err = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t r = 0; r < ldy; r++) {
                size_t o = (size_t)(i * ldy + r);
                if (r < r0 || r >= r1) { /* outside the row range: untouched */
                    if (ys[o] != 7.0f) touched++;
                    continue;
                }
                double e = fabs((double)ys[o] - (double)yr[o]);
                if (e > max_err) max_err = e;
                if (!(e <= 2.0 * bound[o])) bad++;
                /* and directly against the double sum: gamma_n, plus the final rounding */
                double ed = fabs((double)ys[o] - (double)yd[o]);
                if (!(ed <= bound[o] + 0x1p-23 * fabs((double)yd[o]))) bad_d++;
            }
        if (bad || touched || bad_d)
            fprintf(stderr, "  %s matmul %s m=%lld n_in=%lld n_out=%lld rows [%lld,%lld): %d "
                    "outside 2*gamma_n of ref, %d outside gamma_n of double, %d written outside "
                    "range, max_abs=%.3g\n",
                    kv_isa_name(simd[s]->isa), kv_dtype_name(t), (long long)m, (long long)n_in,
                    (long long)n_out, (long long)r0, (long long)r1, bad, bad_d, touched, max_err);
        CHECK(bad == 0 && touched == 0 && bad_d == 0);

        /* the thread split must not change a single bit: rows in two pieces */
        if (r1 - r0 >= 2) {
            int64_t mid = r0 + (r1 - r0) / 2 + 1;
            float *y2 = malloc(sizeof(float) * ny);
            memcpy(y2, ys, sizeof(float) * ny);
            simd[s]->matmul(x, m, ldx, &wm, with_bias ? bias : NULL, r0, mid, y2, ldy, work);
            simd[s]->matmul(x, m, ldx, &wm, with_bias ? bias : NULL, mid, r1, y2, ldy, work);
            CHECK_MSG(memcmp(y2, ys, sizeof(float) * ny) == 0,
                      "%s matmul differs when its rows are split", kv_isa_name(simd[s]->isa));
            free(y2);
        }
    }
    free(wf);
    free(w);
    free(x);
    free(bias);
    free(yr);
    free(ys);
    free(yd);
    free(bound);
    free(work);
}

static void test_matmul_odd_sizes(void) {
    for (size_t d = 0; d < sizeof DT / sizeof DT[0]; d++)
        for (size_t a = 0; a < sizeof N_IN / sizeof N_IN[0]; a++)
            for (size_t b = 0; b < sizeof M / sizeof M[0]; b++) {
                int64_t n_out = 33 + (int64_t)a * 16; /* odd panel tails: 33 .. 129 */
                matmul_case(DT[d], M[b], N_IN[a], n_out, 0, n_out, (a + b) % 2, (int64_t)(a % 3));
            }
}

static void test_matmul_blocks(void) {
    /* several NC x KC blocks, a row range starting mid-panel, bias, padded rows */
    for (size_t d = 0; d < sizeof DT / sizeof DT[0]; d++) {
        matmul_case(DT[d], 40, 300, 530, 5, 523, 1, 1);
        matmul_case(DT[d], 1, 1023, 300, 3, 299, 1, 0);
        matmul_case(DT[d], 4, 513, 70, 1, 70, 0, 2);
        /* m = 1 on rows past 6144 inputs (fp32 x over 24 KB): 4-row tiles, not single rows */
        matmul_case(DT[d], 1, 6500, 9, 0, 9, 1, 1);
    }
}

/* elementwise ops: equal to ref within the stated tolerances */
static void test_elementwise(void) {
    static const int64_t N[] = {1, 7, 31, 33, 127, 129, 1023};
    for (size_t a = 0; a < sizeof N / sizeof N[0]; a++) {
        int64_t n = N[a];
        size_t nb = sizeof(float) * (size_t)(n + 1);
        float *x = malloc(nb), *w = malloc(nb), *u = malloc(nb), *r = malloc(nb), *s = malloc(nb);
        float *c = malloc(nb), *sn = malloc(nb);
        fill(x, n, 4.0f);
        fill(w, n, 2.0f);
        fill(u, n, 2.0f);
        for (int64_t i = 0; i < n; i++) {
            c[i] = cosf((float)i * 0.37f);
            sn[i] = sinf((float)i * 0.37f);
        }
        if (n > 3) x[3] = -95.0f; /* exp underflow in softmax / large |x| in silu */
        for (int q = 0; q < n_simd; q++) {
            const kv_kernel_ops *k = simd[q];
            char lab[64];
            /* rmsnorm: sum of squares in double either way; r may differ by an ulp */
            kv_kernels_ref.rmsnorm(x, w, n, 1e-6f, r);
            k->rmsnorm(x, w, n, 1e-6f, s);
            snprintf(lab, sizeof lab, "%s rmsnorm n=%lld", kv_isa_name(k->isa), (long long)n);
            CHECK_CLOSE(lab, s, r, (size_t)n, 0, 4e-7);
            /* rope (half = n): the same rounded products and sums, so bit-exact */
            float *xr = malloc(2 * nb), *xs = malloc(2 * nb);
            fill(xr, 2 * n, 3.0f);
            memcpy(xs, xr, 2 * nb);
            kv_kernels_ref.rope(xr, c, sn, n);
            k->rope(xs, c, sn, n);
            snprintf(lab, sizeof lab, "%s rope half=%lld", kv_isa_name(k->isa), (long long)n);
            CHECK_CLOSE(lab, xs, xr, (size_t)(2 * n), 0, 0);
            free(xr);
            free(xs);
            /* softmax: polynomial exp within ~2 ulp of expf, sums reassociated */
            memcpy(r, x, nb);
            memcpy(s, x, nb);
            kv_kernels_ref.softmax(r, n);
            k->softmax(s, n);
            snprintf(lab, sizeof lab, "%s softmax n=%lld", kv_isa_name(k->isa), (long long)n);
            CHECK_CLOSE(lab, s, r, (size_t)n, 1e-30, 1e-6);
            /* silu * up: exp within ~2 ulp, then the same division and product */
            kv_kernels_ref.silu_mul(x, u, r, n);
            k->silu_mul(x, u, s, n);
            snprintf(lab, sizeof lab, "%s silu_mul n=%lld", kv_isa_name(k->isa), (long long)n);
            CHECK_CLOSE(lab, s, r, (size_t)n, 1e-30, 1e-6);
            /* dot: reassociated fp32 sum, within 2 gamma_n sum|a b| */
            float dr = kv_kernels_ref.dot(x, u, n), ds = k->dot(x, u, n);
            double a1 = 0;
            for (int64_t i = 0; i < n; i++) a1 += fabs((double)x[i] * u[i]);
            CHECK_MSG(fabs((double)dr - ds) <= 2.0 * (double)n * 0x1p-24 * a1,
                      "%s dot n=%lld: %.9g vs %.9g", kv_isa_name(k->isa), (long long)n, ds, dr);
            /* axpy: one FMA vs a rounded product and sum: 1 ulp of each term */
            memcpy(r, u, nb);
            memcpy(s, u, nb);
            kv_kernels_ref.axpy(0.7f, x, r, n);
            k->axpy(0.7f, x, s, n);
            snprintf(lab, sizeof lab, "%s axpy n=%lld", kv_isa_name(k->isa), (long long)n);
            CHECK_CLOSE(lab, s, r, (size_t)n, 4 * 0x1p-24 * 4.0, 2.5e-7);
        }
        free(x);
        free(w);
        free(u);
        free(r);
        free(s);
        free(c);
        free(sn);
    }
}

static void test_softmax_nan_propagates(void) {
    for (int q = 0; q < n_simd; q++) {
        float v[19];
        for (int i = 0; i < 19; i++) v[i] = (float)i * 0.1f;
        v[17] = NAN;
        simd[q]->softmax(v, 19);
        int nan = 0;
        for (int i = 0; i < 19; i++) nan += isnan(v[i]) != 0;
        CHECK_MSG(nan > 0, "%s softmax hid a NaN input", kv_isa_name(simd[q]->isa));
    }
}

static void test_dispatch(void) {
    kv_isa isa = kv_kernels_init();
    CHECK(kv_kernels() != NULL);
    CHECK(kv_kernels()->isa == isa);
    CHECK(kv_kernels_for(KV_ISA_REF) == &kv_kernels_ref);
    const char *env = getenv("KVANT_ISA");
    if (env && !strcmp(env, "ref")) CHECK(isa == KV_ISA_REF);
    kv_isa was = isa;
    CHECK(kv_kernels_set(KV_ISA_REF) == KV_ISA_REF);
    CHECK(kv_kernels()->isa == KV_ISA_REF);
    kv_kernels_set(was);
    CHECK(kv_kernels()->isa == was);
    fprintf(stderr, "  kernels in use: %s\n", kv_isa_name(isa));
}

int main(void) {
    setup_isas();
    KV_RUN(test_dispatch);
    KV_RUN(test_matmul_odd_sizes);
    KV_RUN(test_matmul_blocks);
    KV_RUN(test_elementwise);
    KV_RUN(test_softmax_nan_propagates);
    return kv_test_summary();
}
