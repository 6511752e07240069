/* report.c — reading results JSON files into the study's table (see report.h).
 *
 * Pipeline stage: report. Each results file (`kvant eval --output`, or one cell of
 * `kvant study`) gives figures for one row: model x precision x method x calibration.
 * Rows are merged across files, so a row may come from one file per task. The
 * renderers (report_render.c, report_svg.c) only read the table built here. */
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kvant/fileio.h"
#include "kvant/quant.h"
#include "report/report_internal.h"

#ifndef KVANT_VERSION
#define KVANT_VERSION "0.1.0"
#endif

/* Columns. W2 / W2-Ru are the GPTQ-protocol perplexity (records joined with "\n\n",
 * non-overlapping windows), the figure quantization papers (GPTQ, EfficientQAT, QTIP)
 * and the seed paper report; lm-eval's word_perplexity goes to the CSV. PIQA has both
 * of the harness's metrics, acc and acc_norm (the seed paper's design lists both). */
const rcol_spec kv_report_cols[RC_COUNT] = {
    [RC_W2] = {"w2_ppl", "W2", "wikitext2", "gptq.ppl", RK_PPL, 1, 0},
    [RC_W2RU] = {"w2ru_ppl", "W2-Ru", "wikitext_ru", "gptq.ppl", RK_PPL, 1, 1},
    [RC_MMLU] = {"mmlu_acc", "MMLU", "mmlu", "acc", RK_ACC, 1, 0},
    [RC_MMLURU] = {"mmluru_acc", "MMLU-Ru", "mmlu_ru", "acc", RK_ACC, 1, 1},
    [RC_PIQA] = {"piqa_acc", "PIQA acc", "piqa", "acc", RK_ACC, 1, 0},
    [RC_PIQA_N] = {"piqa_acc_norm", "PIQA acc_norm", "piqa", "acc_norm", RK_ACC, 1, 0},
    [RC_PIQARU] = {"piqaru_acc", "PIQA-Ru acc", "piqa_ru", "acc", RK_ACC, 1, 1},
    [RC_PIQARU_N] = {"piqaru_acc_norm", "PIQA-Ru acc_norm", "piqa_ru", "acc_norm", RK_ACC, 1, 1},
    [RC_KL_W2] = {"w2_kld", "KL W2", "wikitext2", "kld", RK_KL, 1, 0},
    [RC_KL_W2RU] = {"w2ru_kld", "KL W2-Ru", "wikitext_ru", "kld", RK_KL, 1, 1},
    [RC_W2_WORD] = {"w2_word_ppl", "W2 word ppl", "wikitext2", "word_perplexity", RK_PPL, 0, 0},
    [RC_W2RU_WORD] = {"w2ru_word_ppl", "W2-Ru word ppl", "wikitext_ru", "word_perplexity",
                      RK_PPL, 0, 1},
};

/* ---- small helpers ---- */

static char *dup_s(const char *s) {
    return strdup(s ? s : "");
}

/* Grow *arr (elements of size sz) to hold one more; 0 on success. */
static int grow(void **arr, int *cap, int n, size_t sz) {
    if (n < *cap) return 0;
    int nc = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, (size_t)nc * sz);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

static kv_status oom(kv_err *err, const char *what) {
    return kv_err_set(err, KV_ENOMEM, "report: out of memory (%s)", what);
}

static kv_status push_str(char ***arr, int *n, int *cap, char *s, kv_err *err) {
    if (!s || grow((void **)arr, cap, *n, sizeof **arr)) {
        free(s);
        return oom(err, "messages");
    }
    (*arr)[(*n)++] = s;
    return KV_OK;
}

static char *fmt_s(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_s(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A number, or NAN for null (results files write NaN/Inf as null); 0 if absent. */
static int jnum(const cJSON *o, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return 1;
    }
    if (cJSON_IsNull(v)) {
        *out = NAN;
        return 1;
    }
    return 0;
}

static int64_t jint(const cJSON *o, const char *key, int64_t dflt) {
    double d;
    return jnum(o, key, &d) && isfinite(d) ? (int64_t)d : dflt;
}

/* ---- public: lifetime ---- */

kv_status kv_report_new(kv_report **out, kv_err *err) {
    if (!out) return kv_err_set(err, KV_EINVAL, "kv_report_new: NULL argument");
    *out = calloc(1, sizeof **out);
    return *out ? KV_OK : oom(err, "report");
}

void kv_report_free(kv_report *r) {
    if (!r) return;
    for (int i = 0; i < r->n_files; i++) {
        free(r->files[i].path);
        free(r->files[i].version);
        free(r->files[i].date);
    }
    for (int i = 0; i < r->n_rows; i++) {
        free(r->rows[i].model);
        free(r->rows[i].precision);
        free(r->rows[i].method);
        free(r->rows[i].calib);
    }
    for (int i = 0; i < r->n_tasks; i++) {
        free(r->tasks[i].name);
        free(r->tasks[i].note);
        free(r->tasks[i].folder);
    }
    for (int i = 0; i < r->n_warn; i++) free(r->warn[i]);
    for (int i = 0; i < r->n_fail; i++) free(r->fail[i]);
    free(r->files);
    free(r->rows);
    free(r->tasks);
    free(r->warn);
    free(r->fail);
    free(r->data_dir);
    free(r);
}

int kv_report_n_files(const kv_report *r) { return r ? r->n_files : 0; }
int kv_report_n_rows(const kv_report *r) { return r ? r->n_rows : 0; }
int kv_report_n_warnings(const kv_report *r) { return r ? r->n_warn : 0; }
const char *kv_report_warning(const kv_report *r, int i) {
    return r && i >= 0 && i < r->n_warn ? r->warn[i] : NULL;
}

/* ---- rows and tasks ---- */

static rrow *find_row(kv_report *r, const char *model, const char *prec, const char *method,
                      const char *calib, kv_err *err) {
    for (int i = 0; i < r->n_rows; i++) {
        rrow *w = &r->rows[i];
        if (!strcmp(w->model, model) && !strcmp(w->precision, prec) &&
            !strcmp(w->method, method) && !strcmp(w->calib, calib))
            return w;
    }
    if (grow((void **)&r->rows, &r->cap_rows, r->n_rows, sizeof *r->rows)) {
        oom(err, "rows");
        return NULL;
    }
    rrow *w = &r->rows[r->n_rows];
    memset(w, 0, sizeof *w);
    w->model = dup_s(model);
    w->precision = dup_s(prec);
    w->method = dup_s(method);
    w->calib = dup_s(calib);
    w->bpw = w->bpw_file = NAN;
    r->n_rows++; /* counted before the check so kv_report_free frees partial strings */
    if (!w->model || !w->precision || !w->method || !w->calib) {
        oom(err, "rows");
        return NULL;
    }
    return w;
}

static int task_rank(const char *name) {
    for (int c = 0; c < RC_COUNT; c++)
        if (!strcmp(kv_report_cols[c].task, name)) return c;
    return RC_COUNT;
}

static rtask *find_task(kv_report *r, const char *name, kv_err *err) {
    for (int i = 0; i < r->n_tasks; i++)
        if (!strcmp(r->tasks[i].name, name)) return &r->tasks[i];
    if (grow((void **)&r->tasks, &r->cap_tasks, r->n_tasks, sizeof *r->tasks)) {
        oom(err, "tasks");
        return NULL;
    }
    /* keep the study's column order (wikitext2, wikitext_ru, mmlu, ...), others after */
    int at = r->n_tasks, rank = task_rank(name);
    while (at > 0 && task_rank(r->tasks[at - 1].name) > rank) at--;
    memmove(&r->tasks[at + 1], &r->tasks[at], (size_t)(r->n_tasks - at) * sizeof *r->tasks);
    r->n_tasks++;
    rtask *t = &r->tasks[at];
    memset(t, 0, sizeof *t);
    t->n_min = t->limit_min = INT64_MAX;
    t->n_max = t->limit_max = -1;
    t->fewshot_min = 1 << 30;
    t->fewshot_max = -1;
    t->name = dup_s(name);
    if (!t->name) {
        oom(err, "tasks");
        return NULL;
    }
    return t;
}

/* Parent folder name of a data file path ("../shared/data/piqa/valid.jsonl" -> "piqa"). */
static char *data_folder(const char *path) {
    if (!path) return NULL;
    const char *end = strrchr(path, '/');
    if (!end) return NULL;
    const char *beg = end;
    while (beg > path && beg[-1] != '/') beg--;
    /* mmlu/test/x.csv: the data set is mmlu, not test */
    if ((end - beg == 4 && !strncmp(beg, "test", 4)) || (end - beg == 3 && !strncmp(beg, "dev", 3))) {
        if (beg > path) {
            end = beg - 1;
            beg = end;
            while (beg > path && beg[-1] != '/') beg--;
        }
    }
    return strndup(beg, (size_t)(end - beg));
}

static kv_status note_task(kv_report *r, const char *name, const cJSON *tinfo, int64_t limit,
                           kv_err *err) {
    rtask *t = find_task(r, name, err);
    if (!t) return err ? err->code : KV_ENOMEM;
    if (limit < t->limit_min) t->limit_min = limit;
    if (limit > t->limit_max) t->limit_max = limit;
    if (!cJSON_IsObject(tinfo) || cJSON_GetObjectItemCaseSensitive(tinfo, "error")) return KV_OK;
    int64_t n = jint(tinfo, "n", -1);
    if (n >= 0 && n < t->n_min) t->n_min = n;
    if (n > t->n_max) t->n_max = n;
    int fs = (int)jint(tinfo, "num_fewshot", -1);
    if (fs >= 0 && fs < t->fewshot_min) t->fewshot_min = fs;
    if (fs > t->fewshot_max) t->fewshot_max = fs;
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(tinfo, "gptq");
    if (cJSON_IsObject(g)) t->gptq_ctx = jint(g, "ctx", t->gptq_ctx);
    if (!t->note && jstr(tinfo, "note") && !(t->note = strdup(jstr(tinfo, "note"))))
        return oom(err, "tasks");
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(tinfo, "data_files");
    if (!t->folder && cJSON_IsArray(files) && cJSON_GetArraySize(files) > 0)
        t->folder = data_folder(jstr(cJSON_GetArrayItem(files, 0), "path"));
    return KV_OK;
}

/* The figure of column c from a results file, if it has it: 1 found, 0 not. */
static int read_metric(const cJSON *results, const cJSON *tasks, const rcol_spec *cs, rcell *out) {
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(results, cs->task);
    const cJSON *tinfo = cJSON_GetObjectItemCaseSensitive(tasks, cs->task);
    const cJSON *gptq = cJSON_GetObjectItemCaseSensitive(tinfo, "gptq");
    out->se = NAN;
    out->n = 0;
    if (!strcmp(cs->metric, "gptq.ppl")) {
        if (!cJSON_IsObject(gptq) || !jnum(gptq, "ppl", &out->v)) return 0;
        out->n = jint(gptq, "tokens", 0);
        return 1;
    }
    if (!strcmp(cs->metric, "kld")) {
        /* wherever the KL divergence lands: beside the GPTQ perplexity, in the task,
         * or among the metrics */
        if (cJSON_IsObject(gptq) && jnum(gptq, "kld", &out->v)) {
            jnum(gptq, "kld_stderr", &out->se);
            out->n = jint(gptq, "tokens", 0);
            return 1;
        }
        if (cJSON_IsObject(tinfo) && jnum(tinfo, "kld", &out->v)) {
            jnum(tinfo, "kld_stderr", &out->se);
            return 1;
        }
        if (cJSON_IsObject(res) && jnum(res, "kld", &out->v)) {
            jnum(res, "kld_stderr", &out->se);
            out->n = jint(res, "n", 0);
            return 1;
        }
        return 0;
    }
    if (!cJSON_IsObject(res) || !jnum(res, cs->metric, &out->v)) return 0;
    char key[64];
    snprintf(key, sizeof key, "%s_stderr", cs->metric);
    jnum(res, key, &out->se);
    out->n = jint(res, "n", 0);
    return 1;
}

/* ---- version warnings ---- */

static kv_status note_version(kv_report *r, int fi, kv_err *err) {
    const rfile *f = &r->files[fi];
    for (int i = 0; i < fi; i++)
        if (!strcmp(r->files[i].version, f->version)) return KV_OK; /* seen already */
    if (fi > 0) {
        kv_status st = push_str(&r->warn, &r->n_warn, &r->cap_warn,
                                fmt_s("%s: written by kvant %s, but %s was written by kvant %s: "
                                      "results from different kvant versions may not be "
                                      "comparable",
                                      f->path, f->version, r->files[0].path, r->files[0].version),
                                err);
        if (st) return st;
    }
    if (strcmp(f->version, KVANT_VERSION) != 0)
        return push_str(&r->warn, &r->n_warn, &r->cap_warn,
                        fmt_s("%s: written by kvant %s, this is kvant %s", f->path, f->version,
                              KVANT_VERSION),
                        err);
    return KV_OK;
}

/* ---- one results document ---- */

/* Row identity and bits per weight of a document. */
typedef struct {
    char model[256], precision[64], method[64], calib[64];
    double bpw, bpw_file;
    int bpw_assumed, is_base;
} row_id;

static void identify(const cJSON *root, const cJSON *model, row_id *id) {
    memset(id, 0, sizeof *id);
    id->bpw = id->bpw_file = NAN;
    const cJSON *study = cJSON_GetObjectItemCaseSensitive(root, "study");
    const cJSON *qc = cJSON_GetObjectItemCaseSensitive(model, "quantization_config");
    kv_path_base(jstr(model, "path"), id->model, sizeof id->model);
    snprintf(id->method, sizeof id->method, "—");
    snprintf(id->calib, sizeof id->calib, "—");
    if (cJSON_IsObject(study)) {
        /* written by kvant study: it knows the base model and the precision */
        const char *s;
        if ((s = jstr(study, "model"))) snprintf(id->model, sizeof id->model, "%s", s);
        if ((s = jstr(study, "precision"))) snprintf(id->precision, sizeof id->precision, "%s", s);
        if ((s = jstr(study, "method"))) snprintf(id->method, sizeof id->method, "%s", s);
        if ((s = jstr(study, "calibration"))) snprintf(id->calib, sizeof id->calib, "%s", s);
        jnum(study, "bpw", &id->bpw);
        jnum(study, "bpw_file", &id->bpw_file);
        id->is_base = (s = jstr(study, "format")) && !strcmp(s, "base");
        if (id->precision[0]) return;
    }
    if (!cJSON_IsObject(qc)) {
        /* a base checkpoint evaluated by kvant eval: the file has no dtype */
        snprintf(id->precision, sizeof id->precision, "base");
        id->bpw = 16;
        id->bpw_assumed = 1;
        id->is_base = 1;
        return;
    }
    const char *fmt = jstr(qc, "format"), *qm = jstr(qc, "quant_method");
    const char *meth = jstr(qc, "method"), *cal = jstr(qc, "calibration");
    double bits = 0, group = 0;
    jnum(qc, "bits", &bits);
    jnum(qc, "group_size", &group);
    if (fmt)
        snprintf(id->precision, sizeof id->precision, "%s", fmt);
    else if (bits > 0 && group > 0)
        snprintf(id->precision, sizeof id->precision, "%s-int%d-g%d", qm ? qm : "q", (int)bits,
                 (int)group);
    else
        snprintf(id->precision, sizeof id->precision, "%s", qm ? qm : "quantized");
    snprintf(id->method, sizeof id->method, "%s", meth ? meth : qm ? qm : "—");
    snprintf(id->calib, sizeof id->calib, "%s", cal ? cal : "none");
    /* A quantized checkpoint does not name its source model; by convention its folder
     * is "<model>-<format>[-<method>]" (as kvant study names them): strip that so its
     * row sits with the base model's. */
    char suf[2][160];
    snprintf(suf[0], sizeof suf[0], "-%s-%s", id->precision, id->method);
    snprintf(suf[1], sizeof suf[1], "-%s", id->precision);
    size_t ml = strlen(id->model);
    for (int k = 0; k < 2; k++) {
        size_t sl = strlen(suf[k]);
        if (ml > sl && !strcmp(id->model + ml - sl, suf[k])) {
            id->model[ml - sl] = '\0';
            break;
        }
    }
    kv_qformat qf;
    if (fmt && kv_qformat_parse(fmt, &qf, NULL) == KV_OK)
        id->bpw = kv_qformat_bpw_study(qf);
    else if (bits > 0 && group > 0 && isfinite(bits) && isfinite(group))
        id->bpw = bits + 32.0 / group; /* fp16 scale + fp16 zero per group */
}

static kv_status add_doc(kv_report *r, const cJSON *root, const char *name, kv_err *err) {
    if (!cJSON_IsObject(root))
        return kv_err_set(err, KV_EFORMAT, "%s: not a kvant results file: not a JSON object", name);
    const char *version = jstr(root, "kvant_version");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(root, "results");
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(root, "tasks");
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(root, "config");
    if (!version)
        return kv_err_set(err, KV_EFORMAT,
                          "%s: not a kvant results file: no \"kvant_version\" string", name);
    if (!cJSON_IsObject(model) || !jstr(model, "path"))
        return kv_err_set(err, KV_EFORMAT,
                          "%s: not a kvant results file: no \"model\" object with a \"path\"",
                          name);
    if (!cJSON_IsObject(results))
        return kv_err_set(err, KV_EFORMAT, "%s: not a kvant results file: no \"results\" object",
                          name);
    if (tasks && !cJSON_IsObject(tasks))
        return kv_err_set(err, KV_EFORMAT, "%s: \"tasks\" is not an object", name);
    /* every figure must be a number or null */
    for (const cJSON *t = results->child; t; t = t->next) {
        if (!cJSON_IsObject(t))
            return kv_err_set(err, KV_EFORMAT, "%s: results.%s is not an object", name,
                              t->string ? t->string : "?");
        for (const cJSON *m = t->child; m; m = m->next)
            if (strcmp(m->string, "task") != 0 && !cJSON_IsNumber(m) && !cJSON_IsNull(m))
                return kv_err_set(err, KV_EFORMAT, "%s: results.%s.%s is not a number", name,
                                  t->string, m->string);
    }

    /* the file itself */
    if (grow((void **)&r->files, &r->cap_files, r->n_files, sizeof *r->files))
        return oom(err, "files");
    int fi = r->n_files;
    rfile *f = &r->files[r->n_files++];
    const char *date = jstr(root, "date");
    f->path = dup_s(name);
    f->version = dup_s(version);
    f->date = dup_s(date ? date : "");
    if (!f->path || !f->version || !f->date) return oom(err, "files");
    kv_status st = note_version(r, fi, err);
    if (st) return st;
    if (!r->data_dir && cJSON_IsObject(config) && jstr(config, "data") &&
        !(r->data_dir = strdup(jstr(config, "data"))))
        return oom(err, "data dir");
    int64_t limit = cJSON_IsObject(config) ? jint(config, "limit", 0) : 0;
    int64_t gctx = cJSON_IsObject(config) ? jint(config, "gptq_ctx", 0) : 0;
    if (gctx > r->gptq_ctx) r->gptq_ctx = gctx;

    row_id id;
    identify(root, model, &id);
    rrow *w = find_row(r, id.model, id.precision, id.method, id.calib, err);
    if (!w) return err ? err->code : KV_ENOMEM;
    if (isnan(w->bpw) && !isnan(id.bpw)) {
        w->bpw = id.bpw;
        w->bpw_assumed = id.bpw_assumed;
    }
    if (isnan(w->bpw_file)) w->bpw_file = id.bpw_file;
    w->is_base |= id.is_base;

    /* tasks named in either object */
    const cJSON *lists[2] = {tasks, results};
    for (int li = 0; li < 2; li++)
        for (const cJSON *t = lists[li] ? lists[li]->child : NULL; t; t = t->next) {
            const char *tn = cJSON_IsObject(t) && li == 1 ? jstr(t, "task") : NULL;
            if (li == 1 && (!tn || strcmp(tn, t->string) != 0)) continue; /* MMLU groups */
            if (li == 1 && cJSON_GetObjectItemCaseSensitive(tasks, t->string)) continue;
            if ((st = note_task(r, t->string, cJSON_GetObjectItemCaseSensitive(tasks, t->string),
                                limit, err)))
                return st;
        }

    const char *dt = f->date;
    for (int c = 0; c < RC_COUNT; c++) {
        const rcol_spec *cs = &kv_report_cols[c];
        const cJSON *tinfo = cJSON_GetObjectItemCaseSensitive(tasks, cs->task);
        const char *terr = cJSON_IsObject(tinfo) ? jstr(tinfo, "error") : NULL;
        rcell cell = {0};
        if (terr) {
            if (cs->kind == RK_KL) continue; /* one n/a per task is enough */
            cell.state = CELL_FAILED;
        } else if (read_metric(results, tasks, cs, &cell)) {
            cell.state = CELL_VALUE;
        } else {
            continue;
        }
        cell.limit = limit;
        cell.file = fi;
        snprintf(cell.date, sizeof cell.date, "%s", dt);
        rcell *old = &w->c[c];
        if (old->state != CELL_EMPTY && old->file != fi) {
            int newer = strcmp(cell.date, old->date) >= 0;
            if (cs->in_table && cs->kind != RK_KL &&
                (st = push_str(&r->warn, &r->n_warn, &r->cap_warn,
                               fmt_s("%s %s %s/%s: %s given by %s and %s; using %s (the later)",
                                     w->model, w->precision, w->method, w->calib, cs->head,
                                     r->files[old->file].path, name,
                                     newer ? name : r->files[old->file].path),
                               err)))
                return st;
            if (!newer) continue;
        }
        *old = cell;
        if (terr && (c == RC_W2 || c == RC_W2RU || c == RC_MMLU || c == RC_MMLURU ||
                     c == RC_PIQA || c == RC_PIQARU)) {
            if ((st = push_str(&r->fail, &r->n_fail, &r->cap_fail,
                               fmt_s("%s %s %s/%s, %s: %s", w->model, w->precision, w->method,
                                     w->calib, cs->task, terr),
                               err)))
                return st;
        }
    }
    return KV_OK;
}

kv_status kv_report_add_json(kv_report *r, const char *json, size_t len, const char *name,
                             kv_err *err) {
    if (!r || !json) return kv_err_set(err, KV_EINVAL, "kv_report_add_json: NULL argument");
    if (!name) name = "(results)";
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= json && at <= json + len ? (long)(at - json) : -1;
        return kv_err_set(err, KV_EFORMAT, "%s: malformed JSON near byte %ld", name, off);
    }
    kv_status st = add_doc(r, root, name, err);
    cJSON_Delete(root);
    return st;
}

static kv_status add_file(kv_report *r, const char *path, kv_err *err) {
    char *buf = NULL;
    size_t len = 0;
    kv_status st = kv_read_file(path, &buf, &len, err);
    if (st) return st;
    st = kv_report_add_json(r, buf, len, path, err);
    free(buf);
    return st;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static kv_status add_dir(kv_report *r, const char *dir, int *found, kv_err *err) {
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) return kv_err_set(err, KV_EIO, "%s: cannot list: %s", dir, strerror(errno));
    kv_status st = KV_OK;
    char path[4096];
    for (int i = 0; i < n && !st; i++) {
        const char *nm = ents[i]->d_name;
        if (nm[0] == '.' || strstr(nm, ".tmp.")) continue;
        if ((st = kv_path_join(path, sizeof path, dir, nm, err))) break;
        if (kv_is_dir(path)) {
            char cfg[4096];
            if ((st = kv_path_join(cfg, sizeof cfg, path, "config.json", err))) break;
            if (kv_is_file(cfg)) continue; /* a checkpoint, not results */
            st = add_dir(r, path, found, err);
        } else if (ends_with(nm, ".json") && kv_is_file(path)) {
            st = add_file(r, path, err);
            ++*found;
        }
    }
    for (int i = 0; i < n; i++) free(ents[i]);
    free(ents);
    return st;
}

kv_status kv_report_add_path(kv_report *r, const char *path, kv_err *err) {
    if (!r || !path) return kv_err_set(err, KV_EINVAL, "kv_report_add_path: NULL argument");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return kv_err_set(err, errno == ENOENT ? KV_ENOTFOUND : KV_EIO, "%s: %s", path,
                          strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return add_file(r, path, err);
    int found = 0;
    kv_status st = add_dir(r, path, &found, err);
    if (st) return st;
    if (!found) return kv_err_set(err, KV_EINVAL, "%s: no results files (*.json) in it", path);
    return KV_OK;
}

/* ---- stand-in data sets ---- */

/* ../shared/data/README.md's table, for when the data directory is not at hand. */
static const struct {
    const char *folder, *status;
} STANDIN_BUILTIN[] = {
    {"wikitext_ru", "stand-in: 10,000 Russian Wikipedia sentences (Leipzig)"},
    {"piqa_ru", "stand-in: our own Russian translation of PIQA validation items 0–399"},
    {"mmlu_ru", "stand-in: Okapi translation of MMLU dev + validation"},
    {"calib_en", "stand-in: 1,000 C4 documents"},
    {"calib_ru", "stand-in: Saiga/rulm instruction data"},
};

const char *kv_report_standin(const kv_report *r, const char *folder, char *buf, size_t cap) {
    if (!folder || !cap) return NULL;
    char path[4096], *text = NULL;
    size_t len = 0;
    if (r && r->data_dir && snprintf(path, sizeof path, "%s/README.md", r->data_dir) <
                                (int)sizeof path &&
        kv_read_file(path, &text, &len, NULL) == KV_OK) {
        /* table rows: | folder/ | role | status | format | */
        const char *res = NULL;
        for (char *line = text; line && *line && !res;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = '\0';
            char *cells[6] = {0};
            int nc = 0;
            if (line[0] == '|')
                for (char *p = line + 1; *p && nc < 6;) {
                    char *bar = strchr(p, '|');
                    if (!bar) break;
                    *bar = '\0';
                    while (*p == ' ') p++;
                    for (char *e = bar - 1; e >= p && (*e == ' ' || *e == '/'); e--) *e = '\0';
                    cells[nc++] = p;
                    p = bar + 1;
                }
            if (nc >= 3 && !strcmp(cells[0], folder)) {
                if (!strncmp(cells[2], "stand-in", 8)) {
                    snprintf(buf, cap, "%s", cells[2]);
                    res = buf;
                }
                free(text);
                return res;
            }
            line = nl ? nl + 1 : NULL;
        }
        free(text);
    }
    for (size_t i = 0; i < sizeof STANDIN_BUILTIN / sizeof STANDIN_BUILTIN[0]; i++)
        if (!strcmp(STANDIN_BUILTIN[i].folder, folder)) {
            snprintf(buf, cap, "%s", STANDIN_BUILTIN[i].status);
            return buf;
        }
    return NULL;
}

/* ---- output directory ---- */

kv_status kv_mkdirs(const char *dir, kv_err *err) {
    if (!dir || !*dir) return kv_err_set(err, KV_EINVAL, "kv_mkdirs: empty path");
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return kv_err_set(err, KV_EINVAL, "%s: path too long", dir);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                return kv_err_set(err, KV_EIO, "%s: mkdir: %s", p, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    if (!kv_is_dir(dir)) return kv_err_set(err, KV_EIO, "%s: exists and is not a directory", dir);
    return KV_OK;
}
