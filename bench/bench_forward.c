/* bench_forward.c — forward-pass speed on random bf16 weights shaped like Qwen3-0.6B
 * and Qwen3-4B, built in memory (no checkpoint needed), against this machine's ceilings
 * measured in the same run.
 *
 *   prefill: one 512-token sequence, logits for the last token only; figures are
 *            tok/s and GFLOP/s (2 flops per weight per token in the linear layers, plus
 *            the attention's q.k and p.v products), as a fraction of the FP32 FMA peak.
 *   decode:  single tokens after that prefill; figures are tok/s, bytes read per token
 *            (every weight once, one embedding row, and the KV cache so far) and the
 *            achieved GB/s as a fraction of the DRAM read bandwidth. The whole stack's
 *            weights exceed 1 GiB, so every decode step reads them from DRAM (cold).
 *
 * The 0.6B shape is run with all 28 layers; the 4B shape with --layers4b (default 8)
 * of its 36 and the full model's figures are extrapolated from the measured rates,
 * labelled as such.
 *
 * --formats bf16,int4-g128,...: the same model with its block linear layers quantized
 * in memory (kv_model_quantize, round to nearest; bf16 = as built), decode on the q8
 * path as `kvant generate` runs it, prefill exact.
 *
 * usage: bench_forward [--prefill T] [--decode N] [--layers06 L] [--layers4b L] [--only 06|4b]
 *                      [--formats F,F,...] */
#include <math.h>

#include "bench_common.h"
#include "kvant/kernels.h"
#include "kvant/model.h"
#include "model/model_internal.h"

typedef struct {
    const char *name;
    int64_t hidden, inter, heads, kv_heads, head_dim, vocab, full_layers;
} shape;

static const shape QWEN3_06B = {"Qwen3-0.6B", 1024, 3072, 16, 8, 128, 151936, 28};
static const shape QWEN3_4B = {"Qwen3-4B", 2560, 9728, 32, 8, 128, 151936, 36};

static uint64_t rng = 0x243F6A8885A308D3ull;

/* n bf16 values, uniform in about [-a, a]: random high bits of an fp32. */
static void fill_bf16(uint16_t *p, size_t n, float a) {
#pragma omp parallel
    {
        uint64_t s = rng ^ (0x9E3779B97F4A7C15ull * (uint64_t)(omp_get_thread_num() + 1));
#pragma omp for schedule(static)
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            float f = ((float)(s >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * a;
            uint32_t u;
            memcpy(&u, &f, 4);
            p[i] = (uint16_t)(u >> 16);
        }
    }
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
}

typedef struct {
    kv_tensor *t;
    int n, cap;
    char **names;
    uint16_t *data;
    size_t used, size;
} builder;

static kv_tensor *add(builder *b, const char *name, int64_t r, int64_t c, float a, float base) {
    kv_tensor *t = &b->t[b->n];
    b->names[b->n] = strdup(name);
    memset(t, 0, sizeof *t);
    t->name = b->names[b->n++];
    t->dtype = KV_DTYPE_BF16;
    t->ndim = c ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = c;
    size_t n = (size_t)r * (size_t)(c ? c : 1);
    t->data = b->data + b->used;
    t->nbytes = n * 2;
    fill_bf16(b->data + b->used, n, a);
    if (base != 0)
        for (size_t i = 0; i < n; i++) b->data[b->used + i] = kv_f32_to_bf16(base + 0.1f * kv_bf16_to_f32(b->data[b->used + i]));
    b->used += (n + 31) & ~(size_t)31;
    return t;
}

static void cfg_of(const shape *s, int64_t layers, kv_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = KV_ARCH_QWEN3;
    snprintf(c->arch_name, sizeof c->arch_name, "Qwen3ForCausalLM");
    c->hidden_size = s->hidden;
    c->intermediate_size = s->inter;
    c->n_layers = layers;
    c->n_heads = s->heads;
    c->n_kv_heads = s->kv_heads;
    c->head_dim = s->head_dim;
    c->vocab_size = s->vocab;
    c->max_position_embeddings = 40960;
    c->rms_norm_eps = 1e-6;
    c->rope_theta = 1000000.0;
    c->rope_type = KV_ROPE_DEFAULT;
    c->tie_word_embeddings = 1;
    c->qk_norm = 1;
    c->bos_token_id = c->eos_token_id = -1;
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "bfloat16");
    snprintf(c->hidden_act, sizeof c->hidden_act, "silu");
}

static int64_t layer_params(const shape *s) {
    int64_t H = s->hidden, Q = s->heads * s->head_dim, KV = s->kv_heads * s->head_dim;
    return Q * H + 2 * KV * H + H * Q + 3 * s->inter * H;
}

static int run_format(const shape *s, const kv_config *cfg, const builder *b, const char *fmt,
                      int64_t layers, int64_t T, int n_decode, double bw, double peak,
                      double t_fill);

static int run_shape(const shape *s, int64_t layers, int64_t T, int n_decode, double bw,
                     double peak, const char *formats) {
    kv_config cfg;
    cfg_of(s, layers, &cfg);
    const int64_t H = s->hidden, hd = s->head_dim;
    size_t n_el = (size_t)(s->vocab * H) + (size_t)layers * (size_t)(layer_params(s) + 2 * H + 2 * hd + 32 * 12) + (size_t)H + 64;
    builder b = {0};
    b.cap = (int)(layers * 12 + 4);
    b.t = calloc((size_t)b.cap, sizeof(kv_tensor));
    b.names = calloc((size_t)b.cap, sizeof(char *));
    b.size = n_el;
    b.data = aligned_alloc(64, ((n_el * 2) + 63) & ~(size_t)63);
    if (!b.t || !b.names || !b.data) {
        fprintf(stderr, "bench_forward: cannot allocate %.2f GB of weights\n", n_el * 2 / 1e9);
        return 1;
    }
    double t0 = kvb_now();
    char nm[128];
    add(&b, "model.embed_tokens.weight", s->vocab, H, 0.05f, 0);
    const int64_t Q = s->heads * hd, KV = s->kv_heads * hd, I = s->inter;
    (void)KV;
    for (int64_t l = 0; l < layers; l++) {
#define N(suf) (snprintf(nm, sizeof nm, "model.layers.%lld.%s", (long long)l, suf), nm)
        add(&b, N("input_layernorm.weight"), H, 0, 1.0f, 1.0f);
        add(&b, N("post_attention_layernorm.weight"), H, 0, 1.0f, 1.0f);
        add(&b, N("self_attn.q_norm.weight"), hd, 0, 1.0f, 1.0f);
        add(&b, N("self_attn.k_norm.weight"), hd, 0, 1.0f, 1.0f);
        add(&b, N("self_attn.q_proj.weight"), Q, H, sqrtf(3.0f / (float)H), 0);
        add(&b, N("self_attn.k_proj.weight"), KV, H, sqrtf(3.0f / (float)H), 0);
        add(&b, N("self_attn.v_proj.weight"), KV, H, sqrtf(3.0f / (float)H), 0);
        add(&b, N("self_attn.o_proj.weight"), H, Q, sqrtf(3.0f / (float)Q), 0);
        add(&b, N("mlp.gate_proj.weight"), I, H, sqrtf(3.0f / (float)H), 0);
        add(&b, N("mlp.up_proj.weight"), I, H, sqrtf(3.0f / (float)H), 0);
        add(&b, N("mlp.down_proj.weight"), H, I, sqrtf(3.0f / (float)I), 0);
#undef N
    }
    add(&b, "model.norm.weight", H, 0, 1.0f, 1.0f);
    double t_fill = kvb_now() - t0;

    int rc = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", formats);
    for (char *save = NULL, *f = strtok_r(list, ",", &save); f; f = strtok_r(NULL, ",", &save))
        rc |= run_format(s, &cfg, &b, f, layers, T, n_decode, bw, peak, t_fill);
    for (int i = 0; i < b.n; i++) free(b.names[i]);
    free(b.names);
    free(b.t);
    free(b.data);
    return rc;
}

/* One weight format of the built model: prefill and decode measured and printed. */
static int run_format(const shape *s, const kv_config *cfg, const builder *b, const char *fmt,
                      int64_t layers, int64_t T, int n_decode, double bw, double peak,
                      double t_fill) {
    const int64_t H = s->hidden, hd = s->head_dim, KV = s->kv_heads * hd;
    kv_err err = {0};
    kv_model *m = NULL;
    kv_cache *c = NULL;
    int rc = 1;
    double t0, t_quant = 0;
    float *logits = malloc(sizeof(float) * (size_t)s->vocab);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(T + n_decode + 64));
    if (!logits || !ids) goto done;
    for (int64_t i = 0; i < T + n_decode + 64; i++) ids[i] = (int32_t)((i * 7919) % s->vocab);
    if (kv_model_from_tensors(cfg, b->t, b->n, &m, &err)) goto fail;
    if (strcmp(fmt, "bf16")) {
        kv_qformat qf;
        if (kv_qformat_parse(fmt, &qf, &err)) goto fail;
        t0 = kvb_now();
        if (kv_model_quantize(m, qf, NULL, &err)) goto fail;
        t_quant = kvb_now() - t0;
        kv_model_set_act_mode(m, KV_ACT_Q8_DECODE); /* as kvant generate decodes */
    }
    if (kv_cache_new(m, 1, T + n_decode + 64, &c, &err)) goto fail;
    int64_t wbytes = kv_model_decode_bytes(m);
    printf("\n== %s shape, %lld of %lld layers, %s random weights (%.2f GB read per token; built "
           "in %.1f s", s->name, (long long)layers, (long long)s->full_layers, fmt,
           (double)wbytes / 1e9, t_fill);
    if (t_quant > 0) printf(", quantized in memory in %.1f s; decode on the q8 path", t_quant);
    printf(")\n");

    /* warm-up: sizes the run state and touches the code paths (a short prefill) */
    if (kv_model_forward1(m, c, 0, ids, 64, KV_LOGITS_LAST, logits, &err)) goto fail;
    kv_cache_truncate(c, 0, 0);

    /* prefill */
    double lin_flops = 2.0 * (double)T * (double)layer_params(s) * (double)layers;
    double attn_flops = 0;
    for (int64_t p = 0; p < T; p++) attn_flops += 4.0 * (double)(p + 1) * (double)(s->heads * hd);
    attn_flops *= (double)layers;
    double head_flops = 2.0 * (double)s->vocab * (double)H;
    double best_pf = 1e30;
    for (int r = 0; r < 2; r++) {
        kv_cache_truncate(c, 0, 0);
        t0 = kvb_now();
        if (kv_model_forward1(m, c, 0, ids, T, KV_LOGITS_LAST, logits, &err)) goto fail;
        double dt = kvb_now() - t0;
        if (dt < best_pf) best_pf = dt;
    }
    double pf_flops = lin_flops + attn_flops + head_flops;
    double pf_gflops = pf_flops / best_pf / 1e9;
    printf("prefill %lld tokens: %.3f s  %.1f tok/s  %.1f GFLOP/s (%.0f%% of FP32 peak %.0f "
           "GFLOP/s; linear %.1f + attention %.1f GFLOP)\n",
           (long long)T, best_pf, (double)T / best_pf, pf_gflops, 100.0 * pf_gflops / (peak / 1e9),
           peak / 1e9, lin_flops / 1e9, attn_flops / 1e9);

    /* decode n tokens after the prefill, against a read pass taken just before (a shared
     * VM's read bandwidth moves between ~45 and ~80 GB/s from one minute to the next) */
    const double bw_start = bw;
    bw = kvb_read_bandwidth((size_t)1 << 30, 3);
    if (bw <= 0) bw = bw_start;
    double t_min = 1e30;
    double *steps = malloc(sizeof(double) * (size_t)n_decode);
    if (!steps) goto done;
    for (int i = 0; i < n_decode; i++) {
        t0 = kvb_now();
        if (kv_model_forward1(m, c, 0, ids + T + i, 1, KV_LOGITS_LAST, logits, &err)) goto fail;
        double dt = kvb_now() - t0;
        if (getenv("KVB_VERBOSE")) printf("  step %d: %.2f ms\n", i, dt * 1e3);
        if (dt < t_min) t_min = dt;
        steps[i] = dt;
    }
    /* median step: robust to the other tenants of a shared machine */
    for (int i = 1; i < n_decode; i++)
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            double tmp = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = tmp;
        }
    double t_med = steps[n_decode / 2];
    free(steps);
    double ctx_mid = (double)T + n_decode / 2.0;
    double kv_bytes = (double)layers * (double)KV * ctx_mid * 4.0 * 2.0;
    double per_tok = t_med;
    double gbs = ((double)wbytes + kv_bytes) / per_tok / 1e9;
    printf("decode (context %lld..%lld, median of %d steps): %.2f ms/token  %.2f tok/s  reads %.1f MB weights + "
           "%.1f MB KV cache per token  %.1f GB/s = %.0f%% of the read bandwidth just before, %.1f GB/s\n",
           (long long)T, (long long)(T + n_decode), n_decode, per_tok * 1e3, 1.0 / per_tok,
           (double)wbytes / 1e6, kv_bytes / 1e6, gbs, 100.0 * gbs / (bw / 1e9), bw / 1e9);
    printf("  best step %.2f ms = %.2f tok/s, %.1f GB/s (%.0f%%); ceiling at the measured "
           "bandwidth: %.2f tok/s\n", t_min * 1e3, 1.0 / t_min,
           ((double)wbytes + kv_bytes) / t_min / 1e9,
           100.0 * ((double)wbytes + kv_bytes) / t_min / bw, bw / ((double)wbytes + kv_bytes));

    if (layers != s->full_layers) {
        /* extrapolation: the measured rates applied to the full model's work */
        double full_lin = lin_flops / (double)layers * (double)s->full_layers;
        double full_attn = attn_flops / (double)layers * (double)s->full_layers;
        double full_pf = (full_lin + full_attn + head_flops) / (pf_gflops * 1e9);
        double emb_bytes = (double)s->vocab * (double)H * 2.0;
        double per_layer_bytes = ((double)wbytes - emb_bytes) / (double)layers;
        double full_bytes = emb_bytes + per_layer_bytes * (double)s->full_layers +
                            kv_bytes / (double)layers * (double)s->full_layers;
        printf("EXTRAPOLATED to all %lld layers (same GFLOP/s and GB/s as measured above, not "
               "run): prefill %.1f tok/s, decode %.2f tok/s (%.2f GB per token)\n",
               (long long)s->full_layers, (double)T / full_pf, gbs * 1e9 / full_bytes,
               full_bytes / 1e9);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_forward: %s: %s\n", fmt, err.msg);
done:
    kv_cache_free(c);
    kv_model_free(m);
    free(logits);
    free(ids);
    return rc;
}

int main(int argc, char **argv) {
    int64_t T = 512, l06 = 28, l4 = 8;
    int n_decode = 32;
    const char *only = NULL, *formats = "bf16";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--prefill")) T = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode")) n_decode = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers06")) l06 = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers4b")) l4 = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
        else if (!strcmp(argv[i], "--formats")) formats = argv[i + 1];
        else {
            fprintf(stderr, "usage: %s [--prefill T] [--decode N] [--layers06 L] [--layers4b L] "
                    "[--only 06|4b] [--formats F,F,...]\n", argv[0]);
            return 2;
        }
    }
    if (T < 64 || n_decode < 1 || l06 < 1 || l4 < 1) {
        fprintf(stderr, "bench_forward: need --prefill >= 64, --decode >= 1, layers >= 1\n");
        return 2;
    }
    kv_kernels_init();
    printf("kernels: %s, threads: %d\n", kv_isa_name(kv_kernels_isa()), omp_get_max_threads());
    double bw = kvb_read_bandwidth((size_t)1 << 30, 5);
    double peak = kvb_fp32_peak();
    if (peak <= 0) peak = 419e9; /* DESIGN.md's figure for these machines */
    printf("machine: DRAM read %.1f GB/s (1 GiB buffer, best of 5), FP32 FMA peak %.0f GFLOP/s "
           "(measured)\n", bw / 1e9, peak / 1e9);
    int rc = 0;
    if (!only || !strcmp(only, "06")) rc |= run_shape(&QWEN3_06B, l06, T, n_decode, bw, peak, formats);
    if (!only || !strcmp(only, "4b")) rc |= run_shape(&QWEN3_4B, l4, T, n_decode, bw, peak, formats);
    return rc;
}
