/* cli_tokenize.c — `kvant tokenize MODEL_DIR`: text on stdin -> ids on stdout
 * (space-separated), or with --decode ids on stdin -> text on stdout. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "kvant/tokenizer.h"

static const char *TOK_USAGE = "kvant tokenize MODEL_DIR [--add-special] [--decode] < input";

static kv_status read_stdin(char **buf, size_t *len, kv_err *err) {
    size_t cap = 1 << 16, n = 0;
    char *b = kv_malloc(cap, err, "stdin");
    if (!b) return KV_ENOMEM;
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return kv_err_set(err, KV_ENOMEM, "stdin: out of memory at %zu bytes", cap * 2);
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n - 1, stdin);
        n += r;
        if (r == 0) break;
    }
    if (ferror(stdin)) {
        free(b);
        return kv_err_set(err, KV_EIO, "stdin: read error");
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return KV_OK;
}

int cli_tokenize(int argc, char **argv) {
    const char *dir = NULL;
    int add_special = 0, decode = 0;
    const cli_optdef opts[] = {
        CLI_FLAG("--add-special", NULL, &add_special),
        CLI_FLAG("--decode", NULL, &decode),
    };
    const cli_spec spec = {"tokenize", TOK_USAGE, opts, CLI_N_OPTS(opts), &dir, 1, 0};
    int bad = cli_parse(&spec, argc, argv);
    if (bad) return bad;
    int flags = add_special ? KV_TOK_ADD_SPECIAL : 0;
    if (!dir) return cli_usage_error("tokenize", TOK_USAGE, "missing MODEL_DIR");
    kv_err err = {0};
    kv_tokenizer *tok = NULL;
    kv_ids ids = {0};
    char *in = NULL, *out = NULL;
    size_t len = 0;
    int rc = 1;
    if (kv_tok_load(dir, &tok, &err) || read_stdin(&in, &len, &err)) goto fail;
    if (!decode) {
        if (kv_tok_encode(tok, in, len, flags, &ids, &err)) {
            kv_err_prefix(&err, "stdin");
            goto fail;
        }
        for (size_t i = 0; i < ids.n; i++) printf(i ? " %d" : "%d", ids.v[i]);
        printf("\n");
    } else {
        char *p = in;
        int64_t vocab = kv_tok_vocab_size(tok);
        while (*p) {
            if (isspace((unsigned char)*p)) { p++; continue; }
            char *e;
            long long v = strtoll(p, &e, 10);
            if (e == p || (*e && !isspace((unsigned char)*e)) || v < 0 || v >= vocab) {
                kv_err_set(&err, KV_EFORMAT, "stdin: not a token id of this vocabulary (size %lld): '%.20s'",
                           (long long)vocab, p);
                goto fail;
            }
            if (kv_ids_push(&ids, (int32_t)v, &err)) goto fail;
            p = e;
        }
        size_t olen;
        if (kv_tok_decode(tok, ids.v, ids.n, &out, &olen, &err)) goto fail;
        fwrite(out, 1, olen, stdout);
    }
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    free(in);
    free(out);
    kv_ids_free(&ids);
    kv_tok_free(tok);
    return rc;
}
