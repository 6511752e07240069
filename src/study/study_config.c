/* study_config.c — the study config: defaults and the JSON reader (see study.h).
 *
 * Pipeline stage: none of its own; it says which models, formats, methods,
 * calibration sets and tasks `kvant study` runs. Every key is checked (type, known
 * format / method / task names) before anything runs, so a typo costs no compute. */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvant/eval.h"
#include "kvant/fileio.h"
#include "kvant/quant.h"
#include "kvant/quantize.h"
#include "kvant/study.h"

/* The default grid. The limits keep the whole run to a few minutes on 2 cores with
 * the default testbed: MMLU's limit applies per subject (57 subjects), WikiText-2's
 * documents are whole pages (thousands of tokens each), WikiText-RU's single
 * sentences (tens of tokens each). */
static const char *const DEFAULT_FORMATS[] = {"base", "int4-g128", "int3-g128", "int2-g64",
                                              "mxfp4", "mxint4"};
static const char *const DEFAULT_TASKS[] = {"wikitext2", "wikitext_ru", "mmlu",
                                            "mmlu_ru", "piqa", "piqa_ru"};
static const int64_t DEFAULT_LIMITS[] = {2, 200, 2, 100, 200, 100};
#define N_DEFAULT_FORMATS 6
#define N_DEFAULT_TASKS 6

void kv_study_config_free(kv_study_config *c) {
    if (!c) return;
    char **lists[] = {c->models, c->formats, c->methods, c->calibs, c->tasks};
    int ns[] = {c->n_models, c->n_formats, c->n_methods, c->n_calibs, c->n_tasks};
    for (int l = 0; l < 5; l++) {
        for (int i = 0; i < ns[l]; i++) free(lists[l][i]);
        free(lists[l]);
    }
    free(c->limits);
    free(c->name);
    free(c->data);
    free(c->out);
    memset(c, 0, sizeof *c);
}

static kv_status set_list(char ***dst, int *n, const char *const *src, int count, kv_err *err) {
    *dst = calloc((size_t)(count > 0 ? count : 1), sizeof **dst);
    if (!*dst) return kv_err_set(err, KV_ENOMEM, "study: out of memory (config)");
    for (int i = 0; i < count; i++) {
        if (!((*dst)[i] = strdup(src[i]))) return kv_err_set(err, KV_ENOMEM, "study: out of memory (config)");
        *n = i + 1;
    }
    return KV_OK;
}

static kv_status set_str(char **dst, const char *s, kv_err *err) {
    free(*dst);
    *dst = s ? strdup(s) : NULL;
    return s && !*dst ? kv_err_set(err, KV_ENOMEM, "study: out of memory (config)") : KV_OK;
}

kv_status kv_study_config_default(kv_study_config *c, kv_err *err) {
    if (!c) return kv_err_set(err, KV_EINVAL, "kv_study_config_default: NULL argument");
    memset(c, 0, sizeof *c);
    static const char *const model[] = {KV_STUDY_DEFAULT_MODEL};
    static const char *const rtn[] = {"rtn"}, *const none[] = {"none"};
    kv_status st;
    if ((st = set_str(&c->name, "default", err)) || (st = set_str(&c->out, KV_STUDY_DEFAULT_OUT, err)) ||
        (st = set_list(&c->models, &c->n_models, model, 1, err)) ||
        (st = set_list(&c->formats, &c->n_formats, DEFAULT_FORMATS, N_DEFAULT_FORMATS, err)) ||
        (st = set_list(&c->methods, &c->n_methods, rtn, 1, err)) ||
        (st = set_list(&c->calibs, &c->n_calibs, none, 1, err)) ||
        (st = set_list(&c->tasks, &c->n_tasks, DEFAULT_TASKS, N_DEFAULT_TASKS, err)))
        goto fail;
    if (!(c->limits = calloc(N_DEFAULT_TASKS, sizeof *c->limits))) {
        st = kv_err_set(err, KV_ENOMEM, "study: out of memory (config)");
        goto fail;
    }
    memcpy(c->limits, DEFAULT_LIMITS, sizeof DEFAULT_LIMITS);
    c->num_fewshot = 0;
    c->gptq_ctx = 256; /* the testbed's trained context (models/testbed-qwen3/MODEL_CARD.md) */
    c->max_length = 0;
    c->batch = 16;
    c->mx_scale = KV_MX_SCALE_SPEC;
    return KV_OK;
fail:
    kv_study_config_free(c);
    return st;
}

/* ---- JSON reader ---- */

static int known_task(const char *t) {
    for (const char *const *n = kv_task_names(); *n; n++)
        if (!strcmp(*n, t)) return 1;
    return !strncmp(t, "mmlu_", 5) && strcmp(t, "mmlu_ru") != 0; /* mmlu_<subject>: checked at load */
}

/* A list of strings (a single string counts as a one-element list); null entries of
 * "calibration" mean "none". Replaces *dst. */
static kv_status read_list(const cJSON *v, const char *name, const char *key, char ***dst, int *n,
                           kv_err *err) {
    if (cJSON_IsString(v)) {
        const char *one[] = {v->valuestring};
        for (int i = 0; i < *n; i++) free((*dst)[i]);
        free(*dst);
        *dst = NULL;
        *n = 0;
        return set_list(dst, n, one, 1, err);
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
        return kv_err_set(err, KV_EFORMAT, "%s: \"%s\" must be a non-empty array of strings", name,
                          key);
    int cnt = cJSON_GetArraySize(v);
    const char **tmp = calloc((size_t)cnt, sizeof *tmp);
    if (!tmp) return kv_err_set(err, KV_ENOMEM, "study: out of memory (config)");
    int k = 0;
    for (const cJSON *e = v->child; e; e = e->next, k++) {
        if (cJSON_IsNull(e) && !strcmp(key, "calibration")) {
            tmp[k] = "none";
        } else if (cJSON_IsString(e) && e->valuestring[0]) {
            tmp[k] = e->valuestring;
        } else {
            free(tmp);
            return kv_err_set(err, KV_EFORMAT, "%s: \"%s\"[%d] must be a non-empty string", name,
                              key, k);
        }
        for (int j = 0; j < k; j++)
            if (!strcmp(tmp[j], tmp[k])) {
                kv_status st = kv_err_set(err, KV_EINVAL, "%s: \"%s\" lists \"%s\" twice", name,
                                          key, tmp[k]);
                free(tmp);
                return st;
            }
    }
    for (int i = 0; i < *n; i++) free((*dst)[i]);
    free(*dst);
    *dst = NULL;
    *n = 0;
    kv_status st = set_list(dst, n, tmp, cnt, err);
    free(tmp);
    return st;
}

static kv_status read_int(const cJSON *v, const char *name, const char *key, int64_t lo,
                          int64_t hi, int64_t *out, kv_err *err) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return kv_err_set(err, KV_EFORMAT, "%s: \"%s\" must be an integer in [%lld, %lld]", name,
                          key, (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return KV_OK;
}

kv_status kv_study_config_parse(const char *json, size_t len, const char *name,
                                kv_study_config *c, kv_err *err) {
    if (!json || !c) return kv_err_set(err, KV_EINVAL, "kv_study_config_parse: NULL argument");
    if (!name) name = "(study config)";
    kv_status st = kv_study_config_default(c, err);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *limit = NULL;
    int out_given = 0;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        st = kv_err_set(err, KV_EFORMAT, "%s: malformed JSON near byte %ld", name,
                        at && at >= json && at <= json + len ? (long)(at - json) : -1L);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        st = kv_err_set(err, KV_EFORMAT, "%s: a study config is a JSON object", name);
        goto done;
    }
    for (const cJSON *v = root->child; v && !st; v = v->next) {
        const char *k = v->string;
        int64_t x;
        if (!strcmp(k, "name")) {
            st = cJSON_IsString(v) ? set_str(&c->name, v->valuestring, err)
                                   : kv_err_set(err, KV_EFORMAT, "%s: \"name\" must be a string", name);
        } else if (!strcmp(k, "models")) {
            st = read_list(v, name, k, &c->models, &c->n_models, err);
        } else if (!strcmp(k, "formats")) {
            st = read_list(v, name, k, &c->formats, &c->n_formats, err);
        } else if (!strcmp(k, "methods")) {
            st = read_list(v, name, k, &c->methods, &c->n_methods, err);
        } else if (!strcmp(k, "calibration")) {
            st = cJSON_IsNull(v) ? KV_OK : read_list(v, name, k, &c->calibs, &c->n_calibs, err);
        } else if (!strcmp(k, "tasks")) {
            st = read_list(v, name, k, &c->tasks, &c->n_tasks, err);
        } else if (!strcmp(k, "limit")) {
            limit = v; /* read after "tasks", whatever the key order */
        } else if (!strcmp(k, "num_fewshot")) {
            if (!(st = read_int(v, name, k, 0, 64, &x, err))) c->num_fewshot = (int)x;
        } else if (!strcmp(k, "gptq_ctx")) {
            st = read_int(v, name, k, 2, 1 << 22, &c->gptq_ctx, err);
        } else if (!strcmp(k, "max_length")) {
            st = read_int(v, name, k, 0, 1 << 22, &c->max_length, err);
        } else if (!strcmp(k, "batch")) {
            if (!(st = read_int(v, name, k, 1, 4096, &x, err))) c->batch = (int)x;
        } else if (!strcmp(k, "mx_scale")) {
            const char *s = cJSON_IsString(v) ? v->valuestring : "";
            if (!strcmp(s, "spec"))
                c->mx_scale = KV_MX_SCALE_SPEC;
            else if (!strcmp(s, "mse"))
                c->mx_scale = KV_MX_SCALE_MSE;
            else
                st = kv_err_set(err, KV_EFORMAT, "%s: \"mx_scale\" must be \"spec\" or \"mse\"", name);
        } else if (!strcmp(k, "data")) {
            st = cJSON_IsNull(v) ? set_str(&c->data, NULL, err)
                 : cJSON_IsString(v) ? set_str(&c->data, v->valuestring, err)
                                     : kv_err_set(err, KV_EFORMAT, "%s: \"data\" must be a string or null", name);
        } else if (!strcmp(k, "out")) {
            out_given = 1;
            st = cJSON_IsString(v) && v->valuestring[0]
                     ? set_str(&c->out, v->valuestring, err)
                     : kv_err_set(err, KV_EFORMAT, "%s: \"out\" must be a non-empty string", name);
        } else if (k[0] != '_') { /* "_comment" and friends are allowed */
            st = kv_err_set(err, KV_EINVAL,
                            "%s: unknown key \"%s\" (known: name, models, formats, methods, "
                            "calibration, tasks, limit, num_fewshot, gptq_ctx, max_length, batch, "
                            "mx_scale, data, out)",
                            name, k);
        }
    }
    if (st) goto done;
    if (!out_given && strcmp(c->name, "default") != 0) {
        /* results/<name>: two studies do not share a folder by accident */
        char buf[4096];
        snprintf(buf, sizeof buf, "results/%s", c->name);
        if ((st = set_str(&c->out, buf, err))) goto done;
    }

    /* limits: per task, from an integer or {"task": N, "*": N} */
    free(c->limits);
    if (!(c->limits = calloc((size_t)c->n_tasks, sizeof *c->limits))) {
        st = kv_err_set(err, KV_ENOMEM, "study: out of memory (config)");
        goto done;
    }
    for (int t = 0; t < c->n_tasks; t++) {
        c->limits[t] = 0;
        for (int d = 0; d < N_DEFAULT_TASKS; d++)
            if (!strcmp(c->tasks[t], DEFAULT_TASKS[d])) c->limits[t] = DEFAULT_LIMITS[d];
    }
    if (limit) {
        if (cJSON_IsNumber(limit)) {
            int64_t x;
            if ((st = read_int(limit, name, "limit", 0, INT64_MAX / 4, &x, err))) goto done;
            for (int t = 0; t < c->n_tasks; t++) c->limits[t] = x;
        } else if (cJSON_IsObject(limit)) {
            const cJSON *all = cJSON_GetObjectItemCaseSensitive(limit, "*");
            int64_t x;
            if (all) {
                if ((st = read_int(all, name, "limit.*", 0, INT64_MAX / 4, &x, err))) goto done;
                for (int t = 0; t < c->n_tasks; t++) c->limits[t] = x;
            }
            for (const cJSON *v = limit->child; v; v = v->next) {
                if (!strcmp(v->string, "*")) continue;
                int t = 0;
                while (t < c->n_tasks && strcmp(c->tasks[t], v->string) != 0) t++;
                if (t == c->n_tasks) {
                    st = kv_err_set(err, KV_EINVAL, "%s: \"limit\" names \"%s\", which is not in "
                                    "\"tasks\"", name, v->string);
                    goto done;
                }
                char key[160];
                snprintf(key, sizeof key, "limit.%s", v->string);
                if ((st = read_int(v, name, key, 0, INT64_MAX / 4, &c->limits[t], err))) goto done;
            }
        } else {
            st = kv_err_set(err, KV_EFORMAT, "%s: \"limit\" must be an integer or an object "
                            "{\"task\": N, \"*\": N}", name);
            goto done;
        }
    }

    /* names */
    for (int i = 0; i < c->n_formats && !st; i++) {
        kv_qformat qf;
        if (strcmp(c->formats[i], "base") != 0 && kv_qformat_parse(c->formats[i], &qf, err))
            st = kv_err_prefix(err, "%s: \"formats\"", name);
    }
    for (int i = 0; i < c->n_methods && !st; i++) {
        kv_qmethod m;
        if (kv_qmethod_parse(c->methods[i], &m, err)) st = kv_err_prefix(err, "%s: \"methods\"", name);
    }
    for (int i = 0; i < c->n_tasks && !st; i++)
        if (!known_task(c->tasks[i])) {
            char list[512] = "";
            for (const char *const *n = kv_task_names(); *n; n++)
                if (strlen(list) + strlen(*n) + 3 < sizeof list) {
                    if (list[0]) strcat(list, ", ");
                    strcat(list, *n);
                }
            st = kv_err_set(err, KV_EINVAL, "%s: \"tasks\": unknown task \"%s\" (known: %s, "
                            "mmlu_<subject>)", name, c->tasks[i], list);
        }
done:
    cJSON_Delete(root);
    if (st) kv_study_config_free(c);
    return st;
}

kv_status kv_study_config_load(const char *path, kv_study_config *c, kv_err *err) {
    if (!path || !c) return kv_err_set(err, KV_EINVAL, "kv_study_config_load: NULL argument");
    memset(c, 0, sizeof *c);
    char *buf = NULL;
    size_t len = 0;
    kv_status st = kv_read_file(path, &buf, &len, err);
    if (st) return st;
    st = kv_study_config_parse(buf, len, path, c, err);
    free(buf);
    return st;
}
