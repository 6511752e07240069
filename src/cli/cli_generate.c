/* cli_generate.c — `kvant generate MODEL_DIR -p PROMPT [-n N]`: greedy decoding with
 * the KV cache, text streamed to stdout, speed to stderr. A quick look, not a sampler.
 * Quantized layers decode with int8 activations (KV_ACT_Q8_DECODE, the fast path;
 * the prompt's prefill stays exact); --exact keeps fp32 activations throughout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kvant/model.h"
#include "kvant/progress.h"
#include "kvant/tokenizer.h"

static const char *GEN_USAGE =
    "kvant generate MODEL_DIR -p PROMPT [-n N] [--ignore-eos] [--exact] [--threads N] [--quiet]";

static int64_t argmax(const float *v, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

int cli_generate(int argc, char **argv) {
    const char *dir = NULL, *prompt = NULL, *v;
    int64_t n_new = 32, threads = 0;
    int quiet = 0, ignore_eos = 0, exact = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "-p", &prompt)) ||
            (r = cli_opt(argc, argv, &i, "--prompt", &prompt))) {
            if (r < 0) return cli_usage_error("generate", GEN_USAGE, "-p needs a value");
        } else if ((r = cli_opt(argc, argv, &i, "-n", &v))) {
            if (r < 0 || cli_parse_i64(v, 0, 1 << 20, &n_new))
                return cli_usage_error("generate", GEN_USAGE, "-n needs a non-negative integer");
        } else if ((r = cli_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_parse_i64(v, 1, 4096, &threads))
                return cli_usage_error("generate", GEN_USAGE, "--threads needs a positive integer");
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = 1;
        } else if (!strcmp(argv[i], "--ignore-eos")) {
            ignore_eos = 1;
        } else if (!strcmp(argv[i], "--exact")) {
            exact = 1;
        } else if (argv[i][0] == '-') {
            return cli_usage_error("generate", GEN_USAGE, "unknown option '%s'", argv[i]);
        } else if (!dir) {
            dir = argv[i];
        } else {
            return cli_usage_error("generate", GEN_USAGE, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!dir || !prompt) return cli_usage_error("generate", GEN_USAGE, "need MODEL_DIR and -p PROMPT");
    cli_set_threads(threads);

    kv_err err = {0};
    kv_model *m = NULL;
    kv_tokenizer *tok = NULL;
    kv_cache *cache = NULL;
    kv_ids ids = {0};
    float *logits = NULL;
    char *text = NULL;
    int rc = 1;
    if (kv_model_load(dir, &m, &err) || kv_tok_load(dir, &tok, &err)) goto fail;
    kv_model_set_act_mode(m, exact ? KV_ACT_EXACT : KV_ACT_Q8_DECODE);
    if (kv_tok_encode(tok, prompt, strlen(prompt), KV_TOK_ADD_SPECIAL, &ids, &err)) goto fail;
    if (ids.n == 0) {
        kv_err_set(&err, KV_EINVAL, "the prompt encodes to no tokens");
        goto fail;
    }
    const kv_config *cfg = kv_model_config(m);
    size_t n_prompt = ids.n;
    if (kv_cache_new(m, 1, (int64_t)n_prompt + n_new + 1, &cache, &err)) goto fail;
    logits = kv_malloc((size_t)cfg->vocab_size * sizeof(float), &err, "generate logits");
    if (!logits) goto fail;

    fputs(prompt, stdout);
    fflush(stdout);
    double t0 = kv_now();
    if (kv_model_forward1(m, cache, 0, ids.v, (int64_t)ids.n, KV_LOGITS_LAST, logits, &err))
        goto fail;
    double t_prefill = kv_now() - t0;
    size_t printed = 0; /* bytes of the generated text already written */
    int64_t made = 0;
    t0 = kv_now();
    while (made < n_new) {
        int32_t next = (int32_t)argmax(logits, cfg->vocab_size);
        if (!ignore_eos && next == cfg->eos_token_id) break;
        if (kv_ids_push(&ids, next, &err)) goto fail;
        made++;
        /* Decode everything generated so far and print the new suffix, holding back an
         * incomplete UTF-8 character (decoded as U+FFFD) until its bytes arrive. */
        size_t len;
        free(text);
        text = NULL;
        if (kv_tok_decode(tok, ids.v + n_prompt, ids.n - n_prompt, &text, &len, &err)) goto fail;
        size_t stable = len;
        if (stable >= 3 && !memcmp(text + stable - 3, "\xEF\xBF\xBD", 3)) stable -= 3;
        if (stable > printed) {
            fwrite(text + printed, 1, stable - printed, stdout);
            fflush(stdout);
            printed = stable;
        }
        if (made == n_new) break;
        if (kv_model_forward1(m, cache, 0, &next, 1, KV_LOGITS_LAST, logits, &err)) goto fail;
    }
    if (text && strlen(text) > printed) fputs(text + printed, stdout);
    fputc('\n', stdout);
    double t_dec = kv_now() - t0;
    if (!quiet)
        fprintf(stderr, "generate: prompt %zu tok in %.2fs (%.1f tok/s), %lld new tok in %.2fs (%.1f tok/s)\n",
                n_prompt, t_prefill, (double)n_prompt / (t_prefill > 0 ? t_prefill : 1e-9),
                (long long)made, t_dec, made / (t_dec > 0 ? t_dec : 1e-9));
    rc = 0;
    goto done;
fail:
    fflush(stdout);
    cli_fail(&err);
done:
    free(text);
    free(logits);
    kv_ids_free(&ids);
    kv_cache_free(cache);
    kv_tok_free(tok);
    kv_model_free(m);
    return rc;
}
