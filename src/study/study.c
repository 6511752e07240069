/* study.c — run a study grid: quantize, evaluate, write one results file per cell,
 * then render the report (see study.h for the folder layout and the resume rules).
 *
 * Pipeline: load -> quantize (kv_quantize_checkpoint) -> load the quantized checkpoint
 * -> evaluate (kv_eval_task) -> results JSON -> report (kv_report_*). The results file
 * has `kvant eval --output`'s schema (README "Evaluation") with one task, plus a
 * "study" object naming the row and the settings that key the resume. Each task is
 * loaded (and its data files hashed) once for the whole study, on first use. */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvant/config.h"
#include "kvant/eval.h"
#include "kvant/fileio.h"
#include "kvant/model.h"
#include "kvant/progress.h"
#include "kvant/quantize.h"
#include "kvant/report.h"
#include "kvant/study.h"
#include "kvant/tokenizer.h"

#ifndef KVANT_VERSION
#define KVANT_VERSION "0.1.0"
#endif

/* ---- small helpers ---- */

static void logf_(const kv_study_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const kv_study_opts *o, const char *fmt, ...) {
    if (!o || !o->log) return;
    char line[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->log(o->log_ud, line);
}

static kv_status json_oom(kv_err *err) {
    return kv_err_set(err, KV_ENOMEM, "study: out of memory (results JSON)");
}

/* Read a JSON file; NULL when absent or unparsable (the caller redoes the work). */
static cJSON *read_json(const char *path) {
    char *buf = NULL;
    size_t len = 0;
    if (!kv_is_file(path) || kv_read_file(path, &buf, &len, NULL)) return NULL;
    cJSON *j = cJSON_ParseWithLength(buf, len);
    free(buf);
    return j;
}

static kv_status write_json(const char *path, const cJSON *j, kv_err *err) {
    char *s = cJSON_Print(j);
    if (!s) return json_oom(err);
    size_t n = strlen(s);
    s[n] = '\n'; /* replace the NUL: files end with a newline */
    kv_status st = kv_write_file_atomic(path, s, n + 1, err);
    free(s);
    return st;
}

/* "quantization_config" of dir/config.json as a cJSON tree, or JSON null. */
static cJSON *quant_config(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path) return cJSON_CreateNull();
    cJSON *root = read_json(path);
    cJSON *q = cJSON_DetachItemFromObjectCaseSensitive(root, "quantization_config");
    cJSON_Delete(root);
    return q ? q : cJSON_CreateNull();
}

/* "bfloat16" -> "bf16", the label of a base row. */
static const char *dtype_label(const char *torch_dtype, double *bpw) {
    if (!strcmp(torch_dtype, "bfloat16")) return *bpw = 16, "bf16";
    if (!strcmp(torch_dtype, "float16")) return *bpw = 16, "f16";
    if (!strcmp(torch_dtype, "float32")) return *bpw = 32, "f32";
    *bpw = 16;
    return "base";
}

/* The data directory the tasks read: the config's, else $KVANT_DATA, else ../shared/data
 * (kv_task_load's rule). */
static const char *data_dir(const kv_study_config *c) {
    const char *e = getenv("KVANT_DATA");
    return c->data && *c->data ? c->data : e && *e ? e : "../shared/data";
}

/* ---- tasks, loaded once ---- */

typedef struct {
    kv_task *task;
    char (*hash)[65]; /* sha256 of each data file */
    int64_t limit;
} study_task;

static kv_status get_task(study_task *st_, const kv_study_config *c, int t, int64_t limit,
                          kv_err *err) {
    study_task *s = &st_[t];
    if (s->task) return KV_OK;
    kv_task_opts to = {.limit = limit, .num_fewshot = c->num_fewshot};
    kv_status st = kv_task_load(c->tasks[t], c->data, &to, &s->task, err);
    if (st) return st;
    int nf = kv_task_n_files(s->task);
    s->hash = calloc((size_t)(nf > 0 ? nf : 1), sizeof *s->hash);
    if (!s->hash) return kv_err_set(err, KV_ENOMEM, "study: out of memory (data hashes)");
    for (int i = 0; i < nf; i++)
        if ((st = kv_eval_file_sha256(kv_task_file(s->task, i), s->hash[i], err))) return st;
    s->limit = limit;
    return KV_OK;
}

/* Rolling log-likelihood (perplexity) tasks: those get the GPTQ perplexity and KL. */
static int is_rolling_task(const char *name) {
    return !strcmp(name, "wikitext2") || !strcmp(name, "wikitext_ru");
}

/* ---- one row of the grid ---- */

typedef struct {
    const char *format; /* "base" or a kv_qformat name */
    const char *method; /* NULL for base */
    const char *calib;  /* NULL for base */
} grid_row;

/* A method that calibrates (none yet: RTN does not) multiplies the rows by the
 * calibration sets; one that does not runs once with calibration "none". */
static int method_calibrates(const char *method) {
    (void)method;
    return 0;
}

/* The settings that key a cell: a cell is done when its file holds equal settings. */
static cJSON *cell_settings(const kv_study_config *c, const char *model_dir, const char *model_hash,
                            const grid_row *g, int t, int64_t limit, int kld) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "model_dir", model_dir);
    cJSON_AddStringToObject(s, "model_hash", model_hash);
    cJSON_AddStringToObject(s, "format", g->format);
    cJSON_AddStringToObject(s, "method", g->method ? g->method : "none");
    cJSON_AddStringToObject(s, "calibration", g->calib ? g->calib : "none");
    if (g->method && !strncmp(g->format, "mx", 2)) /* the MX exponent rule */
        cJSON_AddStringToObject(s, "mx_scale", c->mx_scale ? "mse" : "spec");
    cJSON_AddStringToObject(s, "task", c->tasks[t]);
    cJSON_AddNumberToObject(s, "limit", (double)limit);
    cJSON_AddNumberToObject(s, "num_fewshot", c->num_fewshot);
    cJSON_AddNumberToObject(s, "gptq_ctx", (double)c->gptq_ctx);
    cJSON_AddNumberToObject(s, "max_length", (double)c->max_length);
    cJSON_AddStringToObject(s, "data", data_dir(c));
    if (kld) cJSON_AddBoolToObject(s, "kld", 1); /* cells from before KL existed rerun */
    return s;
}

/* The quantized checkpoint's key. */
static cJSON *ckpt_settings(const kv_study_config *c, const char *model_dir, const char *model_hash,
                            const grid_row *g) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "model_dir", model_dir);
    cJSON_AddStringToObject(s, "model_hash", model_hash);
    cJSON_AddStringToObject(s, "format", g->format);
    cJSON_AddStringToObject(s, "method", g->method);
    cJSON_AddStringToObject(s, "calibration", g->calib);
    if (!strncmp(g->format, "mx", 2)) cJSON_AddStringToObject(s, "mx_scale", c->mx_scale ? "mse" : "spec");
    return s;
}

static cJSON *quantize_json(const kv_quantize_result *r) {
    cJSON *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(q, "quantized_layers", (double)r->n_quantized);
    cJSON_AddNumberToObject(q, "copied_tensors", (double)r->n_copied);
    cJSON_AddNumberToObject(q, "params_quantized", (double)r->params_quantized);
    cJSON_AddNumberToObject(q, "params_total", (double)r->params_total);
    cJSON_AddNumberToObject(q, "bpw_stored", r->bpw_format);
    cJSON_AddNumberToObject(q, "bpw_layers", r->bpw_layers);
    cJSON_AddNumberToObject(q, "bpw_study", r->bpw_study);
    cJSON_AddNumberToObject(q, "bpw_file", r->bpw_file);
    cJSON_AddNumberToObject(q, "bytes_total", (double)r->bytes_total);
    cJSON_AddNumberToObject(q, "shards", r->n_shards);
    cJSON_AddNumberToObject(q, "seconds", r->seconds);
    return q;
}

static int is_result_failure(kv_status st) {
    return st == KV_EUNSUPPORTED || st == KV_ENOTFOUND || st == KV_EFORMAT;
}

/* Everything a row's cells share. */
typedef struct {
    const char *model;       /* model name (basename of its dir) */
    const char *model_dir;
    char model_hash[65];
    const char *precision;   /* "bf16", "int4-g128" */
    char row[160];           /* "bf16", "int4-g128-rtn" */
    double bpw, bpw_file;
    cJSON *quantize;         /* quantize figures (NULL for base) */
    const char *eval_dir;    /* the checkpoint evaluated */
} row_ctx;

/* One cell's results file (`kvant eval` schema + "study"). res NULL: failed with msg. */
static kv_status write_cell(const char *path, const kv_study_config *c, const row_ctx *rc,
                            const grid_row *g, int t, const study_task *tk, int64_t limit,
                            kv_model *m, const kv_task_result *res, const kv_kld_result *kld,
                            const char *msg, kv_status fail_code, int32_t prefix, cJSON *settings,
                            double wall, kv_err *err) {
    cJSON *root = cJSON_CreateObject();
    if (!root) {
        cJSON_Delete(settings);
        return json_oom(err);
    }
    char date[64], hash[80];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(root, "kvant_version", KVANT_VERSION);
    cJSON_AddStringToObject(root, "date", date);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "path", rc->eval_dir);
    char eval_hash[65] = "";
    if (kv_eval_model_hash(rc->eval_dir, eval_hash, NULL) == KV_OK) {
        snprintf(hash, sizeof hash, "sha256:%s", eval_hash);
        cJSON_AddStringToObject(model, "content_hash", hash);
    }
    if (m) {
        cJSON_AddStringToObject(model, "arch", kv_model_config(m)->arch_name);
        cJSON_AddNumberToObject(model, "n_params", (double)kv_model_n_params(m));
    }
    cJSON_AddItemToObject(model, "quantization_config", quant_config(rc->eval_dir));
    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    cJSON_AddNumberToObject(cfg, "limit", (double)limit);
    cJSON_AddNumberToObject(cfg, "num_fewshot", c->num_fewshot);
    cJSON_AddNumberToObject(cfg, "max_length", (double)c->max_length);
    cJSON_AddNumberToObject(cfg, "batch", c->batch);
    cJSON_AddNumberToObject(cfg, "gptq_ctx", (double)c->gptq_ctx);
    cJSON_AddNumberToObject(cfg, "prefix_token", prefix);
    cJSON_AddStringToObject(cfg, "data", data_dir(c));

    cJSON *results = cJSON_AddObjectToObject(root, "results");
    cJSON *tasks = cJSON_AddObjectToObject(root, "tasks");
    cJSON *ti = cJSON_AddObjectToObject(tasks, c->tasks[t]);
    if (res) {
        for (int s = 0; s < res->n_scores; s++) {
            const kv_score *sc = &res->scores[s];
            cJSON *o = cJSON_AddObjectToObject(results, sc->name);
            cJSON_AddStringToObject(o, "task", c->tasks[t]);
            cJSON_AddNumberToObject(o, "level", sc->level);
            cJSON_AddNumberToObject(o, "n", (double)sc->n);
            for (int i = 0; i < sc->n_metrics; i++) {
                char key[48];
                cJSON_AddNumberToObject(o, sc->m[i].name, sc->m[i].value); /* NaN -> null */
                snprintf(key, sizeof key, "%s_stderr", sc->m[i].name);
                cJSON_AddNumberToObject(o, key, sc->m[i].stderr);
            }
        }
        const kv_task *kt = tk->task;
        cJSON_AddStringToObject(ti, "note", kv_task_note(kt));
        cJSON_AddNumberToObject(ti, "num_fewshot", kv_task_num_fewshot(kt));
        cJSON_AddNumberToObject(ti, "n", (double)res->n_docs);
        cJSON_AddNumberToObject(ti, "seconds", res->seconds);
        cJSON_AddNumberToObject(ti, "tokens_run", (double)res->tokens_run);
        cJSON_AddNumberToObject(ti, "docs_per_second",
                                res->seconds > 0 ? (double)res->n_docs / res->seconds : 0.0);
        cJSON *files = cJSON_AddArrayToObject(ti, "data_files");
        for (int i = 0; i < kv_task_n_files(kt); i++) {
            cJSON *fo = cJSON_CreateObject();
            cJSON_AddStringToObject(fo, "path", kv_task_file(kt, i));
            cJSON_AddStringToObject(fo, "sha256", tk->hash[i]);
            cJSON_AddItemToArray(files, fo);
        }
        if (res->has_gptq) {
            cJSON *go = cJSON_AddObjectToObject(ti, "gptq");
            cJSON_AddNumberToObject(go, "ctx", (double)res->gptq.ctx);
            cJSON_AddNumberToObject(go, "windows", (double)res->gptq.windows);
            cJSON_AddNumberToObject(go, "tokens", (double)res->gptq.tokens);
            cJSON_AddNumberToObject(go, "nll", res->gptq.nll);
            cJSON_AddNumberToObject(go, "nll_stderr", res->gptq.nll_stderr);
            cJSON_AddNumberToObject(go, "ppl", res->gptq.ppl);
            if (kld) {
                /* KL(base || this model) over the same windows (kv_perplexity_kld) */
                cJSON_AddNumberToObject(go, "kld", kld->kld_mean);
                cJSON_AddNumberToObject(go, "kld_p99", kld->kld_p99);
                cJSON_AddNumberToObject(go, "kld_max", kld->kld_max);
                cJSON_AddNumberToObject(go, "top1_agree", kld->top1_agree);
                cJSON_AddNumberToObject(go, "kld_positions", (double)kld->positions);
                cJSON_AddNumberToObject(go, "base_ppl", kld->base.ppl);
            }
        }
    } else {
        cJSON_AddStringToObject(ti, "error", msg);
        cJSON_AddStringToObject(ti, "status", kv_status_name(fail_code));
    }
    cJSON_AddNumberToObject(root, "wall_seconds", wall);

    cJSON *sj = cJSON_AddObjectToObject(root, "study");
    cJSON_AddStringToObject(sj, "name", c->name);
    cJSON_AddStringToObject(sj, "status", res ? "ok" : "failed");
    cJSON_AddStringToObject(sj, "model", rc->model);
    cJSON_AddStringToObject(sj, "model_dir", rc->model_dir);
    cJSON_AddStringToObject(sj, "row", rc->row);
    cJSON_AddStringToObject(sj, "precision", rc->precision);
    cJSON_AddStringToObject(sj, "format", g->format);
    cJSON_AddStringToObject(sj, "method", g->method ? g->method : "—");
    cJSON_AddStringToObject(sj, "calibration", g->calib ? g->calib : "—");
    cJSON_AddStringToObject(sj, "task", c->tasks[t]);
    if (!isnan(rc->bpw)) cJSON_AddNumberToObject(sj, "bpw", rc->bpw);
    if (!isnan(rc->bpw_file)) cJSON_AddNumberToObject(sj, "bpw_file", rc->bpw_file);
    if (rc->quantize) cJSON_AddItemToObject(sj, "quantize", cJSON_Duplicate(rc->quantize, 1));
    cJSON_AddItemToObject(sj, "settings", settings);
    kv_status st = write_json(path, root, err);
    cJSON_Delete(root);
    return st;
}

/* Is the cell at path done with these settings? */
static int cell_done(const char *path, const cJSON *settings) {
    cJSON *j = read_json(path);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "study");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(s, "status");
    int done = cJSON_IsString(status) && !strcmp(status->valuestring, "ok") &&
               cJSON_Compare(cJSON_GetObjectItemCaseSensitive(s, "settings"), settings, 1);
    cJSON_Delete(j);
    return done;
}

typedef struct {
    const kv_study_config *c;
    const kv_study_opts *o;
    kv_study_summary *sum;
    study_task *tasks;
    int64_t *limits;
    int cell_no;
    kv_model *base;       /* the base model of the current model, for KL divergence */
    const char *base_dir;
} study_run;

/* Quantize (or reuse) the row's checkpoint. Returns KV_OK with *failed = 0 when usable;
 * with *failed = 1 and msg filled when the format cannot be applied (a result). */
static kv_status prepare_ckpt(study_run *sr, row_ctx *rc, const grid_row *g, const char *ckpt,
                              int *failed, char *msg, size_t cap, kv_status *fail_code, kv_err *err) {
    const kv_study_config *c = sr->c;
    char keypath[4200];
    snprintf(keypath, sizeof keypath, "%s.json", ckpt);
    cJSON *want = ckpt_settings(c, rc->model_dir, rc->model_hash, g);
    cJSON *have = read_json(keypath);
    char cfgpath[4200];
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", ckpt);
    kv_status st = KV_OK;
    *failed = 0;
    if (have && kv_is_file(cfgpath) &&
        cJSON_Compare(cJSON_GetObjectItemCaseSensitive(have, "settings"), want, 1)) {
        rc->quantize = cJSON_DetachItemFromObjectCaseSensitive(have, "quantize");
        sr->sum->reused++;
        logf_(sr->o, "%s %s: reusing %s", rc->model, rc->row, ckpt);
        goto done;
    }
    kv_quantize_opts qo;
    memset(&qo, 0, sizeof qo);
    if ((st = kv_qformat_parse(g->format, &qo.qf, err)) || (st = kv_qmethod_parse(g->method, &qo.method, err)))
        goto done;
    qo.qopts.mx_scale = (kv_mx_scale)c->mx_scale;
    qo.force = 1; /* replaces only a checkpoint (config.json) or an empty dir */
    kv_progress prog;
    memset(&prog, 0, sizeof prog);
    prog.quiet = sr->o->quiet;
    kv_quantize_result qr;
    logf_(sr->o, "%s %s: quantizing into %s", rc->model, rc->row, ckpt);
    kv_err qerr = {0};
    st = kv_quantize_checkpoint(rc->model_dir, ckpt, &qo, &prog, &qr, &qerr);
    if (st == KV_EINVAL || st == KV_EUNSUPPORTED) {
        /* the format does not apply to this model (a group size not dividing a layer) */
        *failed = 1;
        *fail_code = st;
        snprintf(msg, cap, "quantize: %s", qerr.msg);
        st = KV_OK;
        goto done;
    }
    if (st) {
        if (err) *err = qerr;
        goto done;
    }
    sr->sum->quantized++;
    rc->quantize = quantize_json(&qr);
    logf_(sr->o, "%s %s: %.4f bits per weight (study accounting), %.4f whole checkpoint, %.2f s",
          rc->model, rc->row, qr.bpw_study, qr.bpw_file, qr.seconds);
    cJSON *key = cJSON_CreateObject();
    cJSON_AddItemToObject(key, "settings", cJSON_Duplicate(want, 1));
    cJSON_AddItemToObject(key, "quantize", cJSON_Duplicate(rc->quantize, 1));
    st = write_json(keypath, key, err);
    cJSON_Delete(key);
done:
    cJSON_Delete(want);
    cJSON_Delete(have);
    if (!st && rc->quantize) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(rc->quantize, "bpw_study");
        const cJSON *bf = cJSON_GetObjectItemCaseSensitive(rc->quantize, "bpw_file");
        if (cJSON_IsNumber(b)) rc->bpw = b->valuedouble;
        if (cJSON_IsNumber(bf)) rc->bpw_file = bf->valuedouble;
    }
    return st;
}

static kv_status run_row(study_run *sr, const char *model_dir, const char *model, const char *model_hash,
                         const char *base_label, double base_bpw, const grid_row *g, kv_err *err) {
    const kv_study_config *c = sr->c;
    row_ctx rc;
    memset(&rc, 0, sizeof rc);
    rc.model = model;
    rc.model_dir = model_dir;
    snprintf(rc.model_hash, sizeof rc.model_hash, "%s", model_hash);
    rc.bpw = rc.bpw_file = NAN;
    int is_base = !strcmp(g->format, "base");
    if (is_base) {
        rc.precision = base_label;
        snprintf(rc.row, sizeof rc.row, "%s", base_label);
        rc.bpw = base_bpw;
        rc.bpw_file = base_bpw;
    } else {
        rc.precision = g->format;
        kv_qformat qf; /* the format's own figure until the quantizer reports one */
        if (kv_qformat_parse(g->format, &qf, NULL) == KV_OK) rc.bpw = kv_qformat_bpw_study(qf);
        if (method_calibrates(g->method))
            snprintf(rc.row, sizeof rc.row, "%s-%s-%s", g->format, g->method, g->calib);
        else
            snprintf(rc.row, sizeof rc.row, "%s-%s", g->format, g->method);
        if (c->mx_scale && !strncmp(g->format, "mx", 2)) strncat(rc.row, "-mse", sizeof rc.row - strlen(rc.row) - 1);
    }
    char dir[4096], ckpt[4096], path[4300];
    snprintf(dir, sizeof dir, "%s/results/%s/%s", c->out, model, rc.row);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints/%s-%s", c->out, model, rc.row);
    rc.eval_dir = is_base ? model_dir : ckpt;

    /* which cells need work */
    int pending[64] = {0}, n_pending = 0;
    cJSON *settings[64] = {0};
    for (int t = 0; t < c->n_tasks; t++) {
        settings[t] = cell_settings(c, model_dir, model_hash, g, t, sr->limits[t],
                                    !is_base && is_rolling_task(c->tasks[t]));
        snprintf(path, sizeof path, "%s/%s.json", dir, c->tasks[t]);
        sr->cell_no++;
        if (cell_done(path, settings[t])) {
            sr->sum->skipped++;
            logf_(sr->o, "[%d/%d] %s %s %s: done already, skipped", sr->cell_no, sr->sum->cells,
                  model, rc.row, c->tasks[t]);
        } else {
            pending[t] = sr->cell_no;
            n_pending++;
        }
    }
    kv_status st = KV_OK;
    kv_model *m = NULL;
    kv_tokenizer *tok = NULL;
    char msg[KV_ERR_MSG_MAX + 64] = "";
    kv_status fail_code = KV_OK;
    int failed = 0;
    int32_t prefix = -1;
    if (!n_pending) goto done;
    if ((st = kv_mkdirs(dir, err))) goto done;
    if (!is_base) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%s/checkpoints", c->out);
        if ((st = kv_mkdirs(parent, err))) goto done;
        if ((st = prepare_ckpt(sr, &rc, g, ckpt, &failed, msg, sizeof msg, &fail_code, err))) goto done;
    }
    if (!failed) {
        kv_err lerr = {0};
        st = kv_model_load(rc.eval_dir, &m, &lerr);
        if (!st) st = kv_tok_load(rc.eval_dir, &tok, &lerr);
        if (st && !is_base && is_result_failure(st)) {
            failed = 1;
            fail_code = st;
            snprintf(msg, sizeof msg, "load: %s", lerr.msg);
            st = KV_OK;
        } else if (st) {
            if (err) *err = lerr;
            goto done;
        }
    }
    for (int t = 0; t < c->n_tasks; t++) {
        if (!pending[t]) continue;
        snprintf(path, sizeof path, "%s/%s.json", dir, c->tasks[t]);
        double t0 = kv_now();
        if (failed) {
            sr->sum->ran++;
            sr->sum->failed++;
            logf_(sr->o, "[%d/%d] %s %s %s: n/a (%s)", pending[t], sr->sum->cells, model, rc.row,
                  c->tasks[t], msg);
            st = write_cell(path, c, &rc, g, t, NULL, sr->limits[t], m, NULL, NULL, msg, fail_code,
                            prefix, settings[t], 0, err);
            settings[t] = NULL;
            if (st) goto done;
            continue;
        }
        if ((st = get_task(sr->tasks, c, t, sr->limits[t], err))) goto done;
        const kv_task *kt = sr->tasks[t].task;
        if (kv_task_kind_of(kt) == KV_TASK_ROLLING && prefix < 0 &&
            (st = kv_eval_prefix_token(rc.eval_dir, tok, &prefix, err)))
            goto done;
        kv_eval_opts eo = {.max_length = c->max_length, .batch = c->batch, .prefix_token = prefix,
                           .gptq_ctx = c->gptq_ctx};
        kv_progress prog;
        char label[256];
        snprintf(label, sizeof label, "%s %s %s", model, rc.row, c->tasks[t]);
        kv_progress_start(&prog, label, kv_task_kind_of(kt) == KV_TASK_MC ? "req" : "win", 0,
                          sr->o->quiet);
        int want_kld = !is_base && kv_task_kind_of(kt) == KV_TASK_ROLLING;
        if (want_kld) {
            /* the GPTQ perplexity is computed below, beside the base model's, for KL */
            eo.skip_gptq = 1;
            if (sr->base_dir != model_dir) {
                kv_model_free(sr->base);
                sr->base = NULL;
                sr->base_dir = NULL;
                if ((st = kv_model_load(model_dir, &sr->base, err))) goto done;
                sr->base_dir = model_dir;
            }
        }
        kv_task_result res;
        memset(&res, 0, sizeof res);
        kv_kld_result kld;
        memset(&kld, 0, sizeof kld);
        int has_kld = 0;
        kv_err eerr = {0};
        st = kv_eval_task(m, tok, kt, &eo, &prog, &res, &eerr);
        if (!st && want_kld) {
            size_t len = 0;
            const char *text = kv_task_gptq_text(kt, &len);
            kv_ids ids = {0};
            kv_ppl_opts po = {.ctx = c->gptq_ctx};
            st = kv_tok_encode(tok, text, len, KV_TOK_ADD_SPECIAL, &ids, &eerr);
            if (!st)
                st = kv_perplexity_kld(m, sr->base, ids.v, (int64_t)ids.n, &po, NULL, &res.gptq, &kld,
                                       &eerr);
            if (st) kv_err_prefix(&eerr, "%s: gptq perplexity and KL divergence", c->tasks[t]);
            res.has_gptq = has_kld = !st;
            kv_ids_free(&ids);
        }
        if (st && !is_base && is_result_failure(st)) {
            /* the quantized model cannot run this (an unsupported kernel): a result */
            char emsg[KV_ERR_MSG_MAX + 16];
            snprintf(emsg, sizeof emsg, "eval: %s", eerr.msg);
            sr->sum->ran++;
            sr->sum->failed++;
            logf_(sr->o, "[%d/%d] %s %s %s: n/a (%s)", pending[t], sr->sum->cells, model, rc.row,
                  c->tasks[t], emsg);
            kv_task_result_free(&res);
            st = write_cell(path, c, &rc, g, t, NULL, sr->limits[t], m, NULL, NULL, emsg, st,
                            prefix, settings[t], kv_now() - t0, err);
            settings[t] = NULL;
            if (st) goto done;
            continue;
        }
        if (st) {
            if (err) *err = eerr;
            kv_task_result_free(&res);
            goto done;
        }
        sr->sum->ran++;
        char figs[512] = "";
        const kv_score *sc = &res.scores[0];
        for (int i = 0; i < sc->n_metrics; i++) {
            size_t l = strlen(figs);
            snprintf(figs + l, sizeof figs - l, " %s %.4g", sc->m[i].name, sc->m[i].value);
        }
        if (res.has_gptq) {
            size_t l = strlen(figs);
            snprintf(figs + l, sizeof figs - l, " gptq_ppl %.4g", res.gptq.ppl);
        }
        if (has_kld) {
            size_t l = strlen(figs);
            snprintf(figs + l, sizeof figs - l, " kld %.4g top1_agree %.3f", kld.kld_mean,
                     kld.top1_agree);
        }
        logf_(sr->o, "[%d/%d] %s %s %s:%s (%lld docs, %.1f s)", pending[t], sr->sum->cells, model,
              rc.row, c->tasks[t], figs, (long long)res.n_docs, res.seconds);
        st = write_cell(path, c, &rc, g, t, &sr->tasks[t], sr->limits[t], m, &res,
                        has_kld ? &kld : NULL, NULL, KV_OK, prefix, settings[t], kv_now() - t0, err);
        settings[t] = NULL;
        kv_task_result_free(&res);
        if (st) goto done;
    }
done:
    for (int t = 0; t < c->n_tasks; t++) cJSON_Delete(settings[t]);
    cJSON_Delete(rc.quantize);
    kv_tok_free(tok);
    kv_model_free(m);
    return st;
}

void kv_study_summary_free(kv_study_summary *s) {
    if (!s) return;
    free(s->table);
    for (int i = 0; i < s->n_warnings; i++) free(s->warnings[i]);
    free(s->warnings);
    memset(s, 0, sizeof *s);
}

kv_status kv_study_run(const kv_study_config *c, const kv_study_opts *o, kv_study_summary *sum,
                       kv_err *err) {
    kv_study_opts no_opts;
    memset(&no_opts, 0, sizeof no_opts);
    if (!o) o = &no_opts;
    kv_study_summary local;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    if (!c || !c->out || !c->n_models || !c->n_formats || !c->n_tasks)
        return kv_err_set(err, KV_EINVAL, "kv_study_run: empty or NULL study config");
    if (c->n_tasks > 64) return kv_err_set(err, KV_EINVAL, "study: at most 64 tasks");
    double t0 = kv_now();
    kv_status st = KV_OK;
    study_run sr = {.c = c, .o = o, .sum = sum};
    kv_report *rep = NULL;
    sr.tasks = calloc((size_t)c->n_tasks, sizeof *sr.tasks);
    sr.limits = calloc((size_t)c->n_tasks, sizeof *sr.limits);
    grid_row *rows = calloc((size_t)(c->n_formats * (c->n_methods ? c->n_methods : 1) *
                                     (c->n_calibs ? c->n_calibs : 1)) + 1, sizeof *rows);
    if (!sr.tasks || !sr.limits || !rows) {
        st = kv_err_set(err, KV_ENOMEM, "study: out of memory");
        goto done;
    }
    for (int t = 0; t < c->n_tasks; t++)
        sr.limits[t] = o->limit > 0 ? o->limit : c->limits ? c->limits[t] : 0;

    /* the grid's rows (the same for every model) */
    int n_rows = 0, collapsed = 0;
    for (int f = 0; f < c->n_formats; f++) {
        if (!strcmp(c->formats[f], "base")) {
            rows[n_rows++] = (grid_row){c->formats[f], NULL, NULL};
            continue;
        }
        for (int mi = 0; mi < c->n_methods; mi++) {
            int calibrates = method_calibrates(c->methods[mi]);
            for (int ci = 0; ci < c->n_calibs; ci++) {
                if (!calibrates && ci > 0) {
                    collapsed = 1;
                    continue;
                }
                rows[n_rows++] = (grid_row){c->formats[f], c->methods[mi],
                                            calibrates ? c->calibs[ci] : "none"};
            }
        }
    }
    if (collapsed)
        logf_(o, "study: method(s) without calibration run once, not once per calibration set");

    /* model names must not collide: they name the results folders */
    char (*names)[256] = calloc((size_t)c->n_models, sizeof *names);
    if (!names) {
        st = kv_err_set(err, KV_ENOMEM, "study: out of memory");
        goto done;
    }
    for (int mi = 0; mi < c->n_models; mi++) {
        kv_path_base(c->models[mi], names[mi], sizeof names[mi]);
        for (int k = 0; k < mi && !st; k++)
            if (!strcmp(names[k], names[mi]))
                st = kv_err_set(err, KV_EINVAL, "study: models %s and %s have the same name \"%s\"",
                                c->models[k], c->models[mi], names[mi]);
    }
    /* every model must load its config before any work starts */
    kv_config *cfgs = st ? NULL : calloc((size_t)c->n_models, sizeof *cfgs);
    char (*hashes)[65] = st ? NULL : calloc((size_t)c->n_models, sizeof *hashes);
    if (!st && (!cfgs || !hashes)) st = kv_err_set(err, KV_ENOMEM, "study: out of memory");
    for (int mi = 0; mi < c->n_models && !st; mi++) {
        char path[4096];
        if (!(st = kv_path_join(path, sizeof path, c->models[mi], "config.json", err)) &&
            !(st = kv_config_load(path, &cfgs[mi], err)))
            st = kv_eval_model_hash(c->models[mi], hashes[mi], err);
    }
    sum->cells = c->n_models * n_rows * c->n_tasks;
    if (!st)
        logf_(o, "study %s: %d model%s x %d row%s x %d task%s = %d cells into %s", c->name,
              c->n_models, c->n_models == 1 ? "" : "s", n_rows, n_rows == 1 ? "" : "s", c->n_tasks,
              c->n_tasks == 1 ? "" : "s", sum->cells, c->out);
    for (int mi = 0; mi < c->n_models && !st; mi++) {
        double bpw;
        const char *label = dtype_label(cfgs[mi].torch_dtype, &bpw);
        for (int r = 0; r < n_rows && !st; r++)
            st = run_row(&sr, c->models[mi], names[mi], hashes[mi], label, bpw, &rows[r], err);
    }
    free(names);
    free(cfgs);
    free(hashes);
    if (st) goto done;

    /* the report, from every results file in the study's folder */
    char rdir[4096], odir[4096];
    snprintf(rdir, sizeof rdir, "%s/results", c->out);
    snprintf(odir, sizeof odir, "%s/report", c->out);
    if ((st = kv_report_new(&rep, err)) || (st = kv_report_add_path(rep, rdir, err)) ||
        (st = kv_report_write(rep, odir, err)) ||
        (st = kv_report_render(rep, KV_REPORT_TABLE, &sum->table, NULL, err)))
        goto done;
    int nw = kv_report_n_warnings(rep);
    if (nw > 0) {
        if (!(sum->warnings = calloc((size_t)nw, sizeof *sum->warnings))) {
            st = kv_err_set(err, KV_ENOMEM, "study: out of memory");
            goto done;
        }
        for (int i = 0; i < nw; i++) {
            if (!(sum->warnings[i] = strdup(kv_report_warning(rep, i)))) {
                st = kv_err_set(err, KV_ENOMEM, "study: out of memory");
                goto done;
            }
            sum->n_warnings = i + 1;
        }
    }
    logf_(o, "study %s: report written to %s/report.md, report.csv, report.html", c->name, odir);
done:
    sum->seconds = kv_now() - t0;
    if (sr.tasks)
        for (int t = 0; t < c->n_tasks; t++) {
            kv_task_free(sr.tasks[t].task);
            free(sr.tasks[t].hash);
        }
    free(sr.tasks);
    free(sr.limits);
    kv_model_free(sr.base);
    free(rows);
    kv_report_free(rep);
    if (sum == &local) kv_study_summary_free(&local);
    return st;
}
