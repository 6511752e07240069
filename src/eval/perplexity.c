/* perplexity.c — mean NLL over non-overlapping windows (GPTQ protocol), scored in
 * chunks with the KV cache so logits never hold more than chunk x vocab floats. */
#include <math.h>
#include <stdlib.h>

#include "kvant/eval.h"

double kv_logsumexp(const float *row, int64_t n) {
    float mx = row[0];
    for (int64_t i = 1; i < n; i++)
        if (row[i] > mx) mx = row[i];
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += exp((double)row[i] - (double)mx);
    return (double)mx + log(s);
}

kv_status kv_perplexity(kv_model *m, const int32_t *ids, int64_t n, const kv_ppl_opts *opts,
                        kv_progress *prog, kv_ppl_result *res, kv_err *err) {
    const kv_config *cfg = kv_model_config(m);
    int64_t ctx = opts && opts->ctx > 0 ? opts->ctx : 2048;
    int64_t chunk = opts && opts->chunk > 0 ? opts->chunk : 512;
    if (n < 2) return kv_err_set(err, KV_EINVAL, "perplexity: need at least 2 tokens, got %lld", (long long)n);
    /* Targets are never fed to the model, so check every id here. */
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
            return kv_err_set(err, KV_ERANGE, "token id %d at position %lld is outside the vocabulary [0, %lld)",
                              ids[i], (long long)i, (long long)cfg->vocab_size);
    if (n < ctx) ctx = n;
    if (chunk > ctx) chunk = ctx;
    int64_t windows = n / ctx;
    int64_t V = cfg->vocab_size;

    kv_cache *cache = NULL;
    float *logits = NULL;
    double *nll_tok = NULL;
    kv_status st = kv_cache_new(m, 1, ctx, &cache, err);
    if (st) goto done;
    logits = kv_malloc((size_t)chunk * (size_t)V * sizeof(float), err, "perplexity logits");
    nll_tok = kv_malloc((size_t)(ctx - 1) * sizeof(double), err, "perplexity nll");
    if (!logits || !nll_tok) {
        st = err->code;
        goto done;
    }

    double sum = 0, sum2 = 0;
    int64_t scored = 0;
    double t0 = kv_now();
    if (prog) prog->total = windows * ctx;
    for (int64_t w = 0; w < windows; w++) {
        const int32_t *win = ids + w * ctx;
        kv_cache_truncate(cache, 0, 0);
        for (int64_t c0 = 0; c0 < ctx; c0 += chunk) {
            int64_t len = ctx - c0 < chunk ? ctx - c0 : chunk;
            st = kv_model_forward1(m, cache, 0, win + c0, len, KV_LOGITS_ALL, logits, err);
            if (st) goto done;
            /* Row r predicts token c0+r+1 of the window (the last row of the last
             * chunk predicts nothing). */
            int64_t rows = c0 + len < ctx ? len : len - 1;
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                const float *row = logits + (size_t)r * (size_t)V;
                int32_t tgt = win[c0 + r + 1];
                nll_tok[c0 + r] = kv_logsumexp(row, V) - (double)row[tgt];
            }
            if (prog) kv_progress_update(prog, w * ctx + c0 + len);
        }
        for (int64_t t = 0; t < ctx - 1; t++) {
            sum += nll_tok[t];
            sum2 += nll_tok[t] * nll_tok[t];
        }
        scored += ctx - 1;
    }
    double secs = kv_now() - t0;
    if (prog) kv_progress_end(prog, windows * ctx);

    res->tokens = scored;
    res->windows = windows;
    res->ctx = ctx;
    res->dropped = n - windows * ctx;
    res->nll = sum / (double)scored;
    double var = sum2 / (double)scored - res->nll * res->nll;
    res->nll_stderr = scored > 1 && var > 0 ? sqrt(var * (double)scored / (double)(scored - 1) / (double)scored) : 0;
    res->ppl = exp(res->nll);
    res->seconds = secs;
    res->tokens_per_second = secs > 0 ? (double)(windows * ctx) / secs : 0;
    st = KV_OK;
done:
    kv_cache_free(cache);
    free(logits);
    free(nll_tok);
    return st;
}
