/* perplexity.c — mean NLL over non-overlapping windows (GPTQ protocol), scored in
 * chunks with the KV cache so logits never hold more than chunk x vocab floats; and,
 * given a base model, the KL divergence of the model's next-token distributions from
 * the base's over the same positions (issue 3). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvant/eval.h"

double kv_logsumexp(const float *row, int64_t n) {
    float mx = row[0];
    for (int64_t i = 1; i < n; i++)
        if (row[i] > mx) mx = row[i];
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += exp((double)row[i] - (double)mx);
    return (double)mx + log(s);
}

static int64_t argmax(const float *row, int64_t n) {
    int64_t a = 0;
    for (int64_t i = 1; i < n; i++)
        if (row[i] > row[a]) a = i;
    return a;
}

/* KL(p || q) of two logit rows, in double: sum_v p(v) (log p(v) - log q(v)) with
 * log p = row - logsumexp(row). Identical rows give exactly 0. */
static double kl_row(const float *p, double lse_p, const float *q, double lse_q, int64_t n) {
    double s = 0;
    for (int64_t v = 0; v < n; v++) {
        double lp = (double)p[v] - lse_p, lq = (double)q[v] - lse_q;
        s += exp(lp) * (lp - lq);
    }
    return s;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void finish(kv_ppl_result *res, double sum, double sum2, int64_t scored, int64_t windows,
                   int64_t ctx, int64_t n, double secs) {
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
}

/* The windows of kv_perplexity for m and, when base is set, for base too with the
 * per-position KL and top-1 agreement. */
static kv_status run(kv_model *m, kv_model *base, const int32_t *ids, int64_t n,
                     const kv_ppl_opts *opts, kv_progress *prog, kv_ppl_result *res,
                     kv_kld_result *kld, kv_err *err) {
    const kv_config *cfg = kv_model_config(m);
    int64_t ctx = opts && opts->ctx > 0 ? opts->ctx : 2048;
    int64_t chunk = opts && opts->chunk > 0 ? opts->chunk : 512;
    if (n < 2) return kv_err_set(err, KV_EINVAL, "perplexity: need at least 2 tokens, got %lld", (long long)n);
    if (base && kv_model_config(base)->vocab_size != cfg->vocab_size)
        return kv_err_set(err, KV_EINVAL, "perplexity: the base model's vocabulary (%lld tokens) "
                          "differs from the model's (%lld); KL divergence needs the same one",
                          (long long)kv_model_config(base)->vocab_size, (long long)cfg->vocab_size);
    /* Targets are never fed to the model, so check every id here. */
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
            return kv_err_set(err, KV_ERANGE, "token id %d at position %lld is outside the vocabulary [0, %lld)",
                              ids[i], (long long)i, (long long)cfg->vocab_size);
    if (n < ctx) ctx = n;
    if (chunk > ctx) chunk = ctx;
    int64_t windows = n / ctx;
    int64_t V = cfg->vocab_size;

    kv_cache *cache = NULL, *bcache = NULL;
    float *logits = NULL, *blogits = NULL;
    double *nll_tok = NULL, *bnll_tok = NULL, *kl = NULL;
    uint8_t *agree = NULL;
    kv_status st = kv_cache_new(m, 1, ctx, &cache, err);
    if (!st && base) st = kv_cache_new(base, 1, ctx, &bcache, err);
    if (st) goto done;
    logits = kv_malloc((size_t)chunk * (size_t)V * sizeof(float), err, "perplexity logits");
    nll_tok = kv_malloc((size_t)(ctx - 1) * sizeof(double), err, "perplexity nll");
    if (!logits || !nll_tok) {
        st = err->code;
        goto done;
    }
    if (base) {
        blogits = kv_malloc((size_t)chunk * (size_t)V * sizeof(float), err, "perplexity base logits");
        bnll_tok = kv_malloc((size_t)(ctx - 1) * sizeof(double), err, "perplexity base nll");
        kl = kv_malloc((size_t)(windows * (ctx - 1)) * sizeof(double), err, "perplexity KL");
        agree = kv_malloc((size_t)(ctx - 1), err, "perplexity top-1");
        if (!blogits || !bnll_tok || !kl || !agree) {
            st = err->code;
            goto done;
        }
    }

    double sum = 0, sum2 = 0, bsum = 0, bsum2 = 0;
    int64_t scored = 0, n_agree = 0;
    double t0 = kv_now();
    if (prog) prog->total = windows * ctx;
    for (int64_t w = 0; w < windows; w++) {
        const int32_t *win = ids + w * ctx;
        kv_cache_truncate(cache, 0, 0);
        if (bcache) kv_cache_truncate(bcache, 0, 0);
        for (int64_t c0 = 0; c0 < ctx; c0 += chunk) {
            int64_t len = ctx - c0 < chunk ? ctx - c0 : chunk;
            st = kv_model_forward1(m, cache, 0, win + c0, len, KV_LOGITS_ALL, logits, err);
            if (st) goto done;
            if (base && (st = kv_model_forward1(base, bcache, 0, win + c0, len, KV_LOGITS_ALL,
                                                blogits, err))) {
                kv_err_prefix(err, "base model");
                goto done;
            }
            /* Row r predicts token c0+r+1 of the window (the last row of the last
             * chunk predicts nothing). */
            int64_t rows = c0 + len < ctx ? len : len - 1;
            double *klw = kl ? kl + w * (ctx - 1) : NULL;
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                const float *row = logits + (size_t)r * (size_t)V;
                int32_t tgt = win[c0 + r + 1];
                double lse = kv_logsumexp(row, V);
                nll_tok[c0 + r] = lse - (double)row[tgt];
                if (base) {
                    const float *brow = blogits + (size_t)r * (size_t)V;
                    double blse = kv_logsumexp(brow, V);
                    bnll_tok[c0 + r] = blse - (double)brow[tgt];
                    klw[c0 + r] = kl_row(brow, blse, row, lse, V);
                    agree[c0 + r] = argmax(row, V) == argmax(brow, V);
                }
            }
            if (prog) kv_progress_update(prog, w * ctx + c0 + len);
        }
        for (int64_t t = 0; t < ctx - 1; t++) {
            sum += nll_tok[t];
            sum2 += nll_tok[t] * nll_tok[t];
            if (base) {
                bsum += bnll_tok[t];
                bsum2 += bnll_tok[t] * bnll_tok[t];
                n_agree += agree[t];
            }
        }
        scored += ctx - 1;
    }
    double secs = kv_now() - t0;
    if (prog) kv_progress_end(prog, windows * ctx);
    finish(res, sum, sum2, scored, windows, ctx, n, secs);
    if (base) {
        memset(kld, 0, sizeof *kld);
        finish(&kld->base, bsum, bsum2, scored, windows, ctx, n, secs);
        double ks = 0;
        for (int64_t i = 0; i < scored; i++) ks += kl[i];
        kld->positions = scored;
        kld->kld_mean = ks / (double)scored;
        kld->top1_agree = (double)n_agree / (double)scored;
        qsort(kl, (size_t)scored, sizeof(double), cmp_double);
        double pos = 0.99 * (double)(scored - 1);
        int64_t lo = (int64_t)floor(pos), hi = lo + 1 < scored ? lo + 1 : lo;
        kld->kld_p99 = kl[lo] + (pos - (double)lo) * (kl[hi] - kl[lo]);
        kld->kld_max = kl[scored - 1];
    }
    st = KV_OK;
done:
    kv_cache_free(cache);
    kv_cache_free(bcache);
    free(logits);
    free(blogits);
    free(nll_tok);
    free(bnll_tok);
    free(kl);
    free(agree);
    return st;
}

kv_status kv_perplexity(kv_model *m, const int32_t *ids, int64_t n, const kv_ppl_opts *opts,
                        kv_progress *prog, kv_ppl_result *res, kv_err *err) {
    return run(m, NULL, ids, n, opts, prog, res, NULL, err);
}

kv_status kv_perplexity_kld(kv_model *m, kv_model *base, const int32_t *ids, int64_t n,
                            const kv_ppl_opts *opts, kv_progress *prog, kv_ppl_result *res,
                            kv_kld_result *kld, kv_err *err) {
    if (!base || !kld) return kv_err_set(err, KV_EINVAL, "perplexity: KL divergence needs a base model");
    return run(m, base, ids, n, opts, prog, res, kld, err);
}
