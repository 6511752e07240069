/* tensor.c — element types and scalar conversions (see include/kvant/tensor.h).
 *
 * Pipeline stage: everywhere. Checkpoints hold bf16/f16/f32; activations are f32.
 * The f16 conversions implement IEEE 754 binary16 with round-to-nearest-even,
 * subnormals, Inf and NaN, in integer arithmetic so the result does not depend on
 * the FPU mode or on F16C being present; tests compare them with the compiler's
 * _Float16. */
#include "kvant/tensor.h"

#include <stdio.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[KV_DTYPE_COUNT] = {
    [KV_DTYPE_F32] = {"F32", 4}, [KV_DTYPE_F16] = {"F16", 2},  [KV_DTYPE_BF16] = {"BF16", 2},
    [KV_DTYPE_F64] = {"F64", 8}, [KV_DTYPE_I8] = {"I8", 1},    [KV_DTYPE_U8] = {"U8", 1},
    [KV_DTYPE_I16] = {"I16", 2}, [KV_DTYPE_I32] = {"I32", 4},  [KV_DTYPE_I64] = {"I64", 8},
    [KV_DTYPE_BOOL] = {"BOOL", 1},
};

size_t kv_dtype_size(kv_dtype t) {
    return (unsigned)t < KV_DTYPE_COUNT ? dtype_info[t].size : 0;
}

const char *kv_dtype_name(kv_dtype t) {
    return (unsigned)t < KV_DTYPE_COUNT ? dtype_info[t].name : "?";
}

int kv_dtype_from_name(const char *s, kv_dtype *out) {
    if (!s) return -1;
    for (int i = 0; i < KV_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            if (out) *out = (kv_dtype)i;
            return 0;
        }
    }
    return -1;
}

/* Product of the dims; 0 for any zero dim, 1 for a scalar (ndim 0). Shapes that come
 * from files are overflow-checked at load, so this plain product cannot overflow for
 * a loaded tensor. */
int64_t kv_tensor_numel(const kv_tensor *t) {
    if (!t) return 0;
    int64_t n = 1;
    for (int i = 0; i < t->ndim && i < KV_MAX_DIMS; i++) n *= t->shape[i];
    return n;
}

const char *kv_shape_str(const kv_tensor *t, char *buf, size_t cap) {
    if (!buf || cap == 0) return buf;
    size_t pos = 0;
    int ndim = t ? t->ndim : 0;
    if (ndim < 0) ndim = 0;
    if (ndim > KV_MAX_DIMS) ndim = KV_MAX_DIMS;
    buf[0] = '\0';
    int w = snprintf(buf, cap, "[");
    if (w > 0) pos = (size_t)w;
    for (int i = 0; i < ndim && pos < cap; i++) {
        w = snprintf(buf + pos, cap - pos, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (w < 0) break;
        pos += (size_t)w;
    }
    if (pos < cap) snprintf(buf + pos, cap - pos, "]");
    return buf;
}

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t kv_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        /* NaN: keep sign and top payload bits, force the quiet bit so truncation can
         * never turn it into Inf. */
        return (uint16_t)((u >> 16) | 0x0040u);
    }
    /* Round to nearest even: add 0x7fff plus the lowest kept bit, then truncate.
     * Overflow past the largest finite value correctly carries into Inf. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float kv_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* Inf or NaN (payload kept) */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return bits_f32(sign); /* signed zero */
    /* Subnormal: value = man * 2^-24, exact in f32. Normalise the mantissa. */
    int k = 0;
    while (!(man & 0x400u)) {
        man <<= 1;
        k++;
    }
    /* man << k has its leading bit at position 10: value = 1.f * 2^(-14-k). */
    return bits_f32(sign | ((uint32_t)(127 - 14 - k) << 23) | ((man & 0x3ffu) << 13));
}

uint16_t kv_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
    int32_t e = (int32_t)(a >> 23) - 127 + 15; /* f16 biased exponent */
    if (e >= 31) return (uint16_t)(sign | 0x7c00u); /* |f| >= 2^16: Inf */
    if (e <= 0) {
        /* Result is subnormal (or rounds up to the smallest normal): value is
         * m * 2^-24 with m = M >> (14 - e), M the 24-bit significand. */
        if (a < 0x33000000u) return sign; /* below 2^-25: rounds to zero */
        uint32_t M = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = (uint32_t)(14 - e); /* 14..24 */
        uint32_t m = M >> shift;
        uint32_t rem = M & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (m & 1u))) m++;
        return (uint16_t)(sign | m); /* m == 0x400 is the smallest normal: correct */
    }
    uint32_t h = ((uint32_t)e << 10) | ((a >> 13) & 0x3ffu);
    uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* carry may reach Inf: correct */
    return (uint16_t)(sign | h);
}

/* Elements are read with memcpy: tensors in a safetensors map need not be aligned. */
void kv_to_f32(kv_dtype t, const void *src, float *dst, size_t n) {
    const unsigned char *p = (const unsigned char *)src;
    if (!src || !dst || n == 0) return;
    switch (t) {
    case KV_DTYPE_F32: memcpy(dst, src, n * 4); break;
    case KV_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = kv_bf16_to_f32(h);
        }
        break;
    case KV_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = kv_f16_to_f32(h);
        }
        break;
    case KV_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    case KV_DTYPE_I8:
        for (size_t i = 0; i < n; i++) dst[i] = (float)(int8_t)p[i];
        break;
    case KV_DTYPE_U8:
        for (size_t i = 0; i < n; i++) dst[i] = (float)p[i];
        break;
    case KV_DTYPE_BOOL:
        for (size_t i = 0; i < n; i++) dst[i] = p[i] ? 1.0f : 0.0f;
        break;
    case KV_DTYPE_I16:
        for (size_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = (float)v;
        }
        break;
    case KV_DTYPE_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = (float)v;
        }
        break;
    case KV_DTYPE_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            dst[i] = (float)v;
        }
        break;
    default: break;
    }
}
