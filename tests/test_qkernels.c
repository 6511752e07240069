/* test_qkernels.c — the quantized matmul (kv_kernel_ops.qmatmul) of every ISA against
 * its scalar ref and against plain double-precision math on the dequantized weights,
 * for every format: intB-gG (B in 2, 3, 4, 8; G in 32, 64, 128), mxfp4, mxint4.
 *
 * Issue 3 (points 4 and 6). The packed data are random bits (every code, every zero
 * point, E8M0 scales from 2^-127 up), not only what the quantizer writes. Sizes are odd
 * on purpose: n_out 1, 7, 33, 129 (GEMV row tiles, GEMM panel edges), n_in 128, 384,
 * 1024 (one to many groups and GEMM k blocks), m 1, 2 (GEMV) and 5, 17 (GEMM: one
 * partial 6-row microkernel and several), strides wider than the rows, a bias on half
 * the cases, and the row range split unevenly (what threads do).
 *
 * Bounds. The kernels dequantize exactly, so the only error is fp32 summation order:
 * |y - y_exact| <= gamma_n * sum_k |x_k w_k| with gamma_n = n * 2^-24 (the worst case of
 * n sequential rounded additions, Higham 3.1; FMA only lowers it). SIMD vs ref: twice
 * that (each side is within gamma_n of the exact sum). In the GEMM regime (m > 4) the
 * SIMD output must equal the same ISA's fp32 matmul on the dequantized weights bit for
 * bit (the same microkernel on the same values).
 *
 * The int8-activation ("q8") path (kernels.h): kv_qmatmul_q8_ref and every SIMD q8
 * kernel against (a) plain double math on the dequantized weights and the activations
 * as this file quantizes them itself (x^ = d * x8, the spec's block rule): only the
 * fp32 sums of n_in/32 + n_groups block and group terms differ, bound
 * gamma_N * T with N = n_in/32 + n_groups + 48 and T = sum |s| (c + z) |x^| (the
 * magnitudes the kernel adds, offset form); (b) SIMD vs ref: 2 gamma_N * T, the same
 * integers in another fp32 order, so a bound orders of magnitude below the exact
 * path's; (c) the true product sum_k w_k x_k: the activation rounding,
 * |x - x^| <= d/2 + 2^-22 |x| per input; (d) bit equality whatever m, tile or row
 * split, so `ppl --fast` measures exactly what q8 decoding computes. */
#include <stdint.h>

#include "kernels/kernels_internal.h" /* the q8 path's code/zero/scale helpers */
#include "kvant/kernels.h"
#include "kvant/quant.h"
#include "test.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static float frand(void) { return (float)((double)(rnd() >> 11) / (double)(1ull << 52) - 1.0); }

static const kv_kernel_ops *isas[3];
static int n_isas;

static void setup_isas(void) {
    for (int i = KV_ISA_REF; i < KV_ISA_COUNT; i++) {
        const kv_kernel_ops *k = kv_kernels_for((kv_isa)i);
        if (k) isas[n_isas++] = k;
        else fprintf(stderr, "  note: CPU lacks %s, its kernels are not tested\n", kv_isa_name((kv_isa)i));
    }
}

/* A packed tensor of random bits, kept valid: INT scales finite fp16 of magnitude
 * 2^-10 .. 2^-4 with random sign, unused qzeros bits clear; MX scales 0 .. 134 with
 * some 0 and 1 (subnormal 2^-127, 2^-126) so no block overflows. */
static void random_qtensor(kv_qtensor *qt) {
    for (int p = 0; p < qt->n_parts; p++) {
        uint8_t *d = (uint8_t *)qt->owned + qt->part[p].offset;
        if (qt->qf.fmt == KV_QFMT_INT && p == 3) continue; /* g_idx stays i / G */
        for (size_t i = 0; i < qt->part[p].nbytes; i++) d[i] = (uint8_t)rnd();
    }
    if (qt->qf.fmt == KV_QFMT_INT) {
        uint8_t *sc = (uint8_t *)qt->owned + qt->part[2].offset;
        for (size_t i = 0; i < qt->part[2].nbytes / 2; i++) {
            uint16_t h = kv_f32_to_f16(ldexpf(1.0f + 0.5f * frand(), -4 - (int)(rnd() % 7)) *
                                       (rnd() & 1 ? -1.0f : 1.0f));
            memcpy(sc + 2 * i, &h, 2);
        }
        uint8_t *qz = (uint8_t *)qt->owned + qt->part[1].offset;
        int64_t zw = qt->part[1].shape[1], used = qt->n_out * qt->qf.bits;
        if (used % 32)
            for (int64_t g = 0; g < qt->part[1].shape[0]; g++) {
                uint32_t v;
                memcpy(&v, qz + (g * zw + zw - 1) * 4, 4);
                v &= (1u << (used % 32)) - 1u;
                memcpy(qz + (g * zw + zw - 1) * 4, &v, 4);
            }
    } else {
        uint8_t *sc = (uint8_t *)qt->owned + qt->part[1].offset;
        for (size_t i = 0; i < qt->part[1].nbytes; i++) {
            uint64_t r = rnd() % 16;
            sc[i] = r == 0 ? 0 : r == 1 ? 1 : (uint8_t)(120 + rnd() % 15);
        }
    }
}

static double worst_ratio; /* max over checks of |error| / bound */

/* |a - b| <= bound[o] for every output; records the worst ratio. */
static int within(const char *what, const float *a, const double *b, const double *bound,
                  int64_t m, int64_t n_out, int64_t lda) {
    int bad = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < n_out; o++) {
            double e = fabs((double)a[i * lda + o] - b[i * n_out + o]);
            double r = e / (bound[i * n_out + o] + 1e-300);
            if (r > worst_ratio || e != e) worst_ratio = r;
            if (!(e <= bound[i * n_out + o])) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s: y[%lld, %lld] = %.9g, want %.9g (bound %.3g)\n", what,
                            (long long)i, (long long)o, a[i * lda + o], b[i * n_out + o],
                            bound[i * n_out + o]);
            }
        }
    return bad;
}

static int cases_run;

/* One format x shape: every ISA's qmatmul vs the ref, the double reference, and (m > 4)
 * the same ISA's dense matmul on the dequantized weights. */
static void check_case(kv_qformat qf, int64_t n_out, int64_t n_in, int64_t m, int with_bias) {
    char fname[32], label[160];
    kv_qformat_name(qf, fname, sizeof fname);
    snprintf(label, sizeof label, "%s n_out=%lld n_in=%lld m=%lld", fname, (long long)n_out,
             (long long)n_in, (long long)m);
    kv_err err = {0};
    kv_qtensor qt;
    kv_qmat qm = {0};
    CHECK_MSG(kv_qtensor_init(&qt, qf, n_out, n_in, "w", &err) == KV_OK, "%s", err.msg);
    CHECK_MSG(kv_qtensor_alloc(&qt, &err) == KV_OK, "%s", err.msg);
    random_qtensor(&qt);
    CHECK_MSG(kv_qtensor_validate(&qt, "w", &err) == KV_OK, "%s: %s", label, err.msg);
    CHECK_MSG(kv_qmat_init(&qm, &qt, "w", &err) == KV_OK, "%s", err.msg);

    const int64_t ldx = n_in + 3, ldy = n_out + 5;
    float *wd = malloc(sizeof(float) * (size_t)(n_out * n_in));
    float *wq = malloc(sizeof(float) * (size_t)(n_out * n_in));
    float *x = malloc(sizeof(float) * (size_t)(m * ldx));
    float *bias = malloc(sizeof(float) * (size_t)n_out);
    float *y = malloc(sizeof(float) * (size_t)(m * ldy));
    float *yref = malloc(sizeof(float) * (size_t)(m * ldy));
    float *ydense = malloc(sizeof(float) * (size_t)(m * ldy));
    double *yd = malloc(sizeof(double) * (size_t)(m * n_out));
    double *bnd = malloc(sizeof(double) * (size_t)(m * n_out));
    double *bnd2 = malloc(sizeof(double) * (size_t)(m * n_out));
    float *work = aligned_alloc(64, sizeof(float) * KV_MATMUL_WORK_FLOATS);

    /* the kernel layout decodes to exactly kv_dequantize_ref's values */
    CHECK(kv_dequantize_ref(&qt, 0, n_out, wd, &err) == KV_OK);
    kv_qmat_dequantize(&qm, 0, n_out, wq);
    CHECK_MSG(memcmp(wd, wq, sizeof(float) * (size_t)(n_out * n_in)) == 0,
              "%s: kv_qmat_dequantize differs from kv_dequantize_ref", label);

    for (int64_t i = 0; i < m * ldx; i++) x[i] = frand();
    for (int64_t o = 0; o < n_out; o++) bias[o] = frand();
    const float *b = with_bias ? bias : NULL;
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0, a = 0;
            for (int64_t k = 0; k < n_in; k++) {
                double p = (double)x[i * ldx + k] * (double)wd[o * n_in + k];
                s += p;
                a += fabs(p);
            }
            if (b) {
                s += b[o];
                a += fabs(b[o]);
            }
            yd[i * n_out + o] = s;
            bnd[i * n_out + o] = (double)(n_in + 1) * 0x1p-24 * a + 1e-30;
            bnd2[i * n_out + o] = 2 * bnd[i * n_out + o];
        }

    /* ref: against the double reference */
    for (int64_t i = 0; i < m * ldy; i++) yref[i] = NAN;
    kv_kernels_ref.qmatmul(x, m, ldx, &qm, b, 0, n_out, yref, ldy, work);
    CHECK_MSG(!within(label, yref, yd, bnd, m, n_out, ldy), "%s: ref vs double", label);

    const kv_wmat dense = {KV_DTYPE_F32, wd, n_out, n_in, n_in};
    for (int s = 0; s < n_isas; s++) {
        const kv_kernel_ops *k = isas[s];
        for (int64_t i = 0; i < m * ldy; i++) y[i] = NAN;
        /* two uneven row ranges, as two threads would get */
        int64_t cut = n_out / 3;
        k->qmatmul(x, m, ldx, &qm, b, 0, cut, y, ldy, work);
        k->qmatmul(x, m, ldx, &qm, b, cut, n_out, y, ldy, work);
        double *yr = malloc(sizeof(double) * (size_t)(m * n_out));
        for (int64_t i = 0; i < m; i++)
            for (int64_t o = 0; o < n_out; o++) yr[i * n_out + o] = yref[i * ldy + o];
        CHECK_MSG(!within(label, y, yr, bnd2, m, n_out, ldy), "%s: %s vs ref", label,
                  kv_isa_name(k->isa));
        CHECK_MSG(!within(label, y, yd, bnd, m, n_out, ldy), "%s: %s vs double", label,
                  kv_isa_name(k->isa));
        free(yr);
        /* the same call on the whole range gives the same bits */
        float *y2 = malloc(sizeof(float) * (size_t)(m * ldy));
        memcpy(y2, y, sizeof(float) * (size_t)(m * ldy));
        k->qmatmul(x, m, ldx, &qm, b, 0, n_out, y2, ldy, work);
        int same = 1;
        for (int64_t i = 0; i < m; i++)
            for (int64_t o = 0; o < n_out; o++)
                same &= memcmp(&y[i * ldy + o], &y2[i * ldy + o], 4) == 0;
        CHECK_MSG(same, "%s: %s: result depends on the row split", label, kv_isa_name(k->isa));
        free(y2);
        if (m > 4 && k->isa != KV_ISA_REF) {
            k->matmul(x, m, ldx, &dense, b, 0, n_out, ydense, ldy, work);
            int eq = 1;
            for (int64_t i = 0; i < m; i++)
                for (int64_t o = 0; o < n_out; o++)
                    eq &= memcmp(&y[i * ldy + o], &ydense[i * ldy + o], 4) == 0;
            CHECK_MSG(eq, "%s: %s GEMM differs from the fp32 GEMM on dequantized weights",
                      label, kv_isa_name(k->isa));
        }
    }
    cases_run++;
    free(wd), free(wq), free(x), free(bias), free(y), free(yref), free(ydense);
    free(yd), free(bnd), free(bnd2), free(work);
    kv_qmat_free(&qm);
    kv_qtensor_free(&qt);
}

static kv_qformat fmt(const char *name) {
    kv_qformat qf = {0};
    kv_err err = {0};
    if (kv_qformat_parse(name, &qf, &err) != KV_OK) fprintf(stderr, "%s\n", err.msg);
    return qf;
}

static const char *FORMATS[] = {"int2-g32", "int2-g64", "int2-g128", "int3-g32", "int3-g64",
                                "int3-g128", "int4-g32", "int4-g64", "int4-g128", "int8-g32",
                                "int8-g64", "int8-g128", "mxfp4",     "mxint4"};
#define N_FORMATS (sizeof FORMATS / sizeof FORMATS[0])
static const int64_t N_OUT[] = {1, 7, 33, 129};
static const int64_t N_IN[] = {128, 384, 1024};
static const int64_t MS[] = {1, 2, 5, 17};

static void test_every_format(void) {
    int n = 0;
    worst_ratio = 0;
    for (size_t f = 0; f < N_FORMATS; f++)
        for (size_t a = 0; a < 4; a++)
            for (size_t c = 0; c < 3; c++)
                for (size_t d = 0; d < 4; d++) {
                    /* all m for the small shapes; the largest ones with m = 1 and 17 */
                    if (N_OUT[a] == 129 && N_IN[c] == 1024 && (MS[d] == 2 || MS[d] == 5)) continue;
                    check_case(fmt(FORMATS[f]), N_OUT[a], N_IN[c], MS[d], (n++ & 1));
                }
    fprintf(stderr, "# %d cases x %d ISAs; worst error / bound = %.3g\n", cases_run, n_isas,
            worst_ratio);
}

/* m rows of n_in inputs beyond the per-thread work buffer: the 4-bit GEMV splits the
 * activations slab by slab and adds the partial sums. */
static void test_gemv_slabs(void) {
    int64_t n_in = KV_MATMUL_WORK_FLOATS / 4 + 384;
    check_case(fmt("int4-g128"), 3, n_in, 4, 1);
    check_case(fmt("mxfp4"), 2, n_in, 3, 0);
    check_case(fmt("int3-g128"), 2, n_in, 4, 1);
}

/* Quantizer output (not random bits) through the kernels: RTN int4 of smooth weights. */
static void test_quantizer_output(void) {
    kv_err err = {0};
    const int64_t n_out = 33, n_in = 256;
    const char *names[] = {"int4-g128", "int3-g128", "int2-g64", "mxfp4", "mxint4"};
    for (int f = 0; f < 5; f++) {
        kv_qtensor qt;
        kv_qmat qm;
        float *w = malloc(sizeof(float) * n_out * n_in), *wd = malloc(sizeof(float) * n_out * n_in);
        float *x = malloc(sizeof(float) * n_in), *y = malloc(sizeof(float) * n_out);
        float *work = aligned_alloc(64, sizeof(float) * KV_MATMUL_WORK_FLOATS);
        for (int64_t i = 0; i < n_out * n_in; i++) w[i] = 0.05f * frand();
        for (int64_t i = 0; i < n_in; i++) x[i] = frand();
        CHECK(kv_qtensor_init(&qt, fmt(names[f]), n_out, n_in, "w", &err) == KV_OK);
        CHECK(kv_qtensor_alloc(&qt, &err) == KV_OK);
        CHECK_MSG(kv_quantize_ref(&qt, w, 0, n_out, NULL, "w", &err) == KV_OK, "%s", err.msg);
        CHECK(kv_qmat_init(&qm, &qt, "w", &err) == KV_OK);
        CHECK(kv_dequantize_ref(&qt, 0, n_out, wd, &err) == KV_OK);
        kv_kernels()->qmatmul(x, 1, n_in, &qm, NULL, 0, n_out, y, n_out, work);
        double worst = 0;
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0, a = 0;
            for (int64_t k = 0; k < n_in; k++) {
                s += (double)x[k] * wd[o * n_in + k];
                a += fabs((double)x[k] * wd[o * n_in + k]);
            }
            double e = fabs(y[o] - s) / (n_in * 0x1p-24 * a);
            if (e > worst) worst = e;
        }
        CHECK_MSG(worst <= 1.0, "%s: error / bound %.3g", names[f], worst);
        kv_qmat_free(&qm);
        kv_qtensor_free(&qt);
        free(w), free(wd), free(x), free(y), free(work);
    }
}

static void test_qmat_init_errors(void) {
    kv_err err = {0};
    kv_qtensor qt;
    kv_qmat qm;
    CHECK(kv_qtensor_init(&qt, fmt("int4-g128"), 32, 128, "layer.w", &err) == KV_OK);
    /* parts without data */
    CHECK_ERR(kv_qmat_init(&qm, &qt, "layer.w", &err), &err, KV_EINVAL, "layer.w: part qweight");
    CHECK_ERR(kv_qmat_init(&qm, NULL, "layer.w", &err), &err, KV_EINVAL, "not initialised");
    kv_qmat_free(&qm);
    kv_qmat_free(NULL);
    CHECK_EQ_INT(kv_qmat_bytes(NULL), 0);
    /* bytes read per pass: int4-g128 32 x 128 = 2048 B elements + 32 x (2 + 1) scales/zeros */
    CHECK(kv_qtensor_alloc(&qt, &err) == KV_OK);
    CHECK(kv_qmat_init(&qm, &qt, "layer.w", &err) == KV_OK);
    CHECK_EQ_INT(kv_qmat_bytes(&qm), 2048 + 96);
    kv_qmat_free(&qm);
    kv_qtensor_free(&qt);
}


/* ---- the q8 path ------------------------------------------------------------------ */

/* This file's own reading of the activation rule: per 32-block d = amax / 127,
 * x8 = rne(x * (127 / amax)); returns x^ = d * x8 in xh (double). */
static void q8_dequant_acts(const float *x, int64_t n, double *xh, double *dblk) {
    for (int64_t b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        float d = amax >= 0x1p-100f ? amax / 127.0f : 0.0f, id = d > 0 ? 127.0f / amax : 0.0f;
        dblk[b] = d;
        for (int j = 0; j < 32; j++) xh[b * 32 + j] = (double)d * (double)nearbyintf(x[b * 32 + j] * id);
    }
}

static double q8_worst[3]; /* worst error / bound: vs double on x^, SIMD vs ref, vs true */
static int q8_cases;

static void check_q8_case(kv_qformat qf, int64_t n_out, int64_t n_in, int64_t m, int with_bias) {
    char fname[32], label[160];
    kv_qformat_name(qf, fname, sizeof fname);
    snprintf(label, sizeof label, "q8 %s n_out=%lld n_in=%lld m=%lld", fname, (long long)n_out,
             (long long)n_in, (long long)m);
    kv_err err = {0};
    kv_qtensor qt;
    kv_qmat qm = {0};
    CHECK_MSG(kv_qtensor_init(&qt, qf, n_out, n_in, "w", &err) == KV_OK, "%s", err.msg);
    CHECK_MSG(kv_qtensor_alloc(&qt, &err) == KV_OK, "%s", err.msg);
    random_qtensor(&qt);
    CHECK_MSG(kv_qmat_init(&qm, &qt, "w", &err) == KV_OK, "%s", err.msg);
    const int64_t ldx = n_in + 5, ldy = n_out + 3;
    float *wd = malloc(sizeof(float) * (size_t)(n_out * n_in));
    float *x = malloc(sizeof(float) * (size_t)(m * ldx)), *bias = malloc(sizeof(float) * (size_t)n_out);
    float *yref = malloc(sizeof(float) * (size_t)(m * ldy)), *y = malloc(sizeof(float) * (size_t)(m * ldy));
    float *y1 = malloc(sizeof(float) * (size_t)(m * ldy));
    double *xh = malloc(sizeof(double) * (size_t)n_in), *dblk = malloc(sizeof(double) * (size_t)(n_in / 32));
    double *yh = malloc(sizeof(double) * (size_t)(m * n_out)), *yt = malloc(sizeof(double) * (size_t)(m * n_out));
    double *bt = malloc(sizeof(double) * (size_t)(m * n_out)), *ba = malloc(sizeof(double) * (size_t)(m * n_out));
    float *work = aligned_alloc(64, sizeof(float) * KV_MATMUL_WORK_FLOATS);
    CHECK(kv_dequantize_ref(&qt, 0, n_out, wd, &err) == KV_OK);
    /* activations with a spread of block magnitudes, one block all zero */
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < n_in; k++)
            x[i * ldx + k] = (k / 32 == 1 ? 0.0f : frand()) * ldexpf(1.0f, (int)((k / 32 + i) % 5) - 2);
    for (int64_t o = 0; o < n_out; o++) bias[o] = frand();
    const float *b = with_bias ? bias : NULL;
    const int64_t N = n_in / 32 + qm.n_groups + 48;
    for (int64_t i = 0; i < m; i++) {
        q8_dequant_acts(x + i * ldx, n_in, xh, dblk);
        for (int64_t o = 0; o < n_out; o++) {
            double sh = 0, st = 0, T = 0, R = 0;
            for (int64_t k = 0; k < n_in; k++) {
                const size_t gi = (size_t)o * (size_t)qm.n_groups + (size_t)(k / qf.group);
                uint32_t c = kvq8_code(&qm, kvk_get_bits(qm.q + (size_t)o * (size_t)qm.row_bytes, k, qf.bits));
                double w = wd[o * n_in + k];
                sh += w * xh[k];
                st += w * (double)x[i * ldx + k];
                T += fabs((double)kvq8_wscale(&qm, gi)) * (double)(c + (uint32_t)kvq8_zero(&qm, gi)) * fabs(xh[k]);
                R += fabs(w) * (dblk[k / 32] / 2 + 0x1p-22 * fabs((double)x[i * ldx + k]));
            }
            if (b) {
                sh += b[o];
                st += b[o];
                T += fabs(b[o]);
            }
            yh[i * n_out + o] = sh;
            yt[i * n_out + o] = st;
            ba[i * n_out + o] = (double)N * 0x1p-24 * T + 1e-30;
            bt[i * n_out + o] = ba[i * n_out + o] + R;
        }
    }
    /* (a), (c): the ref */
    for (int64_t i = 0; i < m * ldy; i++) yref[i] = NAN;
    kv_qmatmul_q8_ref(x, m, ldx, &qm, b, 0, n_out, yref, ldy, NULL);
    worst_ratio = 0;
    CHECK_MSG(!within(label, yref, yh, ba, m, n_out, ldy), "%s: ref vs double on x^", label);
    if (worst_ratio > q8_worst[0]) q8_worst[0] = worst_ratio;
    worst_ratio = 0;
    CHECK_MSG(!within(label, yref, yt, bt, m, n_out, ldy), "%s: ref vs the true product", label);
    if (worst_ratio > q8_worst[2]) q8_worst[2] = worst_ratio;
    double *yr = malloc(sizeof(double) * (size_t)(m * n_out)), *b2 = malloc(sizeof(double) * (size_t)(m * n_out));
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < n_out; o++) {
            yr[i * n_out + o] = yref[i * ldy + o];
            b2[i * n_out + o] = 2 * ba[i * n_out + o];
        }
    for (int isa = KV_ISA_AVX2; isa < KV_ISA_COUNT; isa++) {
        kv_qmatmul_fn f = kv_qmatmul_q8_for((kv_isa)isa);
        if (!f) continue;
        /* (b): two uneven row ranges */
        for (int64_t i = 0; i < m * ldy; i++) y[i] = NAN;
        int64_t cut = n_out / 3;
        f(x, m, ldx, &qm, b, 0, cut, y, ldy, work);
        f(x, m, ldx, &qm, b, cut, n_out, y, ldy, work);
        worst_ratio = 0;
        CHECK_MSG(!within(label, y, yr, b2, m, n_out, ldy), "%s: %s vs ref", label, kv_isa_name((kv_isa)isa));
        if (worst_ratio > q8_worst[1]) q8_worst[1] = worst_ratio;
        /* (d): one activation row at a time gives the same bits */
        for (int64_t i = 0; i < m; i++) f(x + i * ldx, 1, ldx, &qm, b, 0, n_out, y1 + i * ldy, ldy, work);
        int same = 1;
        for (int64_t i = 0; i < m; i++)
            for (int64_t o = 0; o < n_out; o++) same &= memcmp(&y[i * ldy + o], &y1[i * ldy + o], 4) == 0;
        CHECK_MSG(same, "%s: %s: result depends on m or the row split", label, kv_isa_name((kv_isa)isa));
    }
    q8_cases++;
    free(yr), free(b2);
    free(wd), free(x), free(bias), free(yref), free(y), free(y1), free(xh), free(dblk);
    free(yh), free(yt), free(bt), free(ba), free(work);
    kv_qmat_free(&qm);
    kv_qtensor_free(&qt);
}

static void test_q8_every_format(void) {
    /* n_in 96 and 384: partial last chunks (E = 64 .. 256); m 9: the m > 4 loop */
    static const int64_t NI[] = {96, 128, 384, 1024}, NO[] = {1, 7, 33, 129}, M[] = {1, 2, 3, 4, 9};
    int n = 0;
    for (size_t f = 0; f < N_FORMATS; f++)
        for (size_t c = 0; c < 4; c++) {
            kv_qformat qf = fmt(FORMATS[f]);
            if (NI[c] % qf.group) continue;
            for (size_t a = 0; a < 4; a++)
                for (size_t d = 0; d < 5; d++) {
                    if (NO[a] == 129 && (NI[c] == 1024 || M[d] != 1)) continue;
                    check_q8_case(qf, NO[a], NI[c], M[d], n++ & 1);
                }
        }
    /* rows whose prepared activations outgrow L1 (> 24 KB): the single-activation-row
     * GEMV goes back from one row at a time to 4-row tiles (kernels_internal.h), or for
     * int3 and int2 to single rows on compact block scales (qmatmul_q8_avx512.c) */
    for (size_t f = 0; f < N_FORMATS; f++) {
        check_q8_case(fmt(FORMATS[f]), 9, 16640, 1, 1);
        check_q8_case(fmt(FORMATS[f]), 5, 16640, 2, 0);
    }
    /* int3 and int2 rows long enough for their compact single-row GEMV */
    check_q8_case(fmt("int2-g64"), 7, 20480, 1, 1);
    check_q8_case(fmt("int2-g64"), 3, 20480, 2, 0);
    check_q8_case(fmt("int3-g128"), 7, 20480, 1, 0);
    check_q8_case(fmt("int3-g32"), 3, 20480, 2, 1);
    int simd = 0;
    for (int isa = KV_ISA_AVX2; isa < KV_ISA_COUNT; isa++) simd += kv_qmatmul_q8_for((kv_isa)isa) != NULL;
    fprintf(stderr, "# q8: %d cases, %d SIMD kernel(s); worst error / bound: ref vs double %.3g, "
            "SIMD vs ref %.3g, vs the true product %.3g\n", q8_cases, simd, q8_worst[0], q8_worst[1],
            q8_worst[2]);
    if (simd < 2) fprintf(stderr, "  note: CPU lacks a SIMD q8 kernel (avx2, or avx512 with VNNI + VBMI)\n");
}

/* Edge blocks: a NaN or Inf poisons exactly the outputs it meets (NaN), a block of
 * tiny subnormals counts as zero, all-zero activations give the bias; the fallback
 * choice keeps the exact kernel where no q8 kernel exists. */
static void test_q8_edges(void) {
    kv_err err = {0};
    const int64_t n_out = 5, n_in = 256;
    const char *names[] = {"int4-g128", "int3-g64", "int2-g32", "int8-g64", "mxfp4", "mxint4"};
    float *x = malloc(sizeof(float) * 3 * n_in), *y = malloc(sizeof(float) * 3 * n_out);
    float *bias = malloc(sizeof(float) * n_out);
    float *work = aligned_alloc(64, sizeof(float) * KV_MATMUL_WORK_FLOATS);
    for (int64_t o = 0; o < n_out; o++) bias[o] = (float)o - 2.0f;
    for (int f = 0; f < 6; f++) {
        kv_qtensor qt;
        kv_qmat qm;
        CHECK(kv_qtensor_init(&qt, fmt(names[f]), n_out, n_in, "w", &err) == KV_OK);
        CHECK(kv_qtensor_alloc(&qt, &err) == KV_OK);
        random_qtensor(&qt);
        CHECK(kv_qmat_init(&qm, &qt, "w", &err) == KV_OK);
        for (int64_t k = 0; k < 3 * n_in; k++) x[k] = 0.0f;
        x[0 * n_in + 40] = NAN;                /* row 0: a NaN */
        x[1 * n_in + 200] = INFINITY;          /* row 1: an Inf */
        for (int k = 64; k < 96; k++) x[1 * n_in + k] = 1e-40f; /* and a subnormal block */
        for (int isa = KV_ISA_REF; isa < KV_ISA_COUNT; isa++) {
            kv_qmatmul_fn fn = kv_qmatmul_q8_for((kv_isa)isa);
            if (!fn) continue;
            fn(x, 3, n_in, &qm, bias, 0, n_out, y, n_out, work);
            for (int64_t o = 0; o < n_out; o++) {
                CHECK_MSG(isnan(y[o]), "%s %s: NaN input, y[0, %lld] = %g", names[f],
                          kv_isa_name((kv_isa)isa), (long long)o, y[o]);
                CHECK_MSG(isnan(y[n_out + o]), "%s %s: Inf input, y[1, %lld] = %g", names[f],
                          kv_isa_name((kv_isa)isa), (long long)o, y[n_out + o]);
                CHECK_MSG(y[2 * n_out + o] == bias[o], "%s %s: zero input, y[2, %lld] = %g",
                          names[f], kv_isa_name((kv_isa)isa), (long long)o, y[2 * n_out + o]);
            }
            /* the subnormal block alone contributes nothing */
            x[1 * n_in + 200] = 0.0f;
            fn(x + n_in, 1, n_in, &qm, NULL, 0, n_out, y, n_out, work);
            for (int64_t o = 0; o < n_out; o++) CHECK_MSG(y[o] == 0.0f, "%s: subnormal block", names[f]);
            x[1 * n_in + 200] = INFINITY;
        }
        kv_qmat_free(&qm);
        kv_qtensor_free(&qt);
    }
    /* what the fast path runs per table */
    for (int isa = KV_ISA_REF; isa < KV_ISA_COUNT; isa++) {
        const kv_kernel_ops *ops = kv_kernels_for((kv_isa)isa);
        if (!ops) continue;
        kv_qmatmul_fn q8 = kv_qmatmul_q8_for((kv_isa)isa);
        if (q8) CHECK(kv_kernels_qmatmul_q8(ops) == q8);
    }
    CHECK(kv_qmatmul_q8_for(KV_ISA_REF) == kv_qmatmul_q8_ref);
    if (kv_kernels_for(KV_ISA_AVX512) && !kv_qmatmul_q8_for(KV_ISA_AVX512))
        CHECK(kv_kernels_qmatmul_q8(kv_kernels_for(KV_ISA_AVX512)) == kv_qmatmul_q8_for(KV_ISA_AVX2));
    free(x), free(y), free(bias), free(work);
}

int main(void) {
    setup_isas();
    KV_RUN(test_qmat_init_errors);
    KV_RUN(test_quantizer_output);
    KV_RUN(test_gemv_slabs);
    KV_RUN(test_every_format);
    KV_RUN(test_q8_edges);
    KV_RUN(test_q8_every_format);
    return kv_test_summary();
}
