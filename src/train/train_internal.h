/* train_internal.h — pieces of src/train shared between its files and the tests:
 * the three GEMM shapes of training on top of the kv_kernels() matmul, with scalar
 * references, and the transpose they use.
 *
 * Shapes (row-major, rows `ld` floats apart):
 *   forward          y[m, n]  = x[m, k] · W[n, k]^T     (kv_tr_mm_nt: the kernel itself)
 *   backward, input  dx[m, k] = dy[m, n] · W[n, k]      (kv_tr_mm_nn: W^T then mm_nt)
 *   backward, weight dW[n, k] (+)= dy[m, n]^T · x[m, k] (kv_tr_mm_tn: both transposed in
 *                                                         token chunks, then mm_nt)
 * The kernel's matmul wants the summed index contiguous in both operands, so the
 * transposes put it there; they cost O(m·(n+k)) against the GEMM's O(m·n·k).
 *
 * Threads: each call opens one OpenMP team and splits the n (or k) outputs into row
 * ranges of whole 64-row panels; every output element is produced by one thread with
 * a fixed summation order, so results do not depend on the thread count. */
#ifndef KVANT_TRAIN_INTERNAL_H
#define KVANT_TRAIN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Token rows per chunk of kv_tr_mm_tn (bounds its scratch). */
#define KV_TR_TN_CHUNK 512

/* Floats of per-call matmul work space for a team of nth threads. */
size_t kv_tr_work_floats(int nth);
/* Floats of scratch kv_tr_mm_tn needs for outputs [n, k]. */
size_t kv_tr_tn_scratch_floats(int64_t n, int64_t k);

/* out[c, r] = a[r, c] for r < rows, c < cols; a rows lda apart, out rows ldo apart. */
void kv_tr_transpose(const float *a, int64_t rows, int64_t cols, int64_t lda, float *out,
                     int64_t ldo);

/* y[m, n] = x[m, k] · w[n, k]^T; w rows ldw apart. work: kv_tr_work_floats(team). */
void kv_tr_mm_nt(const float *x, int64_t m, int64_t k, int64_t ldx, const float *w, int64_t n,
                 int64_t ldw, float *y, int64_t ldy, float *work);
/* y[m, n] = x[m, k] · b[k, n]; scratch: k * n floats (b^T). */
void kv_tr_mm_nn(const float *x, int64_t m, int64_t k, int64_t ldx, const float *b, int64_t n,
                 float *y, int64_t ldy, float *scratch, float *work);
/* dw[n, k] = (accumulate ? dw : 0) + dy[m, n]^T · x[m, k]; dw rows k apart.
 * scratch: kv_tr_tn_scratch_floats(n, k). */
void kv_tr_mm_tn(const float *dy, int64_t m, int64_t n, int64_t lddy, const float *x, int64_t k,
                 int64_t ldx, float *dw, int accumulate, float *scratch, float *work);

/* Scalar references (one thread, plain loops in fp32, k summed in order). */
void kv_tr_mm_nt_ref(const float *x, int64_t m, int64_t k, int64_t ldx, const float *w,
                     int64_t n, int64_t ldw, float *y, int64_t ldy);
void kv_tr_mm_nn_ref(const float *x, int64_t m, int64_t k, int64_t ldx, const float *b,
                     int64_t n, float *y, int64_t ldy);
void kv_tr_mm_tn_ref(const float *dy, int64_t m, int64_t n, int64_t lddy, const float *x,
                     int64_t k, int64_t ldx, float *dw, int accumulate);

/* Row range [r0, r1) of n for thread t of nt, in whole 64-row panels. */
void kv_tr_split(int64_t n, int nt, int t, int64_t *r0, int64_t *r1);

#endif
