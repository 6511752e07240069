/* tasks_data.c — strict readers for the evaluation data sets in ../shared/data.
 *
 * Pipeline stage: evaluate (input). Each reader takes exactly the format its folder's
 * SOURCE.md describes and rejects anything else with "file:line: what" (line-based
 * files) or "file: record N: what" (JSON arrays), so a damaged or substituted data set
 * fails loudly instead of producing a silently wrong score. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "eval/tasks_data.h"
#include "kvant/fileio.h"

void ev_records_free(ev_records *r) {
    if (!r) return;
    for (int64_t i = 0; i < r->n; i++)
        for (int k = 0; k < EV_MAX_FIELDS; k++) free(r->v[i].f[k]);
    free(r->v);
    r->v = NULL;
    r->n = r->cap = 0;
}

static ev_record *rec_push(ev_records *r, kv_err *err) {
    if (r->n == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 256;
        ev_record *v = realloc(r->v, (size_t)cap * sizeof *v);
        if (!v) {
            kv_err_set(err, KV_ENOMEM, "eval data: out of memory for %lld records", (long long)cap);
            return NULL;
        }
        r->v = v;
        r->cap = cap;
    }
    ev_record *e = &r->v[r->n++];
    memset(e, 0, sizeof *e);
    return e;
}

/* Index of the '\n' ending the line that starts at p, or len for the last line. */
static size_t line_end(const char *buf, size_t p, size_t len) {
    while (p < len && buf[p] != '\n') p++;
    return p;
}

static char *dupn(const char *s, size_t n, kv_err *err) {
    char *d = kv_malloc(n + 1, err, "eval data: string");
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* A JSON string member `key` of obj; *out NULL when null is allowed and found. */
static kv_status json_str(const cJSON *obj, const char *key, int allow_null, char **out,
                          const char *where, kv_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (allow_null) return KV_OK;
        return kv_err_set(err, KV_EFORMAT, "%s: missing \"%s\"", where, key);
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return kv_err_set(err, KV_EFORMAT, "%s: \"%s\" is not a string", where, key);
    *out = dupn(v->valuestring, strlen(v->valuestring), err);
    return *out ? KV_OK : KV_ENOMEM;
}

kv_status ev_read_piqa(const char *jsonl, const char *labels, ev_records *out, kv_err *err) {
    char *buf = NULL, *lab = NULL;
    size_t len = 0, llen = 0;
    kv_status st = kv_read_file(jsonl, &buf, &len, err);
    if (st) return st;
    if ((st = kv_read_file(labels, &lab, &llen, err))) {
        free(buf);
        return st;
    }
    int64_t line = 0;
    for (size_t p = 0; p < len;) {
        size_t e = line_end(buf, p, len);
        line++;
        char where[600];
        snprintf(where, sizeof where, "%s:%lld", jsonl, (long long)line);
        cJSON *o = cJSON_ParseWithLength(buf + p, e - p);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            st = kv_err_set(err, KV_EFORMAT, "%s: not a JSON object", where);
            goto done;
        }
        ev_record *r = rec_push(out, err);
        if (!r) {
            cJSON_Delete(o);
            st = KV_ENOMEM;
            goto done;
        }
        r->line = line;
        static const char *keys[3] = {"goal", "sol1", "sol2"};
        for (int k = 0; k < 3 && !st; k++) st = json_str(o, keys[k], 0, &r->f[k], where, err);
        cJSON_Delete(o);
        if (st) goto done;
        p = e + 1;
    }
    /* labels: one 0/1 per line, lined up with the jsonl lines */
    int64_t n = 0;
    for (size_t p = 0; p < llen;) {
        size_t e = line_end(lab, p, llen);
        n++;
        if (e - p != 1 || (lab[p] != '0' && lab[p] != '1')) {
            st = kv_err_set(err, KV_EFORMAT, "%s:%lld: expected a label 0 or 1, got '%.*s'", labels,
                            (long long)n, (int)(e - p > 20 ? 20 : e - p), lab + p);
            goto done;
        }
        if (n <= out->n) out->v[n - 1].label = lab[p] - '0';
        p = e + 1;
    }
    if (n != out->n)
        st = kv_err_set(err, KV_EFORMAT, "%s: %lld labels for %lld items in %s", labels, (long long)n,
                        (long long)out->n, jsonl);
done:
    free(buf);
    free(lab);
    return st;
}

/* RFC-4180 CSV: fields separated by ',', optionally quoted with '"' (doubled inside),
 * records end at an unquoted LF or CRLF. */
kv_status ev_read_mmlu_csv(const char *path, ev_records *out, kv_err *err) {
    char *buf = NULL;
    size_t len = 0;
    kv_status st = kv_read_file(path, &buf, &len, err);
    if (st) return st;
    static const char *header[6] = {"question", "choice0", "choice1", "choice2", "choice3", "answer"};
    ev_str field = {0};
    char *fields[EV_MAX_FIELDS] = {0};
    int nf = 0;
    int64_t line = 1, rec_line = 1, rec = 0;
    size_t p = 0;
    while (p < len) {
        /* one record */
        rec_line = line;
        nf = 0;
        for (;;) {
            field.n = 0;
            if (ev_str_put(&field, "", 0)) goto oom;
            if (p < len && buf[p] == '"') {
                p++;
                for (;;) {
                    if (p >= len) {
                        st = kv_err_set(err, KV_EFORMAT, "%s:%lld: unterminated quoted field", path,
                                        (long long)rec_line);
                        goto done;
                    }
                    if (buf[p] == '"') {
                        if (p + 1 < len && buf[p + 1] == '"') {
                            if (ev_str_put(&field, "\"", 1)) goto oom;
                            p += 2;
                            continue;
                        }
                        p++;
                        break;
                    }
                    if (buf[p] == '\n') line++;
                    if (ev_str_put(&field, buf + p, 1)) goto oom;
                    p++;
                }
                if (p < len && buf[p] != ',' && buf[p] != '\n' && buf[p] != '\r') {
                    st = kv_err_set(err, KV_EFORMAT, "%s:%lld: text after a closing quote", path,
                                    (long long)line);
                    goto done;
                }
            } else {
                size_t s = p;
                while (p < len && buf[p] != ',' && buf[p] != '\n' && buf[p] != '\r') {
                    if (buf[p] == '"') {
                        st = kv_err_set(err, KV_EFORMAT, "%s:%lld: quote inside an unquoted field",
                                        path, (long long)line);
                        goto done;
                    }
                    p++;
                }
                if (ev_str_put(&field, buf + s, p - s)) goto oom;
            }
            if (nf == EV_MAX_FIELDS) {
                st = kv_err_set(err, KV_EFORMAT, "%s:%lld: more than 6 fields", path, (long long)rec_line);
                goto done;
            }
            fields[nf] = dupn(field.p, field.n, err);
            if (!fields[nf]) goto oom;
            nf++;
            if (p < len && buf[p] == ',') {
                p++;
                continue;
            }
            if (p < len && buf[p] == '\r') p++;
            if (p < len && buf[p] == '\n') {
                p++;
                line++;
            }
            break;
        }
        if (nf != 6) {
            st = kv_err_set(err, KV_EFORMAT, "%s:%lld: expected 6 fields (question, 4 choices, answer), got %d",
                            path, (long long)rec_line, nf);
            goto done;
        }
        if (rec == 0) {
            for (int k = 0; k < 6; k++)
                if (strcmp(fields[k], header[k])) {
                    st = kv_err_set(err, KV_EFORMAT, "%s:1: expected the header question,choice0,choice1,"
                                    "choice2,choice3,answer; field %d is '%.40s'", path, k + 1, fields[k]);
                    goto done;
                }
        } else {
            const char *a = fields[5];
            if (strlen(a) != 1 || a[0] < '0' || a[0] > '3') {
                st = kv_err_set(err, KV_EFORMAT, "%s:%lld: answer must be 0-3, got '%.20s'", path,
                                (long long)rec_line, a);
                goto done;
            }
            ev_record *r = rec_push(out, err);
            if (!r) goto oom;
            r->line = rec_line;
            r->label = a[0] - '0';
            for (int k = 0; k < 5; k++) {
                r->f[k] = fields[k];
                fields[k] = NULL;
            }
        }
        for (int k = 0; k < nf; k++) {
            free(fields[k]);
            fields[k] = NULL;
        }
        rec++;
    }
    if (rec == 0) st = kv_err_set(err, KV_EFORMAT, "%s: empty file (expected a header row)", path);
    goto done;
oom:
    st = kv_err_set(err, KV_ENOMEM, "%s: out of memory while parsing CSV", path);
done:
    for (int k = 0; k < EV_MAX_FIELDS; k++) free(fields[k]);
    ev_str_free(&field);
    free(buf);
    return st;
}

/* Okapi translations: one JSON array of {"instruction", "option_a".."option_d",
 * optional "option_e", "answer": "A".."E", "id"}. Fields: 0 instruction, 1..5
 * options (NULL when null or absent), 6 id; label = answer letter index. */
kv_status ev_read_okapi(const char *path, int max_options, ev_records *out, kv_err *err) {
    char *buf = NULL;
    size_t len = 0;
    kv_status st = kv_read_file(path, &buf, &len, err);
    if (st) return st;
    cJSON *arr = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!arr || !cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return kv_err_set(err, KV_EFORMAT, "%s: not a JSON array", path);
    }
    int64_t i = 0;
    static const char *opt[5] = {"option_a", "option_b", "option_c", "option_d", "option_e"};
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        char where[600];
        snprintf(where, sizeof where, "%s: record %lld", path, (long long)i);
        if (!cJSON_IsObject(o)) {
            st = kv_err_set(err, KV_EFORMAT, "%s: not an object", where);
            break;
        }
        ev_record *r = rec_push(out, err);
        if (!r) {
            st = KV_ENOMEM;
            break;
        }
        r->line = i;
        if ((st = json_str(o, "instruction", 0, &r->f[0], where, err))) break;
        for (int k = 0; k < 5 && !st; k++) {
            /* MMLU has exactly 4 options; ARC has 3 to 5 (option_d may be null) */
            int required = k < 3 || (k == 3 && max_options == 4);
            if (k >= max_options) {
                if (cJSON_GetObjectItemCaseSensitive(o, opt[k]))
                    st = kv_err_set(err, KV_EFORMAT, "%s: unexpected \"%s\"", where, opt[k]);
                break;
            }
            st = json_str(o, opt[k], !required, &r->f[1 + k], where, err);
        }
        if (st) break;
        if ((st = json_str(o, "id", 0, &r->f[6], where, err))) break;
        char *ans = NULL;
        if ((st = json_str(o, "answer", 0, &ans, where, err))) break;
        int ok = strlen(ans) == 1 && ans[0] >= 'A' && ans[0] < 'A' + max_options;
        r->label = ok ? ans[0] - 'A' : -1;
        if (!ok)
            st = kv_err_set(err, KV_EFORMAT, "%s: answer must be a letter A-%c, got \"%.20s\"", where,
                            'A' + max_options - 1, ans);
        free(ans);
        if (st) break;
        i++;
    }
    cJSON_Delete(arr);
    return st;
}

/* Leipzig sentence files: "<id>\t<sentence>" per line, ids 1, 2, 3, ... */
kv_status ev_read_leipzig(const char *path, ev_records *out, kv_err *err) {
    char *buf = NULL;
    size_t len = 0;
    kv_status st = kv_read_file(path, &buf, &len, err);
    if (st) return st;
    int64_t line = 0;
    for (size_t p = 0; p < len && !st;) {
        size_t e = line_end(buf, p, len);
        line++;
        size_t t = p;
        while (t < e && buf[t] >= '0' && buf[t] <= '9') t++;
        if (t == p || t == e || buf[t] != '\t' || t - p > 18) {
            st = kv_err_set(err, KV_EFORMAT, "%s:%lld: expected '<id>\\t<sentence>'", path, (long long)line);
            break;
        }
        ev_record *r = rec_push(out, err);
        if (!r || !(r->f[0] = dupn(buf + t + 1, e - t - 1, err))) {
            st = KV_ENOMEM;
            break;
        }
        r->line = line;
        p = e + 1;
    }
    free(buf);
    if (!st && out->n == 0) st = kv_err_set(err, KV_EFORMAT, "%s: no sentences", path);
    return st;
}
