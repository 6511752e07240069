/* bench_quantize.c — quantization speed (RTN, kv_quantize_tensor) per format, in MB/s
 * of bf16 input, on a random weight shaped like Qwen3-4B's gate/up projection
 * ([9728, 2560] = n_out x n_in; issue 3 point 8 names it "2560x9728").
 *
 * Pipeline stage: quantize. The weight is N(0, 0.02)-like bf16 built in memory (no
 * checkpoint needed); each format is timed best-of-3 with the OpenMP thread count
 * (default 2, --threads N). Also prints the bits per weight of that layer (stored,
 * with g_idx, study accounting), which depend only on the shape.
 *
 * usage: bench_quantize [--threads N] [--reps R] */
#include <math.h>

#include "bench_common.h"
#include "kvant/quantize.h"

static float randn(uint64_t *s) {
    /* Box-Muller on two 53-bit uniforms from xorshift64* */
    double u[2];
    for (int k = 0; k < 2; k++) {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        u[k] = ((double)((*s * 2685821657736338717ull) >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

int main(int argc, char **argv) {
    int threads = 2, reps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    }
    if (threads < 1) threads = 1;
    if (reps < 1) reps = 1;
    omp_set_num_threads(threads);
    const int64_t n_out = 9728, n_in = 2560;
    uint16_t *w = malloc((size_t)(n_out * n_in) * 2);
    if (!w) {
        fprintf(stderr, "bench_quantize: out of memory\n");
        return 1;
    }
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < n_out * n_in; i++) w[i] = kv_f32_to_bf16(0.02f * randn(&s));
    kv_tensor t;
    memset(&t, 0, sizeof t);
    t.name = "bench.weight";
    t.dtype = KV_DTYPE_BF16;
    t.ndim = 2;
    t.shape[0] = n_out;
    t.shape[1] = n_in;
    t.data = w;
    t.nbytes = (size_t)(n_out * n_in) * 2;
    printf("quantize (RTN) of a bf16 [%lld, %lld] weight (Qwen3-4B up/gate), %d threads, best "
           "of %d\n",
           (long long)n_out, (long long)n_in, threads, reps);
    printf("%-10s %-5s %10s %10s %8s %10s %8s\n", "format", "scale", "ms", "MB/s bf16", "bpw",
           "bpw+g_idx", "study");
    static const char *fmts[] = {"int4-g128", "int3-g128", "int2-g64", "int8-g32", "int4-g32",
                                 "mxfp4",     "mxint4"};
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0] + 2; f++) {
        kv_qformat qf;
        kv_err err = {0};
        kv_quant_opts o = {KV_MX_SCALE_SPEC};
        const char *name = f < sizeof fmts / sizeof fmts[0] ? fmts[f]
                                                              : (f % 2 ? "mxfp4" : "mxint4");
        if (f >= sizeof fmts / sizeof fmts[0]) o.mx_scale = KV_MX_SCALE_MSE;
        if (kv_qformat_parse(name, &qf, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double best = 1e30;
        size_t bytes = 0;
        for (int r = 0; r < reps; r++) {
            kv_qtensor qt;
            double t0 = kvb_now();
            if (kv_quantize_tensor(&t, qf, &o, &qt, t.name, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            double dt = kvb_now() - t0;
            if (dt < best) best = dt;
            bytes = kv_qtensor_nbytes(&qt);
            kv_qtensor_free(&qt);
        }
        printf("%-10s %-5s %10.1f %10.1f %8.4f %10.4f %8.4f\n", name,
               o.mx_scale == KV_MX_SCALE_MSE ? "mse" : "spec", best * 1e3,
               (double)t.nbytes / 1e6 / best, kv_qformat_bpw(qf),
               8.0 * (double)bytes / (double)(n_out * n_in), kv_qformat_bpw_study(qf));
    }
    free(w);
    return 0;
}
