/* qmatmul_driver.h — the exact quantized GEMM (m > 4) and the entry point, written
 * once for qmatmul_avx2.c and qmatmul_avx512.c. Each includes it at its end, after
 * defining:
 *   QNC, QKC           the dequantized block (rows x inputs) its dense GEMM takes
 *   kb_consts, make_kb(B), kind_of(w) and the kinds K4, KB, K8
 *   AI deq_block(kind, w, kc, r, nr, k0, kcols, dst)   W[r.., k0..] -> fp32 dst[nr][kcols]
 *   gemv(x, m, ldx, w, bias, r0, r1, y, ldy, work)     m <= 4
 *   KV_QDRV_ISA        the suffix (avx2, avx512): kv_gemm_block_<isa> multiplies a
 *                      block, kv_qmatmul_<isa> is defined here
 *
 * Pipeline stage: run. Issue 3. A GEMM on packed weights dequantizes one QNC x QKC
 * block at a time into `work` (exactly: the same fp32 values the ref produces) and
 * hands it to the dense microkernels, so prefill runs at the dense GEMM's rate. */
#define KV_QDRV_CAT_(a, b) a##b
#define KV_QDRV_CAT(a, b) KV_QDRV_CAT_(a, b)

_Static_assert((size_t)QNC * QKC + KV_GEMM_PANEL_FLOATS <= KV_MATMUL_WORK_FLOATS,
               "work holds the dequantized block and its panels");

static void deq_block_any(int kind, const kv_qmat *w, const kb_consts *kc, int64_t r, int64_t nr,
                          int64_t k0, int64_t kcols, float *dst) {
    switch (kind) {
    case K4: deq_block(K4, w, kc, r, nr, k0, kcols, dst); break;
    case KB: deq_block(KB, w, kc, r, nr, k0, kcols, dst); break;
    default: deq_block(K8, w, kc, r, nr, k0, kcols, dst); break;
    }
}

static void gemm(const float *x, int64_t m, int64_t ldx, const kv_qmat *w, const float *bias,
                 int64_t r0, int64_t r1, float *y, int64_t ldy, float *work) {
    const int kind = kind_of(w);
    kb_consts kc = make_kb(w->qf.bits == 4 || w->qf.bits == 8 ? 2 : w->qf.bits);
    const int64_t K = w->n_in;
    float *blk = work, *panel = work + (size_t)QNC * QKC;
    for (int64_t jc = r0; jc < r1; jc += QNC) {
        int64_t nc = r1 - jc < QNC ? r1 - jc : QNC;
        for (int64_t k0 = 0; k0 < K; k0 += QKC) {
            int64_t kcols = K - k0 < QKC ? K - k0 : QKC;
            deq_block_any(kind, w, &kc, jc, nc, k0, kcols, blk);
            KV_QDRV_CAT(kv_gemm_block_, KV_QDRV_ISA)(x + k0, m, ldx, blk, nc, kcols, y + jc, ldy,
                                                     k0 == 0, k0 + kcols == K && bias ? bias + jc : NULL,
                                                     panel);
        }
    }
}

void KV_QDRV_CAT(kv_qmatmul_, KV_QDRV_ISA)(const float *x, int64_t m, int64_t ldx,
                                           const kv_qmat *w, const float *bias, int64_t r0,
                                           int64_t r1, float *y, int64_t ldy, float *work) {
    if (m <= 0 || r1 <= r0) return;
    if (m <= 4) gemv(x, m, ldx, w, bias, r0, r1, y, ldy, work);
    else gemm(x, m, ldx, w, bias, r0, r1, y, ldy, work);
}
