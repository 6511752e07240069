/* config.h — a model's hyper-parameters, read from a Hugging Face config.json.
 *
 * Pipeline stage: load. No model constant is a literal anywhere else: kernels and
 * the forward pass take everything from kv_config. */
#ifndef KVANT_CONFIG_H
#define KVANT_CONFIG_H

#include <stdint.h>

#include "kvant/err.h"

typedef enum { KV_ARCH_QWEN3 = 0, KV_ARCH_QWEN2, KV_ARCH_LLAMA } kv_arch;

typedef enum { KV_ROPE_DEFAULT = 0, KV_ROPE_LLAMA3, KV_ROPE_LINEAR } kv_rope_type;

typedef struct {
    kv_arch arch;
    char arch_name[64];        /* "Qwen3ForCausalLM", ... */
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t n_layers;          /* num_hidden_layers */
    int64_t n_heads;           /* num_attention_heads */
    int64_t n_kv_heads;        /* num_key_value_heads (defaults to n_heads) */
    int64_t head_dim;          /* head_dim when present, else hidden/heads */
    int64_t vocab_size;
    int64_t max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    kv_rope_type rope_type;
    double rope_factor;              /* llama3 / linear */
    double rope_low_freq_factor;     /* llama3 */
    double rope_high_freq_factor;    /* llama3 */
    int64_t rope_original_max_pos;   /* llama3: original_max_position_embeddings */
    int tie_word_embeddings;
    int attention_bias;              /* q/k/v (and Llama's o) biases; Qwen2 has q/k/v */
    int o_bias;                      /* Llama attention_bias also biases o_proj */
    int mlp_bias;                    /* Llama mlp_bias */
    int qk_norm;                     /* Qwen3 per-head RMSNorm on q and k */
    int64_t bos_token_id;            /* -1 when absent */
    int64_t eos_token_id;            /* -1 when absent (first one if a list) */
    char torch_dtype[16];            /* "bfloat16", "float32", ... or "" */
    char hidden_act[16];             /* must be "silu" */
} kv_config;

/* Parse dir/config.json (path may also be the file itself). */
kv_status kv_config_load(const char *path, kv_config *cfg, kv_err *err);
/* Parse JSON text; `name` is used in messages. */
kv_status kv_config_parse(const char *json, size_t len, const char *name, kv_config *cfg,
                          kv_err *err);
const char *kv_arch_name(kv_arch a);

#endif
