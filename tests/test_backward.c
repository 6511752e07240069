/* test_backward.c — the training forward/backward pass against PyTorch autograd.
 *
 * Fixtures: tests/fixtures/train/<name>/ (tools/make_grad_fixtures.py): tiny random
 * Qwen3 checkpoints (tied and untied, GQA, head_dim != hidden/heads), a batch, and the
 * loss and gradient of every parameter from loss.backward() in fp32.
 *
 * Checks: the loss within 1e-5; every gradient tensor within a normwise relative error
 * (max |g - g_torch| / max |g_torch|) of 1e-4, with max abs / rel printed per tensor;
 * central finite differences of an independent fp64 reference forward (written below,
 * plain loops) on a few coordinates of several tensors; the GEMM helpers against their
 * scalar references on odd sizes; gradients bitwise equal for 1 and 2 threads; frozen
 * tensors; the linear-weight hook; errors. */
#include <omp.h>

#include "kvant/fileio.h"
#include "kvant/safetensors.h"
#include "kvant/train.h"
#include "train/train_internal.h"
#include "test.h"

#define FIXDIR "tests/fixtures/train"

/* Loss: transformers' fp32 loss vs ours, both fp32 computations of the same sum with
 * different reduction orders (torch's own fp32-vs-fp64 gap is ~1e-8 here). */
#define TOL_LOSS 1e-5
/* Gradients, normwise: torch's fp32 grads are within ~1.2e-6 of fp64 (reference.json);
 * our summation orders differ (blocked GEMMs, double-accumulated norms), worth a few
 * 1e-6; 1e-4 leaves room while still catching any wrong term (those are O(1)). */
#define TOL_GRAD 1e-4
/* Finite differences: fp64 central differences (h = 1e-5, truncation ~h^2) against our
 * fp32 gradient; relative to max(|fd|, 1e-3 * max|grad of that tensor|); worst seen 1e-5. */
#define TOL_FD 1e-4

static uint64_t rng_state = 12345;
static float frand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* ---- GEMM helpers vs scalar references ------------------------------------------ */

static void test_gemm_helpers(void) {
    const int64_t sizes[][3] = {{1, 1, 1}, {7, 33, 5}, {31, 17, 129}, {33, 130, 64},
                                {129, 7, 200}, {600, 65, 70}, {5, 300, 3}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t m = sizes[s][0], k = sizes[s][1], n = sizes[s][2];
        float *x = malloc((size_t)(m * k) * sizeof(float));
        float *w = malloc((size_t)(n * k) * sizeof(float));
        float *b = malloc((size_t)(k * n) * sizeof(float));
        float *dy = malloc((size_t)(m * n) * sizeof(float));
        float *y = malloc((size_t)(m * n) * sizeof(float)), *yr = malloc((size_t)(m * n) * sizeof(float));
        float *dw = malloc((size_t)(n * k) * sizeof(float)), *dwr = malloc((size_t)(n * k) * sizeof(float));
        float *scr = malloc((kv_tr_tn_scratch_floats(n, k) + (size_t)(n * k)) * sizeof(float));
        float *work = aligned_alloc(64, kv_tr_work_floats(omp_get_max_threads()) * sizeof(float));
        for (int64_t i = 0; i < m * k; i++) x[i] = frand();
        for (int64_t i = 0; i < n * k; i++) w[i] = frand(), b[i] = frand();
        for (int64_t i = 0; i < m * n; i++) dy[i] = frand();
        char label[64];
        /* fp32 sums of k products of O(1) terms in different orders: ~k * 2^-24 * sqrt(k) */
        double tol = 1e-6 * (double)(k > m ? k : m) + 1e-6;

        kv_tr_mm_nt(x, m, k, k, w, n, k, y, n, work);
        kv_tr_mm_nt_ref(x, m, k, k, w, n, k, yr, n);
        snprintf(label, sizeof label, "mm_nt %lldx%lldx%lld", (long long)m, (long long)k, (long long)n);
        CHECK_CLOSE(label, y, yr, (size_t)(m * n), tol, 1e-5);

        kv_tr_mm_nn(x, m, k, k, b, n, y, n, scr, work);
        kv_tr_mm_nn_ref(x, m, k, k, b, n, yr, n);
        snprintf(label, sizeof label, "mm_nn %lldx%lldx%lld", (long long)m, (long long)k, (long long)n);
        CHECK_CLOSE(label, y, yr, (size_t)(m * n), tol, 1e-5);

        for (int acc = 0; acc < 2; acc++) {
            for (int64_t i = 0; i < n * k; i++) dw[i] = dwr[i] = 0.5f;
            kv_tr_mm_tn(dy, m, n, n, x, k, k, dw, acc, scr, work);
            kv_tr_mm_tn_ref(dy, m, n, n, x, k, k, dwr, acc);
            snprintf(label, sizeof label, "mm_tn%s %lldx%lldx%lld", acc ? "+" : "", (long long)m,
                     (long long)k, (long long)n);
            CHECK_CLOSE(label, dw, dwr, (size_t)(n * k), tol, 1e-5);
        }
        free(x), free(w), free(b), free(dy), free(y), free(yr), free(dw), free(dwr), free(scr);
        free(work);
    }
}

/* ---- fixtures ------------------------------------------------------------------- */

typedef struct {
    char dir[256];
    kv_tmodel *m;
    kv_st_file *batch, *grads;
    int32_t *ids, *tgt;
    int64_t B, T;
    double loss_ref;
} fixture;

static int fixture_open(fixture *f, const char *name) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/%s", FIXDIR, name);
    kv_err err = {0};
    char path[512];
    if (kv_tmodel_load_hf(f->dir, &f->m, &err)) {
        fprintf(stderr, "  %s: %s\n", name, err.msg);
        return -1;
    }
    snprintf(path, sizeof path, "%s/batch.safetensors", f->dir);
    if (kv_st_open(path, &f->batch, &err)) goto fail;
    snprintf(path, sizeof path, "%s/grads.safetensors", f->dir);
    if (kv_st_open(path, &f->grads, &err)) goto fail;
    const kv_tensor *ti = kv_st_find(f->batch, "ids"), *tt = kv_st_find(f->batch, "targets");
    if (!ti || !tt || ti->dtype != KV_DTYPE_I32 || ti->ndim != 2) {
        fprintf(stderr, "  %s: bad batch.safetensors\n", name);
        return -1;
    }
    f->B = ti->shape[0];
    f->T = ti->shape[1];
    f->ids = (int32_t *)ti->data;
    f->tgt = (int32_t *)tt->data;
    snprintf(path, sizeof path, "%s/reference.json", f->dir);
    char *js = NULL;
    size_t len;
    if (kv_read_file(path, &js, &len, &err)) goto fail;
    const char *p = strstr(js, "\"loss_f32\":");
    f->loss_ref = p ? strtod(p + 11, NULL) : NAN;
    free(js);
    return 0;
fail:
    fprintf(stderr, "  %s: %s\n", name, err.msg);
    return -1;
}

static void fixture_close(fixture *f) {
    kv_tmodel_free(f->m);
    kv_st_close(f->batch);
    kv_st_close(f->grads);
}

/* ---- fp64 reference forward (loss only), independent of src/train ---------------- */

static const float *par(kv_tmodel *m, const char *fmt, long long l) {
    char name[96];
    snprintf(name, sizeof name, fmt, l);
    int i = kv_tmodel_find(m, name);
    return i < 0 ? NULL : kv_tmodel_params(m) + kv_tmodel_tensor(m, i)->offset;
}


/* y[T, n] = x[T, k] W^T, with one coordinate of W possibly perturbed: W[pr, pc] += dlt
 * when w == pw (the perturbation is applied in double, so it is not lost to fp32). */
typedef struct {
    const float *pw;
    int64_t pidx;
    double dlt;
} perturb;

static double wv(const float *w, int64_t i, const perturb *pt) {
    return (double)w[i] + (w == pt->pw && i == pt->pidx ? pt->dlt : 0.0);
}

static void rms64(const double *x, const float *w, int64_t n, double eps, double *out,
                  const perturb *pt) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / (double)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = wv(w, i, pt) * x[i] * r;
}

static void lin64(const double *x, int64_t T, int64_t k, const float *w, int64_t n, double *y,
                  const perturb *pt) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < n; j++) {
            double a = 0;
            for (int64_t p = 0; p < k; p++) a += x[t * k + p] * wv(w, j * k + p, pt);
            y[t * n + j] = a;
        }
}

static double ref_loss64(kv_tmodel *m, const int32_t *ids, const int32_t *tgt, int64_t B,
                         int64_t T, const perturb *pt) {
    const kv_config *c = kv_tmodel_config(m);
    const int64_t H = c->hidden_size, I = c->intermediate_size, hd = c->head_dim, half = hd / 2;
    const int64_t nh = c->n_heads, nkv = c->n_kv_heads, Q = nh * hd, KV = nkv * hd, V = c->vocab_size;
    const double eps = c->rms_norm_eps;
    double *x = calloc((size_t)(T * H), sizeof(double)), *xn = calloc((size_t)(T * H), sizeof(double));
    double *q = calloc((size_t)(T * Q), sizeof(double)), *k = calloc((size_t)(T * KV), sizeof(double));
    double *v = calloc((size_t)(T * KV), sizeof(double)), *a = calloc((size_t)(T * Q), sizeof(double));
    double *g = calloc((size_t)(T * I), sizeof(double)), *u = calloc((size_t)(T * I), sizeof(double));
    double *o = calloc((size_t)(T * (H > V ? H : V)), sizeof(double)), *tmp = calloc((size_t)hd, sizeof(double));
    double total = 0;
    int64_t nv = 0;
    const float *E = par(m, "model.embed_tokens.weight", 0);
    const float *Wlm = c->tie_word_embeddings ? E : par(m, "lm_head.weight", 0);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < H; i++) x[t * H + i] = wv(E, (int64_t)ids[b * T + t] * H + i, pt);
        for (long long l = 0; l < c->n_layers; l++) {
            for (int64_t t = 0; t < T; t++)
                rms64(x + t * H, par(m, "model.layers.%lld.input_layernorm.weight", l), H, eps, xn + t * H, pt);
            lin64(xn, T, H, par(m, "model.layers.%lld.self_attn.q_proj.weight", l), Q, q, pt);
            lin64(xn, T, H, par(m, "model.layers.%lld.self_attn.k_proj.weight", l), KV, k, pt);
            lin64(xn, T, H, par(m, "model.layers.%lld.self_attn.v_proj.weight", l), KV, v, pt);
            const float *qn = par(m, "model.layers.%lld.self_attn.q_norm.weight", l);
            const float *kn = par(m, "model.layers.%lld.self_attn.k_norm.weight", l);
            for (int64_t t = 0; t < T; t++)
                for (int64_t h = 0; h < nh + nkv; h++) {
                    double *hv = h < nh ? q + t * Q + h * hd : k + t * KV + (h - nh) * hd;
                    if (qn) rms64(hv, h < nh ? qn : kn, hd, eps, hv, pt);
                    for (int64_t j = 0; j < half; j++) {
                        double f = (double)t * pow(c->rope_theta, -(double)(2 * j) / (double)hd);
                        double x1 = hv[j], x2 = hv[j + half];
                        tmp[j] = x1 * cos(f) - x2 * sin(f);
                        tmp[j + half] = x2 * cos(f) + x1 * sin(f);
                    }
                    memcpy(hv, tmp, (size_t)hd * sizeof(double));
                }
            for (int64_t h = 0; h < nh; h++) {
                int64_t kh = h / (nh / nkv);
                for (int64_t i = 0; i < T; i++) {
                    double s[512], mx = -INFINITY, z = 0;
                    for (int64_t j = 0; j <= i; j++) {
                        double d = 0;
                        for (int64_t e = 0; e < hd; e++) d += q[i * Q + h * hd + e] * k[j * KV + kh * hd + e];
                        s[j] = d / sqrt((double)hd);
                        mx = s[j] > mx ? s[j] : mx;
                    }
                    for (int64_t j = 0; j <= i; j++) z += (s[j] = exp(s[j] - mx));
                    for (int64_t e = 0; e < hd; e++) {
                        double acc = 0;
                        for (int64_t j = 0; j <= i; j++) acc += s[j] / z * v[j * KV + kh * hd + e];
                        a[i * Q + h * hd + e] = acc;
                    }
                }
            }
            lin64(a, T, Q, par(m, "model.layers.%lld.self_attn.o_proj.weight", l), H, o, pt);
            for (int64_t i = 0; i < T * H; i++) x[i] += o[i];
            for (int64_t t = 0; t < T; t++)
                rms64(x + t * H, par(m, "model.layers.%lld.post_attention_layernorm.weight", l), H, eps, xn + t * H, pt);
            lin64(xn, T, H, par(m, "model.layers.%lld.mlp.gate_proj.weight", l), I, g, pt);
            lin64(xn, T, H, par(m, "model.layers.%lld.mlp.up_proj.weight", l), I, u, pt);
            for (int64_t i = 0; i < T * I; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            lin64(g, T, I, par(m, "model.layers.%lld.mlp.down_proj.weight", l), H, o, pt);
            for (int64_t i = 0; i < T * H; i++) x[i] += o[i];
        }
        for (int64_t t = 0; t < T; t++) rms64(x + t * H, par(m, "model.norm.weight", 0), H, eps, xn + t * H, pt);
        lin64(xn, T, H, Wlm, V, o, pt);
        for (int64_t t = 0; t < T; t++) {
            int32_t y = tgt[b * T + t];
            if (y < 0) continue;
            double mx = -INFINITY, z = 0;
            for (int64_t j = 0; j < V; j++) mx = o[t * V + j] > mx ? o[t * V + j] : mx;
            for (int64_t j = 0; j < V; j++) z += exp(o[t * V + j] - mx);
            total += mx + log(z) - o[t * V + y];
            nv++;
        }
    }
    free(x), free(xn), free(q), free(k), free(v), free(a), free(g), free(u), free(o), free(tmp);
    return nv ? total / (double)nv : 0;
}

/* ---- the fixture tests ------------------------------------------------------------ */

static void check_fixture(const char *name) {
    fixture f;
    if (fixture_open(&f, name)) {
        CHECK(0);
        return;
    }
    kv_tmodel *m = f.m;
    kv_err err = {0};
    double loss = 0;
    kv_tmodel_zero_grad(m);
    CHECK_EQ_INT(kv_tmodel_forward(m, f.ids, f.tgt, f.B, f.T, &loss, &err), KV_OK);
    fprintf(stderr, "  %s: loss %.9f torch %.9f |diff| %.3g\n", name, loss, f.loss_ref,
            fabs(loss - f.loss_ref));
    CHECK(fabs(loss - f.loss_ref) <= TOL_LOSS);
    CHECK_EQ_INT(kv_tmodel_backward(m, 1.0, &err), KV_OK);

    /* every tensor of the table has a torch gradient and vice versa */
    CHECK_EQ_INT(kv_st_count(f.grads), kv_tmodel_n_tensors(m));
    double worst = 0;
    for (int i = 0; i < kv_tmodel_n_tensors(m); i++) {
        const kv_param_info *p = kv_tmodel_tensor(m, i);
        const kv_tensor *g = kv_st_find(f.grads, p->name);
        CHECK_MSG(g && g->dtype == KV_DTYPE_F32 && kv_tensor_numel(g) == p->numel, "%s", p->name);
        if (!g) continue;
        const float *ours = kv_tmodel_grads(m) + p->offset, *ref = g->data;
        double mabs = 0, mref = 0, mrel = 0;
        for (int64_t j = 0; j < p->numel; j++) {
            double d = fabs((double)ours[j] - (double)ref[j]);
            mabs = d > mabs || d != d ? d : mabs;
            mref = fabs(ref[j]) > mref ? fabs(ref[j]) : mref;
            if (fabs(ref[j]) > 1e-6) mrel = d / fabs(ref[j]) > mrel ? d / fabs(ref[j]) : mrel;
        }
        double nrel = mabs / (mref > 0 ? mref : 1);
        worst = nrel > worst ? nrel : worst;
        fprintf(stderr, "  %-44s max_abs %.3g max|g| %.3g normwise_rel %.3g elem_rel(|g|>1e-6) %.3g%s\n",
                p->name, mabs, mref, nrel, mrel, nrel <= TOL_GRAD ? "" : " MISMATCH");
        CHECK(nrel <= TOL_GRAD);
    }
    fprintf(stderr, "  %s: worst normwise relative gradient error %.3g (tolerance %.0e)\n", name,
            worst, TOL_GRAD);

    /* fp64 finite differences on a few coordinates of several tensors */
    double l0 = ref_loss64(m, f.ids, f.tgt, f.B, f.T, &(perturb){NULL, 0, 0});
    fprintf(stderr, "  %s: fp64 reference loss %.12f (ours %.9f)\n", name, l0, loss);
    CHECK(fabs(l0 - loss) <= TOL_LOSS);
    const char *names[] = {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                           "model.layers.0.self_attn.k_norm.weight", "model.layers.1.self_attn.v_proj.weight",
                           "model.layers.0.input_layernorm.weight", "model.layers.1.mlp.down_proj.weight",
                           "model.layers.1.mlp.gate_proj.weight", "model.norm.weight", "lm_head.weight"};
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        int i = kv_tmodel_find(m, names[n]);
        if (i < 0) continue; /* lm_head when tied */
        const kv_param_info *p = kv_tmodel_tensor(m, i);
        const float *w = kv_tmodel_params(m) + p->offset, *gr = kv_tmodel_grads(m) + p->offset;
        double gmax = 0;
        for (int64_t j = 0; j < p->numel; j++) gmax = fabs(gr[j]) > gmax ? fabs(gr[j]) : gmax;
        for (int rep = 0; rep < 3; rep++) {
            int64_t j = (int64_t)((frand() * 0.5 + 0.5) * (double)(p->numel - 1));
            if (rep == 0 && i == kv_tmodel_find(m, "model.embed_tokens.weight"))
                j = (int64_t)f.ids[1] * p->shape[1] + 3; /* a row that is used */
            const double h = 1e-5;
            double lp = ref_loss64(m, f.ids, f.tgt, f.B, f.T, &(perturb){w, j, h});
            double lm = ref_loss64(m, f.ids, f.tgt, f.B, f.T, &(perturb){w, j, -h});
            double fd = (lp - lm) / (2 * h);
            double rel = fabs(fd - gr[j]) / fmax(fabs(fd), 1e-3 * gmax);
            fprintf(stderr, "  fd %-44s [%lld] fd %+.9f ours %+.9f rel %.2g\n", p->name,
                    (long long)j, fd, gr[j], rel);
            CHECK(rel <= TOL_FD);
        }
    }

    /* bitwise the same gradients with 1 thread */
    size_t nb = (size_t)kv_tmodel_block_floats(m);
    float *g2 = malloc(nb * sizeof(float));
    memcpy(g2, kv_tmodel_grads(m), nb * sizeof(float));
    int nth = omp_get_max_threads();
    omp_set_num_threads(1);
    double loss1 = 0;
    kv_tmodel_zero_grad(m);
    CHECK_EQ_INT(kv_tmodel_forward(m, f.ids, f.tgt, f.B, f.T, &loss1, &err), KV_OK);
    CHECK_EQ_INT(kv_tmodel_backward(m, 1.0, &err), KV_OK);
    omp_set_num_threads(nth);
    CHECK(loss1 == loss);
    CHECK(memcmp(g2, kv_tmodel_grads(m), nb * sizeof(float)) == 0);
    free(g2);
    fixture_close(&f);
}

static void test_grads_tied(void) { check_fixture("qwen3_tied"); }
static void test_grads_untied(void) { check_fixture("qwen3_untied"); }

/* Frozen tensors keep a zero gradient and change nothing else. */
static void test_requires_grad(void) {
    fixture f;
    if (fixture_open(&f, "qwen3_untied")) {
        CHECK(0);
        return;
    }
    kv_tmodel *m = f.m;
    kv_err err = {0};
    double loss;
    size_t nb = (size_t)kv_tmodel_block_floats(m);
    kv_tmodel_zero_grad(m);
    kv_tmodel_forward(m, f.ids, f.tgt, f.B, f.T, &loss, &err);
    kv_tmodel_backward(m, 1.0, &err);
    float *full = malloc(nb * sizeof(float));
    memcpy(full, kv_tmodel_grads(m), nb * sizeof(float));
    int frozen[] = {kv_tmodel_find(m, "model.layers.0.mlp.up_proj.weight"),
                    kv_tmodel_find(m, "model.layers.1.self_attn.q_norm.weight"),
                    kv_tmodel_find(m, "model.embed_tokens.weight")};
    for (int i = 0; i < 3; i++) kv_tmodel_set_requires_grad(m, frozen[i], 0);
    kv_tmodel_zero_grad(m);
    kv_tmodel_forward(m, f.ids, f.tgt, f.B, f.T, &loss, &err);
    CHECK_EQ_INT(kv_tmodel_backward(m, 1.0, &err), KV_OK);
    for (int i = 0; i < kv_tmodel_n_tensors(m); i++) {
        const kv_param_info *p = kv_tmodel_tensor(m, i);
        const float *g = kv_tmodel_grads(m) + p->offset;
        int is_frozen = i == frozen[0] || i == frozen[1] || i == frozen[2];
        int same = memcmp(g, full + p->offset, (size_t)p->numel * sizeof(float)) == 0;
        int zero = 1;
        for (int64_t j = 0; j < p->numel; j++) zero &= g[j] == 0.0f;
        CHECK_MSG(is_frozen ? zero : same, "%s", p->name);
    }
    free(full);
    fixture_close(&f);
}

/* A hook that scales each output row of layer 0's q_proj by s[r]: W_eff = s[r] W[r, :].
 * With s = 1 the loss is bitwise the unhooked one, and dL/ds[r] = sum_k dW[r, k] W[r, k]. */
typedef struct {
    const float *w0;
    float s[256], ds[256];
    int64_t n_out;
} scale_hook;

static kv_status sh_weight(void *ctx, int64_t l, kv_lin_kind k, float *w, int64_t n_out,
                           int64_t n_in, kv_err *err) {
    (void)l, (void)k, (void)err;
    scale_hook *h = ctx;
    for (int64_t r = 0; r < n_out; r++)
        for (int64_t c = 0; c < n_in; c++) w[r * n_in + c] = h->s[r] * h->w0[r * n_in + c];
    return KV_OK;
}
static kv_status sh_grad(void *ctx, int64_t l, kv_lin_kind k, const float *dw, int64_t n_out,
                         int64_t n_in, kv_err *err) {
    (void)l, (void)k, (void)err;
    scale_hook *h = ctx;
    for (int64_t r = 0; r < n_out; r++) {
        double a = 0;
        for (int64_t c = 0; c < n_in; c++) a += (double)dw[r * n_in + c] * h->w0[r * n_in + c];
        h->ds[r] += (float)a;
    }
    return KV_OK;
}
static int sh_wants(void *ctx, int64_t l, kv_lin_kind k) {
    (void)ctx;
    return l == 0 && k == KV_LIN_Q;
}

static void test_linear_hook(void) {
    fixture f;
    if (fixture_open(&f, "qwen3_tied")) {
        CHECK(0);
        return;
    }
    kv_tmodel *m = f.m;
    kv_err err = {0};
    int iq = kv_tmodel_linear_index(m, 0, KV_LIN_Q);
    const kv_param_info *p = kv_tmodel_tensor(m, iq);
    double l_plain, l_hook;
    kv_tmodel_zero_grad(m);
    kv_tmodel_forward(m, f.ids, f.tgt, f.B, f.T, &l_plain, &err);
    kv_tmodel_backward(m, 1.0, &err);
    const float *gw = kv_tmodel_grads(m) + p->offset;
    scale_hook h = {kv_tmodel_params(m) + p->offset, {0}, {0}, p->shape[0]};
    for (int r = 0; r < 256; r++) h.s[r] = 1.0f;
    double expect[256];
    for (int64_t r = 0; r < p->shape[0]; r++) {
        expect[r] = 0;
        for (int64_t c = 0; c < p->shape[1]; c++)
            expect[r] += (double)gw[r * p->shape[1] + c] * h.w0[r * p->shape[1] + c];
    }
    kv_linear_hook hk = {&h, sh_weight, sh_grad, sh_wants};
    CHECK_EQ_INT(kv_tmodel_set_linear_hook(m, &hk, &err), KV_OK);
    kv_tmodel_set_requires_grad(m, iq, 0);
    kv_tmodel_zero_grad(m);
    CHECK_EQ_INT(kv_tmodel_forward(m, f.ids, f.tgt, f.B, f.T, &l_hook, &err), KV_OK);
    CHECK_EQ_INT(kv_tmodel_backward(m, 1.0, &err), KV_OK);
    CHECK(l_hook == l_plain);
    double worst = 0;
    for (int64_t r = 0; r < p->shape[0]; r++)
        worst = fmax(worst, fabs(h.ds[r] - expect[r]) / fmax(fabs(expect[r]), 1e-4));
    fprintf(stderr, "  hook: dL/ds vs sum dW*W max rel %.3g\n", worst);
    CHECK(worst < 1e-4); /* the same sums in another order */
    kv_tmodel_set_linear_hook(m, NULL, &err);
    fixture_close(&f);
}

static void test_errors(void) {
    fixture f;
    if (fixture_open(&f, "qwen3_tied")) {
        CHECK(0);
        return;
    }
    kv_err err = {0};
    double loss;
    CHECK_ERR(kv_tmodel_backward(f.m, 1.0, &err), &err, KV_EINVAL, "no forward");
    int32_t bad[2] = {1, 300};
    CHECK_ERR(kv_tmodel_forward(f.m, bad, NULL, 1, 2, &loss, &err), &err, KV_ERANGE,
              "token id 300 at 1 out of range");
    kv_config c = *kv_tmodel_config(f.m);
    c.attention_bias = 1;
    kv_tmodel *m2;
    CHECK_ERR(kv_tmodel_new(&c, &m2, &err), &err, KV_EUNSUPPORTED, "biases");
    c.attention_bias = 0;
    c.n_kv_heads = 3;
    CHECK_ERR(kv_tmodel_new(&c, &m2, &err), &err, KV_EINVAL, "not a multiple");
    fixture_close(&f);
}

/* Warmup, cosine, the ends. */
static void test_lr_schedule(void) {
    CHECK(fabs(kv_lr_at(1, 10, 100, 1.0, 0.1) - 0.1) < 1e-12);
    CHECK(fabs(kv_lr_at(10, 10, 100, 1.0, 0.1) - 1.0) < 1e-12);
    CHECK(fabs(kv_lr_at(55, 10, 100, 1.0, 0.1) - 0.55) < 1e-12);
    CHECK(fabs(kv_lr_at(100, 10, 100, 1.0, 0.1) - 0.1) < 1e-12);
}

int main(void) {
    KV_RUN(test_gemm_helpers);
    KV_RUN(test_grads_tied);
    KV_RUN(test_grads_untied);
    KV_RUN(test_requires_grad);
    KV_RUN(test_linear_hook);
    KV_RUN(test_errors);
    KV_RUN(test_lr_schedule);
    return kv_test_summary();
}
