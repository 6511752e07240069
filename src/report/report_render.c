/* report_render.c — the study's table as Markdown, CSV and a self-contained HTML page.
 *
 * Pipeline stage: report. Reads the table report.c built; writes nothing but the
 * buffers it returns (kv_report_write puts them in files, atomically). Row order: by
 * model (first seen), then bits per weight descending (the base model first, as in
 * the seed paper's tables), then precision, method and calibration names. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvant/fileio.h"
#include "report/report_internal.h"

#ifndef KVANT_VERSION
#define KVANT_VERSION "0.1.0"
#endif

void kv_report_fmt(char *buf, size_t cap, const rcell *c, rkind kind) {
    if (c->state == CELL_EMPTY) {
        snprintf(buf, cap, "—");
        return;
    }
    if (c->state == CELL_FAILED) {
        snprintf(buf, cap, "n/a");
        return;
    }
    double v = c->v;
    if (!isfinite(v)) {
        snprintf(buf, cap, isnan(v) ? "nan" : "inf");
    } else if (kind == RK_ACC) {
        snprintf(buf, cap, "%.1f", 100.0 * v);
    } else if (kind == RK_KL) {
        snprintf(buf, cap, v < 0.1 ? "%.3g" : "%.4f", v);
    } else if (v < 100) {
        snprintf(buf, cap, "%.2f", v);
    } else if (v < 1e5) {
        snprintf(buf, cap, "%.1f", v);
    } else {
        snprintf(buf, cap, "%.3g", v);
    }
}

void kv_report_html_esc(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* Markdown cell text: '|' would end the cell, newlines the row. */
static void md_esc(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', f);
        else
            fputc(*s, f);
    }
}

static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* ---- row order ---- */

static const kv_report *g_sort_r; /* qsort has no context argument in C11 */

static int model_rank(const kv_report *r, const char *model) {
    for (int i = 0; i < r->n_rows; i++)
        if (!strcmp(r->rows[i].model, model)) return i;
    return r->n_rows;
}

static int row_cmp(const void *a, const void *b) {
    const rrow *x = &g_sort_r->rows[*(const int *)a], *y = &g_sort_r->rows[*(const int *)b];
    int mx = model_rank(g_sort_r, x->model), my = model_rank(g_sort_r, y->model);
    if (mx != my) return mx < my ? -1 : 1;
    if (x->is_base != y->is_base) return x->is_base ? -1 : 1;
    double bx = isnan(x->bpw) ? -1 : x->bpw, by = isnan(y->bpw) ? -1 : y->bpw;
    if (bx != by) return bx > by ? -1 : 1;
    int c = strcmp(x->precision, y->precision);
    if (!c) c = strcmp(x->method, y->method);
    if (!c) c = strcmp(x->calib, y->calib);
    return c;
}

static int *row_order(const kv_report *r) {
    int *ix = malloc(sizeof(int) * (size_t)(r->n_rows > 0 ? r->n_rows : 1));
    if (!ix) return NULL;
    for (int i = 0; i < r->n_rows; i++) ix[i] = i;
    g_sort_r = r;
    qsort(ix, (size_t)r->n_rows, sizeof *ix, row_cmp);
    g_sort_r = NULL;
    return ix;
}

/* 1 if any row has a figure (or failure) in column c. */
static int col_used(const kv_report *r, int c) {
    for (int i = 0; i < r->n_rows; i++)
        if (r->rows[i].c[c].state == CELL_VALUE) return 1;
    return 0;
}

static int col_shown(const kv_report *r, int c) {
    const rcol_spec *cs = &kv_report_cols[c];
    if (!cs->in_table) return 0;
    return cs->kind == RK_KL ? col_used(r, c) : 1;
}

static const char *arrow(rkind k) { return k == RK_ACC ? "↑" : "↓"; }

static void fmt_bpw(char *buf, size_t cap, const rrow *w) {
    if (isnan(w->bpw))
        snprintf(buf, cap, "—");
    else
        snprintf(buf, cap, "%.2f%s", w->bpw, w->bpw_assumed ? "*" : "");
}

static int any_assumed(const kv_report *r) {
    for (int i = 0; i < r->n_rows; i++)
        if (r->rows[i].bpw_assumed) return 1;
    return 0;
}

static int64_t max_limit(const kv_report *r) {
    int64_t m = 0;
    for (int i = 0; i < r->n_tasks; i++)
        if (r->tasks[i].limit_max > m) m = r->tasks[i].limit_max;
    return m;
}

static int64_t ppl_ctx(const kv_report *r) {
    if (r->gptq_ctx > 0) return r->gptq_ctx;
    for (int i = 0; i < r->n_tasks; i++)
        if (r->tasks[i].gptq_ctx > 0) return r->tasks[i].gptq_ctx;
    return 2048;
}

/* The legend under the table, one bullet per line (Markdown; HTML wraps it). */
static void legend_lines(const kv_report *r, void (*line)(FILE *, const char *), FILE *f) {
    char b[1024];
    snprintf(b, sizeof b,
             "W2, W2-Ru: perplexity with the GPTQ protocol (records joined with a blank line, "
             "tokenized once, non-overlapping windows of %lld tokens, a shorter text as one window; "
             "lower is better); "
             "lm-eval's word_perplexity is in report.csv.",
             (long long)ppl_ctx(r));
    line(f, b);
    line(f, "MMLU, MMLU-Ru, PIQA, PIQA-Ru: accuracy in %, as lm-evaluation-harness computes "
            "it (0-shot unless the settings say otherwise); PIQA gives acc and acc_norm (each "
            "choice's log-likelihood divided by its length in characters).");
    line(f, "bpw: bits per weight of the quantized linear layers in the seed paper's "
            "accounting (fp16 scale + fp16 zero per group: int4-g128 = 4.25, int2-g64 = 2.5; "
            "MX formats 4.25); base rows: the checkpoint's dtype.");
    if (any_assumed(r))
        line(f, "bpw*: a base checkpoint evaluated by `kvant eval` (its results file names no "
                "dtype), taken as 16-bit.");
    if (col_used(r, RC_KL_W2) || col_used(r, RC_KL_W2RU))
        line(f, "KL W2, KL W2-Ru: mean KL divergence of the quantized model's next-token "
                "distribution from the base model's, in nats per token (lower is better).");
    line(f, "n/a: the evaluation failed (see Failures); —: not evaluated.");
    if (max_limit(r) > 0) {
        /* "wikitext2 2, mmlu 2 per subject, piqa all" */
        size_t k = (size_t)snprintf(b, sizeof b, "Evaluated on the first documents of each task "
                                                 "only (--limit), not the full test sets:");
        for (int i = 0; i < r->n_tasks && k < sizeof b; i++) {
            const rtask *t = &r->tasks[i];
            char lim[64];
            if (t->limit_max <= 0)
                snprintf(lim, sizeof lim, "all");
            else if (t->limit_min == t->limit_max || t->limit_min <= 0)
                snprintf(lim, sizeof lim, "%s%lld", t->limit_min <= 0 ? "all or " : "",
                         (long long)t->limit_max);
            else
                snprintf(lim, sizeof lim, "%lld-%lld", (long long)t->limit_min, (long long)t->limit_max);
            k += (size_t)snprintf(b + k, sizeof b - k, "%s %s %s%s", i ? "," : "", t->name, lim,
                                  !strcmp(t->name, "mmlu") && t->limit_max > 0 ? " per subject" : "");
        }
        if (k < sizeof b - 1) strcat(b, ".");
        line(f, b);
    }
}

static void md_line(FILE *f, const char *s) {
    fputs("- ", f);
    fputs(s, f);
    fputc('\n', f);
}

static void md_table(FILE *f, const kv_report *r, const int *ix) {
    char b[64];
    fputs("| Model | Precision | Method | Calibration | bpw |", f);
    for (int c = 0; c < RC_COUNT; c++)
        if (col_shown(r, c)) fprintf(f, " %s %s |", kv_report_cols[c].head, arrow(kv_report_cols[c].kind));
    fputs("\n|---|---|---|---|---:|", f);
    for (int c = 0; c < RC_COUNT; c++)
        if (col_shown(r, c)) fputs("---:|", f);
    fputc('\n', f);
    for (int k = 0; k < r->n_rows; k++) {
        const rrow *w = &r->rows[ix[k]];
        fputs("| ", f);
        md_esc(f, w->model);
        fputs(" | ", f);
        md_esc(f, w->precision);
        fputs(" | ", f);
        md_esc(f, w->method);
        fputs(" | ", f);
        md_esc(f, w->calib);
        fmt_bpw(b, sizeof b, w);
        fprintf(f, " | %s |", b);
        for (int c = 0; c < RC_COUNT; c++)
            if (col_shown(r, c)) {
                kv_report_fmt(b, sizeof b, &w->c[c], kv_report_cols[c].kind);
                fprintf(f, " %s |", b);
            }
        fputc('\n', f);
    }
}

static void fmt_range(char *b, size_t cap, int64_t lo, int64_t hi) {
    if (hi < 0)
        snprintf(b, cap, "—");
    else if (lo == hi)
        snprintf(b, cap, "%lld", (long long)lo);
    else
        snprintf(b, cap, "%lld–%lld", (long long)lo, (long long)hi);
}

static void fmt_limit(char *b, size_t cap, const rtask *t) {
    if (t->limit_max <= 0)
        snprintf(b, cap, "all");
    else if (t->limit_min <= 0)
        snprintf(b, cap, "all / first %lld", (long long)t->limit_max);
    else if (t->limit_min == t->limit_max)
        snprintf(b, cap, "first %lld", (long long)t->limit_max);
    else
        snprintf(b, cap, "first %lld–%lld", (long long)t->limit_min, (long long)t->limit_max);
}

/* One task's figures for the settings table (Markdown and HTML). */
typedef struct {
    char docs[64], limit[64], fewshot[64];
    char standin[512]; /* the stand-in note, when the folder is a stand-in */
} task_cells;

/* Fills c; returns the stand-in note (in c->standin) or NULL for original data. */
static const char *task_cells_fill(task_cells *c, const kv_report *r, const rtask *t) {
    fmt_range(c->docs, sizeof c->docs, t->n_min == INT64_MAX ? -1 : t->n_min, t->n_max);
    fmt_limit(c->limit, sizeof c->limit, t);
    fmt_range(c->fewshot, sizeof c->fewshot, t->fewshot_min, t->fewshot_max);
    return kv_report_standin(r, t->folder, c->standin, sizeof c->standin);
}

static void render_md(FILE *f, const kv_report *r, const int *ix, int table_only) {
    if (!table_only) {
        fprintf(f, "# kvant study report\n\n%d results file%s, %d row%s (model × precision × "
                   "method × calibration data); rendered by kvant %s.\n\n",
                r->n_files, r->n_files == 1 ? "" : "s", r->n_rows, r->n_rows == 1 ? "" : "s",
                KVANT_VERSION);
        fputs("## Results\n\n", f);
    }
    md_table(f, r, ix);
    fputc('\n', f);
    legend_lines(r, md_line, f);
    char sb[512];
    int n_standin = 0;
    for (int i = 0; i < r->n_tasks; i++)
        if (kv_report_standin(r, r->tasks[i].folder, sb, sizeof sb)) n_standin++;
    if (n_standin) {
        fputs("- Stand-in data sets (results on them are not comparable with the seed paper's): ", f);
        int k = 0;
        for (int i = 0; i < r->n_tasks; i++)
            if (kv_report_standin(r, r->tasks[i].folder, sb, sizeof sb)) {
                fprintf(f, "%s%s (%s/: %s)", k++ ? "; " : "", r->tasks[i].name,
                        r->tasks[i].folder, sb);
            }
        fputs(".\n", f);
    }
    if (table_only) {
        for (int i = 0; i < r->n_fail; i++) fprintf(f, "- n/a: %s\n", r->fail[i]);
        return;
    }

    fputs("\n## Data and settings\n\n| Task | Data folder | Status | Documents | Limit | Few-shot "
          "| Prompt and data |\n|---|---|---|---:|---|---:|---|\n", f);
    for (int i = 0; i < r->n_tasks; i++) {
        const rtask *t = &r->tasks[i];
        task_cells tc;
        const char *si = task_cells_fill(&tc, r, t);
        fputs("| ", f);
        md_esc(f, t->name);
        fputs(" | ", f);
        md_esc(f, t->folder ? t->folder : "—");
        fputs(" | ", f);
        if (si) {
            fputs("**", f);
            md_esc(f, si);
            fputs("**", f);
        } else {
            fputs(t->folder ? "original" : "—", f);
        }
        fprintf(f, " | %s | %s | %s | ", tc.docs, tc.limit, tc.fewshot);
        md_esc(f, t->note ? t->note : "");
        fputs(" |\n", f);
    }
    if (r->n_fail) {
        fputs("\n## Failures (n/a in the table)\n\n", f);
        for (int i = 0; i < r->n_fail; i++) {
            fputs("- ", f);
            md_esc(f, r->fail[i]);
            fputc('\n', f);
        }
    }
    if (r->n_warn) {
        fputs("\n## Warnings\n\n", f);
        for (int i = 0; i < r->n_warn; i++) fprintf(f, "- %s\n", r->warn[i]);
    }
    fputs("\n## Results files\n\n", f);
    for (int i = 0; i < r->n_files; i++)
        fprintf(f, "- `%s` (kvant %s, %s)\n", r->files[i].path, r->files[i].version,
                r->files[i].date[0] ? r->files[i].date : "no date");
}

static void csv_num(FILE *f, double v) {
    if (isnan(v))
        fputs("nan", f);
    else if (isinf(v))
        fputs(v > 0 ? "inf" : "-inf", f);
    else
        fprintf(f, "%.10g", v);
}

static void render_csv(FILE *f, const kv_report *r, const int *ix) {
    fputs("model,precision,method,calibration,bpw,bpw_assumed,bpw_file", f);
    for (int c = 0; c < RC_COUNT; c++) {
        const char *s = kv_report_cols[c].csv;
        fprintf(f, ",%s,%s_stderr,%s_n,%s_limit", s, s, s, s);
    }
    fputs(",kvant_versions\n", f);
    for (int k = 0; k < r->n_rows; k++) {
        const rrow *w = &r->rows[ix[k]];
        csv_field(f, w->model);
        fputc(',', f);
        csv_field(f, w->precision);
        fputc(',', f);
        csv_field(f, w->method);
        fputc(',', f);
        csv_field(f, w->calib);
        fputc(',', f);
        if (!isnan(w->bpw)) csv_num(f, w->bpw);
        fprintf(f, ",%d,", w->bpw_assumed);
        if (!isnan(w->bpw_file)) csv_num(f, w->bpw_file);
        char vers[256] = "";
        for (int c = 0; c < RC_COUNT; c++) {
            const rcell *cl = &w->c[c];
            fputc(',', f);
            if (cl->state == CELL_FAILED) {
                fputs("n/a,,,", f);
            } else if (cl->state == CELL_VALUE) {
                csv_num(f, cl->v);
                fputc(',', f);
                if (!isnan(cl->se)) csv_num(f, cl->se);
                fprintf(f, ",%lld,", (long long)cl->n);
            } else {
                fputs(",,,", f);
                continue;
            }
            fprintf(f, "%lld", (long long)cl->limit);
            /* versions of the files this row's figures came from, ";"-separated */
            const char *v = r->files[cl->file].version;
            size_t vl = strlen(v), have = strlen(vers);
            int dup = 0;
            for (const char *p = vers; (p = strstr(p, v)); p += vl)
                if ((p == vers || p[-1] == ';') && (p[vl] == ';' || !p[vl])) dup = 1;
            if (!dup && have + vl + 2 < sizeof vers) {
                if (have) strcat(vers, ";");
                strcat(vers, v);
            }
        }
        fputc(',', f);
        csv_field(f, vers);
        fputc('\n', f);
    }
}

/* ---- HTML ---- */

static const char *CSS =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;"
    "margin:24px 32px;color:#1d2430;background:#fff;max-width:1240px}"
    "h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 10px;border-bottom:1px "
    "solid #d9dee7;padding-bottom:4px}"
    ".sub{color:#5a6472;margin:0 0 12px}"
    "table{border-collapse:collapse;font-size:13px;margin:6px 0}"
    "th,td{border:1px solid #d9dee7;padding:4px 8px}th{background:#eef2f8;text-align:center}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "tr:nth-child(even) td{background:#f8fafc}td.na{color:#b3261e;font-weight:600}"
    "td.base{font-weight:600}#results td{white-space:nowrap}"
    "th.en{border-top:3px solid #2f6db5}th.ru{border-top:3px solid #c0392b}"
    "ul.legend{font-size:13px;color:#3a4452;padding-left:20px}"
    ".plots{display:grid;grid-template-columns:1fr 1fr;gap:14px}"
    ".plots svg{border:1px solid #d9dee7;border-radius:4px;background:#fff;width:100%;"
    "height:auto}"
    ".warn{background:#fff6e0;border-left:4px solid #e0a800;padding:6px 10px;font-size:13px}"
    ".fail{background:#fdecea;border-left:4px solid #b3261e;padding:6px 10px;font-size:13px}"
    ".standin{color:#8a4b00;font-weight:600}code{font-size:12px}";

static void html_line(FILE *f, const char *s) {
    fputs("<li>", f);
    /* `code` spans of the Markdown legend become <code> */
    int open = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '`') {
            fputs(open ? "</code>" : "<code>", f);
            open = !open;
            continue;
        }
        char one[2] = {*p, 0};
        kv_report_html_esc(f, one);
    }
    if (open) fputs("</code>", f);
    fputs("</li>\n", f);
}

/* Plain-text items as <li> elements. */
static void html_items(FILE *f, char *const *items, int n) {
    for (int i = 0; i < n; i++) {
        fputs("<li>", f);
        kv_report_html_esc(f, items[i]);
        fputs("</li>\n", f);
    }
}

static void html_table(FILE *f, const kv_report *r, const int *ix) {
    char b[64];
    fputs("<table id=\"results\">\n<thead><tr><th>Model</th><th>Precision</th><th>Method</th>"
          "<th>Calibration</th><th>bpw</th>", f);
    for (int c = 0; c < RC_COUNT; c++)
        if (col_shown(r, c))
            fprintf(f, "<th class=\"%s\">%s %s</th>", kv_report_cols[c].lang_ru ? "ru" : "en",
                    kv_report_cols[c].head, arrow(kv_report_cols[c].kind));
    fputs("</tr></thead>\n<tbody>\n", f);
    for (int k = 0; k < r->n_rows; k++) {
        const rrow *w = &r->rows[ix[k]];
        const char *cls = w->is_base ? " class=\"base\"" : "";
        fprintf(f, "<tr><td%s>", cls);
        kv_report_html_esc(f, w->model);
        fprintf(f, "</td><td%s>", cls);
        kv_report_html_esc(f, w->precision);
        fputs("</td><td>", f);
        kv_report_html_esc(f, w->method);
        fputs("</td><td>", f);
        kv_report_html_esc(f, w->calib);
        fmt_bpw(b, sizeof b, w);
        fprintf(f, "</td><td class=\"num\">%s</td>", b);
        for (int c = 0; c < RC_COUNT; c++)
            if (col_shown(r, c)) {
                kv_report_fmt(b, sizeof b, &w->c[c], kv_report_cols[c].kind);
                fprintf(f, "<td class=\"num%s\">%s</td>", w->c[c].state == CELL_FAILED ? " na" : "",
                        b);
            }
        fputs("</tr>\n", f);
    }
    fputs("</tbody>\n</table>\n", f);
}

static void render_html(FILE *f, const kv_report *r, const int *ix) {
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
               "<title>kvant study report</title>\n<style>%s</style>\n</head>\n<body>\n", CSS);
    fprintf(f, "<h1>kvant study report</h1>\n<p class=\"sub\">%d results file%s, %d row%s "
               "(model × precision × method × calibration data); rendered by kvant %s. "
               "<span style=\"color:#2f6db5\">■</span> English, "
               "<span style=\"color:#c0392b\">■</span> Russian.</p>\n",
            r->n_files, r->n_files == 1 ? "" : "s", r->n_rows, r->n_rows == 1 ? "" : "s",
            KVANT_VERSION);
    if (r->n_warn) {
        fputs("<div class=\"warn\"><b>Warnings</b><ul>\n", f);
        html_items(f, r->warn, r->n_warn);
        fputs("</ul></div>\n", f);
    }
    fputs("<h2>Results</h2>\n", f);
    html_table(f, r, ix);
    fputs("<ul class=\"legend\">\n", f);
    legend_lines(r, html_line, f);
    fputs("</ul>\n<h2>Bits per weight against perplexity and accuracy</h2>\n<div class=\"plots\">\n",
          f);
    kv_report_svg_plots(f, r);
    fputs("</div>\n", f);

    fputs("<h2>Data and settings</h2>\n<table id=\"settings\">\n<thead><tr><th>Task</th>"
          "<th>Data folder</th><th>Status</th><th>Documents</th><th>Limit</th><th>Few-shot</th>"
          "<th>Prompt and data</th></tr></thead>\n<tbody>\n", f);
    for (int i = 0; i < r->n_tasks; i++) {
        const rtask *t = &r->tasks[i];
        task_cells tc;
        const char *si = task_cells_fill(&tc, r, t);
        fputs("<tr><td>", f);
        kv_report_html_esc(f, t->name);
        fputs("</td><td>", f);
        kv_report_html_esc(f, t->folder ? t->folder : "—");
        fputs(si ? "</td><td class=\"standin\">" : "</td><td>", f);
        kv_report_html_esc(f, si ? si : t->folder ? "original" : "—");
        fprintf(f, "</td><td class=\"num\">%s</td><td>%s</td><td class=\"num\">%s</td><td>",
                tc.docs, tc.limit, tc.fewshot);
        kv_report_html_esc(f, t->note ? t->note : "");
        fputs("</td></tr>\n", f);
    }
    fputs("</tbody>\n</table>\n<p class=\"sub\">Stand-in data sets stand for the study's "
          "originals where those could not be had (../shared/data/README.md); figures on them "
          "are not comparable with the seed paper's.</p>\n", f);
    if (r->n_fail) {
        fputs("<h2>Failures (n/a in the table)</h2>\n<div class=\"fail\"><ul>\n", f);
        html_items(f, r->fail, r->n_fail);
        fputs("</ul></div>\n", f);
    }
    fprintf(f, "<h2>Results files</h2>\n<details><summary>%d file%s</summary><ul>\n", r->n_files,
            r->n_files == 1 ? "" : "s");
    for (int i = 0; i < r->n_files; i++) {
        fputs("<li><code>", f);
        kv_report_html_esc(f, r->files[i].path);
        fputs("</code> (kvant ", f);
        kv_report_html_esc(f, r->files[i].version);
        fputs(", ", f);
        kv_report_html_esc(f, r->files[i].date[0] ? r->files[i].date : "no date");
        fputs(")</li>\n", f);
    }
    fputs("</ul></details>\n</body>\n</html>\n", f);
}

kv_status kv_report_render(const kv_report *r, kv_report_kind kind, char **out, size_t *len,
                           kv_err *err) {
    if (out) *out = NULL;
    if (len) *len = 0;
    if (!r || !out) return kv_err_set(err, KV_EINVAL, "kv_report_render: NULL argument");
    if (r->n_rows == 0) return kv_err_set(err, KV_EINVAL, "report: no results to render");
    int *ix = row_order(r);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = ix ? open_memstream(&buf, &n) : NULL;
    if (!f) {
        free(ix);
        return kv_err_set(err, KV_ENOMEM, "report: out of memory");
    }
    switch (kind) {
    case KV_REPORT_MARKDOWN: render_md(f, r, ix, 0); break;
    case KV_REPORT_TABLE: render_md(f, r, ix, 1); break;
    case KV_REPORT_CSV: render_csv(f, r, ix); break;
    case KV_REPORT_HTML: render_html(f, r, ix); break;
    }
    free(ix);
    if (fclose(f) != 0) {
        free(buf);
        return kv_err_set(err, KV_ENOMEM, "report: out of memory");
    }
    *out = buf;
    if (len) *len = n;
    return KV_OK;
}

kv_status kv_report_write(const kv_report *r, const char *dir, kv_err *err) {
    if (!r || !dir) return kv_err_set(err, KV_EINVAL, "kv_report_write: NULL argument");
    static const struct {
        kv_report_kind kind;
        const char *name;
    } outs[] = {{KV_REPORT_MARKDOWN, "report.md"}, {KV_REPORT_CSV, "report.csv"},
                {KV_REPORT_HTML, "report.html"}};
    /* render all three before writing any, so a failure leaves the old set */
    char *buf[3] = {0};
    size_t len[3] = {0};
    kv_status st = kv_mkdirs(dir, err);
    for (int i = 0; i < 3 && !st; i++) st = kv_report_render(r, outs[i].kind, &buf[i], &len[i], err);
    char path[4096];
    for (int i = 0; i < 3 && !st; i++)
        if (!(st = kv_path_join(path, sizeof path, dir, outs[i].name, err)))
            st = kv_write_file_atomic(path, buf[i], len[i], err);
    for (int i = 0; i < 3; i++) free(buf[i]);
    return st;
}
