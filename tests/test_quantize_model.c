/* test_quantize_model.c — quantizing whole checkpoints (include/kvant/quantize.h) and
 * `kvant quantize` (src/cli/cli_quantize.c).
 *
 * For the tiny transformers checkpoints of tests/fixtures/models and every study
 * format that fits their shapes (hidden 64/96, so groups of 32), the output is
 * reopened and checked tensor by tensor: each quantized layer's parts have quant.h's
 * names, dtypes and shapes and are byte-identical to kv_quantize_ref run on the whole
 * f32 weight in one call (so their dequantization equals quantizing the original
 * row by row); every other tensor is byte-identical to the input; config.json holds the
 * quantization_config; tokenizer/generation files are copied. Then the bad inputs of
 * issue 3 point 7, each through the CLI with its exit status and message, including a
 * disk that fills mid-write (RLIMIT_FSIZE in a child, SIGXFSZ ignored, so write()
 * fails with EFBIG) leaving no partial output and no temporary files. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <omp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvant/config.h"
#include "kvant/fileio.h"
#include "kvant/quantize.h"
#include "kvant/safetensors.h"
#include "kvant/st_writer.h"
#include "test.h"

static char tmpdir[256];


static int rm_cb(const char *p, const struct stat *sb, int fl, struct FTW *f) {
    (void)sb, (void)fl, (void)f;
    return remove(p);
}
static void rm_tree(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* Entries of dir (not . and ..) whose name contains `needle` (NULL: all). */
static int count_entries(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            (!needle || strstr(e->d_name, needle)))
            n++;
    closedir(d);
    return n;
}

static const char *tpath(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}


static int same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    kv_err err = {0};
    int ok = kv_read_file(a, &x, &lx, &err) == KV_OK && kv_read_file(b, &y, &ly, &err) == KV_OK &&
             lx == ly && !memcmp(x, y, lx);
    free(x);
    free(y);
    return ok;
}

/* ---- the output checker ---- */

/* Check out_dir against in_dir for format qf (see the file comment). */
static void verify_output(const char *in_dir, const char *out_dir, kv_qformat qf,
                          const kv_quant_opts *qo) {
    kv_err err = {0};
    kv_weights *wi = NULL, *wo = NULL;
    kv_status st = kv_weights_open(in_dir, &wi, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    st = kv_weights_open(out_dir, &wo, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    if (!wi || !wo) goto out;
    char fname[32];
    kv_qformat_name(qf, fname, sizeof fname);
    int expect = 0, n_quant = 0;
    for (int i = 0; i < kv_weights_count(wi); i++) {
        const kv_tensor *t = kv_weights_at(wi, i);
        if (!kv_quantize_is_target(t->name)) {
            expect++;
            const kv_tensor *o = kv_weights_find(wo, t->name);
            CHECK_MSG(o && o->dtype == t->dtype && o->ndim == t->ndim && o->nbytes == t->nbytes &&
                          !memcmp(o->shape, t->shape, sizeof t->shape) &&
                          !memcmp(o->data, t->data, t->nbytes),
                      "%s: copied tensor %s differs", out_dir, t->name);
            continue;
        }
        n_quant++;
        CHECK_MSG(kv_weights_find(wo, t->name) == NULL, "%s still present", t->name);
        /* reference: the whole weight to f32, quantized in one call */
        int64_t n_out = t->shape[0], n_in = t->shape[1];
        float *w = malloc((size_t)(n_out * n_in) * sizeof(float));
        kv_qtensor ref, view;
        CHECK(kv_qtensor_init(&ref, qf, n_out, n_in, t->name, &err) == KV_OK);
        CHECK(kv_qtensor_alloc(&ref, &err) == KV_OK);
        kv_to_f32(t->dtype, t->data, w, (size_t)(n_out * n_in));
        st = kv_quantize_ref(&ref, w, 0, n_out, qo, t->name, &err);
        CHECK_MSG(st == KV_OK, "%s", err.msg);
        CHECK(kv_qtensor_init(&view, qf, n_out, n_in, t->name, &err) == KV_OK);
        int parts_ok = 1;
        for (int p = 0; p < view.n_parts; p++) {
            char pname[512];
            kv_qpart_name(&view, p, t->name, pname, sizeof pname);
            expect++;
            const kv_tensor *o = kv_weights_find(wo, pname);
            const kv_qpart *pp = &view.part[p];
            int ok = o && o->dtype == pp->dtype && o->ndim == pp->ndim && o->nbytes == pp->nbytes;
            for (int d = 0; ok && d < pp->ndim; d++) ok = o->shape[d] == pp->shape[d];
            CHECK_MSG(ok, "%s: part %s missing or wrong dtype/shape", out_dir, pname);
            if (!ok) {
                parts_ok = 0;
                continue;
            }
            CHECK_MSG(!memcmp(o->data, ref.data[p], pp->nbytes), "%s: %s differs from "
                      "kv_quantize_ref", out_dir, pname);
            view.data[p] = o->data;
        }
        if (parts_ok) {
            CHECK(kv_qtensor_validate(&view, t->name, &err) == KV_OK);
            float *a = malloc((size_t)(n_out * n_in) * sizeof(float));
            float *b = malloc((size_t)(n_out * n_in) * sizeof(float));
            /* the file's packed layer dequantizes exactly as the reference does */
            CHECK(kv_dequantize_ref(&view, 0, n_out, a, &err) == KV_OK);
            CHECK(kv_dequantize_ref(&ref, 0, n_out, b, &err) == KV_OK);
            CHECK(!memcmp(a, b, (size_t)(n_out * n_in) * sizeof(float)));
            free(a);
            free(b);
        }
        kv_qtensor_free(&ref);
        free(w);
    }
    CHECK_EQ_INT(kv_weights_count(wo), expect);
    CHECK(n_quant > 0);

    /* config.json: the input's keys plus quantization_config */
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", out_dir);
    char *text = NULL;
    size_t len;
    CHECK(kv_read_file(p, &text, &len, &err) == KV_OK);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    CHECK_MSG(root != NULL, "%s: not JSON", p);
    cJSON *qc = cJSON_GetObjectItem(root, "quantization_config");
    CHECK(cJSON_IsObject(qc));
    const char *s;
    CHECK((s = cJSON_GetStringValue(cJSON_GetObjectItem(qc, "quant_method"))) && !strcmp(s, "kvant"));
    CHECK((s = cJSON_GetStringValue(cJSON_GetObjectItem(qc, "format"))) && !strcmp(s, fname));
    CHECK((s = cJSON_GetStringValue(cJSON_GetObjectItem(qc, "method"))) && !strcmp(s, "rtn"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(qc, "calibration")));
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(qc, "bits")) == qf.bits);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(qc, "group_size")) == qf.group);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(qc, "quantized_modules")) == n_quant);
    CHECK((s = cJSON_GetStringValue(cJSON_GetObjectItem(qc, "mx_scale"))) &&
          !strcmp(s, qo->mx_scale == KV_MX_SCALE_MSE ? "mse" : "spec"));
    CHECK(cJSON_GetStringValue(cJSON_GetObjectItem(qc, "kvant_version")));
    if (qf.fmt == KV_QFMT_INT) {
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(qc, "sym")));
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(qc, "desc_act")));
        CHECK((s = cJSON_GetStringValue(cJSON_GetObjectItem(qc, "checkpoint_format"))) &&
              !strcmp(s, "gptq_v2"));
    }
    cJSON *keep = cJSON_GetObjectItem(qc, "modules_to_not_convert");
    CHECK(cJSON_IsArray(keep));
    int has_embed = 0;
    for (cJSON *e = keep ? keep->child : NULL; e; e = e->next) {
        const char *m = cJSON_GetStringValue(e);
        CHECK_MSG(m && !strstr(m, "_proj"), "quantized module %s listed as not converted",
                  m ? m : "?");
        if (m && !strcmp(m, "model.embed_tokens")) has_embed = 1;
    }
    CHECK(has_embed);
    /* every key of the input config is still there, with the same value */
    char ip[1024];
    snprintf(ip, sizeof ip, "%s/config.json", in_dir);
    char *itext = NULL;
    CHECK(kv_read_file(ip, &itext, &len, &err) == KV_OK);
    cJSON *iroot = itext ? cJSON_Parse(itext) : NULL;
    for (cJSON *e = iroot ? iroot->child : NULL; e; e = e->next)
        CHECK_MSG(cJSON_Compare(e, cJSON_GetObjectItem(root, e->string), 1), "config key %s",
                  e->string);
    cJSON_Delete(iroot);
    free(itext);
    cJSON_Delete(root);
    free(text);
    kv_config cfg;
    st = kv_config_load(out_dir, &cfg, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);

    static const char *files[] = {"generation_config.json", "tokenizer.json",
                                  "tokenizer_config.json"};
    for (size_t k = 0; k < 3; k++) {
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s/%s", in_dir, files[k]);
        snprintf(b, sizeof b, "%s/%s", out_dir, files[k]);
        if (kv_is_file(a)) CHECK_MSG(same_file(a, b), "%s not copied", b);
    }
out:
    kv_weights_close(wi);
    kv_weights_close(wo);
}

/* ---- library runs on the fixtures ---- */

static kv_quantize_opts opts_for(const char *fmt) {
    kv_quantize_opts o;
    memset(&o, 0, sizeof o);
    kv_err err = {0};
    CHECK(kv_qformat_parse(fmt, &o.qf, &err) == KV_OK);
    return o;
}

static void quantize_and_verify(const char *in_dir, const char *fmt, int mse, int64_t shard) {
    kv_err err = {0};
    kv_quantize_opts o = opts_for(fmt);
    o.qopts.mx_scale = mse ? KV_MX_SCALE_MSE : KV_MX_SCALE_SPEC;
    o.max_shard_bytes = shard;
    const char *out = tpath("lib_out");
    kv_quantize_result r;
    kv_status st = kv_quantize_checkpoint(in_dir, out, &o, NULL, &r, &err);
    CHECK_MSG(st == KV_OK, "%s %s: %s", in_dir, fmt, err.msg);
    if (st) return;
    fprintf(stderr, "  %s %s%s: %lld layers, bpw layers %.4f (format %.4f, study %.4f), file %.4f, "
            "%d shard(s)\n", in_dir, fmt, mse ? " mse" : "", (long long)r.n_quantized,
            r.bpw_layers, r.bpw_format, r.bpw_study, r.bpw_file, r.n_shards);
    CHECK(r.bpw_format == kv_qformat_bpw(o.qf));
    CHECK(r.bpw_study == kv_qformat_bpw_study(o.qf));
    CHECK(r.bpw_layers >= r.bpw_format);
    CHECK(fabs(r.bpw_file - 8.0 * (double)r.bytes_total / (double)r.params_total) < 1e-12);
    if (shard) CHECK(r.n_shards > 1);
    verify_output(in_dir, out, o.qf, &o.qopts);
    CHECK_EQ_INT(count_entries(tmpdir, ".kvant-"), 0);
    rm_tree(out);
}

static void test_fixtures_all_formats(void) {
    /* the fixtures whose every linear input dimension is a multiple of 32 (f32, bf16
     * sharded, and the shipped bf16 model); the others are the error cases below */
    static const char *models[] = {"tests/fixtures/models/qwen3_tied_f32",
                                   "tests/fixtures/models/llama3_bf16_sharded",
                                   "models/tiny-qwen3"};
    static const char *fmts[] = {"int4-g32", "int3-g32", "int2-g32", "int8-g32", "mxfp4",
                                 "mxint4"};
    for (size_t m = 0; m < 3; m++)
        for (size_t f = 0; f < 6; f++) quantize_and_verify(models[m], fmts[f], 0, 0);
}

static void test_mse_sharded_default_model(void) {
    quantize_and_verify("models/tiny-qwen3", "mxfp4", 1, 0);
    quantize_and_verify("tests/fixtures/models/qwen3_tied_f32", "mxint4", 1, 0);
    /* a small shard limit: several files and an index */
    quantize_and_verify("tests/fixtures/models/llama3_bf16_sharded", "int4-g32", 0, 60000);
    /* the shipped model fits the study's int4-g128 and int2-g64 (hidden 128, I 384) */
    quantize_and_verify("models/tiny-qwen3", "int4-g128", 0, 0);
    quantize_and_verify("models/tiny-qwen3", "int2-g64", 0, 0);
}

/* ---- synthetic checkpoints (biases, NaN/Inf) written with st_writer ---- */

/* qwen2_bias_f32 with intermediate 128 (its 112 fits no group): tensors copied except
 * the MLP weights, which are made up; optionally one bad value in layer 1's up_proj. */
static void make_bias_model(const char *dir, float bad, int64_t bad_row, int64_t bad_col) {
    kv_err err = {0};
    mkdir(dir, 0755);
    const char *src = "tests/fixtures/models/qwen2_bias_f32";
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", src);
    char *text = NULL;
    size_t len;
    CHECK(kv_read_file(p, &text, &len, &err) == KV_OK);
    cJSON *root = cJSON_Parse(text);
    cJSON_ReplaceItemInObject(root, "intermediate_size", cJSON_CreateNumber(128));
    char *js = cJSON_Print(root);
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK(kv_write_file_atomic(p, js, strlen(js), &err) == KV_OK);
    free(js);
    cJSON_Delete(root);
    free(text);
    kv_weights *w = NULL;
    CHECK(kv_weights_open(src, &w, &err) == KV_OK);
    kv_st_writer *sw = NULL;
    CHECK(kv_st_writer_new(&sw, &err) == KV_OK);
    static float mlp[2][3][128 * 64];
    uint64_t s = 12345;
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 128 * 64; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                mlp[l][k][i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 0.1f;
            }
    if (bad != 0) mlp[1][1][bad_row * 64 + bad_col] = bad;
    for (int i = 0; w && i < kv_weights_count(w); i++) {
        const kv_tensor *t = kv_weights_at(w, i);
        if (strstr(t->name, ".mlp.")) continue;
        CHECK(kv_st_writer_add(sw, t->name, t->dtype, t->ndim, t->shape, t->data, NULL, &err) ==
              KV_OK);
    }
    static const char *mn[3] = {"gate_proj", "up_proj", "down_proj"};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.mlp.%s.weight", l, mn[k]);
            int64_t shp[2] = {k == 2 ? 64 : 128, k == 2 ? 128 : 64};
            CHECK(kv_st_writer_add(sw, name, KV_DTYPE_F32, 2, shp, mlp[l][k], NULL, &err) ==
                  KV_OK);
        }
    kv_status st = kv_st_writer_write_dir(sw, dir, 0, NULL, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    kv_st_writer_free(sw);
    kv_weights_close(w);
}

static void test_biases_kept(void) {
    const char *in = tpath("bias_model");
    make_bias_model(in, 0, 0, 0);
    quantize_and_verify(in, "int4-g32", 0, 0);
    quantize_and_verify(in, "mxfp4", 0, 0);
    /* the output is what a reader expects: q_proj's bias next to its packed parts */
    kv_err err = {0};
    kv_quantize_opts o = opts_for("int4-g64");
    const char *out = tpath("bias_out");
    CHECK(kv_quantize_checkpoint(in, out, &o, NULL, NULL, &err) == KV_OK);
    kv_weights *w = NULL;
    CHECK(kv_weights_open(out, &w, &err) == KV_OK);
    CHECK(kv_weights_find(w, "model.layers.0.self_attn.q_proj.bias") != NULL);
    CHECK(kv_weights_find(w, "model.layers.0.self_attn.q_proj.qweight") != NULL);
    kv_weights_close(w);
    rm_tree(out);
    rm_tree(in);
}

static void test_nonfinite_weights(void) {
    const float bad[2] = {NAN, -INFINITY};
    const char *want[2] = {"model.layers.1.mlp.up_proj.weight: int4-g32: non-finite weight NaN "
                           "at [70, 5]",
                           "model.layers.1.mlp.up_proj.weight: mxfp4: non-finite weight Inf at "
                           "[127, 63]"};
    const char *fmts[2] = {"int4-g32", "mxfp4"};
    for (int k = 0; k < 2; k++) {
        const char *in = tpath("nan_model");
        make_bias_model(in, bad[k], k ? 127 : 70, k ? 63 : 5);
        kv_err err = {0};
        kv_quantize_opts o = opts_for(fmts[k]);
        const char *out = tpath("nan_out");
        CHECK_ERR(kv_quantize_checkpoint(in, out, &o, NULL, NULL, &err), &err, KV_EINVAL, want[k]);
        CHECK(!kv_is_dir(out));
        CHECK_EQ_INT(count_entries(tmpdir, ".kvant-"), 0);
        rm_tree(in);
    }
}

/* kv_quantize_tensor on a weight of several row blocks (n_in 2048: 128 rows per block,
 * 200 rows = one full and one partial block), any thread count: equal to one
 * kv_quantize_ref call; a NaN in the second block is reported with its absolute row. */
static void test_tensor_blocks_threads(void) {
    const int64_t n_out = 200, n_in = 2048;
    float *w = malloc((size_t)(n_out * n_in) * sizeof(float));
    uint16_t *wb = malloc((size_t)(n_out * n_in) * 2);
    uint64_t s = 99;
    for (int64_t i = 0; i < n_out * n_in; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        wb[i] = kv_f32_to_bf16(((float)(s >> 40) / (float)(1 << 24) - 0.5f) * ((i % 97) + 1));
        w[i] = kv_bf16_to_f32(wb[i]);
    }
    kv_tensor t;
    memset(&t, 0, sizeof t);
    t.name = "blocks.weight";
    t.dtype = KV_DTYPE_BF16;
    t.ndim = 2;
    t.shape[0] = n_out;
    t.shape[1] = n_in;
    t.data = wb;
    t.nbytes = (size_t)(n_out * n_in) * 2;
    static const char *fmts[] = {"int3-g128", "int4-g32", "int2-g64", "mxfp4", "mxint4"};
    kv_err err = {0};
    for (size_t f = 0; f < 5; f++) {
        kv_qformat qf;
        CHECK(kv_qformat_parse(fmts[f], &qf, &err) == KV_OK);
        kv_qtensor ref;
        CHECK(kv_qtensor_init(&ref, qf, n_out, n_in, t.name, &err) == KV_OK);
        CHECK(kv_qtensor_alloc(&ref, &err) == KV_OK);
        CHECK(kv_quantize_ref(&ref, w, 0, n_out, NULL, t.name, &err) == KV_OK);
        for (int th = 1; th <= 3; th++) {
            omp_set_num_threads(th);
            kv_qtensor q;
            kv_status st = kv_quantize_tensor(&t, qf, NULL, &q, NULL, &err);
            CHECK_MSG(st == KV_OK, "%s", err.msg);
            for (int p = 0; !st && p < q.n_parts; p++)
                CHECK_MSG(!memcmp(q.data[p], ref.data[p], q.part[p].nbytes), "%s %d threads: "
                          "part %s differs", fmts[f], th, q.part[p].suffix);
            kv_qtensor_free(&q);
        }
        kv_qtensor_free(&ref);
    }
    omp_set_num_threads(2);
    wb[150 * n_in + 1000] = 0x7fc0; /* bf16 NaN */
    kv_qformat qf = {KV_QFMT_INT, 4, 128};
    kv_qtensor q;
    CHECK_ERR(kv_quantize_tensor(&t, qf, NULL, &q, NULL, &err), &err, KV_EINVAL,
              "blocks.weight: int4-g128: non-finite weight NaN at [150, 1000]");
    CHECK(q.owned == NULL);
    kv_tensor bad = t;
    bad.dtype = KV_DTYPE_I32;
    CHECK_ERR(kv_quantize_tensor(&bad, qf, NULL, &q, NULL, &err), &err, KV_EUNSUPPORTED,
              "dtype I32 cannot be quantized");
    bad = t;
    bad.shape[1] = 2000;
    CHECK_ERR(kv_quantize_tensor(&bad, qf, NULL, &q, "x", &err), &err, KV_EINVAL,
              "group size 128 does not divide the input dimension 2000");
    free(w);
    free(wb);
}

/* ---- the CLI ---- */

static void test_cli_quantize(void) {
    static char out[1 << 16];
    char args[2048];
    const char *o = tpath("cli_out");
    snprintf(args, sizeof args, "quantize models/tiny-qwen3 %s --format int4-g128 --threads 2", o);
    int rc = kv_test_run(args, NULL, out, sizeof out);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
    CHECK(strstr(out, "bits per weight, quantized layers: 4.1562 stored"));
    CHECK(strstr(out, "4.2500 study"));
    CHECK(strstr(out, "\"bpw_stored\": 4.156250"));
    CHECK(strstr(out, "\"bpw_study\": 4.250000"));
    CHECK(strstr(out, "\"quantized_layers\": 28"));
    kv_qformat qf = {KV_QFMT_INT, 4, 128};
    kv_quant_opts qo = {KV_MX_SCALE_SPEC};
    verify_output("models/tiny-qwen3", o, qf, &qo);

    /* existing output without --force */
    snprintf(args, sizeof args, "quantize models/tiny-qwen3 %s --format mxfp4 --quiet", o);
    rc = kv_test_run(args, NULL, out, sizeof out);
    CHECK_MSG(rc == 1 && strstr(out, "output directory already exists (use --force"), "%d %s", rc,
              out);
    /* --force replaces it, only after success */
    char junk[600];
    snprintf(junk, sizeof junk, "%s/old-file.txt", o);
    CHECK(kv_write_file_atomic(junk, "x", 1, NULL) == KV_OK);
    snprintf(args, sizeof args, "quantize models/tiny-qwen3 %s/ --format mxfp4 --quiet --force", o);
    rc = kv_test_run(args, NULL, out, sizeof out);
    CHECK_MSG(rc == 0 && strstr(out, "\"format\": \"mxfp4\""), "%d %s", rc, out);
    CHECK(!kv_is_file(junk));
    qf = (kv_qformat){KV_QFMT_MXFP4, 4, 32};
    verify_output("models/tiny-qwen3", o, qf, &qo);
    /* a failing --force run keeps the old output */
    snprintf(args, sizeof args, "quantize tests/fixtures/models/qwen2_bias_f32 %s --format "
             "int4-g32 --force --quiet", o);
    rc = kv_test_run(args, NULL, out, sizeof out);
    CHECK_MSG(rc == 1 && strstr(out, "does not divide"), "%d %s", rc, out);
    verify_output("models/tiny-qwen3", o, qf, &qo);
    /* the output as input: already quantized */
    snprintf(args, sizeof args, "quantize %s %s --format mxfp4 --quiet", o, tpath("x2"));
    rc = kv_test_run(args, NULL, out, sizeof out);
    CHECK_MSG(rc == 1 && strstr(out, "already quantized"), "%d %s", rc, out);
    CHECK(!kv_is_dir(tpath("x2")));
    /* --force refuses a directory that is not a checkpoint */
    const char *plain = tpath("plain");
    mkdir(plain, 0755);
    snprintf(junk, sizeof junk, "%s/precious.txt", plain);
    CHECK(kv_write_file_atomic(junk, "x", 1, NULL) == KV_OK);
    snprintf(args, sizeof args, "quantize models/tiny-qwen3 %s --format mxfp4 --force --quiet",
             plain);
    rc = kv_test_run(args, NULL, out, sizeof out);
    CHECK_MSG(rc == 1 && strstr(out, "refusing to replace it"), "%d %s", rc, out);
    CHECK(kv_is_file(junk));
    CHECK_EQ_INT(count_entries(tmpdir, ".kvant-"), 0);
    rm_tree(o);
    rm_tree(plain);
}

typedef struct {
    const char *args; /* %s = tmpdir-based scratch path */
    int code;
    const char *needle;
} bad_case;

static void test_cli_bad_input(void) {
    static char out[1 << 16];
#define Q "tests/fixtures/models/qwen3_tied_f32"
    /* a link to the input: the same directory by another spelling */
    char link[600], broken[600], noweights[600];
    snprintf(link, sizeof link, "%s", tpath("link_to_input"));
    char target[1024];
    CHECK(realpath(Q, target) != NULL);
    CHECK(symlink(target, link) == 0);
    snprintf(broken, sizeof broken, "%s", tpath("broken_in"));
    mkdir(broken, 0755);
    char bp[700];
    snprintf(bp, sizeof bp, "%s/config.json", broken);
    CHECK(kv_write_file_atomic(bp, "{\"architectures\": [", 19, NULL) == KV_OK);
    snprintf(noweights, sizeof noweights, "%s", tpath("noweights_in"));
    mkdir(noweights, 0755);
    snprintf(bp, sizeof bp, "%s/config.json", noweights);
    {
        char *t = NULL;
        size_t l;
        CHECK(kv_read_file(Q "/config.json", &t, &l, NULL) == KV_OK);
        CHECK(kv_write_file_atomic(bp, t, l, NULL) == KV_OK);
        free(t);
    }
    char a[24][1400];
    bad_case cases[24];
    int n = 0;
#define ADD(code_, needle_, ...)                                                           \
    do {                                                                                   \
        snprintf(a[n], sizeof a[n], __VA_ARGS__);                                          \
        cases[n] = (bad_case){a[n], code_, needle_};                                       \
        n++;                                                                               \
    } while (0)
    ADD(1, "unknown format 'int5-g7x'; known formats: int4-g128, int3-g128, int2-g64, mxfp4, mxint4",
        "quantize %s %s --format int5-g7x", Q, tpath("o"));
    ADD(1, "bits must be 2, 3, 4 or 8", "quantize %s %s --format int5-g32", Q, tpath("o"));
    ADD(1, "unknown method 'gptq'; known methods: rtn", "quantize %s %s --format mxfp4 --method gptq",
        Q, tpath("o"));
    ADD(2, "missing --format", "quantize %s %s", Q, tpath("o"));
    ADD(2, "missing IN_DIR or OUT_DIR", "quantize %s --format mxfp4", Q);
    ADD(2, "--mx-scale must be spec or mse", "quantize %s %s --format mxfp4 --mx-scale best", Q,
        tpath("o"));
    ADD(2, "unknown option '--frobnicate'", "quantize %s %s --format mxfp4 --frobnicate", Q,
        tpath("o"));
    /* group size not dividing a layer's input dimension: the layer and the sizes */
    ADD(1,
        "model.layers.0.mlp.down_proj.weight: int4-g32: group size 32 does not divide the input "
        "dimension 112 (weight shape [64, 112])",
        "quantize tests/fixtures/models/qwen2_bias_f32 %s --format int4-g32", tpath("o"));
    ADD(1, "model.layers.0.mlp.down_proj.weight: mxfp4: group size 32 does not divide the input "
           "dimension 144",
        "quantize tests/fixtures/models/llama_f16 %s --format mxfp4", tpath("o"));
    ADD(1, "model.layers.0.mlp.gate_proj.weight: int4-g128: group size 128 does not divide the "
           "input dimension 64 (weight shape [128, 64])",
        "quantize %s %s --format int4-g128", Q, tpath("o"));
    ADD(1, "model.layers.0.self_attn.o_proj.weight: mxint4: group size 32 does not divide the "
           "input dimension 144 (weight shape [96, 144])",
        "quantize tests/fixtures/models/qwen3_untied_bf16 %s --format mxint4", tpath("o"));
    ADD(1, "model.layers.0.mlp.down_proj.weight: int4-g128: group size 128 does not divide the "
           "input dimension 160",
        "quantize tests/fixtures/models/qwen3_untied_bf16 %s --format int4-g128", tpath("o"));
    /* output = input, by several spellings */
    ADD(1, "the output directory is the input directory", "quantize %s %s --format mxfp4", Q, Q);
    ADD(1, "the output directory is the input directory", "quantize %s ./%s/ --format mxfp4 --force",
        Q, Q);
    ADD(1, "the output directory is the input directory",
        "quantize %s tests/fixtures/../fixtures/models/qwen3_tied_f32 --format mxfp4", Q);
    ADD(1, "the output directory is the input directory", "quantize %s %s --format mxfp4 --force", Q,
        link);
    ADD(1, "contains the input directory", "quantize %s tests/fixtures --format mxfp4 --force", Q);
    /* missing / invalid input */
    ADD(1, "no such checkpoint directory", "quantize %s/nope %s --format mxfp4", tmpdir, tpath("o"));
    ADD(1, "config.json", "quantize %s %s --format mxfp4", broken, tpath("o"));
    ADD(1, "no weights: expected model.safetensors", "quantize %s %s --format mxfp4", noweights,
        tpath("o"));
    ADD(1, "parent directory", "quantize %s %s/no/such/parent --format mxfp4", Q, tmpdir);
#undef ADD
    for (int k = 0; k < n; k++) {
        int rc = kv_test_run(cases[k].args, NULL, out, sizeof out);
        CHECK_MSG(rc == cases[k].code && strstr(out, cases[k].needle),
                  "kvant %s: exit %d (want %d), output:\n%s\n  (want \"%s\")", cases[k].args, rc,
                  cases[k].code, out, cases[k].needle);
    }
    CHECK(!kv_is_dir(tpath("o")));
    CHECK_EQ_INT(count_entries(tmpdir, ".kvant-"), 0);
    CHECK(kv_is_file(Q "/model.safetensors"));
    CHECK_EQ_INT(count_entries(Q, NULL), 5); /* the input directory untouched */
    unlink(link);
#undef Q
    rm_tree(broken);
    rm_tree(noweights);
}

/* A disk that fills mid-write: the CLI in a child with RLIMIT_FSIZE below the output
 * size and SIGXFSZ ignored (both survive exec), so write() fails with EFBIG. */
static void test_disk_full(void) {
    const char *o = tpath("full_out");
    char log[600];
    snprintf(log, sizeof log, "%s/full.log", tmpdir);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {1000000, 1000000}; /* model.safetensors: 2.6 MB */
        setrlimit(RLIMIT_FSIZE, &rl);
        execl(kv_test_bin(), kv_test_bin(), "quantize", "models/tiny-qwen3", o, "--format", "int8-g32", "--quiet",
              (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %d", status);
    char *text = NULL;
    size_t len;
    CHECK(kv_read_file(log, &text, &len, NULL) == KV_OK);
    CHECK_MSG(text && strstr(text, "File too large") && strstr(text, "model.safetensors"), "%s",
              text ? text : "");
    free(text);
    unlink(log);
    CHECK(!kv_is_dir(o));
    CHECK_EQ_INT(count_entries(tmpdir, ".kvant-"), 0);
    CHECK_EQ_INT(count_entries(tmpdir, "tmp"), 0);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_test_qm_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KV_RUN(test_fixtures_all_formats);
    KV_RUN(test_mse_sharded_default_model);
    KV_RUN(test_biases_kept);
    KV_RUN(test_nonfinite_weights);
    KV_RUN(test_tensor_blocks_threads);
    KV_RUN(test_cli_quantize);
    KV_RUN(test_cli_bad_input);
    KV_RUN(test_disk_full);
    rm_tree(tmpdir);
    return kv_test_summary();
}
