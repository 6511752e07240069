/* test_cli.c — the `kvant` binary end to end: perplexity against transformers'
 * (tests/fixtures/ppl/expected.json, tools/make_ppl_fixtures.py), tokenization via the
 * CLI, and bad input giving a clear message and the right exit status.
 * The binary is $KVANT_BIN (tests/run.sh sets it), default build/kvant. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvant/fileio.h"
#include "test.h"




static cJSON *expected;

static cJSON *case_at(int i) { return cJSON_GetArrayItem(cJSON_GetObjectItem(expected, "cases"), i); }
static double num(cJSON *c, const char *k) { return cJSON_GetNumberValue(cJSON_GetObjectItem(c, k)); }

/* kvant ppl agrees with transformers' GPTQ-protocol NLL. Tolerance 1e-4 nats: the
 * logits agree to ~1e-5 and the NLL is their average. */
static void test_ppl_text_windows(void) {
    static char out[1 << 16];
    for (int i = 0; i < 2; i++) {
        cJSON *c = case_at(i);
        char args[512];
        snprintf(args, sizeof args, "ppl %s --text %s --ctx %d --quiet",
                 cJSON_GetStringValue(cJSON_GetObjectItem(c, "model")),
                 cJSON_GetStringValue(cJSON_GetObjectItem(c, "text")), (int)num(c, "ctx_arg"));
        int rc = kv_test_run(args, NULL, out, sizeof out);
        CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
        CHECK_EQ_INT(kv_test_json_num(out, "tokens"), num(c, "tokens"));
        CHECK_EQ_INT(kv_test_json_num(out, "windows"), num(c, "windows"));
        CHECK_EQ_INT(kv_test_json_num(out, "ctx"), num(c, "ctx"));
        CHECK_EQ_INT(kv_test_json_num(out, "dropped_tokens"), num(c, "dropped_tokens"));
        double nll = kv_test_json_num(out, "nll"), want = num(c, "nll");
        CHECK_MSG(fabs(nll - want) < 1e-4, "nll %.6f want %.6f", nll, want);
        CHECK(fabs(kv_test_json_num(out, "ppl") - exp(want)) / exp(want) < 2e-4);
        CHECK(kv_test_json_num(out, "tokens_per_second") > 0);
    }
}

static void test_ppl_ids_sharded(void) {
    static char out[1 << 16];
    cJSON *c = case_at(2);
    char args[512];
    snprintf(args, sizeof args, "ppl %s --ids %s --ctx 100", cJSON_GetStringValue(cJSON_GetObjectItem(c, "model")),
             cJSON_GetStringValue(cJSON_GetObjectItem(c, "ids")));
    int rc = kv_test_run(args, NULL, out, sizeof out);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
    CHECK_EQ_INT(kv_test_json_num(out, "tokens"), num(c, "tokens"));
    CHECK_EQ_INT(kv_test_json_num(out, "dropped_tokens"), num(c, "dropped_tokens"));
    double nll = kv_test_json_num(out, "nll"), want = num(c, "nll");
    CHECK_MSG(fabs(nll - want) < 1e-4, "nll %.6f want %.6f", nll, want);
}

/* `kvant tokenize` prints the ids HF tokenizers gives (with special tokens added). */
static void test_tokenize_cli(void) {
    static char out[1 << 16];
    char *want = NULL;
    size_t wl;
    kv_err err = {0};
    CHECK(kv_read_file("tests/fixtures/ppl/tiny_qwen3_sample_ids.txt", &want, &wl, &err) == KV_OK);
    int rc = kv_test_run("tokenize models/tiny-qwen3 --add-special", "docs/sample.txt", out, sizeof out);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
    CHECK_MSG(want && !strcmp(out, want), "ids differ:\n got %.200s\nwant %.200s", out, want ? want : "");
    free(want);
}

static void test_info_and_generate(void) {
    static char out[1 << 16];
    int rc = kv_test_run("info tests/fixtures/models/qwen3_untied_bf16 --json", NULL, out, sizeof out);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, out);
    CHECK(strstr(out, "\"architecture\": \"Qwen3ForCausalLM\""));
    CHECK(strstr(out, "\"head_dim\": 24"));
    CHECK(strstr(out, "\"BF16\""));
    rc = kv_test_run("generate models/tiny-qwen3 -p \"Hello\" -n 4 --ignore-eos --quiet", NULL, out, sizeof out);
    CHECK_MSG(rc == 0 && !strncmp(out, "Hello", 5), "exit %d: %s", rc, out);
}

/* Writes `content` to a fresh file under dir and returns its path (static buffer). */
static const char *put(const char *dir, const char *name, const char *content) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
    return path;
}

static void expect(const char *args, int want_rc, const char *needle) {
    static char out[1 << 16];
    int rc = kv_test_run(args, NULL, out, sizeof out);
    CHECK_MSG(rc == want_rc && strstr(out, needle), "kvant %s: exit %d (want %d), output lacks \"%s\":\n%s",
              args, rc, want_rc, needle, out);
    CHECK_MSG(!strstr(out, "AddressSanitizer") && !strstr(out, "runtime error"), "sanitizer report: %s", out);
}

static void test_bad_input(void) {
    char tmpl[] = "/tmp/kvant_cli_XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    if (!dir) return;
    char args[1024];
    expect("frobnicate", 2, "unknown command");
    expect("ppl models/tiny-qwen3", 2, "exactly one of --text or --ids");
    expect("ppl models/tiny-qwen3 --ids x --ctx -3", 2, "--ctx");
    snprintf(args, sizeof args, "ppl %s/none --ids x", dir);
    expect(args, 1, "/none");
    /* Ids files: a word that is not an id (file:line), an id beyond the vocabulary. */
    snprintf(args, sizeof args, "ppl models/tiny-qwen3 --ids %s", put(dir, "bad.txt", "1 2 3\n4 five 6\n"));
    expect(args, 1, "bad.txt:2: not a token id: 'five'");
    snprintf(args, sizeof args, "ppl models/tiny-qwen3 --ids %s", put(dir, "big.txt", "1 2 3 8320 5\n"));
    expect(args, 1, "token id 8320 at position 3");
    snprintf(args, sizeof args, "ppl models/tiny-qwen3 --ids %s", put(dir, "empty.txt", "\n \n"));
    expect(args, 1, "no token ids");
    snprintf(args, sizeof args, "ppl models/tiny-qwen3 --text %s/missing.txt", dir);
    expect(args, 1, "missing.txt");
    /* A model directory without tokenizer.json cannot take --text. */
    snprintf(args, sizeof args, "ppl tests/fixtures/models/qwen2_bias_f32 --text docs/sample.txt");
    expect(args, 1, "tokenizer.json");
    /* A directory with a malformed config.json. */
    put(dir, "config.json", "{\"architectures\": [\"Qwen3ForCausalLM\"], \"hidden_size\": ");
    snprintf(args, sizeof args, "info %s", dir);
    expect(args, 1, "config.json");
    remove(put(dir, "bad.txt", ""));
    remove(put(dir, "big.txt", ""));
    remove(put(dir, "empty.txt", ""));
    remove(put(dir, "config.json", ""));
    rmdir(dir);
}

/* The option parser every command but ppl, generate, train and pretokenize shares
 * (cli_parse): each kind of usage error, exit code 2, message naming the argument. */
static void test_option_parsing(void) {
    expect("eval models/tiny-qwen3 --tasks", 2, "--tasks needs a value");
    expect("eval models/tiny-qwen3 --tasks piqa --limit 0", 2, "--limit needs a positive integer");
    expect("eval models/tiny-qwen3 --tasks piqa --num-fewshot", 2, "--num-fewshot needs an integer 0-64");
    expect("eval models/tiny-qwen3 --tasks piqa --bogus", 2, "unknown option '--bogus'");
    expect("eval models/tiny-qwen3 other --tasks piqa", 2, "unexpected argument 'other'");
    expect("eval - --tasks piqa", 2, "unknown option '-'");
    expect("eval --tasks piqa -q", 2, "missing MODEL_DIR");
    expect("study --threads 0", 2, "--threads needs a positive integer");
    expect("study extra", 2, "unexpected argument 'extra'");
    expect("quantize a b c --format mxfp4", 2, "unexpected argument 'c'");
    expect("quantize a --format mxfp4", 2, "missing IN_DIR or OUT_DIR");
    expect("quantize a b --format mxfp4 --max-shard-mb x", 2, "--max-shard-mb needs a positive integer");
    expect("info models/tiny-qwen3 --yaml", 2, "unknown option '--yaml'");
    expect("tokenize", 2, "missing MODEL_DIR");
    expect("report --out", 2, "--out needs a value");
    expect("report --out /tmp/x", 2, "missing RESULTS");
    expect("report a.json", 2, "missing --out DIR");
}

int main(void) {
    char *buf = NULL;
    size_t len;
    kv_err err = {0};
    if (kv_read_file("tests/fixtures/ppl/expected.json", &buf, &len, &err) || !(expected = cJSON_Parse(buf))) {
        fprintf(stderr, "cannot read tests/fixtures/ppl/expected.json: %s\n", err.msg);
        return 1;
    }
    free(buf);
    KV_RUN(test_ppl_text_windows);
    KV_RUN(test_ppl_ids_sharded);
    KV_RUN(test_tokenize_cli);
    KV_RUN(test_info_and_generate);
    KV_RUN(test_bad_input);
    KV_RUN(test_option_parsing);
    cJSON_Delete(expected);
    return kv_test_summary();
}
