/* report_internal.h — the report's in-memory table, shared by the reader (report.c),
 * the text renderers (report_render.c) and the SVG plots (report_svg.c). */
#ifndef KVANT_REPORT_INTERNAL_H
#define KVANT_REPORT_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "kvant/report.h"

/* The table's figure columns, in table order. */
typedef enum {
    RC_W2 = 0,    /* wikitext2 GPTQ-protocol perplexity */
    RC_W2RU,      /* wikitext_ru GPTQ-protocol perplexity */
    RC_MMLU,      /* mmlu acc */
    RC_MMLURU,    /* mmlu_ru acc */
    RC_PIQA,      /* piqa acc */
    RC_PIQA_N,    /* piqa acc_norm */
    RC_PIQARU,    /* piqa_ru acc */
    RC_PIQARU_N,  /* piqa_ru acc_norm */
    RC_KL_W2,     /* KL divergence from the base model on wikitext2 (when present) */
    RC_KL_W2RU,   /* same on wikitext_ru */
    RC_W2_WORD,   /* lm-eval word_perplexity (CSV only) */
    RC_W2RU_WORD, /* same for wikitext_ru (CSV only) */
    RC_COUNT
} rcol;

typedef enum { RK_PPL = 0, RK_ACC, RK_KL } rkind;

typedef struct {
    const char *csv;    /* CSV column stem ("w2_ppl") */
    const char *head;   /* table heading ("W2") */
    const char *task;   /* task in the results file */
    const char *metric; /* "gptq.ppl", "acc", "acc_norm", "kld", "word_perplexity" */
    rkind kind;
    int in_table;       /* 1: Markdown/HTML table column; 0: CSV only */
    int lang_ru;        /* 1: Russian task (plots: right-hand side) */
} rcol_spec;

extern const rcol_spec kv_report_cols[RC_COUNT];

typedef enum { CELL_EMPTY = 0, CELL_VALUE, CELL_FAILED } cell_state;

typedef struct {
    cell_state state;
    double v, se;   /* se: NAN when unknown */
    int64_t n;      /* documents (perplexity: tokens scored) */
    int64_t limit;  /* --limit it ran with (0: all) */
    char date[32];  /* of its results file: a later file wins a duplicate */
    int file;       /* index into files */
} rcell;

typedef struct {
    char *model, *precision, *method, *calib;
    double bpw;       /* bits per weight, the seed paper's accounting; NAN unknown */
    int bpw_assumed;  /* 1: base model taken as 16-bit without a dtype in the file */
    double bpw_file;  /* whole-checkpoint bits per weight (study results); NAN unknown */
    int is_base;      /* unquantized */
    rcell c[RC_COUNT];
} rrow;

typedef struct {
    char *path;
    char *version;
    char *date;
} rfile;

/* What one task ran on, for the settings table. */
typedef struct {
    char *name;
    char *note;
    char *folder;            /* data folder (parent of its first data file) */
    int64_t n_min, n_max;    /* documents */
    int64_t limit_min, limit_max;
    int fewshot_min, fewshot_max;
    int64_t gptq_ctx;        /* rolling tasks; 0 unknown */
} rtask;

struct kv_report {
    rfile *files;
    int n_files, cap_files;
    rrow *rows;
    int n_rows, cap_rows;
    rtask *tasks;
    int n_tasks, cap_tasks;
    char **warn;
    int n_warn, cap_warn;
    char **fail;             /* "model precision task: message" for n/a cells */
    int n_fail, cap_fail;
    char *data_dir;          /* "config"."data" of the first file that has one */
    int64_t gptq_ctx;        /* largest "config"."gptq_ctx" seen (0: none) */
};

/* Stand-in status of a data folder ("stand-in: ..."), or NULL when original/unknown.
 * Read from <data_dir>/README.md when it is there, else from a built-in copy. */
const char *kv_report_standin(const kv_report *r, const char *folder, char *buf, size_t cap);

/* Write s escaped for HTML text and attribute values. */
void kv_report_html_esc(FILE *f, const char *s);
/* Number formatting shared by the renderers: "%.2f" below 1e4, else 4 significant
 * digits in scientific notation; accuracies as percentages with one decimal. */
void kv_report_fmt(char *buf, size_t cap, const rcell *c, rkind kind);

/* The four plots as inline <svg> elements. */
void kv_report_svg_plots(FILE *f, const kv_report *r);

#endif
