/* test_model.c — the forward pass against Hugging Face transformers' logits.
 *
 * For every fixture in tests/fixtures/models/<name>/ (made by
 * tools/make_model_fixtures.py: tiny random Qwen3/Qwen2/Llama checkpoints in f32, bf16,
 * f16, one sharded) the logits of ids_<k> must equal logits_<k>, transformers' fp32
 * forward, within 1e-4; logits_native_<k> (transformers in bf16/f16) within the
 * native-vs-fp32 gap the generator measured, plus that 1e-4. Then the properties the
 * rest of kvant leans on: incremental decoding with the KV cache equals the full
 * forward, a batch of different-length sequences equals separate forwards, 1 and 2
 * threads give identical bits, the scalar ref kernels agree with the SIMD ones, and
 * bad token ids or an overfull cache are KV_ERANGE errors. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <omp.h>

#include "kvant/fileio.h"
#include "kvant/kernels.h"
#include "kvant/model.h"
#include "kvant/safetensors.h"
#include "model/model_internal.h"
#include "test.h"

#define FIXDIR "tests/fixtures/models"

/* fp32 forward vs transformers fp32: both are fp32 computations of the same math; the
 * generator measured transformers' own fp32-vs-fp64 gap at <= 1e-5 on these models, and
 * kvant's summation order differs from torch's by a similar amount. */
#define TOL_F32 1e-4

typedef struct {
    char dir[512];
    kv_model *m;
    kv_st_file *ref;
    cJSON *json;
    int64_t vocab;
} fixture;

static int fixture_open(fixture *f, const char *name) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/%s", FIXDIR, name);
    kv_err err = {0};
    char path[600];
    if (kv_model_load(f->dir, &f->m, &err)) {
        fprintf(stderr, "  %s: load failed: %s\n", name, err.msg);
        return -1;
    }
    snprintf(path, sizeof path, "%s/reference.safetensors", f->dir);
    if (kv_st_open(path, &f->ref, &err)) {
        fprintf(stderr, "  %s: %s\n", name, err.msg);
        return -1;
    }
    snprintf(path, sizeof path, "%s/reference.json", f->dir);
    char *txt = NULL;
    size_t len = 0;
    if (!kv_read_file(path, &txt, &len, &err)) {
        f->json = cJSON_Parse(txt);
        free(txt);
    }
    f->vocab = kv_model_config(f->m)->vocab_size;
    return 0;
}

static void fixture_close(fixture *f) {
    kv_model_free(f->m);
    kv_st_close(f->ref);
    cJSON_Delete(f->json);
}

static const kv_tensor *ref_get(const fixture *f, const char *fmt, int k) {
    char name[64];
    snprintf(name, sizeof name, fmt, k);
    return kv_st_find(f->ref, name);
}

/* max |native - fp32| the generator measured for sequence k, or -1. */
static double native_gap(const fixture *f, int k) {
    const cJSON *st = f->json ? cJSON_GetObjectItem(f->json, "stats") : NULL;
    const cJSON *a = st ? cJSON_GetObjectItem(st, "max_abs_native_minus_f32") : NULL;
    const cJSON *v = a ? cJSON_GetArrayItem(a, k) : NULL;
    return v && cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= mx)) mx = d;
    }
    return mx;
}

/* Full forward of ids (one sequence from position 0): logits [n, vocab]. */
static float *run_all(fixture *f, const int32_t *ids, int64_t n) {
    kv_err err = {0};
    kv_cache *c = NULL;
    float *lg = malloc(sizeof(float) * (size_t)(n * f->vocab));
    kv_status st = kv_cache_new(f->m, 1, n, &c, &err);
    if (!st) st = kv_model_forward1(f->m, c, 0, ids, n, KV_LOGITS_ALL, lg, &err);
    CHECK_MSG(st == KV_OK, "%s: %s", f->dir, err.msg);
    kv_cache_free(c);
    return lg;
}

static double worst_f32 = 0, worst_native_ratio = 0;

static void check_fixture(const char *name) {
    fixture f;
    if (fixture_open(&f, name)) {
        CHECK_MSG(0, "fixture %s did not open", name);
        fixture_close(&f);
        return;
    }
    const int64_t V = f.vocab;
    double fix_max = 0;
    for (int k = 0;; k++) {
        const kv_tensor *ids = ref_get(&f, "ids_%d", k), *lr = ref_get(&f, "logits_%d", k);
        if (!ids || !lr) break;
        int64_t n = ids->shape[0], rows = lr->shape[0];
        CHECK(lr->shape[1] == V && rows <= n && ids->dtype == KV_DTYPE_I32);
        float *lg = run_all(&f, ids->data, n);
        /* the reference keeps the last `rows` positions of long sequences */
        const float *ours = lg + (n - rows) * V;
        char lab[320];
        snprintf(lab, sizeof lab, "%.80s logits_%d [%lld tokens] vs transformers fp32", name, k,
                 (long long)n);
        double e = CHECK_CLOSE(lab, ours, (const float *)lr->data, (size_t)(rows * V), TOL_F32, 0);
        if (e > fix_max) fix_max = e;
        const kv_tensor *ln = ref_get(&f, "logits_native_%d", k);
        if (ln) {
            /* transformers in bf16/f16 rounds every activation to half precision; it
             * differs from its own fp32 forward by `gap` (measured by the generator), so
             * kvant's fp32 logits may differ from it by at most gap + TOL_F32. */
            double gap = native_gap(&f, k);
            CHECK_MSG(gap >= 0, "%s: reference.json lacks max_abs_native_minus_f32[%d]", name, k);
            snprintf(lab, sizeof lab, "%.80s logits_native_%d vs transformers %s", name, k,
                     kv_model_config(f.m)->torch_dtype);
            double en = CHECK_CLOSE(lab, ours, (const float *)ln->data, (size_t)(rows * V),
                                    gap * 1.001 + TOL_F32, 0);
            if (gap > 0 && en / gap > worst_native_ratio) worst_native_ratio = en / gap;
        }
        free(lg);
    }
    if (fix_max > worst_f32) worst_f32 = fix_max;
    printf("# %s: max abs error vs transformers fp32 = %.3g\n", name, fix_max);
    fixture_close(&f);
}

static int list_fixtures(char names[][128], int cap) {
    DIR *d = opendir(FIXDIR);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (e->d_name[0] == '.') continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s/reference.safetensors", FIXDIR, e->d_name);
        if (!kv_is_file(p)) continue;
        if (strlen(e->d_name) >= 128) continue;
        memcpy(names[n++], e->d_name, strlen(e->d_name) + 1);
    }
    closedir(d);
    /* stable order for readable output */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[128];
            memcpy(t, names[j], 128);
            memcpy(names[j], names[j - 1], 128);
            memcpy(names[j - 1], t, 128);
        }
    return n;
}

static char fx[16][128];
static int n_fx;

static void test_logits_vs_transformers(void) {
    if (n_fx <= 0) {
        printf("# note: no fixtures in %s (run tools/make_model_fixtures.py); skipped\n", FIXDIR);
        return;
    }
    for (int i = 0; i < n_fx; i++) check_fixture(fx[i]);
    printf("# worst max abs error vs transformers fp32: %.3g (bound %.0e)\n", worst_f32, TOL_F32);
}

/* Prefill part of a sequence, then one token at a time: the same logits as one full
 * forward (the decode steps take the m = 1 GEMV path, the prefill the GEMM path, so they
 * agree up to reassociation of fp32 sums: 1e-5 on O(1) logits). */
static void test_incremental_decode(void) {
    for (int i = 0; i < n_fx; i++) {
        fixture f;
        if (fixture_open(&f, fx[i])) {
            fixture_close(&f);
            continue;
        }
        const kv_tensor *ids = ref_get(&f, "ids_%d", 2);
        if (!ids) {
            fixture_close(&f);
            continue;
        }
        const int32_t *id = ids->data;
        int64_t n = ids->shape[0], V = f.vocab, pre = n / 2 + 1;
        float *full = run_all(&f, id, n);
        float *inc = malloc(sizeof(float) * (size_t)(n * V));
        kv_err err = {0};
        kv_cache *c = NULL;
        CHECK(kv_cache_new(f.m, 2, n, &c, &err) == KV_OK);
        /* use slot 1 to exercise a non-zero slot offset */
        CHECK(kv_model_forward1(f.m, c, 1, id, pre, KV_LOGITS_ALL, inc, &err) == KV_OK);
        for (int64_t t = pre; t < n; t++)
            CHECK(kv_model_forward1(f.m, c, 1, id + t, 1, KV_LOGITS_LAST, inc + t * V, &err) ==
                  KV_OK);
        CHECK_EQ_INT(kv_cache_len(c, 1), n);
        char lab[320];
        snprintf(lab, sizeof lab, "%.80s incremental vs full (%lld prefill + %lld steps)", fx[i],
                 (long long)pre, (long long)(n - pre));
        CHECK_CLOSE(lab, inc, full, (size_t)(n * V), 1e-5, 0);
        /* truncate and redo the tail: the cache must be reusable */
        kv_cache_truncate(c, 1, pre);
        CHECK(kv_model_forward1(f.m, c, 1, id + pre, n - pre, KV_LOGITS_ALL, inc + pre * V, &err) ==
              KV_OK);
        snprintf(lab, sizeof lab, "%.80s truncate + re-prefill vs full", fx[i]);
        CHECK_CLOSE(lab, inc + pre * V, full + pre * V, (size_t)((n - pre) * V), 1e-5, 0);
        /* a copied prefix continues like the original */
        CHECK(kv_cache_copy_prefix(c, 1, 0, pre, &err) == KV_OK);
        CHECK(kv_model_forward1(f.m, c, 0, id + pre, 1, KV_LOGITS_LAST, inc, &err) == KV_OK);
        snprintf(lab, sizeof lab, "%.80s copied prefix + 1 token", fx[i]);
        CHECK_CLOSE(lab, inc, full + pre * V, (size_t)V, 1e-5, 0);
        kv_cache_free(c);
        free(full);
        free(inc);
        fixture_close(&f);
    }
}

/* Several sequences of different lengths in one batch (stacked through the linear
 * layers, attention per slot) equal separate forwards; where the fixture has a
 * dedicated batch reference, it is checked against transformers too. */
static void test_batch(void) {
    for (int i = 0; i < n_fx; i++) {
        fixture f;
        if (fixture_open(&f, fx[i])) {
            fixture_close(&f);
            continue;
        }
        const int64_t V = f.vocab;
        const kv_tensor *a = ref_get(&f, "ids_batch%d", 0), *b = ref_get(&f, "ids_batch%d", 1);
        const kv_tensor *ra = NULL, *rb = NULL;
        int64_t na, nb;
        const int32_t *ia, *ib;
        if (a && b) {
            ra = ref_get(&f, "logits_batch%d", 0);
            rb = ref_get(&f, "logits_batch%d", 1);
            ia = a->data, ib = b->data, na = a->shape[0], nb = b->shape[0];
        } else {
            const kv_tensor *s1 = ref_get(&f, "ids_%d", 1), *s2 = ref_get(&f, "ids_%d", 2);
            if (!s1 || !s2) {
                fixture_close(&f);
                continue;
            }
            ia = s1->data, na = s1->shape[0];
            ib = (const int32_t *)s2->data + 3, nb = s2->shape[0] - 3;
        }
        float *sa = run_all(&f, ia, na), *sb = run_all(&f, ib, nb);
        /* three sequences: a in slot 2, b in slot 0, and the 1-token start of a in slot 1
         * whose slot already holds a prefix (continuing from position 1) */
        kv_err err = {0};
        kv_cache *c = NULL;
        CHECK(kv_cache_new(f.m, 3, na + nb, &c, &err) == KV_OK);
        float *one = malloc(sizeof(float) * (size_t)V);
        CHECK(kv_model_forward1(f.m, c, 1, ia, 1, KV_LOGITS_LAST, one, &err) == KV_OK);
        int slots[3] = {2, 0, 1};
        const int32_t *idv[3] = {ia, ib, ia + 1};
        int64_t nv[3] = {na, nb, na - 1};
        kv_batch bt = {3, slots, idv, nv};
        float *lg = malloc(sizeof(float) * (size_t)((2 * na + nb) * V));
        kv_status st = kv_model_forward(f.m, c, &bt, KV_LOGITS_ALL, lg, &err);
        CHECK_MSG(st == KV_OK, "%s", err.msg);
        char lab[320];
        snprintf(lab, sizeof lab, "%.80s batch seq 0 (%lld tokens) vs alone", fx[i], (long long)na);
        CHECK_CLOSE(lab, lg, sa, (size_t)(na * V), 1e-5, 0);
        snprintf(lab, sizeof lab, "%.80s batch seq 1 (%lld tokens) vs alone", fx[i], (long long)nb);
        CHECK_CLOSE(lab, lg + na * V, sb, (size_t)(nb * V), 1e-5, 0);
        snprintf(lab, sizeof lab, "%.80s batch seq 2 (continued slot) vs alone", fx[i]);
        CHECK_CLOSE(lab, lg + (na + nb) * V, sa + V, (size_t)((na - 1) * V), 1e-5, 0);
        if (ra && rb) {
            snprintf(lab, sizeof lab, "%.80s batch seq 0 vs transformers", fx[i]);
            CHECK_CLOSE(lab, lg, (const float *)ra->data, (size_t)(na * V), TOL_F32, 0);
            snprintf(lab, sizeof lab, "%.80s batch seq 1 vs transformers", fx[i]);
            CHECK_CLOSE(lab, lg + na * V, (const float *)rb->data, (size_t)(nb * V), TOL_F32, 0);
        }
        /* KV_LOGITS_LAST on the same batch shape gives the last rows */
        kv_cache_truncate(c, 2, 0);
        kv_cache_truncate(c, 0, 0);
        kv_cache_truncate(c, 1, 1);
        float last[3 * 512];
        if (V <= 512) {
            CHECK(kv_model_forward(f.m, c, &bt, KV_LOGITS_LAST, last, &err) == KV_OK);
            CHECK_CLOSE("batch LAST seq 0", last, sa + (na - 1) * V, (size_t)V, 1e-5, 0);
            CHECK_CLOSE("batch LAST seq 1", last + V, sb + (nb - 1) * V, (size_t)V, 1e-5, 0);
            CHECK_CLOSE("batch LAST seq 2", last + 2 * V, sa + (na - 1) * V, (size_t)V, 1e-5, 0);
        }
        kv_cache_free(c);
        free(one);
        free(lg);
        free(sa);
        free(sb);
        fixture_close(&f);
    }
}

/* Every output is owned by one thread and computed in a fixed order: 1 and 2 threads
 * give identical bits, for a prefill (GEMM) and a decode step (GEMV). */
static void test_threads_identical(void) {
    if (n_fx <= 0) return;
    int was = omp_get_max_threads();
    for (int i = 0; i < n_fx; i++) {
        fixture f;
        if (fixture_open(&f, fx[i])) {
            fixture_close(&f);
            continue;
        }
        const kv_tensor *ids = ref_get(&f, "ids_%d", 2);
        int64_t n = ids->shape[0], V = f.vocab;
        float *r[2];
        for (int nt = 1; nt <= 2; nt++) {
            omp_set_num_threads(nt);
            r[nt - 1] = malloc(sizeof(float) * (size_t)((n + 1) * V));
            kv_err err = {0};
            kv_cache *c = NULL;
            CHECK(kv_cache_new(f.m, 1, n + 1, &c, &err) == KV_OK);
            CHECK(kv_model_forward1(f.m, c, 0, ids->data, n, KV_LOGITS_ALL, r[nt - 1], &err) == KV_OK);
            CHECK(kv_model_forward1(f.m, c, 0, ids->data, 1, KV_LOGITS_LAST, r[nt - 1] + n * V,
                                    &err) == KV_OK);
            kv_cache_free(c);
        }
        CHECK_MSG(memcmp(r[0], r[1], sizeof(float) * (size_t)((n + 1) * V)) == 0,
                  "%s: 1 and 2 threads differ (max abs %.3g)", fx[i],
                  max_abs_diff(r[0], r[1], (size_t)((n + 1) * V)));
        free(r[0]);
        free(r[1]);
        fixture_close(&f);
    }
    omp_set_num_threads(was);
}

/* The scalar ref kernels and the dispatched SIMD ones compute the same sums in another
 * order (and exp to a few ulp): within 1e-5 of the largest logit. */
static void test_ref_vs_simd(void) {
    kv_isa best = kv_kernels_init();
    if (best == KV_ISA_REF) {
        printf("# note: kernels are ref already (KVANT_ISA=ref or no SIMD); nothing to compare\n");
        return;
    }
    for (int i = 0; i < n_fx; i++) {
        fixture f;
        if (fixture_open(&f, fx[i])) {
            fixture_close(&f);
            continue;
        }
        const kv_tensor *ids = ref_get(&f, "ids_%d", 2);
        int64_t n = ids->shape[0], V = f.vocab;
        kv_kernels_set(KV_ISA_REF);
        float *a = run_all(&f, ids->data, n);
        kv_kernels_set(best);
        float *b = run_all(&f, ids->data, n);
        double mx = 0;
        for (int64_t j = 0; j < n * V; j++) mx = fmax(mx, fabs((double)a[j]));
        char lab[320];
        snprintf(lab, sizeof lab, "%.80s ref vs %s (atol = 1e-5 * max|logit| = %.2g)", fx[i],
                 kv_isa_name(best), 1e-5 * mx);
        CHECK_CLOSE(lab, b, a, (size_t)(n * V), 1e-5 * mx, 0);
        free(a);
        free(b);
        fixture_close(&f);
    }
}

static void test_errors(void) {
    kv_err err = {0};
    kv_model *m = NULL;
    CHECK_ERR(kv_model_load(FIXDIR "/no_such_model", &m, &err), &err, KV_ENOTFOUND, "no_such_model");
    CHECK(m == NULL);
    kv_model_free(NULL);
    kv_cache_free(NULL);
    if (n_fx <= 0) return;
    fixture f;
    if (fixture_open(&f, fx[0])) {
        fixture_close(&f);
        return;
    }
    kv_cache *c = NULL;
    CHECK(kv_cache_new(f.m, 1, 8, &c, &err) == KV_OK);
    float *lg = malloc(sizeof(float) * (size_t)(8 * f.vocab));
    int32_t ids[4] = {1, 2, (int32_t)f.vocab, 3};
    char want[64];
    snprintf(want, sizeof want, "token id %lld at position 2", (long long)f.vocab);
    CHECK_ERR(kv_model_forward1(f.m, c, 0, ids, 4, KV_LOGITS_ALL, lg, &err), &err, KV_ERANGE, want);
    CHECK_EQ_INT(kv_cache_len(c, 0), 0); /* nothing was appended */
    ids[2] = -5;
    CHECK_ERR(kv_model_forward1(f.m, c, 0, ids, 4, KV_LOGITS_ALL, lg, &err), &err, KV_ERANGE,
              "token id -5");
    ids[2] = 0;
    CHECK(kv_model_forward1(f.m, c, 0, ids, 4, KV_LOGITS_NONE, NULL, &err) == KV_OK);
    int32_t more[5] = {1, 1, 1, 1, 1};
    CHECK_ERR(kv_model_forward1(f.m, c, 0, more, 5, KV_LOGITS_LAST, lg, &err), &err, KV_ERANGE,
              "exceed the cache capacity 8");
    CHECK_ERR(kv_model_forward1(f.m, c, 3, more, 1, KV_LOGITS_LAST, lg, &err), &err, KV_ERANGE,
              "slot 3");
    CHECK_ERR(kv_model_forward1(f.m, c, 0, more, 1, KV_LOGITS_LAST, NULL, &err), &err, KV_EINVAL,
              "logits");
    kv_cache *c2 = NULL;
    CHECK_ERR(kv_cache_new(f.m, 0, 8, &c2, &err), &err, KV_EINVAL, "n_slots");
    CHECK(c2 == NULL);
    kv_cache_free(c);
    free(lg);

    /* the in-memory constructor names a missing tensor */
    const kv_config *cfg = kv_model_config(f.m);
    kv_tensor t = {0};
    t.name = "model.embed_tokens.weight";
    t.dtype = KV_DTYPE_F32;
    t.ndim = 2;
    t.shape[0] = cfg->vocab_size;
    t.shape[1] = cfg->hidden_size;
    float *emb = calloc((size_t)(cfg->vocab_size * cfg->hidden_size), sizeof(float));
    t.data = emb;
    CHECK_ERR(kv_model_from_tensors(cfg, &t, 1, &m, &err), &err, KV_ENOTFOUND,
              "model.layers.0.input_layernorm.weight");
    t.shape[1] += 1;
    CHECK_ERR(kv_model_from_tensors(cfg, &t, 1, &m, &err), &err, KV_EFORMAT,
              "model.embed_tokens.weight");
    CHECK(m == NULL);
    free(emb);
    fixture_close(&f);
}

int main(void) {
    n_fx = list_fixtures(fx, 16);
    kv_kernels_init();
    printf("# kernels: %s, threads: %d\n", kv_isa_name(kv_kernels_isa()), omp_get_max_threads());
    KV_RUN(test_logits_vs_transformers);
    KV_RUN(test_incremental_decode);
    KV_RUN(test_batch);
    KV_RUN(test_threads_identical);
    KV_RUN(test_ref_vs_simd);
    KV_RUN(test_errors);
    return kv_test_summary();
}
