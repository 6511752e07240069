/* eval.h — evaluation: perplexity over token windows (GPTQ protocol), and the
 * lm-evaluation-harness tasks (multiple choice, rolling log-likelihood) further down.
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

/* How far a (quantized) model's next-token distributions are from a base model's, over
 * the positions kv_perplexity scores (issue 3): per position, in double from both
 * log-softmaxes, KL(base || model) = sum_v p_base(v) (log p_base(v) - log p_model(v)). */
typedef struct {
    int64_t positions;   /* positions compared (= kv_ppl_result.tokens) */
    double kld_mean;     /* mean KL, nats */
    double kld_p99;      /* 99th percentile of the per-position KL (linear interpolation
                            between order statistics, numpy's default) */
    double kld_max;
    double top1_agree;   /* fraction of positions whose argmax tokens agree (first index
                            on ties) */
    kv_ppl_result base;  /* the base model's perplexity on the same windows */
} kv_kld_result;

/* kv_perplexity of m, with base run over the same windows and chunks, and the
 * divergence of m from base. The two models must share the vocabulary size
 * (KV_EINVAL otherwise). Memory: two chunk x vocab logit buffers and one double per
 * scored position. */
kv_status kv_perplexity_kld(kv_model *m, kv_model *base, const int32_t *ids, int64_t n,
                            const kv_ppl_opts *opts, kv_progress *prog, kv_ppl_result *res,
                            kv_kld_result *kld, kv_err *err);

/* ==== lm-evaluation-harness tasks ====================================================
 *
 * Tasks read data in place from a data directory (../shared/data layout, see each
 * folder's SOURCE.md), build the harness's prompts, and score them as its Hugging Face
 * backend does: each choice is a (context, " " + choice) request, tokenized with
 * _encode_pair (trailing context spaces moved to the continuation, context encoded
 * alone, continuation = encode(context + continuation)[len(context ids):]), inputs
 * truncated from the left to max_length + 1 tokens, log-likelihood = sum of the
 * continuation's log-softmax, is_greedy = every continuation token is the argmax.
 * The choices of a question share one pass over their context (KV-cache copies). */

#include "kvant/tokenizer.h"

typedef struct kv_task kv_task;

typedef enum { KV_TASK_MC = 1, KV_TASK_ROLLING = 2 } kv_task_kind;

typedef struct {
    int64_t limit;   /* first N documents, in file order (MMLU: per subject, as the
                        harness's --limit applies to each subject task); <= 0: all */
    int num_fewshot; /* < 0: the task's default (0) */
} kv_task_opts;

/* One multiple-choice document after prompting. The requests are
 * (context, " " + choices[i]); acc_norm divides by the choice's length in characters. */
typedef struct {
    const char *context;         /* description + few-shot examples + question prompt */
    const char *const *choices;  /* doc_to_choice strings, without the target delimiter */
    int n_choices;
    int gold;                    /* index into choices */
    const char *subject;         /* MMLU subject ("abstract_algebra"), else NULL */
    int64_t record;              /* 0-based record index in its data file */
} kv_mc_doc;

/* One document of a rolling-log-likelihood (perplexity) task. */
typedef struct {
    const char *text;  /* what is scored (WikiText: the harness's detokenized page) */
    int64_t words;     /* word count the harness divides by (of the original page) */
    int64_t bytes;     /* UTF-8 bytes of the original page */
} kv_roll_doc;

/* Task names, NULL-terminated. mmlu_<subject> (e.g. mmlu_anatomy) is accepted too. */
const char *const *kv_task_names(void);
/* data_dir NULL: $KVANT_DATA, else ../shared/data. Unknown name: KV_EINVAL listing
 * the known ones; missing data: KV_ENOTFOUND naming the folder and files expected. */
kv_status kv_task_load(const char *name, const char *data_dir, const kv_task_opts *opts,
                       kv_task **out, kv_err *err);
void kv_task_free(kv_task *t); /* accepts NULL */
const char *kv_task_name(const kv_task *t);
kv_task_kind kv_task_kind_of(const kv_task *t);
int64_t kv_task_n_docs(const kv_task *t);
int kv_task_num_fewshot(const kv_task *t);
const kv_mc_doc *kv_task_mc_doc(const kv_task *t, int64_t i);     /* NULL unless MC */
const kv_roll_doc *kv_task_roll_doc(const kv_task *t, int64_t i); /* NULL unless rolling */
/* Rolling tasks: the GPTQ-protocol text (records joined with "\n\n"). */
const char *kv_task_gptq_text(const kv_task *t, size_t *len);
/* Data files the task read (for content hashes in results). */
int kv_task_n_files(const kv_task *t);
const char *kv_task_file(const kv_task *t, int i);
/* A line for results/README: which data and prompt the task used. */
const char *kv_task_note(const kv_task *t);

/* lm-eval's HFLM._encode_pair (causal). ctx and cont are appended to. */
kv_status kv_encode_pair(const kv_tokenizer *tok, const char *context, size_t context_len,
                         const char *continuation, size_t continuation_len, kv_ids *ctx,
                         kv_ids *cont, kv_err *err);

typedef struct {
    int64_t max_length; /* the harness's max_length; <= 0: max_position_embeddings, else 2048 */
    int batch;          /* documents per forward batch; <= 0: 8 */
    int no_reuse;       /* 1: score each request as its own sequence (the harness's way;
                           the benchmark baseline) */
    int32_t prefix_token; /* rolling tasks: the first window's one-token context, the
                             harness's prefix_token_id (see kv_eval_prefix_token) */
    int64_t gptq_ctx;   /* rolling tasks' GPTQ window; <= 0: 2048 */
    int skip_gptq;      /* 1: rolling tasks only compute the harness metrics */
} kv_eval_opts;

/* The harness's prefix_token_id: tokenizer bos_token, else eos_token, from
 * tokenizer_config.json in model_dir (config.json's ids as fallback). */
kv_status kv_eval_prefix_token(const char *model_dir, const kv_tokenizer *tok, int32_t *id,
                               kv_err *err);

typedef struct {
    char name[24];  /* "acc", "acc_norm", "word_perplexity", ... */
    double value;
    double stderr;  /* NAN where the harness reports N/A */
} kv_metric;

typedef struct {
    char name[96];  /* "piqa", "mmlu", "mmlu_stem", "mmlu_abstract_algebra" */
    int level;      /* 0: the task, 1: MMLU category, 2: MMLU subject */
    int64_t n;      /* documents */
    int n_metrics;
    kv_metric m[4];
} kv_score;

typedef struct {
    int64_t n_docs;
    int n_scores;
    kv_score *scores;    /* [0] is the task as a whole */
    /* per document, for --log-samples and the conformance tests */
    int64_t *req_off;    /* [n_docs + 1]: requests of doc i are req_off[i] .. req_off[i+1] */
    double *ll;          /* [requests] log-likelihood (rolling: one per document) */
    uint8_t *greedy;     /* [requests] (MC only) */
    int32_t *pred;       /* [n_docs] argmax ll (MC) */
    int32_t *pred_norm;  /* [n_docs] argmax ll / characters (MC) */
    int64_t *n_tokens;   /* [n_docs] rolling: tokens scored */
    int has_gptq;
    kv_ppl_result gptq;  /* rolling tasks: GPTQ protocol */
    int64_t tokens_run;  /* tokens through the model (speed figures) */
    double seconds;
} kv_task_result;

kv_status kv_eval_task(kv_model *m, const kv_tokenizer *tok, const kv_task *t,
                       const kv_eval_opts *opts, kv_progress *prog, kv_task_result *res,
                       kv_err *err);
void kv_task_result_free(kv_task_result *r); /* accepts NULL and zeroed structs */

/* Results-file fingerprints. kv_eval_file_sha256: sha256 of a file, 64 hex digits.
 * kv_eval_model_hash: a fast content hash of a checkpoint directory: sha256 over
 * config.json and, for every *.safetensors file in name order, its name, size and
 * JSON header (the header holds every tensor's dtype, shape and byte range; weights
 * are not read, so changed values at identical layout are not detected). */
kv_status kv_eval_file_sha256(const char *path, char hex[65], kv_err *err);
kv_status kv_eval_model_hash(const char *dir, char hex[65], kv_err *err);

/* The harness's metric helpers: mean_stderr (sample std / sqrt n) and
 * pooled_sample_stderr (group of subtasks weighted by size). */
double kv_mean_stderr(const double *x, int64_t n);
double kv_pooled_stderr(const double *stderrs, const int64_t *sizes, int n);

#endif
