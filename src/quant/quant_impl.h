/* quant_impl.h — what the format files of src/quant share (not public API).
 *
 * formats.c holds the traits table and the checked entry points; fmt_int.c and
 * fmt_mx.c hold one format family each. Packed data is little-endian; parts are read
 * with memcpy so views into a map need no alignment. */
#ifndef KVANT_QUANT_IMPL_H
#define KVANT_QUANT_IMPL_H

#include <string.h>

#include "kvant/quant.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kvant's packed formats are read with little-endian loads"
#endif

static inline uint32_t kvq_ld32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint16_t kvq_ld16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* "name" or "(unnamed)" for messages. */
static inline const char *kvq_nm(const char *name) {
    return name && *name ? name : "(unnamed tensor)";
}

/* fmt_int.c */
kv_status kvq_int_quantize(kv_qtensor *qt, const float *w, int64_t r0, int64_t r1,
                           const kv_quant_opts *opts, const char *name, kv_err *err);
void kvq_int_dequantize(const kv_qtensor *qt, int64_t r0, int64_t r1, float *out);
kv_status kvq_int_validate(const kv_qtensor *qt, const char *name, kv_err *err);

/* fmt_mx.c */
kv_status kvq_mxfp4_quantize(kv_qtensor *qt, const float *w, int64_t r0, int64_t r1,
                             const kv_quant_opts *opts, const char *name, kv_err *err);
kv_status kvq_mxint4_quantize(kv_qtensor *qt, const float *w, int64_t r0, int64_t r1,
                              const kv_quant_opts *opts, const char *name, kv_err *err);
void kvq_mxfp4_dequantize(const kv_qtensor *qt, int64_t r0, int64_t r1, float *out);
void kvq_mxint4_dequantize(const kv_qtensor *qt, int64_t r0, int64_t r1, float *out);
kv_status kvq_mx_validate(const kv_qtensor *qt, const char *name, kv_err *err);

#endif
