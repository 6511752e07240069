/* bench_qmatmul.c — quantized matmul speed per format against bf16 (issue 3, point 8):
 * decode GEMV (m = 1) in GB/s of weight bytes read with cold weights, as a fraction of
 * the DRAM read bandwidth measured by a read pass just before each round (cold_gemv:
 * the median of the per-round ratios, column "read" the median read), and 512-token
 * prefill GEMM in
 * GFLOP/s as a fraction of the FP32 FMA peak, on Qwen3-4B shapes (n_out x n_in:
 * 2560x2560 q/o-like, 9728x2560 gate/up, 2560x9728 down) and Qwen3-32B shapes
 * (25600x5120 gate/up, 5120x25600 down).
 *
 * Pipeline stage: run. Weights are random packed bits (every code occurs; valid
 * scales), built in memory. GEMV weights are cold: the matrix is copied until the
 * copies fill >= 1 GiB and the calls cycle through them, so every byte comes from DRAM
 * (a single matrix of up to ~60 MB would stay in cache). Rows are split across the
 * OpenMP threads (default 2, --threads N) in multiples of 64 as the model splits them.
 * Also printed: the load-time cost of the int layout copy (kv_qmat_init, GB/s), and the
 * alternative of reading GPTQ's qweight in place (a GEMV over column tiles, AVX-512
 * only, int4-g128), which is what the copy is weighed against.
 *
 * The q8 columns: the same cold GEMV (m = 1) through the int8-activation path
 * (kv_kernels_qmatmul_q8: activations quantized per call, VNNI dot products), "-" where
 * the CPU has no q8 kernel; its time includes quantizing the activation row.
 *
 * --hot adds, for matrices of at most 8 MB, the same GEMVs on one copy kept in cache (L2/L3):
 * the kernel's own ceiling, which tells whether a cold figure is limited by memory or by
 * instructions.
 *
 * usage: bench_qmatmul [--threads N] [--quick] [--m M] [--no-gemm] [--hot] [--shape S]
 *                      [--format F] [--q8-only]
 *   --shape S, --format F: only the shapes whose name contains S, only format F
 *   --q8-only: skip the exact-path GEMV (printed as 0) and the GPTQ in-place line
 *   --hot-l2: the hot GEMVs on the first rows only, <= 512 KB, so each thread's share
 *     stays in its L2: the ceiling of the instructions alone
 *   --m M: activation rows of the GEMVs (1..4, default 1; decode of M sequences)
 *   --no-gemm: skip the prefill GEMM columns (printed as 0) */
#include <math.h>
#include <unistd.h>

#include "bench_common.h"
#include "kvant/kernels.h"
#include "kvant/quant.h"

typedef struct {
    int64_t n_out, n_in;
    const char *name;
} shape;

static const shape SHAPES[] = {
    {2560, 2560, "4B q/o 2560x2560"}, {9728, 2560, "4B up 9728x2560"},
    {2560, 9728, "4B down 2560x9728"}, {25600, 5120, "32B up 25600x5120"},
    {5120, 25600, "32B down 5120x25600"},
};
#define N_SHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])
static const char *FORMATS[] = {"bf16", "int4-g128", "int3-g128", "int2-g64", "mxfp4", "mxint4"};
#define N_FORMATS (int)(sizeof FORMATS / sizeof FORMATS[0])

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static void fill_bytes(uint8_t *p, size_t n) {
#pragma omp parallel
    {
        uint64_t s = rng ^ (0xD1B54A32D192ED03ull * (uint64_t)(omp_get_thread_num() + 1));
#pragma omp for schedule(static)
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            p[i] = (uint8_t)(s >> 24);
        }
    }
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
}

/* Random packed tensor with valid scales (INT: fp16 ~0.01; MX: E8M0 2^-8 .. 2^-1). */
static int make_qtensor(kv_qtensor *qt, kv_qformat qf, int64_t n_out, int64_t n_in) {
    kv_err err = {0};
    if (kv_qtensor_init(qt, qf, n_out, n_in, "bench", &err) || kv_qtensor_alloc(qt, &err)) {
        fprintf(stderr, "bench_qmatmul: %s\n", err.msg);
        return 1;
    }
    uint8_t *base = qt->owned;
    fill_bytes(base + qt->part[0].offset, qt->part[0].nbytes);
    if (qf.fmt == KV_QFMT_INT) {
        fill_bytes(base + qt->part[1].offset, qt->part[1].nbytes);
        uint16_t *sc = (uint16_t *)(void *)(base + qt->part[2].offset);
        for (size_t i = 0; i < qt->part[2].nbytes / 2; i++) sc[i] = kv_f32_to_f16(0.01f + 1e-6f * (float)(i % 97));
    } else {
        uint8_t *sc = base + qt->part[1].offset;
        for (size_t i = 0; i < qt->part[1].nbytes; i++) sc[i] = (uint8_t)(119 + i % 7);
    }
    return 0;
}

static void split_rows(int64_t n, int nt, int t, int64_t *r0, int64_t *r1) {
    int64_t chunk = (n + nt - 1) / nt;
    chunk = (chunk + 63) & ~(int64_t)63;
    int64_t a = chunk * t, b = a + chunk;
    *r0 = a < n ? a : n;
    *r1 = b < n ? b : n;
}

/* One weight matrix the bench runs: dense bf16 or quantized. */
typedef struct {
    kv_wmat w;
    kv_qmat q;
    int quant;
} mat;

static void run_mm(const kv_kernel_ops *ops, const mat *w, const float *x, int64_t m, float *y,
                   float *work, kv_qmatmul_fn qmm) {
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t r0, r1;
        int64_t n_out = w->quant ? w->q.n_out : w->w.n_out, n_in = w->quant ? w->q.n_in : w->w.n_in;
        split_rows(n_out, nt, t, &r0, &r1);
        float *wk = work + (size_t)t * KV_MATMUL_WORK_FLOATS;
        if (w->quant) qmm(x, m, n_in, &w->q, NULL, r0, r1, y, n_out, wk);
        else ops->matmul(x, m, n_in, &w->w, NULL, r0, r1, y, n_out, wk);
    }
}

static size_t mat_bytes(const mat *w) {
    return w->quant ? kv_qmat_bytes(&w->q) : (size_t)(w->w.n_out * w->w.n_in) * 2;
}

/* A copy of the bytes a mat reads (its kernel view), pointing into `buf`. */
static mat copy_mat(const mat *w, uint8_t *buf) {
    mat c = *w;
    if (!w->quant) {
        memcpy(buf, w->w.data, mat_bytes(w));
        c.w.data = buf;
        return c;
    }
    size_t qb = (size_t)w->q.n_out * (size_t)w->q.row_bytes, ng = (size_t)(w->q.n_out * w->q.n_groups);
    size_t sb = w->q.qf.fmt == KV_QFMT_INT ? 2 * ng : ng;
    memcpy(buf, w->q.q, qb);
    memset(buf + qb, 0, 64);
    memcpy(buf + qb + 64, w->q.scales, sb);
    c.q.q = buf;
    c.q.scales = buf + qb + 64;
    if (w->q.zeros) {
        memcpy(buf + qb + 64 + sb, w->q.zeros, ng);
        c.q.zeros = buf + qb + 64 + sb;
    }
    c.q.owned = NULL;
    return c;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Cold GEMV time paired with the machine's read bandwidth at that moment: each of
 * `rounds` rounds reads the copies' span once (kvb_read_pass), then runs the kernel over
 * every copy. Returns the best seconds per call; *frac gets the median over rounds of
 * (kernel bytes/s) / (read bytes/s) and *rd the median read bytes/s. Pairing matters on
 * a shared VM, where the read ceiling moves by 2x between seconds. */
static double cold_gemv(const kv_kernel_ops *ops, const mat *copies, int n_copies, size_t bytes,
                        const uint8_t *span, size_t span_bytes, const float *x, int64_t m, float *y,
                        float *work, kv_qmatmul_fn f, int rounds, double *frac, double *rd) {
    double best = 1e30, fr[16], bw[16];
    if (rounds > 16) rounds = 16;
    run_mm(ops, &copies[0], x, m, y, work, f);
    for (int r = 0; r < rounds; r++) {
        bw[r] = kvb_read_pass(span, span_bytes);
        double t0 = kvb_now();
        for (int c = 0; c < n_copies; c++) run_mm(ops, &copies[c], x, m, y, work, f);
        double dt = (kvb_now() - t0) / n_copies;
        if (dt < best) best = dt;
        fr[r] = (double)bytes / dt / bw[r];
    }
    qsort(fr, (size_t)rounds, sizeof(double), cmp_double);
    qsort(bw, (size_t)rounds, sizeof(double), cmp_double);
    *frac = fr[rounds / 2];
    *rd = bw[rounds / 2];
    return best;
}

/* ---- the alternative: GPTQ int4 qweight read in place ------------------------------ */

/* y[c] for columns [c0, c1) (multiples of 64) of qweight I32 [n_in/8, n_out]: each
 * 64-column tile walks every word row (256 contiguous bytes per row, rows n_out*4 bytes
 * apart), sum_j x_j q_j per group in 4 zmm, then s * (acc - z * sum_g x). */
__attribute__((target("avx512f,avx512bw,f16c"))) static void gptq_gemv_int4(
    const kv_qtensor *qt, const float *x, const float *xsum, int64_t c0, int64_t c1, float *y) {
    const int64_t n_out = qt->n_out, n_in = qt->n_in, G = qt->qf.group;
    const uint8_t *qw = qt->data[0], *qz = qt->data[1], *sc = qt->data[2];
    const int64_t zw = qt->part[1].shape[1];
    const __m512i m4 = _mm512_set1_epi32(15);
    for (int64_t c = c0; c < c1; c += 64) {
        __m512 tot[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int64_t g = 0; g < n_in / G; g++) {
            __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int64_t kw = g * G / 8; kw < (g + 1) * G / 8; kw++) {
                const uint8_t *row = qw + ((size_t)kw * (size_t)n_out + (size_t)c) * 4;
                __m512i wv[4];
                for (int v = 0; v < 4; v++) wv[v] = _mm512_loadu_si512(row + 64 * v);
                for (int j = 0; j < 8; j++) {
                    __m512 xb = _mm512_set1_ps(x[kw * 8 + j]);
                    for (int v = 0; v < 4; v++)
                        acc[v] = _mm512_fmadd_ps(xb, _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(wv[v], 4 * j), m4)), acc[v]);
                }
            }
            __m512 xs = _mm512_set1_ps(xsum[g]);
            for (int v = 0; v < 4; v++) {
                __m512 s = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(sc + ((size_t)g * n_out + c + 16 * v) * 2)));
                uint64_t zz;
                memcpy(&zz, qz + ((size_t)g * zw * 4 + (size_t)(c + 16 * v) / 2), 8);
                int32_t zl[16];
                for (int j = 0; j < 16; j++) zl[j] = (int32_t)((zz >> (4 * j)) & 15);
                __m512 z = _mm512_cvtepi32_ps(_mm512_loadu_si512(zl));
                tot[v] = _mm512_fmadd_ps(s, _mm512_fnmadd_ps(z, xs, acc[v]), tot[v]);
            }
        }
        for (int v = 0; v < 4; v++) _mm512_storeu_ps(y + c + 16 * v, tot[v]);
    }
}

/* ---- main -------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    /* Idle OpenMP threads that go to sleep between these short parallel regions take
     * milliseconds to wake on a VM, which would be timed as GEMV time: spin instead.
     * libgomp reads the variable at start-up, hence the re-exec. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "active", 1);
        execv("/proc/self/exe", argv);
    }
    int threads = 2, quick = 0, gm = 1, no_gemm = 0, hot = 0, q8_only = 0, hot_l2 = 0;
    const char *only_shape = NULL, *only_format = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--m") && i + 1 < argc) gm = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-gemm")) no_gemm = 1;
        else if (!strcmp(argv[i], "--hot")) hot = 1;
        else if (!strcmp(argv[i], "--q8-only")) q8_only = 1;
        else if (!strcmp(argv[i], "--hot-l2")) hot = hot_l2 = 1;
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) only_shape = argv[++i];
        else if (!strcmp(argv[i], "--format") && i + 1 < argc) only_format = argv[++i];
    }
    if (gm < 1 || gm > 4) gm = 1;
    if (threads < 1) threads = 1;
    omp_set_num_threads(threads);
    const kv_kernel_ops *ops = kv_kernels();
    const size_t cold = (size_t)1 << 30;
    double bw = kvb_read_bandwidth(cold, 5);
    double peak = kvb_fp32_peak();
    printf("bench_qmatmul: kernels %s, %d threads; DRAM read %.1f GB/s, FP32 peak %.0f GFLOP/s; "
           "GEMV m = %d\n", kv_isa_name(ops->isa), threads, bw / 1e9, peak / 1e9, gm);

    float *work = aligned_alloc(64, sizeof(float) * KV_MATMUL_WORK_FLOATS * (size_t)threads);
    const int64_t T = 512;
    float *x = malloc(sizeof(float) * (size_t)T * 25600);
    float *y = malloc(sizeof(float) * (size_t)T * 25600);
    uint8_t *arena = aligned_alloc(64, cold + ((size_t)300 << 20));
    if (!work || !x || !y || !arena) {
        fprintf(stderr, "bench_qmatmul: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)T * 25600; i++) x[i] = (float)((i * 2654435761u) % 2001) * 1e-3f - 1.0f;

    printf("\n%-20s %-10s %7s %6s | %5s | %8s %6s %6s | %8s %6s %6s | %8s %6s | %s\n", "shape", "format",
           "bpw", "MB", "read", "GEMV GB/s", "%bw", "us", "q8 GB/s", "%bw", "us", "GEMM GF/s", "%peak",
           "layout copy at load");
    for (int si = 0; si < N_SHAPES; si++) {
        const shape *sh = &SHAPES[si];
        if (quick && si > 1) break;
        if (only_shape && !strstr(sh->name, only_shape)) continue;
        for (int fi = 0; fi < N_FORMATS; fi++) {
            if (only_format && strcmp(FORMATS[fi], only_format)) continue;
            mat w = {0};
            kv_qtensor qt = {0};
            double t_copy = 0;
            void *dense = NULL;
            if (fi == 0) {
                dense = aligned_alloc(64, (size_t)(sh->n_out * sh->n_in) * 2);
                fill_bytes(dense, (size_t)(sh->n_out * sh->n_in) * 2);
                /* keep bf16 values finite: clear the top exponent bit */
                for (size_t i = 0; i < (size_t)(sh->n_out * sh->n_in); i++) ((uint16_t *)dense)[i] &= 0xBFFF;
                w.w = (kv_wmat){KV_DTYPE_BF16, dense, sh->n_out, sh->n_in, sh->n_in};
            } else {
                kv_qformat qf;
                kv_err err = {0};
                kv_qformat_parse(FORMATS[fi], &qf, &err);
                if (make_qtensor(&qt, qf, sh->n_out, sh->n_in)) return 1;
                double t0 = kvb_now();
                if (kv_qmat_init(&w.q, &qt, "bench", &err)) {
                    fprintf(stderr, "bench_qmatmul: %s\n", err.msg);
                    return 1;
                }
                t_copy = kvb_now() - t0;
                w.quant = 1;
            }
            size_t bytes = mat_bytes(&w), stride = (bytes + 64 + 4096 + 4095) & ~(size_t)4095;
            int n_copies = (int)((cold + stride - 1) / stride);
            if (n_copies < 2) n_copies = 2;
            if ((size_t)n_copies * stride > cold + ((size_t)300 << 20)) n_copies = (int)((cold + ((size_t)300 << 20)) / stride);
            mat *copies = malloc(sizeof(mat) * (size_t)n_copies);
            for (int c = 0; c < n_copies; c++) copies[c] = copy_mat(&w, arena + (size_t)c * stride);

            /* GEMV: cycle over the copies, each round paired with a read pass */
            const int rounds = quick ? 3 : 7;
            const size_t span_bytes = (size_t)n_copies * stride;
            double frac = 0, rd = 0, qfrac = 0, qrd = 0, best = 1e30;
            if (!q8_only || !w.quant)
                best = cold_gemv(ops, copies, n_copies, bytes, arena, span_bytes, x, gm, y, work,
                                 ops->qmatmul, rounds, &frac, &rd);
            double gbs = (double)bytes / best;

            /* the same GEMV through the q8 path */
            const kv_qmatmul_fn q8 = kv_kernels_qmatmul_q8(ops);
            double qbest = 0;
            if (w.quant && q8 != ops->qmatmul)
                qbest = cold_gemv(ops, copies, n_copies, bytes, arena, span_bytes, x, gm, y, work, q8,
                                  rounds, &qfrac, &qrd);
            char q8col[48] = "       -       -      -";
            if (q8_only && w.quant) rd = qrd;
            if (qbest > 0)
                snprintf(q8col, sizeof q8col, "%8.1f %5.1f%% %6.0f", (double)bytes / qbest / 1e9,
                         100.0 * qfrac, qbest * 1e6);

            /* GEMM, m = 512, one copy (compute-bound); best of 2 */
            double gbest = 1e30;
            for (int p = 0; p < (no_gemm ? 0 : quick ? 1 : 2); p++) {
                double t0 = kvb_now();
                run_mm(ops, &w, x, T, y, work, ops->qmatmul);
                double dt = kvb_now() - t0;
                if (dt < gbest) gbest = dt;
            }
            double gf = no_gemm ? 0 : 2.0 * (double)T * (double)sh->n_out * (double)sh->n_in / gbest;
            double bpw = 8.0 * (double)bytes / ((double)sh->n_out * (double)sh->n_in);
            char cp[64] = "-";
            if (w.quant && w.q.owned)
                snprintf(cp, sizeof cp, "%.1f ms (%.2f GB/s)", t_copy * 1e3, (double)kv_qtensor_nbytes(&qt) / t_copy / 1e9);
            else if (w.quant)
                snprintf(cp, sizeof cp, "none (views)");
            char excol[48] = "       -       -      -";
            if (best < 1e30)
                snprintf(excol, sizeof excol, "%8.1f %5.1f%% %6.0f", gbs / 1e9, 100.0 * frac, best * 1e6);
            printf("%-20s %-10s %7.3f %6.1f | %5.1f | %s | %s | %8.1f %5.1f%% | %s\n", sh->name,
                   FORMATS[fi], bpw, (double)bytes / 1e6, rd / 1e9, excol, q8col, gf / 1e9,
                   100.0 * gf / peak, cp);
            fflush(stdout);

            /* the same GEMVs with the weights in cache: the kernels' instruction ceiling */
            if (hot && (hot_l2 || bytes <= ((size_t)8 << 20))) {
                double hb[2] = {0, 0};
                mat h = copies[0];
                size_t hbytes = bytes;
                if (hot_l2) {
                    int64_t rows = (int64_t)(((size_t)512 << 10) / (bytes / (size_t)sh->n_out)) & ~(int64_t)63;
                    if (rows < 64) rows = 64;
                    if (rows > sh->n_out) rows = sh->n_out;
                    if (h.quant) h.q.n_out = rows;
                    else h.w.n_out = rows;
                    hbytes = mat_bytes(&h);
                }
                for (int v = 0; v < (qbest > 0 ? 2 : 1); v++) {
                    const kv_qmatmul_fn f = v ? q8 : ops->qmatmul;
                    const int reps = hot_l2 ? 200 : 20;
                    for (int i = 0; i < 3; i++) run_mm(ops, &h, x, gm, y, work, f);
                    double hbest = 1e30;
                    for (int p = 0; p < 5; p++) {
                        double t0 = kvb_now();
                        for (int i = 0; i < reps; i++) run_mm(ops, &h, x, gm, y, work, f);
                        double dt = (kvb_now() - t0) / reps;
                        if (dt < hbest) hbest = dt;
                    }
                    hb[v] = (double)hbytes / hbest / 1e9;
                }
                char hq[24] = "-";
                if (hb[1] > 0) snprintf(hq, sizeof hq, "%.1f", hb[1]);
                printf("%-20s %-10s %7s %6s | %5s | %8.1f %6s %6s | %8s %6s %6s | weights in cache (hot)\n", "",
                       hot_l2 ? "  hot L2" : "  hot", "", "", "", hb[0], "", "", hq, "", "");
            }

            /* the alternative for int4-g128: GPTQ qweight read in place */
            if (fi == 1 && gm == 1 && !q8_only && __builtin_cpu_supports("avx512bw")) {
                size_t qbytes = kv_qtensor_nbytes(&qt);
                size_t qstride = (qbytes + 4096 + 4095) & ~(size_t)4095;
                int nq = (int)((cold + qstride - 1) / qstride);
                if ((size_t)nq * qstride > cold + ((size_t)300 << 20)) nq = (int)((cold + ((size_t)300 << 20)) / qstride);
                kv_qtensor *qc = malloc(sizeof(kv_qtensor) * (size_t)nq);
                for (int c = 0; c < nq; c++) {
                    qc[c] = qt;
                    qc[c].owned = NULL;
                    size_t off = (size_t)c * qstride;
                    for (int p = 0; p < qt.n_parts; p++) {
                        memcpy(arena + off, qt.data[p], qt.part[p].nbytes);
                        qc[c].data[p] = arena + off;
                        off += (qt.part[p].nbytes + 63) & ~(size_t)63;
                    }
                }
                float xsum[256];
                for (int64_t g = 0; g < sh->n_in / 128; g++) {
                    float s = 0;
                    for (int j = 0; j < 128; j++) s += x[g * 128 + j];
                    xsum[g] = s;
                }
                double gb = 1e30;
                for (int p = 0; p < rounds; p++) {
                    double t0 = kvb_now();
                    for (int c = 0; c < nq; c++) {
#pragma omp parallel
                        {
                            int64_t r0, r1;
                            split_rows(sh->n_out, omp_get_num_threads(), omp_get_thread_num(), &r0, &r1);
                            gptq_gemv_int4(&qc[c], x, xsum, r0, r1, y);
                        }
                    }
                    double dt = (kvb_now() - t0) / nq;
                    if (dt < gb) gb = dt;
                }
                double g2 = (double)kv_qmat_bytes(&w.q) / gb;
                printf("%-20s %-10s %7s %6s | %5s | %8.1f %5.1f%% %6.0f | %8s %6s %6s | %8s %6s | GPTQ qweight read in place (column tiles; %%bw of the first line)\n",
                       "", "int4 in-pl", "", "", "", g2 / 1e9, 100.0 * g2 / bw, gb * 1e6, "-", "", "", "-", "");
                free(qc);
            }
            free(copies);
            kv_qmat_free(&w.q);
            kv_qtensor_free(&qt);
            free(dense);
        }
    }
    free(arena);
    free(work);
    free(x);
    free(y);
    return 0;
}
