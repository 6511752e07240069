/* test_quant_run.c — quantized checkpoints run (issue 3, points 4-6): a checkpoint
 * written by `kvant quantize` ($KVANT_BIN, default build/kvant) gives, with every
 * kernel set, the logits of the same model whose linear weights are replaced by their
 * kv_dequantize_ref values as F32 tensors (built in memory, run by the dense kernels);
 * packed data are validated at load with errors naming the file and tensor; and the KL
 * divergence of kv_perplexity_kld matches a direct double-precision computation.
 *
 * Bound on logits: 1e-4 absolute. Both models see bit-identical weights; what differs
 * is the order of fp32 sums in the GEMV (and ref vs SIMD), ~1e-6 relative on these
 * logits of magnitude < 10 (the base fixtures match transformers within 1e-4 the same
 * way, see test_model). */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvant/eval.h"
#include "kvant/fileio.h"
#include "kvant/kernels.h"
#include "kvant/model.h"
#include "kvant/quant.h"
#include "kvant/safetensors.h"
#include "model/model_internal.h"
#include "test.h"

static char tmpdir[256];

static const char *bin(void) {
    const char *b = getenv("KVANT_BIN");
    return b && *b ? b : "build/kvant";
}

static int rm_cb(const char *p, const struct stat *sb, int fl, struct FTW *f) {
    (void)sb, (void)fl, (void)f;
    return remove(p);
}

/* `kvant quantize model out --format fmt`; 0 on success. */
static int quantize(const char *model, const char *out, const char *fmt) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s quantize %s %s --format %s --force --quiet >/dev/null 2>&1",
             bin(), model, out, fmt);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static const char *LINEAR[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                "mlp.down_proj"};

/* The dequantized twin of a quantized checkpoint: its float tensors as views, and every
 * packed linear weight dequantized (kv_dequantize_ref) into an F32 tensor. */
typedef struct {
    kv_weights *w;
    kv_tensor *t;
    int n;
    char **names;
    float **bufs;
    int n_bufs;
    kv_model *m;
} twin;

static void twin_free(twin *d) {
    kv_model_free(d->m);
    for (int i = 0; i < d->n_bufs; i++) free(d->bufs[i]), free(d->names[i]);
    free(d->bufs), free(d->names), free(d->t);
    kv_weights_close(d->w);
    memset(d, 0, sizeof *d);
}

static int twin_build(twin *d, const char *qdir, const kv_config *cfg, kv_qformat qf) {
    kv_err err = {0};
    memset(d, 0, sizeof *d);
    if (kv_weights_open(qdir, &d->w, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return 1;
    }
    int cnt = kv_weights_count(d->w), nl = (int)cfg->n_layers;
    d->t = calloc((size_t)(cnt + 7 * nl), sizeof(kv_tensor));
    d->names = calloc((size_t)(7 * nl), sizeof(char *));
    d->bufs = calloc((size_t)(7 * nl), sizeof(float *));
    for (int i = 0; i < cnt; i++) {
        const kv_tensor *t = kv_weights_at(d->w, i);
        if (t->dtype == KV_DTYPE_F32 || t->dtype == KV_DTYPE_F16 || t->dtype == KV_DTYPE_BF16)
            d->t[d->n++] = *t;
    }
    const int64_t H = cfg->hidden_size, I = cfg->intermediate_size, hd = cfg->head_dim;
    const int64_t dims[7][2] = {{cfg->n_heads * hd, H}, {cfg->n_kv_heads * hd, H},
                                {cfg->n_kv_heads * hd, H}, {H, cfg->n_heads * hd},
                                {I, H}, {I, H}, {H, I}};
    for (int l = 0; l < nl; l++)
        for (int j = 0; j < 7; j++) {
            char name[256], pn[300];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, LINEAR[j]);
            kv_qtensor qt;
            if (kv_qtensor_init(&qt, qf, dims[j][0], dims[j][1], name, &err)) {
                fprintf(stderr, "  %s\n", err.msg);
                return 1;
            }
            for (int p = 0; p < qt.n_parts; p++) {
                const kv_tensor *t = kv_weights_find(d->w, kv_qpart_name(&qt, p, name, pn, sizeof pn));
                if (!t) {
                    fprintf(stderr, "  %s: no part %s\n", qdir, pn);
                    return 1;
                }
                qt.data[p] = t->data;
            }
            float *buf = malloc(sizeof(float) * (size_t)(dims[j][0] * dims[j][1]));
            d->bufs[d->n_bufs] = buf;
            d->names[d->n_bufs++] = strdup(name);
            if (kv_dequantize_ref(&qt, 0, qt.n_out, buf, &err)) return 1;
            kv_tensor *o = &d->t[d->n++];
            memset(o, 0, sizeof *o);
            o->name = d->names[d->n_bufs - 1];
            o->dtype = KV_DTYPE_F32;
            o->ndim = 2;
            o->shape[0] = dims[j][0];
            o->shape[1] = dims[j][1];
            o->data = buf;
            o->nbytes = sizeof(float) * (size_t)(dims[j][0] * dims[j][1]);
        }
    if (kv_model_from_tensors(cfg, d->t, d->n, &d->m, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return 1;
    }
    return 0;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* Prefill two sequences (11 and 5 tokens: the GEMM path), then three decode steps of
 * both (m = 2) and two of the first (m = 1), logits of every token compared. */
static double compare_runs(kv_model *a, kv_model *b) {
    kv_err err = {0};
    const kv_config *cfg = kv_model_config(a);
    const int64_t V = cfg->vocab_size;
    kv_cache *ca = NULL, *cb = NULL;
    float *la = malloc(sizeof(float) * (size_t)(16 * V)), *lb = malloc(sizeof(float) * (size_t)(16 * V));
    int32_t s0[16], s1[16];
    for (int i = 0; i < 16; i++) {
        s0[i] = (int32_t)((i * 37 + 5) % V);
        s1[i] = (int32_t)((i * 101 + 17) % V);
    }
    double worst = 0;
    CHECK(kv_cache_new(a, 2, 32, &ca, &err) == KV_OK);
    CHECK(kv_cache_new(b, 2, 32, &cb, &err) == KV_OK);
    int slots[2] = {0, 1};
    for (int step = 0; step < 6; step++) {
        int64_t n[2];
        const int32_t *ids[2];
        int nseq = step < 4 ? 2 : 1;
        if (step == 0) {
            n[0] = 11, n[1] = 5, ids[0] = s0, ids[1] = s1;
        } else {
            n[0] = n[1] = 1;
            ids[0] = s0 + 10 + step;
            ids[1] = s1 + 4 + step;
        }
        kv_batch bt = {nseq, slots, ids, n};
        CHECK_MSG(kv_model_forward(a, ca, &bt, KV_LOGITS_ALL, la, &err) == KV_OK, "%s", err.msg);
        CHECK_MSG(kv_model_forward(b, cb, &bt, KV_LOGITS_ALL, lb, &err) == KV_OK, "%s", err.msg);
        int64_t T = n[0] + (nseq > 1 ? n[1] : 0);
        double d = max_diff(la, lb, (size_t)(T * V));
        if (d > worst) worst = d;
    }
    kv_cache_free(ca);
    kv_cache_free(cb);
    free(la), free(lb);
    return worst;
}

typedef struct {
    const char *model, *fmt;
} qcase;

static const qcase CASES[] = {
    {"models/tiny-qwen3", "int4-g128"},
    {"models/tiny-qwen3", "int3-g128"},
    {"models/tiny-qwen3", "int2-g64"},
    {"models/tiny-qwen3", "int8-g32"},
    {"models/tiny-qwen3", "mxfp4"},
    {"models/tiny-qwen3", "mxint4"},
    {"tests/fixtures/models/qwen3_tied_f32", "int4-g64"},
    {"tests/fixtures/models/qwen3_tied_f32", "int2-g32"},
    {"tests/fixtures/models/qwen3_tied_f32", "mxint4"},
    {"tests/fixtures/models/llama3_bf16_sharded", "int3-g32"},
    {"tests/fixtures/models/llama3_bf16_sharded", "mxfp4"},
};

static void test_logits_equal_dequantized(void) {
    double worst = 0;
    kv_isa saved = kv_kernels_isa();
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        char out[512];
        snprintf(out, sizeof out, "%s/run_%zu", tmpdir, c);
        int rc = quantize(CASES[c].model, out, CASES[c].fmt);
        CHECK_MSG(rc == 0, "%s quantize %s --format %s: exit %d", bin(), CASES[c].model,
                  CASES[c].fmt, rc);
        if (rc) continue;
        kv_err err = {0};
        kv_model *q = NULL;
        CHECK_MSG(kv_model_load(out, &q, &err) == KV_OK, "%s", err.msg);
        if (!q) continue;
        kv_model *base = NULL;
        CHECK(kv_model_load(CASES[c].model, &base, &err) == KV_OK);
        CHECK_EQ_INT(kv_model_n_params(q), kv_model_n_params(base));
        CHECK(kv_model_decode_bytes(q) < kv_model_decode_bytes(base));
        kv_model_free(base);
        kv_qformat qf;
        kv_qformat_parse(CASES[c].fmt, &qf, &err);
        twin d;
        if (twin_build(&d, out, kv_model_config(q), qf)) {
            CHECK_MSG(0, "%s: cannot build the dequantized model", out);
        } else {
            for (int isa = KV_ISA_REF; isa < KV_ISA_COUNT; isa++) {
                if (!kv_kernels_for((kv_isa)isa)) continue;
                kv_kernels_set((kv_isa)isa);
                double e = compare_runs(q, d.m);
                fprintf(stderr, "  %s %s [%s]: max |logit diff| %.3g\n", CASES[c].model,
                        CASES[c].fmt, kv_isa_name((kv_isa)isa), e);
                CHECK_MSG(e <= 1e-4, "%s %s [%s]: logits differ by %.3g", CASES[c].model,
                          CASES[c].fmt, kv_isa_name((kv_isa)isa), e);
                if (e > worst) worst = e;
            }
        }
        twin_free(&d);
        kv_model_free(q);
    }
    kv_kernels_set(saved);
    fprintf(stderr, "# quantized vs dequantized-f32 logits: worst max abs diff %.3g (bound 1e-4)\n", worst);
}

/* kv_model_quantize: a dense model quantized in memory runs exactly as the checkpoint
 * `kvant quantize` writes for it (same packed bits, same kernels: equal logits), reads
 * as many bytes per decode step, and refuses a second quantization and a group size
 * that does not divide a layer. */
static void test_quantize_in_memory(void) {
    static const qcase MEM[] = {{"models/tiny-qwen3", "int4-g128"},
                                {"models/tiny-qwen3", "int3-g128"},
                                {"models/tiny-qwen3", "mxfp4"},
                                {"tests/fixtures/models/llama3_bf16_sharded", "int2-g32"}};
    kv_err err = {0};
    for (size_t c = 0; c < sizeof MEM / sizeof MEM[0]; c++) {
        char out[512];
        snprintf(out, sizeof out, "%s/mem_%zu", tmpdir, c);
        CHECK(quantize(MEM[c].model, out, MEM[c].fmt) == 0);
        kv_model *q = NULL, *m = NULL;
        kv_qformat qf;
        CHECK(kv_qformat_parse(MEM[c].fmt, &qf, &err) == KV_OK);
        CHECK_MSG(kv_model_load(out, &q, &err) == KV_OK, "%s", err.msg);
        CHECK_MSG(kv_model_load(MEM[c].model, &m, &err) == KV_OK, "%s", err.msg);
        if (!q || !m) {
            kv_model_free(q), kv_model_free(m);
            continue;
        }
        CHECK_MSG(kv_model_quantize(m, qf, NULL, &err) == KV_OK, "%s", err.msg);
        CHECK_EQ_INT(kv_model_decode_bytes(m), kv_model_decode_bytes(q));
        for (int mode = KV_ACT_EXACT; mode <= KV_ACT_Q8_DECODE; mode++) {
            kv_model_set_act_mode(m, (kv_act_mode)mode);
            kv_model_set_act_mode(q, (kv_act_mode)mode);
            double e = compare_runs(m, q);
            CHECK_MSG(e == 0.0, "%s %s in memory vs written, act mode %d: logits differ by %.3g",
                      MEM[c].model, MEM[c].fmt, mode, e);
        }
        err.msg[0] = 0;
        CHECK(kv_model_quantize(m, qf, NULL, &err) == KV_EINVAL);
        CHECK(strstr(err.msg, "already quantized") != NULL);
        kv_model_free(q), kv_model_free(m);
    }
    /* this fixture's hidden size (64) is not a multiple of 128 */
    kv_model *m = NULL;
    CHECK(kv_model_load("tests/fixtures/models/llama3_bf16_sharded", &m, &err) == KV_OK);
    kv_qformat bad = {KV_QFMT_INT, 4, 128};
    err.msg[0] = 0;
    CHECK(m && kv_model_quantize(m, bad, NULL, &err) != KV_OK);
    fprintf(stderr, "  group 128 on 64 inputs: %s\n", err.msg);
    CHECK(strstr(err.msg, "model.layers.0.self_attn.q_proj") != NULL);
    /* a model a failed call left half converted is refused, even with a format that fits */
    kv_qformat ok = {KV_QFMT_INT, 4, 32};
    err.msg[0] = 0;
    CHECK(m && kv_model_quantize(m, ok, NULL, &err) == KV_EINVAL);
    CHECK(strstr(err.msg, "earlier kv_model_quantize failed") != NULL);
    kv_model_free(m);
}

/* ---- load-time validation ---- */

/* Overwrite n bytes at byte `at` of tensor `name`'s data in a .safetensors file. */
static int poke(const char *file, const char *name, size_t at, const void *bytes, size_t n) {
    int fd = open(file, O_RDWR);
    if (fd < 0) return 1;
    uint64_t hl = 0;
    int rc = 1;
    if (pread(fd, &hl, 8, 0) == 8 && hl < (1u << 26)) {
        char *h = malloc(hl + 1);
        if (pread(fd, h, hl, 8) == (ssize_t)hl) {
            h[hl] = 0;
            cJSON *root = cJSON_Parse(h);
            cJSON *t = cJSON_GetObjectItemCaseSensitive(root, name);
            cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
            if (cJSON_GetArraySize(off) == 2) {
                size_t o = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
                rc = pwrite(fd, bytes, n, (off_t)(8 + hl + o + at)) != (ssize_t)n;
            }
            cJSON_Delete(root);
        }
        free(h);
    }
    close(fd);
    return rc;
}

static void test_load_errors(void) {
    kv_err err = {0};
    kv_model *m = NULL;
    char dir[512], file[600];
    /* an E8M0 NaN scale */
    snprintf(dir, sizeof dir, "%s/bad_mx", tmpdir);
    CHECK(quantize("models/tiny-qwen3", dir, "mxfp4") == 0);
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    uint8_t ff = 0xFF;
    CHECK(poke(file, "model.layers.2.mlp.up_proj.weight_scales", 77, &ff, 1) == 0);
    CHECK_ERR(kv_model_load(dir, &m, &err), &err, KV_EFORMAT,
              "model.safetensors: model.layers.2.mlp.up_proj.weight: mxfp4: _scales[");
    CHECK(strstr(err.msg, "E8M0 NaN") != NULL);
    CHECK(m == NULL);
    /* an fp16 Inf scale */
    snprintf(dir, sizeof dir, "%s/bad_int", tmpdir);
    CHECK(quantize("models/tiny-qwen3", dir, "int4-g128") == 0);
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    uint16_t inf = 0x7C00;
    CHECK(poke(file, "model.layers.1.self_attn.o_proj.scales", 2 * 5, &inf, 2) == 0);
    CHECK_ERR(kv_model_load(dir, &m, &err), &err, KV_EFORMAT,
              "model.safetensors: model.layers.1.self_attn.o_proj.weight: int4-g128: scales[0, 5] is Inf");
    /* act-order g_idx */
    int32_t gi = 1;
    CHECK(quantize("models/tiny-qwen3", dir, "int4-g128") == 0);
    CHECK(poke(file, "model.layers.0.mlp.down_proj.g_idx", 0, &gi, 4) == 0);
    CHECK_ERR(kv_model_load(dir, &m, &err), &err, KV_EFORMAT, "mlp.down_proj.weight: int4-g128: g_idx[0]");
    /* a config whose format disagrees with the tensors: shapes are checked per part */
    CHECK(quantize("models/tiny-qwen3", dir, "int4-g128") == 0);
    char cfgp[600], *text = NULL;
    size_t len = 0;
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    CHECK(kv_read_file(cfgp, &text, &len, &err) == KV_OK);
    char *f = text ? strstr(text, "\"int4-g128\"") : NULL;
    CHECK(f != NULL);
    if (f) {
        memcpy(f, "\"int2-g128\"", 11);
        FILE *o = fopen(cfgp, "wb");
        fwrite(text, 1, len, o);
        fclose(o);
        CHECK_ERR(kv_model_load(dir, &m, &err), &err, KV_EFORMAT, "model.layers.0.self_attn.q_proj.qweight");
        CHECK(strstr(err.msg, "model.safetensors") != NULL);
        memcpy(f, "\"int5-g128\"", 11);
        o = fopen(cfgp, "wb");
        fwrite(text, 1, len, o);
        fclose(o);
        CHECK_ERR(kv_model_load(dir, &m, &err), &err, KV_EINVAL, "known formats: int4-g128");
        CHECK(strstr(err.msg, "config.json: quantization_config") != NULL);
        memcpy(f, "\"int4-g128\"", 11);
        char *fk = strstr(text, "\"format\"");
        if (fk) memcpy(fk, "\"formax\"", 8);
        o = fopen(cfgp, "wb");
        fwrite(text, 1, len, o);
        fclose(o);
        CHECK_ERR(kv_model_load(dir, &m, &err), &err, KV_EUNSUPPORTED, "no kvant \"format\"");
    }
    free(text);
}

/* ---- KL divergence ---- */

/* Per-position KL(base || m) over the GPTQ windows, computed directly in double. */
static void direct_kld(kv_model *m, kv_model *base, const int32_t *ids, int64_t n, int64_t ctx,
                       double *mean, double *p99, double *agree) {
    kv_err err = {0};
    const int64_t V = kv_model_config(m)->vocab_size, windows = n / ctx;
    float *la = malloc(sizeof(float) * (size_t)(ctx * V)), *lb = malloc(sizeof(float) * (size_t)(ctx * V));
    double *kl = malloc(sizeof(double) * (size_t)(windows * (ctx - 1)));
    int64_t np = 0, ag = 0;
    for (int64_t w = 0; w < windows; w++) {
        kv_cache *ca = NULL, *cb = NULL;
        kv_cache_new(m, 1, ctx, &ca, &err);
        kv_cache_new(base, 1, ctx, &cb, &err);
        CHECK(kv_model_forward1(m, ca, 0, ids + w * ctx, ctx, KV_LOGITS_ALL, la, &err) == KV_OK);
        CHECK(kv_model_forward1(base, cb, 0, ids + w * ctx, ctx, KV_LOGITS_ALL, lb, &err) == KV_OK);
        for (int64_t t = 0; t + 1 < ctx; t++) {
            const float *q = la + t * V, *p = lb + t * V;
            double mq = -INFINITY, mp = -INFINITY, sq = 0, sp = 0, s = 0;
            int64_t aq = 0, ap = 0;
            for (int64_t v = 0; v < V; v++) {
                if (q[v] > mq) mq = q[v], aq = v;
                if (p[v] > mp) mp = p[v], ap = v;
            }
            for (int64_t v = 0; v < V; v++) sq += exp(q[v] - mq), sp += exp(p[v] - mp);
            double lq = mq + log(sq), lp = mp + log(sp);
            for (int64_t v = 0; v < V; v++) s += exp(p[v] - lp) * ((p[v] - lp) - (q[v] - lq));
            kl[np++] = s;
            ag += aq == ap;
        }
        kv_cache_free(ca);
        kv_cache_free(cb);
    }
    double sum = 0;
    for (int64_t i = 0; i < np; i++) sum += kl[i];
    *mean = sum / (double)np;
    *agree = (double)ag / (double)np;
    /* p99 by selection: the value with 99% of the others at or below it (interpolated) */
    for (int64_t i = 1; i < np; i++) /* insertion sort: np is small */
        for (int64_t j = i; j > 0 && kl[j - 1] > kl[j]; j--) {
            double t = kl[j];
            kl[j] = kl[j - 1];
            kl[j - 1] = t;
        }
    double pos = 0.99 * (double)(np - 1);
    int64_t lo = (int64_t)pos;
    *p99 = kl[lo] + (pos - (double)lo) * (kl[lo + 1 < np ? lo + 1 : lo] - kl[lo]);
    free(la), free(lb), free(kl);
}

static void test_kld(void) {
    kv_err err = {0};
    kv_model *base = NULL, *q = NULL, *other = NULL;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/kld_q", tmpdir);
    CHECK(quantize("models/tiny-qwen3", dir, "int3-g128") == 0);
    CHECK(kv_model_load("models/tiny-qwen3", &base, &err) == KV_OK);
    CHECK(kv_model_load(dir, &q, &err) == KV_OK);
    if (!base || !q) goto done;
    int32_t ids[200];
    for (int i = 0; i < 200; i++) ids[i] = (int32_t)((i * 7919 + 13) % 8320);
    kv_ppl_opts opts = {.ctx = 48, .chunk = 20}; /* chunks that do not divide the window */
    kv_ppl_result r, rb;
    kv_kld_result k;
    /* against itself: 0 and full agreement, and the plain perplexity unchanged */
    CHECK(kv_perplexity_kld(base, base, ids, 200, &opts, NULL, &r, &k, &err) == KV_OK);
    CHECK(kv_perplexity(base, ids, 200, &opts, NULL, &rb, &err) == KV_OK);
    CHECK(k.kld_mean == 0.0 && k.kld_p99 == 0.0 && k.kld_max == 0.0);
    CHECK(k.top1_agree == 1.0);
    CHECK_EQ_INT(k.positions, 4 * 47);
    CHECK(r.nll == rb.nll && k.base.nll == rb.nll);
    /* quantized vs base: > 0 and equal to the direct computation */
    CHECK(kv_perplexity_kld(q, base, ids, 200, &opts, NULL, &r, &k, &err) == KV_OK);
    double mean, p99, agree;
    direct_kld(q, base, ids, 200, 48, &mean, &p99, &agree);
    fprintf(stderr, "  int3-g128 vs base: kld_mean %.6g (direct %.6g) p99 %.6g (direct %.6g) "
            "top1 %.4f (direct %.4f)\n", k.kld_mean, mean, k.kld_p99, p99, k.top1_agree, agree);
    CHECK(k.kld_mean > 0 && k.kld_p99 >= k.kld_mean && k.kld_max >= k.kld_p99);
    /* 1e-9 relative: same logits up to chunking (bit-equal per row in practice), same
     * double formula, sums in a different order */
    CHECK_MSG(fabs(k.kld_mean - mean) <= 1e-9 * mean + 1e-15, "kld_mean %.12g vs %.12g", k.kld_mean, mean);
    CHECK_MSG(fabs(k.kld_p99 - p99) <= 1e-9 * p99 + 1e-15, "kld_p99 %.12g vs %.12g", k.kld_p99, p99);
    CHECK_MSG(fabs(k.top1_agree - agree) < 1e-12, "top1 %.6f vs %.6f", k.top1_agree, agree);
    CHECK(k.top1_agree < 1.0);
    CHECK(fabs(k.base.nll - rb.nll) < 1e-12);
    /* a different vocabulary */
    CHECK(kv_model_load("tests/fixtures/models/qwen3_tied_f32", &other, &err) == KV_OK);
    CHECK_ERR(kv_perplexity_kld(q, other, ids, 100, &opts, NULL, &r, &k, &err), &err, KV_EINVAL,
              "vocabulary (384 tokens) differs from the model's (8320)");
    CHECK_ERR(kv_perplexity_kld(q, NULL, ids, 100, &opts, NULL, &r, &k, &err), &err, KV_EINVAL,
              "needs a base model");
done:
    kv_model_free(base);
    kv_model_free(q);
    kv_model_free(other);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_test_qrun_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KV_RUN(test_logits_equal_dequantized);
    KV_RUN(test_quantize_in_memory);
    KV_RUN(test_load_errors);
    KV_RUN(test_kld);
    nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return kv_test_summary();
}
