/* qmatmul_q8_driver.h — the entry point of the q8 path (kernels.h), written once for
 * qmatmul_q8_avx2.c and qmatmul_q8_avx512.c. Each includes it at its end, after
 * defining geom, make_geom(w), row_bytes(g) and tmp_bytes(g) (the bytes of `work` one
 * prepared activation row and the shared temporaries take), prow and
 * prep_row(g, x, dst, tmp, out), dconsts and make_dconsts(), run_rows(g, k, w, xp, M,
 * ra, rb, y, ldy, bias), and KV_Q8DRV_ISA, the suffix (avx2, avx512).
 *
 * Pipeline stage: run. Activation rows are prepared MAXP at a time into `work`; up to
 * 4 rows (decode) go straight to the GEMV tiles, more (`ppl --fast`) run the same tiles
 * on groups of 4 rows over weight row blocks of RBLK, which stay in cache while every
 * prepared row passes over them. Every output sees the same operations whatever m. */
#define KV_Q8DRV_CAT_(a, b) a##b
#define KV_Q8DRV_CAT(a, b) KV_Q8DRV_CAT_(a, b)

#define MAXP 64 /* activation rows prepared at once when m > 4 */
#define RBLK 32 /* weight rows per block when m > 4 */

void KV_Q8DRV_CAT(kv_qmatmul_q8_, KV_Q8DRV_ISA)(const float *x, int64_t m, int64_t ldx,
                                                const kv_qmat *w, const float *bias, int64_t r0,
                                                int64_t r1, float *y, int64_t ldy, float *work) {
    if (m <= 0 || r1 <= r0) return;
    const geom g = make_geom(w);
    const size_t rbytes = row_bytes(&g), tbytes = tmp_bytes(&g);
    const size_t cap = KV_MATMUL_WORK_FLOATS * sizeof(float);
    if (!work || tbytes + rbytes > cap) {
        /* n_in beyond ~400k inputs: the specification itself (same result) */
        kv_qmatmul_q8_ref(x, m, ldx, w, bias, r0, r1, y, ldy, work);
        return;
    }
    int64_t P = (int64_t)((cap - tbytes) / rbytes);
    if (P > MAXP) P = MAXP;
    if (P > m) P = m;
    const dconsts k = make_dconsts();
    uint8_t *tmp = (uint8_t *)work, *rows = tmp + tbytes;
    prow xp[MAXP];
    for (int64_t i0 = 0; i0 < m; i0 += P) {
        const int64_t np = m - i0 < P ? m - i0 : P;
        for (int64_t i = 0; i < np; i++) prep_row(&g, x + (i0 + i) * ldx, rows + (size_t)i * rbytes, tmp, &xp[i]);
        if (np <= 4) {
            run_rows(&g, &k, w, xp, (int)np, r0, r1, y + i0 * ldy, ldy, bias);
            continue;
        }
        for (int64_t ra = r0; ra < r1; ra += RBLK) {
            const int64_t rb = r1 - ra < RBLK ? r1 - ra : RBLK;
            for (int64_t i = 0; i < np; i += 4) {
                const int M = np - i < 4 ? (int)(np - i) : 4;
                run_rows(&g, &k, w, xp + i, M, ra, ra + rb, y + (i0 + i) * ldy, ldy, bias);
            }
        }
    }
}
