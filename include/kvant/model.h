/* model.h — a decoder-only transformer (Qwen3, Qwen2, Llama) loaded from a Hugging
 * Face directory, and its forward pass on CPU.
 *
 * Pipeline stage: load -> run. Weights stay in the mmap'd safetensors (bf16, f16 or
 * f32, read in place); activations are fp32. The four-struct shape: kv_config
 * (hyper-parameters), the weights (views into the map), the run state (scratch
 * buffers, sized once per batch shape) and the model that ties them together. */
#ifndef KVANT_MODEL_H
#define KVANT_MODEL_H

#include <stdint.h>

#include "kvant/config.h"
#include "kvant/err.h"
#include "kvant/quant.h"

typedef struct kv_model kv_model;
typedef struct kv_cache kv_cache;

kv_status kv_model_load(const char *dir, kv_model **out, kv_err *err);
void kv_model_free(kv_model *m); /* accepts NULL and half-built models */
const kv_config *kv_model_config(const kv_model *m);
int64_t kv_model_n_params(const kv_model *m);

/* Quantize every block linear layer (q, k, v, o, gate, up, down) of a dense model in
 * memory, round to nearest, into the packed form `kvant quantize` writes (the same
 * bits), and run on it from then on; nothing is written to disk. For benchmarks and
 * what-if runs. The dense weights stay where they were (the caller's or the mapped
 * file's). Errors: an already quantized model, a group size that does not divide a
 * layer's input dimension, NaN/Inf weights (naming the tensor). A failed call leaves
 * the model half converted: free it (a second call refuses it). opts may be NULL. */
kv_status kv_model_quantize(kv_model *m, kv_qformat qf, const kv_quant_opts *opts, kv_err *err);

/* How the quantized linear layers treat their fp32 activations (kernels.h, "the
 * int8-activation path"). Dense layers are not affected. The default is exact:
 * perplexity and evaluation measure the quantized weights, not the kernel. */
typedef enum {
    KV_ACT_EXACT = 0, /* fp32 activations, weights dequantized exactly (every m) */
    KV_ACT_Q8_DECODE, /* int8 activations per block of 32 when a call has <= 4 rows
                         (decode: memory-bound, where it pays); prefill stays exact */
    KV_ACT_Q8,        /* int8 activations for every call: a prefill then computes, row
                         for row, what q8 decoding would (ppl --fast measures its cost) */
} kv_act_mode;
/* Takes effect on the next forward; an unknown mode means KV_ACT_EXACT. Where the CPU
 * has no q8 kernel (kv_kernels_qmatmul_q8) the exact kernel runs in every mode. */
void kv_model_set_act_mode(kv_model *m, kv_act_mode mode);
kv_act_mode kv_model_act_mode(const kv_model *m);

/* A KV cache with n_slots independent sequences of up to max_len tokens each. */
kv_status kv_cache_new(const kv_model *m, int n_slots, int64_t max_len, kv_cache **out,
                       kv_err *err);
void kv_cache_free(kv_cache *c);
int64_t kv_cache_len(const kv_cache *c, int slot);
/* Keep only the first len tokens of a slot (len <= current length). */
void kv_cache_truncate(kv_cache *c, int slot, int64_t len);
/* Make slot dst hold the first len tokens of slot src (shared-context reuse). */
kv_status kv_cache_copy_prefix(kv_cache *c, int src, int dst, int64_t len, kv_err *err);

/* A batch: sequence b appends ids[b][0..n[b]) to cache slot slot[b], at positions
 * kv_cache_len(slot[b]) onward. Slots in one batch must be distinct. */
typedef struct {
    int n_seq;
    const int *slot;
    const int32_t *const *ids;
    const int64_t *n;
} kv_batch;

typedef enum {
    KV_LOGITS_NONE = 0, /* only fill the cache */
    KV_LOGITS_LAST,     /* logits[b, vocab]: last token of each sequence */
    KV_LOGITS_ALL,      /* logits[sum n, vocab]: every token, sequences in batch order */
} kv_logits_mode;

/* Run the batch. Token ids are checked against vocab_size (KV_ERANGE naming the
 * id); positions against the cache capacity. logits may be NULL with KV_LOGITS_NONE. */
kv_status kv_model_forward(kv_model *m, kv_cache *c, const kv_batch *b, kv_logits_mode mode,
                           float *logits, kv_err *err);

/* One sequence convenience wrapper. */
kv_status kv_model_forward1(kv_model *m, kv_cache *c, int slot, const int32_t *ids, int64_t n,
                            kv_logits_mode mode, float *logits, kv_err *err);

#endif
