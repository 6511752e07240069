/* eval_task.c — run a task: tokenize its requests as the harness does, score them
 * (loglik.c), and aggregate metrics as lm-evaluation-harness 0.4.x does.
 *
 * Metrics: acc = argmax ll is gold; acc_norm = argmax ll / len(choice) with len in
 * characters (Python len of the choice string), first maximum on ties (np.argmax);
 * stderr = sample standard deviation / sqrt(n) (metrics.mean_stderr), N/A for n = 1.
 * MMLU groups (categories and the whole) are size-weighted means of their subject
 * tasks with pooled_sample_stderr over those subjects (api/group.py). Rolling tasks:
 * word_perplexity = exp(-sum ll / sum words), byte_perplexity = exp(-sum ll /
 * sum bytes), bits_per_byte = -sum ll / sum bytes / ln 2, no stderr. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/loglik.h"
#include "kvant/fileio.h"

double kv_mean_stderr(const double *x, int64_t n) {
    if (n < 2) return NAN;
    double mu = 0, s = 0;
    for (int64_t i = 0; i < n; i++) mu += x[i];
    mu /= (double)n;
    for (int64_t i = 0; i < n; i++) s += (x[i] - mu) * (x[i] - mu);
    return sqrt(s / (double)(n - 1)) / sqrt((double)n);
}

double kv_pooled_stderr(const double *se, const int64_t *size, int n) {
    double num = 0, tot = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(se[i])) return NAN; /* the harness gives N/A when any subtask has none */
        num += (double)(size[i] - 1) * se[i] * se[i] * (double)size[i];
        tot += (double)size[i];
    }
    if (tot - n <= 0) return NAN;
    return sqrt(num / (tot - n) / tot);
}

kv_status kv_encode_pair(const kv_tokenizer *tok, const char *context, size_t clen,
                         const char *continuation, size_t nlen, kv_ids *ctx, kv_ids *cont,
                         kv_err *err) {
    if (clen == 0) return kv_err_set(err, KV_EINVAL, "encode_pair: empty context");
    /* trailing context whitespace moves to the continuation */
    size_t sp = ev_py_rstrip_len(context, clen), cl = clen - sp;
    char *whole = kv_malloc(clen + nlen + 1, err, "encode_pair");
    if (!whole) return KV_ENOMEM;
    memcpy(whole, context, clen);
    memcpy(whole + clen, continuation, nlen);
    kv_ids w = {0};
    size_t c0 = ctx->n;
    kv_status st = kv_tok_encode(tok, whole, clen + nlen, KV_TOK_ADD_SPECIAL, &w, err);
    if (!st) st = kv_tok_encode(tok, context, cl, KV_TOK_ADD_SPECIAL, ctx, err);
    size_t nc = ctx->n - c0;
    for (size_t i = nc; !st && i < w.n; i++) st = kv_ids_push(cont, w.v[i], err);
    free(whole);
    kv_ids_free(&w);
    return st;
}

/* tokenizer_config.json's bos_token / eos_token: a string or {"content": ...}. */
static const char *special_str(const cJSON *root, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

kv_status kv_eval_prefix_token(const char *model_dir, const kv_tokenizer *tok, int32_t *id,
                               kv_err *err) {
    char path[4096];
    *id = -1;
    kv_status st = kv_path_join(path, sizeof path, model_dir, "tokenizer_config.json", err);
    if (st) return st;
    if (kv_is_file(path)) {
        char *buf = NULL;
        size_t len = 0;
        if ((st = kv_read_file(path, &buf, &len, err))) return st;
        cJSON *root = cJSON_ParseWithLength(buf, len);
        free(buf);
        if (!root) return kv_err_set(err, KV_EFORMAT, "%s: not valid JSON", path);
        const char *b = special_str(root, "bos_token"), *e = special_str(root, "eos_token");
        if (b) *id = kv_tok_piece_to_id(tok, b);
        if (*id < 0 && e) *id = kv_tok_piece_to_id(tok, e);
        cJSON_Delete(root);
        if (*id >= 0) return KV_OK;
    }
    kv_config cfg;
    if ((st = kv_config_load(model_dir, &cfg, err))) return st;
    *id = (int32_t)(cfg.bos_token_id >= 0 ? cfg.bos_token_id : cfg.eos_token_id);
    if (*id < 0)
        return kv_err_set(err, KV_ENOTFOUND, "%s: no bos_token or eos_token for the rolling "
                          "windows' prefix token", model_dir);
    return KV_OK;
}

void kv_task_result_free(kv_task_result *r) {
    if (!r) return;
    free(r->scores);
    free(r->req_off);
    free(r->ll);
    free(r->greedy);
    free(r->pred);
    free(r->pred_norm);
    free(r->n_tokens);
    memset(r, 0, sizeof *r);
}

static kv_score *add_score(kv_task_result *r, const char *name, int level, int64_t n) {
    kv_score *v = realloc(r->scores, (size_t)(r->n_scores + 1) * sizeof *v);
    if (!v) return NULL;
    r->scores = v;
    kv_score *s = &v[r->n_scores++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->level = level;
    s->n = n;
    return s;
}

static void add_metric(kv_score *s, const char *name, double v, double se) {
    kv_metric *m = &s->m[s->n_metrics++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->value = v;
    m->stderr = se;
}

/* MMLU: subjects (level 2), categories (level 1) and the whole task (level 0). */
static kv_status mmlu_scores(const kv_task *t, kv_task_result *r, const double *acc, kv_err *err) {
    static const char *const cats[4] = {"stem", "other", "social_sciences", "humanities"};
    int64_t n = r->n_docs;
    /* subjects in order of first appearance */
    const char *subj[64];
    int ns = 0;
    double mean[64], se[64];
    int64_t size[64];
    double *buf = kv_malloc((size_t)n * sizeof(double), err, "mmlu scores");
    if (!buf) return KV_ENOMEM;
    for (int64_t i = 0; i < n; i++) {
        const char *s = kv_task_mc_doc(t, i)->subject;
        int k = 0;
        while (k < ns && subj[k] != s) k++;
        if (k == ns && ns < 64) subj[ns++] = s;
    }
    for (int k = 0; k < ns; k++) {
        int64_t m = 0;
        double sum = 0;
        for (int64_t i = 0; i < n; i++)
            if (kv_task_mc_doc(t, i)->subject == subj[k]) sum += (buf[m++] = acc[i]);
        mean[k] = sum / (double)m;
        se[k] = kv_mean_stderr(buf, m);
        size[k] = m;
    }
    int ru = ev_task_mmlu(t) == EV_MMLU_RU;
    int single = !ru && ns == 1; /* mmlu_<subject>: the task is the subject */
    kv_score *top = r->scores; /* [0], already added */
    if (ru) {
        /* m_mmlu_ru is one task: its stderr is over all documents */
        add_metric(top, "acc", 0, kv_mean_stderr(acc, n));
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += acc[i];
        top->m[0].value = s / (double)n;
    } else if (single) {
        add_metric(top, "acc", mean[0], se[0]);
    } else {
        double s = 0;
        int64_t tot = 0;
        for (int k = 0; k < ns; k++) {
            s += mean[k] * (double)size[k];
            tot += size[k];
        }
        add_metric(top, "acc", s / (double)tot, kv_pooled_stderr(se, size, ns));
    }
    if (!single) {
        for (int c = 0; c < 4; c++) {
            double cse[64], s = 0;
            int64_t csz[64], tot = 0;
            int nc = 0;
            for (int k = 0; k < ns; k++)
                if (!strcmp(ev_mmlu_category(subj[k]), cats[c])) {
                    cse[nc] = se[k];
                    csz[nc++] = size[k];
                    s += mean[k] * (double)size[k];
                    tot += size[k];
                }
            if (!nc) continue;
            char name[96];
            snprintf(name, sizeof name, "%s_%s", kv_task_name(t), cats[c]);
            kv_score *sc = add_score(r, name, 1, tot);
            if (!sc) goto oom;
            add_metric(sc, "acc", s / (double)tot, kv_pooled_stderr(cse, csz, nc));
        }
        for (int k = 0; k < ns; k++) {
            char name[96];
            snprintf(name, sizeof name, "%s_%s", ru ? "mmlu_ru" : "mmlu", subj[k]);
            kv_score *sc = add_score(r, name, 2, size[k]);
            if (!sc) goto oom;
            add_metric(sc, "acc", mean[k], se[k]);
        }
    }
    free(buf);
    return KV_OK;
oom:
    free(buf);
    return kv_err_set(err, KV_ENOMEM, "eval: out of memory");
}

/* Groups sorted longest first (as the harness sorts), so batches hold similar lengths. */
static const ev_req *g_sort_req;
static int64_t group_len(const ev_group *g) {
    int64_t mx = 0;
    for (int64_t k = g->first; k < g->first + g->n; k++) {
        int64_t l = g_sort_req[k].n_ctx + g_sort_req[k].n_cont;
        if (l > mx) mx = l;
    }
    return mx;
}
static int cmp_group(const void *a, const void *b) {
    int64_t la = group_len(a), lb = group_len(b);
    if (la != lb) return la > lb ? -1 : 1;
    int64_t fa = ((const ev_group *)a)->first, fb = ((const ev_group *)b)->first;
    return fa < fb ? -1 : fa > fb;
}

/* Score the requests in their groups with context length L; the run's time goes to
 * r->seconds and its token count to r->tokens_run. */
static kv_status score(kv_model *m, const kv_task *t, ev_req *req, int64_t nreq,
                       const ev_group *grp, int64_t ng, const kv_eval_opts *o, int64_t L,
                       kv_progress *prog, kv_task_result *r, kv_err *err) {
    ev_loglik_opts lo = {L, o->batch > 0 ? o->batch : 16};
    if (prog) prog->total = nreq;
    double t0 = kv_now();
    kv_status st = ev_loglik_run(m, req, nreq, grp, ng, &lo, prog, &r->tokens_run, err);
    if (st) {
        kv_err_prefix(err, "%s", kv_task_name(t));
        return st;
    }
    r->seconds = kv_now() - t0;
    if (prog) kv_progress_end(prog, nreq);
    return KV_OK;
}

static kv_status run_mc(kv_model *m, const kv_tokenizer *tok, const kv_task *t,
                        const kv_eval_opts *o, int64_t L, kv_progress *prog, kv_task_result *r,
                        kv_err *err) {
    int64_t n = kv_task_n_docs(t), nreq = 0;
    for (int64_t i = 0; i < n; i++) nreq += kv_task_mc_doc(t, i)->n_choices;
    kv_ids *ctx = kv_calloc((size_t)n, sizeof *ctx, err, "eval contexts");
    kv_ids *cont = kv_calloc((size_t)nreq, sizeof *cont, err, "eval continuations");
    ev_req *req = kv_calloc((size_t)nreq, sizeof *req, err, "eval requests");
    ev_group *grp = kv_calloc((size_t)nreq, sizeof *grp, err, "eval groups");
    double *acc = kv_malloc((size_t)n * sizeof(double), err, "eval acc");
    double *accn = kv_malloc((size_t)n * sizeof(double), err, "eval acc");
    r->req_off = kv_malloc((size_t)(n + 1) * sizeof(int64_t), err, "eval results");
    r->ll = kv_malloc((size_t)nreq * sizeof(double), err, "eval results");
    r->greedy = kv_malloc((size_t)nreq, err, "eval results");
    r->pred = kv_malloc((size_t)n * sizeof(int32_t), err, "eval results");
    r->pred_norm = kv_malloc((size_t)n * sizeof(int32_t), err, "eval results");
    kv_status st = KV_OK;
    if (!ctx || !cont || !req || !grp || !acc || !accn || !r->req_off || !r->ll || !r->greedy ||
        !r->pred || !r->pred_norm) {
        st = KV_ENOMEM;
        goto done;
    }
    r->req_off[0] = 0;
    for (int64_t i = 0; i < n; i++) r->req_off[i + 1] = r->req_off[i] + kv_task_mc_doc(t, i)->n_choices;

    /* tokenize, documents in parallel (the tokenizer is thread-safe) */
    int failed = 0;
    kv_err terr = {0};
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t i = 0; i < n; i++) {
        if (failed) continue;
        const kv_mc_doc *d = kv_task_mc_doc(t, i);
        kv_err e = {0};
        kv_status s = KV_OK;
        size_t cl = strlen(d->context);
        for (int c = 0; c < d->n_choices && !s; c++) {
            size_t nl = strlen(d->choices[c]);
            char *cs = malloc(nl + 2);
            if (!cs) {
                s = kv_err_set(&e, KV_ENOMEM, "eval: out of memory");
                break;
            }
            cs[0] = ' '; /* target_delimiter */
            memcpy(cs + 1, d->choices[c], nl + 1);
            kv_ids *cx = &ctx[i], scratch = {0};
            /* the context ids are the same for every choice: keep the first */
            s = kv_encode_pair(tok, d->context, cl, cs, nl + 1, c ? &scratch : cx,
                               &cont[r->req_off[i] + c], &e);
            kv_ids_free(&scratch);
            free(cs);
        }
        if (s) {
#pragma omp critical
            {
                if (!failed) {
                    failed = 1;
                    terr = e;
                    kv_err_prefix(&terr, "%s: document %lld", kv_task_name(t), (long long)i);
                }
            }
        }
    }
    if (failed) {
        if (err) *err = terr;
        st = terr.code;
        goto done;
    }
    int64_t ng = 0;
    for (int64_t i = 0; i < n; i++) {
        const kv_mc_doc *d = kv_task_mc_doc(t, i);
        for (int c = 0; c < d->n_choices; c++) {
            int64_t k = r->req_off[i] + c;
            req[k].ctx = ctx[i].v;
            req[k].n_ctx = (int64_t)ctx[i].n;
            req[k].cont = cont[k].v;
            req[k].n_cont = (int64_t)cont[k].n;
            if (req[k].n_cont == 0) {
                st = kv_err_set(err, KV_EINVAL, "%s: document %lld choice %d: empty continuation "
                                "after tokenization", kv_task_name(t), (long long)i, c);
                goto done;
            }
            if (o->no_reuse) grp[ng++] = (ev_group){k, 1, 0};
        }
        if (!o->no_reuse) grp[ng++] = (ev_group){r->req_off[i], d->n_choices, 1};
    }
    g_sort_req = req;
    qsort(grp, (size_t)ng, sizeof *grp, cmp_group);
    if ((st = score(m, t, req, nreq, grp, ng, o, L, prog, r, err))) goto done;

    for (int64_t i = 0; i < n; i++) {
        const kv_mc_doc *d = kv_task_mc_doc(t, i);
        int64_t k0 = r->req_off[i];
        int best = 0, bestn = 0;
        double bn = 0;
        for (int c = 0; c < d->n_choices; c++) {
            r->ll[k0 + c] = req[k0 + c].ll;
            r->greedy[k0 + c] = req[k0 + c].greedy;
            double nv = req[k0 + c].ll / (double)ev_utf8_chars(d->choices[c], strlen(d->choices[c]));
            if (req[k0 + c].ll > req[k0 + best].ll) best = c;
            if (c == 0 || nv > bn) {
                bn = nv;
                bestn = c;
            }
        }
        r->pred[i] = best;
        r->pred_norm[i] = bestn;
        acc[i] = best == d->gold;
        accn[i] = bestn == d->gold;
    }
    kv_score *top = add_score(r, kv_task_name(t), 0, n);
    if (!top) {
        st = kv_err_set(err, KV_ENOMEM, "eval: out of memory");
        goto done;
    }
    if (ev_task_mmlu(t) != EV_MMLU_NONE) {
        st = mmlu_scores(t, r, acc, err);
    } else {
        double s = 0, sn = 0;
        for (int64_t i = 0; i < n; i++) {
            s += acc[i];
            sn += accn[i];
        }
        add_metric(top, "acc", s / (double)n, kv_mean_stderr(acc, n));
        if (ev_task_has_acc_norm(t)) add_metric(top, "acc_norm", sn / (double)n, kv_mean_stderr(accn, n));
    }
done:
    if (ctx)
        for (int64_t i = 0; i < n; i++) kv_ids_free(&ctx[i]);
    if (cont)
        for (int64_t k = 0; k < nreq; k++) kv_ids_free(&cont[k]);
    free(ctx);
    free(cont);
    free(req);
    free(grp);
    free(acc);
    free(accn);
    return st;
}

/* lm-eval utils.get_rolling_token_windows(context_len=1) + make_disjoint_window: the
 * first window predicts toks[:min(L, n)] from [prefix] + toks[:min(L, n) - 1]; each
 * later one predicts the next min(rest, L) tokens from the L tokens before its end. */
static kv_status run_rolling(kv_model *m, const kv_tokenizer *tok, const kv_task *t,
                             const kv_eval_opts *o, int64_t L, int32_t prefix, kv_progress *prog,
                             kv_task_result *r, kv_err *err) {
    int64_t n = kv_task_n_docs(t);
    kv_ids *toks = kv_calloc((size_t)n, sizeof *toks, err, "eval documents");
    int32_t *pre = NULL;
    ev_req *req = NULL;
    ev_group *grp = NULL;
    r->req_off = kv_malloc((size_t)(n + 1) * sizeof(int64_t), err, "eval results");
    r->ll = kv_calloc((size_t)(n > 0 ? n : 1), sizeof(double), err, "eval results");
    r->n_tokens = kv_calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t), err, "eval results");
    kv_status st = KV_OK;
    if (!toks || !r->req_off || !r->ll || !r->n_tokens) {
        st = KV_ENOMEM;
        goto done;
    }
    int failed = 0;
    kv_err terr = {0};
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) {
        if (failed) continue;
        const kv_roll_doc *d = kv_task_roll_doc(t, i);
        kv_err e = {0};
        if (kv_tok_encode(tok, d->text, strlen(d->text), KV_TOK_ADD_SPECIAL, &toks[i], &e)) {
#pragma omp critical
            {
                if (!failed) {
                    failed = 1;
                    terr = e;
                }
            }
        }
    }
    if (failed) {
        if (err) *err = terr;
        st = terr.code;
        goto done;
    }
    /* windows */
    int64_t nw = 0;
    r->req_off[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t nt = (int64_t)toks[i].n;
        r->n_tokens[i] = nt;
        nw += nt > 0 ? 1 + (nt > L ? (nt - L + L - 1) / L : 0) : 0;
        r->req_off[i + 1] = nw;
    }
    req = kv_calloc((size_t)(nw > 0 ? nw : 1), sizeof *req, err, "eval windows");
    grp = kv_calloc((size_t)(nw > 0 ? nw : 1), sizeof *grp, err, "eval windows");
    pre = kv_malloc(sizeof *pre, err, "eval prefix");
    if (!req || !grp || !pre) {
        st = KV_ENOMEM;
        goto done;
    }
    *pre = prefix;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t *x = toks[i].v;
        int64_t nt = (int64_t)toks[i].n;
        if (nt == 0) continue;
        int64_t first = nt < L ? nt : L;
        req[k] = (ev_req){pre, 1, x, first, 0, 0};
        grp[k] = (ev_group){k, 1, 0};
        k++;
        for (int64_t done_ = first; done_ < nt;) {
            int64_t wl = nt - done_ < L ? nt - done_ : L, end = done_ + wl;
            /* context = toks[end - L - 1 : end - wl], continuation = toks[end - wl : end] */
            req[k] = (ev_req){x + end - L - 1, L + 1 - wl, x + end - wl, wl, 0, 0};
            grp[k] = (ev_group){k, 1, 0};
            k++;
            done_ = end;
        }
    }
    if ((st = score(m, t, req, nw, grp, nw, o, L, prog, r, err))) goto done;
    double sll = 0;
    int64_t sw = 0, sb = 0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t w = r->req_off[i]; w < r->req_off[i + 1]; w++) r->ll[i] += req[w].ll;
        sll += r->ll[i];
        sw += kv_task_roll_doc(t, i)->words;
        sb += kv_task_roll_doc(t, i)->bytes;
    }
    /* per document now: one ll each */
    for (int64_t i = 0; i <= n; i++) r->req_off[i] = i;
    kv_score *top = add_score(r, kv_task_name(t), 0, n);
    if (!top) {
        st = kv_err_set(err, KV_ENOMEM, "eval: out of memory");
        goto done;
    }
    add_metric(top, "word_perplexity", exp(-sll / (double)sw), NAN);
    add_metric(top, "byte_perplexity", exp(-sll / (double)sb), NAN);
    add_metric(top, "bits_per_byte", -sll / (double)sb / log(2.0), NAN);
done:
    if (toks)
        for (int64_t i = 0; i < n; i++) kv_ids_free(&toks[i]);
    free(toks);
    free(req);
    free(grp);
    free(pre);
    return st;
}

kv_status kv_eval_task(kv_model *m, const kv_tokenizer *tok, const kv_task *t,
                       const kv_eval_opts *opts, kv_progress *prog, kv_task_result *res,
                       kv_err *err) {
    kv_eval_opts o = opts ? *opts : (kv_eval_opts){0};
    memset(res, 0, sizeof *res);
    if (!m || !tok || !t) return kv_err_set(err, KV_EINVAL, "eval: missing model, tokenizer or task");
    const kv_config *cfg = kv_model_config(m);
    int64_t L = o.max_length > 0 ? o.max_length
                : cfg->max_position_embeddings > 0 ? cfg->max_position_embeddings : 2048;
    res->n_docs = kv_task_n_docs(t);
    kv_status st;
    if (kv_task_kind_of(t) == KV_TASK_MC) {
        st = run_mc(m, tok, t, &o, L, prog, res, err);
    } else {
        if (o.prefix_token < 0 || o.prefix_token >= cfg->vocab_size)
            return kv_err_set(err, KV_EINVAL, "%s: prefix token %d is not a token id (resolve it "
                              "with kv_eval_prefix_token)", kv_task_name(t), (int)o.prefix_token);
        st = run_rolling(m, tok, t, &o, L, o.prefix_token, prog, res, err);
        if (!st && !o.skip_gptq) {
            size_t len = 0;
            const char *text = kv_task_gptq_text(t, &len);
            kv_ids ids = {0};
            st = kv_tok_encode(tok, text, len, KV_TOK_ADD_SPECIAL, &ids, err);
            kv_ppl_opts po = {.ctx = o.gptq_ctx > 0 ? o.gptq_ctx : 2048};
            if (!st) st = kv_perplexity(m, ids.v, (int64_t)ids.n, &po, NULL, &res->gptq, err);
            if (st) kv_err_prefix(err, "%s: gptq perplexity", kv_task_name(t));
            res->has_gptq = !st;
            kv_ids_free(&ids);
        }
    }
    if (st) kv_task_result_free(res);
    return st;
}
