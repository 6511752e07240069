/* kernels.h — the compute kernels the forward pass uses, dispatched once at run time.
 *
 * Each op has a scalar `ref` (the specification) and SIMD versions (avx2, avx512) in
 * files of their own; kv_kernels_init() picks the best the CPU supports, and
 * KVANT_ISA=ref|avx2|avx512 forces one. Kernels take a row range and never start
 * threads: callers split rows across OpenMP threads, each output owned by one thread,
 * so results do not depend on the thread count. */
#ifndef KVANT_KERNELS_H
#define KVANT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kvant/tensor.h"

typedef enum { KV_ISA_REF = 0, KV_ISA_AVX2, KV_ISA_AVX512 } kv_isa;

/* Detect once (thread-safe to call repeatedly); returns the ISA in use. */
kv_isa kv_kernels_init(void);
kv_isa kv_kernels_isa(void);
const char *kv_isa_name(kv_isa isa);

#endif
