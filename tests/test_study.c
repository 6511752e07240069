/* test_study.c — `kvant study`: a tiny grid end to end, resume, re-run on a changed
 * setting, failures recorded as n/a, the version warning, and the config reader.
 *
 * The grid: models/tiny-qwen3, base + int4-g128 (RTN), piqa and wikitext_ru, the first 5
 * documents of each, into a temporary folder: a few seconds, also under ASan+UBSan.
 * Needs ../shared/data (KVANT_DATA); without it the end-to-end tests SKIP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvant/fileio.h"
#include "kvant/report.h"
#include "kvant/study.h"
#include "test.h"

static char tmpdir[256];

static void quiet_log(void *ud, const char *line) {
    (void)ud;
    fprintf(stderr, "    | %s\n", line);
}

static int have_data(void) {
    char p[1024];
    snprintf(p, sizeof p, "%s/piqa/valid.jsonl", kv_test_data_dir());
    return kv_is_file(p);
}

static kv_status tiny_config(kv_study_config *c, int64_t piqa_limit, kv_err *e) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"name\": \"tiny\", \"models\": [\"models/tiny-qwen3\"], "
             "\"formats\": [\"base\", \"int4-g128\"], \"methods\": [\"rtn\"], "
             "\"calibration\": [null], \"tasks\": [\"piqa\", \"wikitext_ru\"], "
             "\"limit\": {\"*\": 5, \"piqa\": %lld}, \"gptq_ctx\": 256, \"out\": \"%s/study\"}",
             (long long)piqa_limit, tmpdir);
    return kv_study_config_parse(json, strlen(json), "tiny.json", c, e);
}

static int file_in(const char *rel) {
    char p[1024];
    snprintf(p, sizeof p, "%s/study/%s", tmpdir, rel);
    return kv_is_file(p);
}

static void test_end_to_end_and_resume(void) {
    if (!have_data()) {
        printf("# SKIP test_end_to_end_and_resume: no data in %s\n", kv_test_data_dir());
        return;
    }
    kv_study_config c;
    kv_err e = {0};
    CHECK_EQ_INT(tiny_config(&c, 5, &e), KV_OK);
    /* KVANT_TEST_VERBOSE=1 shows the study's step lines */
    kv_study_opts o = {.quiet = 1, .log = getenv("KVANT_TEST_VERBOSE") ? quiet_log : NULL};
    kv_study_summary s;

    /* first run: everything runs */
    kv_status st = kv_study_run(&c, &o, &s, &e);
    CHECK_MSG(st == KV_OK, "%s", e.msg);
    CHECK_EQ_INT(s.cells, 4);
    CHECK_EQ_INT(s.ran, 4);
    CHECK_EQ_INT(s.skipped, 0);
    CHECK_EQ_INT(s.failed, 0);
    CHECK_EQ_INT(s.quantized, 1);
    CHECK(s.table && strstr(s.table, "| tiny-qwen3 | bf16 | — | — | 16.00 |"));
    CHECK(s.table && strstr(s.table, "| tiny-qwen3 | int4-g128 | rtn | none | 4.25 |"));
    /* KL divergence from the base model on the perplexity task, for the quantized row */
    CHECK(s.table && strstr(s.table, " KL W2-Ru ↓ |"));
    CHECK(s.table && strstr(s.table, "KL divergence of the quantized model"));
    CHECK(file_in("results/tiny-qwen3/bf16/piqa.json"));
    CHECK(file_in("results/tiny-qwen3/int4-g128-rtn/wikitext_ru.json"));
    CHECK(file_in("checkpoints/tiny-qwen3-int4-g128-rtn/config.json"));
    CHECK(file_in("checkpoints/tiny-qwen3-int4-g128-rtn.json"));
    CHECK(file_in("report/report.md") && file_in("report/report.csv") && file_in("report/report.html"));
    CHECK_EQ_INT(s.n_warnings, 0);
    kv_study_summary_free(&s);

    /* second run: every cell is done */
    st = kv_study_run(&c, &o, &s, &e);
    CHECK_MSG(st == KV_OK, "%s", e.msg);
    CHECK_EQ_INT(s.ran, 0);
    CHECK_EQ_INT(s.skipped, 4);
    CHECK_EQ_INT(s.quantized + s.reused, 0);
    kv_study_summary_free(&s);
    kv_study_config_free(&c);

    /* a changed setting (piqa's limit) is not mistaken for done; the checkpoint is reused */
    CHECK_EQ_INT(tiny_config(&c, 4, &e), KV_OK);
    st = kv_study_run(&c, &o, &s, &e);
    CHECK_MSG(st == KV_OK, "%s", e.msg);
    CHECK_EQ_INT(s.ran, 2);
    CHECK_EQ_INT(s.skipped, 2);
    CHECK_EQ_INT(s.quantized, 0);
    CHECK_EQ_INT(s.reused, 1);
    kv_study_summary_free(&s);

    /* a results file from another kvant version: still skipped (the version is not a
     * setting), and the report warns */
    char path[1024];
    snprintf(path, sizeof path, "%s/study/results/tiny-qwen3/bf16/piqa.json", tmpdir);
    char *buf = NULL;
    size_t len = 0;
    CHECK_EQ_INT(kv_read_file(path, &buf, &len, &e), KV_OK);
    char *v = buf ? strstr(buf, "\"kvant_version\":\t\"") : NULL;
    CHECK(v != NULL);
    if (v) {
        char *q = v + strlen("\"kvant_version\":\t\"");
        char *end = strchr(q, '"');
        /* same length as "0.1.0" so the file stays valid */
        if (end && end - q == 5) memcpy(q, "0.0.1", 5);
        CHECK_EQ_INT(kv_write_file_atomic(path, buf, len, &e), KV_OK);
    }
    free(buf);
    st = kv_study_run(&c, &o, &s, &e);
    CHECK_MSG(st == KV_OK, "%s", e.msg);
    CHECK_EQ_INT(s.ran, 0);
    CHECK(s.n_warnings >= 1);
    int found = 0;
    for (int i = 0; i < s.n_warnings; i++)
        found |= strstr(s.warnings[i], "bf16/piqa.json: written by kvant 0.0.1") != NULL &&
                 strstr(s.warnings[i], "this is kvant") != NULL;
    for (int i = 0; i < s.n_warnings; i++)
        found |= strstr(s.warnings[i], "different kvant versions") != NULL ? 2 : 0;
    CHECK_EQ_INT(found, 3);
    kv_study_summary_free(&s);

    /* a quantized checkpoint the model module cannot load: recorded as n/a, the study
     * carries on; a failed cell is retried on the next run */
    snprintf(path, sizeof path, "%s/study/checkpoints/tiny-qwen3-int4-g128-rtn/model.safetensors",
             tmpdir);
    CHECK_EQ_INT(unlink(path), 0);
    for (int t = 0; t < 2; t++) {
        snprintf(path, sizeof path, "%s/study/results/tiny-qwen3/int4-g128-rtn/%s.json", tmpdir,
                 t ? "piqa" : "wikitext_ru");
        CHECK_EQ_INT(unlink(path), 0);
    }
    for (int round = 0; round < 2; round++) {
        st = kv_study_run(&c, &o, &s, &e);
        CHECK_MSG(st == KV_OK, "%s", e.msg);
        CHECK_EQ_INT(s.ran, 2);
        CHECK_EQ_INT(s.failed, 2);
        CHECK_EQ_INT(s.skipped, 2);
        CHECK(s.table && strstr(s.table, "| tiny-qwen3 | int4-g128 | rtn | none | 4.25 | — | n/a |"));
        CHECK(s.table && strstr(s.table, "- n/a: tiny-qwen3 int4-g128 rtn/none, piqa: load: "));
        kv_study_summary_free(&s);
    }
    kv_study_config_free(&c);
}

static void test_config(void) {
    kv_study_config d, f;
    kv_err e = {0};
    CHECK_EQ_INT(kv_study_config_default(&d, &e), KV_OK);
    CHECK_EQ_INT(d.n_models, 1);
    CHECK(!strcmp(d.models[0], KV_STUDY_DEFAULT_MODEL));
    CHECK_EQ_INT(d.n_formats, 6);
    CHECK_EQ_INT(d.n_tasks, 6);
    CHECK(!strcmp(d.out, KV_STUDY_DEFAULT_OUT));
    /* studies/default.json is the same grid as the built-in default */
    kv_status st = kv_study_config_load("studies/default.json", &f, &e);
    CHECK_MSG(st == KV_OK, "%s", e.msg);
    if (!st) {
        CHECK(!strcmp(f.name, d.name) && !strcmp(f.out, d.out));
        CHECK_EQ_INT(f.n_models, d.n_models);
        CHECK(!strcmp(f.models[0], d.models[0]));
        CHECK_EQ_INT(f.n_formats, d.n_formats);
        for (int i = 0; i < d.n_formats && i < f.n_formats; i++) CHECK(!strcmp(f.formats[i], d.formats[i]));
        CHECK_EQ_INT(f.n_methods, d.n_methods);
        CHECK_EQ_INT(f.n_calibs, d.n_calibs);
        CHECK_EQ_INT(f.n_tasks, d.n_tasks);
        for (int i = 0; i < d.n_tasks && i < f.n_tasks; i++) {
            CHECK(!strcmp(f.tasks[i], d.tasks[i]));
            CHECK_EQ_INT(f.limits[i], d.limits[i]);
        }
        CHECK_EQ_INT(f.num_fewshot, d.num_fewshot);
        CHECK_EQ_INT(f.gptq_ctx, d.gptq_ctx);
        CHECK_EQ_INT(f.max_length, d.max_length);
        CHECK_EQ_INT(f.batch, d.batch);
        CHECK_EQ_INT(f.mx_scale, d.mx_scale);
        kv_study_config_free(&f);
    }
    kv_study_config_free(&d);

    /* a bare config: the defaults, out = results/<name>, one limit for all */
    const char *j = "{\"name\": \"x\", \"formats\": \"mxfp4\", \"limit\": 7}";
    CHECK_EQ_INT(kv_study_config_parse(j, strlen(j), "x.json", &f, &e), KV_OK);
    CHECK(f.out && !strcmp(f.out, "results/x"));
    CHECK(f.n_formats == 1 && !strcmp(f.formats[0], "mxfp4"));
    CHECK(f.n_tasks == 6 && f.limits[2] == 7);
    kv_study_config_free(&f);

    /* errors name the file and the key */
    static const struct {
        const char *json, *needle;
        kv_status code;
    } bad[] = {
        {"{\"fromats\": [\"mxfp4\"]}", "bad.json: unknown key \"fromats\"", KV_EINVAL},
        {"{\"formats\": [\"int5-g128\"]}", "bad.json: \"formats\"", KV_EINVAL},
        {"{\"methods\": [\"gptq9\"]}", "bad.json: \"methods\"", KV_EINVAL},
        {"{\"tasks\": [\"piqa\", \"hellaswag\"]}", "unknown task \"hellaswag\"", KV_EINVAL},
        {"{\"tasks\": [\"piqa\"], \"limit\": {\"mmlu\": 3}}", "\"limit\" names \"mmlu\"", KV_EINVAL},
        {"{\"limit\": -1}", "\"limit\" must be an integer", KV_EFORMAT},
        {"{\"formats\": []}", "\"formats\" must be a non-empty array", KV_EFORMAT},
        {"{\"formats\": [\"mxfp4\", \"mxfp4\"]}", "lists \"mxfp4\" twice", KV_EINVAL},
        {"{\"batch\": 1.5}", "\"batch\" must be an integer", KV_EFORMAT},
        {"{\"mx_scale\": \"best\"}", "\"mx_scale\" must be", KV_EFORMAT},
        {"[1, 2]", "a study config is a JSON object", KV_EFORMAT},
        {"{\"name\": ", "bad.json: malformed JSON", KV_EFORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&f, 0, sizeof f);
        CHECK_ERR(kv_study_config_parse(bad[i].json, strlen(bad[i].json), "bad.json", &f, &e), &e,
                  bad[i].code, bad[i].needle);
        CHECK(f.models == NULL); /* nothing left to free after an error */
    }
    CHECK_ERR(kv_study_config_load("studies/none.json", &f, &e), &e, KV_ENOTFOUND, "studies/none.json");
    kv_study_config_free(NULL);
    kv_study_summary_free(NULL);
    CHECK_ERR(kv_study_run(NULL, NULL, NULL, &e), &e, KV_EINVAL, "kv_study_run");
}

/* A missing model stops the study before any work, naming the directory. */
static void test_bad_model(void) {
    kv_study_config c;
    kv_err e = {0};
    char json[512];
    snprintf(json, sizeof json, "{\"models\": [\"models/no-such-model\"], \"out\": \"%s/bad\"}",
             tmpdir);
    CHECK_EQ_INT(kv_study_config_parse(json, strlen(json), "bad.json", &c, &e), KV_OK);
    kv_study_summary s;
    kv_status st = kv_study_run(&c, NULL, &s, &e);
    CHECK(st != KV_OK);
    CHECK_MSG(strstr(e.msg, "models/no-such-model"), "%s", e.msg);
    CHECK(s.table == NULL);
    kv_study_summary_free(&s);
    kv_study_config_free(&c);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_test_study.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KV_RUN(test_config);
    KV_RUN(test_bad_model);
    KV_RUN(test_end_to_end_and_resume);
    char cmd[400];
    if (!getenv("KVANT_KEEP_TMP")) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    }
    return kv_test_summary();
}
