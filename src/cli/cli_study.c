/* cli_study.c — `kvant study [--config FILE] [--out DIR] [--limit N] [--data DIR]
 * [--threads N] [--quiet]`.
 *
 * Pipeline: all of it (include/kvant/study.h does the work). Without --config it runs
 * the default study (KV_STUDY_DEFAULT_MODEL, base + every implemented format, the six
 * study tasks with small limits). Step lines and progress go to stderr; the report's
 * Markdown table goes to stdout at the end. Running it again skips finished cells. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kvant/study.h"

static const char *STUDY_USAGE =
    "kvant study [--config FILE] [--out DIR] [--limit N] [--data DIR] [--threads N] [--quiet]\n"
    "  no --config: the default study (" KV_STUDY_DEFAULT_MODEL ", base + int4-g128, int3-g128,\n"
    "  int2-g64, mxfp4, mxint4; wikitext2, wikitext_ru, mmlu, mmlu_ru, piqa, piqa_ru) into "
    KV_STUDY_DEFAULT_OUT;

static void log_line(void *ud, const char *line) {
    (void)ud;
    fprintf(stderr, "%s\n", line);
}

int cli_study(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *data = NULL, *v;
    int64_t limit = 0, threads = 0;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--config", &config)) ||
            (r = cli_opt(argc, argv, &i, "--out", &out)) ||
            (r = cli_opt(argc, argv, &i, "--data", &data))) {
            if (r < 0) return cli_usage_error("study", STUDY_USAGE, "%s needs a value", argv[i]);
        } else if ((r = cli_opt(argc, argv, &i, "--limit", &v))) {
            if (r < 0 || cli_parse_i64(v, 1, INT64_MAX / 4, &limit))
                return cli_usage_error("study", STUDY_USAGE, "--limit needs a positive integer");
        } else if ((r = cli_opt(argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_parse_i64(v, 1, 4096, &threads))
                return cli_usage_error("study", STUDY_USAGE, "--threads needs a positive integer");
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = 1;
        } else if (argv[i][0] == '-') {
            return cli_usage_error("study", STUDY_USAGE, "unknown option '%s'", argv[i]);
        } else {
            return cli_usage_error("study", STUDY_USAGE, "unexpected argument '%s'", argv[i]);
        }
    }
    cli_set_threads(threads);

    kv_err err = {0};
    kv_study_config cfg;
    memset(&cfg, 0, sizeof cfg);
    kv_study_summary sum;
    memset(&sum, 0, sizeof sum);
    int rc = 1;
    if (config ? kv_study_config_load(config, &cfg, &err) : kv_study_config_default(&cfg, &err))
        goto fail;
    if (out) {
        free(cfg.out);
        if (!(cfg.out = strdup(out))) goto oom;
    }
    if (data) {
        free(cfg.data);
        if (!(cfg.data = strdup(data))) goto oom;
    }
    kv_study_opts o = {.quiet = quiet, .limit = limit, .log = quiet ? NULL : log_line};
    if (kv_study_run(&cfg, &o, &sum, &err)) goto fail;
    for (int i = 0; i < sum.n_warnings; i++)
        fprintf(stderr, "kvant study: warning: %s\n", sum.warnings[i]);
    if (!quiet)
        fprintf(stderr, "study: %d cells: %d run (%d n/a), %d skipped as done; %d checkpoints "
                        "quantized, %d reused; %.1f s\n",
                sum.cells, sum.ran, sum.failed, sum.skipped, sum.quantized, sum.reused, sum.seconds);
    fputs(sum.table, stdout);
    rc = 0;
    goto done;
oom:
    kv_err_set(&err, KV_ENOMEM, "study: out of memory");
fail:
    cli_fail(&err);
done:
    kv_study_summary_free(&sum);
    kv_study_config_free(&cfg);
    return rc;
}
