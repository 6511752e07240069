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
    const char *config = NULL, *out = NULL, *data = NULL;
    int64_t limit = 0, threads = 0;
    int quiet = 0;
    const cli_optdef opts[] = {
        CLI_STR("--config", &config),
        CLI_STR("--out", &out),
        CLI_STR("--data", &data),
        CLI_INT("--limit", &limit, 1, INT64_MAX / 4, "a positive integer"),
        CLI_THREADS(&threads),
        CLI_QUIET(&quiet),
    };
    const cli_spec spec = {"study", STUDY_USAGE, opts, CLI_N_OPTS(opts), NULL, 0, 0};
    int bad = cli_parse(&spec, argc, argv);
    if (bad) return bad;
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
