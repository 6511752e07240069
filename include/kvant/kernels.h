/* kernels.h — the compute kernels the forward pass uses, dispatched once at run time.
 *
 * Each op has a scalar `ref` (the specification) and SIMD versions (avx2, avx512) in
 * files of their own; kv_kernels_init() picks the best the CPU supports, and
 * KVANT_ISA=ref|avx2|avx512 forces one (falling back to the best supported one below
 * it when the CPU lacks it). Kernels take a row range and never start threads: callers
 * split rows across OpenMP threads, each output owned by one thread, so results do not
 * depend on the thread count.
 *
 * Precision: inputs and outputs are fp32, weights BF16/F16/F32 read in place and
 * widened exactly; every sum accumulates in fp32. A SIMD kernel equals its ref up to
 * the reassociation of those sums (and, for exp, a few ulp). */
#ifndef KVANT_KERNELS_H
#define KVANT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kvant/err.h"
#include "kvant/quant.h"
#include "kvant/tensor.h"

typedef enum { KV_ISA_REF = 0, KV_ISA_AVX2, KV_ISA_AVX512, KV_ISA_COUNT } kv_isa;

/* Detect once (thread-safe to call repeatedly); returns the ISA in use. */
kv_isa kv_kernels_init(void);
kv_isa kv_kernels_isa(void);
/* Switch the table in use (tests, benchmarks): the requested ISA or the best supported
 * one below it. Not for use while a forward pass runs. Returns the ISA now in use. */
kv_isa kv_kernels_set(kv_isa isa);
const char *kv_isa_name(kv_isa isa);

/* A weight matrix read in place: W[n_out, n_in], row-major, rows ld elements apart
 * (ld >= n_in; ld == n_in for a checkpoint tensor). dtype is F32, F16 or BF16. */
typedef struct {
    kv_dtype dtype;
    const void *data;
    int64_t n_out, n_in, ld;
} kv_wmat;

/* A quantized weight matrix W[n_out, n_in] in the layout the kernels read (issue 3).
 * Every format is stored row by row, groups along n_in, so a GEMV streams each weight
 * row once, front to back:
 *
 *   q       [n_out][row_bytes]  row o's B-bit elements as one LSB-first bit string:
 *                               element k at bits [B*k, B*k + B); row_bytes = n_in*B/8.
 *                               B = 4 (int4, mxfp4, mxint4): byte j = element 2j in
 *                               bits 0-3, element 2j+1 in bits 4-7.
 *   scales  [n_out][n_groups]   INT: F16 scale s; MX: E8M0 byte (X = 2^(byte - 127))
 *   zeros   [n_out][n_groups]   INT: U8 zero point z; MX: NULL
 *
 * Dequantized value (bit-exact with kv_dequantize_ref): INT s * (float)(q - z);
 * mxfp4 kv_e2m1_values[c] * X; mxint4 (sign-extended c) / 4 * X, each one f32 product.
 *
 * MX checkpoints already have this layout (_blocks rows are these bit strings, _scales
 * these bytes): kv_qmat_init points into the checkpoint's map, nothing is copied.
 * GPTQ's qweight [n_in*B/32, n_out] holds row o of W in column o, one int32 word per
 * 32/B inputs: row o's bit string is that column's words in order, so the kernel
 * layout is the int32 transpose of qweight (same bytes, same size). kv_qmat_init makes
 * that copy once at load (the scales transposed too, the B-bit zeros widened to one
 * byte). Reading qweight in place would make a row-wise GEMV gather one word per
 * n_out*4 bytes; see bench/bench_qmatmul.c for the measured cost of each choice. */
typedef struct {
    kv_qformat qf;
    int64_t n_out, n_in;
    int64_t n_groups;       /* n_in / qf.group */
    int64_t row_bytes;      /* n_in * bits / 8 */
    const uint8_t *q;       /* [n_out][row_bytes]; owned copies are followed by 64 bytes of
                               zero padding so kernels may load 16 bytes at any unit */
    const uint8_t *scales;  /* INT: F16 [n_out][n_groups]; MX: E8M0 [n_out][n_groups] */
    const uint8_t *zeros;   /* INT: U8 [n_out][n_groups]; MX: NULL */
    void *owned;            /* the INT copy (one allocation), or NULL */
    size_t owned_bytes;
} kv_qmat;

/* Build the kernel view of a packed tensor (every part's data set; validate it first).
 * INT: one allocation of about the packed size, filled with OpenMP threads; MX: views.
 * KV_ENOMEM states the size. */
kv_status kv_qmat_init(kv_qmat *qm, const kv_qtensor *qt, const char *name, kv_err *err);
void kv_qmat_free(kv_qmat *qm); /* accepts NULL and zeroed structs */
/* Bytes one pass over W reads: packed elements, scales and zeros. */
size_t kv_qmat_bytes(const kv_qmat *qm);
/* Dequantize rows [r0, r1) into out[r1 - r0][n_in] (scalar, the specification the
 * kernels follow; equal to kv_dequantize_ref of the tensor it came from). */
void kv_qmat_dequantize(const kv_qmat *qm, int64_t r0, int64_t r1, float *out);

/* Floats of per-thread scratch a matmul needs (the packed weight panel); the caller
 * gives each thread its own, 64-byte aligned. */
#define KV_MATMUL_WORK_FLOATS ((size_t)256 * 256)

typedef struct {
    kv_isa isa;
    /* y[i, r] = sum_k x[i, k] * W[r, k] (+ bias[r]) for i in [0, m), r in [r0, r1).
     * x: [m, n_in] rows ldx apart; y: [m, n_out] rows ldy apart; bias: [n_out] fp32
     * or NULL; work: KV_MATMUL_WORK_FLOATS floats private to the calling thread.
     * m == 1..4 streams W once (memory-bound GEMV); larger m converts W panels to
     * fp32 in `work` and runs a register-blocked GEMM. */
    void (*matmul)(const float *x, int64_t m, int64_t ldx, const kv_wmat *w,
                   const float *bias, int64_t r0, int64_t r1, float *y, int64_t ldy,
                   float *work);
    /* out[n] = w * (x * (1 / sqrt(mean(x^2) + eps))), the op order of transformers'
     * RMSNorm in fp32 (mean accumulated in double, then rounded). out may be x. */
    void (*rmsnorm)(const float *x, const float *w, int64_t n, float eps, float *out);
    /* Rotate-half RoPE on one head x[2 * half] in place with cos/sin[half]:
     * x1' = x1*cos - x2*sin, x2' = x2*cos + x1*sin (products rounded, then summed). */
    void (*rope)(float *x, const float *cos, const float *sin, int64_t half);
    /* x[n] = exp(x - max) / sum, in place; returns nothing, n >= 1. */
    void (*softmax)(float *x, int64_t n);
    /* out[n] = g / (1 + exp(-g)) * u. out may alias g or u. */
    void (*silu_mul)(const float *g, const float *u, float *out, int64_t n);
    /* sum a[k] * b[k] in fp32. */
    float (*dot)(const float *a, const float *b, int64_t n);
    /* y[k] += a * x[k]. */
    void (*axpy)(float a, const float *x, float *y, int64_t n);
    /* matmul's contract for a quantized W: y[i, r] = sum_k x[i, k] * deq(W)[r, k]
     * (+ bias[r]) with the weights dequantized exactly inside the kernel (fp32
     * activations, fp32 sums). m <= 4: a GEMV streaming each packed row once; larger
     * m: weight blocks dequantized to fp32 in `work` feed the fp32 GEMM microkernel
     * (outputs then equal matmul on the dequantized weights as F32, op for op). */
    void (*qmatmul)(const float *x, int64_t m, int64_t ldx, const kv_qmat *w,
                    const float *bias, int64_t r0, int64_t r1, float *y, int64_t ldy,
                    float *work);
} kv_kernel_ops;

/* ---- the int8-activation ("q8") path for quantized weights ----
 *
 * The fast decode path (issue 3, point 8): the exact qmatmul above dequantizes every
 * weight to fp32 and is compute-bound at 2-4 bits per weight; this one quantizes each
 * activation row once per call to int8 and runs integer dot products against the
 * weight codes (llama.cpp's q8 scheme), at the cost of rounding the activations. It is
 * an option (kv_model_set_act_mode), not the default: perplexity and evaluation use
 * the exact path.
 *
 * Specification (kv_qmatmul_q8_ref; every SIMD version computes the same integers and
 * differs only in the order of the fp32 sums):
 *   activations, per row and per block of KV_Q8_BLOCK inputs:
 *     amax = max |x_k|;  non-finite x in the block: d = NaN, x8 = 0;
 *     amax < 2^-100: d = 0, x8 = 0;  else d = amax / 127, id = 127 / amax (fp32),
 *     x8_k = rne(x_k * id) in [-127, 127], xs = sum x8_k (the block's integer sum)
 *   weights, as unsigned codes c with an offset z and a scale s per group:
 *     intB-gG  c = q, z = the group's zero point, s = its fp16 scale
 *     mxfp4    c = 2 * E2M1 value + 12 in [0, 24], z = 12, s = 2^(e - 127) / 2
 *     mxint4   c = k + 8 in [0, 15] (k the signed nibble), z = 8, s = 2^(e - 127) / 4
 *     so w = s * (c - z) exactly, the value kv_dequantize_ref gives.
 *   y[i, r] = sum_g s_g * (sum_{b in g} d_b * (float)(sum_{k in b} c_k x8_k))
 *           - sum_g (s_g * z_g) * X_g   (+ bias[r]),   X_g = sum_{b in g} d_b * xs_b
 * The integer sums are exact; the result equals sum_k w_k * (d * x8_k) up to fp32
 * rounding of a sum of n_in / 32 + n_groups terms. Each output depends only on its
 * activation row and weight row, never on m, the tile or the row split. */
#define KV_Q8_BLOCK 32

typedef void (*kv_qmatmul_fn)(const float *x, int64_t m, int64_t ldx, const kv_qmat *w,
                              const float *bias, int64_t r0, int64_t r1, float *y, int64_t ldy,
                              float *work);

/* The scalar specification (any m; `work` unused, may be NULL). */
void kv_qmatmul_q8_ref(const float *x, int64_t m, int64_t ldx, const kv_qmat *w,
                       const float *bias, int64_t r0, int64_t r1, float *y, int64_t ldy,
                       float *work);
/* The q8 kernel of one ISA, or NULL when this CPU (or build) lacks it: ref always;
 * avx2 (vpmaddubsw + vpmaddwd) with the AVX2 table's features; avx512 (vpdpbusd) needs
 * AVX-512 VNNI, VBMI and GFNI besides the AVX-512 table's F/BW/VL/DQ. Same arguments as
 * kv_kernel_ops.qmatmul; `work` is KV_MATMUL_WORK_FLOATS floats private to the
 * calling thread. */
kv_qmatmul_fn kv_qmatmul_q8_for(kv_isa isa);
/* What the fast path runs with the table `ops`: the q8 kernel of ops' ISA; for the
 * AVX-512 table on a CPU without VNNI/VBMI/GFNI, the AVX2 q8 kernel; ops->qmatmul itself
 * (exact) only where no q8 kernel can run. */
kv_qmatmul_fn kv_kernels_qmatmul_q8(const kv_kernel_ops *ops);

/* The table in use (calls kv_kernels_init). */
const kv_kernel_ops *kv_kernels(void);
/* The table of one ISA, or NULL when this CPU (or build) lacks it. */
const kv_kernel_ops *kv_kernels_for(kv_isa isa);

/* The per-ISA tables (defined in src/kernels/kernels_<isa>.c). */
extern const kv_kernel_ops kv_kernels_ref;
extern const kv_kernel_ops kv_kernels_avx2;
extern const kv_kernel_ops kv_kernels_avx512;

#endif
