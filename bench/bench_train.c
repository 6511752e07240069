/* bench_train.c — training speed of the fp32 forward + backward + AdamW on random
 * models shaped like the testbed, against this machine's FP32 peak measured in the run.
 *
 * For each shape: tokens/s of whole steps (forward, backward, AdamW) on random ids, and
 *   model GFLOP/s   = (6 · N_matmul + 12 · L · Q · T) · tokens / s, N_matmul = parameters
 *                     in matmuls (every linear + the lm_head; the embedding lookup is free),
 *                     12·L·Q·T the attention products (PaLM's count, full T per query);
 *   GEMM GFLOP/s    of the training GEMMs alone (per layer x·W^T, dY·W, dY^T·X for
 *                     q,k,v,o,gate,up,down, and the lm_head's three), timed by themselves;
 * each with its fraction of the FP32 FMA peak. Then the tokens two hours give.
 *
 * usage: bench_train [--steps N] [--seq T] [--batch B] [--only NAME] */
#include <math.h>

#include "bench_common.h"
#include "kvant/kernels.h"
#include "kvant/train.h"
#include "train/train_internal.h"

typedef struct {
    const char *name;
    int64_t hidden, layers, heads, kv_heads, head_dim, inter, vocab;
} shape;

static const shape SHAPES[] = {
    {"h256-L6", 256, 6, 4, 2, 64, 768, 8320},
    {"h256-L8", 256, 8, 4, 2, 64, 768, 8320},
    {"h320-L8", 320, 8, 5, 1, 64, 960, 8320},
    {"h384-L6", 384, 6, 6, 2, 64, 1152, 8320},
    {"h384-L8", 384, 8, 6, 2, 64, 1152, 8320},
};

static double gemm_seconds(const shape *s, int64_t N, double *flops) {
    const int64_t H = s->hidden, I = s->inter, Q = s->heads * s->head_dim, KV = s->kv_heads * s->head_dim;
    const int64_t V = s->vocab;
    /* the (n_out, n_in) of every matmul of one layer, then the lm_head */
    int64_t mats[8][2] = {{Q, H}, {KV, H}, {KV, H}, {H, Q}, {I, H}, {I, H}, {H, I}, {V, H}};
    size_t mx = 0, tn = 0;
    for (int i = 0; i < 8; i++) {
        size_t z = (size_t)(mats[i][0] * mats[i][1]);
        mx = z > mx ? z : mx;
        size_t t = kv_tr_tn_scratch_floats(mats[i][0], mats[i][1]);
        tn = t > tn ? t : tn;
    }
    int64_t wmax = H > I ? H : I;
    wmax = wmax > V ? wmax : V;
    float *x = aligned_alloc(64, (size_t)(N * wmax) * sizeof(float));
    float *y = aligned_alloc(64, (size_t)(N * wmax) * sizeof(float));
    float *w = aligned_alloc(64, mx * sizeof(float)), *dw = aligned_alloc(64, mx * sizeof(float));
    float *scr = aligned_alloc(64, tn * sizeof(float));
    float *work = aligned_alloc(64, kv_tr_work_floats(omp_get_max_threads()) * sizeof(float));
    for (size_t i = 0; i < (size_t)(N * wmax); i++) x[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < mx; i++) w[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f, dw[i] = 0;
    double best = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = kvb_now(), f = 0;
        for (int i = 0; i < 8; i++) {
            int64_t no = mats[i][0], ni = mats[i][1], times = i < 7 ? s->layers : 1;
            for (int64_t l = 0; l < times; l++) {
                kv_tr_mm_nt(x, N, ni, ni, w, no, ni, y, no, work);        /* y = x W^T */
                kv_tr_mm_nt(y, N, no, no, w, ni, no, x, ni, work);        /* dx = dy W (W^T given) */
                kv_tr_mm_tn(y, N, no, no, x, ni, ni, dw, 1, scr, work);   /* dW += dy^T x */
                f += 6.0 * (double)N * (double)(no * ni);
            }
        }
        double t = kvb_now() - t0;
        best = t < best ? t : best;
        *flops = f;
    }
    free(x), free(y), free(w), free(dw), free(scr), free(work);
    return best;
}

int main(int argc, char **argv) {
    int64_t steps = 3, T = 256, B = 8;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) T = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: bench_train [--steps N] [--seq T] [--batch B] [--only NAME]\n");
            return 2;
        }
    }
    kv_kernels_init();
    double peak = kvb_fp32_peak();
    printf("bench_train: %d threads, kernels %s, FP32 FMA peak %.1f GFLOP/s, seq %lld, batch %lld\n",
           omp_get_max_threads(), kv_isa_name(kv_kernels_isa()), peak / 1e9, (long long)T,
           (long long)B);
    printf("%-9s %9s %9s %8s %9s %7s %9s %7s %12s\n", "shape", "params", "tok/s", "s/step",
           "model GF/s", "%peak", "GEMM GF/s", "%peak", "tokens in 2h");
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        const shape *s = &SHAPES[si];
        if (only && strcmp(only, s->name)) continue;
        kv_config c;
        memset(&c, 0, sizeof c);
        c.arch = KV_ARCH_QWEN3;
        c.hidden_size = s->hidden;
        c.intermediate_size = s->inter;
        c.n_layers = s->layers;
        c.n_heads = s->heads;
        c.n_kv_heads = s->kv_heads;
        c.head_dim = s->head_dim;
        c.vocab_size = s->vocab;
        c.max_position_embeddings = 4096;
        c.rms_norm_eps = 1e-6;
        c.rope_theta = 1e6;
        c.tie_word_embeddings = 1;
        c.qk_norm = 1;
        kv_tmodel *m;
        kv_err err = {0};
        if (kv_tmodel_new(&c, &m, &err)) {
            fprintf(stderr, "bench_train: %s\n", err.msg);
            return 1;
        }
        kv_tmodel_init_random(m, 1, 0.02);
        int64_t nf = kv_tmodel_block_floats(m);
        float *m1 = calloc((size_t)nf, sizeof(float)), *m2 = calloc((size_t)nf, sizeof(float));
        int32_t *ids = malloc((size_t)(B * T) * sizeof(int32_t)), *tgt = malloc((size_t)(B * T) * sizeof(int32_t));
        uint64_t r = 99;
        for (int64_t i = 0; i < B * T; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((r >> 33) % (uint64_t)s->vocab);
        }
        for (int64_t i = 0; i < B * T; i++) tgt[i] = i + 1 < B * T ? ids[i + 1] : -1;
        kv_adamw aw = {0.9, 0.95, 1e-8, 0.1};
        double t_best = INFINITY, loss;
        for (int64_t st = 0; st <= steps; st++) { /* step 0 warms up */
            double t0 = kvb_now();
            kv_tmodel_zero_grad(m);
            if (kv_tmodel_forward(m, ids, tgt, B, T, &loss, &err) || kv_tmodel_backward(m, 1.0, &err)) {
                fprintf(stderr, "bench_train: %s\n", err.msg);
                return 1;
            }
            kv_adamw_step(m, m1, m2, st + 1, 1e-3, &aw);
            double t = kvb_now() - t0;
            if (st > 0 && t < t_best) t_best = t;
        }
        const int64_t Q = s->heads * s->head_dim;
        int64_t n_mm = kv_tmodel_n_params(m) - s->hidden * (2 * s->layers + 1) -
                       2 * s->head_dim * s->layers; /* norms are not matmuls */
        /* tied: the embedding matrix is the lm_head's matmul, counted once */
        double flop_tok = 6.0 * (double)n_mm + 12.0 * (double)(s->layers * Q * T);
        double tok_s = (double)(B * T) / t_best;
        double gflops = flop_tok * tok_s / 1e9;
        double gf;
        double gs = gemm_seconds(s, B * T, &gf);
        printf("%-9s %8.2fM %9.0f %8.3f %9.1f %6.1f%% %9.1f %6.1f%% %11.0fM\n", s->name,
               (double)kv_tmodel_n_params(m) / 1e6, tok_s, t_best, gflops, 100.0 * gflops * 1e9 / peak,
               gf / gs / 1e9, 100.0 * gf / gs / peak, tok_s * 7200.0 / 1e6);
        fflush(stdout);
        free(m1), free(m2), free(ids), free(tgt);
        kv_tmodel_free(m);
    }
    return 0;
}
