/* fmt_mx.c — MX block formats: MXFP4 (OCP Microscaling Formats v1.0) and MXINT4
 * (microsoft/microxcaling's int4 element), both with E8M0 shared scales, in the
 * `_blocks` / `_scales` layout transformers reads for GPT-OSS.
 *
 * Pipeline stage: quantize (reference quantizer) and load (dequantize_ref, validate).
 * Issue 3. Spec: OCP MX v1.0 sec. 5 (E8M0, E2M1) and sec. 6.3 (conversion:
 * X = 2^(floor(log2(max|V_i|)) - emax_elem), P_i = V_i / X quantized to the element
 * format, normal values beyond its range clamped). quant.h states the exact grids,
 * rounding, the all-zero block and the --mx-scale mse rule. */
#include <float.h>
#include <math.h>
#include <stdio.h>

#include "quant/quant_impl.h"

/* Per element format: how a block is encoded and decoded. */
typedef struct {
    const char *name;
    int emax_elem; /* exponent of the element format's largest power of two */
    int e_hi;      /* largest scale exponent whose largest element is finite in f32 */
    uint8_t (*enc)(float a, int neg); /* a = |w| / X >= 0 -> 4-bit code */
    float (*dec)(uint8_t code);       /* code -> element value (before scaling) */
} mx_elem;

/* E2M1, round to nearest, ties to even, saturating. The midpoints between the
 * magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6}; at a tie the even code (mantissa bit 0)
 * wins, which is IEEE roundTiesToEven on this grid. */
static uint8_t enc_e2m1(float a, int neg) {
    static const float mid[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    int c = 0;
    for (int i = 0; i < 7; i++) c += a > mid[i]; /* the midpoints below a (no branches) */
    if (c < 7 && a == mid[c] && (c & 1)) c++;
    return (uint8_t)(c | (neg ? 8 : 0));
}

static float dec_e2m1(uint8_t code) { return kv_e2m1_values[code & 15]; }

/* int4 element k/4, k in [-7, 7]: round half away from zero (microxcaling 'nearest'),
 * symmetric clamp; stored as a two's complement nibble. a*4 is exact (power of 2). */
static uint8_t enc_int4(float a, int neg) {
    const float t = a * 4.0f;
    int k = 7;
    if (t < 7.5f) { /* roundf(t) without the libm call: t - trunc(t) is exact below 2^23 */
        k = (int)t;
        k += t - (float)k >= 0.5f;
    }
    return (uint8_t)((neg ? -k : k) & 15);
}

static float dec_int4(uint8_t code) {
    int k = (code & 8) ? (int)(code & 15) - 16 : (int)(code & 15);
    return (float)k * 0.25f;
}

/* fp4: 6 * 2^125 < FLT_MAX < 6 * 2^126. int4: 1.75 * 2^127 < FLT_MAX. */
static const mx_elem MX_FP4 = {"mxfp4", 2, 125, enc_e2m1, dec_e2m1};
static const mx_elem MX_INT4 = {"mxint4", 0, 127, enc_int4, dec_int4};

/* floor(log2(a)) for finite a > 0, from the bits: the exponent field, or for an f32
 * subnormal (a = m * 2^-149) the top set bit of m. */
static int floor_log2(float a) {
    uint32_t u;
    memcpy(&u, &a, 4);
    const int ex = (int)((u >> 23) & 0xFF);
    return ex ? ex - 127 : -118 - __builtin_clz(u & 0x7FFFFF);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* 2^k for k in [-127, 127] (2^-127 is an f32 subnormal, still exact). Multiplying by
 * it rounds the exact product once, as ldexpf does: the same bits, without a libm call
 * per element (which made MX quantization 5x slower than the int formats'). */
static float pow2i(int k) { return ldexpf(1.0f, k); }

/* Encode one block with scale exponent e into codes[32]; returns the squared error
 * when want_sse (the --mx-scale mse search), else 0. f is a constant at every call
 * site, so enc/dec inline. */
static inline __attribute__((always_inline)) double enc_block(const mx_elem *f, const float *x, int e,
                                                               uint8_t *codes, int want_sse) {
    const float down = pow2i(-e), up = pow2i(e);
    double sse = 0;
    for (int j = 0; j < KV_MX_BLOCK; j++) {
        float a = fabsf(x[j]) * down; /* exact whenever it matters (a >= 2^-126) */
        codes[j] = f->enc(a, signbit(x[j]) != 0);
        if (want_sse) {
            double d = (double)(f->dec(codes[j]) * up) - (double)x[j];
            sse += d * d;
        }
    }
    return sse;
}

static inline __attribute__((always_inline)) kv_status
mx_quantize(const mx_elem *f, kv_qtensor *qt, const float *w, int64_t r0, int64_t r1,
            const kv_quant_opts *opts, const char *name, kv_err *err) {
    const int64_t n_in = qt->n_in, nb = n_in / KV_MX_BLOCK;
    unsigned char *blocks = (unsigned char *)qt->owned + qt->part[0].offset; /* [n_out, nb, 16] */
    unsigned char *scales = (unsigned char *)qt->owned + qt->part[1].offset; /* [n_out, nb] */
    const int mse = opts->mx_scale == KV_MX_SCALE_MSE;
    for (int64_t o = r0; o < r1; o++) {
        for (int64_t b = 0; b < nb; b++) {
            const float *x = w + (size_t)o * n_in + b * KV_MX_BLOCK;
            float amax = 0.0f;
            for (int j = 0; j < KV_MX_BLOCK; j++) {
                if (!isfinite(x[j]))
                    return kv_err_set(err, KV_EINVAL,
                                      "%s: %s: non-finite weight %s at [%lld, %lld]",
                                      kvq_nm(name), f->name, isnan(x[j]) ? "NaN" : "Inf",
                                      (long long)o, (long long)(b * KV_MX_BLOCK + j));
                float a = fabsf(x[j]);
                if (a > amax) amax = a;
            }
            /* Spec: e = floor(log2(amax)) - emax_elem, clamped to E8M0's [-127, 127];
             * all-zero block: -127 (see quant.h). */
            int e = amax > 0.0f ? floor_log2(amax) - f->emax_elem : -127;
            e = clampi(e, -127, f->e_hi);
            uint8_t codes[KV_MX_BLOCK], trial[KV_MX_BLOCK];
            double best = enc_block(f, x, e, codes, mse);
            if (mse && amax > 0.0f) {
                static const int delta[3] = {-1, +1, -2};
                int e0 = e, tried[4] = {e0, 0, 0, 0}, nt = 1;
                for (int t = 0; t < 3; t++) {
                    int ec = clampi(e0 + delta[t], -127, f->e_hi);
                    int dup = 0;
                    for (int k = 0; k < nt; k++) dup |= tried[k] == ec;
                    if (dup) continue;
                    tried[nt++] = ec;
                    double sse = enc_block(f, x, ec, trial, 1);
                    if (sse < best) {
                        best = sse;
                        e = ec;
                        memcpy(codes, trial, sizeof codes);
                    }
                }
            }
            unsigned char *blk = blocks + ((size_t)o * nb + b) * (KV_MX_BLOCK / 2);
            for (int j = 0; j < KV_MX_BLOCK / 2; j++)
                blk[j] = (unsigned char)(codes[2 * j] | (codes[2 * j + 1] << 4));
            scales[(size_t)o * nb + b] = (unsigned char)(e + KV_MX_E8M0_BIAS);
        }
    }
    return KV_OK;
}

kv_status kvq_mxfp4_quantize(kv_qtensor *qt, const float *w, int64_t r0, int64_t r1,
                             const kv_quant_opts *opts, const char *name, kv_err *err) {
    return mx_quantize(&MX_FP4, qt, w, r0, r1, opts, name, err);
}

kv_status kvq_mxint4_quantize(kv_qtensor *qt, const float *w, int64_t r0, int64_t r1,
                              const kv_quant_opts *opts, const char *name, kv_err *err) {
    return mx_quantize(&MX_INT4, qt, w, r0, r1, opts, name, err);
}

static void mx_dequantize(const mx_elem *f, const kv_qtensor *qt, int64_t r0, int64_t r1,
                          float *out) {
    const int64_t n_in = qt->n_in, nb = n_in / KV_MX_BLOCK;
    const unsigned char *blocks = qt->data[0], *scales = qt->data[1];
    for (int64_t o = r0; o < r1; o++) {
        for (int64_t b = 0; b < nb; b++) {
            const unsigned char *blk = blocks + ((size_t)o * nb + b) * (KV_MX_BLOCK / 2);
            unsigned s = scales[(size_t)o * nb + b];
            float *dst = out + (size_t)(o - r0) * n_in + b * KV_MX_BLOCK;
            for (int j = 0; j < KV_MX_BLOCK / 2; j++) {
                float lo = f->dec(blk[j] & 15), hi = f->dec(blk[j] >> 4);
                if (s == KV_MX_E8M0_NAN) {
                    dst[2 * j] = dst[2 * j + 1] = NAN; /* spec: a NaN scale makes all NaN */
                } else {
                    dst[2 * j] = ldexpf(lo, (int)s - KV_MX_E8M0_BIAS);
                    dst[2 * j + 1] = ldexpf(hi, (int)s - KV_MX_E8M0_BIAS);
                }
            }
        }
    }
}

void kvq_mxfp4_dequantize(const kv_qtensor *qt, int64_t r0, int64_t r1, float *out) {
    mx_dequantize(&MX_FP4, qt, r0, r1, out);
}

void kvq_mxint4_dequantize(const kv_qtensor *qt, int64_t r0, int64_t r1, float *out) {
    mx_dequantize(&MX_INT4, qt, r0, r1, out);
}

kv_status kvq_mx_validate(const kv_qtensor *qt, const char *name, kv_err *err) {
    const mx_elem *f = qt->qf.fmt == KV_QFMT_MXFP4 ? &MX_FP4 : &MX_INT4;
    const int64_t nb = qt->n_in / KV_MX_BLOCK;
    const unsigned char *blocks = qt->data[0], *scales = qt->data[1];
    for (int64_t o = 0; o < qt->n_out; o++) {
        for (int64_t b = 0; b < nb; b++) {
            unsigned s = scales[(size_t)o * nb + b];
            if (s == KV_MX_E8M0_NAN)
                return kv_err_set(err, KV_EFORMAT,
                                  "%s: %s: _scales[%lld, %lld] is 0xFF, the E8M0 NaN",
                                  kvq_nm(name), f->name, (long long)o, (long long)b);
            /* Elements are at most 6 (E2M1) or 2 (int4 code 0x8): below 2^120 none overflows. */
            if ((int)s - KV_MX_E8M0_BIAS < 120) continue;
            const unsigned char *blk = blocks + ((size_t)o * nb + b) * (KV_MX_BLOCK / 2);
            float amax = 0.0f;
            for (int j = 0; j < KV_MX_BLOCK; j++) {
                float v = fabsf(f->dec((blk[j / 2] >> (4 * (j & 1))) & 15));
                if (v > amax) amax = v;
            }
            if (ldexp((double)amax, (int)s - KV_MX_E8M0_BIAS) > (double)FLT_MAX)
                return kv_err_set(err, KV_EFORMAT,
                                  "%s: %s: block [%lld, %lld] decodes beyond f32's range "
                                  "(element %g times scale 2^%d)",
                                  kvq_nm(name), f->name, (long long)o, (long long)b,
                                  (double)amax, (int)s - KV_MX_E8M0_BIAS);
        }
    }
    return KV_OK;
}
