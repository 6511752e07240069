/* bench_common.h — timing and machine-ceiling helpers shared by bench/ programs.
 *
 * A benchmark figure means little without the ceiling it is measured against, taken
 * in the same run: kvb_read_bandwidth() streams a buffer far larger than the caches
 * (DRAM read GB/s, the bound for decode), kvb_fp32_peak() runs independent FMA chains
 * (FP32 GFLOP/s, the bound for prefill). Both use every OpenMP thread. */
#ifndef KVANT_BENCH_COMMON_H
#define KVANT_BENCH_COMMON_H

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double kvb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sum of buf[a..b) as 64-bit lanes, 4 zmm accumulators: AVX-512 loads keep enough
 * bytes in flight per core for the memory system, which scalar loads do not. */
__attribute__((target("avx512f"))) static inline uint64_t kvb_sum_avx512(const uint64_t *buf,
                                                                         size_t a, size_t b) {
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = a; i < b; i += 32) {
        s0 = _mm512_add_epi64(s0, _mm512_load_si512((const void *)(buf + i)));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512((const void *)(buf + i + 8)));
        s2 = _mm512_add_epi64(s2, _mm512_load_si512((const void *)(buf + i + 16)));
        s3 = _mm512_add_epi64(s3, _mm512_load_si512((const void *)(buf + i + 24)));
    }
    s0 = _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3));
    return (uint64_t)_mm512_reduce_add_epi64(s0);
}

__attribute__((target("avx2"))) static inline uint64_t kvb_sum_avx2(const uint64_t *buf, size_t a,
                                                                    size_t b) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = a; i < b; i += 16) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256((const void *)(buf + i)));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256((const void *)(buf + i + 4)));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256((const void *)(buf + i + 8)));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256((const void *)(buf + i + 12)));
    }
    uint64_t o[4];
    _mm256_storeu_si256((void *)o, _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3)));
    return o[0] + o[1] + o[2] + o[3];
}

static inline uint64_t kvb_sum_scalar(const uint64_t *buf, size_t a, size_t b) {
    uint64_t s[8] = {0};
    for (size_t i = a; i < b; i += 8)
        for (int j = 0; j < 8; j++) s[j] += buf[i + j];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

/* One read pass over buf (64-byte aligned, `bytes` long), each OpenMP thread summing a
 * contiguous share: the bytes/s it reached. */
static inline double kvb_read_pass(const void *buf, size_t bytes) {
    const uint64_t *w = buf;
    size_t n = (bytes / sizeof(uint64_t)) & ~(size_t)63;
    __builtin_cpu_init();
    int isa = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
    static volatile uint64_t sink;
    double t0 = kvb_now();
    uint64_t total = 0;
#pragma omp parallel reduction(+ : total)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        size_t per = (n / (size_t)nt) & ~(size_t)63;
        size_t a = per * (size_t)t, b = t == nt - 1 ? n : a + per;
        total += isa == 2 ? kvb_sum_avx512(w, a, b) : isa == 1 ? kvb_sum_avx2(w, a, b) : kvb_sum_scalar(w, a, b);
    }
    double dt = kvb_now() - t0;
    sink += total;
    return (double)(n * sizeof(uint64_t)) / dt;
}

/* Best-of-`reps` read bandwidth (bytes/s) over a fresh `bytes` buffer. Returns 0 if the
 * buffer cannot be had. On a shared VM this ceiling moves by 2x from second to second
 * (other tenants): a figure measured against it should pair each of its own runs with
 * a kvb_read_pass taken just before (bench_qmatmul does). */
static inline double kvb_read_bandwidth(size_t bytes, int reps) {
    size_t n = (bytes / sizeof(uint64_t)) & ~(size_t)63;
    uint64_t *buf = aligned_alloc(64, n * sizeof(uint64_t));
    if (!buf) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double bw = kvb_read_pass(buf, n * sizeof(uint64_t));
        if (bw > best) best = bw;
    }
    free(buf);
    return best;
}

/* FP32 FMA peak (flop/s) with all threads: 24 independent accumulators per thread,
 * AVX-512 when the CPU has it, else AVX2+FMA, else 0 (unknown). The target attributes
 * keep the rest of the program free of ISA flags; the caller checks the CPU first. */
__attribute__((target("avx512f"))) static inline double kvb_fma_loop_avx512(long iters) {
    double flops = 0;
#pragma omp parallel reduction(+ : flops)
    {
        __m512 acc[24], m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
        for (int j = 0; j < 24; j++) acc[j] = _mm512_set1_ps((float)(j + 1));
        for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
            for (int j = 0; j < 24; j++) acc[j] = _mm512_fmadd_ps(acc[j], m, a);
        }
        float s = 0;
        for (int j = 0; j < 24; j++) s += _mm512_cvtss_f32(acc[j]);
        flops += (double)iters * 24 * 16 * 2 + (s == 12345.0f);
    }
    return flops;
}

__attribute__((target("avx2,fma"))) static inline double kvb_fma_loop_avx2(long iters) {
    double flops = 0;
#pragma omp parallel reduction(+ : flops)
    {
        __m256 acc[12], m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
        for (int j = 0; j < 12; j++) acc[j] = _mm256_set1_ps((float)(j + 1));
        for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
            for (int j = 0; j < 12; j++) acc[j] = _mm256_fmadd_ps(acc[j], m, a);
        }
        float s = 0;
        for (int j = 0; j < 12; j++) s += _mm256_cvtss_f32(acc[j]);
        flops += (double)iters * 12 * 8 * 2 + (s == 12345.0f);
    }
    return flops;
}

static inline double kvb_fp32_peak(void) {
    __builtin_cpu_init();
    int a512 = __builtin_cpu_supports("avx512f");
    int a2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!a512 && !a2) return 0;
    double best = 0;
    for (int r = 0; r < 8; r++) { /* best of 8 short runs: the ceiling, not the average */
        long iters = 5 * 1000 * 1000;
        double t0 = kvb_now();
        double f = a512 ? kvb_fma_loop_avx512(iters) : kvb_fma_loop_avx2(iters);
        double v = f / (kvb_now() - t0);
        if (v > best) best = v;
    }
    return best;
}

#endif
