/* kernels_ref.c — the scalar reference kernels: the specification every SIMD file
 * must match (up to reassociation of fp32 sums).
 *
 * Plain loops in the order transformers computes in fp32: products rounded to fp32,
 * sums accumulated left to right in fp32, no fused multiply-add (the default build's
 * -std=c11 turns contraction off). Weights are widened exactly (bf16/f16 -> f32). */
#include <math.h>

#include "kernels/kernels_internal.h"

static inline float wload(kv_dtype t, const void *row, int64_t k) {
    switch (t) {
    case KV_DTYPE_BF16: return kv_bf16_to_f32(((const uint16_t *)row)[k]);
    case KV_DTYPE_F16: return kv_f16_to_f32(((const uint16_t *)row)[k]);
    default: return ((const float *)row)[k];
    }
}

static void matmul_ref(const float *x, int64_t m, int64_t ldx, const kv_wmat *w,
                       const float *bias, int64_t r0, int64_t r1, float *y, int64_t ldy,
                       float *work) {
    (void)work;
    size_t esz = kv_dtype_size(w->dtype);
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)w->data + (size_t)r * (size_t)w->ld * esz;
        for (int64_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            float acc = 0.0f;
            for (int64_t k = 0; k < w->n_in; k++) acc += xi[k] * wload(w->dtype, row, k);
            if (bias) acc += bias[r];
            y[i * ldy + r] = acc;
        }
    }
}

static void rmsnorm_ref(const float *x, const float *w, int64_t n, float eps, float *out) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    float var = (float)(ss / (double)n);
    float r = 1.0f / sqrtf(var + eps);
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

static void rope_ref(float *x, const float *c, const float *s, int64_t half) {
    for (int64_t i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * c[i] - b * s[i];
        x[i + half] = b * c[i] + a * s[i];
    }
}

static void softmax_ref(float *x, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int64_t i = 0; i < n; i++) x[i] = x[i] / sum;
}

static void silu_mul_ref(const float *g, const float *u, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static float dot_ref(const float *a, const float *b, int64_t n) {
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

static void axpy_ref(float a, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

const kv_kernel_ops kv_kernels_ref = {
    .isa = KV_ISA_REF,
    .matmul = matmul_ref,
    .rmsnorm = rmsnorm_ref,
    .rope = rope_ref,
    .softmax = softmax_ref,
    .silu_mul = silu_mul_ref,
    .dot = dot_ref,
    .axpy = axpy_ref,
    .qmatmul = kv_qmatmul_ref,
};
