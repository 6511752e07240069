/* fmt_int.c — uniform asymmetric integer formats intB-gG in the GPTQ packed layout.
 *
 * Pipeline stage: quantize (RTN reference) and load (dequantize_ref, validate).
 * Issue 3. The rounding rules are AutoGPTQ's Quantizer (find_params, quantize) in f32;
 * the packing is AutoGPTQ's QuantLinear.pack (qweight along n_in, qzeros along n_out,
 * 3-bit values straddling words) with zero points stored unshifted ("gptq_v2").
 * quant.h has the byte diagrams. */
#include <math.h>
#include <stdio.h>

#include "quant/quant_impl.h"

/* Word k of a bit string whose consecutive words are `stride` bytes apart. */
static inline unsigned char *word_at(unsigned char *base, size_t stride, uint64_t k) {
    return base + (size_t)k * stride;
}

/* OR v (B bits) into the bit string at bit position pos. */
static void put_bits(unsigned char *base, size_t stride, uint64_t pos, int B, uint32_t v) {
    uint64_t k = pos >> 5;
    unsigned sh = (unsigned)(pos & 31);
    uint32_t x = kvq_ld32(word_at(base, stride, k)) | (v << sh);
    memcpy(word_at(base, stride, k), &x, 4);
    if (sh + (unsigned)B > 32) {
        uint32_t y = kvq_ld32(word_at(base, stride, k + 1)) | (v >> (32 - sh));
        memcpy(word_at(base, stride, k + 1), &y, 4);
    }
}

/* Read B bits at bit position pos. */
static uint32_t get_bits(const unsigned char *base, size_t stride, uint64_t pos, int B) {
    uint64_t k = pos >> 5;
    unsigned sh = (unsigned)(pos & 31);
    uint64_t x = kvq_ld32(base + (size_t)k * stride) >> sh;
    if (sh + (unsigned)B > 32) x |= (uint64_t)kvq_ld32(base + (size_t)(k + 1) * stride) << (32 - sh);
    return (uint32_t)(x & ((1u << B) - 1u));
}

/* Round to nearest, ties to even (torch.round), in the default FP environment. */
static inline float rne(float x) { return nearbyintf(x); }

kv_status kvq_int_quantize(kv_qtensor *qt, const float *w, int64_t r0, int64_t r1,
                           const kv_quant_opts *opts, const char *name, kv_err *err) {
    (void)opts;
    const int B = qt->qf.bits, G = qt->qf.group;
    const int64_t n_in = qt->n_in, n_out = qt->n_out, ng = n_in / G;
    const float maxq = (float)((1 << B) - 1);
    unsigned char *base = qt->owned;
    unsigned char *qw = base + qt->part[0].offset;              /* I32 [n_in*B/32, n_out] */
    unsigned char *qz = base + qt->part[1].offset;              /* I32 [ng, zw] */
    unsigned char *sc = base + qt->part[2].offset;              /* F16 [ng, n_out] */
    const int64_t qw_rows = qt->part[0].shape[0], zw = qt->part[1].shape[1];
    char fname[32];
    kv_qformat_name(qt->qf, fname, sizeof fname);

    /* Clear what this row range owns: its qweight columns and its qzeros words (the
     * range is 32-row aligned, so those words hold no other row's bits). */
    int64_t zw0 = r0 * B / 32, zw1 = (r1 * B + 31) / 32;
    if (zw1 > zw) zw1 = zw;
    for (int64_t k = 0; k < qw_rows; k++)
        memset(qw + ((size_t)k * n_out + r0) * 4, 0, (size_t)(r1 - r0) * 4);
    for (int64_t g = 0; g < ng; g++)
        memset(qz + ((size_t)g * zw + zw0) * 4, 0, (size_t)(zw1 - zw0) * 4);

    for (int64_t o = r0; o < r1; o++) {
        const float *row = w + (size_t)o * n_in;
        for (int64_t g = 0; g < ng; g++) {
            const float *x = row + g * G;
            float mn = 0.0f, mx = 0.0f; /* GPTQ: the range always includes 0 */
            for (int j = 0; j < G; j++) {
                if (!isfinite(x[j]))
                    return kv_err_set(err, KV_EINVAL,
                                      "%s: %s: non-finite weight %s at [%lld, %lld]",
                                      kvq_nm(name), fname, isnan(x[j]) ? "NaN" : "Inf",
                                      (long long)o, (long long)(g * G + j));
                if (x[j] < mn) mn = x[j];
                if (x[j] > mx) mx = x[j];
            }
            if (mn == 0.0f && mx == 0.0f) {
                mn = -1.0f;
                mx = 1.0f;
            }
            float s = (mx - mn) / maxq;
            if (!(s > 0.0f)) {
                /* The range is a few subnormal ulps and s underflowed to 0 (torch would
                 * produce NaN here): treat the group as all-zero; error <= the range. */
                mn = -1.0f;
                mx = 1.0f;
                s = (mx - mn) / maxq;
            }
            uint16_t s16 = kv_f32_to_f16(s);
            if (!isfinite(s) || (s16 & 0x7c00u) == 0x7c00u)
                return kv_err_set(err, KV_ERANGE,
                                  "%s: %s: group scale %g at [row %lld, group %lld] is beyond "
                                  "fp16's range (weights span [%g, %g])",
                                  kvq_nm(name), fname, (double)s, (long long)o, (long long)g,
                                  (double)mn, (double)mx);
            float z = rne(-mn / s);
            if (z < 0.0f) z = 0.0f;
            if (z > maxq) z = maxq;
            for (int j = 0; j < G; j++) {
                float q = rne(x[j] / s) + z;
                if (q < 0.0f) q = 0.0f;
                if (q > maxq) q = maxq;
                put_bits(qw + (size_t)o * 4, (size_t)n_out * 4, (uint64_t)(g * G + j) * B, B,
                         (uint32_t)q);
            }
            put_bits(qz + (size_t)g * zw * 4, 4, (uint64_t)o * B, B, (uint32_t)z);
            memcpy(sc + ((size_t)g * n_out + o) * 2, &s16, 2);
        }
    }
    return KV_OK;
}

void kvq_int_dequantize(const kv_qtensor *qt, int64_t r0, int64_t r1, float *out) {
    const int B = qt->qf.bits, G = qt->qf.group;
    const int64_t n_in = qt->n_in, n_out = qt->n_out, ng = n_in / G;
    const unsigned char *qw = qt->data[0], *qz = qt->data[1], *sc = qt->data[2];
    const int64_t zw = qt->part[1].shape[1];
    for (int64_t o = r0; o < r1; o++) {
        float *dst = out + (size_t)(o - r0) * n_in;
        for (int64_t g = 0; g < ng; g++) {
            float s = kv_f16_to_f32(kvq_ld16(sc + ((size_t)g * n_out + o) * 2));
            int32_t z = (int32_t)get_bits(qz + (size_t)g * zw * 4, 4, (uint64_t)o * B, B);
            for (int j = 0; j < G; j++) {
                int64_t i = g * G + j;
                int32_t q = (int32_t)get_bits(qw + (size_t)o * 4, (size_t)n_out * 4,
                                              (uint64_t)i * B, B);
                dst[i] = s * (float)(q - z);
            }
        }
    }
}

kv_status kvq_int_validate(const kv_qtensor *qt, const char *name, kv_err *err) {
    const int B = qt->qf.bits, G = qt->qf.group;
    const int64_t n_in = qt->n_in, n_out = qt->n_out, ng = n_in / G;
    const unsigned char *qz = qt->data[1], *sc = qt->data[2], *gi = qt->data[3];
    const int64_t zw = qt->part[1].shape[1];
    char fname[32];
    kv_qformat_name(qt->qf, fname, sizeof fname);
    for (int64_t g = 0; g < ng; g++) {
        for (int64_t o = 0; o < n_out; o++) {
            uint16_t h = kvq_ld16(sc + ((size_t)g * n_out + o) * 2);
            if ((h & 0x7c00u) == 0x7c00u)
                return kv_err_set(err, KV_EFORMAT,
                                  "%s: %s: scales[%lld, %lld] is %s (fp16 0x%04x)",
                                  kvq_nm(name), fname, (long long)g, (long long)o,
                                  (h & 0x3ffu) ? "NaN" : "Inf", (unsigned)h);
        }
        /* Bits past the last zero point in a row's last word must be 0: a nonzero value
         * there means the row was packed for a different n_out or bit width. */
        uint64_t used = (uint64_t)n_out * B;
        if (used % 32) {
            uint32_t last = kvq_ld32(qz + ((size_t)g * zw + (size_t)(zw - 1)) * 4);
            if (last >> (used % 32))
                return kv_err_set(err, KV_EFORMAT,
                                  "%s: %s: qzeros[%lld, %lld] has nonzero bits beyond the %lld "
                                  "zero points of the row (0x%08x)",
                                  kvq_nm(name), fname, (long long)g, (long long)(zw - 1),
                                  (long long)n_out, (unsigned)last);
        }
    }
    for (int64_t i = 0; i < n_in; i++) {
        int32_t v;
        memcpy(&v, gi + (size_t)i * 4, 4);
        if (v != (int32_t)(i / G))
            return kv_err_set(err, KV_EFORMAT,
                              "%s: %s: g_idx[%lld] = %d, expected %lld (act-order checkpoints "
                              "are not supported)",
                              kvq_nm(name), fname, (long long)i, (int)v, (long long)(i / G));
    }
    return KV_OK;
}
