/* qmatmul_q8_ref.c — the scalar specification of the int8-activation ("q8") path for
 * quantized weights (kernels.h, kv_qmatmul_q8_ref).
 *
 * Pipeline stage: run (the fast decode option). Issue 3, point 8. Each activation
 * block of 32 is quantized on the fly (kvq8_quant_block, shared with the SIMD files),
 * then per weight row: integer sums per block, times the block's d in fp32, summed
 * over the group, times the group's scale, summed over groups in order; the offset
 * term sum_g (s_g z_g) X_g is subtracted at the end, then the bias added. Slow (it
 * re-quantizes each activation block for every weight row) and plain on purpose. */
#include "kernels/kernels_internal.h"

void kv_qmatmul_q8_ref(const float *x, int64_t m, int64_t ldx, const kv_qmat *w,
                       const float *bias, int64_t r0, int64_t r1, float *y, int64_t ldy,
                       float *work) {
    (void)work;
    const int B = w->qf.bits, G = w->qf.group;
    const int64_t ng = w->n_groups;
    const int bpg = G / KV_Q8_BLOCK;
    for (int64_t i = 0; i < m; i++) {
        const float *xi = x + i * ldx;
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = w->q + (size_t)r * (size_t)w->row_bytes;
            float acc = 0.0f, zacc = 0.0f;
            for (int64_t g = 0; g < ng; g++) {
                const size_t gi = (size_t)r * (size_t)ng + (size_t)g;
                float part = 0.0f, X = 0.0f;
                for (int b = 0; b < bpg; b++) {
                    const int64_t k0 = g * G + (int64_t)b * KV_Q8_BLOCK;
                    int8_t q8[KV_Q8_BLOCK];
                    int32_t xs;
                    float d = kvq8_quant_block(xi + k0, q8, &xs);
                    int32_t isum = 0;
                    for (int j = 0; j < KV_Q8_BLOCK; j++)
                        isum += (int32_t)kvq8_code(w, kvk_get_bits(row, k0 + j, B)) * q8[j];
                    part += d * (float)isum;
                    X += d * (float)xs; /* = kvq8_group_sums, block by block */
                }
                const float s = kvq8_wscale(w, gi);
                acc += s * part;
                zacc += s * (float)kvq8_zero(w, gi) * X;
            }
            float v = acc - zacc;
            if (bias) v += bias[r];
            y[i * ldy + r] = v;
        }
    }
}
