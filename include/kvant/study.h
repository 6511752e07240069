/* study.h — `kvant study`: quantize and evaluate a grid, then report it.
 *
 * Pipeline: the whole of it. For every model x format x method x calibration set of
 * a study config, the checkpoint is quantized (kv_quantize_checkpoint) into the
 * study's folder, evaluated on every task (kv_eval_task), and each (row, task) cell
 * is written as one results file in `kvant eval`'s schema plus a "study" object; the
 * report (report.h) is then rendered from the results folder.
 *
 * Layout of the study's folder (config "out"):
 *   results/<model>/<row>/<task>.json   one cell; <row> = "bf16", "int4-g128-rtn",
 *                                       "int4-g128-gptq-calib_en", ...
 *   checkpoints/<model>-<row>/          the quantized checkpoint (kept for reuse)
 *   checkpoints/<model>-<row>.json      what it was made from (its reuse key)
 *   report/report.{md,csv,html}
 *
 * Resume: a cell whose results file exists, finished ("status": "ok") and holds the
 * same settings (model content hash, format, method, calibration, MX scale rule,
 * task, limit, few-shot, context lengths, data folder) is skipped; any changed setting
 * makes it run again, and a failed cell is retried. A quantized checkpoint is reused
 * when its .json key matches. Everything is written atomically, so an interrupted
 * study resumes where it stopped.
 *
 * Failures that are results, not errors: a quantized checkpoint the model module
 * cannot load or run (KV_EUNSUPPORTED, KV_ENOTFOUND, KV_EFORMAT) or a format the
 * model cannot take (quantization fails with KV_EINVAL / KV_EUNSUPPORTED, e.g. a
 * group size that does not divide a layer) is recorded in the cell's results file
 * ("status": "failed", the message in tasks.<task>.error) and shown as n/a by the
 * report; the study carries on. Anything else (missing data, bad config, I/O) stops
 * it with the error. */
#ifndef KVANT_STUDY_H
#define KVANT_STUDY_H

#include <stdint.h>

#include "kvant/err.h"

/* The default testbed (one entry: replace it when a trained testbed lands in models/)
 * and the default results folder, relative to the working directory. */
#define KV_STUDY_DEFAULT_MODEL "models/testbed-qwen3"
#define KV_STUDY_DEFAULT_OUT "results/default"

typedef struct {
    char *name;          /* shown in logs; "default" */
    char **models;       /* checkpoint directories */
    int n_models;
    char **formats;      /* "base" (unquantized) or kv_qformat names ("int4-g128", "mxfp4") */
    int n_formats;
    char **methods;      /* kv_qmethod names ("rtn") */
    int n_methods;
    char **calibs;       /* "none" or a calibration data folder ("calib_en", "calib_ru") */
    int n_calibs;
    char **tasks;        /* kv_task_names() */
    int n_tasks;
    int64_t *limits;     /* [n_tasks]: first N documents (MMLU: per subject); 0 = all */
    int num_fewshot;     /* >= 0 */
    int64_t gptq_ctx;    /* GPTQ-protocol window of the perplexity tasks */
    int64_t max_length;  /* <= 0: the model's max_position_embeddings */
    int batch;           /* documents per forward batch */
    int mx_scale;        /* kv_mx_scale: 0 spec, 1 mse */
    char *data;          /* NULL: $KVANT_DATA, else ../shared/data */
    char *out;           /* the study's folder */
} kv_study_config;

/* The default study: KV_STUDY_DEFAULT_MODEL, base + int4-g128, int3-g128, int2-g64,
 * mxfp4, mxint4 with rtn, the six study tasks with small limits, into
 * KV_STUDY_DEFAULT_OUT (studies/default.json holds the same grid). */
kv_status kv_study_config_default(kv_study_config *c, kv_err *err);
/* Parse a study config (README "Study" gives the schema). Unknown keys, wrong types,
 * unknown formats, methods or tasks: KV_EINVAL / KV_EFORMAT naming `name` and the key. */
kv_status kv_study_config_parse(const char *json, size_t len, const char *name,
                                kv_study_config *c, kv_err *err);
kv_status kv_study_config_load(const char *path, kv_study_config *c, kv_err *err);
void kv_study_config_free(kv_study_config *c); /* accepts NULL and zeroed structs */

typedef struct {
    int quiet;            /* no progress bars (the log callback still gets its lines) */
    int64_t limit;        /* > 0: overrides every task's limit */
    /* One line per step ("[3/36] tiny-qwen3 int4-g128-rtn piqa: acc 0.42 ..."). The
     * library never prints; NULL drops the lines. */
    void (*log)(void *ud, const char *line);
    void *log_ud;
} kv_study_opts;

typedef struct {
    int cells;            /* (row, task) pairs in the grid */
    int ran, skipped, failed; /* failed: recorded as n/a (also counted in ran) */
    int quantized, reused;    /* checkpoints made / reused */
    double seconds;
    char *table;          /* the report's Markdown table (KV_REPORT_TABLE), malloc'd */
    char **warnings;      /* the report's warnings (versions, duplicates), malloc'd */
    int n_warnings;
} kv_study_summary;

kv_status kv_study_run(const kv_study_config *c, const kv_study_opts *o, kv_study_summary *sum,
                       kv_err *err);
void kv_study_summary_free(kv_study_summary *s); /* accepts NULL and zeroed structs */

#endif
