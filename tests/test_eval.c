/* test_eval.c — kvant's tasks against lm-evaluation-harness, and bad input.
 *
 * Conformance: tests/fixtures/eval/ holds per-request log-likelihoods, is_greedy and
 * accuracies that lm_eval 0.4.x (HF backend, float32, max_length 512) produced on
 * models/tiny-qwen3 over ../shared/data (tools/make_eval_fixtures.py). Every request's
 * prompt must hash the same (sha256 of context \0 continuation), predictions must be
 * identical and log-likelihoods within 1e-4 + 2e-6 |ll|: the harness sums float32
 * log-softmax values (continuations of hundreds of tokens, documents of thousands),
 * kvant sums in double, and the two forward passes differ by float reassociation.
 * Aggregates (acc and its stderr) must match the harness's to 1e-9.
 * Skipped with a note when the data directory is absent. */
#include <cJSON.h>
#include <unistd.h>

#include "../src/eval/eval_internal.h"
#include "kvant/eval.h"
#include "kvant/fileio.h"
#include "kvant/model.h"
#include "kvant/tokenizer.h"
#include "test.h"

#define MODEL "models/tiny-qwen3"
#define FIX "tests/fixtures/eval/"

static kv_model *g_model;
static kv_tokenizer *g_tok;
static int g_have_data;
static double g_max_dll;
static int64_t g_n_req;

static cJSON *read_json(const char *path) {
    char *buf = NULL;
    size_t len = 0;
    kv_err err = {0};
    if (kv_read_file(path, &buf, &len, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(buf, len);
    free(buf);
    return j;
}

/* fixture .jsonl -> a JSON array of its lines */
static cJSON *read_jsonl(const char *path) {
    char *buf = NULL;
    size_t len = 0;
    kv_err err = {0};
    if (kv_read_file(path, &buf, &len, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return NULL;
    }
    cJSON *arr = cJSON_CreateArray();
    for (char *p = buf, *e; p < buf + len; p = e + 1) {
        e = strchr(p, '\n');
        if (!e) e = buf + len;
        cJSON_AddItemToArray(arr, cJSON_ParseWithLength(p, (size_t)(e - p)));
    }
    free(buf);
    return arr;
}

static void sha_req(const char *ctx, const char *choice, char hex[65]) {
    ev_sha256 c;
    ev_sha256_init(&c);
    ev_sha256_update(&c, ctx, strlen(ctx));
    ev_sha256_update(&c, "\0 ", 2); /* separator, then the target delimiter */
    ev_sha256_update(&c, choice, strlen(choice));
    uint8_t d[32];
    ev_sha256_final(&c, d);
    ev_sha256_hex(d, hex);
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const kv_metric *metric(const kv_score *s, const char *name) {
    for (int i = 0; i < s->n_metrics; i++)
        if (!strcmp(s->m[i].name, name)) return &s->m[i];
    return NULL;
}

/* Compare one MC fixture with kvant's run of `task`. */
static void check_mc(const char *fixture, const char *task, int shots, int64_t limit, int no_reuse) {
    char path[512];
    snprintf(path, sizeof path, FIX "%s.jsonl", fixture);
    cJSON *fx = read_jsonl(path);
    cJSON *sum = read_json(FIX "summary.json");
    CHECK(fx && sum);
    if (!fx || !sum) goto out;
    kv_err err = {0};
    kv_task *t = NULL;
    kv_task_opts to = {.limit = limit, .num_fewshot = shots};
    kv_status st = kv_task_load(task, NULL, &to, &t, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    if (st) goto out;
    kv_eval_opts eo = {.max_length = 512, .batch = 8, .no_reuse = no_reuse};
    kv_task_result r = {0};
    st = kv_eval_task(g_model, g_tok, t, &eo, NULL, &r, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    int n = cJSON_GetArraySize(fx);
    CHECK_EQ_INT(r.n_docs, n);
    double max_d = 0;
    int bad_sha = 0, bad_ll = 0, bad_greedy = 0, bad_pred = 0;
    for (int i = 0; !st && i < n && i < r.n_docs; i++) {
        const cJSON *row = cJSON_GetArrayItem(fx, i);
        const kv_mc_doc *d = kv_task_mc_doc(t, i);
        const cJSON *reqs = cJSON_GetObjectItemCaseSensitive(row, "req");
        CHECK_EQ_INT(cJSON_GetArraySize(reqs), d->n_choices);
        /* the harness's target: an index, or the answer letter (m_mmlu) */
        const cJSON *gj = cJSON_GetObjectItemCaseSensitive(row, "gold");
        int gold = cJSON_IsString(gj) ? gj->valuestring[0] - 'A' : (int)num(row, "gold");
        CHECK_EQ_INT(gold, d->gold);
        for (int c = 0; c < d->n_choices && c < cJSON_GetArraySize(reqs); c++) {
            const cJSON *q = cJSON_GetArrayItem(reqs, c);
            char hex[65];
            sha_req(d->context, d->choices[c], hex);
            const char *want = cJSON_GetObjectItemCaseSensitive(q, "sha")->valuestring;
            if (strcmp(hex, want) && bad_sha++ < 3)
                fprintf(stderr, "  %s doc %d choice %d: prompt differs from the harness's\n", fixture, i, c);
            double ll = r.ll[r.req_off[i] + c], ref = num(q, "ll"), dd = fabs(ll - ref);
            if (!(dd <= max_d)) max_d = dd;
            if (!(dd <= 1e-4 + 2e-6 * fabs(ref)) && bad_ll++ < 3)
                fprintf(stderr, "  %s doc %d choice %d: ll %.6f want %.6f\n", fixture, i, c, ll, ref);
            int g = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q, "greedy"));
            if (g != r.greedy[r.req_off[i] + c] && bad_greedy++ < 3)
                fprintf(stderr, "  %s doc %d choice %d: is_greedy %d want %d\n", fixture, i, c,
                        r.greedy[r.req_off[i] + c], g);
            g_n_req++;
        }
        int acc = r.pred[i] == d->gold, accn = r.pred_norm[i] == d->gold;
        int want_n = cJSON_GetObjectItemCaseSensitive(row, "acc_norm") ? (int)num(row, "acc_norm") : accn;
        if ((acc != (int)num(row, "acc") || accn != want_n) && bad_pred++ < 3)
            fprintf(stderr, "  %s doc %d: acc %d acc_norm %d, harness %d %d\n", fixture, i, acc, accn,
                    (int)num(row, "acc"), want_n);
    }
    fprintf(stderr, "  %s%s: %d docs, max |dll| = %.3g\n", fixture, no_reuse ? " (no reuse)" : "", n, max_d);
    if (max_d > g_max_dll) g_max_dll = max_d;
    CHECK_EQ_INT(bad_sha, 0);
    CHECK_EQ_INT(bad_ll, 0);
    CHECK_EQ_INT(bad_greedy, 0);
    CHECK_EQ_INT(bad_pred, 0);
    /* aggregates */
    const cJSON *agg = cJSON_GetObjectItemCaseSensitive(sum, fixture);
    if (!st && agg && r.n_scores > 0) {
        static const char *names[2] = {"acc", "acc_norm"};
        for (int k = 0; k < 2; k++) {
            char key[64], kse[64];
            snprintf(key, sizeof key, "%s,none", names[k]);
            snprintf(kse, sizeof kse, "%s_stderr,none", names[k]);
            const kv_metric *m = metric(&r.scores[0], names[k]);
            if (!cJSON_GetObjectItemCaseSensitive(agg, key)) {
                CHECK_MSG(!m, "%s: kvant reports %s, the harness does not", fixture, names[k]);
                continue;
            }
            CHECK_MSG(m != NULL, "%s: %s missing", fixture, names[k]);
            if (!m) continue;
            CHECK_MSG(fabs(m->value - num(agg, key)) < 1e-9, "%s %s %.12g want %.12g", fixture,
                      names[k], m->value, num(agg, key));
            CHECK_MSG(fabs(m->stderr - num(agg, kse)) < 1e-9, "%s %s stderr %.12g want %.12g",
                      fixture, names[k], m->stderr, num(agg, kse));
        }
    }
    kv_task_result_free(&r);
    kv_task_free(t);
out:
    cJSON_Delete(fx);
    cJSON_Delete(sum);
}

static void test_piqa(void) { check_mc("piqa", "piqa", 0, 40, 0); }
static void test_piqa_ru(void) { check_mc("piqa_ru", "piqa_ru", 0, 40, 0); }
static void test_arc_ru(void) { check_mc("arc_ru", "arc_ru", 0, 30, 0); }
static void test_mmlu_ru(void) {
    check_mc("mmlu_ru", "mmlu_ru", 0, 30, 0);
    check_mc("mmlu_ru_5shot", "mmlu_ru", 5, 10, 0);
}
static void test_mmlu(void) {
    check_mc("mmlu_abstract_algebra", "mmlu_abstract_algebra", 0, 20, 0);
    check_mc("mmlu_high_school_european_history", "mmlu_high_school_european_history", 0, 20, 0);
    check_mc("mmlu_abstract_algebra_5shot", "mmlu_abstract_algebra", 5, 10, 0);
    check_mc("mmlu_high_school_european_history_5shot", "mmlu_high_school_european_history", 5, 10, 0);
}
/* the harness's way (every request its own sequence) must give the same scores */
static void test_no_reuse(void) {
    check_mc("piqa", "piqa", 0, 40, 1);
    check_mc("mmlu_abstract_algebra_5shot", "mmlu_abstract_algebra", 5, 10, 1);
}

static void test_wikitext(void) {
    cJSON *fx = read_jsonl(FIX "wikitext.jsonl"), *sum = read_json(FIX "summary.json");
    CHECK(fx && sum);
    if (!fx || !sum) goto out;
    kv_err err = {0};
    kv_task *t = NULL;
    kv_task_opts to = {.limit = cJSON_GetArraySize(fx)};
    kv_status st = kv_task_load("wikitext2", NULL, &to, &t, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    if (st) goto out;
    int32_t prefix = -1;
    st = kv_eval_prefix_token(MODEL, g_tok, &prefix, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    kv_eval_opts eo = {.max_length = 512, .prefix_token = prefix, .gptq_ctx = 512};
    kv_task_result r = {0};
    if (!st) st = kv_eval_task(g_model, g_tok, t, &eo, NULL, &r, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    int n = cJSON_GetArraySize(fx);
    CHECK_EQ_INT(r.n_docs, n);
    double max_d = 0;
    for (int i = 0; !st && i < n && i < r.n_docs; i++) {
        const cJSON *row = cJSON_GetArrayItem(fx, i);
        const kv_roll_doc *d = kv_task_roll_doc(t, i);
        uint8_t dg[32];
        char hex[65];
        ev_sha256 c;
        ev_sha256_init(&c);
        ev_sha256_update(&c, d->text, strlen(d->text));
        ev_sha256_final(&c, dg);
        ev_sha256_hex(dg, hex);
        CHECK_MSG(!strcmp(hex, cJSON_GetObjectItemCaseSensitive(row, "sha")->valuestring),
                  "wikitext doc %d: detokenized text differs from the harness's", i);
        CHECK_EQ_INT(d->words, (int64_t)num(row, "words"));
        CHECK_EQ_INT(d->bytes, (int64_t)num(row, "bytes"));
        double ref = num(row, "ll"), dd = fabs(r.ll[i] - ref);
        if (dd > max_d) max_d = dd;
        CHECK_MSG(dd <= 1e-4 + 2e-6 * fabs(ref), "wikitext doc %d: ll %.6f want %.6f", i, r.ll[i], ref);
        g_n_req++;
    }
    fprintf(stderr, "  wikitext: %d docs, max |dll| = %.3g (|ll| up to 6.5e4)\n", n, max_d);
    const cJSON *agg = cJSON_GetObjectItemCaseSensitive(sum, "wikitext");
    if (!st && agg) {
        static const char *names[3] = {"word_perplexity", "byte_perplexity", "bits_per_byte"};
        for (int k = 0; k < 3; k++) {
            char key[64];
            snprintf(key, sizeof key, "%s,none", names[k]);
            const kv_metric *m = metric(&r.scores[0], names[k]);
            CHECK(m != NULL);
            /* relative: exp() of a mean over ~40k bytes amplifies the ll tolerance */
            if (m)
                CHECK_MSG(fabs(m->value / num(agg, key) - 1) < 1e-6, "%s %.9g want %.9g", names[k],
                          m->value, num(agg, key));
        }
        CHECK(r.has_gptq && r.gptq.tokens > 0 && r.gptq.ppl > 1);
    }
    kv_task_result_free(&r);
    kv_task_free(t);
out:
    cJSON_Delete(fx);
    cJSON_Delete(sum);
}

/* ---- bad input ------------------------------------------------------------------------ */

static char g_tmp[256];

static void write_file(const char *rel, const char *text) {
    char p[512], d[512];
    snprintf(p, sizeof p, "%s/%s", g_tmp, rel);
    snprintf(d, sizeof d, "%s", p);
    char *sl = strrchr(d, '/');
    *sl = 0;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", d);
    if (system(cmd) != 0) fprintf(stderr, "  mkdir failed\n");
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void expect_load_err(const char *task, kv_status code, const char *needle) {
    kv_err err = {0};
    kv_task *t = NULL;
    kv_status st = kv_task_load(task, g_tmp, NULL, &t, &err);
    CHECK_ERR(st, &err, code, needle);
    CHECK(t == NULL);
    kv_task_free(t);
}

static void test_bad_input(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/kvant_test_eval.%d", (int)getpid());
    /* missing data sets name the folder and the files expected */
    expect_load_err("piqa", KV_ENOTFOUND, "/piqa (missing valid.jsonl; expected valid.jsonl");
    expect_load_err("mmlu", KV_ENOTFOUND, "mmlu (missing test/abstract_algebra_test.csv");
    expect_load_err("wikitext_ru", KV_ENOTFOUND, "wikitext_ru (missing rus_wikipedia");
    /* unknown task lists the known ones */
    expect_load_err("hellaswag", KV_EINVAL, "unknown task 'hellaswag'; known tasks: piqa, piqa_ru, mmlu");
    expect_load_err("mmlu_cooking", KV_EINVAL, "unknown task 'mmlu_cooking'");
    /* jsonl: a bad line names file:line */
    write_file("piqa/valid.jsonl", "{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \"c\"}\n{\"goal\": \"a\", \"sol1\": 3}\n");
    write_file("piqa/valid-labels.lst", "0\n1\n");
    expect_load_err("piqa", KV_EFORMAT, "piqa/valid.jsonl:2: \"sol1\" is not a string");
    write_file("piqa/valid.jsonl", "{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \"c\"}\nnot json\n");
    expect_load_err("piqa", KV_EFORMAT, "piqa/valid.jsonl:2: not a JSON object");
    write_file("piqa/valid.jsonl", "{\"goal\": \"a\", \"sol1\": \"b\", \"sol2\": \"c\"}\n");
    write_file("piqa/valid-labels.lst", "2\n");
    expect_load_err("piqa", KV_EFORMAT, "valid-labels.lst:1: expected a label 0 or 1");
    write_file("piqa/valid-labels.lst", "0\n1\n");
    expect_load_err("piqa", KV_EFORMAT, "2 labels for 1 items");
    /* csv: wrong field count, bad answer, bad header, unterminated quote */
    const char *hdr = "question,choice0,choice1,choice2,choice3,answer\n";
    char buf[512];
    write_file("mmlu/dev/abstract_algebra_dev.csv", hdr);
    snprintf(buf, sizeof buf, "%sq,a,b,c,d,1\n\"multi\nline\",a,b,c,3\n", hdr);
    write_file("mmlu/test/abstract_algebra_test.csv", buf);
    expect_load_err("mmlu_abstract_algebra", KV_EFORMAT, "abstract_algebra_test.csv:3: expected 6 fields");
    snprintf(buf, sizeof buf, "%sq,a,b,c,d,B\n", hdr);
    write_file("mmlu/test/abstract_algebra_test.csv", buf);
    expect_load_err("mmlu_abstract_algebra", KV_EFORMAT, "abstract_algebra_test.csv:2: answer must be 0-3");
    write_file("mmlu/test/abstract_algebra_test.csv", "q,c0,c1,c2,c3,answer\n");
    expect_load_err("mmlu_abstract_algebra", KV_EFORMAT, "abstract_algebra_test.csv:1: expected the header");
    snprintf(buf, sizeof buf, "%s\"q,a,b,c,d,1\n", hdr);
    write_file("mmlu/test/abstract_algebra_test.csv", buf);
    expect_load_err("mmlu_abstract_algebra", KV_EFORMAT, "abstract_algebra_test.csv:2: unterminated quoted field");
    /* a good CSV with quotes, commas and newlines parses */
    snprintf(buf, sizeof buf, "%s\"a, \"\"b\"\"\nc\",x,\"y,z\",w,v,2\n", hdr);
    write_file("mmlu/test/abstract_algebra_test.csv", buf);
    kv_err err = {0};
    kv_task *t = NULL;
    kv_status st = kv_task_load("mmlu_abstract_algebra", g_tmp, NULL, &t, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    if (!st) {
        const kv_mc_doc *d = kv_task_mc_doc(t, 0);
        CHECK(!strcmp(d->context, "The following are multiple choice questions (with answers) about "
                                  "abstract algebra.\n\na, \"b\"\nc\nA. x\nB. y,z\nC. w\nD. v\nAnswer:"));
        CHECK_EQ_INT(d->gold, 2);
    }
    kv_task_free(t);
    /* json arrays: a bad record names its index */
    write_file("mmlu_ru/ru_dev.json", "[]");
    write_file("mmlu_ru/ru_val.json",
               "[{\"instruction\": \"q\", \"option_a\": \"a\", \"option_b\": \"b\", \"option_c\": \"c\", "
               "\"option_d\": \"d\", \"answer\": \"A\", \"id\": \"anatomy/val/0\"},"
               " {\"instruction\": \"q\", \"option_a\": \"a\", \"option_b\": \"b\", \"option_c\": \"c\", "
               "\"option_d\": \"d\", \"answer\": \"F\", \"id\": \"anatomy/val/1\"}]");
    expect_load_err("mmlu_ru", KV_EFORMAT, "ru_val.json: record 1: answer must be a letter A-D");
    write_file("mmlu_ru/ru_val.json", "{\"not\": \"an array\"}");
    expect_load_err("mmlu_ru", KV_EFORMAT, "ru_val.json: not a JSON array");
    write_file("arc_ru/ru_challenge_test.json", "[{\"instruction\": \"q\", \"option_a\": \"a\", \"answer\": \"A\", \"id\": \"x\"}]");
    expect_load_err("arc_ru", KV_EFORMAT, "ru_challenge_test.json: record 0: missing \"option_b\"");
    write_file("wikitext_ru/rus_wikipedia_2021_10K-sentences.txt", "1\tone\nno tab here\n");
    expect_load_err("wikitext_ru", KV_EFORMAT, "sentences.txt:2: expected '<id>\\t<sentence>'");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "  cleanup failed\n");
}

/* Python semantics the prompts depend on */
static void test_py_strings(void) {
    size_t b, e;
    const char *s = "\xc2\xa0 x y\t\xe3\x80\x80"; /* NBSP, ideographic space: Python whitespace */
    ev_py_strip(s, strlen(s), &b, &e);
    CHECK_EQ_INT(b, 3);
    CHECK_EQ_INT(e, 6);
    CHECK_EQ_INT(ev_utf8_chars("Вопрос", strlen("Вопрос")), 6);
    CHECK_EQ_INT(ev_py_rstrip_len("Answer: \n", 9), 2);
    /* encode_pair moves the trailing space to the continuation */
    kv_ids a = {0}, c = {0}, w = {0}, x = {0};
    kv_err err = {0};
    CHECK(kv_encode_pair(g_tok, "Question: hi\nAnswer: ", 21, "yes", 3, &a, &c, &err) == KV_OK);
    CHECK(kv_tok_encode(g_tok, "Question: hi\nAnswer:", 20, KV_TOK_ADD_SPECIAL, &w, &err) == KV_OK);
    CHECK(kv_tok_encode(g_tok, " yes", 4, KV_TOK_ADD_SPECIAL, &x, &err) == KV_OK);
    CHECK(a.n == w.n && !memcmp(a.v, w.v, a.n * sizeof(int32_t)));
    CHECK(c.n == x.n && !memcmp(c.v, x.v, c.n * sizeof(int32_t)));
    kv_ids_free(&a);
    kv_ids_free(&c);
    kv_ids_free(&w);
    kv_ids_free(&x);
    /* sha256 of "abc" (FIPS 180-4 example) */
    uint8_t d[32];
    char hex[65];
    ev_sha256 h;
    ev_sha256_init(&h);
    ev_sha256_update(&h, "abc", 3);
    ev_sha256_final(&h, d);
    ev_sha256_hex(d, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    CHECK_EQ_INT(kv_mean_stderr((double[]){1, 0, 1, 1}, 4) * 1e12, (long long)(0.25 * 1e12));
}

int main(void) {
    kv_err err = {0};
    if (kv_model_load(MODEL, &g_model, &err) || kv_tok_load(MODEL, &g_tok, &err)) {
        fprintf(stderr, "cannot load %s: %s\n", MODEL, err.msg);
        return 1;
    }
    char p[512];
    snprintf(p, sizeof p, "%s/piqa/valid.jsonl", kv_test_data_dir());
    g_have_data = kv_is_file(p);
    KV_RUN(test_py_strings);
    KV_RUN(test_bad_input);
    if (g_have_data) {
        KV_RUN(test_piqa);
        KV_RUN(test_piqa_ru);
        KV_RUN(test_arc_ru);
        KV_RUN(test_mmlu);
        KV_RUN(test_mmlu_ru);
        KV_RUN(test_no_reuse);
        KV_RUN(test_wikitext);
        fprintf(stderr, "  conformance: %lld requests/documents, max |dll| %.3g\n", (long long)g_n_req,
                g_max_dll);
    } else {
        printf("# note: %s not found, harness conformance tests skipped\n", p);
    }
    kv_tok_free(g_tok);
    kv_model_free(g_model);
    return kv_test_summary();
}
