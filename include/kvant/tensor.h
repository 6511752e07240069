/* tensor.h — element types and a plain view of a tensor stored in a file.
 *
 * A kv_tensor never owns its data: `data` points into an mmap'd checkpoint (or into
 * a buffer owned by whoever made the view). Shapes follow PyTorch order; a linear
 * layer's weight is [n_out, n_in], row-major. */
#ifndef KVANT_TENSOR_H
#define KVANT_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    KV_DTYPE_F32 = 0,
    KV_DTYPE_F16,
    KV_DTYPE_BF16,
    KV_DTYPE_F64,
    KV_DTYPE_I8,
    KV_DTYPE_U8,
    KV_DTYPE_I16,
    KV_DTYPE_I32,
    KV_DTYPE_I64,
    KV_DTYPE_BOOL,
    KV_DTYPE_COUNT
} kv_dtype;

#define KV_MAX_DIMS 4

typedef struct {
    const char *name;            /* owned by the file/set the tensor came from */
    kv_dtype dtype;
    int ndim;
    int64_t shape[KV_MAX_DIMS];
    const void *data;            /* never NULL for a valid tensor (even 0 elements) */
    size_t nbytes;
    const char *file;            /* path of the file holding it, for messages */
} kv_tensor;

size_t kv_dtype_size(kv_dtype t);
const char *kv_dtype_name(kv_dtype t);            /* "BF16", "F32", ... (safetensors spelling) */
int kv_dtype_from_name(const char *s, kv_dtype *out); /* 0 on success, -1 if unknown */
int64_t kv_tensor_numel(const kv_tensor *t);
/* "[2560, 9728]" into buf; returns buf. */
const char *kv_shape_str(const kv_tensor *t, char *buf, size_t cap);

/* Scalar conversions. bf16 -> f32 is exact; f32 -> bf16 rounds to nearest even
 * (NaN stays NaN). f16 conversions are IEEE binary16, round to nearest even. */
static inline float kv_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
uint16_t kv_f32_to_bf16(float f);
float kv_f16_to_f32(uint16_t h);
uint16_t kv_f32_to_f16(float f);

/* Convert n elements of a BF16/F16/F32 buffer to f32. */
void kv_to_f32(kv_dtype t, const void *src, float *dst, size_t n);

#endif
