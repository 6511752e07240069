/* train_model.c — the training forward and backward pass of a Qwen3-shaped model in
 * fp32 (see include/kvant/train.h for the math and the threading rule).
 *
 * Pipeline stage: train. Parameters are fp32 master copies in one allocation carved by
 * the size table m->t (kv_param_info), gradients in a second allocation carved the same
 * way. The forward keeps what backward needs (per layer: block input, normed inputs,
 * raw and final q/k, v, attention output, mid residual, gate/up/act, and the RMSNorm
 * inverse rms); attention probabilities are NOT kept: backward recomputes them per
 * (sequence, head) with the same code, which gives the same bits and saves
 * B·heads·T² floats per layer.
 *
 * Backward, as in llm.c: each gradient block restates its forward line first. The three
 * GEMM shapes go through train_gemm.c (kv_kernels() matmul); weight transposes for
 * dX = dY·W are refreshed at the start of every backward (O(params), against the
 * GEMMs' O(params · tokens)). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvant/kernels.h"
#include "kvant/safetensors.h"
#include "kvant/train.h"
#include "train/train_internal.h"

typedef struct {
    int in_norm, post_norm, q_norm, k_norm; /* size-table indices (-1: absent) */
    int lin[KV_LIN_COUNT];
} tlayer;

/* Activations of one layer, kept by the forward for backward. N = B*T tokens. */
typedef struct {
    float *x_in;  /* [N, H]   block input (residual stream) */
    float *r1;    /* [N]      1/rms of x_in */
    float *xn1;   /* [N, H]   RMSNorm(x_in): input of q/k/v */
    float *qr;    /* [N, Q]   q projection, before q-norm */
    float *kr;    /* [N, KV]  k projection, before k-norm */
    float *qrs;   /* [N, nh]  1/rms of each q head */
    float *krs;   /* [N, nkv] 1/rms of each k head */
    float *qf;    /* [N, Q]   q after norm and RoPE */
    float *kf;    /* [N, KV]  k after norm and RoPE */
    float *v;     /* [N, KV] */
    float *att;   /* [N, Q]   attention output: input of o_proj */
    float *x_mid; /* [N, H]   x_in + attention */
    float *r2;    /* [N] */
    float *xn2;   /* [N, H]   RMSNorm(x_mid): input of gate/up */
    float *g;     /* [N, I] */
    float *u;     /* [N, I] */
    float *h;     /* [N, I]   silu(g) * u: input of down_proj */
} lact;

struct kv_tmodel {
    kv_config cfg;
    int n_t;
    kv_param_info *t; /* [n_t] the size table */
    int64_t n_params;
    float *params; /* [n_params] one allocation */
    float *grads;  /* [n_params] one allocation, same carving */
    int i_embed, i_final, i_lm; /* i_lm == i_embed when tied */
    tlayer *layers;             /* [n_layers] */
    float *inv_freq;            /* [head_dim / 2] */

    /* hook: effective weights of hooked linears, one allocation */
    kv_linear_hook hook;
    int hooked;
    float **weff;   /* [n_layers * KV_LIN_COUNT] pointer into weff_mem or NULL */
    float *weff_mem;
    float *hook_dw; /* [max linear numel] */

    /* transposed weights for dX = dY W, refreshed per backward, one allocation:
     * per layer qkvT [H, Q+2KV], oT [Q, H], guT [H, 2I], dT [I, H]; then lmT [H, V] */
    float *wT;

    /* run state: one allocation, re-carved when the batch shape or team grows */
    void *act_mem;
    int64_t cap_B, cap_T;
    int cap_threads;
    lact *la;        /* [n_layers] */
    float *x_fin;    /* [N, H] */
    float *rf;       /* [N] */
    float *xnf;      /* [N, H] */
    float *logits;   /* [N, V] logits, then probabilities (rows with a target), then dlogits */
    double *tok_loss; /* [N] */
    int32_t *ids, *tgt; /* [N] */
    float *cosv, *sinv; /* [T, hd/2] */
    float *dx;       /* [N, H] residual-stream gradient */
    float *dxn;      /* [N, H] */
    float *dqkv;     /* [N, Q + 2KV]: dq | dk | dv per row */
    float *datt;     /* [N, Q] */
    float *dgu;      /* [N, 2I]: dg | du per row */
    float *dh;       /* [N, I] */
    float *work;     /* [threads * KV_MATMUL_WORK_FLOATS] */
    float *tn;       /* kv_tr_mm_tn scratch, largest shape */
    float *att_tmp;  /* [threads][2 T² + 3 T hd] attention scratch */
    size_t att_per_thread;

    int64_t B, T, n_valid; /* last forward */
    int have_fwd;
};

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* ---- size table ----------------------------------------------------------------- */

static int add_t(kv_tmodel *m, const char *name, int ndim, int64_t d0, int64_t d1, int decay) {
    kv_param_info *p = &m->t[m->n_t];
    size_t len = strlen(name);
    len = len < sizeof p->name - 1 ? len : sizeof p->name - 1; /* names are < 64 chars */
    memcpy(p->name, name, len);
    p->name[len] = 0;
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = ndim > 1 ? d1 : 1;
    p->numel = d0 * (ndim > 1 ? d1 : 1);
    p->offset = (size_t)m->n_params;
    p->requires_grad = 1;
    p->decay = decay;
    m->n_params += (int64_t)round16((size_t)p->numel); /* 64-byte aligned tensors */
    return m->n_t++;
}

static kv_status check_cfg(const kv_config *c, kv_err *err) {
    if (c->hidden_size <= 0 || c->intermediate_size <= 0 || c->n_layers <= 0 ||
        c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 || c->vocab_size <= 0)
        return kv_err_set(err, KV_EINVAL, "train: model: non-positive dimension");
    if (c->head_dim % 2)
        return kv_err_set(err, KV_EUNSUPPORTED, "train: model: odd head_dim %lld",
                          (long long)c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return kv_err_set(err, KV_EINVAL, "train: model: %lld heads not a multiple of %lld kv heads",
                          (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->attention_bias || c->o_bias || c->mlp_bias)
        return kv_err_set(err, KV_EUNSUPPORTED, "train: model: biases are not supported");
    if (c->rope_type != KV_ROPE_DEFAULT)
        return kv_err_set(err, KV_EUNSUPPORTED, "train: model: only default RoPE is supported");
    if (c->vocab_size > ((int64_t)1 << 31) || c->n_layers > 100000)
        return kv_err_set(err, KV_EINVAL, "train: model: implausible vocab or layer count");
    return KV_OK;
}

kv_status kv_tmodel_new(const kv_config *cfg, kv_tmodel **out, kv_err *err) {
    *out = NULL;
    kv_status st = check_cfg(cfg, err);
    if (st) return st;
    kv_tmodel *m = kv_calloc(1, sizeof *m, err, "train: model");
    if (!m) return KV_ENOMEM;
    m->cfg = *cfg;
    const kv_config *c = &m->cfg;
    const int64_t H = c->hidden_size, I = c->intermediate_size, hd = c->head_dim;
    const int64_t Q = c->n_heads * hd, KV = c->n_kv_heads * hd, L = c->n_layers, V = c->vocab_size;
    int cap = (int)(L * 11 + 3);
    m->t = kv_calloc((size_t)cap, sizeof *m->t, err, "train: size table");
    m->layers = kv_calloc((size_t)L, sizeof *m->layers, err, "train: layer table");
    m->weff = kv_calloc((size_t)(L * KV_LIN_COUNT), sizeof *m->weff, err, "train: hook table");
    m->inv_freq = kv_malloc((size_t)(hd / 2) * sizeof(float), err, "train: rope");
    if (!m->t || !m->layers || !m->weff || !m->inv_freq) goto fail;

    char nm[96];
    m->i_embed = add_t(m, "model.embed_tokens.weight", 2, V, H, 1);
    for (int64_t l = 0; l < L; l++) {
        tlayer *tl = &m->layers[l];
        const long long ll = (long long)l;
#define N_(fmt) (snprintf(nm, sizeof nm, "model.layers.%lld." fmt, ll), nm)
        tl->in_norm = add_t(m, N_("input_layernorm.weight"), 1, H, 0, 0);
        tl->lin[KV_LIN_Q] = add_t(m, N_("self_attn.q_proj.weight"), 2, Q, H, 1);
        tl->lin[KV_LIN_K] = add_t(m, N_("self_attn.k_proj.weight"), 2, KV, H, 1);
        tl->lin[KV_LIN_V] = add_t(m, N_("self_attn.v_proj.weight"), 2, KV, H, 1);
        tl->lin[KV_LIN_O] = add_t(m, N_("self_attn.o_proj.weight"), 2, H, Q, 1);
        tl->q_norm = c->qk_norm ? add_t(m, N_("self_attn.q_norm.weight"), 1, hd, 0, 0) : -1;
        tl->k_norm = c->qk_norm ? add_t(m, N_("self_attn.k_norm.weight"), 1, hd, 0, 0) : -1;
        tl->post_norm = add_t(m, N_("post_attention_layernorm.weight"), 1, H, 0, 0);
        tl->lin[KV_LIN_GATE] = add_t(m, N_("mlp.gate_proj.weight"), 2, I, H, 1);
        tl->lin[KV_LIN_UP] = add_t(m, N_("mlp.up_proj.weight"), 2, I, H, 1);
        tl->lin[KV_LIN_DOWN] = add_t(m, N_("mlp.down_proj.weight"), 2, H, I, 1);
#undef N_
    }
    m->i_final = add_t(m, "model.norm.weight", 1, H, 0, 0);
    m->i_lm = c->tie_word_embeddings ? m->i_embed : add_t(m, "lm_head.weight", 2, V, H, 1);

    size_t bytes = (size_t)m->n_params * sizeof(float);
    m->params = aligned_alloc(64, bytes);
    m->grads = aligned_alloc(64, bytes);
    size_t wt = (size_t)(L * (H * (Q + 2 * KV) + Q * H + H * 2 * I + I * H) + H * V);
    m->wT = aligned_alloc(64, round16(wt) * sizeof(float));
    if (!m->params || !m->grads || !m->wT) {
        kv_err_set(err, KV_ENOMEM, "train: out of memory allocating 3 x %zu bytes of parameters",
                   bytes);
        goto fail;
    }
    memset(m->params, 0, bytes);
    memset(m->grads, 0, bytes);
    for (int64_t j = 0; j < hd / 2; j++)
        m->inv_freq[j] = 1.0f / powf((float)c->rope_theta, (float)(2 * j) / (float)hd);
    *out = m;
    return KV_OK;
fail:
    kv_tmodel_free(m);
    return err ? err->code : KV_ENOMEM;
}

void kv_tmodel_free(kv_tmodel *m) {
    if (!m) return;
    free(m->t);
    free(m->layers);
    free(m->weff);
    free(m->weff_mem);
    free(m->hook_dw);
    free(m->inv_freq);
    free(m->params);
    free(m->grads);
    free(m->wT);
    free(m->act_mem);
    free(m->la);
    free(m);
}

const kv_config *kv_tmodel_config(const kv_tmodel *m) { return &m->cfg; }
int kv_tmodel_n_tensors(const kv_tmodel *m) { return m->n_t; }
const kv_param_info *kv_tmodel_tensor(const kv_tmodel *m, int i) {
    return i >= 0 && i < m->n_t ? &m->t[i] : NULL;
}
int kv_tmodel_find(const kv_tmodel *m, const char *name) {
    for (int i = 0; i < m->n_t; i++)
        if (!strcmp(m->t[i].name, name)) return i;
    return -1;
}
int64_t kv_tmodel_n_params(const kv_tmodel *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_t; i++) n += m->t[i].numel;
    return n;
}
int64_t kv_tmodel_block_floats(const kv_tmodel *m) { return m->n_params; }
float *kv_tmodel_params(kv_tmodel *m) { return m->params; }
float *kv_tmodel_grads(kv_tmodel *m) { return m->grads; }
void kv_tmodel_set_requires_grad(kv_tmodel *m, int i, int on) {
    if (i >= 0 && i < m->n_t) m->t[i].requires_grad = on != 0;
}
void kv_tmodel_zero_grad(kv_tmodel *m) {
    memset(m->grads, 0, (size_t)m->n_params * sizeof(float));
}
int kv_tmodel_linear_index(const kv_tmodel *m, int64_t layer, kv_lin_kind kind) {
    if (layer < 0 || layer >= m->cfg.n_layers || kind < 0 || kind >= KV_LIN_COUNT) return -1;
    return m->layers[layer].lin[kind];
}
const float *kv_tmodel_logits(const kv_tmodel *m) { return m->have_fwd ? m->logits : NULL; }

static float *P(kv_tmodel *m, int i) { return m->params + m->t[i].offset; }
static float *G(kv_tmodel *m, int i) { return m->grads + m->t[i].offset; }

/* The weight a linear uses in forward: the hook's or the parameter. */
static const float *lin_w(kv_tmodel *m, int64_t l, int k) {
    float *e = m->weff[l * KV_LIN_COUNT + k];
    return e ? e : P(m, m->layers[l].lin[k]);
}

/* ---- init and loading ----------------------------------------------------------- */

/* splitmix64 -> uniform doubles -> Box-Muller normals; fixed by seed. */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return ((double)(splitmix(s) >> 11) + 0.5) * 0x1.0p-53; }

void kv_tmodel_init_random(kv_tmodel *m, uint64_t seed, double std) {
    uint64_t s = seed;
    const double res = std / sqrt(2.0 * (double)m->cfg.n_layers);
    for (int i = 0; i < m->n_t; i++) {
        kv_param_info *p = &m->t[i];
        float *w = P(m, i);
        if (p->ndim == 1) {
            for (int64_t j = 0; j < p->numel; j++) w[j] = 1.0f;
            continue;
        }
        double sd = strstr(p->name, "o_proj") || strstr(p->name, "down_proj") ? res : std;
        for (int64_t j = 0; j < p->numel; j += 2) {
            double r = sqrt(-2.0 * log(unif(&s))), a = 2.0 * M_PI * unif(&s);
            w[j] = (float)(sd * r * cos(a));
            if (j + 1 < p->numel) w[j + 1] = (float)(sd * r * sin(a));
        }
    }
}

kv_status kv_tmodel_load_hf(const char *dir, kv_tmodel **out, kv_err *err) {
    *out = NULL;
    kv_config cfg;
    kv_weights *w = NULL;
    kv_tmodel *m = NULL;
    kv_status st = kv_config_load(dir, &cfg, err);
    if (!st) st = kv_tmodel_new(&cfg, &m, err);
    if (!st) st = kv_weights_open(dir, &w, err);
    for (int i = 0; !st && i < m->n_t; i++) {
        const kv_tensor *t;
        kv_param_info *p = &m->t[i];
        if ((st = kv_weights_get(w, p->name, KV_DMASK_FLOAT, p->ndim, p->shape, &t, err))) break;
        kv_to_f32(t->dtype, t->data, P(m, i), (size_t)p->numel);
    }
    kv_weights_close(w);
    if (st) {
        kv_tmodel_free(m);
        return st;
    }
    *out = m;
    return KV_OK;
}

kv_status kv_tmodel_set_linear_hook(kv_tmodel *m, const kv_linear_hook *hook, kv_err *err) {
    const kv_config *c = &m->cfg;
    free(m->weff_mem);
    free(m->hook_dw);
    m->weff_mem = m->hook_dw = NULL;
    memset(m->weff, 0, (size_t)(c->n_layers * KV_LIN_COUNT) * sizeof *m->weff);
    m->hooked = 0;
    if (!hook) return KV_OK;
    if (!hook->weight || !hook->grad)
        return kv_err_set(err, KV_EINVAL, "train: linear hook: weight and grad are required");
    m->hook = *hook;
    size_t total = 0, mx = 0;
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int k = 0; k < KV_LIN_COUNT; k++) {
            if (hook->wants && !hook->wants(hook->ctx, l, (kv_lin_kind)k)) continue;
            size_t n = (size_t)m->t[m->layers[l].lin[k]].numel;
            total += round16(n);
            mx = n > mx ? n : mx;
        }
    if (!total) return KV_OK;
    m->weff_mem = aligned_alloc(64, total * sizeof(float));
    m->hook_dw = aligned_alloc(64, round16(mx) * sizeof(float));
    if (!m->weff_mem || !m->hook_dw) {
        free(m->weff_mem);
        free(m->hook_dw);
        m->weff_mem = m->hook_dw = NULL;
        return kv_err_set(err, KV_ENOMEM, "train: out of memory allocating %zu bytes of hooked "
                          "weights", total * sizeof(float));
    }
    float *cur = m->weff_mem;
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int k = 0; k < KV_LIN_COUNT; k++) {
            if (hook->wants && !hook->wants(hook->ctx, l, (kv_lin_kind)k)) continue;
            m->weff[l * KV_LIN_COUNT + k] = cur;
            cur += round16((size_t)m->t[m->layers[l].lin[k]].numel);
        }
    m->hooked = 1;
    return KV_OK;
}

/* ---- run state ------------------------------------------------------------------ */

static size_t layout(kv_tmodel *m, float *base, int64_t B, int64_t T, int nth) {
    const kv_config *c = &m->cfg;
    const size_t N = (size_t)(B * T), H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    const size_t hd = (size_t)c->head_dim, nh = (size_t)c->n_heads, nkv = (size_t)c->n_kv_heads;
    const size_t Q = nh * hd, KV = nkv * hd, V = (size_t)c->vocab_size, Tz = (size_t)T;
    size_t off = 0;
#define CARVE(ptr, type, n)                                                                 \
    do {                                                                                    \
        if (base) (ptr) = (type *)(base + off);                                             \
        off += round16((size_t)(n));                                                        \
    } while (0)
    for (int64_t l = 0; l < c->n_layers; l++) {
        lact dummy, *a = base ? &m->la[l] : &dummy;
        CARVE(a->x_in, float, N * H);
        CARVE(a->r1, float, N);
        CARVE(a->xn1, float, N * H);
        CARVE(a->qr, float, N * Q);
        CARVE(a->kr, float, N * KV);
        CARVE(a->qrs, float, N * nh);
        CARVE(a->krs, float, N * nkv);
        CARVE(a->qf, float, N * Q);
        CARVE(a->kf, float, N * KV);
        CARVE(a->v, float, N * KV);
        CARVE(a->att, float, N * Q);
        CARVE(a->x_mid, float, N * H);
        CARVE(a->r2, float, N);
        CARVE(a->xn2, float, N * H);
        CARVE(a->g, float, N * I);
        CARVE(a->u, float, N * I);
        CARVE(a->h, float, N * I);
    }
    CARVE(m->x_fin, float, N * H);
    CARVE(m->rf, float, N);
    CARVE(m->xnf, float, N * H);
    CARVE(m->logits, float, N * V);
    CARVE(m->tok_loss, double, 2 * N);
    CARVE(m->ids, int32_t, N);
    CARVE(m->tgt, int32_t, N);
    CARVE(m->cosv, float, Tz * hd / 2);
    CARVE(m->sinv, float, Tz * hd / 2);
    CARVE(m->dx, float, N * H);
    CARVE(m->dxn, float, N * H);
    CARVE(m->dqkv, float, N * (Q + 2 * KV));
    CARVE(m->datt, float, N * Q);
    CARVE(m->dgu, float, N * 2 * I);
    CARVE(m->dh, float, N * I);
    CARVE(m->work, float, kv_tr_work_floats(nth));
    size_t tn = kv_tr_tn_scratch_floats((int64_t)V, (int64_t)H);
    size_t shapes[4][2] = {{Q + 2 * KV, H}, {H, Q}, {2 * I, H}, {H, I}};
    for (int s = 0; s < 4; s++) {
        size_t z = kv_tr_tn_scratch_floats((int64_t)shapes[s][0], (int64_t)shapes[s][1]);
        tn = z > tn ? z : tn;
    }
    CARVE(m->tn, float, tn);
    /* per thread: P, dP [T, T]; K^T or V^T [hd, T]; dK, dV [T, hd] */
    size_t per = 2 * round16(Tz * Tz) + 3 * round16(Tz * hd);
    if (base) m->att_per_thread = per;
    CARVE(m->att_tmp, float, per * (size_t)nth);
#undef CARVE
    return off;
}

static kv_status ensure_act(kv_tmodel *m, int64_t B, int64_t T, kv_err *err) {
    int nth = omp_get_max_threads();
    if (m->act_mem && B * T <= m->cap_B * m->cap_T && T <= m->cap_T && nth <= m->cap_threads &&
        B <= m->cap_B)
        return KV_OK;
    free(m->act_mem);
    m->act_mem = NULL;
    if (!m->la) {
        m->la = kv_calloc((size_t)m->cfg.n_layers, sizeof *m->la, err, "train: activations");
        if (!m->la) return KV_ENOMEM;
    }
    size_t n = layout(m, NULL, B, T, nth);
    m->act_mem = aligned_alloc(64, n * sizeof(float));
    if (!m->act_mem)
        return kv_err_set(err, KV_ENOMEM, "train: out of memory allocating %zu bytes of "
                          "activations for %lld x %lld tokens", n * sizeof(float), (long long)B,
                          (long long)T);
    layout(m, m->act_mem, B, T, nth);
    m->cap_B = B;
    m->cap_T = T;
    m->cap_threads = nth;
    return KV_OK;
}

/* ---- building blocks ------------------------------------------------------------ */

/* out = w * (x * r), r = 1/sqrt(mean(x^2) + eps): transformers' RMSNorm in fp32 (the
 * ref kernel's op order). Returns r. */
static float rms_fwd(const float *x, const float *w, int64_t n, float eps, float *out) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    float var = (float)(ss / (double)n);
    float r = 1.0f / sqrtf(var + eps);
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
    return r;
}

/* forward: y_i = w_i * (x_i * r), r = (mean(x^2) + eps)^-1/2
 * dx_j = r w_j dy_j - r^3 x_j / n * sum_i w_i dy_i x_i   (dx may alias dy) */
static void rms_bwd_dx(const float *x, float r, const float *w, const float *dy, int64_t n,
                       float *dx) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)w[i] * (double)dy[i] * (double)x[i];
    float c = (float)(s * (double)r * (double)r * (double)r / (double)n);
    for (int64_t i = 0; i < n; i++) dx[i] = r * (w[i] * dy[i]) - c * x[i];
}

/* dw_i += sum over rows of dy_i * (x_i * r): rows [rows, n] ld apart (heads: rows of
 * head vectors), r per row. Parallel over i; each i summed over rows in order. */
static void rms_bwd_dw(const float *x, int64_t ldx, const float *r, const float *dy,
                       int64_t lddy, int64_t rows, int64_t n, float *dw) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        double acc = 0;
        for (int64_t t = 0; t < rows; t++)
            acc += (double)dy[t * lddy + i] * (double)(x[t * ldx + i] * r[t]);
        dw[i] += (float)acc;
    }
}

/* ---- attention ------------------------------------------------------------------- */

/* P[T, T] = causal softmax(q_h k^T * scale) of sequence b, head h (rows past the
 * diagonal zero). q rows Q apart, k rows KV apart. */
static void att_probs(const kv_kernel_ops *ops, const float *qh, int64_t ldq, const float *kg,
                      int64_t ldk, int64_t T, int64_t hd, float scale, float *Pm, float *work) {
    kv_wmat kw = {KV_DTYPE_F32, kg, T, hd, ldk};
    ops->matmul(qh, T, ldq, &kw, NULL, 0, T, Pm, T, work);
    for (int64_t i = 0; i < T; i++) {
        float *row = Pm + i * T;
        for (int64_t j = 0; j <= i; j++) row[j] = row[j] * scale;
        ops->softmax(row, i + 1);
        for (int64_t j = i + 1; j < T; j++) row[j] = 0.0f;
    }
}

static void transpose_small(const float *a, int64_t rows, int64_t cols, int64_t lda, float *out) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) out[c * rows + r] = a[r * lda + c];
}

static void attention_fwd(kv_tmodel *m, const lact *a) {
    const kv_kernel_ops *ops = kv_kernels();
    const kv_config *c = &m->cfg;
    const int64_t B = m->B, T = m->T, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
    const int64_t rep = nh / nkv, Q = nh * hd, KV = nkv * hd;
    const float scale = (float)(1.0 / sqrt((double)hd));
#pragma omp parallel
    {
        const int tid = omp_get_thread_num();
        float *Pm = m->att_tmp + (size_t)tid * m->att_per_thread; /* [T, T] */
        float *VT = Pm + 2 * round16((size_t)(T * T));            /* [hd, T] */
        float *work = m->work + (size_t)tid * KV_MATMUL_WORK_FLOATS;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < B * nkv; it++) {
            int64_t b = it / nkv, g = it % nkv;
            const float *kg = a->kf + b * T * KV + g * hd, *vg = a->v + b * T * KV + g * hd;
            transpose_small(vg, T, hd, KV, VT);
            kv_wmat vw = {KV_DTYPE_F32, VT, hd, T, T};
            for (int64_t r = 0; r < rep; r++) {
                int64_t h = g * rep + r;
                /* a_h = softmax(q_h k^T * scale) v */
                att_probs(ops, a->qf + b * T * Q + h * hd, Q, kg, KV, T, hd, scale, Pm, work);
                ops->matmul(Pm, T, T, &vw, NULL, 0, hd, a->att + b * T * Q + h * hd, Q, work);
            }
        }
    }
}

/* Gradients of attention for every (sequence, kv head): dq, dk, dv in m->dqkv (rows
 * Q + 2KV apart) from datt. One thread owns a (b, g) item and sums its rep heads'
 * dK, dV contributions in head order. */
static void attention_bwd(kv_tmodel *m, const lact *a) {
    const kv_kernel_ops *ops = kv_kernels();
    const kv_config *c = &m->cfg;
    const int64_t B = m->B, T = m->T, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
    const int64_t rep = nh / nkv, Q = nh * hd, KV = nkv * hd, LD = Q + 2 * KV;
    const float scale = (float)(1.0 / sqrt((double)hd));
    const size_t TT = round16((size_t)(T * T)), Th = round16((size_t)(T * hd));
#pragma omp parallel
    {
        const int tid = omp_get_thread_num();
        float *Pm = m->att_tmp + (size_t)tid * m->att_per_thread; /* [T, T] */
        float *dP = Pm + TT;                                       /* [T, T] */
        float *KT = dP + TT;                                       /* [hd, T] */
        float *dKa = KT + Th, *dVa = dKa + Th;                     /* [T, hd] */
        float *work = m->work + (size_t)tid * KV_MATMUL_WORK_FLOATS;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < B * nkv; it++) {
            int64_t b = it / nkv, g = it % nkv;
            const float *kg = a->kf + b * T * KV + g * hd, *vg = a->v + b * T * KV + g * hd;
            transpose_small(kg, T, hd, KV, KT);
            kv_wmat vw = {KV_DTYPE_F32, vg, T, hd, KV};   /* rows j of V */
            kv_wmat kt = {KV_DTYPE_F32, KT, hd, T, T};    /* rows d of K^T */
            memset(dKa, 0, (size_t)(T * hd) * sizeof(float));
            memset(dVa, 0, (size_t)(T * hd) * sizeof(float));
            for (int64_t r = 0; r < rep; r++) {
                int64_t h = g * rep + r;
                const float *qh = a->qf + b * T * Q + h * hd;
                const float *dO = m->datt + b * T * Q + h * hd;
                att_probs(ops, qh, Q, kg, KV, T, hd, scale, Pm, work);
                /* O = P V:  dP = dO V^T */
                ops->matmul(dO, T, Q, &vw, NULL, 0, T, dP, T, work);
                /* P = softmax(S):  dS_ij = P_ij (dP_ij - sum_j P_ij dP_ij);
                 * S = scale * q k^T:  fold the scale into dS */
                for (int64_t i = 0; i < T; i++) {
                    float *pr = Pm + i * T, *dr = dP + i * T;
                    double s = 0;
                    for (int64_t j = 0; j <= i; j++) s += (double)pr[j] * (double)dr[j];
                    float sf = (float)s;
                    for (int64_t j = 0; j <= i; j++) dr[j] = pr[j] * (dr[j] - sf) * scale;
                    for (int64_t j = i + 1; j < T; j++) dr[j] = 0.0f;
                }
                /* S = q k^T:  dq = dS K */
                ops->matmul(dP, T, T, &kt, NULL, 0, hd, m->dqkv + b * T * LD + h * hd, LD, work);
                /* dK += dS^T q ; O = P V:  dV += P^T dO. Row j of each sums over the
                 * queries i >= j (causal), in order: axpys, no transposes. */
                for (int64_t j = 0; j < T; j++) {
                    float *dkj = dKa + j * hd, *dvj = dVa + j * hd;
                    for (int64_t i = j; i < T; i++) {
                        ops->axpy(dP[i * T + j], qh + i * Q, dkj, hd);
                        ops->axpy(Pm[i * T + j], dO + i * Q, dvj, hd);
                    }
                }
            }
            float *dk = m->dqkv + b * T * LD + Q + g * hd, *dv = dk + KV;
            for (int64_t i = 0; i < T; i++) {
                memcpy(dk + i * LD, dKa + i * hd, (size_t)hd * sizeof(float));
                memcpy(dv + i * LD, dVa + i * hd, (size_t)hd * sizeof(float));
            }
        }
    }
}

/* ---- forward --------------------------------------------------------------------- */

kv_status kv_tmodel_forward(kv_tmodel *m, const int32_t *ids, const int32_t *targets, int64_t B,
                            int64_t T, double *loss, kv_err *err) {
    const kv_config *c = &m->cfg;
    if (!ids || B <= 0 || T <= 0)
        return kv_err_set(err, KV_EINVAL, "train: forward: empty batch (%lld x %lld)",
                          (long long)B, (long long)T);
    const int64_t N = B * T, V = c->vocab_size;
    for (int64_t i = 0; i < N; i++) {
        if (ids[i] < 0 || ids[i] >= V)
            return kv_err_set(err, KV_ERANGE, "train: forward: token id %d at %lld out of range "
                              "[0, %lld)", (int)ids[i], (long long)i, (long long)V);
        if (targets && targets[i] >= V)
            return kv_err_set(err, KV_ERANGE, "train: forward: target %d at %lld out of range "
                              "[0, %lld)", (int)targets[i], (long long)i, (long long)V);
    }
    kv_status st = ensure_act(m, B, T, err);
    if (st) return st;
    if (m->hooked)
        for (int64_t l = 0; l < c->n_layers; l++)
            for (int k = 0; k < KV_LIN_COUNT; k++) {
                float *e = m->weff[l * KV_LIN_COUNT + k];
                if (!e) continue;
                const kv_param_info *p = &m->t[m->layers[l].lin[k]];
                if ((st = m->hook.weight(m->hook.ctx, l, (kv_lin_kind)k, e, p->shape[0],
                                         p->shape[1], err)))
                    return st;
            }
    m->B = B;
    m->T = T;
    m->have_fwd = 0;
    const kv_kernel_ops *ops = kv_kernels();
    const int64_t H = c->hidden_size, I = c->intermediate_size, hd = c->head_dim, half = hd / 2;
    const int64_t nh = c->n_heads, nkv = c->n_kv_heads, Q = nh * hd, KV = nkv * hd;
    const float eps = (float)c->rms_norm_eps;
    float *work = m->work;
    memcpy(m->ids, ids, (size_t)N * sizeof(int32_t));
    int64_t nv = 0;
    for (int64_t i = 0; i < N; i++) {
        m->tgt[i] = targets ? (targets[i] < 0 ? -1 : targets[i]) : -1;
        nv += m->tgt[i] >= 0;
    }
    m->n_valid = nv;
    for (int64_t p = 0; p < T; p++)
        for (int64_t j = 0; j < half; j++) {
            float f = (float)p * m->inv_freq[j];
            m->cosv[p * half + j] = (float)cos((double)f);
            m->sinv[p * half + j] = (float)sin((double)f);
        }

    /* x = E[id] */
    const float *E = P(m, m->i_embed);
    float *x0 = m->la[0].x_in;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; t++) memcpy(x0 + t * H, E + (size_t)ids[t] * H, (size_t)H * sizeof(float));

    for (int64_t l = 0; l < c->n_layers; l++) {
        const tlayer *tl = &m->layers[l];
        lact *a = &m->la[l];
        const float *w_in = P(m, tl->in_norm), *w_post = P(m, tl->post_norm);
        const float *w_qn = tl->q_norm >= 0 ? P(m, tl->q_norm) : NULL;
        const float *w_kn = tl->k_norm >= 0 ? P(m, tl->k_norm) : NULL;
        /* h = RMSNorm(x) */
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < N; t++) a->r1[t] = rms_fwd(a->x_in + t * H, w_in, H, eps, a->xn1 + t * H);
        /* q, k, v = h Wq^T, h Wk^T, h Wv^T */
        kv_tr_mm_nt(a->xn1, N, H, H, lin_w(m, l, KV_LIN_Q), Q, H, a->qr, Q, work);
        kv_tr_mm_nt(a->xn1, N, H, H, lin_w(m, l, KV_LIN_K), KV, H, a->kr, KV, work);
        kv_tr_mm_nt(a->xn1, N, H, H, lin_w(m, l, KV_LIN_V), KV, H, a->v, KV, work);
        /* q, k = RoPE(RMSNorm_head(q)), RoPE(RMSNorm_head(k)) */
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < N; t++) {
            const float *cs = m->cosv + (t % T) * half, *sn = m->sinv + (t % T) * half;
            for (int64_t h = 0; h < nh + nkv; h++) {
                int isq = h < nh;
                int64_t hh = isq ? h : h - nh;
                const float *src = isq ? a->qr + t * Q + hh * hd : a->kr + t * KV + hh * hd;
                float *dst = isq ? a->qf + t * Q + hh * hd : a->kf + t * KV + hh * hd;
                const float *wn = isq ? w_qn : w_kn;
                if (wn) {
                    float r = rms_fwd(src, wn, hd, eps, dst);
                    (isq ? a->qrs + t * nh : a->krs + t * nkv)[hh] = r;
                } else {
                    memcpy(dst, src, (size_t)hd * sizeof(float));
                }
                ops->rope(dst, cs, sn, half);
            }
        }
        /* a = softmax(q k^T / sqrt(hd), causal) v */
        attention_fwd(m, a);
        /* x = x + a Wo^T */
        kv_tr_mm_nt(a->att, N, Q, Q, lin_w(m, l, KV_LIN_O), H, Q, a->x_mid, H, work);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < N; t++) {
            float *xm = a->x_mid + t * H;
            const float *xi = a->x_in + t * H;
            for (int64_t i = 0; i < H; i++) xm[i] = xi[i] + xm[i];
            /* h = RMSNorm(x) */
            a->r2[t] = rms_fwd(xm, w_post, H, eps, a->xn2 + t * H);
        }
        /* g, u = h Wg^T, h Wu^T ; act = silu(g) * u */
        kv_tr_mm_nt(a->xn2, N, H, H, lin_w(m, l, KV_LIN_GATE), I, H, a->g, I, work);
        kv_tr_mm_nt(a->xn2, N, H, H, lin_w(m, l, KV_LIN_UP), I, H, a->u, I, work);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < N; t++) ops->silu_mul(a->g + t * I, a->u + t * I, a->h + t * I, I);
        /* x = x + act Wd^T */
        float *xo = l + 1 < c->n_layers ? m->la[l + 1].x_in : m->x_fin;
        kv_tr_mm_nt(a->h, N, I, I, lin_w(m, l, KV_LIN_DOWN), H, I, xo, H, work);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < N; t++) {
            float *o = xo + t * H;
            const float *xm = a->x_mid + t * H;
            for (int64_t i = 0; i < H; i++) o[i] = xm[i] + o[i];
        }
    }

    /* logits = RMSNorm(x) W_lm^T */
    const float *wf = P(m, m->i_final);
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; t++) m->rf[t] = rms_fwd(m->x_fin + t * H, wf, H, eps, m->xnf + t * H);
    kv_tr_mm_nt(m->xnf, N, H, H, P(m, m->i_lm), V, H, m->logits, V, work);

    /* loss_t = -log softmax(logits_t)[target]: the SIMD softmax turns each row into
     * probabilities in place (kept for backward); -log p is exact to a few ulp of p.
     * Should p underflow to 0 (a logit gap > 87), the loss falls back to the gap
     * max - logit, a lower bound off by at most log(V). */
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; t++) {
        m->tok_loss[t] = 0;
        float *row = m->logits + t * V;
        int32_t y = m->tgt[t];
        if (y < 0) continue;
        float mx = row[0];
        for (int64_t j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
        float xy = row[y];
        ops->softmax(row, V);
        m->tok_loss[t] = row[y] > 0 ? -log((double)row[y]) : (double)mx - (double)xy;
    }
    double sum = 0;
    for (int64_t t = 0; t < N; t++) sum += m->tok_loss[t];
    *loss = nv ? sum / (double)nv : 0.0;
    m->have_fwd = 1;
    return KV_OK;
}

/* ---- backward -------------------------------------------------------------------- */

/* Refresh m->wT from the weights the forward used. */
static void refresh_transposes(kv_tmodel *m) {
    const kv_config *c = &m->cfg;
    const int64_t H = c->hidden_size, I = c->intermediate_size, hd = c->head_dim;
    const int64_t Q = c->n_heads * hd, KV = c->n_kv_heads * hd, V = c->vocab_size;
    float *cur = m->wT;
    for (int64_t l = 0; l < c->n_layers; l++) {
        /* qkvT [H, Q+2KV] */
        kv_tr_transpose(lin_w(m, l, KV_LIN_Q), Q, H, H, cur, Q + 2 * KV);
        kv_tr_transpose(lin_w(m, l, KV_LIN_K), KV, H, H, cur + Q, Q + 2 * KV);
        kv_tr_transpose(lin_w(m, l, KV_LIN_V), KV, H, H, cur + Q + KV, Q + 2 * KV);
        cur += H * (Q + 2 * KV);
        kv_tr_transpose(lin_w(m, l, KV_LIN_O), H, Q, Q, cur, H); /* oT [Q, H] */
        cur += Q * H;
        kv_tr_transpose(lin_w(m, l, KV_LIN_GATE), I, H, H, cur, 2 * I); /* guT [H, 2I] */
        kv_tr_transpose(lin_w(m, l, KV_LIN_UP), I, H, H, cur + I, 2 * I);
        cur += H * 2 * I;
        kv_tr_transpose(lin_w(m, l, KV_LIN_DOWN), H, I, I, cur, H); /* dT [I, H] */
        cur += I * H;
    }
    kv_tr_transpose(P(m, m->i_lm), V, H, H, cur, V); /* lmT [H, V] */
}

/* dW of layer l's linear k (+)= dy[N, n_out]^T x[N, n_in], or into the hook. */
static kv_status lin_dw(kv_tmodel *m, int64_t l, int k, const float *dy, int64_t lddy,
                        const float *x, int64_t ldx, kv_err *err) {
    int idx = m->layers[l].lin[k];
    const kv_param_info *p = &m->t[idx];
    const int64_t N = m->B * m->T;
    float *hw = m->weff[l * KV_LIN_COUNT + k];
    if (hw) {
        kv_tr_mm_tn(dy, N, p->shape[0], lddy, x, p->shape[1], ldx, m->hook_dw, 0, m->tn, m->work);
        return m->hook.grad(m->hook.ctx, l, (kv_lin_kind)k, m->hook_dw, p->shape[0], p->shape[1],
                            err);
    }
    if (p->requires_grad)
        kv_tr_mm_tn(dy, N, p->shape[0], lddy, x, p->shape[1], ldx, G(m, idx), 1, m->tn, m->work);
    return KV_OK;
}

kv_status kv_tmodel_backward(kv_tmodel *m, double scale, kv_err *err) {
    if (!m->have_fwd) return kv_err_set(err, KV_EINVAL, "train: backward: no forward to go back through");
    m->have_fwd = 0; /* logits become dlogits below */
    const kv_config *c = &m->cfg;
    const int64_t N = m->B * m->T, T = m->T, H = c->hidden_size, I = c->intermediate_size;
    const int64_t hd = c->head_dim, half = hd / 2, nh = c->n_heads, nkv = c->n_kv_heads;
    const int64_t Q = nh * hd, KV = nkv * hd, LD = Q + 2 * KV, V = c->vocab_size;
    float *work = m->work;
    kv_status st;
    refresh_transposes(m);

    /* loss = mean_t -log p_t[y_t], p = softmax(logits) (in m->logits since forward):
     * dlogits_tj = (p_tj - [j == y_t]) / n_valid */
    const double dl = m->n_valid ? scale / (double)m->n_valid : 0.0;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < N; t++) {
        float *row = m->logits + t * V;
        if (m->tgt[t] < 0) {
            memset(row, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float s = (float)dl;
        for (int64_t j = 0; j < V; j++) row[j] = row[j] * s;
        row[m->tgt[t]] -= s;
    }
    /* logits = xnf W_lm^T:  dW_lm += dlogits^T xnf ; dxnf = dlogits W_lm */
    if (m->t[m->i_lm].requires_grad)
        kv_tr_mm_tn(m->logits, N, V, V, m->xnf, H, H, G(m, m->i_lm), 1, m->tn, work);
    const float *wT = m->wT;
    size_t wt_layer = (size_t)(H * LD + Q * H + H * 2 * I + I * H);
    kv_tr_mm_nt(m->logits, N, V, V, wT + (size_t)c->n_layers * wt_layer, H, V, m->dxn, H, work);
    /* xnf = RMSNorm(x_fin):  dx = rms_bwd(dxnf) */
    {
        const float *wf = P(m, m->i_final);
        if (m->t[m->i_final].requires_grad)
            rms_bwd_dw(m->x_fin, H, m->rf, m->dxn, H, N, H, G(m, m->i_final));
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < N; t++)
            rms_bwd_dx(m->x_fin + t * H, m->rf[t], wf, m->dxn + t * H, H, m->dx + t * H);
    }

    for (int64_t l = c->n_layers - 1; l >= 0; l--) {
        const tlayer *tl = &m->layers[l];
        lact *a = &m->la[l];
        const float *lwT = wT + (size_t)l * wt_layer;
        const float *qkvT = lwT, *oT = qkvT + H * LD, *guT = oT + Q * H, *dT = guT + H * 2 * I;

        /* x_out = x_mid + act Wd^T:  dWd += dx^T act ; dact = dx Wd ; dx_mid = dx (+ below) */
        if ((st = lin_dw(m, l, KV_LIN_DOWN, m->dx, H, a->h, I, err))) return st;
        kv_tr_mm_nt(m->dx, N, H, H, dT, I, H, m->dh, I, work);
        /* act = silu(g) * u:  dg = dact * u * silu'(g) ; du = dact * silu(g) */
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < N; t++) {
            const float *g = a->g + t * I, *u = a->u + t * I, *da = m->dh + t * I;
            float *dg = m->dgu + t * 2 * I, *du = dg + I;
            for (int64_t i = 0; i < I; i++) {
                float s = 1.0f / (1.0f + expf(-g[i]));
                float silu = g[i] * s;
                dg[i] = da[i] * u[i] * (s * (1.0f + g[i] * (1.0f - s)));
                du[i] = da[i] * silu;
            }
        }
        /* g, u = h2 Wg^T, h2 Wu^T:  dWg += dg^T h2 ; dWu += du^T h2 ; dh2 = dg Wg + du Wu */
        if ((st = lin_dw(m, l, KV_LIN_GATE, m->dgu, 2 * I, a->xn2, H, err)) ||
            (st = lin_dw(m, l, KV_LIN_UP, m->dgu + I, 2 * I, a->xn2, H, err)))
            return st;
        kv_tr_mm_nt(m->dgu, N, 2 * I, 2 * I, guT, H, 2 * I, m->dxn, H, work);
        /* h2 = RMSNorm(x_mid):  dx_mid = dx + rms_bwd(dh2) */
        {
            const float *w = P(m, tl->post_norm);
            if (m->t[tl->post_norm].requires_grad)
                rms_bwd_dw(a->x_mid, H, a->r2, m->dxn, H, N, H, G(m, tl->post_norm));
#pragma omp parallel for schedule(static)
            for (int64_t t = 0; t < N; t++) {
                float *d = m->dxn + t * H, *dx = m->dx + t * H;
                rms_bwd_dx(a->x_mid + t * H, a->r2[t], w, d, H, d);
                for (int64_t i = 0; i < H; i++) dx[i] = dx[i] + d[i];
            }
        }
        /* x_mid = x_in + att Wo^T:  dWo += dx^T att ; datt = dx Wo */
        if ((st = lin_dw(m, l, KV_LIN_O, m->dx, H, a->att, Q, err))) return st;
        kv_tr_mm_nt(m->dx, N, H, H, oT, Q, H, m->datt, Q, work);
        /* att = softmax(q k^T * scale) v:  dq, dk, dv */
        attention_bwd(m, a);
        /* qf = RoPE(qn):  dqn = RoPE^T(dqf) (rotation by -angle) */
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < N; t++) {
            const float *cs = m->cosv + (t % T) * half, *sn = m->sinv + (t % T) * half;
            for (int64_t h = 0; h < nh + nkv; h++) {
                float *d = m->dqkv + t * LD + h * hd; /* q heads, then k heads */
                for (int64_t j = 0; j < half; j++) {
                    float d1 = d[j], d2 = d[j + half];
                    d[j] = d1 * cs[j] + d2 * sn[j];
                    d[j + half] = d2 * cs[j] - d1 * sn[j];
                }
            }
        }
        /* qn = RMSNorm_head(qr):  dw_qn += sum dqn * qr_hat ; dqr = rms_bwd(dqn) */
        if (tl->q_norm >= 0) {
            const float *wq = P(m, tl->q_norm), *wk = P(m, tl->k_norm);
            /* weight gradients first (they need dqn before it is overwritten); one
             * thread per coordinate, summed over tokens then heads in order */
            if (m->t[tl->q_norm].requires_grad || m->t[tl->k_norm].requires_grad) {
                float *gq = G(m, tl->q_norm), *gk = G(m, tl->k_norm);
                int rq = m->t[tl->q_norm].requires_grad, rk = m->t[tl->k_norm].requires_grad;
#pragma omp parallel for schedule(static)
                for (int64_t d = 0; d < 2 * hd; d++) {
                    int isq = d < hd;
                    int64_t i = isq ? d : d - hd;
                    if (isq ? !rq : !rk) continue;
                    double acc = 0;
                    for (int64_t t = 0; t < N; t++) {
                        if (isq) {
                            for (int64_t h = 0; h < nh; h++)
                                acc += (double)m->dqkv[t * LD + h * hd + i] *
                                       (double)(a->qr[t * Q + h * hd + i] * a->qrs[t * nh + h]);
                        } else {
                            for (int64_t h = 0; h < nkv; h++)
                                acc += (double)m->dqkv[t * LD + Q + h * hd + i] *
                                       (double)(a->kr[t * KV + h * hd + i] * a->krs[t * nkv + h]);
                        }
                    }
                    (isq ? gq : gk)[i] += (float)acc;
                }
            }
#pragma omp parallel for schedule(static)
            for (int64_t t = 0; t < N; t++) {
                for (int64_t h = 0; h < nh; h++) {
                    float *d = m->dqkv + t * LD + h * hd;
                    rms_bwd_dx(a->qr + t * Q + h * hd, a->qrs[t * nh + h], wq, d, hd, d);
                }
                for (int64_t h = 0; h < nkv; h++) {
                    float *d = m->dqkv + t * LD + Q + h * hd;
                    rms_bwd_dx(a->kr + t * KV + h * hd, a->krs[t * nkv + h], wk, d, hd, d);
                }
            }
        }
        /* q, k, v = h1 Wq^T, h1 Wk^T, h1 Wv^T:  dW* += d*^T h1 ; dh1 = dq Wq + dk Wk + dv Wv */
        if ((st = lin_dw(m, l, KV_LIN_Q, m->dqkv, LD, a->xn1, H, err)) ||
            (st = lin_dw(m, l, KV_LIN_K, m->dqkv + Q, LD, a->xn1, H, err)) ||
            (st = lin_dw(m, l, KV_LIN_V, m->dqkv + Q + KV, LD, a->xn1, H, err)))
            return st;
        kv_tr_mm_nt(m->dqkv, N, LD, LD, qkvT, H, LD, m->dxn, H, work);
        /* h1 = RMSNorm(x_in):  dx_in = dx_mid + rms_bwd(dh1) */
        {
            const float *w = P(m, tl->in_norm);
            if (m->t[tl->in_norm].requires_grad)
                rms_bwd_dw(a->x_in, H, a->r1, m->dxn, H, N, H, G(m, tl->in_norm));
#pragma omp parallel for schedule(static)
            for (int64_t t = 0; t < N; t++) {
                float *d = m->dxn + t * H, *dx = m->dx + t * H;
                rms_bwd_dx(a->x_in + t * H, a->r1[t], w, d, H, d);
                for (int64_t i = 0; i < H; i++) dx[i] = dx[i] + d[i];
            }
        }
    }

    /* x = E[id]:  dE[id_t] += dx_t, columns split across the team, tokens in order */
    if (m->t[m->i_embed].requires_grad) {
        float *gE = G(m, m->i_embed);
#pragma omp parallel
        {
            int nt = omp_get_num_threads(), tid = omp_get_thread_num();
            int64_t c0 = H * tid / nt, c1 = H * (tid + 1) / nt;
            for (int64_t t = 0; t < N; t++) {
                float *ge = gE + (size_t)m->ids[t] * H;
                const float *d = m->dx + t * H;
                for (int64_t i = c0; i < c1; i++) ge[i] += d[i];
            }
        }
    }
    return KV_OK;
}

/* ---- optimizer ----------------------------------------------------------------- */

double kv_tmodel_grad_norm(const kv_tmodel *m) {
    double s = 0;
    for (int i = 0; i < m->n_t; i++) {
        const kv_param_info *p = &m->t[i];
        if (!p->requires_grad) continue;
        const float *g = m->grads + p->offset;
        for (int64_t j = 0; j < p->numel; j++) s += (double)g[j] * (double)g[j];
    }
    return sqrt(s);
}

void kv_tmodel_scale_grads(kv_tmodel *m, float s) {
    for (int i = 0; i < m->n_t; i++) {
        kv_param_info *p = &m->t[i];
        float *g = m->grads + p->offset;
#pragma omp parallel for schedule(static) if (p->numel > 65536)
        for (int64_t j = 0; j < p->numel; j++) g[j] = g[j] * s;
    }
}

void kv_adamw_step(kv_tmodel *m, float *m1, float *m2, int64_t step, double lr, const kv_adamw *o) {
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    const double bc1 = 1.0 - pow(o->beta1, (double)step), bc2 = 1.0 - pow(o->beta2, (double)step);
    /* torch: step_size = lr / bc1 ; denom = sqrt(v) / sqrt(bc2) + eps */
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (int i = 0; i < m->n_t; i++) {
        const kv_param_info *p = &m->t[i];
        if (!p->requires_grad) continue;
        float *w = m->params + p->offset, *g = m->grads + p->offset;
        float *a = m1 + p->offset, *b = m2 + p->offset;
        const float decay = p->decay ? (float)(1.0 - lr * o->weight_decay) : 1.0f;
#pragma omp parallel for schedule(static) if (p->numel > 65536)
        for (int64_t j = 0; j < p->numel; j++) {
            w[j] = w[j] * decay;
            a[j] = b1 * a[j] + (1.0f - b1) * g[j];
            b[j] = b2 * b[j] + (1.0f - b2) * g[j] * g[j];
            w[j] = w[j] - step_size * (a[j] / (sqrtf(b[j]) / bc2_sqrt + eps));
        }
    }
}

double kv_lr_at(int64_t step, int64_t warmup, int64_t total, double lr_max, double lr_min) {
    if (warmup > 0 && step <= warmup) return lr_max * (double)step / (double)warmup;
    if (step >= total || total <= warmup) return lr_min;
    double r = (double)(step - warmup) / (double)(total - warmup);
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + cos(M_PI * r));
}
