/* model_internal.h — pieces of the model kept out of the public header: a constructor
 * from tensors already in memory (benchmarks build random-weight models with it, no
 * checkpoint on disk) and the per-layer weight views tests may inspect. */
#ifndef KVANT_MODEL_INTERNAL_H
#define KVANT_MODEL_INTERNAL_H

#include "kvant/model.h"
#include "kvant/tensor.h"

/* Build a model from `n` named tensors (HF names, e.g. "model.layers.0.mlp.up_proj.weight")
 * checked against cfg exactly as kv_model_load checks a checkpoint. The tensors' data
 * are borrowed: they must outlive the model. Names are only read during the call. */
kv_status kv_model_from_tensors(const kv_config *cfg, const kv_tensor *tensors, int n,
                                kv_model **out, kv_err *err);

/* Bytes of weights one decode token reads: every linear layer, one embedding row and
 * the lm_head (norms and biases included). */
int64_t kv_model_decode_bytes(const kv_model *m);

#endif
