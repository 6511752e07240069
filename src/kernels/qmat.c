/* qmat.c — the kernels' view of a quantized weight (kv_qmat, see kernels.h): views
 * into an MX checkpoint, or for GPTQ-packed intB-gG the one-time row-major copy.
 *
 * Pipeline stage: load -> run. Issue 3. The copy is the int32 transpose of qweight
 * (GPTQ keeps row o of W in column o of qweight; a row-wise GEMV wants it contiguous),
 * the scales transposed to [n_out][n_groups] and the B-bit zero points widened to one
 * byte each. It is as large as the packed tensor (zeros: + (8 - B) bits per group),
 * never a dequantized copy. Plain C; the transposes run on OpenMP threads. */
#include <stdlib.h>

#include "kernels/kernels_internal.h"

#define TB 32 /* transpose tile: 32 x 32 words */

static uint32_t ld32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* dst[c][r] = src[r][c] for 32-bit words, src [rows][cols] (unaligned). */
static void transpose32(const uint8_t *src, int64_t rows, int64_t cols, uint8_t *dst) {
    const int64_t tr = (rows + TB - 1) / TB, tc = (cols + TB - 1) / TB;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t t = 0; t < tr * tc; t++) {
        int64_t r0 = t / tc * TB, c0 = t % tc * TB;
        int64_t nr = rows - r0 < TB ? rows - r0 : TB, nc = cols - c0 < TB ? cols - c0 : TB;
        uint32_t tile[TB][TB];
        for (int64_t r = 0; r < nr; r++)
            memcpy(tile[r], src + ((size_t)(r0 + r) * (size_t)cols + (size_t)c0) * 4, (size_t)nc * 4);
        for (int64_t c = 0; c < nc; c++) {
            uint32_t col[TB];
            for (int64_t r = 0; r < nr; r++) col[r] = tile[r][c];
            memcpy(dst + ((size_t)(c0 + c) * (size_t)rows + (size_t)r0) * 4, col, (size_t)nr * 4);
        }
    }
}

static void transpose16(const uint8_t *src, int64_t rows, int64_t cols, uint8_t *dst) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < cols; c++)
        for (int64_t r = 0; r < rows; r++)
            memcpy(dst + ((size_t)c * (size_t)rows + (size_t)r) * 2,
                   src + ((size_t)r * (size_t)cols + (size_t)c) * 2, 2);
}

static size_t up64(size_t n) { return (n + 63) & ~(size_t)63; }

kv_status kv_qmat_init(kv_qmat *qm, const kv_qtensor *qt, const char *name, kv_err *err) {
    memset(qm, 0, sizeof *qm);
    if (!qt || qt->n_parts <= 0 || kv_qformat_check(qt->qf, NULL) != KV_OK)
        return kv_err_set(err, KV_EINVAL, "%s: quantized weight not initialised",
                          name ? name : "qmat");
    for (int p = 0; p < qt->n_parts; p++)
        if (!qt->data[p])
            return kv_err_set(err, KV_EINVAL, "%s: part %s has no data", name ? name : "qmat",
                              qt->part[p].suffix);
    const int B = qt->qf.bits;
    qm->qf = qt->qf;
    qm->n_out = qt->n_out;
    qm->n_in = qt->n_in;
    qm->n_groups = qt->n_in / qt->qf.group;
    qm->row_bytes = qt->n_in * B / 8;
    if (qt->qf.fmt != KV_QFMT_INT) {
        qm->q = qt->data[0];
        qm->scales = qt->data[1];
        return KV_OK;
    }
    const int64_t n_out = qt->n_out, ng = qm->n_groups;
    const size_t qb = up64((size_t)n_out * (size_t)qm->row_bytes + 64);
    const size_t sb = up64((size_t)n_out * (size_t)ng * 2), zb = up64((size_t)n_out * (size_t)ng);
    uint8_t *buf = aligned_alloc(64, qb + sb + zb);
    if (!buf)
        return kv_err_set(err, KV_ENOMEM, "%s: out of memory allocating %zu bytes for the "
                          "kernel layout of a %lld x %lld weight", name ? name : "qmat",
                          qb + sb + zb, (long long)n_out, (long long)qt->n_in);
    qm->owned = buf;
    qm->owned_bytes = qb + sb + zb;
    uint8_t *q = buf, *sc = buf + qb, *zr = buf + qb + sb;
    memset(q + (size_t)n_out * (size_t)qm->row_bytes, 0, qb - (size_t)n_out * (size_t)qm->row_bytes);
    /* qweight I32 [n_in*B/32, n_out] -> [n_out][n_in*B/32] words */
    transpose32(qt->data[0], qt->part[0].shape[0], n_out, q);
    /* scales F16 [ng, n_out] -> [n_out][ng] */
    transpose16(qt->data[2], ng, n_out, sc);
    /* qzeros I32 [ng, zw]: row g is the bit string of z[g, 0..n_out) */
    const uint8_t *qz = qt->data[1];
    const int64_t zw = qt->part[1].shape[1];
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < n_out; o++)
        for (int64_t g = 0; g < ng; g++) {
            uint64_t bit = (uint64_t)o * (uint64_t)B;
            const uint8_t *row = qz + (size_t)g * (size_t)zw * 4;
            uint64_t v = ld32(row + (bit >> 5) * 4) >> (bit & 31);
            if ((bit & 31) + (uint64_t)B > 32) v |= (uint64_t)ld32(row + ((bit >> 5) + 1) * 4) << (32 - (bit & 31));
            zr[(size_t)o * (size_t)ng + (size_t)g] = (uint8_t)(v & ((1u << B) - 1u));
        }
    qm->q = q;
    qm->scales = sc;
    qm->zeros = zr;
    return KV_OK;
}

void kv_qmat_free(kv_qmat *qm) {
    if (!qm) return;
    free(qm->owned);
    memset(qm, 0, sizeof *qm);
}

size_t kv_qmat_bytes(const kv_qmat *qm) {
    if (!qm || !qm->q) return 0;
    size_t n = (size_t)qm->n_out * (size_t)qm->row_bytes;
    size_t g = (size_t)qm->n_out * (size_t)qm->n_groups;
    return n + (qm->qf.fmt == KV_QFMT_INT ? 3 * g : g);
}

void kv_qmat_dequantize(const kv_qmat *qm, int64_t r0, int64_t r1, float *out) {
    for (int64_t r = r0; r < r1; r++)
        for (int64_t k = 0; k < qm->n_in; k++) out[(size_t)(r - r0) * (size_t)qm->n_in + (size_t)k] = kvk_deq(qm, r, k);
}
