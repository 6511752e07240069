/* matmul_driver.h — the loops around the dense matmul's microkernels, written once for
 * kernels_avx2.c and kernels_avx512.c. Each of them includes this file after defining,
 * at its own vector width:
 *   MR, NR, KC, NC   microkernel rows (activations) and columns (weight rows), and the
 *                    weight block packed at a time (NC rows x KC inputs, fp32, `work`)
 *   AI ukr(mr, kc, x, ldx, wp, y, ldy, nr, first, bias)     one mr x NR microkernel
 *   AI pack_w(t, w, j0, nj, k0, kc, dst, next, next_nj, next_kc)
 *                    widen and transpose a block into panels (next: the block packed
 *                    after it, which pack_w may prefetch; NULL when none)
 *   AI gemv_tile(t, R, M, x, ldx, w, r, bias, y, ldy)       R weight rows x M x rows
 *   KV_DRV_SINGLE(w) nonzero where m = 1 walks the weight rows one at a time
 *   KV_DRV_ISA       the suffix (avx2, avx512) of the functions defined here
 * and gets kv_gemm_block_<isa> (kernels_internal.h) and the ops entry matmul_<isa>.
 *
 * Pipeline stage: run. Why a header: the loops are the same at every width, the
 * microkernels they call must inline into them, and C has no templates. */
#define KV_DRV_CAT_(a, b) a##b
#define KV_DRV_CAT(a, b) KV_DRV_CAT_(a, b)

_Static_assert(NC * KC <= KV_MATMUL_WORK_FLOATS, "work buffer too small");
_Static_assert(NC % NR == 0, "NC must hold whole panels");
_Static_assert((size_t)NC * KC <= KV_GEMM_PANEL_FLOATS, "panel buffer too small");

/* ---- GEMV: m in 1..4 ------------------------------------------------------------ */

AI void gemv(kv_dtype t, const float *x, int64_t m, int64_t ldx, const kv_wmat *w,
             const float *bias, int64_t r0, int64_t r1, float *y, int64_t ldy) {
    int64_t r = r0;
    switch (m) {
    case 1:
        if (!(KV_DRV_SINGLE(w)))
            for (; r + 4 <= r1; r += 4) gemv_tile(t, 4, 1, x, ldx, w, r, bias, y, ldy);
        for (; r < r1; r++) gemv_tile(t, 1, 1, x, ldx, w, r, bias, y, ldy);
        break;
    case 2:
        for (; r + 2 <= r1; r += 2) gemv_tile(t, 2, 2, x, ldx, w, r, bias, y, ldy);
        for (; r < r1; r++) gemv_tile(t, 1, 2, x, ldx, w, r, bias, y, ldy);
        break;
    case 3:
        for (; r < r1; r++) gemv_tile(t, 1, 3, x, ldx, w, r, bias, y, ldy);
        break;
    default:
        for (; r < r1; r++) gemv_tile(t, 1, 4, x, ldx, w, r, bias, y, ldy);
        break;
    }
}

/* ---- GEMM: m > 4 ---------------------------------------------------------------- */

static void ukr_any(int mr, int64_t kc, const float *x, int64_t ldx, const float *wp, float *y,
                    int64_t ldy, int64_t nr, int first, const float *bias) {
    switch (mr) {
    case 6: ukr(6, kc, x, ldx, wp, y, ldy, nr, first, bias); break;
    case 5: ukr(5, kc, x, ldx, wp, y, ldy, nr, first, bias); break;
    case 4: ukr(4, kc, x, ldx, wp, y, ldy, nr, first, bias); break;
    case 3: ukr(3, kc, x, ldx, wp, y, ldy, nr, first, bias); break;
    case 2: ukr(2, kc, x, ldx, wp, y, ldy, nr, first, bias); break;
    default: ukr(1, kc, x, ldx, wp, y, ldy, nr, first, bias); break;
    }
}

/* y[0..m, j0..j0+nc) (+)= x[0..m, 0..kc) times the packed panels of nc weight rows. */
static void run_panels(const float *x, int64_t m, int64_t ldx, const float *panel, int64_t nc,
                       int64_t kc, float *y, int64_t ldy, int first, const float *bias) {
    for (int64_t p = 0; p * NR < nc; p++) {
        int64_t j = p * NR, nr = nc - j < NR ? nc - j : NR;
        const float *wp = panel + p * kc * NR;
        for (int64_t i0 = 0; i0 < m; i0 += MR) {
            int mr = m - i0 < MR ? (int)(m - i0) : MR;
            ukr_any(mr, kc, x + i0 * ldx, ldx, wp, y + i0 * ldy + j, ldy, nr, first,
                    bias ? bias + j : NULL);
        }
    }
}

AI void gemm(kv_dtype t, const float *x, int64_t m, int64_t ldx, const kv_wmat *w,
             const float *bias, int64_t r0, int64_t r1, float *y, int64_t ldy, float *work) {
    const int64_t K = w->n_in;
    const size_t es = kv_dtype_size(t);
    for (int64_t jc = r0; jc < r1; jc += NC) {
        int64_t nc = r1 - jc < NC ? r1 - jc : NC;
        if (K == 0) { /* an empty sum: y = bias or 0 */
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = jc; j < jc + nc; j++) y[i * ldy + j] = bias ? bias[j] : 0.0f;
            continue;
        }
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            int64_t kc = K - k0 < KC ? K - k0 : KC;
            /* the block packed after this one: next k block, else the next row block */
            const char *next = NULL;
            int64_t next_nj = 0, next_kc = 0;
            if (k0 + KC < K) {
                next = (const char *)w->data + ((size_t)jc * (size_t)w->ld + (size_t)(k0 + KC)) * es;
                next_nj = nc;
                next_kc = K - (k0 + KC) < KC ? K - (k0 + KC) : KC;
            } else if (jc + NC < r1) {
                next = (const char *)w->data + (size_t)(jc + NC) * (size_t)w->ld * es;
                next_nj = r1 - (jc + NC) < NC ? r1 - (jc + NC) : NC;
                next_kc = K < KC ? K : KC;
            }
            pack_w(t, w, jc, nc, k0, kc, work, next, next_nj, next_kc);
            run_panels(x + k0, m, ldx, work, nc, kc, y + jc, ldy, k0 == 0,
                       k0 + kc == K && bias ? bias + jc : NULL);
        }
    }
}

/* One block of gemm() above, for the quantized GEMM (qmatmul_<isa>.c): the block
 * wb[nc][kc] is already fp32, so packing is the transpose alone. */
void KV_DRV_CAT(kv_gemm_block_, KV_DRV_ISA)(const float *x, int64_t m, int64_t ldx,
                                            const float *wb, int64_t nc, int64_t kc, float *y,
                                            int64_t ldy, int first, const float *bias,
                                            float *panel) {
    const kv_wmat w = {KV_DTYPE_F32, wb, nc, kc, kc};
    pack_w(KV_DTYPE_F32, &w, 0, nc, 0, kc, panel, NULL, 0, 0);
    run_panels(x, m, ldx, panel, nc, kc, y, ldy, first, bias);
}

/* One specialised copy per weight type (t is a constant inside each). */
#define KV_DRV_GEMV(name, T)                                                                 \
    static void name(const float *x, int64_t m, int64_t ldx, const kv_wmat *w, const float *b, \
                     int64_t r0, int64_t r1, float *y, int64_t ldy, float *work) {             \
        (void)work;                                                                            \
        gemv(T, x, m, ldx, w, b, r0, r1, y, ldy);                                              \
    }
#define KV_DRV_GEMM(name, T)                                                                 \
    static void name(const float *x, int64_t m, int64_t ldx, const kv_wmat *w, const float *b, \
                     int64_t r0, int64_t r1, float *y, int64_t ldy, float *work) {             \
        gemm(T, x, m, ldx, w, b, r0, r1, y, ldy, work);                                        \
    }
KV_DRV_GEMV(gemv_bf16, KV_DTYPE_BF16)
KV_DRV_GEMV(gemv_f16, KV_DTYPE_F16)
KV_DRV_GEMV(gemv_f32, KV_DTYPE_F32)
KV_DRV_GEMM(gemm_bf16, KV_DTYPE_BF16)
KV_DRV_GEMM(gemm_f16, KV_DTYPE_F16)
KV_DRV_GEMM(gemm_f32, KV_DTYPE_F32)

static void KV_DRV_CAT(matmul_, KV_DRV_ISA)(const float *x, int64_t m, int64_t ldx,
                                            const kv_wmat *w, const float *bias, int64_t r0,
                                            int64_t r1, float *y, int64_t ldy, float *work) {
    if (m <= 0 || r1 <= r0) return;
    static void (*const fns[2][3])(const float *, int64_t, int64_t, const kv_wmat *,
                                   const float *, int64_t, int64_t, float *, int64_t, float *) = {
        {gemv_bf16, gemv_f16, gemv_f32}, {gemm_bf16, gemm_f16, gemm_f32}};
    const int ti = w->dtype == KV_DTYPE_BF16 ? 0 : w->dtype == KV_DTYPE_F16 ? 1 : 2;
    fns[m > 4][ti](x, m, ldx, w, bias, r0, r1, y, ldy, work);
}
