/* cli_pretokenize.c — `kvant pretokenize --tokenizer TOK --out DIR [--val-fraction F]
 * FILES_OR_DIRS...`: text files (directories: their .txt files, recursively) to token
 * shards for `kvant train` (see kv_pretokenize in include/kvant/train.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kvant/train.h"

static const char *PT_USAGE =
    "kvant pretokenize --tokenizer TOKENIZER_JSON_OR_DIR --out DIR [--val-fraction F] "
    "[--shard-tokens N] [--threads N] [--quiet] FILES_OR_DIRS...";

int cli_pretokenize(int argc, char **argv) {
    kv_pretok_opts o = {NULL, NULL, 0.0, 0, 0};
    const char *v;
    int64_t threads = 0;
    const char **files = calloc((size_t)argc, sizeof *files);
    int nf = 0;
    if (!files) {
        fprintf(stderr, "kvant: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--tokenizer", &o.tokenizer)) ||
            (r = cli_opt(argc, argv, &i, "--out", &o.out_dir))) {
            if (r < 0) goto usage_value;
        } else if ((r = cli_opt(argc, argv, &i, "--val-fraction", &v))) {
            char *e;
            if (r < 0) goto usage_value;
            o.val_fraction = strtod(v, &e);
            if (*e || !(o.val_fraction >= 0 && o.val_fraction <= 0.5)) {
                free(files);
                return cli_usage_error("pretokenize", PT_USAGE, "--val-fraction needs a number in [0, 0.5]");
            }
        } else if ((r = cli_opt(argc, argv, &i, "--shard-tokens", &v))) {
            if (r < 0 || cli_parse_i64(v, 1024, (int64_t)1 << 40, &o.shard_tokens)) {
                free(files);
                return cli_usage_error("pretokenize", PT_USAGE, "--shard-tokens needs an integer >= 1024");
            }
        } else if ((r = cli_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_parse_i64(v, 1, 4096, &threads)) {
                free(files);
                return cli_usage_error("pretokenize", PT_USAGE, "--threads needs a positive integer");
            }
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            o.quiet = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            free(files);
            return cli_usage_error("pretokenize", PT_USAGE, "unknown option %s", argv[i]);
        } else {
            files[nf++] = argv[i];
        }
        continue;
    usage_value:
        free(files);
        return cli_usage_error("pretokenize", PT_USAGE, "%s needs a value", argv[i]);
    }
    if (!o.tokenizer || !o.out_dir || !nf) {
        free(files);
        return cli_usage_error("pretokenize", PT_USAGE, "--tokenizer, --out and at least one input are required");
    }
    cli_set_threads(threads);
    kv_err err = {0};
    kv_status st = kv_pretokenize(&o, files, nf, &err);
    free(files);
    if (st) return cli_fail(&err);
    if (!o.quiet) fprintf(stderr, "pretokenize: wrote %s (see its manifest.json)\n", o.out_dir);
    return 0;
}
