/* safetensors.h — read-only access to .safetensors files and HF shard sets.
 *
 * Pipeline stage: load. A file is opened, fstat'ed, mmap'd read-only and its fd
 * closed; tensors are views into the map (never copied). Every header field is
 * checked against the file size before use: offsets in range, no overlap, sizes
 * matching dtype x shape. */
#ifndef KVANT_SAFETENSORS_H
#define KVANT_SAFETENSORS_H

#include "kvant/err.h"
#include "kvant/tensor.h"

typedef struct kv_st_file kv_st_file; /* one mmap'd .safetensors file */

kv_status kv_st_open(const char *path, kv_st_file **out, kv_err *err);
void kv_st_close(kv_st_file *f); /* accepts NULL */
int kv_st_count(const kv_st_file *f);
const kv_tensor *kv_st_at(const kv_st_file *f, int i);
const kv_tensor *kv_st_find(const kv_st_file *f, const char *name); /* NULL if absent */
const char *kv_st_path(const kv_st_file *f);
/* "__metadata__" string value for key, or NULL. */
const char *kv_st_meta(const kv_st_file *f, const char *key);

/* The weights of a checkpoint directory: model.safetensors, or the shards named
 * by model.safetensors.index.json (every shard it names must exist and hold the
 * tensors the index says it holds). */
typedef struct kv_weights kv_weights;

kv_status kv_weights_open(const char *dir, kv_weights **out, kv_err *err);
void kv_weights_close(kv_weights *w); /* accepts NULL */
const kv_tensor *kv_weights_find(const kv_weights *w, const char *name);
int kv_weights_count(const kv_weights *w);
const kv_tensor *kv_weights_at(const kv_weights *w, int i);
/* Where model code meets the file: the named tensor must exist, have one of the
 * dtypes in dtype_mask (bit (1 << KV_DTYPE_x)) and exactly the given shape, else an
 * error naming the file, tensor, and what differs. */
kv_status kv_weights_get(const kv_weights *w, const char *name, unsigned dtype_mask, int ndim,
                         const int64_t *shape, const kv_tensor **out, kv_err *err);
#define KV_DMASK(t) (1u << (t))
#define KV_DMASK_FLOAT (KV_DMASK(KV_DTYPE_F32) | KV_DMASK(KV_DTYPE_F16) | KV_DMASK(KV_DTYPE_BF16))

#endif
