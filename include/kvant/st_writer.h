/* st_writer.h — writing .safetensors files and HF shard sets.
 *
 * Pipeline stage: quantize (the quantized checkpoint) and anything else that saves
 * tensors. The counterpart of safetensors.h: whatever this writes, kv_st_open and
 * kv_weights_open read back.
 *
 * Use: collect tensors with kv_st_writer_add (a borrowed pointer to the bytes) or
 * kv_st_writer_add_stream (a callback that produces the bytes when the file is
 * written, so a writer never needs the whole checkpoint in memory), optionally set
 * "__metadata__" strings, then write one file (kv_st_writer_write) or a checkpoint
 * directory's weights (kv_st_writer_write_dir: model.safetensors, or shards plus
 * model.safetensors.index.json when the data exceed max_shard_bytes).
 *
 * Order: tensors are written in insertion order, both in the header JSON and in the
 * data section (the format allows any order; callers that want a canonical file add
 * tensors sorted by name). Callbacks are therefore called in insertion order, once
 * each, which lets a caller produce several tensors from one computation.
 *
 * File layout written (https://github.com/huggingface/safetensors):
 *
 *   | u64 LE N | N bytes: header JSON, padded with spaces | data, no gaps |
 *
 * N is chosen so that 8 + N is a multiple of 8 (the data start is 8-byte aligned,
 * as the reference writer does, so mmap'd f32/i32/i64 views are aligned). Every file
 * goes through kv_atomic_* (temporary file, fsync, rename): a failure leaves nothing. */
#ifndef KVANT_ST_WRITER_H
#define KVANT_ST_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "kvant/err.h"
#include "kvant/tensor.h"

typedef struct kv_st_writer kv_st_writer;

/* Where a streaming callback puts its bytes; it may call kv_st_sink_write any number
 * of times, and must deliver exactly the tensor's byte count in total. */
typedef struct kv_st_sink kv_st_sink;
kv_status kv_st_sink_write(kv_st_sink *s, const void *data, size_t n, kv_err *err);

/* Produce tensor `index` (its insertion index) into sink. ctx is the caller's. */
typedef kv_status (*kv_st_stream_fn)(void *ctx, int index, kv_st_sink *sink, kv_err *err);

/* Default maximum shard size for kv_st_writer_write_dir: 4 GB (of tensor data). */
#define KV_ST_DEFAULT_SHARD_BYTES ((int64_t)4000000000)
/* Safetensors dims are limited by the reader to KV_MAX_DIMS. */

kv_status kv_st_writer_new(kv_st_writer **out, kv_err *err);
void kv_st_writer_free(kv_st_writer *w); /* accepts NULL */

/* "__metadata__" key/value (strings, copied); setting a key again replaces it. */
kv_status kv_st_writer_set_meta(kv_st_writer *w, const char *key, const char *value,
                                kv_err *err);

/* Add a tensor whose bytes are at data (borrowed: it must stay valid until the last
 * write call). Names are copied; a duplicate name, an empty name, "__metadata__",
 * ndim outside [0, KV_MAX_DIMS], a negative dim or a size overflow is KV_EINVAL.
 * data may be NULL only for a tensor of 0 bytes. Returns the insertion index in
 * *index (may be NULL). */
kv_status kv_st_writer_add(kv_st_writer *w, const char *name, kv_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, int *index, kv_err *err);
/* Same, but the bytes come from fn(ctx, index, sink) when the file is written. */
kv_status kv_st_writer_add_stream(kv_st_writer *w, const char *name, kv_dtype dtype, int ndim,
                                  const int64_t *shape, kv_st_stream_fn fn, void *ctx,
                                  int *index, kv_err *err);

int kv_st_writer_count(const kv_st_writer *w);
/* Bytes of tensor data (sum over tensors, without headers). */
int64_t kv_st_writer_data_bytes(const kv_st_writer *w);

/* Write every tensor into one .safetensors file at path (atomically). */
kv_status kv_st_writer_write(kv_st_writer *w, const char *path, kv_err *err);

/* Write the weights of a checkpoint directory (which must exist). If the data fit
 * in max_shard_bytes (<= 0: KV_ST_DEFAULT_SHARD_BYTES), one file dir/model.safetensors;
 * otherwise shards dir/model-0000k-of-0000n.safetensors, filled greedily in insertion
 * order (a tensor larger than the limit gets a shard of its own), then
 * dir/model.safetensors.index.json ({"metadata": {"total_size": bytes}, "weight_map":
 * {name: shard}}), written last so it never names a missing shard. Returns the number
 * of files in *n_shards (may be NULL). Other files in dir are left alone. */
kv_status kv_st_writer_write_dir(kv_st_writer *w, const char *dir, int64_t max_shard_bytes,
                                 int *n_shards, kv_err *err);

#endif
