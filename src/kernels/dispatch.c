/* dispatch.c — choose the kernel table once at run time.
 *
 * The CPU is asked (__builtin_cpu_supports) what it can run; KVANT_ISA=ref|avx2|avx512
 * forces a table, falling back to the best supported one below it when the CPU lacks
 * the request, so a forced ISA can never crash with an illegal instruction. Only the
 * *_avx2.c / *_avx512.c files are built with ISA flags; this file is plain C. */
#include "kernels/kernels_internal.h"

#include <stdlib.h>
#include <string.h>

static int cpu_has(kv_isa isa) {
    switch (isa) {
    case KV_ISA_REF: return 1;
    case KV_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    case KV_ISA_AVX512:
        /* the avx512 file is compiled with bf16 enabled, but only uses F/BW/VL/DQ
         * intrinsics; f16c and fma are implied by every AVX-512 CPU. */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               cpu_has(KV_ISA_AVX2);
    default: return 0;
    }
}

static const kv_kernel_ops *table_of(kv_isa isa) {
    switch (isa) {
    case KV_ISA_AVX2: return &kv_kernels_avx2;
    case KV_ISA_AVX512: return &kv_kernels_avx512;
    default: return &kv_kernels_ref;
    }
}

static const kv_kernel_ops *_Atomic active;

kv_isa kv_kernels_init(void) {
    const kv_kernel_ops *t = active;
    if (t) return t->isa;
    __builtin_cpu_init();
    kv_isa want = KV_ISA_AVX512;
    const char *env = getenv("KVANT_ISA");
    if (env && *env) {
        if (!strcmp(env, "ref")) want = KV_ISA_REF;
        else if (!strcmp(env, "avx2")) want = KV_ISA_AVX2;
        else if (!strcmp(env, "avx512")) want = KV_ISA_AVX512;
        /* an unknown value keeps the best supported ISA */
    }
    while (want > KV_ISA_REF && !cpu_has(want)) want = (kv_isa)(want - 1);
    /* Racing initialisers compute the same answer, so a plain store is enough. */
    active = table_of(want);
    return want;
}

kv_isa kv_kernels_isa(void) { return kv_kernels_init(); }

kv_isa kv_kernels_set(kv_isa isa) {
    if (isa < KV_ISA_REF || isa >= KV_ISA_COUNT) isa = KV_ISA_AVX512;
    __builtin_cpu_init();
    while (isa > KV_ISA_REF && !cpu_has(isa)) isa = (kv_isa)(isa - 1);
    active = table_of(isa);
    return isa;
}

const kv_kernel_ops *kv_kernels(void) {
    const kv_kernel_ops *t = active;
    if (!t) {
        kv_kernels_init();
        t = active;
    }
    return t;
}

const kv_kernel_ops *kv_kernels_for(kv_isa isa) {
    if (isa < KV_ISA_REF || isa >= KV_ISA_COUNT) return NULL;
    __builtin_cpu_init();
    return cpu_has(isa) ? table_of(isa) : NULL;
}

/* The q8 path (kernels.h). Its AVX-512 kernel also needs VNNI (vpdpbusd) and VBMI
 * (vpermb, vpmultishiftqb): Ice Lake and later, Zen 4 and later; Skylake-X and Cascade
 * Lake run the AVX2 q8 kernel instead (the same integers, so the same numerics up to
 * fp32 summation order). */
kv_qmatmul_fn kv_qmatmul_q8_for(kv_isa isa) {
    __builtin_cpu_init();
    switch (isa) {
    case KV_ISA_REF: return kv_qmatmul_q8_ref;
    case KV_ISA_AVX2: return cpu_has(KV_ISA_AVX2) ? kv_qmatmul_q8_avx2 : NULL;
    case KV_ISA_AVX512:
        return cpu_has(KV_ISA_AVX512) && __builtin_cpu_supports("avx512vnni") &&
                       __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni")
                   ? kv_qmatmul_q8_avx512
                   : NULL;
    default: return NULL;
    }
}

kv_qmatmul_fn kv_kernels_qmatmul_q8(const kv_kernel_ops *ops) {
    kv_qmatmul_fn f = kv_qmatmul_q8_for(ops->isa);
    if (!f && ops->isa == KV_ISA_AVX512) f = kv_qmatmul_q8_for(KV_ISA_AVX2);
    return f ? f : ops->qmatmul;
}

const char *kv_isa_name(kv_isa isa) {
    switch (isa) {
    case KV_ISA_REF: return "ref";
    case KV_ISA_AVX2: return "avx2";
    case KV_ISA_AVX512: return "avx512";
    default: return "unknown";
    }
}
