/* cli_report.c — `kvant report RESULTS... --out DIR [--quiet]`.
 *
 * Pipeline stage: report (include/kvant/report.h does the work). RESULTS are results
 * files of `kvant eval --output` / `kvant study`, or directories of them. Writes
 * DIR/report.md, report.csv and report.html (atomically), prints the Markdown table on
 * stdout, and prints the report's warnings (results from different kvant versions,
 * the same cell given twice) on stderr; warnings never stop the report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kvant/report.h"

static const char *REPORT_USAGE =
    "kvant report RESULTS... --out DIR [--quiet]\n"
    "  RESULTS: results JSON files (kvant eval --output, kvant study) or directories of them";

int cli_report(int argc, char **argv) {
    const char *out = NULL;
    int quiet = 0, n_in = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--out", &out))) {
            if (r < 0) return cli_usage_error("report", REPORT_USAGE, "--out needs a value");
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage_error("report", REPORT_USAGE, "unknown option '%s'", argv[i]);
        } else {
            n_in++;
        }
    }
    if (!n_in) return cli_usage_error("report", REPORT_USAGE, "missing RESULTS");
    if (!out || !*out) return cli_usage_error("report", REPORT_USAGE, "missing --out DIR");

    kv_err err = {0};
    kv_report *rep = NULL;
    char *table = NULL;
    int rc = 1;
    if (kv_report_new(&rep, &err)) goto fail;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) {
            i++;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) continue;
        if (kv_report_add_path(rep, argv[i], &err)) goto fail;
    }
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
    free(table);
    kv_report_free(rep);
    return rc;
}
