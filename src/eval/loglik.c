/* loglik.c — log-likelihood requests scored as lm-evaluation-harness's HF backend
 * scores them, with shared-context reuse.
 *
 * A request is (context ids, continuation ids). The harness runs
 *   inp = (ctx + cont)[-(max_length + 1):][:-1]
 * and sums log_softmax over the last len(cont) positions; is_greedy is true when each
 * of those positions' argmax is the continuation token. Here each request becomes a
 * unit: a prefix (inp without its last len(cont) tokens) fed with no logits, then a
 * tail (those len(cont) tokens) fed with logits. The choices of a question share the
 * prefix: it is run once into one cache slot and copied (kv_cache_copy_prefix) into
 * the others, and choices whose tails are identical (MMLU's " A".." D": the tail is
 * just the last context token) share one unit. Units of many documents are batched.
 * Results do not depend on batching beyond float reassociation in the kernels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/loglik.h"

/* Tokens per prefill call and rows of logits per tail call: bound the scratch and
 * logits memory whatever the batch. */
#define PREFILL_TOKENS 4096
#define LOGITS_BYTES (256u << 20)

typedef struct {
    const int32_t *prefix; /* [n_prefix] */
    int64_t n_prefix;
    int32_t *tail;         /* [n_tail], owned */
    int64_t n_tail;
    int src;               /* unit whose prefix this one copies, or -1 */
    int64_t row0;          /* first logits row in the current tail call */
    int64_t piece0, piece; /* tail tokens [piece0, piece0 + piece) are in that call */
} unit;

/* inp of request r, as the harness builds it: seq = (ctx + cont)[t0:] with
 * t0 = max(0, n_ctx + n_cont - (L + 1)); prefix = seq[: len - 1 - n_cont]. */
static int64_t trunc_start(const ev_req *r, int64_t L) {
    int64_t t0 = r->n_ctx + r->n_cont - (L + 1);
    return t0 > 0 ? t0 : 0;
}

static kv_status ensure_cache(kv_model *m, kv_cache **c, int *slots, int64_t *len, int need_slots,
                              int64_t need_len, kv_err *err) {
    if (*c && *slots >= need_slots && *len >= need_len) return KV_OK;
    kv_cache_free(*c);
    *c = NULL;
    kv_status st = kv_cache_new(m, need_slots, need_len, c, err);
    if (st) return st;
    *slots = need_slots;
    *len = need_len;
    return KV_OK;
}

kv_status ev_loglik_run(kv_model *m, ev_req *req, int64_t n_req, const ev_group *groups,
                        int64_t n_groups, const ev_loglik_opts *o, kv_progress *prog,
                        int64_t *tokens_run, kv_err *err) {
    const kv_config *cfg = kv_model_config(m);
    const int64_t V = cfg->vocab_size, L = o->max_length;
    const int max_units = o->batch > 0 ? o->batch : 16;
    /* KV bytes per cached token; cap one batch's cache at ~1 GiB */
    const double tok_bytes = 2.0 * (double)cfg->n_layers * (double)cfg->n_kv_heads *
                             (double)cfg->head_dim * sizeof(float);
    const double budget = (double)(1u << 30) / tok_bytes;
    int64_t max_rows = (int64_t)(LOGITS_BYTES / ((size_t)V * sizeof(float)));
    if (max_rows < 16) max_rows = 16;

    for (int64_t i = 0; i < n_req; i++) {
        ev_req *r = &req[i];
        if (r->n_ctx < 1 || r->n_cont < 1)
            return kv_err_set(err, KV_EINVAL, "loglikelihood: request %lld has an empty %s",
                              (long long)i, r->n_ctx < 1 ? "context" : "continuation");
        if (r->n_cont > L)
            return kv_err_set(err, KV_ERANGE, "loglikelihood: request %lld: continuation of %lld "
                              "tokens exceeds max_length %lld", (long long)i, (long long)r->n_cont,
                              (long long)L);
        r->ll = 0;
        r->greedy = 1;
    }

    kv_cache *cache = NULL;
    int c_slots = 0;
    int64_t c_len = 0;
    unit *u = kv_calloc((size_t)max_units, sizeof *u, err, "loglikelihood units");
    int *unit_of = kv_malloc((size_t)(n_req > 0 ? n_req : 1) * sizeof *unit_of, err, "loglikelihood map");
    float *logits = kv_malloc((size_t)max_rows * (size_t)V * sizeof(float), err, "loglikelihood logits");
    double *lse = kv_malloc((size_t)max_rows * sizeof(double), err, "loglikelihood lse");
    int32_t *amax = kv_malloc((size_t)max_rows * sizeof(int32_t), err, "loglikelihood argmax");
    int *bslot = kv_malloc((size_t)max_units * sizeof(int), err, "loglikelihood batch");
    const int32_t **bids = kv_malloc((size_t)max_units * sizeof *bids, err, "loglikelihood batch");
    int64_t *bn = kv_malloc((size_t)max_units * sizeof *bn, err, "loglikelihood batch");
    int64_t *done_pre = kv_malloc((size_t)max_units * sizeof *done_pre, err, "loglikelihood batch");
    kv_status st = KV_OK;
    if (!u || !unit_of || !logits || !lse || !amax || !bslot || !bids || !bn || !done_pre) {
        st = KV_ENOMEM;
        goto done;
    }
    int64_t run = 0, reqs_done = 0;
    for (int64_t g0 = 0; g0 < n_groups;) {
        /* ---- units of as many groups as fit ---- */
        int nu = 0;
        int64_t max_len = 0, g1 = g0;
        for (; g1 < n_groups; g1++) {
            const ev_group *g = &groups[g1];
            int nu0 = nu;
            int64_t ml = max_len;
            int fits = 1;
            for (int64_t k = g->first; k < g->first + g->n && fits; k++) {
                const ev_req *r = &req[k];
                int64_t t0 = trunc_start(r, L), len = r->n_ctx + r->n_cont - t0 - 1;
                int64_t np = len - r->n_cont;
                int share = g->share && t0 == 0;
                /* same tail as a unit of this group: share it */
                int found = -1;
                if (share)
                    for (int j = nu0; j < nu && found < 0; j++)
                        if ((u[j].src >= 0 || j == nu0) && u[j].n_tail == r->n_cont &&
                            u[j].n_prefix == np && u[j].prefix == r->ctx &&
                            u[j].tail[0] == r->ctx[r->n_ctx - 1] &&
                            !memcmp(u[j].tail + 1, r->cont, (size_t)(r->n_cont - 1) * sizeof(int32_t)))
                            found = j;
                if (found >= 0) {
                    unit_of[k] = found;
                    continue;
                }
                if (nu == max_units) {
                    fits = 0;
                    break;
                }
                unit *x = &u[nu];
                x->prefix = r->ctx + t0;
                x->n_prefix = np;
                x->n_tail = r->n_cont;
                free(x->tail);
                x->tail = malloc((size_t)r->n_cont * sizeof(int32_t));
                if (!x->tail) {
                    st = kv_err_set(err, KV_ENOMEM, "loglikelihood: out of memory");
                    goto done;
                }
                /* tail = inp[len - n_cont:] = [last prefix-side token] + cont[:-1]; the
                 * token before the continuation is ctx's last (t0 < n_ctx always) */
                x->tail[0] = r->ctx[r->n_ctx - 1];
                memcpy(x->tail + 1, r->cont, (size_t)(r->n_cont - 1) * sizeof(int32_t));
                x->src = share && nu > nu0 && u[nu0].prefix == r->ctx && u[nu0].n_prefix == np ? nu0 : -1;
                if (len > ml) ml = len;
                unit_of[k] = nu++;
            }
            /* keep the group only if its units fit, and (beyond the first group) the
             * cache stays in budget */
            if (!fits || (g1 > g0 && (double)nu * (double)ml > budget)) {
                if (g1 == g0) {
                    st = kv_err_set(err, KV_EINVAL, "loglikelihood: a document has more than %d "
                                    "distinct choices; raise --batch", max_units);
                    goto done;
                }
                nu = nu0;
                break;
            }
            max_len = ml;
        }
        if ((st = ensure_cache(m, &cache, &c_slots, &c_len, nu, max_len, err))) goto done;
        for (int j = 0; j < nu; j++) {
            kv_cache_truncate(cache, j, 0);
            done_pre[j] = 0;
        }

        /* ---- prefill the prefixes of units that own them, in bounded calls ---- */
        for (;;) {
            int ns = 0;
            int64_t used = 0;
            for (int j = 0; j < nu && used < PREFILL_TOKENS; j++) {
                if (u[j].src >= 0 || done_pre[j] >= u[j].n_prefix) continue;
                int64_t take = u[j].n_prefix - done_pre[j];
                if (take > PREFILL_TOKENS - used) take = PREFILL_TOKENS - used;
                bslot[ns] = j;
                bids[ns] = u[j].prefix + done_pre[j];
                bn[ns] = take;
                done_pre[j] += take;
                used += take;
                ns++;
            }
            if (!ns) break;
            kv_batch b = {ns, bslot, bids, bn};
            if ((st = kv_model_forward(m, cache, &b, KV_LOGITS_NONE, NULL, err))) goto done;
            run += used;
        }
        for (int j = 0; j < nu; j++)
            if (u[j].src >= 0 && (st = kv_cache_copy_prefix(cache, u[j].src, j, u[j].n_prefix, err)))
                goto done;

        /* ---- tails with logits, in calls of at most max_rows rows (a long tail is
         * split across calls); every request of a unit uses all of its rows ---- */
        for (int j = 0; j < nu; j++) done_pre[j] = 0; /* now: tail tokens fed */
        for (;;) {
            int ns = 0;
            int64_t rows = 0;
            for (int j = 0; j < nu; j++) {
                u[j].piece = 0;
                if (rows >= max_rows || done_pre[j] >= u[j].n_tail) continue;
                int64_t take = u[j].n_tail - done_pre[j];
                if (take > max_rows - rows) take = max_rows - rows;
                u[j].row0 = rows;
                u[j].piece0 = done_pre[j];
                u[j].piece = take;
                bslot[ns] = j;
                bids[ns] = u[j].tail + done_pre[j];
                bn[ns] = take;
                done_pre[j] += take;
                rows += take;
                ns++;
            }
            if (!ns) break;
            kv_batch b = {ns, bslot, bids, bn};
            if ((st = kv_model_forward(m, cache, &b, KV_LOGITS_ALL, logits, err))) goto done;
            run += rows;
#pragma omp parallel for schedule(static)
            for (int64_t q = 0; q < rows; q++) {
                const float *row = logits + (size_t)q * (size_t)V;
                int32_t best = 0;
                for (int64_t v = 1; v < V; v++)
                    if (row[v] > row[best]) best = (int32_t)v;
                amax[q] = best;
                lse[q] = kv_logsumexp(row, V);
            }
            for (int64_t g = g0; g < g1; g++)
                for (int64_t k = groups[g].first; k < groups[g].first + groups[g].n; k++) {
                    const unit *x = &u[unit_of[k]];
                    ev_req *r = &req[k];
                    for (int64_t i = 0; i < x->piece; i++) {
                        int64_t q = x->row0 + i;
                        int32_t tgt = r->cont[x->piece0 + i];
                        r->ll += (double)logits[(size_t)q * (size_t)V + (size_t)tgt] - lse[q];
                        if (amax[q] != tgt) r->greedy = 0;
                    }
                }
        }
        for (int64_t g = g0; g < g1; g++) reqs_done += groups[g].n;
        if (prog) kv_progress_update(prog, reqs_done);
        g0 = g1;
    }
    if (tokens_run) *tokens_run += run;
done:
    if (u)
        for (int j = 0; j < max_units; j++) free(u[j].tail);
    free(u);
    free(unit_of);
    free(logits);
    free(lse);
    free(amax);
    free(bslot);
    free(bids);
    free(bn);
    free(done_pre);
    kv_cache_free(cache);
    return st;
}
