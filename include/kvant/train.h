/* train.h — training a Qwen3-architecture model on CPU: the training forward and
 * backward pass, AdamW, token shards, and the `kvant train` loop.
 *
 * Pipeline stage: train (the testbed of issue 5) and, later, calibrate (EfficientQAT
 * trains quantization scales through the same backward pass).
 *
 * The four-struct shape again: kv_config (hyper-parameters), the parameters (fp32
 * master copies in ONE allocation carved by a size table of kv_param_info, gradients
 * in a second allocation carved by the same table), the run state (activations kept
 * for backward, sized once per batch shape) and kv_tmodel tying them together.
 *
 * Math (what transformers' Qwen3ForCausalLM computes in fp32, op for op):
 *   x = E[id]
 *   per layer: h = RMSNorm(x) ; q,k,v = h Wq^T, h Wk^T, h Wv^T
 *              q,k = RMSNorm_head(q), RMSNorm_head(k) ; q,k = RoPE(q,k)
 *              a = softmax(q k^T / sqrt(head_dim), causal) v   (grouped-query)
 *              x = x + a Wo^T
 *              h = RMSNorm(x) ; x = x + (silu(h Wg^T) * (h Wu^T)) Wd^T
 *   logits = RMSNorm(x) W_lm^T (W_lm = E when tied)
 *   loss = mean over tokens with target >= 0 of -log softmax(logits)[target]
 *
 * Subsets: every parameter tensor carries a requires_grad flag (backward skips the
 * weight-gradient GEMM of a frozen tensor but still propagates through it), and a
 * linear layer's weight can be supplied by a hook (kv_linear_hook): the forward uses
 * the weight the hook materialises and the backward hands the hook dL/dW, which it
 * turns into gradients of its own parameters (EfficientQAT: scales and zeros through
 * a straight-through estimator).
 *
 * Threads: OpenMP above row-range kernels, every output owned by one thread and summed
 * in a fixed order, so loss and gradients are bitwise independent of the thread count.
 * Nothing here prints; errors are kv_status + kv_err. */
#ifndef KVANT_TRAIN_H
#define KVANT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "kvant/config.h"
#include "kvant/err.h"
#include "kvant/tensor.h"

/* ---- parameters -------------------------------------------------------------------- */

/* The linear layers of one block, in the order of the size table. */
typedef enum {
    KV_LIN_Q = 0,
    KV_LIN_K,
    KV_LIN_V,
    KV_LIN_O,
    KV_LIN_GATE,
    KV_LIN_UP,
    KV_LIN_DOWN,
    KV_LIN_COUNT
} kv_lin_kind;

/* One row of the size table: a parameter tensor and where it lives. */
typedef struct {
    char name[96];     /* Hugging Face name, e.g. "model.layers.0.mlp.up_proj.weight" */
    int ndim;          /* 1 or 2 */
    int64_t shape[2];  /* PyTorch order; a linear weight is [n_out, n_in] */
    int64_t numel;
    size_t offset;     /* floats from the start of the parameter (and gradient) block */
    int requires_grad; /* 0: its gradient is neither computed nor touched */
    int decay;         /* AdamW weight decay applies (2-D tensors; never norms) */
} kv_param_info;

typedef struct kv_tmodel kv_tmodel;

/* A model for cfg with parameters zeroed. Supported: Qwen3/Qwen2/Llama shapes without
 * biases, default RoPE; anything else is KV_EUNSUPPORTED naming the feature. */
kv_status kv_tmodel_new(const kv_config *cfg, kv_tmodel **out, kv_err *err);
/* Parameters from a Hugging Face checkpoint directory (bf16/f16/f32 widened to fp32). */
kv_status kv_tmodel_load_hf(const char *dir, kv_tmodel **out, kv_err *err);
/* Random init: linear weights and embeddings ~ N(0, std), o_proj and down_proj
 * ~ N(0, std / sqrt(2 n_layers)) (GPT-2's residual scaling), norms = 1. Fixed by seed. */
void kv_tmodel_init_random(kv_tmodel *m, uint64_t seed, double std);
void kv_tmodel_free(kv_tmodel *m); /* accepts NULL and half-built models */

const kv_config *kv_tmodel_config(const kv_tmodel *m);
int kv_tmodel_n_tensors(const kv_tmodel *m);
const kv_param_info *kv_tmodel_tensor(const kv_tmodel *m, int i);
int kv_tmodel_find(const kv_tmodel *m, const char *name); /* index or -1 */
int64_t kv_tmodel_n_params(const kv_tmodel *m);
/* Floats in the parameter block (tensors padded to 16 floats): the size of the gradient
 * block and of each AdamW moment. */
int64_t kv_tmodel_block_floats(const kv_tmodel *m);
float *kv_tmodel_params(kv_tmodel *m); /* [block floats] */
float *kv_tmodel_grads(kv_tmodel *m);  /* [block floats], same carving */
void kv_tmodel_set_requires_grad(kv_tmodel *m, int i, int on);
void kv_tmodel_zero_grad(kv_tmodel *m);
/* Index of the weight of layer l's linear `kind` in the size table. */
int kv_tmodel_linear_index(const kv_tmodel *m, int64_t layer, kv_lin_kind kind);

/* ---- linear-weight hook (EfficientQAT and friends) ---------------------------------- */

typedef struct {
    void *ctx;
    /* Write the weight layer `layer`'s linear `kind` uses, w[n_out, n_in], as a function
     * of the hook's own parameters. Called once per forward for every hooked layer. */
    kv_status (*weight)(void *ctx, int64_t layer, kv_lin_kind kind, float *w, int64_t n_out,
                        int64_t n_in, kv_err *err);
    /* Receive dw[n_out, n_in] = dL/dW of the weight `weight` produced (scaled like every
     * other gradient) and accumulate the hook's own gradients. Called from backward. */
    kv_status (*grad)(void *ctx, int64_t layer, kv_lin_kind kind, const float *dw, int64_t n_out,
                      int64_t n_in, kv_err *err);
    /* Which layers are hooked (NULL: all). */
    int (*wants)(void *ctx, int64_t layer, kv_lin_kind kind);
} kv_linear_hook;

/* Install (hook != NULL) or remove a hook. Hooked layers ignore their own weight
 * tensor (set its requires_grad to 0 if it should not be trained). */
kv_status kv_tmodel_set_linear_hook(kv_tmodel *m, const kv_linear_hook *hook, kv_err *err);

/* ---- forward / backward ------------------------------------------------------------- */

/* ids[B, T] in, targets[B, T] (next-token ids; < 0 means "no loss here"); B
 * independent causal sequences starting at position 0. Keeps every activation backward
 * needs. *loss = mean over the n_valid targets >= 0 (0 when none), accumulated in double.
 * Ids and targets are checked against the vocabulary (KV_ERANGE). */
kv_status kv_tmodel_forward(kv_tmodel *m, const int32_t *ids, const int32_t *targets, int64_t B,
                            int64_t T, double *loss, kv_err *err);
/* Output rows of the last forward, [B*T, vocab]: the logits of rows whose target is < 0,
 * softmax probabilities of rows with a target (kept for backward). Valid until backward,
 * which turns them into gradients. Pass targets = NULL to get every row's logits. */
const float *kv_tmodel_logits(const kv_tmodel *m);
/* grads += scale * d(loss of the last forward)/d(params), for tensors with requires_grad
 * (gradient accumulation over micro-batches: scale = 1 / n_micro). */
kv_status kv_tmodel_backward(kv_tmodel *m, double scale, kv_err *err);

/* ---- optimizer ---------------------------------------------------------------------- */

typedef struct {
    double beta1, beta2, eps, weight_decay;
} kv_adamw;

/* sqrt(sum of squares) of the gradients of trainable tensors, in double, fixed order. */
double kv_tmodel_grad_norm(const kv_tmodel *m);
void kv_tmodel_scale_grads(kv_tmodel *m, float s);
/* One AdamW step (torch.optim.AdamW semantics, decoupled decay on tensors with decay):
 * step is 1-based; m1, m2 are [block floats] moments carved like the parameters. */
void kv_adamw_step(kv_tmodel *m, float *m1, float *m2, int64_t step, double lr,
                   const kv_adamw *o);
/* Linear warmup over `warmup` steps to lr_max, then cosine to lr_min at `total`. step is
 * 1-based. */
double kv_lr_at(int64_t step, int64_t warmup, int64_t total, double lr_max, double lr_min);

/* ---- Hugging Face export ------------------------------------------------------------ */

/* Write dir/config.json (Qwen3ForCausalLM, ...) and dir/model.safetensors with dtype
 * F32 or BF16 (round to nearest even). dir must exist. Atomic per file. */
kv_status kv_tmodel_export_hf(const kv_tmodel *m, const char *dir, kv_dtype dtype,
                              int64_t bos_id, int64_t eos_id, kv_err *err);

/* ---- token shards ------------------------------------------------------------------- */

/* A token shard file:
 *
 *   | 0  "KVTOKENS" | 8 u32 version (1) | 12 u32 bytes per id (2|4) | 16 u64 n_tokens |
 *   | 24 u64 vocab_size | 32 i64 document separator id | 40 .. 64 zero |
 *   | 64: n_tokens ids, little endian, uint16 or uint32 |
 *
 * Documents are separated by the separator id (<|endoftext|>). A directory of shards
 * holds train_NNNN.bin, val_NNNN.bin and manifest.json. */
#define KV_SHARD_MAGIC "KVTOKENS"
#define KV_SHARD_HEADER 64

typedef struct {
    char path[512];
    const void *map; /* whole file, read-only */
    size_t map_len;
    int id_bytes;
    int64_t n_tokens, vocab_size, sep_id;
} kv_shard;

kv_status kv_shard_open(const char *path, kv_shard *s, kv_err *err);
void kv_shard_close(kv_shard *s);
static inline int32_t kv_shard_id(const kv_shard *s, int64_t i) {
    const unsigned char *p = (const unsigned char *)s->map + KV_SHARD_HEADER;
    if (s->id_bytes == 2) return (int32_t)(p[2 * i] | (p[2 * i + 1] << 8));
    return (int32_t)((uint32_t)p[4 * i] | ((uint32_t)p[4 * i + 1] << 8) |
                     ((uint32_t)p[4 * i + 2] << 16) | ((uint32_t)p[4 * i + 3] << 24));
}
/* Write ids[n] as one shard (atomic). */
kv_status kv_shard_write(const char *path, const int32_t *ids, int64_t n, int64_t vocab_size,
                         int64_t sep_id, kv_err *err);

/* Project Gutenberg cleaning, in place: drop a UTF-8 byte-order mark, CRLF/CR -> LF,
 * keep only the text between the "*** START OF ..." and "*** END OF ..." lines when
 * present. Returns the new length. */
size_t kv_text_clean(char *text, size_t len);

typedef struct {
    const char *tokenizer;  /* tokenizer.json or a directory holding one */
    const char *out_dir;    /* created if missing */
    double val_fraction;    /* the last fraction of each input's tokens, 0 .. 0.5 */
    int64_t shard_tokens;   /* max tokens per shard (<= 0: 1 << 28) */
    int quiet;              /* no progress on stderr */
} kv_pretok_opts;

/* Tokenize files[n] (cleaned by kv_text_clean, documents joined by <|endoftext|>) into
 * out_dir/train_*.bin, val_*.bin and manifest.json. */
kv_status kv_pretokenize(const kv_pretok_opts *o, const char *const *files, int n, kv_err *err);

/* ---- the training loop (`kvant train`) ---------------------------------------------- */

typedef struct {
    /* data and output */
    char data[512];      /* pretokenized directory (kvant pretokenize) */
    char tokenizer[512]; /* tokenizer.json copied into the output ("" = from manifest) */
    char out[512];       /* output directory: HF checkpoint, train_state.bin, logs */
    /* model */
    int64_t hidden, layers, heads, kv_heads, head_dim, intermediate, vocab;
    double rope_theta, init_std;
    int tie;
    /* optimisation */
    int64_t seq, batch, accum, steps, warmup;
    double lr, min_lr, beta1, beta2, eps, weight_decay, clip;
    uint64_t seed;
    /* bookkeeping */
    int64_t eval_every, eval_batches, ckpt_every, log_every;
    kv_dtype out_dtype; /* F32 or BF16 */
    int resume, quiet;
    int64_t die_at_step; /* testing aid: raise SIGKILL mid-step (0 = never) */
} kv_train_opts;

void kv_train_opts_default(kv_train_opts *o);
/* Set one option by name ("hidden", "lr", "out", ... the CLI's --names without dashes,
 * '-' or '_' alike). Bad values are KV_EINVAL naming the key. */
kv_status kv_train_opts_set(kv_train_opts *o, const char *key, const char *value, kv_err *err);
/* "key = value" lines (# comments) through kv_train_opts_set. */
kv_status kv_train_opts_file(kv_train_opts *o, const char *path, kv_err *err);
/* Train; writes o->out/{config.json, tokenizer.json, model.safetensors, train_state.bin,
 * train_log.csv, loss.svg, train_args.txt}. Progress on stderr unless quiet. */
kv_status kv_train_run(const kv_train_opts *o, kv_err *err);

#endif
