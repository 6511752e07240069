/* qmatmul_ref.c — the scalar reference of the quantized matmul (kv_kernel_ops.qmatmul):
 * the specification the AVX2 / AVX-512 files must match up to reassociation of fp32
 * sums.
 *
 * Pipeline stage: run. Issue 3. Each weight is dequantized exactly (kvk_deq: one f32
 * product, bit-equal to kv_dequantize_ref) and the dot product is the dense ref's:
 * products rounded to fp32, summed left to right, bias added last. */
#include "kernels/kernels_internal.h"

void kv_qmatmul_ref(const float *x, int64_t m, int64_t ldx, const kv_qmat *w, const float *bias,
                    int64_t r0, int64_t r1, float *y, int64_t ldy, float *work) {
    const int64_t n = w->n_in;
    const int row_in_work = work && n <= (int64_t)KV_MATMUL_WORK_FLOATS;
    for (int64_t r = r0; r < r1; r++) {
        /* one row dequantized once, reused by every activation row */
        if (row_in_work) kv_qmat_dequantize(w, r, r + 1, work);
        for (int64_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            float acc = 0.0f;
            for (int64_t k = 0; k < n; k++) acc += xi[k] * (row_in_work ? work[k] : kvk_deq(w, r, k));
            if (bias) acc += bias[r];
            y[i * ldy + r] = acc;
        }
    }
}
