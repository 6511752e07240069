/* test_quant_formats.c — the format layer of issue 3: names, exact sizes and bits per
 * weight, reference quantize/dequantize against independent references, error bounds,
 * MX edge cases, validation of packed data, and bad input.
 *
 * References (tests/fixtures/quant/quant_ref.safetensors, made by
 * tools/make_quant_fixtures.py, see MANIFEST.md there): the OCP MX v1.0 rules written
 * in numpy, transformers' MXFP4 dequantizer, the gguf package's MXFP4, AutoGPTQ's
 * Quantizer + pack loops in torch. All comparisons with them are bit-exact: the
 * formats are defined by exact arithmetic (power-of-two scales, f32 RTN as torch does
 * it), so any difference is a bug, not rounding noise. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvant/quant.h"
#include "kvant/safetensors.h"
#include "test.h"

#define FIX "tests/fixtures/quant/quant_ref.safetensors"

static kv_st_file *fix;

/* The fixture tensor `name`, checked to hold nbytes bytes; NULL (and a failed check)
 * otherwise. */
static const void *fx(const char *name, size_t nbytes) {
    const kv_tensor *t = fix ? kv_st_find(fix, name) : NULL;
    CHECK_MSG(t != NULL, "fixture tensor %s missing", name);
    if (!t) return NULL;
    CHECK_MSG(t->nbytes == nbytes, "fixture %s: %zu bytes, expected %zu", name, t->nbytes, nbytes);
    return t->nbytes == nbytes ? t->data : NULL;
}

static kv_qformat F(const char *s) {
    kv_qformat qf = {KV_QFMT_COUNT, 0, 0};
    kv_err err;
    kv_status st = kv_qformat_parse(s, &qf, &err);
    CHECK_MSG(st == KV_OK, "parse %s: %s", s, err.msg);
    return qf;
}

/* Bit-exact float comparison (NaN payloads aside); prints the first mismatches. */
static int same_bits(const char *label, const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], 4) != 0 && !(isnan(a[i]) && isnan(b[i]))) {
            if (bad < 5) fprintf(stderr, "  %s[%zu]: got %.9g want %.9g\n", label, i, a[i], b[i]);
            bad++;
        }
    }
    if (bad) fprintf(stderr, "  %s: %zu of %zu differ\n", label, bad, n);
    return bad == 0;
}

static int same_bytes(const char *label, const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i] && bad++ == 0) first = i;
    if (bad)
        fprintf(stderr, "  %s: %zu of %zu bytes differ, first at %zu (0x%02x vs 0x%02x)\n",
                label, bad, n, first, x[first], y[first]);
    return bad == 0;
}

/* Deterministic pseudo-random numbers (xorshift64*), uniform and roughly normal. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}
static float nrand(void) {
    double s = 0;
    for (int i = 0; i < 4; i++) s += urand();
    return (float)((s - 2.0) * 1.7320508);
}

/* Quantize w [n_out, n_in] whole; returns status, fills qt (caller frees). */
static kv_status quantize(kv_qtensor *qt, kv_qformat qf, const float *w, int64_t n_out,
                          int64_t n_in, const kv_quant_opts *o, kv_err *err) {
    kv_status st = kv_qtensor_init(qt, qf, n_out, n_in, "w", err);
    if (!st) st = kv_qtensor_alloc(qt, err);
    if (!st) st = kv_quantize_ref(qt, w, 0, n_out, o, "w", err);
    return st;
}

/* ---------------------------------------------------------------- names, sizes */

static void test_parse_names(void) {
    const char *names[] = {"int4-g128", "int3-g128", "int2-g64", "int8-g32", "int4-g32",
                           "int3-g64", "mxfp4", "mxint4"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        kv_qformat qf = F(names[i]);
        char buf[32];
        CHECK_MSG(strcmp(kv_qformat_name(qf, buf, sizeof buf), names[i]) == 0, "%s -> %s",
                  names[i], buf);
    }
    kv_qformat qf = F("int3-g128");
    CHECK(qf.fmt == KV_QFMT_INT && qf.bits == 3 && qf.group == 128);
    qf = F("mxint4");
    CHECK(qf.fmt == KV_QFMT_MXINT4 && qf.bits == 4 && qf.group == 32);

    const char *bad[] = {"int5-g128", "int4-g100", "int4", "int4-g", "int4-g128x", "mxfp8",
                         "", "INT4-G128", "int04-g0128", "int4-g1280", "nvfp4"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kv_err err;
        kv_status st = kv_qformat_parse(bad[i], &qf, &err);
        CHECK_ERR(st, &err, KV_EINVAL, "known formats: int4-g128, int3-g128, int2-g64, mxfp4, mxint4");
    }
    kv_err err;
    CHECK_ERR(kv_qformat_parse("int5-g128", &qf, &err), &err, KV_EINVAL, "bits must be 2, 3, 4 or 8");
    CHECK_ERR(kv_qformat_parse("mxfp8", &qf, &err), &err, KV_EINVAL, "unknown format 'mxfp8'");
    CHECK_ERR(kv_qformat_parse(NULL, &qf, &err), &err, KV_EINVAL, "known formats");
    CHECK_ERR(kv_qformat_check((kv_qformat){KV_QFMT_MXFP4, 4, 64}, &err), &err, KV_EINVAL,
              "block 32");
}

static void test_bits_per_weight(void) {
    /* Stored: B + (16 + B)/G for INT (fp16 scale, B-bit packed zero); 4 + 8/32 for MX.
     * Study (paper Table 1): B + 32/G. Dyadic rationals: exact in double. */
    CHECK(kv_qformat_bpw(F("int4-g128")) == 4.15625);
    CHECK(kv_qformat_bpw(F("int3-g128")) == 3.1484375);
    CHECK(kv_qformat_bpw(F("int2-g64")) == 2.28125);
    CHECK(kv_qformat_bpw(F("int8-g32")) == 8.75);
    CHECK(kv_qformat_bpw(F("mxfp4")) == 4.25);
    CHECK(kv_qformat_bpw(F("mxint4")) == 4.25);
    CHECK(kv_qformat_bpw_study(F("int4-g128")) == 4.25);
    CHECK(kv_qformat_bpw_study(F("int3-g128")) == 3.25);
    CHECK(kv_qformat_bpw_study(F("int2-g64")) == 2.5);
    CHECK(kv_qformat_bpw_study(F("mxfp4")) == 4.25);
    CHECK(kv_qformat_bpw_study(F("mxint4")) == 4.25);
    CHECK(kv_qformat_bpw((kv_qformat){KV_QFMT_INT, 5, 128}) == 0);

    /* The byte sizes agree with bpw on a Qwen3-4B shape (n_out multiple of 32, so no
     * qzeros padding): parts minus g_idx = bpw * n / 8 exactly. */
    const char *names[] = {"int4-g128", "int3-g128", "int2-g64", "int8-g32", "mxfp4", "mxint4"};
    for (int i = 0; i < 6; i++) {
        kv_qformat qf = F(names[i]);
        kv_qtensor qt;
        kv_err err;
        CHECK(kv_qtensor_init(&qt, qf, 9728, 2560, "w", &err) == KV_OK);
        size_t extra = qf.fmt == KV_QFMT_INT ? 4 * 2560 : 0; /* g_idx */
        double bits = (double)(kv_qtensor_nbytes(&qt) - extra) * 8;
        CHECK_MSG(bits == kv_qformat_bpw(qf) * 9728.0 * 2560.0, "%s: %.0f bits", names[i], bits);
    }
}

static void test_part_shapes_and_names(void) {
    kv_qtensor qt;
    kv_err err;
    CHECK(kv_qtensor_init(&qt, F("int3-g128"), 64, 256, "w", &err) == KV_OK);
    CHECK_EQ_INT(qt.n_parts, 4);
    CHECK(qt.part[0].dtype == KV_DTYPE_I32 && qt.part[0].shape[0] == 24 && qt.part[0].shape[1] == 64);
    CHECK(qt.part[1].dtype == KV_DTYPE_I32 && qt.part[1].shape[0] == 2 && qt.part[1].shape[1] == 6);
    CHECK(qt.part[2].dtype == KV_DTYPE_F16 && qt.part[2].shape[0] == 2 && qt.part[2].shape[1] == 64);
    CHECK(qt.part[3].dtype == KV_DTYPE_I32 && qt.part[3].ndim == 1 && qt.part[3].shape[0] == 256);
    char buf[128];
    CHECK(strcmp(kv_qpart_name(&qt, 0, "model.layers.0.mlp.up_proj.weight", buf, sizeof buf),
                 "model.layers.0.mlp.up_proj.qweight") == 0);
    CHECK(strcmp(kv_qpart_name(&qt, 3, "model.layers.0.mlp.up_proj.weight", buf, sizeof buf),
                 "model.layers.0.mlp.up_proj.g_idx") == 0);
    CHECK(kv_qpart_name(&qt, 0, "model.layers.0.mlp.up_proj.weight", buf, 8) == NULL);
    /* odd n_out: qzeros rounds up to whole words */
    CHECK(kv_qtensor_init(&qt, F("int3-g32"), 7, 64, "w", &err) == KV_OK);
    CHECK_EQ_INT(qt.part[1].shape[1], 1);
    CHECK(kv_qtensor_init(&qt, F("int4-g32"), 33, 64, "w", &err) == KV_OK);
    CHECK_EQ_INT(qt.part[1].shape[1], 5);

    CHECK(kv_qtensor_init(&qt, F("mxfp4"), 24, 256, "w", &err) == KV_OK);
    CHECK_EQ_INT(qt.n_parts, 2);
    CHECK(qt.part[0].dtype == KV_DTYPE_U8 && qt.part[0].ndim == 3 && qt.part[0].shape[0] == 24 &&
          qt.part[0].shape[1] == 8 && qt.part[0].shape[2] == 16);
    CHECK(qt.part[1].dtype == KV_DTYPE_U8 && qt.part[1].shape[0] == 24 && qt.part[1].shape[1] == 8);
    CHECK(strcmp(kv_qpart_name(&qt, 0, "m.experts.gate_up_proj", buf, sizeof buf),
                 "m.experts.gate_up_proj_blocks") == 0);
    CHECK(strcmp(kv_qpart_name(&qt, 1, "m.up_proj.weight", buf, sizeof buf),
                 "m.up_proj.weight_scales") == 0);

    const kv_qfmt_traits *tr = kv_qfmt_traits_get(KV_QFMT_MXFP4);
    CHECK(tr && strcmp(tr->name, "mxfp4") == 0 && tr->block == 32 && tr->quantize_ref &&
          tr->dequantize_ref && tr->validate);
    CHECK(kv_qfmt_traits_get(KV_QFMT_COUNT) == NULL);
}

static void test_bad_shapes(void) {
    kv_qtensor qt;
    kv_err err;
    CHECK_ERR(kv_qtensor_init(&qt, F("int4-g128"), 64, 100, "model.layers.3.mlp.down_proj.weight", &err),
              &err, KV_EINVAL, "group size 128 does not divide the input dimension 100");
    CHECK(strstr(err.msg, "model.layers.3.mlp.down_proj.weight") != NULL);
    CHECK_ERR(kv_qtensor_init(&qt, F("int2-g64"), 64, 96, "w", &err), &err, KV_EINVAL,
              "group size 64 does not divide the input dimension 96");
    CHECK_ERR(kv_qtensor_init(&qt, F("mxfp4"), 4, 48, "w", &err), &err, KV_EINVAL,
              "group size 32 does not divide the input dimension 48");
    CHECK_ERR(kv_qtensor_init(&qt, F("mxint4"), 0, 64, "w", &err), &err, KV_EINVAL, "bad weight shape");
    CHECK_ERR(kv_qtensor_init(&qt, F("mxint4"), 4, -32, "w", &err), &err, KV_EINVAL, "bad weight shape");
    CHECK_ERR(kv_qtensor_init(&qt, (kv_qformat){KV_QFMT_INT, 4, 48}, 4, 96, "w", &err), &err,
              KV_EINVAL, "group 32, 64 or 128");

    /* Row ranges: INT needs 32-row alignment (qzeros words), quantize needs an owned buffer. */
    float w[64 * 32];
    for (int i = 0; i < 64 * 32; i++) w[i] = nrand();
    CHECK(kv_qtensor_init(&qt, F("int4-g32"), 64, 32, "w", &err) == KV_OK);
    CHECK_ERR(kv_quantize_ref(&qt, w, 0, 64, NULL, "w", &err), &err, KV_EINVAL, "no data");
    CHECK(kv_qtensor_alloc(&qt, &err) == KV_OK);
    CHECK_ERR(kv_quantize_ref(&qt, w, 16, 64, NULL, "w", &err), &err, KV_EINVAL, "alignment 32");
    CHECK_ERR(kv_quantize_ref(&qt, w, 0, 65, NULL, "w", &err), &err, KV_EINVAL, "bad row range");
    CHECK_ERR(kv_quantize_ref(&qt, w, 0, 64, &(kv_quant_opts){(kv_mx_scale)7}, "w", &err), &err,
              KV_EINVAL, "mx_scale");
    CHECK(kv_quantize_ref(&qt, w, 32, 64, NULL, "w", &err) == KV_OK);
    float out[32];
    CHECK_ERR(kv_dequantize_ref(&qt, 3, 2, out, &err), &err, KV_EINVAL, "bad row range");
    kv_qtensor_free(&qt);
    kv_qtensor_free(&qt); /* twice is harmless */
    kv_qtensor_free(NULL);
}

/* ---------------------------------------------------------------- uniform int */

static const struct {
    const char *fmt, *key;
    int deq_stored;
} int_cfg[] = {
    {"int4-g128", "int4_g128", 1}, {"int3-g128", "int3_g128", 1}, {"int2-g64", "int2_g64", 1},
    {"int8-g32", "int8_g32", 0},   {"int3-g32", "int3_g32", 0},   {"int4-g64", "int4_g64", 0},
};

/* Bit-exact against AutoGPTQ's RTN + pack (torch, tools/make_quant_fixtures.py (d)). */
static void test_int_vs_autogptq(void) {
    const int64_t n_out = 64, n_in = 256;
    const float *w = fx("int_w", (size_t)n_out * n_in * 4);
    if (!w) return;
    for (size_t c = 0; c < sizeof int_cfg / sizeof *int_cfg; c++) {
        kv_qformat qf = F(int_cfg[c].fmt);
        kv_qtensor qt;
        kv_err err;
        kv_status st = quantize(&qt, qf, w, n_out, n_in, NULL, &err);
        CHECK_MSG(st == KV_OK, "%s: %s", int_cfg[c].fmt, err.msg);
        if (st) continue;
        char name[64];
        const char *suf[3] = {"qweight", "qzeros", "scales"};
        for (int p = 0; p < 3; p++) {
            snprintf(name, sizeof name, "%s_%s", int_cfg[c].key, suf[p]);
            const void *ref = fx(name, qt.part[p].nbytes);
            if (ref) CHECK_MSG(same_bytes(name, qt.data[p], ref, qt.part[p].nbytes), "%s", name);
        }
        float *deq = malloc((size_t)n_out * n_in * 4);
        CHECK(kv_dequantize_ref(&qt, 0, n_out, deq, &err) == KV_OK);
        if (int_cfg[c].deq_stored) {
            snprintf(name, sizeof name, "%s_deq", int_cfg[c].key);
            const float *ref = fx(name, (size_t)n_out * n_in * 4);
            if (ref) CHECK_MSG(same_bits(name, deq, ref, (size_t)n_out * n_in), "%s", name);
        }
        CHECK_MSG(kv_qtensor_validate(&qt, "w", &err) == KV_OK, "%s", err.msg);
        free(deq);
        kv_qtensor_free(&qt);
    }
}

/* |w - deq| <= s/2 + (2^B - 1)|s16 - s| per weight, s the f32 scale: RTN error is at
 * most half a step with the f32 scale; storing s as fp16 moves a level q - z by at
 * most (2^B - 1)|s16 - s|. The 1e-6 relative slack covers the f32 rounding of s and of
 * w/s (a value at a rounding boundary can land either side). */
static void int_bound_check(const char *fmt, const float *w, int64_t n_out, int64_t n_in) {
    kv_qformat qf = F(fmt);
    kv_qtensor qt;
    kv_err err;
    kv_status st = quantize(&qt, qf, w, n_out, n_in, NULL, &err);
    CHECK_MSG(st == KV_OK, "%s [%lld, %lld]: %s", fmt, (long long)n_out, (long long)n_in, err.msg);
    if (st) return;
    float *deq = malloc((size_t)n_out * n_in * 4);
    CHECK(kv_dequantize_ref(&qt, 0, n_out, deq, &err) == KV_OK);
    const int G = qf.group;
    const double maxq = (1 << qf.bits) - 1;
    int bad = 0;
    double worst = 0;
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t g = 0; g < n_in / G; g++) {
            float mn = 0, mx = 0;
            for (int j = 0; j < G; j++) {
                float v = w[o * n_in + g * G + j];
                mn = v < mn ? v : mn;
                mx = v > mx ? v : mx;
            }
            double s = mn == 0 && mx == 0 ? 2.0 / maxq : ((double)mx - mn) / maxq;
            uint16_t h;
            memcpy(&h, (const unsigned char *)qt.data[2] + ((size_t)g * n_out + o) * 2, 2);
            double s16 = kv_f16_to_f32(h);
            double bound = s / 2 * (1 + 1e-6) + maxq * fabs(s16 - s);
            for (int j = 0; j < G; j++) {
                int64_t i = o * n_in + g * G + j;
                double e = fabs((double)w[i] - deq[i]);
                if (e / s > worst) worst = e / s;
                if (!(e <= bound) && bad++ < 5)
                    fprintf(stderr, "  %s [%lld, %lld]: w %.9g deq %.9g err %.3g > bound %.3g\n",
                            fmt, (long long)o, (long long)(g * G + j), w[i], deq[i], e, bound);
            }
        }
    }
    CHECK_MSG(bad == 0, "%s: %d weights beyond s/2 (worst err/s %.4f)", fmt, bad, worst);
    CHECK(kv_qtensor_validate(&qt, "w", &err) == KV_OK);

    /* Quantizing in 32-row aligned ranges (as threads would) gives the same bytes. */
    kv_qtensor q2;
    CHECK(kv_qtensor_init(&q2, qf, n_out, n_in, "w", &err) == KV_OK);
    CHECK(kv_qtensor_alloc(&q2, &err) == KV_OK);
    memset(q2.owned, 0xAB, q2.part[q2.n_parts - 1].offset); /* stale bytes must be cleared */
    kv_quant_fill_g_idx((int32_t *)(void *)((unsigned char *)q2.owned + q2.part[3].offset), n_in, G);
    for (int64_t r = n_out - (n_out - 1) % 32 - 1; r >= 0; r -= 32) {
        int64_t r1 = r + 32 < n_out ? r + 32 : n_out;
        CHECK(kv_quantize_ref(&q2, w, r, r1, NULL, "w", &err) == KV_OK);
    }
    for (int p = 0; p < 3; p++)
        CHECK_MSG(same_bytes("row ranges", q2.data[p], qt.data[p], qt.part[p].nbytes), "%s part %d", fmt, p);
    /* Dequantizing an arbitrary row range gives the same rows. */
    if (n_out > 2) {
        float *part = malloc((size_t)(n_out - 2) * n_in * 4);
        CHECK(kv_dequantize_ref(&qt, 1, n_out - 1, part, &err) == KV_OK);
        CHECK(same_bits("row range deq", part, deq + n_in, (size_t)(n_out - 2) * n_in));
        free(part);
    }
    kv_qtensor_free(&q2);
    kv_qtensor_free(&qt);
    free(deq);
}

static void test_int_error_bound_odd_shapes(void) {
    const char *fmts[] = {"int4-g128", "int3-g128", "int2-g64", "int8-g32", "int3-g32", "int2-g32"};
    const int64_t outs[] = {1, 7, 31, 33, 70};
    for (size_t f = 0; f < sizeof fmts / sizeof *fmts; f++) {
        kv_qformat qf = F(fmts[f]);
        for (size_t k = 0; k < sizeof outs / sizeof *outs; k++) {
            int64_t n_out = outs[k], n_in = qf.group * (k % 2 ? 3 : 1);
            float *w = malloc((size_t)n_out * n_in * 4);
            for (int64_t i = 0; i < n_out * n_in; i++) w[i] = nrand() * (float)(0.001 + (i % 7) * 0.01);
            if (n_out > 1) {
                for (int64_t i = 0; i < n_in; i++) w[n_in + i] = fabsf(w[n_in + i]); /* z = 0 */
                for (int j = 0; j < qf.group; j++) w[j] = 0.0f;                  /* all-zero group */
            }
            int_bound_check(fmts[f], w, n_out, n_in);
            free(w);
        }
    }
}

static void test_int_edge_groups(void) {
    /* all-zero group -> exact zeros (GPTQ's xmin=-1, xmax=1 rule, z = q); constant group;
     * a group of tiny subnormal values whose scale underflows. */
    float w[4 * 32];
    for (int i = 0; i < 32; i++) {
        w[i] = 0.0f;
        w[32 + i] = 0.37f;
        w[64 + i] = (i & 1) ? 1e-45f : 0.0f;
        w[96 + i] = -0.0f;
    }
    kv_qtensor qt;
    kv_err err;
    const char *fmts[] = {"int2-g32", "int3-g32", "int4-g32", "int8-g32"};
    for (int f = 0; f < 4; f++) {
        CHECK(quantize(&qt, F(fmts[f]), w, 4, 32, NULL, &err) == KV_OK);
        float deq[4 * 32];
        CHECK(kv_dequantize_ref(&qt, 0, 4, deq, &err) == KV_OK);
        for (int i = 0; i < 32; i++) {
            CHECK(deq[i] == 0.0f);
            CHECK(deq[96 + i] == 0.0f);
            CHECK(fabsf(deq[64 + i] - w[64 + i]) <= 1e-45f);
        }
        /* constant 0.37: xmin = 0, xmax = 0.37, s = 0.37/maxq, z = 0, q = maxq: exact up
         * to the fp16 rounding of s times maxq. */
        float s = 0.37f / (float)((1 << F(fmts[f]).bits) - 1);
        float s16 = kv_f16_to_f32(kv_f32_to_f16(s));
        for (int i = 0; i < 32; i++) CHECK(fabsf(deq[32 + i] - 0.37f) <= fabsf(s16 - s) * 255 + 1e-7f);
        kv_qtensor_free(&qt);
    }
    /* A group spanning more than fp16 can scale: clear error naming tensor and group. */
    float big[32];
    for (int i = 0; i < 32; i++) big[i] = (i & 1) ? 1e6f : -1e6f;
    CHECK(kv_qtensor_init(&qt, F("int4-g32"), 1, 32, "w", &err) == KV_OK);
    CHECK(kv_qtensor_alloc(&qt, &err) == KV_OK);
    CHECK_ERR(kv_quantize_ref(&qt, big, 0, 1, NULL, "model.layers.1.self_attn.o_proj.weight", &err),
              &err, KV_ERANGE, "model.layers.1.self_attn.o_proj.weight: int4-g32: group scale");
    CHECK(strstr(err.msg, "beyond fp16's range") != NULL);
    kv_qtensor_free(&qt);
}

/* The 3-bit straddling layout, checked by hand on one column: q[i] = i % 8. */
static void test_int3_layout_by_hand(void) {
    float w[32];
    /* One group of 32 with min 0 -> z = 0, and max 7 -> s = 1: q = w exactly. */
    for (int i = 0; i < 32; i++) w[i] = (float)(i % 8);
    kv_qtensor qt;
    kv_err err;
    CHECK(quantize(&qt, F("int3-g32"), w, 1, 32, NULL, &err) == KV_OK);
    uint32_t word[3], expect[3] = {0, 0, 0};
    memcpy(word, qt.data[0], 12);
    for (int i = 0; i < 32; i++)
        for (int b = 0; b < 3; b++)
            if (((i % 8) >> b) & 1) expect[(3 * i + b) / 32] |= 1u << ((3 * i + b) % 32);
    CHECK(word[0] == expect[0] && word[1] == expect[1] && word[2] == expect[2]);
    /* and in AutoGPTQ's terms: q10 bits 0-1 at word0 bits 30-31, bit 2 at word1 bit 0 */
    CHECK(((word[0] >> 30) | ((word[1] & 1) << 2)) == 10 % 8);
    CHECK(((word[1] >> 31) | ((word[2] & 3) << 1)) == 21 % 8);
    CHECK((word[2] >> 29) == 31 % 8);
    kv_qtensor_free(&qt);
}

/* ---------------------------------------------------------------- MX */

static kv_qformat mxf(int i) { return F(i == 0 ? "mxfp4" : "mxint4"); }

/* Bit-exact against the spec rules in numpy (a) and transformers' dequantizer (b). */
static void test_mx_vs_spec(void) {
    const char *tags[2] = {"edge", "rand"};
    const int64_t shapes[2][2] = {{23, 32}, {24, 256}};
    for (int f = 0; f < 2; f++) {
        kv_qformat qf = mxf(f);
        const char *fn = f == 0 ? "mxfp4" : "mxint4";
        for (int t = 0; t < 2; t++) {
            int64_t n_out = shapes[t][0], n_in = shapes[t][1];
            char name[64];
            snprintf(name, sizeof name, "mx_%s_w", tags[t]);
            const float *w = fx(name, (size_t)n_out * n_in * 4);
            if (!w) continue;
            kv_qtensor qt;
            kv_err err;
            kv_status st = quantize(&qt, qf, w, n_out, n_in, NULL, &err);
            CHECK_MSG(st == KV_OK, "%s %s: %s", fn, tags[t], err.msg);
            if (st) continue;
            snprintf(name, sizeof name, "%s_%s_blocks", fn, tags[t]);
            const void *rb = fx(name, qt.part[0].nbytes);
            if (rb) CHECK_MSG(same_bytes(name, qt.data[0], rb, qt.part[0].nbytes), "%s", name);
            snprintf(name, sizeof name, "%s_%s_scales", fn, tags[t]);
            const void *rs = fx(name, qt.part[1].nbytes);
            if (rs) CHECK_MSG(same_bytes(name, qt.data[1], rs, qt.part[1].nbytes), "%s", name);
            float *deq = malloc((size_t)n_out * n_in * 4);
            CHECK(kv_dequantize_ref(&qt, 0, n_out, deq, &err) == KV_OK);
            snprintf(name, sizeof name, "%s_%s_deq", fn, tags[t]);
            const float *rd = fx(name, (size_t)n_out * n_in * 4);
            if (rd) CHECK_MSG(same_bits(name, deq, rd, (size_t)n_out * n_in), "%s", name);
            if (f == 0) {
                snprintf(name, sizeof name, "mxfp4_%s_deq_tf", tags[t]);
                const float *rt = fx(name, (size_t)n_out * n_in * 4);
                if (rt) CHECK_MSG(same_bits(name, deq, rt, (size_t)n_out * n_in), "transformers");
            }
            CHECK_MSG(kv_qtensor_validate(&qt, "w", &err) == KV_OK, "%s", err.msg);
            free(deq);
            kv_qtensor_free(&qt);
        }
    }
}

/* The gguf package's MXFP4 quantizer is not the spec; check that it differs from ours
 * only where the fixture script says it should: its scale byte wraps below amax 2^-125
 * and its f32 log2 rounds up just below 2^128; with equal scales, values differ only
 * at exact ties of |w|/X, which ggml sends to the lower magnitude. */
static void test_mx_vs_ggml(void) {
    const char *tags[2] = {"edge", "rand"};
    const int64_t shapes[2][2] = {{23, 32}, {24, 256}};
    static const float mid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    for (int t = 0; t < 2; t++) {
        int64_t n_out = shapes[t][0], n_in = shapes[t][1], nb = n_in / 32;
        char name[64];
        snprintf(name, sizeof name, "mx_%s_w", tags[t]);
        const float *w = fx(name, (size_t)n_out * n_in * 4);
        snprintf(name, sizeof name, "mxfp4_%s_ggml_scales", tags[t]);
        const uint8_t *gs = fx(name, (size_t)n_out * nb);
        snprintf(name, sizeof name, "mxfp4_%s_ggml_deq", tags[t]);
        const float *gd = fx(name, (size_t)n_out * n_in * 4);
        if (!w || !gs || !gd) continue;
        kv_qtensor qt;
        kv_err err;
        if (quantize(&qt, mxf(0), w, n_out, n_in, NULL, &err)) continue;
        float *deq = malloc((size_t)n_out * n_in * 4);
        CHECK(kv_dequantize_ref(&qt, 0, n_out, deq, &err) == KV_OK);
        const uint8_t *sc = qt.data[1];
        int ties = 0, other = 0;
        for (int64_t b = 0; b < n_out * nb; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(w[b * 32 + j]));
            if (sc[b] != gs[b]) {
                int expected = (amax > 0 && amax < 0x1p-125f) || amax > 0x1.fp127f;
                CHECK_MSG(expected, "block %lld: scale %u vs ggml %u, amax %g", (long long)b,
                          sc[b], gs[b], (double)amax);
                continue;
            }
            for (int j = 0; j < 32; j++) {
                int64_t i = b * 32 + j;
                if (deq[i] == gd[i]) continue;
                float a = ldexpf(fabsf(w[i]), -(sc[b] - 127));
                int tie = 0;
                for (int k = 0; k < 7; k++) tie |= a == mid[k];
                if (tie) ties++;
                else if (other++ < 5)
                    fprintf(stderr, "  ggml differs off a tie: w %.9g ours %.9g ggml %.9g\n",
                            w[i], deq[i], gd[i]);
                /* at a tie ggml takes the lower magnitude, we the even code */
                if (tie) CHECK(fabsf(gd[i]) < fabsf(deq[i]));
            }
        }
        CHECK_EQ_INT(other, 0);
        if (t == 0) CHECK_MSG(ties > 0, "the edge set has ties (%d)", ties);
        free(deq);
        kv_qtensor_free(&qt);
    }
}

/* The edge cases, asserted from first principles (independently of the fixtures). */
static void test_mx_edge_cases(void) {
    kv_qtensor qt;
    kv_err err;
    float w[32], deq[32];
    const uint8_t *blk, *sc;
    /* all zero: scale byte 0 (2^-127), all codes 0, decodes to +0 */
    memset(w, 0, sizeof w);
    for (int f = 0; f < 2; f++) {
        CHECK(quantize(&qt, mxf(f), w, 1, 32, NULL, &err) == KV_OK);
        sc = qt.data[1];
        blk = qt.data[0];
        CHECK_EQ_INT(sc[0], 0);
        for (int j = 0; j < 16; j++) CHECK_EQ_INT(blk[j], 0);
        kv_qtensor_free(&qt);
    }
    /* amax exactly 4 (fp4: e = 0, X = 1) and exactly 1 (int4: e = 0) */
    for (int j = 0; j < 32; j++) w[j] = (float)(j % 9) * 0.5f - 2.0f; /* -2 .. 2 */
    w[5] = 4.0f;
    CHECK(quantize(&qt, mxf(0), w, 1, 32, NULL, &err) == KV_OK);
    sc = qt.data[1];
    CHECK_EQ_INT(sc[0], 127);
    CHECK(kv_dequantize_ref(&qt, 0, 1, deq, &err) == KV_OK);
    for (int j = 0; j < 32; j++) CHECK(deq[j] == w[j]); /* every value is on the grid */
    kv_qtensor_free(&qt);
    for (int j = 0; j < 32; j++) w[j] = (float)((j % 15) - 7) * 0.25f; /* k/4, |k| <= 7 */
    w[0] = -1.0f;
    CHECK(quantize(&qt, mxf(1), w, 1, 32, NULL, &err) == KV_OK);
    sc = qt.data[1];
    CHECK_EQ_INT(sc[0], 127);
    CHECK(kv_dequantize_ref(&qt, 0, 1, deq, &err) == KV_OK);
    for (int j = 0; j < 32; j++) CHECK(deq[j] == w[j]);
    blk = qt.data[0];
    CHECK_EQ_INT(blk[0] & 15, 0xC); /* -4 in two's complement */
    kv_qtensor_free(&qt);
    /* amax below the smallest normal: the exponent clamps at -127 (spec: -129), so
     * 2^-127 is code 2 (1.0 X), -2^-128 code 9 (-0.5 X) and 2^-130 (0.125 X) rounds to 0 */
    memset(w, 0, sizeof w);
    w[0] = 0x1p-127f;
    w[1] = -0x1p-128f;
    w[2] = 0x1p-130f;
    CHECK(quantize(&qt, mxf(0), w, 1, 32, NULL, &err) == KV_OK);
    sc = qt.data[1];
    CHECK_EQ_INT(sc[0], 0);
    CHECK(kv_dequantize_ref(&qt, 0, 1, deq, &err) == KV_OK);
    CHECK(deq[0] == 0x1p-127f && deq[1] == -0x1p-128f && deq[2] == 0.0f);
    kv_qtensor_free(&qt);
    /* very large amax: FLT_MAX -> e = 125 (fp4) / 127 (int4), saturating, finite */
    for (int j = 0; j < 32; j++) w[j] = (j & 1) ? FLT_MAX : -FLT_MAX / 3;
    for (int f = 0; f < 2; f++) {
        CHECK(quantize(&qt, mxf(f), w, 1, 32, NULL, &err) == KV_OK);
        sc = qt.data[1];
        CHECK_EQ_INT(sc[0], f == 0 ? 252 : 254);
        CHECK(kv_dequantize_ref(&qt, 0, 1, deq, &err) == KV_OK);
        for (int j = 0; j < 32; j++) CHECK(isfinite(deq[j]));
        CHECK(deq[1] == (f == 0 ? 0x1.8p127f : 0x1.cp127f)); /* 6*2^125, 1.75*2^127 */
        CHECK(kv_qtensor_validate(&qt, "w", &err) == KV_OK);
        kv_qtensor_free(&qt);
    }
    /* ties: fp4 rounds half to even, int4 half away from zero */
    const float fin[8] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 4.0f};
    const float fout[8] = {0.0f, 1.0f, 1.0f, 2.0f, 2.0f, 4.0f, 4.0f, 4.0f};
    memset(w, 0, sizeof w);
    for (int j = 0; j < 8; j++) {
        w[j] = fin[j];
        w[8 + j] = -fin[j];
    }
    CHECK(quantize(&qt, mxf(0), w, 1, 32, NULL, &err) == KV_OK);
    CHECK(kv_dequantize_ref(&qt, 0, 1, deq, &err) == KV_OK);
    for (int j = 0; j < 8; j++) CHECK_MSG(deq[j] == fout[j] && deq[8 + j] == -fout[j], "tie %g", fin[j]);
    blk = qt.data[0];
    CHECK_EQ_INT(blk[4] & 15, 8); /* -0.25 -> -0 (sign kept) */
    kv_qtensor_free(&qt);
    memset(w, 0, sizeof w);
    for (int k = 0; k < 7; k++) {
        w[k] = (2 * k + 1) / 8.0f;
        w[8 + k] = -(2 * k + 1) / 8.0f;
    }
    w[7] = 1.0f;
    CHECK(quantize(&qt, mxf(1), w, 1, 32, NULL, &err) == KV_OK);
    CHECK(kv_dequantize_ref(&qt, 0, 1, deq, &err) == KV_OK);
    for (int k = 0; k < 7; k++)
        CHECK_MSG(deq[k] == (k + 1) / 4.0f && deq[8 + k] == -(k + 1) / 4.0f, "int4 tie %d", k);
    kv_qtensor_free(&qt);
    /* saturation: fp4 7.9 -> 6 (X = 1), int4 -1.99 -> -1.75 (X = 1) */
    memset(w, 0, sizeof w);
    w[3] = 7.9f;
    CHECK(quantize(&qt, mxf(0), w, 1, 32, NULL, &err) == KV_OK);
    CHECK(kv_dequantize_ref(&qt, 0, 1, deq, &err) == KV_OK);
    CHECK(deq[3] == 6.0f);
    kv_qtensor_free(&qt);
    w[3] = -1.99f;
    CHECK(quantize(&qt, mxf(1), w, 1, 32, NULL, &err) == KV_OK);
    CHECK(kv_dequantize_ref(&qt, 0, 1, deq, &err) == KV_OK);
    CHECK(deq[3] == -1.75f);
    blk = qt.data[0];
    CHECK_EQ_INT(blk[1] >> 4, 9); /* -7 & 15, never 8 */
    kv_qtensor_free(&qt);
    /* single nonzero: exact when it is a grid value times a power of two */
    memset(w, 0, sizeof w);
    w[31] = -0.375f; /* 1.5 * 2^-2 */
    for (int f = 0; f < 2; f++) {
        CHECK(quantize(&qt, mxf(f), w, 1, 32, NULL, &err) == KV_OK);
        CHECK(kv_dequantize_ref(&qt, 0, 1, deq, &err) == KV_OK);
        CHECK(deq[31] == -0.375f);
        for (int j = 0; j < 31; j++) CHECK(deq[j] == 0.0f);
        kv_qtensor_free(&qt);
    }
}

/* MX error bound (spec scale): fp4 elements are within half a grid step of w/X except
 * where saturated (|w/X| > 6); int4 within 1/8 except |w/X| > 1.75. */
static void test_mx_error_bound_odd_shapes(void) {
    const int64_t outs[] = {1, 7, 33};
    const int64_t ins[] = {32, 96, 160};
    for (int f = 0; f < 2; f++) {
        for (int a = 0; a < 3; a++) {
            for (int b = 0; b < 3; b++) {
                int64_t n_out = outs[a], n_in = ins[b];
                float *w = malloc((size_t)n_out * n_in * 4), *deq = malloc((size_t)n_out * n_in * 4);
                for (int64_t i = 0; i < n_out * n_in; i++) w[i] = nrand() * ldexpf(1.0f, (int)(i % 11) - 6);
                kv_qtensor qt;
                kv_err err;
                CHECK(quantize(&qt, mxf(f), w, n_out, n_in, NULL, &err) == KV_OK);
                CHECK(kv_dequantize_ref(&qt, 0, n_out, deq, &err) == KV_OK);
                const uint8_t *sc = qt.data[1];
                int bad = 0;
                for (int64_t i = 0; i < n_out * n_in; i++) {
                    float X = ldexpf(1.0f, sc[i / 32] - 127);
                    float v = fabsf(w[i]) / X;
                    double step = f == 0 ? (v < 2 ? 0.5 : v < 4 ? 1.0 : 2.0) : 0.25;
                    double sat = f == 0 ? 6.0 : 1.75;
                    double e = fabs((double)w[i] - deq[i]) / X;
                    double bound = v > sat ? v - sat : step / 2;
                    if (!(e <= bound) && bad++ < 3)
                        fprintf(stderr, "  w %.9g deq %.9g X %g\n", w[i], deq[i], X);
                }
                CHECK_MSG(bad == 0, "%s [%lld, %lld]: %d beyond bound", f ? "mxint4" : "mxfp4",
                          (long long)n_out, (long long)n_in, bad);
                /* row-range quantize/dequantize equals the whole */
                kv_qtensor q2;
                CHECK(kv_qtensor_init(&q2, mxf(f), n_out, n_in, "w", &err) == KV_OK);
                CHECK(kv_qtensor_alloc(&q2, &err) == KV_OK);
                for (int64_t r = 0; r < n_out; r += 5)
                    CHECK(kv_quantize_ref(&q2, w, r, r + 5 < n_out ? r + 5 : n_out, NULL, "w", &err) == KV_OK);
                for (int p = 0; p < 2; p++)
                    CHECK(same_bytes("mx row ranges", q2.data[p], qt.data[p], qt.part[p].nbytes));
                if (n_out > 2) {
                    CHECK(kv_dequantize_ref(&qt, 2, n_out, w, &err) == KV_OK);
                    CHECK(same_bits("mx row range deq", w, deq + 2 * n_in, (size_t)(n_out - 2) * n_in));
                }
                kv_qtensor_free(&q2);
                kv_qtensor_free(&qt);
                free(w);
                free(deq);
            }
        }
    }
}

/* --mx-scale mse: never worse than the spec scale in any block, and better in some. */
static void test_mx_mse_scale(void) {
    const int64_t n_out = 16, n_in = 512, nb = n_in / 32;
    float *w = malloc((size_t)n_out * n_in * 4);
    float *d0 = malloc((size_t)n_out * n_in * 4), *d1 = malloc((size_t)n_out * n_in * 4);
    for (int64_t i = 0; i < n_out * n_in; i++) {
        float x = nrand();
        if (urand() < 0.02) x *= 8; /* heavy tails: where clipping pays */
        w[i] = x * 0.02f;
    }
    for (int f = 0; f < 2; f++) {
        kv_qtensor qs, qm;
        kv_err err;
        CHECK(quantize(&qs, mxf(f), w, n_out, n_in, NULL, &err) == KV_OK);
        CHECK(quantize(&qm, mxf(f), w, n_out, n_in, &(kv_quant_opts){KV_MX_SCALE_MSE}, &err) == KV_OK);
        CHECK(kv_dequantize_ref(&qs, 0, n_out, d0, &err) == KV_OK);
        CHECK(kv_dequantize_ref(&qm, 0, n_out, d1, &err) == KV_OK);
        int better = 0, worse = 0;
        double t0 = 0, t1 = 0;
        for (int64_t b = 0; b < n_out * nb; b++) {
            double e0 = 0, e1 = 0;
            for (int j = 0; j < 32; j++) {
                int64_t i = b * 32 + j;
                e0 += ((double)d0[i] - w[i]) * ((double)d0[i] - w[i]);
                e1 += ((double)d1[i] - w[i]) * ((double)d1[i] - w[i]);
            }
            better += e1 < e0;
            worse += e1 > e0;
            t0 += e0;
            t1 += e1;
        }
        fprintf(stderr, "  %s mse scale: %d of %lld blocks better, total sq err %.4g -> %.4g\n",
                f ? "mxint4" : "mxfp4", better, (long long)(n_out * nb), t0, t1);
        CHECK_EQ_INT(worse, 0);
        CHECK(better > 0);
        CHECK(kv_qtensor_validate(&qm, "w", &err) == KV_OK);
        kv_qtensor_free(&qs);
        kv_qtensor_free(&qm);
    }
    /* near the top of the range the candidates stay finite */
    for (int i = 0; i < 32; i++) w[i] = (i & 1) ? FLT_MAX : 1e37f;
    kv_qtensor qm;
    kv_err err;
    CHECK(quantize(&qm, mxf(0), w, 1, 32, &(kv_quant_opts){KV_MX_SCALE_MSE}, &err) == KV_OK);
    CHECK(kv_dequantize_ref(&qm, 0, 1, d1, &err) == KV_OK);
    for (int i = 0; i < 32; i++) CHECK(isfinite(d1[i]));
    kv_qtensor_free(&qm);
    free(w);
    free(d0);
    free(d1);
}

/* ---------------------------------------------------------------- bad input */

static void test_nonfinite_weights_rejected(void) {
    const char *fmts[] = {"mxfp4", "mxint4", "int4-g128", "int3-g128", "int2-g64"};
    const char *nm = "model.layers.7.mlp.gate_proj.weight";
    for (int f = 0; f < 5; f++) {
        kv_qformat qf = F(fmts[f]);
        int64_t n_out = 3, n_in = 128;
        float w[3 * 128];
        for (int i = 0; i < 3 * 128; i++) w[i] = nrand();
        for (int k = 0; k < 3; k++) {
            float bad = k == 0 ? NAN : k == 1 ? INFINITY : -INFINITY;
            w[2 * n_in + 77] = bad;
            kv_qtensor qt;
            kv_err err;
            CHECK(kv_qtensor_init(&qt, qf, n_out, n_in, nm, &err) == KV_OK);
            CHECK(kv_qtensor_alloc(&qt, &err) == KV_OK);
            kv_status st = kv_quantize_ref(&qt, w, 0, n_out, NULL, nm, &err);
            CHECK_ERR(st, &err, KV_EINVAL, nm);
            CHECK_MSG(strstr(err.msg, k == 0 ? "NaN" : "Inf") && strstr(err.msg, "[2, 77]") &&
                          strstr(err.msg, fmts[f]),
                      "%s", err.msg);
            kv_qtensor_free(&qt);
        }
    }
}

static void test_validate_int(void) {
    float w[64 * 64];
    for (int i = 0; i < 64 * 64; i++) w[i] = nrand();
    kv_qtensor qt;
    kv_err err;
    const char *nm = "model.layers.0.self_attn.q_proj";
    CHECK(quantize(&qt, F("int4-g32"), w, 33, 64, NULL, &err) == KV_OK);
    CHECK(kv_qtensor_validate(&qt, nm, &err) == KV_OK);
    unsigned char *sc = (unsigned char *)qt.owned + qt.part[2].offset;
    uint16_t h, keep;
    memcpy(&keep, sc + (1 * 33 + 5) * 2, 2);
    h = 0x7e00; /* NaN */
    memcpy(sc + (1 * 33 + 5) * 2, &h, 2);
    CHECK_ERR(kv_qtensor_validate(&qt, nm, &err), &err, KV_EFORMAT,
              "model.layers.0.self_attn.q_proj: int4-g32: scales[1, 5] is NaN");
    h = 0xfc00; /* -Inf */
    memcpy(sc + (1 * 33 + 5) * 2, &h, 2);
    CHECK_ERR(kv_qtensor_validate(&qt, nm, &err), &err, KV_EFORMAT, "scales[1, 5] is Inf");
    memcpy(sc + (1 * 33 + 5) * 2, &keep, 2);
    CHECK(kv_qtensor_validate(&qt, nm, &err) == KV_OK);
    /* 33 outputs * 4 bits = 132 bits: word 4 of each qzeros row uses 4 bits */
    unsigned char *qz = (unsigned char *)qt.owned + qt.part[1].offset;
    qz[1 * 5 * 4 + 4 * 4] |= 0x10;
    CHECK_ERR(kv_qtensor_validate(&qt, nm, &err), &err, KV_EFORMAT, "qzeros[1, 4] has nonzero bits");
    qz[1 * 5 * 4 + 4 * 4] &= 0x0f;
    int32_t *gi = (int32_t *)(void *)((unsigned char *)qt.owned + qt.part[3].offset);
    gi[40] = 0;
    CHECK_ERR(kv_qtensor_validate(&qt, nm, &err), &err, KV_EFORMAT, "g_idx[40] = 0, expected 1");
    kv_qtensor_free(&qt);
}

static void test_validate_mx(void) {
    float w[4 * 64];
    for (int i = 0; i < 4 * 64; i++) w[i] = nrand();
    const char *nm = "model.layers.2.mlp.up_proj.weight";
    for (int f = 0; f < 2; f++) {
        kv_qtensor qt;
        kv_err err;
        CHECK(quantize(&qt, mxf(f), w, 4, 64, NULL, &err) == KV_OK);
        CHECK(kv_qtensor_validate(&qt, nm, &err) == KV_OK);
        unsigned char *sc = (unsigned char *)qt.owned + qt.part[1].offset;
        unsigned char *blk = (unsigned char *)qt.owned + qt.part[0].offset;
        unsigned char keep = sc[3 * 2 + 1];
        sc[3 * 2 + 1] = 0xFF;
        CHECK_ERR(kv_qtensor_validate(&qt, nm, &err), &err, KV_EFORMAT,
                  f == 0 ? "model.layers.2.mlp.up_proj.weight: mxfp4: _scales[3, 1] is 0xFF, the E8M0 NaN"
                         : "mxint4: _scales[3, 1] is 0xFF, the E8M0 NaN");
        /* and dequantize (which does not validate) gives NaN for that block */
        float deq[64];
        CHECK(kv_dequantize_ref(&qt, 3, 4, deq, &err) == KV_OK);
        CHECK(isnan(deq[32]) && isnan(deq[63]) && !isnan(deq[31]));
        sc[3 * 2 + 1] = keep;
        /* a block that decodes to Inf: scale 2^127 with a large element */
        sc[0] = 254;
        blk[0] = f == 0 ? 0x07 : 0x08; /* fp4 6.0; int4 code -8 = -2.0 */
        CHECK_ERR(kv_qtensor_validate(&qt, nm, &err), &err, KV_EFORMAT, "block [0, 0] decodes beyond f32's range");
        blk[0] = 0x01; /* 0.5 / 0.25: finite */
        for (int j = 1; j < 16; j++) blk[j] = 0;
        CHECK(kv_qtensor_validate(&qt, nm, &err) == KV_OK);
        kv_qtensor_free(&qt);
    }
}

/* Views into someone else's (unaligned, read-only) memory dequantize the same. */
static void test_unaligned_views(void) {
    float w[40 * 128];
    for (int i = 0; i < 40 * 128; i++) w[i] = nrand();
    const char *fmts[] = {"int3-g64", "mxfp4"};
    for (int f = 0; f < 2; f++) {
        kv_qtensor qt, view;
        kv_err err;
        CHECK(quantize(&qt, F(fmts[f]), w, 40, 128, NULL, &err) == KV_OK);
        CHECK(kv_qtensor_init(&view, qt.qf, 40, 128, "v", &err) == KV_OK);
        size_t total = kv_qtensor_nbytes(&qt) + 16 * KV_QPART_MAX;
        unsigned char *buf = malloc(total), *p = buf;
        for (int k = 0; k < qt.n_parts; k++) {
            p += 1 + (k & 1); /* odd offsets */
            memcpy(p, qt.data[k], qt.part[k].nbytes);
            view.data[k] = p;
            p += qt.part[k].nbytes;
        }
        float a[40 * 128], b[40 * 128];
        CHECK(kv_dequantize_ref(&qt, 0, 40, a, &err) == KV_OK);
        CHECK(kv_dequantize_ref(&view, 0, 40, b, &err) == KV_OK);
        CHECK(same_bits("unaligned", b, a, 40 * 128));
        CHECK(kv_qtensor_validate(&view, "v", &err) == KV_OK);
        /* a view owns nothing: quantizing into it is refused, freeing it is harmless */
        CHECK_ERR(kv_quantize_ref(&view, w, 0, 40, NULL, "v", &err), &err, KV_EINVAL, "own its buffer");
        kv_qtensor_free(&view);
        free(buf);
        kv_qtensor_free(&qt);
    }
}

int main(void) {
    kv_err err;
    if (kv_st_open(FIX, &fix, &err) != KV_OK) {
        fprintf(stderr, "cannot open fixture: %s (run tools/make_quant_fixtures.py)\n", err.msg);
        fix = NULL;
    }
    KV_RUN(test_parse_names);
    KV_RUN(test_bits_per_weight);
    KV_RUN(test_part_shapes_and_names);
    KV_RUN(test_bad_shapes);
    KV_RUN(test_int_vs_autogptq);
    KV_RUN(test_int_error_bound_odd_shapes);
    KV_RUN(test_int_edge_groups);
    KV_RUN(test_int3_layout_by_hand);
    KV_RUN(test_mx_vs_spec);
    KV_RUN(test_mx_vs_ggml);
    KV_RUN(test_mx_edge_cases);
    KV_RUN(test_mx_error_bound_odd_shapes);
    KV_RUN(test_mx_mse_scale);
    KV_RUN(test_nonfinite_weights_rejected);
    KV_RUN(test_validate_int);
    KV_RUN(test_validate_mx);
    KV_RUN(test_unaligned_views);
    kv_st_close(fix);
    return kv_test_summary();
}
