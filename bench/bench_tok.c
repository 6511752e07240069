/* bench_tok.c — tokenizer speed: tokenizer.json load time and single-thread encode MB/s
 * with the real Qwen3 tokenizer on English (WikiText-2 test) and Russian (Leipzig
 * Wikipedia sentences) text.
 *
 * Reads $KVANT_DATA or ../shared/data; exits 0 with a note when the data is absent.
 * Figures are printed beside the 1 MB/s per-core floor and HF tokenizers' 1.7 MB/s
 * (measured on these machines). "first" is the first pass over the text (empty word
 * cache), "best" the best of the following passes. Never asserts a timing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvant/fileio.h"
#include "kvant/tokenizer.h"

#define FLOOR_MBS 1.0
#define HF_MBS 1.7

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_file(const char *tok_json, const char *dir, const char *rel, const char *label) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    char *buf = NULL;
    size_t len = 0;
    kv_err err = {0};
    if (kv_read_file(path, &buf, &len, &err) != KV_OK) {
        printf("%-8s skipped: %s\n", label, err.msg);
        return 0;
    }
    kv_tokenizer *t = NULL;
    if (kv_tok_load(tok_json, &t, &err) != KV_OK) { /* fresh: empty cache */
        fprintf(stderr, "%s\n", err.msg);
        free(buf);
        return 1;
    }
    kv_ids ids = {0};
    double first = 0, best = 1e30;
    for (int r = 0; r < 4; r++) {
        ids.n = 0;
        double t0 = now();
        if (kv_tok_encode(t, buf, len, 0, &ids, &err) != KV_OK) {
            fprintf(stderr, "%s\n", err.msg);
            break;
        }
        double dt = now() - t0;
        if (r == 0) first = dt;
        else if (dt < best) best = dt;
    }
    double mb = (double)len / 1e6;
    printf("%-8s %6.2f MB  %7zu tokens  first %6.1f MB/s  best %6.1f MB/s  "
           "(%.0fx the 1 MB/s floor, %.1fx HF tokenizers)\n",
           label, mb, ids.n, mb / first, mb / best, mb / best / FLOOR_MBS, mb / best / HF_MBS);
    kv_ids_free(&ids);
    kv_tok_free(t);
    free(buf);
    return 0;
}

int main(void) {
    const char *dir = getenv("KVANT_DATA");
    if (!dir || !*dir) dir = "../shared/data";
    char tok_json[2048];
    snprintf(tok_json, sizeof tok_json, "%s/tokenizer_qwen3/tokenizer.json", dir);
    kv_tokenizer *t = NULL;
    kv_err err = {0};
    double t0 = now();
    kv_status st = kv_tok_load(tok_json, &t, &err);
    double dt = now() - t0;
    if (st == KV_ENOTFOUND) {
        printf("bench_tok: %s\nbench_tok: skipped (set KVANT_DATA to the shared data dir)\n",
               err.msg);
        return 0;
    }
    if (st != KV_OK) {
        fprintf(stderr, "bench_tok: %s\n", err.msg);
        return 1;
    }
    kv_tok_free(t);
    printf("load     %s: %.3f s (first load in the process, includes Unicode tables)\n",
           tok_json, dt);
    t0 = now();
    if (kv_tok_load(tok_json, &t, &err) == KV_OK) {
        printf("load     again: %.3f s\n", now() - t0);
        kv_tok_free(t);
    }
    printf("encode, 1 thread, Qwen3 tokenizer, add_special_tokens=False:\n");
    int rc = bench_file(tok_json, dir, "wikitext2/wiki.test.raw", "english");
    rc |= bench_file(tok_json, dir, "wikitext_ru/rus_wikipedia_2021_10K-sentences.txt", "russian");
    return rc;
}
