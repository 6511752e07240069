/* main.c — the `kvant` binary: dispatch to one subcommand per file in src/cli/. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <omp.h>

#include "cli/cli.h"

#ifndef KVANT_VERSION
#define KVANT_VERSION "0.1.0"
#endif

static const char *USAGE =
    "kvant " KVANT_VERSION " — quantize LLMs and measure what it costs\n"
    "\n"
    "usage: kvant <command> [options]\n"
    "\n"
    "commands:\n"
    "  ppl MODEL_DIR (--text FILE | --ids FILE) [--ctx N]   perplexity, GPTQ protocol\n"
    "  generate MODEL_DIR -p PROMPT [-n N]                  greedy generation\n"
    "  tokenize MODEL_DIR [--add-special] [--decode]        text on stdin -> ids on stdout\n"
    "  info MODEL_DIR [--json]                              architecture, sizes, dtypes\n"
    "  eval MODEL_DIR --tasks piqa,mmlu,... [--output F]    benchmarks as lm-eval scores them\n"
    "  quantize IN_DIR OUT_DIR --format F [--method rtn]    quantized checkpoint (RTN)\n"
    "  report RESULTS... --out DIR                          study tables + plots (md, csv, html)\n"
    "  study [--config FILE] [--out DIR] [--limit N]        quantize + evaluate a grid, then report\n"
    "  pretokenize --tokenizer T --out DIR FILES...         text -> token shards for train\n"
    "  train --data DIR --out DIR [--config FILE] [--resume] train a Qwen3-shaped model\n"
    "\n"
    "common options: --threads N (or KVANT_THREADS), --quiet\n"
    "environment: KVANT_ISA=ref|avx2|avx512 forces a kernel set\n";

int cli_fail(const kv_err *err) {
    fprintf(stderr, "kvant: error: %s\n", err->msg[0] ? err->msg : kv_status_name(err->code));
    return 1;
}

int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "kvant %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\n", usage);
    return 2;
}

int cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

void cli_set_threads(int64_t n) {
    if (n <= 0) {
        const char *e = getenv("KVANT_THREADS");
        int64_t v;
        if (e && cli_parse_i64(e, 1, 4096, &v) == 0) n = v;
    }
    if (n > 0) omp_set_num_threads((int)n);
}

int cli_opt(int argc, char **argv, int *i, const char *name, const char **val) {
    if (strcmp(argv[*i], name) != 0) return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

int cli_parse(const cli_spec *spec, int argc, char **argv) {
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const cli_optdef *d = NULL;
        for (int k = 0; k < spec->n_opts && !d; k++)
            if (!strcmp(a, spec->opts[k].name) ||
                (spec->opts[k].alias && !strcmp(a, spec->opts[k].alias)))
                d = &spec->opts[k];
        if (d && d->kind == 'f') {
            *(int *)d->dst = 1;
        } else if (d) {
            const char *v = i + 1 < argc ? argv[++i] : NULL;
            if (d->kind == 's') {
                if (!v) return cli_usage_error(spec->cmd, spec->usage, "%s needs a value", a);
                *(const char **)d->dst = v;
            } else if (!v || cli_parse_i64(v, d->lo, d->hi, (int64_t *)d->dst)) {
                return cli_usage_error(spec->cmd, spec->usage, "%s needs %s", d->name, d->need);
            }
        } else if (a[0] == '-' && (a[1] || !spec->dash_is_arg)) {
            return cli_usage_error(spec->cmd, spec->usage, "unknown option '%s'", a);
        } else if (n_pos < spec->max_pos) {
            spec->pos[n_pos++] = a;
        } else {
            return cli_usage_error(spec->cmd, spec->usage, "unexpected argument '%s'", a);
        }
    }
    return 0;
}

void cli_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("kvant %s\n", KVANT_VERSION);
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"ppl", cli_ppl},
        {"generate", cli_generate},
        {"tokenize", cli_tokenize},
        {"info", cli_info},
        {"eval", cli_eval},
        {"quantize", cli_quantize},
        {"report", cli_report},
        {"study", cli_study},
        {"train", cli_train},
        {"pretokenize", cli_pretokenize},
    };
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
        if (!strcmp(argv[1], cmds[k].name)) return cmds[k].fn(argc - 1, argv + 1);
    fprintf(stderr, "kvant: unknown command '%s'\n\n%s", argv[1], USAGE);
    return 2;
}
