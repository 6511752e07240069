/* quantize.h — quantizing a whole checkpoint (and one weight tensor) into the packed
 * formats of quant.h.
 *
 * Pipeline stage: quantize. Issue 3, points 2, 3 and 7. Input: a Hugging Face
 * checkpoint directory (config.json, *.safetensors, tokenizer files). Output: a
 * directory of the same shape whose transformer-block linear weights
 * (model.layers.N.self_attn.{q,k,v,o}_proj.weight, model.layers.N.mlp.{gate,up,down}
 * _proj.weight) are replaced by their packed parts (quant.h: GPTQ qweight/qzeros/
 * scales/g_idx for intB-gG, <name>_blocks/_scales for MX), every other tensor
 * (embeddings, lm_head, norms, biases) copied byte for byte, config.json extended with
 * a "quantization_config", tokenizer files copied.
 *
 * The input is mmap'd and read one row block at a time: memory use is one layer's
 * packed output plus a few MB of f32 rows per thread, whatever the model size.
 *
 * quantization_config written (every format):
 *   "quant_method": "kvant", "format": "int4-g128" | "mxfp4" | ..., "bits", "group_size",
 *   "method": "rtn", "calibration": null, "mx_scale": "spec" | "mse",
 *   "kvant_version", "modules_to_not_convert": [modules kept in full precision]
 *   (transformers' spelling), "quantized_modules": count.
 * intB-gG also: "sym": false, "desc_act": false, "checkpoint_format": "gptq_v2",
 *   "pack_dtype": "int32" (the fields gptqmodel reads; quant.h explains gptq_v2 zeros).
 * mxfp4 also: "block_size": 32, "scale_format": "e8m0" (transformers' Mxfp4Config
 *   itself takes only quant_method "mxfp4" and modules_to_not_convert). */
#ifndef KVANT_QUANTIZE_H
#define KVANT_QUANTIZE_H

#include <stdint.h>

#include "kvant/err.h"
#include "kvant/progress.h"
#include "kvant/quant.h"
#include "kvant/tensor.h"

#ifndef KVANT_VERSION
#define KVANT_VERSION "0.1.0"
#endif

/* Quantization methods (how values are chosen; the format says how they are stored). */
typedef enum {
    KV_QMETHOD_RTN = 0, /* round to nearest, quant.h's kv_quantize_ref */
    KV_QMETHOD_COUNT
} kv_qmethod;

/* "rtn"; KV_EINVAL listing the known methods otherwise. */
kv_status kv_qmethod_parse(const char *s, kv_qmethod *out, kv_err *err);
const char *kv_qmethod_name(kv_qmethod m);

typedef struct {
    kv_qformat qf;           /* required (kv_qformat_parse) */
    kv_qmethod method;       /* KV_QMETHOD_RTN */
    kv_quant_opts qopts;     /* mx_scale (MX formats) */
    int force;               /* replace an existing out_dir (only after success) */
    int64_t max_shard_bytes; /* <= 0: KV_ST_DEFAULT_SHARD_BYTES (4 GB) */
} kv_quantize_opts;

/* What a run did; bits-per-weight figures are exact ratios of the bytes written. */
typedef struct {
    int64_t n_quantized;       /* linear weights quantized */
    int64_t n_copied;          /* tensors copied unchanged */
    int64_t params_quantized;  /* weights in the quantized layers */
    int64_t params_total;      /* every parameter of the input checkpoint */
    int64_t bytes_in_quantized;/* input bytes of the quantized layers (bf16/f16/f32) */
    int64_t bytes_quantized;   /* packed bytes written for them (all parts, with g_idx) */
    int64_t bytes_total;       /* tensor data written (all files, without headers) */
    double bpw_format;         /* kv_qformat_bpw: scales + zeros, without g_idx */
    double bpw_study;          /* kv_qformat_bpw_study: the seed paper's accounting */
    double bpw_layers;         /* 8 * bytes_quantized / params_quantized (with g_idx) */
    double bpw_file;           /* 8 * bytes_total / params_total: the whole checkpoint */
    int n_shards;              /* safetensors files written */
    double seconds;            /* wall time of the whole run */
    double quantize_seconds;   /* time inside quantization (without I/O of copies) */
} kv_quantize_result;

/* Quantize the checkpoint in in_dir into out_dir.
 *
 * out_dir is built as a temporary directory beside it ("<out_dir>.kvant-tmp-XXXXXX")
 * and renamed into place at the end, so a failed run leaves nothing behind. An
 * existing out_dir is an error unless opts->force; even then it is replaced only after
 * the new one is complete, and only if it is empty or holds a config.json (a
 * checkpoint: --force never deletes an arbitrary directory). out_dir equal to in_dir
 * (compared after realpath) or containing it is an error. out_dir's parent must exist.
 *
 * Errors (message "path: what: detail"): unreadable/invalid input (config.json, weights),
 * an input that is already quantized, no quantizable layer, a group size not dividing
 * a layer's input dimension (names the layer and sizes, before anything is written),
 * NaN/Inf weights (names the tensor, row and column), write failures (a full disk).
 * progress may be NULL; res may be NULL. */
kv_status kv_quantize_checkpoint(const char *in_dir, const char *out_dir,
                                 const kv_quantize_opts *opts, kv_progress *progress,
                                 kv_quantize_result *res, kv_err *err);

/* 1 if `name` is a weight kv_quantize_checkpoint quantizes (by name only). */
int kv_quantize_is_target(const char *name);

/* Quantize one dense weight t (F32/F16/BF16, [n_out, n_in]) into qt (initialised and
 * allocated here; free with kv_qtensor_free). Rows are converted to f32 one block at
 * a time per thread; OpenMP threads take row blocks aligned to kv_quant_row_align, so
 * the result does not depend on the thread count and equals kv_quantize_ref on the
 * whole f32 matrix. name (may be NULL) names the tensor in messages. */
kv_status kv_quantize_tensor(const kv_tensor *t, kv_qformat qf, const kv_quant_opts *opts,
                             kv_qtensor *qt, const char *name, kv_err *err);

#endif
