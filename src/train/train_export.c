/* train_export.c — a trained kv_tmodel as a Hugging Face checkpoint directory
 * (config.json + model.safetensors) that transformers' from_pretrained and kvant's own
 * kv_model_load read.
 *
 * Pipeline stage: train -> load. config.json is written in the transformers-4 spelling
 * (rope_theta, torch_dtype) that both transformers 4 and 5 accept; model.safetensors goes
 * through kv_st_writer (src/io/st_writer.c), tensors in size-table order, F32 as stored
 * or BF16 rounded to nearest even. A tied model writes no lm_head.weight, as
 * save_pretrained does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvant/fileio.h"
#include "kvant/st_writer.h"
#include "kvant/train.h"

static const char *model_type(kv_arch a) {
    switch (a) {
    case KV_ARCH_QWEN2: return "qwen2";
    case KV_ARCH_LLAMA: return "llama";
    default: return "qwen3";
    }
}

static const char *arch_class(kv_arch a) {
    switch (a) {
    case KV_ARCH_QWEN2: return "Qwen2ForCausalLM";
    case KV_ARCH_LLAMA: return "LlamaForCausalLM";
    default: return "Qwen3ForCausalLM";
    }
}

kv_status kv_tmodel_export_hf(const kv_tmodel *m, const char *dir, kv_dtype dtype, int64_t bos_id,
                              int64_t eos_id, kv_err *err) {
    if (dtype != KV_DTYPE_F32 && dtype != KV_DTYPE_BF16)
        return kv_err_set(err, KV_EINVAL, "train: export: dtype %s (F32 or BF16 only)", kv_dtype_name(dtype));
    const kv_config *c = kv_tmodel_config(m);
    char path[1024];
    char js[4096];
    int n = snprintf(js, sizeof js,
        "{\n"
        "  \"architectures\": [\"%s\"],\n"
        "  \"model_type\": \"%s\",\n"
        "  \"attention_bias\": false,\n"
        "  \"attention_dropout\": 0.0,\n"
        "  \"bos_token_id\": %lld,\n"
        "  \"eos_token_id\": %lld,\n"
        "  \"head_dim\": %lld,\n"
        "  \"hidden_act\": \"silu\",\n"
        "  \"hidden_size\": %lld,\n"
        "  \"initializer_range\": 0.02,\n"
        "  \"intermediate_size\": %lld,\n"
        "  \"max_position_embeddings\": %lld,\n"
        "  \"num_attention_heads\": %lld,\n"
        "  \"num_hidden_layers\": %lld,\n"
        "  \"num_key_value_heads\": %lld,\n"
        "  \"rms_norm_eps\": %.17g,\n"
        "  \"rope_scaling\": null,\n"
        "  \"rope_theta\": %.17g,\n"
        "  \"sliding_window\": null,\n"
        "  \"tie_word_embeddings\": %s,\n"
        "  \"torch_dtype\": \"%s\",\n"
        "  \"use_cache\": true,\n"
        "  \"use_sliding_window\": false,\n"
        "  \"vocab_size\": %lld\n"
        "}\n",
        arch_class(c->arch), model_type(c->arch), (long long)bos_id, (long long)eos_id,
        (long long)c->head_dim, (long long)c->hidden_size, (long long)c->intermediate_size,
        (long long)c->max_position_embeddings, (long long)c->n_heads, (long long)c->n_layers,
        (long long)c->n_kv_heads, c->rms_norm_eps, c->rope_theta,
        c->tie_word_embeddings ? "true" : "false", dtype == KV_DTYPE_BF16 ? "bfloat16" : "float32",
        (long long)c->vocab_size);
    if (n < 0 || (size_t)n >= sizeof js) return kv_err_set(err, KV_EINVAL, "train: export: config too long");
    kv_status st = kv_path_join(path, sizeof path, dir, "config.json", err);
    if (!st) st = kv_write_file_atomic(path, js, (size_t)n, err);
    if (st) return st;

    kv_st_writer *w = NULL;
    uint16_t *half = NULL;
    kv_tmodel *mm = (kv_tmodel *)m; /* kv_tmodel_params is not const; nothing is written */
    const float *pbase = kv_tmodel_params(mm);
    if (dtype == KV_DTYPE_BF16) {
        half = kv_malloc((size_t)kv_tmodel_block_floats(m) * sizeof(uint16_t), err, "train: export: bf16 copy");
        if (!half) return KV_ENOMEM;
        for (int64_t i = 0; i < kv_tmodel_block_floats(m); i++) half[i] = kv_f32_to_bf16(pbase[i]);
    }
    st = kv_st_writer_new(&w, err);
    if (!st) st = kv_st_writer_set_meta(w, "format", "pt", err);
    for (int i = 0; !st && i < kv_tmodel_n_tensors(m); i++) {
        const kv_param_info *p = kv_tmodel_tensor(m, i);
        const void *data = half ? (const void *)(half + p->offset) : (const void *)(pbase + p->offset);
        st = kv_st_writer_add(w, p->name, dtype, p->ndim, p->shape, data, NULL, err);
    }
    if (!st) st = kv_st_writer_write_dir(w, dir, 0, NULL, err);
    kv_st_writer_free(w);
    free(half);
    return st;
}
