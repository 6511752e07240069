/* train_gemm.c — the GEMM shapes of training (forward x·W^T, backward dy·W and
 * dy^T·x) on top of the dispatched kv_kernels() matmul, with scalar references.
 *
 * Pipeline stage: train. See train_internal.h for the shapes and the threading rule. */
#include <omp.h>
#include <string.h>

#include "kvant/kernels.h"
#include "train/train_internal.h"

size_t kv_tr_work_floats(int nth) { return (size_t)(nth > 0 ? nth : 1) * KV_MATMUL_WORK_FLOATS; }

size_t kv_tr_tn_scratch_floats(int64_t n, int64_t k) {
    /* dy^T chunk [n, C] + x^T chunk [k, C] + product [n, k] */
    return (size_t)(n + k) * KV_TR_TN_CHUNK + (size_t)n * (size_t)k;
}

void kv_tr_split(int64_t n, int nt, int t, int64_t *r0, int64_t *r1) {
    int64_t chunk = (n + nt - 1) / nt;
    chunk = (chunk + 63) & ~(int64_t)63;
    int64_t a = chunk * t, b = a + chunk;
    *r0 = a < n ? a : n;
    *r1 = b < n ? b : n;
}

/* 32 x 32 tiles; the team shares tiles of output rows. Called inside or outside a
 * parallel region (orphaned omp for). */
#define TR_TILE 32
static void transpose_team(const float *a, int64_t rows, int64_t cols, int64_t lda, float *out,
                           int64_t ldo) {
    int64_t nbc = (cols + TR_TILE - 1) / TR_TILE;
#pragma omp for schedule(static)
    for (int64_t bc = 0; bc < nbc; bc++) {
        int64_t c0 = bc * TR_TILE, c1 = c0 + TR_TILE < cols ? c0 + TR_TILE : cols;
        for (int64_t r0 = 0; r0 < rows; r0 += TR_TILE) {
            int64_t r1 = r0 + TR_TILE < rows ? r0 + TR_TILE : rows;
            for (int64_t c = c0; c < c1; c++)
                for (int64_t r = r0; r < r1; r++) out[c * ldo + r] = a[r * lda + c];
        }
    }
}

void kv_tr_transpose(const float *a, int64_t rows, int64_t cols, int64_t lda, float *out,
                     int64_t ldo) {
#pragma omp parallel
    transpose_team(a, rows, cols, lda, out, ldo);
}

void kv_tr_mm_nt(const float *x, int64_t m, int64_t k, int64_t ldx, const float *w, int64_t n,
                 int64_t ldw, float *y, int64_t ldy, float *work) {
    if (m <= 0 || n <= 0) return;
    const kv_kernel_ops *ops = kv_kernels();
    kv_wmat wm = {KV_DTYPE_F32, w, n, k, ldw};
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t r0, r1;
        kv_tr_split(n, nt, t, &r0, &r1);
        if (r1 > r0)
            ops->matmul(x, m, ldx, &wm, NULL, r0, r1, y, ldy,
                        work + (size_t)t * KV_MATMUL_WORK_FLOATS);
    }
}

void kv_tr_mm_nn(const float *x, int64_t m, int64_t k, int64_t ldx, const float *b, int64_t n,
                 float *y, int64_t ldy, float *scratch, float *work) {
    /* b[k, n] -> scratch = b^T [n, k], then y = x · (b^T)^T */
    kv_tr_transpose(b, k, n, n, scratch, k);
    kv_tr_mm_nt(x, m, k, ldx, scratch, n, k, y, ldy, work);
}

void kv_tr_mm_tn(const float *dy, int64_t m, int64_t n, int64_t lddy, const float *x, int64_t k,
                 int64_t ldx, float *dw, int accumulate, float *scratch, float *work) {
    if (n <= 0 || k <= 0) return;
    if (m <= 0) {
        if (!accumulate) memset(dw, 0, (size_t)n * (size_t)k * sizeof(float));
        return;
    }
    const kv_kernel_ops *ops = kv_kernels();
    float *dyt = scratch;                             /* [n, C] */
    float *xt = dyt + (size_t)n * KV_TR_TN_CHUNK;     /* [k, C] */
    float *prod = xt + (size_t)k * KV_TR_TN_CHUNK;    /* [n, k] */
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t r0, r1; /* columns of dw owned by this thread */
        kv_tr_split(k, nt, t, &r0, &r1);
        float *wk = work + (size_t)t * KV_MATMUL_WORK_FLOATS;
        for (int64_t c0 = 0; c0 < m; c0 += KV_TR_TN_CHUNK) {
            int64_t cn = m - c0 < KV_TR_TN_CHUNK ? m - c0 : KV_TR_TN_CHUNK;
            transpose_team(dy + c0 * lddy, cn, n, lddy, dyt, cn);
            transpose_team(x + c0 * ldx, cn, k, ldx, xt, cn); /* barrier at its end */
            if (r1 > r0) {
                /* prod[n, k] = dyt[n, cn] · xt[k, cn]^T, this thread's columns */
                kv_wmat wm = {KV_DTYPE_F32, xt, k, cn, cn};
                int direct = c0 == 0 && !accumulate;
                ops->matmul(dyt, n, cn, &wm, NULL, r0, r1, direct ? dw : prod, k, wk);
                if (!direct)
                    for (int64_t i = 0; i < n; i++) {
                        float *d = dw + i * k;
                        const float *p = prod + i * k;
                        for (int64_t j = r0; j < r1; j++) d[j] += p[j];
                    }
            }
#pragma omp barrier
        }
    }
}

/* ---- scalar references ------------------------------------------------------------ */

void kv_tr_mm_nt_ref(const float *x, int64_t m, int64_t k, int64_t ldx, const float *w,
                     int64_t n, int64_t ldw, float *y, int64_t ldy) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int64_t p = 0; p < k; p++) acc += x[i * ldx + p] * w[j * ldw + p];
            y[i * ldy + j] = acc;
        }
}

void kv_tr_mm_nn_ref(const float *x, int64_t m, int64_t k, int64_t ldx, const float *b,
                     int64_t n, float *y, int64_t ldy) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int64_t p = 0; p < k; p++) acc += x[i * ldx + p] * b[p * n + j];
            y[i * ldy + j] = acc;
        }
}

void kv_tr_mm_tn_ref(const float *dy, int64_t m, int64_t n, int64_t lddy, const float *x,
                     int64_t k, int64_t ldx, float *dw, int accumulate) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) {
            float acc = 0.0f;
            for (int64_t t = 0; t < m; t++) acc += dy[t * lddy + i] * x[t * ldx + j];
            dw[i * k + j] = accumulate ? dw[i * k + j] + acc : acc;
        }
}
