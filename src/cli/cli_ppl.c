/* cli_ppl.c — `kvant ppl MODEL_DIR (--text FILE | --ids FILE) [--ctx N] [--base DIR]`.
 *
 * Perplexity with the GPTQ protocol (see include/kvant/eval.h). Progress goes to
 * stderr; the last line on stdout is one JSON object with the figures. With --base,
 * the base model runs over the same windows and the JSON adds the KL divergence of
 * MODEL_DIR's next-token distributions from the base's ("kld_mean", "kld_p99",
 * "kld_max"), the fraction of positions with the same top token ("top1_agree") and the
 * base's own "base_nll" / "base_ppl" (issue 3). --text is tokenized with MODEL_DIR's
 * tokenizer. --fast runs MODEL_DIR's quantized layers with int8 activations for every
 * token (KV_ACT_Q8: what the fast decode path computes; the base stays exact), so
 * `ppl Q --base Q --fast` gives the KL of the q8 path from the exact one. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kvant/eval.h"
#include "kvant/fileio.h"
#include "kvant/model.h"
#include "kvant/tokenizer.h"

static const char *PPL_USAGE =
    "kvant ppl MODEL_DIR (--text FILE | --ids FILE) [--ctx N] [--chunk N] [--base BASE_DIR] "
    "[--fast] [--threads N] [--quiet]";

/* Whitespace-separated decimal ids; errors name file, line and the bad word. */
static kv_status read_ids(const char *path, kv_ids *ids, kv_err *err) {
    char *buf = NULL;
    size_t len = 0;
    kv_status st = kv_read_file(path, &buf, &len, err);
    if (st) return st;
    const char *p = buf, *end = buf + len;
    int64_t line = 1;
    while (p < end) {
        if (isspace((unsigned char)*p)) {
            if (*p == '\n') line++;
            p++;
            continue;
        }
        const char *w = p;
        while (p < end && !isspace((unsigned char)*p)) p++;
        char word[32];
        size_t wl = (size_t)(p - w);
        int ok = wl > 0 && wl < sizeof word;
        long long v = 0;
        if (ok) {
            memcpy(word, w, wl);
            word[wl] = 0;
            char *e;
            errno = 0;
            v = strtoll(word, &e, 10);
            ok = !errno && *e == 0 && v >= 0 && v <= INT32_MAX;
        }
        if (!ok) {
            st = kv_err_set(err, KV_EFORMAT, "%s:%lld: not a token id: '%.*s'", path,
                            (long long)line, (int)(wl > 40 ? 40 : wl), w);
            break;
        }
        if ((st = kv_ids_push(ids, (int32_t)v, err))) break;
    }
    free(buf);
    if (!st && ids->n == 0) st = kv_err_set(err, KV_EFORMAT, "%s: no token ids in file", path);
    return st;
}

int cli_ppl(int argc, char **argv) {
    const char *dir = NULL, *text = NULL, *idsf = NULL, *based = NULL, *v;
    int64_t ctx = 2048, chunk = 512, threads = 0;
    int quiet = 0, fast = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--text", &text)) ||
            (r = cli_opt(argc, argv, &i, "--ids", &idsf)) ||
            (r = cli_opt(argc, argv, &i, "--base", &based))) {
            if (r < 0) return cli_usage_error("ppl", PPL_USAGE, "%s needs a value", argv[i]);
        } else if ((r = cli_opt(argc, argv, &i, "--ctx", &v))) {
            if (r < 0 || cli_parse_i64(v, 2, 1 << 20, &ctx))
                return cli_usage_error("ppl", PPL_USAGE, "--ctx needs an integer >= 2");
        } else if ((r = cli_opt(argc, argv, &i, "--chunk", &v))) {
            if (r < 0 || cli_parse_i64(v, 1, 1 << 20, &chunk))
                return cli_usage_error("ppl", PPL_USAGE, "--chunk needs a positive integer");
        } else if ((r = cli_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_parse_i64(v, 1, 4096, &threads))
                return cli_usage_error("ppl", PPL_USAGE, "--threads needs a positive integer");
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = 1;
        } else if (!strcmp(argv[i], "--fast")) {
            fast = 1;
        } else if (argv[i][0] == '-') {
            return cli_usage_error("ppl", PPL_USAGE, "unknown option '%s'", argv[i]);
        } else if (!dir) {
            dir = argv[i];
        } else {
            return cli_usage_error("ppl", PPL_USAGE, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!dir) return cli_usage_error("ppl", PPL_USAGE, "missing MODEL_DIR");
    if (!text == !idsf) return cli_usage_error("ppl", PPL_USAGE, "give exactly one of --text or --ids");
    cli_set_threads(threads);

    kv_err err = {0};
    kv_model *m = NULL, *base = NULL;
    kv_tokenizer *tok = NULL;
    kv_ids ids = {0};
    int rc = 1;
    double t0 = kv_now();
    if (kv_model_load(dir, &m, &err)) goto fail;
    if (fast) kv_model_set_act_mode(m, KV_ACT_Q8);
    if (based && kv_model_load(based, &base, &err)) {
        kv_err_prefix(&err, "--base");
        goto fail;
    }
    if (text) {
        char *buf = NULL;
        size_t len = 0;
        if (kv_tok_load(dir, &tok, &err)) goto fail;
        if (kv_read_file(text, &buf, &len, &err)) goto fail;
        kv_status st = kv_tok_encode(tok, buf, len, KV_TOK_ADD_SPECIAL, &ids, &err);
        free(buf);
        if (st) {
            kv_err_prefix(&err, "%s", text);
            goto fail;
        }
    } else if (read_ids(idsf, &ids, &err)) {
        goto fail;
    }
    if (!quiet)
        fprintf(stderr, "ppl: %zu tokens from %s, window %lld (load %.2fs)\n", ids.n,
                text ? text : idsf, (long long)(ctx < (int64_t)ids.n ? ctx : (int64_t)ids.n), kv_now() - t0);

    kv_ppl_opts opts = {.ctx = ctx, .chunk = chunk};
    kv_ppl_result res;
    kv_kld_result kld;
    kv_progress prog;
    kv_progress_start(&prog, "ppl", "tok", 0, quiet);
    kv_status st = base ? kv_perplexity_kld(m, base, ids.v, (int64_t)ids.n, &opts, &prog, &res, &kld, &err)
                        : kv_perplexity(m, ids.v, (int64_t)ids.n, &opts, &prog, &res, &err);
    if (st) {
        if (idsf) kv_err_prefix(&err, "%s", idsf);
        goto fail;
    }
    printf("{\"model\": ");
    cli_json_str(stdout, dir);
    printf(", \"tokens\": %lld, \"windows\": %lld, \"ctx\": %lld, "
           "\"dropped_tokens\": %lld, \"nll\": %.6f, \"nll_stderr\": %.6f, \"ppl\": %.6f, "
           "\"tokens_per_second\": %.2f, \"seconds\": %.3f",
           (long long)res.tokens, (long long)res.windows, (long long)res.ctx,
           (long long)res.dropped, res.nll, res.nll_stderr, res.ppl, res.tokens_per_second,
           res.seconds);
    if (base) {
        printf(", \"base\": ");
        cli_json_str(stdout, based);
        printf(", \"base_nll\": %.6f, \"base_ppl\": %.6f, \"kld_mean\": %.8f, "
               "\"kld_p99\": %.8f, \"kld_max\": %.8f, \"top1_agree\": %.6f",
               kld.base.nll, kld.base.ppl, kld.kld_mean, kld.kld_p99, kld.kld_max, kld.top1_agree);
    }
    printf("}\n");
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    kv_ids_free(&ids);
    kv_tok_free(tok);
    kv_model_free(m);
    kv_model_free(base);
    return rc;
}
