/* eval.h — evaluation: perplexity over token windows (GPTQ protocol).
 *
 * Pipeline stage: evaluate. The token stream is cut into non-overlapping windows of
 * ctx tokens (the trailing remainder shorter than ctx is dropped, as GPTQ does; an
 * input shorter than ctx is one window). In each window the first token is context
 * only and every later token is predicted from the ones before it in that window. */
#ifndef KVANT_EVAL_H
#define KVANT_EVAL_H

#include <stdint.h>

#include "kvant/err.h"
#include "kvant/model.h"
#include "kvant/progress.h"

typedef struct {
    int64_t ctx;   /* window length; <= 0 means 2048 */
    int64_t chunk; /* tokens per forward call inside a window; <= 0 means 512 */
} kv_ppl_opts;

typedef struct {
    int64_t tokens;      /* tokens predicted (scored) */
    int64_t windows;
    int64_t ctx;         /* window length actually used */
    int64_t dropped;     /* trailing tokens not scored */
    double nll;          /* mean negative log-likelihood, nats */
    double nll_stderr;   /* standard error of that mean over tokens */
    double ppl;          /* exp(nll) */
    double seconds;      /* wall time of the forward passes and scoring */
    double tokens_per_second; /* tokens run through the model per second */
} kv_ppl_result;

/* log-softmax of one row, in double: returns logsumexp(row) so that
 * log p(t) = row[t] - lse. */
double kv_logsumexp(const float *row, int64_t n);

kv_status kv_perplexity(kv_model *m, const int32_t *ids, int64_t n, const kv_ppl_opts *opts,
                        kv_progress *prog, kv_ppl_result *res, kv_err *err);

#endif
