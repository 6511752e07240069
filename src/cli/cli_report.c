/* cli_report.c — `kvant report RESULTS... --out DIR [--quiet]`.
 *
 * Pipeline stage: report (include/kvant/report.h does the work). RESULTS are results
 * files of `kvant eval --output` / `kvant study`, or directories of them. Writes
 * DIR/report.md, report.csv and report.html (atomically), prints the Markdown table on
 * stdout, and prints the report's warnings (results from different kvant versions,
 * the same cell given twice) on stderr; warnings never stop the report. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "kvant/report.h"

static const char *REPORT_USAGE =
    "kvant report RESULTS... --out DIR [--quiet]\n"
    "  RESULTS: results JSON files (kvant eval --output, kvant study) or directories of them";

int cli_report(int argc, char **argv) {
    const char *out = NULL;
    int quiet = 0, n_in = 0;
    const char **in = calloc((size_t)argc, sizeof *in); /* RESULTS, NULL-terminated */
    if (!in) {
        fprintf(stderr, "kvant: out of memory\n");
        return 1;
    }
    const cli_optdef opts[] = {CLI_STR("--out", &out), CLI_QUIET(&quiet)};
    const cli_spec spec = {"report", REPORT_USAGE, opts, CLI_N_OPTS(opts), in, argc - 1, 1};
    int bad = cli_parse(&spec, argc, argv);
    while (!bad && in[n_in]) n_in++;
    if (!bad && !n_in) bad = cli_usage_error("report", REPORT_USAGE, "missing RESULTS");
    if (!bad && (!out || !*out))
        bad = cli_usage_error("report", REPORT_USAGE, "missing --out DIR");
    if (bad) {
        free(in);
        return bad;
    }

    kv_err err = {0};
    kv_report *rep = NULL;
    char *table = NULL;
    int rc = 1;
    if (kv_report_new(&rep, &err)) goto fail;
    for (int i = 0; i < n_in; i++)
        if (kv_report_add_path(rep, in[i], &err)) goto fail;
    for (int i = 0; i < kv_report_n_warnings(rep); i++)
        fprintf(stderr, "kvant report: warning: %s\n", kv_report_warning(rep, i));
    if (kv_report_write(rep, out, &err)) goto fail;
    if (!quiet) {
        if (kv_report_render(rep, KV_REPORT_TABLE, &table, NULL, &err)) goto fail;
        fputs(table, stdout);
        fprintf(stderr, "report: %d results files, %d rows -> %s/report.md, report.csv, report.html\n",
                kv_report_n_files(rep), kv_report_n_rows(rep), out);
    }
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    free(in);
    free(table);
    kv_report_free(rep);
    return rc;
}
