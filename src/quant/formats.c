/* formats.c — the quantized-format traits table, format names, exact sizes of the
 * packed tensors, and the checked entry points (see include/kvant/quant.h).
 *
 * Pipeline stage: quantize and load. Issue 3 (formats). Layouts and rounding rules
 * are specified in quant.h; the per-family code is in fmt_int.c (GPTQ-packed uniform
 * integers) and fmt_mx.c (OCP MX v1.0 MXFP4, microxcaling-style MXINT4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant_impl.h"

/* code -> value; bit 3 is the sign (OCP MX v1.0, FP4 E2M1: bias 1, no Inf/NaN). */
const float kv_e2m1_values[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                  -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

static const kv_qfmt_traits traits[KV_QFMT_COUNT] = {
    [KV_QFMT_INT] = {"int", 0, 0, 4, kvq_int_quantize, kvq_int_dequantize, kvq_int_validate},
    [KV_QFMT_MXFP4] = {"mxfp4", 4, KV_MX_BLOCK, 2, kvq_mxfp4_quantize, kvq_mxfp4_dequantize,
                       kvq_mx_validate},
    [KV_QFMT_MXINT4] = {"mxint4", 4, KV_MX_BLOCK, 2, kvq_mxint4_quantize,
                        kvq_mxint4_dequantize, kvq_mx_validate},
};

const kv_qfmt_traits *kv_qfmt_traits_get(kv_qfmt fmt) {
    return (unsigned)fmt < KV_QFMT_COUNT ? &traits[fmt] : NULL;
}

/* ---- names ---- */

#define KNOWN_FORMATS                                                                    \
    "known formats: int4-g128, int3-g128, int2-g64, mxfp4, mxint4 (and any intB-gG with " \
    "B in {2, 3, 4, 8}, G in {32, 64, 128})"

static int int_bits_ok(int b) { return b == 2 || b == 3 || b == 4 || b == 8; }
static int int_group_ok(int g) { return g == 32 || g == 64 || g == 128; }

kv_status kv_qformat_check(kv_qformat qf, kv_err *err) {
    switch (qf.fmt) {
    case KV_QFMT_INT:
        if (!int_bits_ok(qf.bits) || !int_group_ok(qf.group))
            return kv_err_set(err, KV_EINVAL,
                              "quant: format int%d-g%d: bits must be 2, 3, 4 or 8 and group "
                              "32, 64 or 128",
                              qf.bits, qf.group);
        return KV_OK;
    case KV_QFMT_MXFP4:
    case KV_QFMT_MXINT4:
        if (qf.bits != 4 || qf.group != KV_MX_BLOCK)
            return kv_err_set(err, KV_EINVAL,
                              "quant: format %s: bits must be 4 and block 32 (got %d, %d)",
                              traits[qf.fmt].name, qf.bits, qf.group);
        return KV_OK;
    default: break;
    }
    return kv_err_set(err, KV_EINVAL, "quant: unknown format id %d", (int)qf.fmt);
}

/* Parse a decimal number of at most 3 digits at *p; -1 if none. */
static int parse_small(const char **p) {
    int v = 0, n = 0;
    while (**p >= '0' && **p <= '9' && n < 4) {
        v = v * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    return n == 0 || n > 3 ? -1 : v;
}

kv_status kv_qformat_parse(const char *s, kv_qformat *out, kv_err *err) {
    if (!s || !out) return kv_err_set(err, KV_EINVAL, "quant: no format name given; " KNOWN_FORMATS);
    if (strcmp(s, "mxfp4") == 0) {
        *out = (kv_qformat){KV_QFMT_MXFP4, 4, KV_MX_BLOCK};
        return KV_OK;
    }
    if (strcmp(s, "mxint4") == 0) {
        *out = (kv_qformat){KV_QFMT_MXINT4, 4, KV_MX_BLOCK};
        return KV_OK;
    }
    if (strncmp(s, "int", 3) == 0) {
        const char *p = s + 3;
        int b = parse_small(&p);
        if (b >= 0 && strncmp(p, "-g", 2) == 0) {
            p += 2;
            int g = parse_small(&p);
            if (g >= 0 && *p == '\0') {
                if (!int_bits_ok(b) || !int_group_ok(g))
                    return kv_err_set(err, KV_EINVAL,
                                      "quant: format '%s': bits must be 2, 3, 4 or 8 and "
                                      "group 32, 64 or 128; " KNOWN_FORMATS,
                                      s);
                *out = (kv_qformat){KV_QFMT_INT, b, g};
                return KV_OK;
            }
        }
    }
    return kv_err_set(err, KV_EINVAL, "quant: unknown format '%.64s'; " KNOWN_FORMATS, s);
}

const char *kv_qformat_name(kv_qformat qf, char *buf, size_t cap) {
    if (!buf || cap == 0) return buf;
    if (kv_qformat_check(qf, NULL) != KV_OK)
        snprintf(buf, cap, "?");
    else if (qf.fmt == KV_QFMT_INT)
        snprintf(buf, cap, "int%d-g%d", qf.bits, qf.group);
    else
        snprintf(buf, cap, "%s", traits[qf.fmt].name);
    return buf;
}

/* Exact in double: every term is a small dyadic rational. */
double kv_qformat_bpw(kv_qformat qf) {
    if (kv_qformat_check(qf, NULL) != KV_OK) return 0;
    if (qf.fmt == KV_QFMT_INT) return qf.bits + (16.0 + qf.bits) / qf.group;
    return 4.0 + 8.0 / KV_MX_BLOCK;
}

double kv_qformat_bpw_study(kv_qformat qf) {
    if (kv_qformat_check(qf, NULL) != KV_OK) return 0;
    if (qf.fmt == KV_QFMT_INT) return qf.bits + 32.0 / qf.group;
    return 4.0 + 8.0 / KV_MX_BLOCK;
}

/* ---- packed tensors ---- */

/* Dims up to 2^40 and products up to 2^56 bytes: far beyond any model, far from
 * overflowing int64/size_t in the arithmetic below. */
#define DIM_MAX ((int64_t)1 << 40)
#define BYTES_MAX ((int64_t)1 << 56)

static void set_part(kv_qpart *p, const char *suffix, kv_dtype dt, int ndim, int64_t d0,
                     int64_t d1, int64_t d2) {
    memset(p, 0, sizeof *p);
    p->suffix = suffix;
    p->dtype = dt;
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->shape[2] = d2;
}

kv_status kv_qtensor_init(kv_qtensor *qt, kv_qformat qf, int64_t n_out, int64_t n_in,
                          const char *name, kv_err *err) {
    if (!qt) return kv_err_set(err, KV_EINVAL, "quant: kv_qtensor_init: NULL tensor");
    memset(qt, 0, sizeof *qt);
    kv_status st = kv_qformat_check(qf, err);
    if (st) return kv_err_prefix(err, "%s", kvq_nm(name));
    char fname[32];
    kv_qformat_name(qf, fname, sizeof fname);
    if (n_out <= 0 || n_in <= 0 || n_out > DIM_MAX || n_in > DIM_MAX ||
        n_out > BYTES_MAX / n_in)
        return kv_err_set(err, KV_EINVAL, "%s: %s: bad weight shape [%lld, %lld]",
                          kvq_nm(name), fname, (long long)n_out, (long long)n_in);
    if (n_in % qf.group != 0)
        return kv_err_set(err, KV_EINVAL,
                          "%s: %s: group size %d does not divide the input dimension %lld "
                          "(weight shape [%lld, %lld])",
                          kvq_nm(name), fname, qf.group, (long long)n_in, (long long)n_out,
                          (long long)n_in);
    qt->qf = qf;
    qt->n_out = n_out;
    qt->n_in = n_in;
    int64_t ng = n_in / qf.group;
    if (qf.fmt == KV_QFMT_INT) {
        int64_t B = qf.bits;
        qt->n_parts = 4;
        set_part(&qt->part[0], "qweight", KV_DTYPE_I32, 2, n_in * B / 32, n_out, 0);
        set_part(&qt->part[1], "qzeros", KV_DTYPE_I32, 2, ng, (n_out * B + 31) / 32, 0);
        set_part(&qt->part[2], "scales", KV_DTYPE_F16, 2, ng, n_out, 0);
        set_part(&qt->part[3], "g_idx", KV_DTYPE_I32, 1, n_in, 0, 0);
    } else {
        qt->n_parts = 2;
        set_part(&qt->part[0], "_blocks", KV_DTYPE_U8, 3, n_out, ng, KV_MX_BLOCK / 2);
        set_part(&qt->part[1], "_scales", KV_DTYPE_U8, 2, n_out, ng, 0);
    }
    size_t off = 0;
    for (int p = 0; p < qt->n_parts; p++) {
        kv_qpart *pp = &qt->part[p];
        size_t n = kv_dtype_size(pp->dtype);
        for (int d = 0; d < pp->ndim; d++) n *= (size_t)pp->shape[d];
        pp->nbytes = n;
        pp->offset = off;
        off += (n + 63) & ~(size_t)63;
    }
    return KV_OK;
}

size_t kv_qtensor_nbytes(const kv_qtensor *qt) {
    size_t n = 0;
    if (!qt) return 0;
    for (int p = 0; p < qt->n_parts && p < KV_QPART_MAX; p++) n += qt->part[p].nbytes;
    return n;
}

kv_status kv_qtensor_alloc(kv_qtensor *qt, kv_err *err) {
    if (!qt || qt->n_parts <= 0)
        return kv_err_set(err, KV_EINVAL, "quant: kv_qtensor_alloc: tensor not initialised");
    const kv_qpart *last = &qt->part[qt->n_parts - 1];
    size_t total = last->offset + last->nbytes;
    unsigned char *buf = kv_calloc(total ? total : 1, 1, err, "quant: packed tensor");
    if (!buf) return KV_ENOMEM;
    free(qt->owned);
    qt->owned = buf;
    for (int p = 0; p < qt->n_parts; p++) qt->data[p] = buf + qt->part[p].offset;
    if (qt->qf.fmt == KV_QFMT_INT)
        kv_quant_fill_g_idx((int32_t *)(void *)(buf + qt->part[3].offset), qt->n_in,
                            qt->qf.group);
    return KV_OK;
}

void kv_qtensor_free(kv_qtensor *qt) {
    if (!qt) return;
    free(qt->owned);
    qt->owned = NULL;
    for (int p = 0; p < KV_QPART_MAX; p++) qt->data[p] = NULL;
}

const char *kv_qpart_name(const kv_qtensor *qt, int p, const char *weight_name, char *buf,
                          size_t cap) {
    if (!qt || !weight_name || !buf || p < 0 || p >= qt->n_parts) return NULL;
    size_t n = strlen(weight_name);
    int w;
    if (qt->qf.fmt == KV_QFMT_INT) {
        static const char dotw[] = ".weight";
        size_t k = sizeof dotw - 1;
        if (n >= k && strcmp(weight_name + n - k, dotw) == 0) n -= k;
        w = snprintf(buf, cap, "%.*s.%s", (int)n, weight_name, qt->part[p].suffix);
    } else {
        w = snprintf(buf, cap, "%s%s", weight_name, qt->part[p].suffix);
    }
    return w < 0 || (size_t)w >= cap ? NULL : buf;
}

void kv_quant_fill_g_idx(int32_t *out, int64_t n_in, int group) {
    if (!out || group <= 0) return;
    for (int64_t i = 0; i < n_in; i++) out[i] = (int32_t)(i / group);
}

int64_t kv_quant_row_align(kv_qformat qf) {
    return qf.fmt == KV_QFMT_INT ? KV_GPTQ_PACK : 1;
}

/* ---- checked entry points ---- */

static kv_status check_tensor(const kv_qtensor *qt, const char *what, kv_err *err) {
    if (!qt || qt->n_parts <= 0 || kv_qformat_check(qt->qf, NULL) != KV_OK)
        return kv_err_set(err, KV_EINVAL, "quant: %s: tensor not initialised", what);
    for (int p = 0; p < qt->n_parts; p++)
        if (!qt->data[p])
            return kv_err_set(err, KV_EINVAL, "quant: %s: part %s has no data", what,
                              qt->part[p].suffix);
    return KV_OK;
}

kv_status kv_quantize_ref(kv_qtensor *qt, const float *w, int64_t r0, int64_t r1,
                          const kv_quant_opts *opts, const char *name, kv_err *err) {
    kv_status st = check_tensor(qt, "quantize", err);
    if (st) return st;
    if (!qt->owned || qt->data[0] != (const unsigned char *)qt->owned + qt->part[0].offset)
        return kv_err_set(err, KV_EINVAL,
                          "%s: quantize: the packed tensor must own its buffer "
                          "(kv_qtensor_alloc)",
                          kvq_nm(name));
    if (!w) return kv_err_set(err, KV_EINVAL, "%s: quantize: NULL weights", kvq_nm(name));
    int64_t a = kv_quant_row_align(qt->qf);
    if (r0 < 0 || r1 > qt->n_out || r0 > r1 || r0 % a != 0 || (r1 % a != 0 && r1 != qt->n_out))
        return kv_err_set(err, KV_EINVAL,
                          "%s: quantize: bad row range [%lld, %lld) of %lld (alignment %lld)",
                          kvq_nm(name), (long long)r0, (long long)r1, (long long)qt->n_out,
                          (long long)a);
    kv_quant_opts dflt = {KV_MX_SCALE_SPEC};
    if (!opts) opts = &dflt;
    if (opts->mx_scale != KV_MX_SCALE_SPEC && opts->mx_scale != KV_MX_SCALE_MSE)
        return kv_err_set(err, KV_EINVAL, "%s: quantize: unknown mx_scale mode %d",
                          kvq_nm(name), (int)opts->mx_scale);
    if (r0 == r1) return KV_OK;
    return traits[qt->qf.fmt].quantize_ref(qt, w, r0, r1, opts, name, err);
}

kv_status kv_dequantize_ref(const kv_qtensor *qt, int64_t r0, int64_t r1, float *out,
                            kv_err *err) {
    kv_status st = check_tensor(qt, "dequantize", err);
    if (st) return st;
    if (!out || r0 < 0 || r1 > qt->n_out || r0 > r1)
        return kv_err_set(err, KV_EINVAL, "quant: dequantize: bad row range [%lld, %lld) of %lld",
                          (long long)r0, (long long)r1, (long long)qt->n_out);
    if (r0 < r1) traits[qt->qf.fmt].dequantize_ref(qt, r0, r1, out);
    return KV_OK;
}

kv_status kv_qtensor_validate(const kv_qtensor *qt, const char *name, kv_err *err) {
    kv_status st = check_tensor(qt, "validate", err);
    if (st) return st;
    return traits[qt->qf.fmt].validate(qt, name, err);
}
