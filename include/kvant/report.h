/* report.h — the study's tables and plots from results JSON files.
 *
 * Pipeline stage: report (the last one). Input: results files as `kvant eval --output`
 * and `kvant study` write them (README "Evaluation" and "Study" give the schema).
 * Output: the seed paper's table layout (Poimanov & Shutov 2025, Tables 1-3): one row
 * per model x precision x method x calibration data; columns W2 and W2-Ru perplexity
 * (GPTQ protocol), MMLU, MMLU-Ru, PIQA and PIQA-Ru accuracy (acc and acc_norm), bits
 * per weight and, where a results file has it, KL divergence from the base model.
 * Rendered as Markdown, CSV and one self-contained HTML page (inline CSS and SVG plots:
 * bits per weight against perplexity and against accuracy, English beside Russian).
 *
 * The library never prints: conditions worth a warning (results from different kvant
 * versions, the same cell given twice) are collected and read back with
 * kv_report_warning(); the CLI prints them on stderr and the rendered report lists
 * them too. A malformed results file is an error naming the file. */
#ifndef KVANT_REPORT_H
#define KVANT_REPORT_H

#include <stddef.h>

#include "kvant/err.h"

typedef struct kv_report kv_report;

typedef enum {
    KV_REPORT_MARKDOWN = 0, /* report.md */
    KV_REPORT_CSV,          /* report.csv: one row per table row, every figure */
    KV_REPORT_HTML,         /* report.html: tables + inline SVG plots, no external resources */
    KV_REPORT_TABLE,        /* the Markdown table and its legend only (for a terminal) */
} kv_report_kind;

kv_status kv_report_new(kv_report **out, kv_err *err);
void kv_report_free(kv_report *r); /* accepts NULL */

/* Add one results file, or every *.json below a directory (recursively, in name order;
 * directories holding a config.json are checkpoints and are skipped, as are hidden
 * names and atomic-write temporaries). KV_EFORMAT naming the file when it is not
 * JSON or lacks the results keys; KV_ENOTFOUND when path does not exist; KV_EINVAL for
 * a directory without any results file. */
kv_status kv_report_add_path(kv_report *r, const char *path, kv_err *err);
/* Add one results document held in memory; `name` stands for its file in messages. */
kv_status kv_report_add_json(kv_report *r, const char *json, size_t len, const char *name,
                             kv_err *err);

int kv_report_n_files(const kv_report *r);
int kv_report_n_rows(const kv_report *r);
/* Warnings so far (valid until the next add or free). */
int kv_report_n_warnings(const kv_report *r);
const char *kv_report_warning(const kv_report *r, int i);

/* Render into a malloc'd, NUL-terminated buffer (*len without the NUL). */
kv_status kv_report_render(const kv_report *r, kv_report_kind kind, char **out, size_t *len,
                           kv_err *err);
/* Create dir (and its parents) and write report.md, report.csv and report.html in it,
 * each atomically. */
kv_status kv_report_write(const kv_report *r, const char *dir, kv_err *err);

/* mkdir -p: create dir and any missing parents (mode 0777 before umask). */
kv_status kv_mkdirs(const char *dir, kv_err *err);

#endif
