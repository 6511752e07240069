/* model.c — load a Qwen3/Qwen2/Llama checkpoint and run its forward pass on CPU.
 *
 * Pipeline stage: load -> run. The forward pass reproduces transformers' modeling
 * code (Qwen3ForCausalLM, Qwen2ForCausalLM, LlamaForCausalLM) in fp32, op for op:
 *   x = embed[id]
 *   per layer: h = RMSNorm(x); q,k,v = h Wq^T (+b), h Wk^T (+b), h Wv^T (+b)
 *              Qwen3: q,k = RMSNorm_head(q), RMSNorm_head(k)   (before RoPE)
 *              q,k = RoPE(q,k) (rotate_half); append k,v to the cache
 *              a = softmax(q k^T / sqrt(head_dim), causal) v   (grouped-query)
 *              x = x + a Wo^T (+b)
 *              h = RMSNorm(x); x = x + (silu(h Wg^T) * (h Wu^T)) Wd^T
 *   logits = RMSNorm(x) W_lm^T   (W_lm = embed when tied)
 * Weights stay in the mmap'd checkpoint (bf16/f16/f32, widened inside the kernels);
 * only the small vectors (norm weights, biases) get fp32 copies, in one allocation.
 *
 * Quantized checkpoints (config.json "quantization_config" with a kvant "format", issue
 * 3): every block linear layer stored as packed parts (quant.h: qweight/qzeros/scales/
 * g_idx or _blocks/_scales) is validated at load and run by the qmatmul kernels, which
 * dequantize inside the kernel; MX parts are read in place, GPTQ int parts through one
 * row-major copy of the packed words (kernels.h, kv_qmat). A linear layer whose dense
 * ".weight" is present instead stays dense. Never a dequantized copy of the model.
 *
 * Batching: the tokens of every sequence in a kv_batch are stacked into one
 * [sum n, hidden] activation matrix, so each weight matrix is read once per batch;
 * attention runs per sequence against its own cache slot.
 *
 * Threads: each op is one OpenMP parallel region in which every output (a weight row
 * range, a token row, an attention (token, head) pair) is owned by one thread and
 * computed in a fixed order, so results do not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kvant/fileio.h"
#include "kvant/kernels.h"
#include "kvant/model.h"
#include "kvant/quant.h"
#include "kvant/quantize.h"
#include "kvant/safetensors.h"
#include "model/model_internal.h"

/* A linear layer's weight [n_out, n_in]: dense (a view into the checkpoint) or, when q
 * is set, quantized (the kernel view of its packed parts). */
typedef struct {
    kv_wmat w;
    const kv_qmat *q;
} linw;

typedef struct {
    linw wq, wk, wv, wo, wg, wu, wd;           /* [n_out, n_in] */
    const float *bq, *bk, *bv, *bo, *bg, *bu, *bd; /* fp32 biases or NULL */
    const float *in_norm, *post_norm;          /* [hidden] */
    const float *q_norm, *k_norm;              /* [head_dim] (Qwen3) or NULL */
} layer_w;

struct kv_model {
    kv_config cfg;
    kv_weights *weights; /* owned; NULL for a model built from memory */
    layer_w *layers;     /* [n_layers] */
    kv_wmat embed;       /* [vocab, hidden] */
    kv_wmat lm_head;     /* [vocab, hidden]: == embed when tied */
    const float *final_norm;
    float *inv_freq;     /* [head_dim / 2] */
    float *small;        /* one allocation: every fp32 vector above */
    int64_t n_params;
    int64_t n_small;     /* floats in `small` */
    int64_t decode_bytes;
    int quantized;       /* config.json has a quantization_config */
    kv_qformat qf;       /* its format */
    kv_qmat *qmats;      /* [n_layers * 7]: the quantized linear layers (owned) */
    int64_t n_qmats;
    kv_qtensor *qts;     /* [n_layers * 7] packed parts quantized in memory (owned; MX
                            qmats view them) or NULL (kv_model_quantize) */
    kv_act_mode act;     /* activations of the quantized layers (kv_model_set_act_mode) */

    /* run state: one allocation, grown when a bigger batch / context / team arrives */
    void *scratch;
    int64_t cap_tokens, cap_ctx;
    int cap_threads;
    float *x, *xn, *q, *k, *v, *att, *g, *u; /* [T, hidden] ... [T, intermediate] */
    float *cosv, *sinv;                      /* [T, head_dim / 2] */
    float *scores;                           /* [threads][ATT_TQ + head_dim][ctx] */
    float *work;                             /* [threads, KV_MATMUL_WORK_FLOATS] */
    int64_t *pos;                            /* [T] position of each stacked token */
    int64_t *blk;                            /* [T] first stacked token of each query block */
    int32_t *tseq;                           /* [T] batch index of each stacked token */
};

struct kv_cache {
    int64_t n_layers, n_kv, head_dim;
    int n_slots;
    int64_t max_len;
    int64_t *len; /* [n_slots] */
    float *k, *v; /* [n_layers][n_slots][n_kv][max_len][head_dim] */
};

/* ---- loading ------------------------------------------------------------------- */

/* Where tensors come from: a checkpoint's kv_weights or an array in memory. */
typedef struct {
    const kv_weights *w;
    const kv_tensor *arr;
    int n;
} tsrc;

static kv_status tsrc_get(const tsrc *s, const char *name, int ndim, const int64_t *shape,
                          const kv_tensor **out, kv_err *err) {
    if (s->w) return kv_weights_get(s->w, name, KV_DMASK_FLOAT, ndim, shape, out, err);
    for (int i = 0; i < s->n; i++) {
        const kv_tensor *t = &s->arr[i];
        if (!t->name || strcmp(t->name, name) != 0) continue;
        if (t->dtype != KV_DTYPE_F32 && t->dtype != KV_DTYPE_F16 && t->dtype != KV_DTYPE_BF16)
            return kv_err_set(err, KV_EUNSUPPORTED, "memory: %s: dtype %s not supported", name,
                              kv_dtype_name(t->dtype));
        int ok = t->ndim == ndim && t->data;
        for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
        if (!ok) {
            char buf[96];
            return kv_err_set(err, KV_EFORMAT, "memory: %s: shape %s, expected [%lld%s%lld]",
                              name, kv_shape_str(t, buf, sizeof buf), (long long)shape[0],
                              ndim > 1 ? ", " : "", ndim > 1 ? (long long)shape[1] : 0LL);
        }
        *out = t;
        return KV_OK;
    }
    return kv_err_set(err, KV_ENOTFOUND, "memory: tensor %s not found", name);
}

static kv_wmat to_wmat(const kv_tensor *t) {
    kv_wmat w = {t->dtype, t->data, t->shape[0], t->shape[1], t->shape[1]};
    return w;
}

static size_t wmat_bytes(const kv_wmat *w) {
    return (size_t)w->n_out * (size_t)w->n_in * kv_dtype_size(w->dtype);
}

/* RoPE inverse frequencies exactly as transformers' rope init functions compute them
 * in float32: inv = 1 / theta^(float(2j) / dim), then the llama3 or linear rescale. */
static void compute_inv_freq(const kv_config *c, float *inv) {
    const int64_t d = c->head_dim, half = d / 2;
    for (int64_t j = 0; j < half; j++) {
        float e = (float)(2 * j) / (float)d;
        inv[j] = 1.0f / powf((float)c->rope_theta, e);
    }
    if (c->rope_type == KV_ROPE_LINEAR) {
        for (int64_t j = 0; j < half; j++) inv[j] = inv[j] / (float)c->rope_factor;
    } else if (c->rope_type == KV_ROPE_LLAMA3) {
        const float factor = (float)c->rope_factor;
        const float lf = (float)c->rope_low_freq_factor;
        const double old = (double)c->rope_original_max_pos;
        const float low_wl = (float)(old / c->rope_low_freq_factor);
        const float high_wl = (float)(old / c->rope_high_freq_factor);
        const float denom = (float)(c->rope_high_freq_factor - c->rope_low_freq_factor);
        const float two_pi = (float)(2.0 * M_PI);
        for (int64_t j = 0; j < half; j++) {
            float wl = two_pi / inv[j];
            float il = wl > low_wl ? inv[j] / factor : inv[j];
            float sm = ((float)old / wl - lf) / denom;
            float smoothed = (1.0f - sm) * il / factor + sm * il;
            int medium = !(wl < high_wl) && !(wl > low_wl);
            inv[j] = medium ? smoothed : il;
        }
    }
}

static kv_status check_config(const kv_config *c, const char *where, kv_err *err) {
    if (c->hidden_size <= 0 || c->intermediate_size <= 0 || c->n_layers <= 0 ||
        c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 || c->vocab_size <= 0)
        return kv_err_set(err, KV_EFORMAT, "%s: non-positive model dimension", where);
    if (c->head_dim % 2)
        return kv_err_set(err, KV_EUNSUPPORTED, "%s: odd head_dim %lld", where,
                          (long long)c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return kv_err_set(err, KV_EFORMAT, "%s: num_attention_heads %lld not a multiple of "
                          "num_key_value_heads %lld", where, (long long)c->n_heads,
                          (long long)c->n_kv_heads);
    if (c->n_layers > 100000 || c->vocab_size > ((int64_t)1 << 31))
        return kv_err_set(err, KV_EFORMAT, "%s: implausible layer count or vocab size", where);
    return KV_OK;
}

/* Vectors copied to fp32, in the order they are carved from m->small. */
static kv_status get_vec(const tsrc *s, const char *name, int64_t n, float **cursor,
                         const float **out, int64_t *n_params, kv_err *err) {
    const kv_tensor *t;
    kv_status st = tsrc_get(s, name, 1, &n, &t, err);
    if (st) return st;
    kv_to_f32(t->dtype, t->data, *cursor, (size_t)n);
    *out = *cursor;
    *cursor += n;
    *n_params += n;
    return KV_OK;
}

static kv_status get_mat(const tsrc *s, const char *name, int64_t rows, int64_t cols,
                         kv_wmat *out, int64_t *n_params, kv_err *err) {
    const kv_tensor *t;
    int64_t shape[2] = {rows, cols};
    kv_status st = tsrc_get(s, name, 2, shape, &t, err);
    if (st) return st;
    *out = to_wmat(t);
    *n_params += rows * cols;
    return KV_OK;
}

/* A block linear layer: dense when `name` is in the checkpoint as a float tensor (or the
 * model is not quantized), else the packed parts quant.h names for it, checked
 * (dtype, shape, kv_qtensor_validate) and turned into the kernels' view. */
static kv_status get_lin(kv_model *m, const tsrc *s, const char *name, int64_t rows,
                         int64_t cols, linw *out, int64_t *n_params, kv_err *err) {
    out->q = NULL;
    if (!m->quantized || !s->w || kv_weights_find(s->w, name))
        return get_mat(s, name, rows, cols, &out->w, n_params, err);
    kv_qtensor qt;
    kv_status st = kv_qtensor_init(&qt, m->qf, rows, cols, name, err);
    if (st) return st;
    const char *file = "checkpoint";
    for (int p = 0; p < qt.n_parts; p++) {
        char pn[320];
        const kv_tensor *t;
        if (!kv_qpart_name(&qt, p, name, pn, sizeof pn))
            return kv_err_set(err, KV_EINVAL, "model: tensor name too long: %s", name);
        st = kv_weights_get(s->w, pn, KV_DMASK(qt.part[p].dtype), qt.part[p].ndim,
                            qt.part[p].shape, &t, err);
        if (st) {
            if (st == KV_ENOTFOUND)
                kv_err_prefix(err, "quantized checkpoint: neither %s nor its packed part", name);
            return st;
        }
        qt.data[p] = t->data;
        if (t->file) file = t->file;
    }
    if ((st = kv_qtensor_validate(&qt, name, err))) return kv_err_prefix(err, "%s", file);
    kv_qmat *qm = &m->qmats[m->n_qmats];
    if ((st = kv_qmat_init(qm, &qt, name, err))) return st;
    m->n_qmats++;
    out->q = qm;
    out->w = (kv_wmat){KV_DTYPE_F32, NULL, rows, cols, cols};
    *n_params += rows * cols;
    return KV_OK;
}

static size_t lin_bytes(const linw *l) { return l->q ? kv_qmat_bytes(l->q) : wmat_bytes(&l->w); }

/* The bytes one decode step reads: every weight once, one embedding row, the fp32 vectors. */
static int64_t decode_bytes(const kv_model *m) {
    const kv_config *c = &m->cfg;
    int64_t bytes = (int64_t)wmat_bytes(&m->lm_head) + c->hidden_size * (int64_t)kv_dtype_size(m->embed.dtype);
    for (int64_t l = 0; l < c->n_layers; l++) {
        const layer_w *lw = &m->layers[l];
        bytes += (int64_t)(lin_bytes(&lw->wq) + lin_bytes(&lw->wk) + lin_bytes(&lw->wv) +
                           lin_bytes(&lw->wo) + lin_bytes(&lw->wg) + lin_bytes(&lw->wu) +
                           lin_bytes(&lw->wd));
    }
    return bytes + m->n_small * (int64_t)sizeof(float);
}

static kv_status build(kv_model *m, const tsrc *s, kv_err *err) {
    const kv_config *c = &m->cfg;
    const int64_t H = c->hidden_size, I = c->intermediate_size, hd = c->head_dim;
    const int64_t Q = c->n_heads * hd, KV = c->n_kv_heads * hd, L = c->n_layers;
    kv_status st;

    /* fp32 vectors: per layer 2 norms (+2 qk norms, + biases), final norm, inv_freq */
    int64_t per_layer = 2 * H + (c->qk_norm ? 2 * hd : 0) + (c->attention_bias ? Q + 2 * KV : 0) +
                        (c->o_bias ? H : 0) + (c->mlp_bias ? 2 * I + H : 0);
    int64_t n_small = L * per_layer + H + hd / 2;
    m->small = kv_malloc((size_t)n_small * sizeof(float), err, "model: small tensors");
    m->layers = kv_calloc((size_t)L, sizeof(layer_w), err, "model: layer table");
    if (!m->small || !m->layers) return err ? err->code : KV_ENOMEM;
    if (m->quantized) {
        m->qmats = kv_calloc((size_t)L * 7, sizeof(kv_qmat), err, "model: quantized layer table");
        if (!m->qmats) return KV_ENOMEM;
    }
    float *cur = m->small;
    int64_t np = 0;
    char name[256];
#define NAME(...) (snprintf(name, sizeof name, __VA_ARGS__), name)

    const kv_tensor *emb;
    int64_t eshape[2] = {c->vocab_size, H};
    if ((st = tsrc_get(s, "model.embed_tokens.weight", 2, eshape, &emb, err))) return st;
    m->embed = to_wmat(emb);
    np += c->vocab_size * H;

    for (int64_t l = 0; l < L; l++) {
        layer_w *lw = &m->layers[l];
        const char *p = "model.layers";
        if ((st = get_vec(s, NAME("%s.%lld.input_layernorm.weight", p, (long long)l), H, &cur,
                          &lw->in_norm, &np, err)) ||
            (st = get_vec(s, NAME("%s.%lld.post_attention_layernorm.weight", p, (long long)l), H,
                          &cur, &lw->post_norm, &np, err)) ||
            (st = get_lin(m, s, NAME("%s.%lld.self_attn.q_proj.weight", p, (long long)l), Q, H,
                          &lw->wq, &np, err)) ||
            (st = get_lin(m, s, NAME("%s.%lld.self_attn.k_proj.weight", p, (long long)l), KV, H,
                          &lw->wk, &np, err)) ||
            (st = get_lin(m, s, NAME("%s.%lld.self_attn.v_proj.weight", p, (long long)l), KV, H,
                          &lw->wv, &np, err)) ||
            (st = get_lin(m, s, NAME("%s.%lld.self_attn.o_proj.weight", p, (long long)l), H, Q,
                          &lw->wo, &np, err)) ||
            (st = get_lin(m, s, NAME("%s.%lld.mlp.gate_proj.weight", p, (long long)l), I, H, &lw->wg,
                          &np, err)) ||
            (st = get_lin(m, s, NAME("%s.%lld.mlp.up_proj.weight", p, (long long)l), I, H, &lw->wu,
                          &np, err)) ||
            (st = get_lin(m, s, NAME("%s.%lld.mlp.down_proj.weight", p, (long long)l), H, I, &lw->wd,
                          &np, err)))
            return st;
        if (c->qk_norm &&
            ((st = get_vec(s, NAME("%s.%lld.self_attn.q_norm.weight", p, (long long)l), hd, &cur,
                           &lw->q_norm, &np, err)) ||
             (st = get_vec(s, NAME("%s.%lld.self_attn.k_norm.weight", p, (long long)l), hd, &cur,
                           &lw->k_norm, &np, err))))
            return st;
        if (c->attention_bias &&
            ((st = get_vec(s, NAME("%s.%lld.self_attn.q_proj.bias", p, (long long)l), Q, &cur,
                           &lw->bq, &np, err)) ||
             (st = get_vec(s, NAME("%s.%lld.self_attn.k_proj.bias", p, (long long)l), KV, &cur,
                           &lw->bk, &np, err)) ||
             (st = get_vec(s, NAME("%s.%lld.self_attn.v_proj.bias", p, (long long)l), KV, &cur,
                           &lw->bv, &np, err))))
            return st;
        if (c->o_bias && (st = get_vec(s, NAME("%s.%lld.self_attn.o_proj.bias", p, (long long)l),
                                       H, &cur, &lw->bo, &np, err)))
            return st;
        if (c->mlp_bias &&
            ((st = get_vec(s, NAME("%s.%lld.mlp.gate_proj.bias", p, (long long)l), I, &cur,
                           &lw->bg, &np, err)) ||
             (st = get_vec(s, NAME("%s.%lld.mlp.up_proj.bias", p, (long long)l), I, &cur, &lw->bu,
                           &np, err)) ||
             (st = get_vec(s, NAME("%s.%lld.mlp.down_proj.bias", p, (long long)l), H, &cur,
                           &lw->bd, &np, err))))
            return st;
    }
    if ((st = get_vec(s, "model.norm.weight", H, &cur, &m->final_norm, &np, err))) return st;
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
    } else if ((st = get_mat(s, "lm_head.weight", c->vocab_size, H, &m->lm_head, &np, err))) {
        return st;
    }
#undef NAME
    m->inv_freq = cur;
    cur += hd / 2;
    compute_inv_freq(c, m->inv_freq);
    m->n_params = np;

    m->n_small = n_small;
    m->decode_bytes = decode_bytes(m);
    kv_kernels_init();
    return KV_OK;
}

/* config.json's "quantization_config": absent -> not quantized; a kvant "format" ->
 * that format; anything else is a quantization kvant does not run. */
static kv_status read_quant_config(const char *dir, kv_model *m, kv_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    kv_status st = kv_read_file(path, &text, &len, err);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return kv_err_set(err, KV_EFORMAT, "%s: not valid JSON", path);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (q && !cJSON_IsNull(q)) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(q, "format");
        const cJSON *qm = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
        if (!cJSON_IsString(f)) {
            st = kv_err_set(err, KV_EUNSUPPORTED, "%s: quantization_config (quant_method %s) has "
                            "no kvant \"format\"; only checkpoints written by kvant quantize "
                            "are supported", path, cJSON_IsString(qm) ? qm->valuestring : "?");
        } else if ((st = kv_qformat_parse(f->valuestring, &m->qf, err)) == KV_OK) {
            m->quantized = 1;
        } else {
            kv_err_prefix(err, "%s: quantization_config", path);
        }
    }
    cJSON_Delete(root);
    return st;
}

kv_status kv_model_load(const char *dir, kv_model **out, kv_err *err) {
    *out = NULL;
    kv_model *m = kv_calloc(1, sizeof *m, err, "model");
    if (!m) return KV_ENOMEM;
    kv_status st = kv_config_load(dir, &m->cfg, err);
    if (!st) st = check_config(&m->cfg, dir, err);
    if (!st) st = read_quant_config(dir, m, err);
    if (!st) st = kv_weights_open(dir, &m->weights, err);
    if (!st) {
        tsrc s = {m->weights, NULL, 0};
        st = build(m, &s, err);
    }
    if (st) {
        kv_model_free(m);
        return st;
    }
    *out = m;
    return KV_OK;
}

kv_status kv_model_from_tensors(const kv_config *cfg, const kv_tensor *tensors, int n,
                                kv_model **out, kv_err *err) {
    *out = NULL;
    kv_model *m = kv_calloc(1, sizeof *m, err, "model");
    if (!m) return KV_ENOMEM;
    m->cfg = *cfg;
    tsrc s = {NULL, tensors, n};
    kv_status st = check_config(&m->cfg, "memory", err);
    if (!st) st = build(m, &s, err);
    if (st) {
        kv_model_free(m);
        return st;
    }
    *out = m;
    return KV_OK;
}

void kv_model_free(kv_model *m) {
    if (!m) return;
    kv_weights_close(m->weights);
    for (int64_t i = 0; i < m->n_qmats; i++) kv_qmat_free(&m->qmats[i]);
    free(m->qmats);
    if (m->qts)
        for (int64_t i = 0; i < m->cfg.n_layers * 7; i++) kv_qtensor_free(&m->qts[i]);
    free(m->qts);
    free(m->layers);
    free(m->small);
    free(m->scratch);
    free(m);
}

kv_status kv_model_quantize(kv_model *m, kv_qformat qf, const kv_quant_opts *opts, kv_err *err) {
    if (m->quantized)
        return kv_err_set(err, KV_EINVAL, "model: already quantized; kv_model_quantize takes a dense model");
    if (m->qmats) /* a failed call's half-converted layers */
        return kv_err_set(err, KV_EINVAL, "model: an earlier kv_model_quantize failed on it; load it again");
    kv_status st = kv_qformat_check(qf, err);
    if (st) return st;
    const int64_t L = m->cfg.n_layers;
    m->qmats = kv_calloc((size_t)L * 7, sizeof(kv_qmat), err, "model: quantized layer table");
    m->qts = kv_calloc((size_t)L * 7, sizeof(kv_qtensor), err, "model: quantized parts");
    if (!m->qmats || !m->qts) return err ? err->code : KV_ENOMEM;
    static const char *const names[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};
    for (int64_t l = 0; l < L; l++) {
        layer_w *lw = &m->layers[l];
        linw *lins[7] = {&lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->wg, &lw->wu, &lw->wd};
        for (int i = 0; i < 7; i++) {
            const kv_wmat *w = &lins[i]->w;
            char name[96];
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l, names[i]);
            if (w->ld != w->n_in)
                return kv_err_set(err, KV_EUNSUPPORTED, "model: %s: strided rows cannot be quantized", name);
            kv_tensor t = {name, w->dtype, 2, {w->n_out, w->n_in}, w->data,
                           (size_t)(w->n_out * w->n_in) * kv_dtype_size(w->dtype), "memory"};
            kv_qtensor *qt = &m->qts[l * 7 + i];
            kv_qmat *qm = &m->qmats[m->n_qmats];
            if ((st = kv_quantize_tensor(&t, qf, opts, qt, name, err))) return st;
            if ((st = kv_qmat_init(qm, qt, name, err))) return st;
            m->n_qmats++;
            if (qm->owned) kv_qtensor_free(qt); /* INT: the kernel layout is a copy */
            lins[i]->q = qm;
            lins[i]->w = (kv_wmat){KV_DTYPE_F32, NULL, w->n_out, w->n_in, w->n_in};
        }
    }
    m->quantized = 1;
    m->qf = qf;
    m->decode_bytes = decode_bytes(m);
    return KV_OK;
}

const kv_config *kv_model_config(const kv_model *m) { return m ? &m->cfg : NULL; }
int64_t kv_model_n_params(const kv_model *m) { return m ? m->n_params : 0; }
int64_t kv_model_decode_bytes(const kv_model *m) { return m ? m->decode_bytes : 0; }

void kv_model_set_act_mode(kv_model *m, kv_act_mode mode) {
    if (m) m->act = mode >= KV_ACT_EXACT && mode <= KV_ACT_Q8 ? mode : KV_ACT_EXACT;
}
kv_act_mode kv_model_act_mode(const kv_model *m) { return m ? m->act : KV_ACT_EXACT; }

/* ---- KV cache ------------------------------------------------------------------- */

kv_status kv_cache_new(const kv_model *m, int n_slots, int64_t max_len, kv_cache **out,
                       kv_err *err) {
    *out = NULL;
    if (!m || n_slots < 1 || max_len < 1)
        return kv_err_set(err, KV_EINVAL, "kv cache: need a model, n_slots >= 1 and max_len >= 1 "
                          "(got %d, %lld)", n_slots, (long long)max_len);
    const kv_config *c = &m->cfg;
    /* floats per cache = layers * slots * kv_heads * max_len * head_dim, checked for
     * overflow in double before the int64 product */
    double f = (double)c->n_layers * n_slots * (double)c->n_kv_heads * (double)max_len *
               (double)c->head_dim * 2.0 * sizeof(float);
    if (f > (double)SIZE_MAX / 2 || f > 9.0e18)
        return kv_err_set(err, KV_ERANGE, "kv cache: %d slots x %lld tokens is too large",
                          n_slots, (long long)max_len);
    size_t per = (size_t)c->n_layers * (size_t)n_slots * (size_t)c->n_kv_heads *
                 (size_t)max_len * (size_t)c->head_dim;
    kv_cache *kc = kv_calloc(1, sizeof *kc, err, "kv cache");
    if (!kc) return KV_ENOMEM;
    kc->n_layers = c->n_layers;
    kc->n_kv = c->n_kv_heads;
    kc->head_dim = c->head_dim;
    kc->n_slots = n_slots;
    kc->max_len = max_len;
    kc->len = kv_calloc((size_t)n_slots, sizeof(int64_t), err, "kv cache: lengths");
    kc->k = kv_malloc(2 * per * sizeof(float), err, "kv cache: keys and values");
    if (!kc->len || !kc->k) {
        kv_cache_free(kc);
        return KV_ENOMEM;
    }
    kc->v = kc->k + per;
    *out = kc;
    return KV_OK;
}

void kv_cache_free(kv_cache *c) {
    if (!c) return;
    free(c->len);
    free(c->k);
    free(c);
}

int64_t kv_cache_len(const kv_cache *c, int slot) {
    if (!c || slot < 0 || slot >= c->n_slots) return 0;
    return c->len[slot];
}

void kv_cache_truncate(kv_cache *c, int slot, int64_t len) {
    if (!c || slot < 0 || slot >= c->n_slots || len < 0) return;
    if (len < c->len[slot]) c->len[slot] = len;
}

/* Offset (floats) of position pos of kv head h in layer l, slot s. */
static inline size_t cache_off(const kv_cache *c, int64_t l, int64_t s, int64_t h, int64_t pos) {
    return ((((size_t)l * (size_t)c->n_slots + (size_t)s) * (size_t)c->n_kv + (size_t)h) *
                (size_t)c->max_len +
            (size_t)pos) *
           (size_t)c->head_dim;
}

kv_status kv_cache_copy_prefix(kv_cache *c, int src, int dst, int64_t len, kv_err *err) {
    if (!c || src < 0 || src >= c->n_slots || dst < 0 || dst >= c->n_slots)
        return kv_err_set(err, KV_EINVAL, "kv cache: slot %d or %d out of range", src, dst);
    if (len < 0 || len > c->len[src])
        return kv_err_set(err, KV_ERANGE, "kv cache: prefix %lld longer than slot %d (%lld)",
                          (long long)len, src, (long long)c->len[src]);
    if (src != dst) {
        size_t nb = (size_t)len * (size_t)c->head_dim * sizeof(float);
        for (int64_t l = 0; l < c->n_layers; l++)
            for (int64_t h = 0; h < c->n_kv; h++) {
                memcpy(c->k + cache_off(c, l, dst, h, 0), c->k + cache_off(c, l, src, h, 0), nb);
                memcpy(c->v + cache_off(c, l, dst, h, 0), c->v + cache_off(c, l, src, h, 0), nb);
            }
    }
    c->len[dst] = len;
    return KV_OK;
}

/* ---- run state ------------------------------------------------------------------ */

/* Attention for a sequence with at least ATT_BLOCK_MIN new tokens runs on blocks of up
 * to ATT_TQ query tokens per head with the matmul kernel (scores = Q K^T, then P V);
 * shorter ones (decode steps) take one dot product per key and one axpy per value. */
#define ATT_TQ 64
#define ATT_BLOCK_MIN 8

static size_t round16(int64_t n) { return ((size_t)n + 15) & ~(size_t)15; }

static kv_status ensure_scratch(kv_model *m, int64_t T, int64_t ctx, int threads, kv_err *err) {
    if (m->scratch && T <= m->cap_tokens && ctx <= m->cap_ctx && threads <= m->cap_threads)
        return KV_OK;
    /* grow to at least the old capacity so alternating shapes do not reallocate */
    if (T < m->cap_tokens) T = m->cap_tokens;
    if (ctx < m->cap_ctx) ctx = m->cap_ctx;
    if (threads < m->cap_threads) threads = m->cap_threads;
    const kv_config *c = &m->cfg;
    const int64_t H = c->hidden_size, I = c->intermediate_size, hd = c->head_dim;
    const int64_t Q = c->n_heads * hd, KV = c->n_kv_heads * hd;
    size_t sz[] = {
        round16(T * H), round16(T * H), round16(T * Q), round16(T * KV), round16(T * KV),
        round16(T * Q), round16(T * I), round16(T * I), round16(T * hd / 2), round16(T * hd / 2),
        (size_t)threads * (size_t)(ATT_TQ + hd) * round16(ctx),
        (size_t)threads * KV_MATMUL_WORK_FLOATS,
        round16(2 * T), /* pos: T int64 */
        round16(2 * T), /* blk: T int64 */
        round16(T),     /* tseq: T int32 */
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) total += sz[i];
    free(m->scratch);
    m->scratch = NULL;
    m->cap_tokens = m->cap_ctx = 0;
    m->cap_threads = 0;
    size_t bytes = total * sizeof(float);
    void *p = aligned_alloc(64, bytes);
    if (!p)
        return kv_err_set(err, KV_ENOMEM, "model: out of memory allocating %zu bytes of run "
                          "state for %lld tokens", bytes, (long long)T);
    m->scratch = p;
    float *f = p;
    float **dst[] = {&m->x, &m->xn, &m->q, &m->k, &m->v, &m->att, &m->g, &m->u,
                     &m->cosv, &m->sinv, &m->scores, &m->work};
    size_t i = 0;
    for (; i < sizeof dst / sizeof dst[0]; i++) {
        *dst[i] = f;
        f += sz[i];
    }
    m->pos = (int64_t *)f;
    f += sz[i++];
    m->blk = (int64_t *)f;
    f += sz[i++];
    m->tseq = (int32_t *)f;
    m->cap_tokens = T;
    m->cap_ctx = ctx;
    m->cap_threads = threads;
    return KV_OK;
}

/* ---- forward -------------------------------------------------------------------- */

/* Rows [r0, r1) of n for thread t of nt, in multiples of 64 (whole GEMM panels). */
static void split_rows(int64_t n, int nt, int t, int64_t *r0, int64_t *r1) {
    int64_t chunk = (n + nt - 1) / nt;
    chunk = (chunk + 63) & ~(int64_t)63;
    int64_t a = chunk * t, b = a + chunk;
    *r0 = a < n ? a : n;
    *r1 = b < n ? b : n;
}

/* y_i[T, n_out_i] = x[T, n_in] W_i^T (+ bias_i) for n independent matrices sharing
 * one input (q/k/v, gate/up) in one parallel region: each thread takes its row share
 * of every matrix, so the team meets at one barrier instead of n. */
static void mm_n(kv_model *m, const kv_kernel_ops *ops, int nth, const float *x, int64_t T,
                 int64_t ldx, int n, const linw *const *w, const float *const *bias,
                 float *const *y, const int64_t *ldy) {
    float *work = m->work;
    /* the quantized kernel: exact, or int8 activations when the mode asks for them */
    const kv_qmatmul_fn qmm = m->act == KV_ACT_Q8 || (m->act == KV_ACT_Q8_DECODE && T <= 4)
                                  ? kv_kernels_qmatmul_q8(ops)
                                  : ops->qmatmul;
#pragma omp parallel num_threads(nth)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        for (int i = 0; i < n; i++) {
            int64_t r0, r1;
            split_rows(w[i]->w.n_out, nt, t, &r0, &r1);
            float *wk = work + (size_t)t * KV_MATMUL_WORK_FLOATS;
            if (w[i]->q)
                qmm(x, T, ldx, w[i]->q, bias[i], r0, r1, y[i], ldy[i], wk);
            else
                ops->matmul(x, T, ldx, &w[i]->w, bias[i], r0, r1, y[i], ldy[i], wk);
        }
    }
}

/* y[T, n_out] = x[T, n_in] W^T (+ bias), weight rows split across the team. */
static void mm(kv_model *m, const kv_kernel_ops *ops, int nth, const float *x, int64_t T,
               int64_t ldx, const linw *w, const float *bias, float *y, int64_t ldy) {
    mm_n(m, ops, nth, x, T, ldx, 1, &w, &bias, &y, &ldy);
}

static kv_status check_batch(const kv_model *m, const kv_cache *c, const kv_batch *b,
                             kv_logits_mode mode, const float *logits, int64_t *T_out,
                             int64_t *ctx_out, kv_err *err) {
    const kv_config *cfg = &m->cfg;
    if (!c || !b || b->n_seq < 0 || (b->n_seq > 0 && (!b->slot || !b->ids || !b->n)))
        return kv_err_set(err, KV_EINVAL, "model: forward: missing cache or batch");
    if (c->n_layers != cfg->n_layers || c->n_kv != cfg->n_kv_heads || c->head_dim != cfg->head_dim)
        return kv_err_set(err, KV_EINVAL, "model: forward: cache was made for another model");
    if (mode != KV_LOGITS_NONE && !logits)
        return kv_err_set(err, KV_EINVAL, "model: forward: logits buffer is NULL");
    int64_t T = 0, ctx = 0;
    for (int s = 0; s < b->n_seq; s++) {
        int slot = b->slot[s];
        if (slot < 0 || slot >= c->n_slots)
            return kv_err_set(err, KV_ERANGE, "model: forward: sequence %d: slot %d out of range "
                              "[0, %d)", s, slot, c->n_slots);
        for (int r = 0; r < s; r++)
            if (b->slot[r] == slot)
                return kv_err_set(err, KV_EINVAL, "model: forward: sequences %d and %d share "
                                  "slot %d", r, s, slot);
        int64_t n = b->n[s];
        if (n < 0 || (n > 0 && !b->ids[s]))
            return kv_err_set(err, KV_EINVAL, "model: forward: sequence %d: bad token count %lld",
                              s, (long long)n);
        if (n == 0 && mode == KV_LOGITS_LAST)
            return kv_err_set(err, KV_EINVAL, "model: forward: sequence %d is empty but its last "
                              "logits were requested", s);
        int64_t len = c->len[slot];
        if (n > c->max_len - len)
            return kv_err_set(err, KV_ERANGE, "model: forward: sequence %d: %lld + %lld tokens "
                              "exceed the cache capacity %lld", s, (long long)len, (long long)n,
                              (long long)c->max_len);
        for (int64_t i = 0; i < n; i++) {
            int32_t id = b->ids[s][i];
            if (id < 0 || id >= cfg->vocab_size)
                return kv_err_set(err, KV_ERANGE, "model: forward: token id %d at position %lld "
                                  "of sequence %d is out of range [0, %lld)", (int)id,
                                  (long long)i, s, (long long)cfg->vocab_size);
        }
        T += n;
        if (len + n > ctx) ctx = len + n;
    }
    *T_out = T;
    *ctx_out = ctx;
    return KV_OK;
}

kv_status kv_model_forward(kv_model *m, kv_cache *c, const kv_batch *b, kv_logits_mode mode,
                           float *logits, kv_err *err) {
    if (!m) return kv_err_set(err, KV_EINVAL, "model: forward: NULL model");
    int64_t T = 0, ctx = 0;
    kv_status st = check_batch(m, c, b, mode, logits, &T, &ctx, err);
    if (st || T == 0) return st;
    const int nth = omp_get_max_threads();
    if ((st = ensure_scratch(m, T, ctx, nth, err))) return st;

    const kv_kernel_ops *ops = kv_kernels();
    const kv_config *cfg = &m->cfg;
    const int64_t H = cfg->hidden_size, I = cfg->intermediate_size, hd = cfg->head_dim;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, rep = nh / nkv, half = hd / 2;
    const int64_t Q = nh * hd, KV = nkv * hd, V = cfg->vocab_size;
    const float eps = (float)cfg->rms_norm_eps;
    const float scale = (float)(1.0 / sqrt((double)hd));
    float *x = m->x, *xn = m->xn, *q = m->q, *k = m->k, *v = m->v, *att = m->att;
    float *g = m->g, *u = m->u;

    /* stacked token t: batch index, position; attention query blocks; embeddings and
     * RoPE tables */
    int64_t n_blk = 0;
    {
        int64_t t = 0;
        for (int s = 0; s < b->n_seq; s++) {
            for (int64_t i = 0; i < b->n[s]; i++) {
                m->tseq[t + i] = s;
                m->pos[t + i] = c->len[b->slot[s]] + i;
                if (b->n[s] >= ATT_BLOCK_MIN && i % ATT_TQ == 0) m->blk[n_blk++] = t + i;
            }
            t += b->n[s];
        }
    }
    const size_t esz = kv_dtype_size(m->embed.dtype);
#pragma omp parallel for num_threads(nth) schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; t++) {
        int s = m->tseq[t];
        int64_t i = m->pos[t] - c->len[b->slot[s]];
        int32_t id = b->ids[s][i];
        kv_to_f32(m->embed.dtype, (const char *)m->embed.data + (size_t)id * (size_t)H * esz,
                  x + t * H, (size_t)H);
        float *cs = m->cosv + t * half, *sn = m->sinv + t * half;
        for (int64_t j = 0; j < half; j++) {
            float f = (float)m->pos[t] * m->inv_freq[j];
            cs[j] = (float)cos((double)f);
            sn[j] = (float)sin((double)f);
        }
    }

    for (int64_t l = 0; l < cfg->n_layers; l++) {
        const layer_w *lw = &m->layers[l];
#pragma omp parallel for num_threads(nth) schedule(static) if (T > 1)
        for (int64_t t = 0; t < T; t++) ops->rmsnorm(x + t * H, lw->in_norm, H, eps, xn + t * H);
        {
            const linw *w3[3] = {&lw->wq, &lw->wk, &lw->wv};
            const float *b3[3] = {lw->bq, lw->bk, lw->bv};
            float *y3[3] = {q, k, v};
            const int64_t ld3[3] = {Q, KV, KV};
            mm_n(m, ops, nth, xn, T, H, 3, w3, b3, y3, ld3);
        }

        /* per-head q/k norm (Qwen3), RoPE, then k and v into the cache */
#pragma omp parallel for num_threads(nth) schedule(static)
        for (int64_t th = 0; th < T * (nh + nkv); th++) {
            int64_t t = th / (nh + nkv), h = th % (nh + nkv);
            const float *cs = m->cosv + t * half, *sn = m->sinv + t * half;
            if (h < nh) {
                float *qh = q + t * Q + h * hd;
                if (lw->q_norm) ops->rmsnorm(qh, lw->q_norm, hd, eps, qh);
                ops->rope(qh, cs, sn, half);
            } else {
                h -= nh;
                float *kh = k + t * KV + h * hd;
                if (lw->k_norm) ops->rmsnorm(kh, lw->k_norm, hd, eps, kh);
                ops->rope(kh, cs, sn, half);
                int slot = b->slot[m->tseq[t]];
                size_t off = cache_off(c, l, slot, h, m->pos[t]);
                memcpy(c->k + off, kh, (size_t)hd * sizeof(float));
                memcpy(c->v + off, v + t * KV + h * hd, (size_t)hd * sizeof(float));
            }
        }

        /* causal attention; token t attends to positions 0..pos[t] of its own slot
         * (earlier batches' tokens and this batch's, already cached). Two kinds of work
         * item, each owned by one thread: a (token, head) pair of a short sequence, or
         * a (query block, kv head) of a long one, which serves the kv head's `rep`
         * query heads with two matmuls: S = Q_blk K^T and O = P V (V transposed once
         * per item so it reads as a weight matrix). */
        float *scores = m->scores;
        const size_t per_thread = (size_t)(ATT_TQ + hd) * round16(m->cap_ctx);
#pragma omp parallel num_threads(nth)
        {
            const int tid = omp_get_thread_num();
            float *sc = scores + (size_t)tid * per_thread;      /* [ATT_TQ, nk] */
            float *vt = sc + (size_t)ATT_TQ * round16(m->cap_ctx); /* [hd, nk] */
            float *work = m->work + (size_t)tid * KV_MATMUL_WORK_FLOATS;
#pragma omp for schedule(dynamic, 4) nowait
            for (int64_t th = 0; th < T * nh; th++) {
                int64_t t = th / nh, h = th % nh, kvh = h / rep;
                if (b->n[m->tseq[t]] >= ATT_BLOCK_MIN) continue;
                int slot = b->slot[m->tseq[t]];
                int64_t n = m->pos[t] + 1;
                const float *qh = q + t * Q + h * hd;
                const float *kc = c->k + cache_off(c, l, slot, kvh, 0);
                const float *vc = c->v + cache_off(c, l, slot, kvh, 0);
                for (int64_t j = 0; j < n; j++) sc[j] = ops->dot(qh, kc + j * hd, hd) * scale;
                ops->softmax(sc, n);
                float *o = att + t * Q + h * hd;
                memset(o, 0, (size_t)hd * sizeof(float));
                for (int64_t j = 0; j < n; j++) ops->axpy(sc[j], vc + j * hd, o, hd);
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t it = 0; it < n_blk * nkv; it++) {
                int64_t t0 = m->blk[it / nkv], g = it % nkv;
                int s = m->tseq[t0];
                int64_t seq_end = t0 - (m->pos[t0] - c->len[b->slot[s]]) + b->n[s];
                int64_t nb = seq_end - t0 < ATT_TQ ? seq_end - t0 : ATT_TQ;
                int slot = b->slot[s];
                int64_t nk = m->pos[t0 + nb - 1] + 1;
                const float *kc = c->k + cache_off(c, l, slot, g, 0);
                const float *vc = c->v + cache_off(c, l, slot, g, 0);
                for (int64_t j = 0; j < nk; j++)
                    for (int64_t d = 0; d < hd; d++) vt[d * nk + j] = vc[j * hd + d];
                kv_wmat kw = {KV_DTYPE_F32, kc, nk, hd, hd};
                kv_wmat vw = {KV_DTYPE_F32, vt, hd, nk, nk};
                for (int64_t r = 0; r < rep; r++) {
                    int64_t h = g * rep + r;
                    ops->matmul(q + t0 * Q + h * hd, nb, Q, &kw, NULL, 0, nk, sc, nk, work);
                    for (int64_t i = 0; i < nb; i++) {
                        float *row = sc + i * nk;
                        int64_t n = m->pos[t0 + i] + 1;
                        for (int64_t j = 0; j < n; j++) row[j] = row[j] * scale;
                        ops->softmax(row, n);
                        for (int64_t j = n; j < nk; j++) row[j] = 0.0f;
                    }
                    ops->matmul(sc, nb, nk, &vw, NULL, 0, hd, att + t0 * Q + h * hd, Q, work);
                }
            }
        }

        mm(m, ops, nth, att, T, Q, &lw->wo, lw->bo, xn, H);
#pragma omp parallel for num_threads(nth) schedule(static) if (T > 1)
        for (int64_t t = 0; t < T; t++) {
            float *xt = x + t * H, *ot = xn + t * H;
            for (int64_t i = 0; i < H; i++) xt[i] = xt[i] + ot[i];
            ops->rmsnorm(xt, lw->post_norm, H, eps, ot);
        }
        {
            const linw *w2[2] = {&lw->wg, &lw->wu};
            const float *b2[2] = {lw->bg, lw->bu};
            float *y2[2] = {g, u};
            const int64_t ld2[2] = {I, I};
            mm_n(m, ops, nth, xn, T, H, 2, w2, b2, y2, ld2);
        }
#pragma omp parallel for num_threads(nth) schedule(static) if (T > 1)
        for (int64_t t = 0; t < T; t++) ops->silu_mul(g + t * I, u + t * I, g + t * I, I);
        mm(m, ops, nth, g, T, I, &lw->wd, lw->bd, xn, H);
#pragma omp parallel for num_threads(nth) schedule(static) if (T > 1)
        for (int64_t t = 0; t < T; t++) {
            float *xt = x + t * H, *ot = xn + t * H;
            for (int64_t i = 0; i < H; i++) xt[i] = xt[i] + ot[i];
        }
    }

    for (int s = 0; s < b->n_seq; s++) c->len[b->slot[s]] += b->n[s];

    const linw head = {m->lm_head, NULL};
    if (mode == KV_LOGITS_ALL) {
#pragma omp parallel for num_threads(nth) schedule(static) if (T > 1)
        for (int64_t t = 0; t < T; t++) ops->rmsnorm(x + t * H, m->final_norm, H, eps, xn + t * H);
        mm(m, ops, nth, xn, T, H, &head, NULL, logits, V);
    } else if (mode == KV_LOGITS_LAST) {
        int64_t t = 0;
        for (int s = 0; s < b->n_seq; s++) {
            t += b->n[s];
            ops->rmsnorm(x + (t - 1) * H, m->final_norm, H, eps, xn + s * H);
        }
        mm(m, ops, nth, xn, b->n_seq, H, &head, NULL, logits, V);
    }
    return KV_OK;
}

kv_status kv_model_forward1(kv_model *m, kv_cache *c, int slot, const int32_t *ids, int64_t n,
                            kv_logits_mode mode, float *logits, kv_err *err) {
    const int32_t *idv[1] = {ids};
    kv_batch b = {1, &slot, idv, &n};
    return kv_model_forward(m, c, &b, mode, logits, err);
}
