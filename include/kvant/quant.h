/* quant.h — quantized weight formats: names, exact sizes, packing, reference
 * quantize/dequantize and validation of packed data.
 *
 * Pipeline stage: quantize (writes packed tensors) and load (validates them, and the
 * dequantize_ref here is the specification the kernels are tested against). Issue 3.
 * A linear weight W is [n_out, n_in] row-major; every scale covers consecutive inputs
 * of one output row ("groups along n_in").
 *
 * Formats (one entry each in a traits table indexed by kv_qfmt):
 *
 *   intB-gG  uniform asymmetric integers, w ~ s * (q - z), q, z in [0, 2^B - 1],
 *            one fp16 scale s and one B-bit integer zero z per G inputs;
 *            B in {2, 3, 4, 8}, G in {32, 64, 128}. Quantizer: round to nearest as
 *            AutoGPTQ's Quantizer (find_params + quantize) does it, in f32:
 *              xmin = min(min_g w, 0), xmax = max(max_g w, 0)
 *              (xmin, xmax) = (-1, +1) when both are 0 (all-zero group)
 *              s = (xmax - xmin) / (2^B - 1);  z = rne(-xmin / s)
 *              q = clamp(rne(w / s) + z, 0, 2^B - 1)         (rne: ties to even)
 *            s is stored as fp16 (round to nearest even); q and z are computed with
 *            the f32 s, as AutoGPTQ packs them. Dequantize: fp16->f32(s) * (float)(q-z).
 *
 *   mxfp4    OCP Microscaling Formats (MX) v1.0, section 6: 32 inputs per block, one
 *            E8M0 scale X = 2^e, FP4 E2M1 elements (sec. 5.3.3):
 *              e = clamp(floor(log2(amax)) - 2, -127, 127)       (emax_elem(E2M1) = 2)
 *              P = E2M1(w / X), round to nearest, ties to even, saturating at +-6
 *            E2M1 code = s e1 e0 m (bit 3 sign): magnitudes by code 0..7
 *              {0, 0.5, 1, 1.5, 2, 3, 4, 6}; a negative input that rounds to zero
 *              keeps its sign (code 8, -0), as an IEEE-style conversion does.
 *            All-zero block: the spec's log2(0) is undefined; we store e = -127 (E8M0
 *            byte 0x00), the value microxcaling's rule floor(log2(2^-126)) - 2 clamped
 *            to -127 gives and the byte ggml writes. Any scale decodes to zeros.
 *
 *   mxint4   Blocks of 32, E8M0 scale, 4-bit integer elements as microsoft/microxcaling
 *            defines ElemFormat.int4 (ebits 0, mbits 4, emax 0, max_norm 1.75): the
 *            element is a fixed-point number k/4, k in [-7, 7] (sign-magnitude grid,
 *            multiples of 0.25 up to +-1.75):
 *              e = clamp(floor(log2(amax)) - 0, -127, 127)
 *              k = min(round_half_away(|w / X| * 4), 7) * sign(w)
 *            (microxcaling's _round_mantissa, round='nearest': sign(x)*floor(|x|+0.5);
 *            we compute it exactly with roundf(); microxcaling's f32 floor(x + 0.5)
 *            differs only for x = 0.5 - 2^-25, which it rounds up.)
 *            Stored as a 4-bit two's complement nibble k & 0xF so kernels sign-extend
 *            it; the quantizer never writes -8 (0x8), which decodes to -2.0 if present.
 *            All-zero block: e = -127 as for mxfp4.
 *
 *   --mx-scale mse (KV_MX_SCALE_MSE): per block, try e, e-1, e+1, e-2 (in that order,
 *            each clamped to the E8M0 range and to exponents whose largest element is
 *            finite in f32) and keep the first with the smallest sum of squared errors
 *            (double); the spec's e wins ties, so it is never worse than spec-exact.
 *
 * Bits per weight: kv_qformat_bpw() counts what is stored per weight in the packed
 * tensors below: intB-gG = B + (16 + B)/G (fp16 scale + B-bit packed zero),
 * mx = 4 + 8/32 = 4.25. kv_qformat_bpw_study() is the seed paper's accounting (Table 1:
 * fp16 scale + fp16 zero per group: B + 32/G, so int4-g128 = 4.25, int2-g64 = 2.5).
 *
 * ---- Packed layouts (all little-endian; the tensors a checkpoint holds) ----
 *
 * intB-gG: GPTQ layout, checkpoint_format "gptq_v2" (zero points stored as z, not
 * z - 1). Weight "<m>.weight" becomes four tensors "<m>.qweight", "<m>.qzeros",
 * "<m>.scales", "<m>.g_idx":
 *
 *   qweight  I32 [n_in*B/32, n_out]       column o packs row o of W along n_in
 *   qzeros   I32 [n_in/G, ceil(n_out*B/32)] row g packs z[g, 0..n_out-1] along n_out
 *   scales   F16 [n_in/G, n_out]
 *   g_idx    I32 [n_in]                   g_idx[i] = i / G (what GPTQ loaders expect
 *                                         with desc_act = false)
 *
 *   Bit-string rule (all B): the words of one qweight column (or one qzeros row), in
 *   order, form one LSB-first bit string, bit k = bit (k % 32) of word k / 32, and
 *   value j occupies bits [B*j, B*j + B). For B = 2, 4, 8 values never straddle a
 *   word; for B = 3 the 32 values of three words are (AutoGPTQ's 3-bit packing):
 *
 *     word 3u    |31 30|29 .. 27| ...  |5 4 3|2 1 0|
 *                |q10 lo|  q9   |      | q1  | q0  |     q10 bits 0-1
 *     word 3u+1  |  31  |30 .. 28| ... |3 2 1|  0   |
 *                |q21 b0|  q20   |     | q11 |q10 b2|
 *     word 3u+2  |31 .. 29| ...  |4 3 2| 1 0 |
 *                |  q31   |      | q22 |q21 b1-2|
 *
 *   For B = 4: word t of a column holds q[8t] in bits 0-3 ... q[8t+7] in bits 28-31.
 *   qzeros: when n_out*B is not a multiple of 32 the last word's unused high bits
 *   are 0 (GPTQ tools require n_out % 32 == 0; every model shape meets it).
 *   Zero convention: AutoGPTQ's v1 ("gptq") stores z - 1, which cannot hold z = 0
 *   (it wraps to 2^B - 1 and v1 readers add 1 back, giving 2^B; RTN gives z = 0 for
 *   any group with no negative weight). We store z itself, as gptqmodel's "gptq_v2"
 *   and EfficientQAT's exports do; the quantization_config must then say
 *   "checkpoint_format": "gptq_v2", "sym": false, "desc_act": false (transformers
 *   loads it through gptqmodel).
 *
 * mxfp4 / mxint4: the layout transformers reads for GPT-OSS MXFP4
 * (integrations/mxfp4.py: lut[blk & 0x0F] to even, lut[blk >> 4] to odd elements,
 * ldexp by scale - 127). Weight "<name>" becomes "<name>_blocks", "<name>_scales":
 *
 *   <name>_blocks  U8 [n_out, n_in/32, 16]   one kv_block_mx4 per block
 *   <name>_scales  U8 [n_out, n_in/32]       E8M0: X = 2^(byte - 127); 0xFF = NaN
 *
 *   block byte j:  | 7 6 5 4 | 3 2 1 0 |
 *                  | P[2j+1] | P[2j]   |     low nibble first
 *
 *   (ggml's GGML_TYPE_MXFP4 instead puts P[j] and P[j+16] in byte j, and the scale
 *   byte first; the gguf writer must reorder.)
 */
#ifndef KVANT_QUANT_H
#define KVANT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kvant/err.h"
#include "kvant/tensor.h"

typedef enum {
    KV_QFMT_INT = 0, /* uniform asymmetric intB-gG (bits, group are parameters) */
    KV_QFMT_MXFP4,   /* OCP MX v1.0 MXFP4 */
    KV_QFMT_MXINT4,  /* microxcaling int4 elements, E8M0 scale */
    KV_QFMT_COUNT
} kv_qfmt;

typedef struct {
    kv_qfmt fmt;
    int bits;  /* bits per element: 2, 3, 4, 8 for INT; 4 for MX */
    int group; /* inputs per scale: 32, 64, 128 for INT; 32 for MX */
} kv_qformat;

#define KV_MX_BLOCK 32      /* elements per MX block */
#define KV_MX_E8M0_NAN 0xFF /* the one E8M0 NaN encoding */
#define KV_MX_E8M0_BIAS 127

/* One MX block's elements, 4 bits each (the scale lives in the _scales tensor). */
typedef struct {
    uint8_t qs[KV_MX_BLOCK / 2]; /* byte j: element 2j in bits 0-3, 2j+1 in bits 4-7 */
} kv_block_mx4;
_Static_assert(sizeof(kv_block_mx4) == KV_MX_BLOCK / 2, "kv_block_mx4: 16 bytes");

/* GPTQ packs 32 values of B bits into B int32 words (B = 3: values straddle words). */
#define KV_GPTQ_PACK 32

/* E2M1 magnitudes by code & 7 (OCP MX v1.0 table 5); doubled they are integers
 * {0, 1, 2, 3, 4, 6, 8, 12}, which int8 dot-product kernels can use. */
extern const float kv_e2m1_values[16];

/* ---- names, bits per weight ---- */

/* "int4-g128", "int3-g128", "int2-g64", "int8-g32" (any intB-gG, B in {2,3,4,8},
 * G in {32,64,128}), "mxfp4", "mxint4". KV_EINVAL listing the known names otherwise. */
kv_status kv_qformat_parse(const char *s, kv_qformat *out, kv_err *err);
/* Canonical name into buf ("int4-g128", "mxfp4"); returns buf. */
const char *kv_qformat_name(kv_qformat qf, char *buf, size_t cap);
/* KV_OK if qf is one of the formats above, else KV_EINVAL with a message. */
kv_status kv_qformat_check(kv_qformat qf, kv_err *err);
/* Stored bits per weight of the packed tensors (see the header comment). 0 if invalid. */
double kv_qformat_bpw(kv_qformat qf);
/* The seed paper's accounting: fp16 scale + fp16 zero per group for INT. 0 if invalid. */
double kv_qformat_bpw_study(kv_qformat qf);

/* ---- packed tensors ---- */

#define KV_QPART_MAX 4

typedef struct {
    const char *suffix; /* "qweight", "qzeros", "scales", "g_idx" / "_blocks", "_scales" */
    kv_dtype dtype;     /* I32, F16 or U8 */
    int ndim;
    int64_t shape[3];
    size_t nbytes;
    size_t offset; /* offset of this part in kv_qtensor.owned (64-byte aligned) */
} kv_qpart;

/* A quantized linear weight: its format, shape and packed parts. data[] are read
 * views (into an mmap'd checkpoint, or into `owned`); quantize writes into `owned`. */
typedef struct {
    kv_qformat qf;
    int64_t n_out, n_in;          /* the dense weight's shape [n_out, n_in] */
    int n_parts;
    kv_qpart part[KV_QPART_MAX];  /* layouts as in the header comment */
    const void *data[KV_QPART_MAX];
    void *owned;                  /* one allocation holding every part, or NULL */
} kv_qtensor;

/* Describe the packed parts of an [n_out, n_in] weight (data = NULL, owned = NULL).
 * Errors: invalid format, non-positive dims, group size not dividing n_in,
 * sizes overflowing. `name` (may be NULL) is the weight's name, for messages. */
kv_status kv_qtensor_init(kv_qtensor *qt, kv_qformat qf, int64_t n_out, int64_t n_in,
                          const char *name, kv_err *err);
/* Allocate one zeroed buffer for all parts (owned) and point data[] into it. */
kv_status kv_qtensor_alloc(kv_qtensor *qt, kv_err *err);
/* Frees `owned` (if any) and clears the views; accepts NULL and half-built tensors. */
void kv_qtensor_free(kv_qtensor *qt);
/* Total bytes of all parts. */
size_t kv_qtensor_nbytes(const kv_qtensor *qt);
/* The checkpoint name of part p for weight `weight_name`: INT replaces a trailing
 * ".weight" by "." suffix (or appends it), MX appends the suffix. Returns buf, or
 * NULL when it does not fit. */
const char *kv_qpart_name(const kv_qtensor *qt, int p, const char *weight_name, char *buf,
                          size_t cap);

/* ---- reference quantize / dequantize / validate ---- */

typedef enum {
    KV_MX_SCALE_SPEC = 0, /* OCP MX v1.0: e = floor(log2(amax)) - emax_elem (default) */
    KV_MX_SCALE_MSE,      /* per block, the best of e, e-1, e+1, e-2 in squared error */
} kv_mx_scale;

typedef struct {
    kv_mx_scale mx_scale; /* MX formats only */
} kv_quant_opts;

/* Row alignment a row range [r0, r1) given to quantize must have (r0 % align == 0 and
 * r1 % align == 0 or r1 == n_out), so threads given aligned ranges never share a word:
 * 32 for INT (one qzeros word group), 1 for MX. */
int64_t kv_quant_row_align(kv_qformat qf);

/* Quantize rows [r0, r1) of w (f32 [n_out, n_in], row-major) into qt->owned.
 * name names the tensor in messages. NaN/Inf weights: KV_EINVAL naming the tensor,
 * row and column; an INT scale beyond fp16's range: KV_ERANGE. opts may be NULL. */
kv_status kv_quantize_ref(kv_qtensor *qt, const float *w, int64_t r0, int64_t r1,
                          const kv_quant_opts *opts, const char *name, kv_err *err);
/* Dequantize rows [r0, r1) into out (f32 [r1 - r0, n_in]). Does not validate (an E8M0
 * NaN decodes to NaN); reads every part through memcpy, so views need no alignment. */
kv_status kv_dequantize_ref(const kv_qtensor *qt, int64_t r0, int64_t r1, float *out,
                            kv_err *err);
/* Check packed data: INT scales finite, unused qzeros bits 0, g_idx = i / G; MX
 * scales not 0xFF (NaN) and no block decoding beyond f32's range. KV_EFORMAT with
 * "name: part: what at [index]" on the first problem. */
kv_status kv_qtensor_validate(const kv_qtensor *qt, const char *name, kv_err *err);

/* ---- traits table ---- */

typedef kv_status (*kv_quantize_fn)(kv_qtensor *qt, const float *w, int64_t r0, int64_t r1,
                                    const kv_quant_opts *opts, const char *name, kv_err *err);
typedef void (*kv_dequantize_fn)(const kv_qtensor *qt, int64_t r0, int64_t r1, float *out);
typedef kv_status (*kv_validate_fn)(const kv_qtensor *qt, const char *name, kv_err *err);

typedef struct {
    const char *name;     /* "int" (intB-gG), "mxfp4", "mxint4" */
    int bits;             /* element bits; 0 = a parameter (INT) */
    int block;            /* inputs per scale; 0 = a parameter (INT) */
    int n_parts;          /* packed tensors per weight */
    kv_quantize_fn quantize_ref;     /* arguments already checked by kv_quantize_ref */
    kv_dequantize_fn dequantize_ref; /* arguments already checked */
    kv_validate_fn validate;
} kv_qfmt_traits;

/* NULL for an out-of-range fmt. */
const kv_qfmt_traits *kv_qfmt_traits_get(kv_qfmt fmt);

/* Fill g_idx-style data: out[i] = i / group for i < n_in (int32). */
void kv_quant_fill_g_idx(int32_t *out, int64_t n_in, int group);

#endif
