/* loglik.h — the request engine behind kv_eval_task (see loglik.c). */
#ifndef KVANT_EVAL_LOGLIK_H
#define KVANT_EVAL_LOGLIK_H

#include "eval/eval_internal.h"

/* One (context, continuation) request in token ids; ctx and cont point into arrays
 * the caller owns. ll / greedy are outputs. */
typedef struct {
    const int32_t *ctx;
    int64_t n_ctx;
    const int32_t *cont;
    int64_t n_cont;
    double ll;
    uint8_t greedy;
} ev_req;

/* Requests [first, first + n) scheduled together; share = 1 when they have one
 * context (the choices of a question) whose cache may be reused. */
typedef struct {
    int64_t first, n;
    int share;
} ev_group;

typedef struct {
    int64_t max_length; /* the harness's max_length */
    int batch;          /* cache slots (sequences) per batch */
} ev_loglik_opts;

/* Score every request of every group (groups in the order given; progress counts
 * requests). */
kv_status ev_loglik_run(kv_model *m, ev_req *req, int64_t n_req, const ev_group *groups,
                        int64_t n_groups, const ev_loglik_opts *o, kv_progress *prog,
                        int64_t *tokens_run, kv_err *err);

#endif
