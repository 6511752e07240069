/* bench_eval.c — multiple-choice evaluation speed with and without shared-context
 * reuse, on models/tiny-qwen3 and on a random-weight model shaped like Qwen3-0.6B
 * (built in memory, with the real Qwen3 tokenizer from ../shared/data).
 *
 * "reuse": the choices of a question share one pass over its context (cache copies,
 * identical tails merged); "no reuse": every (context, continuation) request is its
 * own sequence, as lm-evaluation-harness's HF backend runs it. Both give the same
 * scores (tests/test_eval.c checks); the figure is documents per second and the ratio.
 *
 * usage: bench_eval [--limit-tiny N] [--limit-06 N] [--layers06 L] [--only tiny|06]
 * (limits are documents for piqa, documents per subject for mmlu; the 0.6B mmlu run
 * uses five subjects to stay short). Needs ../shared/data (or KVANT_DATA). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvant/eval.h"
#include "kvant/fileio.h"
#include "kvant/model.h"
#include "kvant/tensor.h"
#include "kvant/tokenizer.h"
#include "model/model_internal.h"

/* ---- a random bf16 Qwen3-0.6B-shaped model ---- */
typedef struct {
    kv_tensor t[28 * 11 + 4];
    char names[28 * 11 + 4][80];
    int n;
    uint16_t *data;
    size_t used;
} weights;

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static void put(weights *w, const char *name, int64_t r, int64_t c, float a, float base) {
    kv_tensor *t = &w->t[w->n];
    snprintf(w->names[w->n], sizeof w->names[0], "%s", name);
    memset(t, 0, sizeof *t);
    t->name = w->names[w->n++];
    t->dtype = KV_DTYPE_BF16;
    t->ndim = c ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = c;
    size_t n = (size_t)r * (size_t)(c ? c : 1);
    uint16_t *p = w->data + w->used;
    t->data = p;
    t->nbytes = n * 2;
    uint64_t s = g_rng;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        float f = base + ((float)(s >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * a;
        p[i] = kv_f32_to_bf16(f);
    }
    g_rng = s;
    w->used += (n + 31) & ~(size_t)31;
}

static kv_model *make_06b(int layers, weights *w, kv_err *err) {
    const int64_t H = 1024, I = 3072, NH = 16, NKV = 8, HD = 128, V = 151936;
    kv_config c;
    memset(&c, 0, sizeof c);
    c.arch = KV_ARCH_QWEN3;
    snprintf(c.arch_name, sizeof c.arch_name, "Qwen3ForCausalLM");
    c.hidden_size = H;
    c.intermediate_size = I;
    c.n_layers = layers;
    c.n_heads = NH;
    c.n_kv_heads = NKV;
    c.head_dim = HD;
    c.vocab_size = V;
    c.max_position_embeddings = 40960;
    c.rms_norm_eps = 1e-6;
    c.rope_theta = 1000000.0;
    c.tie_word_embeddings = 1;
    c.qk_norm = 1;
    c.bos_token_id = c.eos_token_id = -1;
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "bfloat16");
    snprintf(c.hidden_act, sizeof c.hidden_act, "silu");
    size_t per_layer = (size_t)(NH * HD * H * 2 + 2 * NKV * HD * H + 3 * I * H + 2 * H + 2 * HD + 11 * 32);
    size_t n = (size_t)(V * H) + (size_t)layers * per_layer + (size_t)H + 64;
    w->data = malloc(n * 2);
    if (!w->data) {
        kv_err_set(err, KV_ENOMEM, "bench_eval: %.2f GB of weights", (double)n * 2 / 1e9);
        return NULL;
    }
    char nm[80];
    put(w, "model.embed_tokens.weight", V, H, 0.05f, 0);
    for (int l = 0; l < layers; l++) {
#define N(suf) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suf), nm)
        put(w, N("input_layernorm.weight"), H, 0, 0.1f, 1.0f);
        put(w, N("post_attention_layernorm.weight"), H, 0, 0.1f, 1.0f);
        put(w, N("self_attn.q_norm.weight"), HD, 0, 0.1f, 1.0f);
        put(w, N("self_attn.k_norm.weight"), HD, 0, 0.1f, 1.0f);
        put(w, N("self_attn.q_proj.weight"), NH * HD, H, sqrtf(3.0f / (float)H), 0);
        put(w, N("self_attn.k_proj.weight"), NKV * HD, H, sqrtf(3.0f / (float)H), 0);
        put(w, N("self_attn.v_proj.weight"), NKV * HD, H, sqrtf(3.0f / (float)H), 0);
        put(w, N("self_attn.o_proj.weight"), H, NH * HD, sqrtf(3.0f / (float)(NH * HD)), 0);
        put(w, N("mlp.gate_proj.weight"), I, H, sqrtf(3.0f / (float)H), 0);
        put(w, N("mlp.up_proj.weight"), I, H, sqrtf(3.0f / (float)H), 0);
        put(w, N("mlp.down_proj.weight"), H, I, sqrtf(3.0f / (float)I), 0);
#undef N
    }
    put(w, "model.norm.weight", H, 0, 0.1f, 1.0f);
    kv_model *m = NULL;
    if (kv_model_from_tensors(&c, w->t, w->n, &m, err)) return NULL;
    return m;
}

/* docs/s of one task in one mode; -1 on error */
static double run(kv_model *m, const kv_tokenizer *tok, const char *task, int64_t limit,
                  int no_reuse, int64_t *tokens, kv_err *err) {
    kv_task *t = NULL;
    kv_task_opts to = {.limit = limit};
    if (kv_task_load(task, NULL, &to, &t, err)) return -1;
    kv_eval_opts eo = {.batch = 16, .no_reuse = no_reuse};
    kv_task_result r = {0};
    double rate = -1;
    if (!kv_eval_task(m, tok, t, &eo, NULL, &r, err)) {
        rate = (double)r.n_docs / r.seconds;
        *tokens = r.tokens_run;
    }
    kv_task_result_free(&r);
    kv_task_free(t);
    return rate;
}

static int bench_model(const char *label, kv_model *m, const kv_tokenizer *tok, const char *const *tasks,
                       const int64_t *limits, int n_tasks) {
    printf("\n== %s (%d threads)\n", label, omp_get_max_threads());
    printf("%-24s %8s %14s %14s %14s %14s %7s\n", "task", "docs", "reuse docs/s", "tokens run",
           "no-reuse doc/s", "tokens run", "ratio");
    for (int k = 0; k < n_tasks; k++) {
        kv_err err = {0};
        int64_t tr = 0, tn = 0;
        double a = run(m, tok, tasks[k], limits[k], 0, &tr, &err);
        double b = a > 0 ? run(m, tok, tasks[k], limits[k], 1, &tn, &err) : -1;
        if (a < 0 || b < 0) {
            fprintf(stderr, "bench_eval: %s: %s\n", tasks[k], err.msg);
            return 1;
        }
        kv_task *t = NULL;
        kv_task_opts to = {.limit = limits[k]};
        int64_t nd = kv_task_load(tasks[k], NULL, &to, &t, &err) ? 0 : kv_task_n_docs(t);
        kv_task_free(t);
        printf("%-24s %8lld %14.2f %14lld %14.2f %14lld %6.2fx\n", tasks[k], (long long)nd, a,
               (long long)tr, b, (long long)tn, a / b);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv) {
    int64_t lim_tiny = 100, lim_06 = 4;
    int layers = 28;
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--limit-tiny")) lim_tiny = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--limit-06")) lim_06 = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers06")) layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
    }
    const char *data = getenv("KVANT_DATA") && *getenv("KVANT_DATA") ? getenv("KVANT_DATA") : "../shared/data";
    kv_err err = {0};
    int rc = 0;
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/piqa/valid.jsonl", data);
    if (!kv_is_file(probe)) {
        printf("bench_eval: %s not found (set KVANT_DATA); skipped\n", probe);
        return 0;
    }
    if (!only || !strcmp(only, "tiny")) {
        kv_model *m = NULL;
        kv_tokenizer *tok = NULL;
        if (kv_model_load("models/tiny-qwen3", &m, &err) || kv_tok_load("models/tiny-qwen3", &tok, &err)) {
            fprintf(stderr, "bench_eval: %s\n", err.msg);
            return 1;
        }
        const char *tasks[] = {"piqa", "mmlu", "mmlu_abstract_algebra"};
        int64_t lim[] = {lim_tiny * 4, lim_tiny / 20 > 0 ? lim_tiny / 20 : 1, lim_tiny};
        rc |= bench_model("models/tiny-qwen3 (4 layers, hidden 128, vocab 8320)", m, tok, tasks, lim, 3);
        kv_tok_free(tok);
        kv_model_free(m);
    }
    if (!only || !strcmp(only, "06")) {
        char tp[4096];
        snprintf(tp, sizeof tp, "%s/tokenizer_qwen3/tokenizer.json", data);
        weights *w = calloc(1, sizeof *w);
        kv_tokenizer *tok = NULL;
        kv_model *m = w ? make_06b(layers, w, &err) : NULL;
        if (!m || kv_tok_load(tp, &tok, &err)) {
            fprintf(stderr, "bench_eval: %s\n", err.msg);
            return 1;
        }
        const char *tasks[] = {"piqa", "mmlu_high_school_geography", "mmlu_college_physics"};
        int64_t lim[] = {lim_06 * 4, lim_06, lim_06};
        char label[160];
        snprintf(label, sizeof label, "Qwen3-0.6B shape, %d layers, random bf16 weights, Qwen3 tokenizer", layers);
        rc |= bench_model(label, m, tok, tasks, lim, 3);
        kv_tok_free(tok);
        kv_model_free(m);
        if (w) free(w->data);
        free(w);
    }
    return rc;
}
