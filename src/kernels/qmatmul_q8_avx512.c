/* qmatmul_q8_avx512.c — the int8-activation ("q8") path for quantized weights on
 * AVX-512 with VNNI (vpdpbusd), VBMI (vpermb, vpermt2b, vpmultishiftqb) and GFNI
 * (vgf2p8affineqb, the int2 bit-pair extraction): every
 * kv_qmat format, the same integers as qmatmul_q8_ref.c (kernels.h gives the
 * specification), fp32 sums in another order.
 *
 * Pipeline stage: run (the fast decode option). Issue 3, point 8. Why: the exact
 * kernel spends ~4x the instructions per weight byte of the bf16 GEMV turning codes
 * into fp32 weights; here a 64-byte weight load becomes unsigned byte codes in 1-3
 * ops and one vpdpbusd multiplies 64 codes by 64 int8 activations.
 *
 * Layout. A row is cut into chunks of E elements (CB bytes): int4/mxfp4/mxint4
 * E = 128 (64 B), int3 E = 256 (96 B), int2 E = 256 (64 B), int8 E = 64 (64 B). Each
 * chunk decodes into NV vectors of 64 codes, and dword lane l of every vector holds
 * elements of the one 32-block starting at element l * E / 16 of the chunk:
 *   4-bit  vector 0 = low nibbles (even elements), 1 = high nibbles (odd elements)
 *          (mxfp4: vpshufb maps the nibble to 2 * E2M1 + 12; mxint4: xor 8 first)
 *   3-bit  qword j of vector t = elements 32j + 8t .. 32j + 8t + 7 (block j): one
 *          vpermt2b over the chunk's two loads puts the six bytes of elements
 *          32j + 16h .. + 15 in qword j, two vpmultishiftqb cut them at 0, 3, ... 21
 *          and 24, 27, ... 45 (vectors 2h, 2h + 1); 256 elements per chunk halve the
 *          per-chunk conversion's share (int3 in L2: 60 -> 67 GB/s)
 *   2-bit  vector t = bits 2t..2t+1 of each byte (element 4p + t in byte p), one
 *          vgf2p8affineqb each (a bit matrix moving bits 2t, 2t+1 to 0, 1)
 *   8-bit  the bytes themselves
 * The activations are quantized once per call (per thread: each owns a row range)
 * and stored in `work` in the same order per chunk (x8 permuted with vpermt2b), with
 * the block scale of every lane (dxv, 16 floats per chunk) and the per-group sums X_g,
 * so the inner loop is: decode, vpdpbusd per vector, then per chunk one int->fp32
 * conversion, a multiply by dxv and an FMA with the lane's weight scale. The int
 * formats' offset term sum_g s_g z_g X_g is one short vector loop per output at the
 * end; MX's offset is the same z for every block, so its dot products start from
 * -z times the lane's activation sum (prepared once per call) and it has none. How a
 * chunk finds its scales (one fp16, several, E8M0) is fixed per tile at compile time.
 *
 * A chunk that runs past n_in (n_in % E != 0) reads its weights with a byte mask and
 * meets zero activations (x8 = 0, d = 0). Full int3 chunks load 128 bytes for 96: the
 * int layout copy is followed by 64 bytes of padding (kernels.h).
 *
 * Each output's order of operations is fixed (chunk c into accumulator c % NACC, the
 * same 16-lane reduction): it does not depend on m, the tile or the row split. One
 * activation row (decode) runs one weight row at a time where the prepared row stays
 * in L1 (not short int2 rows), else 4-row tiles, or for int3/int2 single rows on
 * compact block scales (kernels_internal.h, set_compact, run_rows). m > 4 (the q8 path
 * asked for prefill too, `kvant ppl --fast`) runs the same GEMV on groups of 4
 * activation rows, weight rows blocked by 32 so a block stays in cache while every
 * prepared activation row passes over it. */
/* VNNI, VBMI and GFNI for this file only (the Makefile's AVX-512 flags stay F/BW/VL/DQ):
 * with -mavx512vbmi on the command line gcc itself emits vpermt2b in the exact
 * kernel's qmatmul_avx512.c, which would then fault on AVX-512 CPUs without VBMI. */
#pragma GCC target("avx512vnni,avx512vbmi,gfni")
#include <immintrin.h>

#include "kernels/kernels_internal.h"

#define AI static inline __attribute__((always_inline))

static int elems_of(int kind) { return kind == KQ_Q2 || kind == KQ_Q3 ? 256 : kind == KQ_Q8 ? 64 : 128; }
static int nvec_of(int kind) { return kind == KQ_Q2 || kind == KQ_Q3 ? 4 : kind == KQ_Q8 ? 1 : 2; }

/* Prepared activation row: x8p [nc][NV][64] int8 in decode order, dxv [nc][16] the
 * lane block scales, X [ng] the group sums of kvq8_group_sums. */
typedef struct {
    const int8_t *x8p;
    const float *dxv;
    const int32_t *ofs; /* MX: [nc][16] -z * (the lane's activation sum), see prep_row */
    const float *dxb;   /* compact rows (geom.cm): [nc][E / 32] the block scales alone */
    const float *X;
} prow;

/* Byte permutation indices of the decode order (see the header). */
typedef struct {
    __m512i p[4];
} perms;

static perms make_perms(int kind) {
    perms P;
    int8_t ix[4][64];
    for (int t = 0; t < 4; t++)
        for (int p = 0; p < 64; p++) {
            int e;
            if (kind == KQ_Q3) e = p < 4 ? 4 * p + t : 0; /* qword indices: see prep_row */
            else if (kind == KQ_Q2) e = (4 * p + t) & 127; /* per half: see prep_row */
            else e = 2 * p + t;                         /* 4-bit: even, odd */
            ix[t][p] = (int8_t)(e & 127);
        }
    for (int t = 0; t < 4; t++) P.p[t] = _mm512_loadu_si512(ix[t]);
    return P;
}

typedef struct {
    int kind, B, G, E, NV, CB;
    int64_t n, nc, ncf, ng; /* inputs, chunks, full chunks, groups */
    int multi;              /* several scale groups per chunk (G < E, or MX) */
    int per;                /* multi: groups per chunk, E / G (no division per chunk) */
    int gsh;                /* single: log2(G / E), chunk c is in group c >> gsh */
    __m512i gidx;           /* multi: lane -> group within the chunk */
    __mmask64 tmask, tmask2; /* weight bytes of the partial last chunk: [0, 64), [64, 128) */
    int tgroups;            /* groups in the partial last chunk (multi) */
    __mmask16 gmask, tgmask; /* multi/MX: scale entries of a full, the partial chunk */
    perms pm;               /* the activations' byte order (prep_row) */
    int cm;                 /* compact: single-row GEMV on dxb (set_compact) */
    __m512i bidx;           /* compact: lane -> block within the chunk */
    __mmask16 bmask;        /* compact: the chunk's E / 32 block scales */
} geom;

/* How a chunk finds its weight scales, fixed per tile at compile time: one fp16 scale
 * (G >= E), several (G < E), or MX E8M0 exponents (one per 32-block). */
enum { SG_ONE = 0, SG_MULTI = 1, SG_MX = 2 };

static size_t up64(size_t v) { return (v + 63) & ~(size_t)63; }

static geom make_geom_base(const kv_qmat *w) {
    geom g;
    g.kind = kvq8_kind(w);
    g.B = w->qf.bits;
    g.G = w->qf.group;
    g.E = elems_of(g.kind);
    g.NV = nvec_of(g.kind);
    g.CB = g.E * g.B / 8;
    g.n = w->n_in;
    g.nc = (g.n + g.E - 1) / g.E;
    g.ncf = g.n / g.E;
    g.ng = w->n_groups;
    g.multi = g.G < g.E;
    g.per = g.multi ? g.E / g.G : 1;
    g.gsh = 0;
    while (!g.multi && (g.E << g.gsh) < g.G) g.gsh++;
    int32_t gi[16];
    const int per = g.multi ? 16 / (g.E / g.G) : 16; /* lanes per group */
    for (int l = 0; l < 16; l++) gi[l] = l / per;
    g.gidx = _mm512_loadu_si512(gi);
    const int64_t tail = g.n - g.ncf * g.E; /* elements of the partial chunk, % 32 == 0 */
    const int64_t tb = tail * g.B / 8;
    g.tmask = tb >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << tb) - 1);
    g.tmask2 = tb <= 64 ? 0 : (((__mmask64)1 << (tb - 64)) - 1); /* int3: 96-byte chunks */
    g.tgroups = (int)(tail / g.G);
    g.gmask = (__mmask16)((1u << g.per) - 1u);
    g.tgmask = (__mmask16)((1u << g.tgroups) - 1u);
    g.pm = make_perms(g.kind);
    g.cm = 0;
    int32_t bi[16];
    for (int l = 0; l < 16; l++) bi[l] = l / (16 / (g.E / 32));
    g.bidx = _mm512_loadu_si512(bi);
    g.bmask = (__mmask16)((1u << (g.E / 32)) - 1u);
    return g;
}

/* Bytes of `work` one prepared row takes, and the shared temporaries. */
static int is_mx(int kind) { return kind == KQ_QF4 || kind == KQ_QI4; }
static size_t dxb_bytes(const geom *g) { return up64((size_t)g->nc * (size_t)(g->E / 32) * 4); }
static size_t row_bytes(const geom *g) {
    return up64((size_t)g->nc * (size_t)g->NV * 64) + up64((size_t)g->nc * 64) * (is_mx(g->kind) ? 2 : 1) +
           (g->cm ? dxb_bytes(g) : 0) + up64((size_t)g->ng * 4);
}

/* Rows too long for their prepared activations (x8p, dxv, X) to stay in L1 beside the
 * weight stream, whose codes and block scales alone would: int3 and int2 then run the
 * single-row GEMV on dxb, E/32 block scales a chunk rather than 16 lane copies (spread
 * in registers). 25600-wide int2 at ~45 GB/s: 4-row tiles 38-40 GB/s, compact single
 * rows 42-44; int4 went the other way (45 -> 42), so int4 and MX keep the 4-row tiles.
 * dxv stays prepared for m > 1 (the same floats: the same bits). */
#define KV_Q8_COMPACT_L1 (32 << 10)
static void set_compact(geom *g) {
    if (g->kind != KQ_Q3 && g->kind != KQ_Q2) return; /* 4-bit: 4-row tiles did better */
    if (kvk_gemv_single(row_bytes(g))) return;
    const size_t compact = up64((size_t)g->nc * (size_t)g->NV * 64) + dxb_bytes(g) + up64((size_t)g->ng * 4);
    g->cm = compact <= KV_Q8_COMPACT_L1;
}

static geom make_geom(const kv_qmat *w) {
    geom g = make_geom_base(w);
    set_compact(&g);
    return g;
}
static size_t tmp_bytes(const geom *g) {
    const size_t nbp = (size_t)g->nc * (size_t)g->E / KV_Q8_BLOCK; /* padded blocks */
    return up64((size_t)g->nc * (size_t)g->E) + 2 * up64(nbp * 4);
}

/* Lane j of the result = the max (op 0) or the int32 sum (op 1) of the 16 lanes of v[j]:
 * four rounds, each pairing the vectors and folding every group of 2s lanes in half
 * (s = 8, 4, 2, 1), about 3 instructions a vector instead of 8 for a reduction each. */
AI __m512i hfold16(int op, __m512i v[16]) {
    /* lane o of round r, half h: from a (o < 8) or b (+16), lane (o % 8) / s * 2s + h s
     * + o % s, s = 8 >> r */
    static const int32_t idx[4][2][16] = {
        {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
         {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
        {{0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27},
         {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31}},
        {{0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29},
         {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31}},
        {{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30},
         {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}},
    };
    for (int r = 0, n = 16; r < 4; r++, n /= 2) {
        const __m512i ia = _mm512_loadu_si512(idx[r][0]), ib = _mm512_loadu_si512(idx[r][1]);
        for (int i = 0; i < n / 2; i++) {
            __m512i x = _mm512_permutex2var_epi32(v[2 * i], ia, v[2 * i + 1]);
            __m512i y = _mm512_permutex2var_epi32(v[2 * i], ib, v[2 * i + 1]);
            v[i] = op ? _mm512_add_epi32(x, y)
                      : _mm512_castps_si512(_mm512_max_ps(_mm512_castsi512_ps(x), _mm512_castsi512_ps(y)));
        }
    }
    return v[0];
}

/* Quantize x[n] (kvq8_quant_block's rules, the same bits) into x8[nc*E] (zero padded),
 * d[] and xs[] per block (padded blocks: 0), 16 blocks at a time: their maxima and
 * sums folded together (hfold16) and one vector division for their scales. */
static void quant_row(const geom *g, const float *x, int8_t *x8, float *d, int32_t *xs) {
    const int64_t nb = g->n / KV_Q8_BLOCK, nbp = g->nc * g->E / KV_Q8_BLOCK;
    const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
    const __m512 c127 = _mm512_set1_ps(127.0f);
    for (int64_t b0 = 0; b0 < nb; b0 += 16) {
        const int cnt = nb - b0 < 16 ? (int)(nb - b0) : 16;
        const __mmask16 live = (__mmask16)((1u << cnt) - 1u);
        __m512i m[16];
        __mmask16 bad = 0;
        for (int j = 0; j < 16; j++) {
            m[j] = _mm512_setzero_si512();
            if (j >= cnt) continue;
            const float *xb = x + (b0 + j) * KV_Q8_BLOCK;
            __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
            /* QNaN, SNaN, +Inf, -Inf */
            if (_mm512_fpclass_ps_mask(v0, 0x99) | _mm512_fpclass_ps_mask(v1, 0x99)) bad |= (__mmask16)(1u << j);
            m[j] = _mm512_castps_si512(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        }
        const __m512 amax = _mm512_castsi512_ps(hfold16(0, m));
        /* kvq8_scale: NaN for a non-finite block, 0 below 2^-100, else amax / 127 */
        const __mmask16 ok = (__mmask16)(~bad & live & _mm512_cmp_ps_mask(amax, _mm512_set1_ps(0x1p-100f), _CMP_GE_OQ));
        __m512 dv = _mm512_maskz_div_ps(ok, amax, c127);
        dv = _mm512_mask_mov_ps(dv, bad, _mm512_set1_ps(__builtin_nanf("")));
        float id[16];
        _mm512_storeu_ps(id, _mm512_maskz_div_ps(ok, c127, amax));
        _mm512_mask_storeu_ps(d + b0, live, dv);
        __m512i sums[16];
        for (int j = 0; j < 16; j++) {
            sums[j] = _mm512_setzero_si512();
            if (j >= cnt) continue;
            int8_t *o = x8 + (b0 + j) * KV_Q8_BLOCK;
            if (!(ok >> j & 1)) {
                memset(o, 0, KV_Q8_BLOCK);
                continue;
            }
            const float *xb = x + (b0 + j) * KV_Q8_BLOCK;
            const __m512 vid = _mm512_set1_ps(id[j]);
            __m512i q0 = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb), vid)), lim), nlim);
            __m512i q1 = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16), vid)), lim), nlim);
            sums[j] = _mm512_add_epi32(q0, q1);
            _mm_storeu_si128((__m128i *)o, _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(o + 16), _mm512_cvtepi32_epi8(q1));
        }
        _mm512_mask_storeu_epi32(xs + b0, live, hfold16(1, sums));
    }
    for (int64_t b = nb; b < nbp; b++) {
        d[b] = 0.0f;
        xs[b] = 0;
        memset(x8 + b * KV_Q8_BLOCK, 0, KV_Q8_BLOCK);
    }
}

/* One activation row into its prepared form at `dst` (row_bytes), temporaries at tmp. */
static void prep_row(const geom *g, const float *x, uint8_t *dst, uint8_t *tmp, prow *out) {
    const perms *P = &g->pm;
    const int64_t nbp = g->nc * g->E / KV_Q8_BLOCK;
    int8_t *x8 = (int8_t *)tmp;
    float *d = (float *)(void *)(tmp + up64((size_t)g->nc * (size_t)g->E));
    int32_t *xs = (int32_t *)(void *)((uint8_t *)d + up64((size_t)nbp * 4));
    quant_row(g, x, x8, d, xs);

    int8_t *x8p = (int8_t *)dst;
    float *dxv = (float *)(void *)(dst + up64((size_t)g->nc * (size_t)g->NV * 64));
    int32_t *ofs = (int32_t *)(void *)((uint8_t *)dxv + up64((size_t)g->nc * 64));
    float *dxb = (float *)(void *)((uint8_t *)ofs + (is_mx(g->kind) ? up64((size_t)g->nc * 64) : 0));
    float *X = (float *)(void *)((uint8_t *)dxb + (g->cm ? dxb_bytes(g) : 0));
    kvq8_group_sums(d, xs, g->ng, g->G / KV_Q8_BLOCK, X);
    /* MX codes are 2x the E2M1 value (mxfp4) or 4x the int4 element (mxint4): the
     * factor goes here, so a lane's scale is the bare 2^(e - 127) (lane_scales) */
    const float fold = g->kind == KQ_QF4 ? 0.5f : g->kind == KQ_QI4 ? 0.25f : 1.0f;
    for (int64_t c = 0; c < g->nc; c++) {
        const int8_t *s = x8 + c * g->E;
        int8_t *o = x8p + c * g->NV * 64;
        if (g->kind == KQ_Q8) {
            memcpy(o, s, 64);
        } else if (g->kind == KQ_Q3) {
            /* vector t, qword j = elements 32j + 8t .. 32j + 8t + 7: qword 4j + t of the
             * chunk's 256 bytes (decode's order) */
            __m512i a = _mm512_loadu_si512(s), b = _mm512_loadu_si512(s + 64);
            __m512i c2 = _mm512_loadu_si512(s + 128), d2 = _mm512_loadu_si512(s + 192);
            for (int t = 0; t < 4; t++) {
                const __m512i qi = _mm512_cvtepu8_epi64(_mm512_castsi512_si128(P->p[t]));
                __m512i lo = _mm512_permutex2var_epi64(a, qi, b);
                __m512i hi = _mm512_permutex2var_epi64(c2, qi, d2);
                _mm512_storeu_si512(o + 64 * t, _mm512_inserti64x4(lo, _mm512_castsi512_si256(hi), 1));
            }
        } else if (g->kind == KQ_Q2) {
            __m512i a = _mm512_loadu_si512(s), b = _mm512_loadu_si512(s + 64);
            __m512i c2 = _mm512_loadu_si512(s + 128), d2 = _mm512_loadu_si512(s + 192);
            for (int t = 0; t < 4; t++) {
                __m512i lo = _mm512_permutex2var_epi8(a, P->p[t], b);
                __m512i hi = _mm512_permutex2var_epi8(c2, P->p[t], d2);
                _mm512_storeu_si512(o + 64 * t, _mm512_inserti64x4(lo, _mm512_castsi512_si256(hi), 1));
            }
        } else {
            __m512i a = _mm512_loadu_si512(s), b = _mm512_loadu_si512(s + 64);
            _mm512_storeu_si512(o, _mm512_permutex2var_epi8(a, P->p[0], b));
            _mm512_storeu_si512(o + 64, _mm512_permutex2var_epi8(a, P->p[1], b));
        }
        const int64_t b0 = c * g->E / KV_Q8_BLOCK;
        /* lane l: the block bidx names (a permute, not a division per lane) */
        _mm512_storeu_ps(dxv + c * 16, _mm512_mul_ps(_mm512_permutexvar_ps(g->bidx, _mm512_maskz_loadu_ps(g->bmask, d + b0)),
                                                    _mm512_set1_ps(fold)));
        if (g->cm)
            for (int b = 0; b < g->E / 32; b++) dxb[c * (g->E / 32) + b] = d[b0 + b];
        /* MX codes carry a fixed offset z (12: mxfp4, 8: mxint4): sum (q - z) x8 per
         * lane = dpbusd started from -z * sum x8, so no offset term per output row */
        if (is_mx(g->kind)) {
            const __m512i one = _mm512_set1_epi8(1);
            __m512i ls = _mm512_dpbusd_epi32(_mm512_setzero_si512(), one, _mm512_loadu_si512(o));
            ls = _mm512_dpbusd_epi32(ls, one, _mm512_loadu_si512(o + 64));
            _mm512_storeu_si512(ofs + c * 16, _mm512_mullo_epi32(ls, _mm512_set1_epi32(g->kind == KQ_QF4 ? -12 : -8)));
        }
    }
    out->x8p = x8p;
    out->dxv = dxv;
    out->ofs = ofs;
    out->dxb = dxb;
    out->X = X;
}

/* ---- the GEMV ------------------------------------------------------------------- */

#define MAXR 4
#define MAXM 4
#ifndef NACC
#define NACC 2 /* accumulators per output, chunk c into c % NACC: FMA latency */
#endif

typedef struct {
    __m512i m0f, m03, m07, lut;
    __m512i i3[2], ctrl3[2]; /* int3: vpermt2b indices, vpmultishiftqb offsets */
    __m512i g2[3]; /* int2: vgf2p8affineqb matrices taking bit pair t = 1..3 */
    __m512i mxsel; /* MX: vpshufb taking exponent byte l / 4 to dword lane l */
    __m512i sub;   /* 2^-127 as float bits (E8M0 0, below fp32's normals) */
} dconsts;

static dconsts make_dconsts(void) {
    dconsts k;
    k.m0f = _mm512_set1_epi8(0x0F);
    k.m03 = _mm512_set1_epi8(0x03);
    k.m07 = _mm512_set1_epi8(0x07);
    const uint8_t fp4[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};
    k.lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)fp4));
    k.ctrl3[0] = _mm512_set1_epi64(0x15120F0C09060300ll); /* bit offsets 0, 3, ... 21 */
    k.ctrl3[1] = _mm512_set1_epi64(0x2D2A2724211E1B18ll); /* 24, 27, ... 45 */
    /* a chunk is 96 bytes, 8 blocks of 12: permute h puts bytes 12j + 6h .. + 7 (block
     * j's elements 16h .. 16h+15 in bits 0 .. 47) in qword j */
    for (int h = 0; h < 2; h++) {
        int8_t ix[64];
        for (int p = 0; p < 64; p++) ix[p] = (int8_t)(12 * (p / 8) + 6 * h + p % 8);
        k.i3[h] = _mm512_loadu_si512(ix);
    }
    int8_t sel[64];
    for (int p = 0; p < 64; p++) sel[p] = (int8_t)(p % 4 ? 0x80 : p / 16);
    k.mxsel = _mm512_loadu_si512(sel);
    k.sub = _mm512_set1_epi32(0x00400000);
    /* result bit i is the parity of (matrix byte 7 - i) & x: byte 7 selects bit 2t for
     * bit 0, byte 6 bit 2t + 1 for bit 1, the other bytes are zero */
    for (int t = 1; t < 4; t++)
        k.g2[t - 1] = _mm512_set1_epi64((long long)(((uint64_t)1 << (2 * t)) << 56 | ((uint64_t)1 << (2 * t + 1)) << 48));
    return k;
}

/* NV code vectors of one chunk of weights v (see the header). */
AI void decode(int kind, const dconsts *k, __m512i v, __m512i v2, __m512i *t) {
    switch (kind) {
    case KQ_Q4:
    case KQ_QI4:
        if (kind == KQ_QI4) v = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x88));
        t[0] = _mm512_and_si512(v, k->m0f);
        t[1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), k->m0f);
        break;
    case KQ_QF4:
        t[0] = _mm512_shuffle_epi8(k->lut, _mm512_and_si512(v, k->m0f));
        t[1] = _mm512_shuffle_epi8(k->lut, _mm512_and_si512(_mm512_srli_epi16(v, 4), k->m0f));
        break;
    case KQ_Q3: { /* each permute feeds two multishifts */
        const __m512i lo = _mm512_permutex2var_epi8(v, k->i3[0], v2);
        const __m512i hi = _mm512_permutex2var_epi8(v, k->i3[1], v2);
        t[0] = _mm512_and_si512(_mm512_multishift_epi64_epi8(k->ctrl3[0], lo), k->m07);
        t[1] = _mm512_and_si512(_mm512_multishift_epi64_epi8(k->ctrl3[1], lo), k->m07);
        t[2] = _mm512_and_si512(_mm512_multishift_epi64_epi8(k->ctrl3[0], hi), k->m07);
        t[3] = _mm512_and_si512(_mm512_multishift_epi64_epi8(k->ctrl3[1], hi), k->m07);
        break;
    }
    case KQ_Q2: /* one GF(2) affine map per vector: byte bits 2t, 2t+1 -> bits 0, 1 */
        t[0] = _mm512_and_si512(v, k->m03);
        t[1] = _mm512_gf2p8affine_epi64_epi8(v, k->g2[0], 0);
        t[2] = _mm512_gf2p8affine_epi64_epi8(v, k->g2[1], 0);
        t[3] = _mm512_gf2p8affine_epi64_epi8(v, k->g2[2], 0);
        break;
    default: t[0] = v; break;
    }
}

/* The weight scale of each lane of chunk c, from the row's scale bytes sr. MX: the
 * broadcast exponents, byte l / 4 moved to lane l, shifted into a float's exponent
 * field (2^(e - 127); e = 0 is the subnormal 2^-127, hence the max). */
AI __m512 lane_scales(int sg, const geom *g, const dconsts *k, const uint8_t *sr, int64_t c, int tail) {
    if (sg == SG_MX) {
        const uint8_t *e = sr + (size_t)c * 4;
        __m128i e4 = tail ? _mm_maskz_loadu_epi8(g->tgmask, e) : _mm_loadu_si32(e);
        __m512i b = _mm512_shuffle_epi8(_mm512_broadcastd_epi32(e4), k->mxsel);
        return _mm512_castsi512_ps(_mm512_max_epu32(_mm512_slli_epi32(b, 23), k->sub));
    }
    if (sg == SG_ONE) {
        uint16_t h;
        memcpy(&h, sr + 2 * (size_t)(c >> g->gsh), 2);
        return _mm512_set1_ps(_cvtsh_ss(h));
    }
    __m128i h = _mm_maskz_loadu_epi16(tail ? g->tgmask : g->gmask, sr + 2 * (size_t)c * (size_t)g->per);
    return _mm512_permutexvar_ps(g->gidx, _mm512_castps256_ps512(_mm256_cvtph_ps(h)));
}

/* sum_g (s_g * z_g) * X_g over the row's groups, as 16 lane sums (the offset term;
 * int formats only, MX folds its fixed offset into the dot products). */
AI __m512 offset_term(const geom *g, const kv_qmat *w, int64_t r, const float *X) {
    const size_t rg = (size_t)r * (size_t)g->ng;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < g->ng; g0 += 16) {
        const int64_t cnt = g->ng - g0 < 16 ? g->ng - g0 : 16;
        const __mmask16 mk = (__mmask16)((1u << cnt) - 1u);
        __m512 s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, w->scales + 2 * (rg + (size_t)g0)));
        __m512 z = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, w->zeros + rg + (size_t)g0)));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(s, z), _mm512_maskz_loadu_ps(mk, X + g0), acc);
    }
    return acc; /* 16 lanes: subtracted before the one horizontal sum */
}

/* One chunk c of R rows (weights row[q], scales sr[q]) against M prepared rows. */
AI void chunk(int kind, int sg, int CM, int R, int M, const geom *g, const dconsts *k, const kv_qmat *w,
              const uint8_t *const *row, const uint8_t *const *sr, const prow *xp, int64_t c,
              int slot, int tail, __m512 acc[MAXR][MAXM][NACC]) {
    const int NV = nvec_of(kind);
    const int CB = kind == KQ_Q3 ? 96 : 64;
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
        const uint8_t *p = row[q] + (size_t)c * (size_t)CB;
        __m512i v = tail ? _mm512_maskz_loadu_epi8(g->tmask, p) : _mm512_loadu_si512(p);
        __m512i v2 = _mm512_setzero_si512();
        if (kind == KQ_Q3) {
            /* 96 bytes: the second load reads 32 past the chunk (the next row's or the
             * int layout copy's 64 bytes of padding); two lines prefetched a step */
            v2 = tail ? _mm512_maskz_loadu_epi8(g->tmask2, p + 64) : _mm512_loadu_si512(p + 64);
            const size_t pl = ((size_t)c * (size_t)R + (size_t)q) * 3 / 2;
            kvk_prefetch_line(row[0], (size_t)w->row_bytes, R, pl);
            kvk_prefetch_line(row[0], (size_t)w->row_bytes, R, pl + 1);
        } else {
            kvk_prefetch_line(row[0], (size_t)w->row_bytes, R, (size_t)c * (size_t)R + (size_t)q);
        }
        __m512i t[4];
        decode(kind, k, v, v2, t);
        const __m512 sv = lane_scales(sg, g, k, sr[q], c, tail);
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) {
            const int8_t *xc = xp[i].x8p + c * NV * 64;
            const float *dc = xp[i].dxv + c * 16;
            const __m512i s0 = sg == SG_MX ? _mm512_loadu_si512(xp[i].ofs + c * 16) : _mm512_setzero_si512();
            __m512i s32 = _mm512_dpbusd_epi32(s0, t[0], _mm512_loadu_si512(xc));
#pragma GCC unroll 4
            for (int u = 1; u < NV; u++) s32 = _mm512_dpbusd_epi32(s32, t[u], _mm512_loadu_si512(xc + 64 * u));
            const __m512 dv = CM ? _mm512_permutexvar_ps(g->bidx, _mm512_maskz_loadu_ps(g->bmask, xp[i].dxb + c * (elems_of(kind) / 32)))
                                 : _mm512_loadu_ps(dc);
            __m512 pv = _mm512_mul_ps(_mm512_cvtepi32_ps(s32), dv);
            acc[q][i][slot] = _mm512_fmadd_ps(pv, sv, acc[q][i][slot]);
        }
        /* 4-bit tiles of rows too long for single rows (kernels_internal.h): each
         * row's loads in program order, the activations loaded again per row rather
         * than once per chunk. Measured, not derived: 32B down q8 int4 53 -> 65 GB/s
         * (of ~78); loading only the activations again did not do it, and int3/int2
         * (decode-heavier, more activation vectors per weight byte) lost 20% by it, and
         * so did the 2-row tiles of m = 2 (4-bit in L2: 65 -> 48 GB/s). */
        if (R > 1 && M == 1 && kind != KQ_Q3 && kind != KQ_Q2) __asm__ volatile("" ::: "memory");
    }
}

AI void gemv_tile(int kind, int sg, int CM, int R, int M, const geom *g, const dconsts *k, const kv_qmat *w,
                  const prow *xp, int64_t r, float *y, int64_t ldy, const float *bias) {
    const uint8_t *row[MAXR], *sr[MAXR];
    const size_t es = sg == SG_MX ? 1 : 2;
    __m512 acc[MAXR][MAXM][NACC];
    kvk_prefetch_side(w, r, R);
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
        row[q] = w->q + (size_t)(r + q) * (size_t)w->row_bytes;
        sr[q] = w->scales + (size_t)(r + q) * (size_t)g->ng * es;
#pragma GCC unroll 4
        for (int i = 0; i < M; i++)
#pragma GCC unroll 4
            for (int a = 0; a < NACC; a++) acc[q][i][a] = _mm512_setzero_ps();
    }
    /* chunk c always goes to accumulator c % NACC, whatever the tile */
    int64_t c = 0;
    for (; c + NACC <= g->ncf; c += NACC)
#pragma GCC unroll 4
        for (int a = 0; a < NACC; a++) chunk(kind, sg, CM, R, M, g, k, w, row, sr, xp, c + a, a, 0, acc);
#pragma GCC unroll 4
    for (int a = 0; a < NACC; a++) {
        if (c + a < g->ncf) chunk(kind, sg, CM, R, M, g, k, w, row, sr, xp, c + a, a, 0, acc);
        else if (c + a < g->nc) chunk(kind, sg, CM, R, M, g, k, w, row, sr, xp, c + a, a, 1, acc);
    }
#pragma GCC unroll 4
    for (int q = 0; q < R; q++) {
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) {
            __m512 t = acc[q][i][0];
#pragma GCC unroll 4
            for (int a = 1; a < NACC; a++) t = _mm512_add_ps(t, acc[q][i][a]);
            if (sg != SG_MX) t = _mm512_sub_ps(t, offset_term(g, w, r + q, xp[i].X));
            float v = _mm512_reduce_add_ps(t);
            if (bias) v += bias[r + q];
            y[i * ldy + r + q] = v;
        }
    }
}

/* Rows [r0, r1) (a multiple of the tile's R) in one call, so the geometry and constants
 * stay in registers across rows (a call per row reloaded them for every row). */
typedef void (*tile_fn)(const geom *, const dconsts *, const kv_qmat *, const prow *, int64_t,
                        int64_t, float *, int64_t, const float *);


#define TILE_FN(kind, sg, R, M)                                                              \
    static void tile_##kind##_##sg##_##R##_##M(const geom *g, const dconsts *k,                \
                                               const kv_qmat *w, const prow *xp, int64_t r0,    \
                                               int64_t r1, float *y, int64_t ldy,               \
                                               const float *bias) {                             \
        for (int64_t r = r0; r < r1; r += R) gemv_tile(kind, sg, 0, R, M, g, k, w, xp, r, y, ldy, bias); \
    }
#define TILE_CM(kind, sg)                                                                     \
    static void tile_##kind##_##sg##_cm(const geom *g, const dconsts *k, const kv_qmat *w,      \
                                        const prow *xp, int64_t r0, int64_t r1, float *y,       \
                                        int64_t ldy, const float *bias) {                       \
        for (int64_t r = r0; r < r1; r++) gemv_tile(kind, sg, 1, 1, 1, g, k, w, xp, r, y, ldy, bias); \
    }
TILE_CM(KQ_Q4, SG_ONE)
TILE_CM(KQ_Q4, SG_MULTI)
TILE_CM(KQ_Q3, SG_MULTI)
TILE_CM(KQ_Q8, SG_ONE)
TILE_CM(KQ_Q8, SG_MULTI)
TILE_CM(KQ_Q2, SG_MULTI)
/* [kind][multi]: the compact single-row tile (int formats; MX never compact) */
static const tile_fn CM_TILES[6][2] = {{tile_KQ_Q4_SG_ONE_cm, tile_KQ_Q4_SG_MULTI_cm}, {NULL, NULL}, {NULL, NULL},
                                       {tile_KQ_Q3_SG_MULTI_cm, tile_KQ_Q3_SG_MULTI_cm},
                                       {tile_KQ_Q2_SG_MULTI_cm, tile_KQ_Q2_SG_MULTI_cm},
                                       {tile_KQ_Q8_SG_ONE_cm, tile_KQ_Q8_SG_MULTI_cm}};
#define TILE_SET(kind, sg)                                                                      \
    TILE_FN(kind, sg, 4, 1) TILE_FN(kind, sg, 1, 1) TILE_FN(kind, sg, 2, 2)                    \
    TILE_FN(kind, sg, 1, 2) TILE_FN(kind, sg, 1, 3) TILE_FN(kind, sg, 1, 4)
TILE_SET(KQ_Q4, SG_ONE)
TILE_SET(KQ_Q4, SG_MULTI)
TILE_SET(KQ_Q3, SG_MULTI) /* int3 and int2 chunks (256) always hold several groups */
TILE_SET(KQ_Q8, SG_ONE)
TILE_SET(KQ_Q8, SG_MULTI)
TILE_SET(KQ_Q2, SG_MULTI)
TILE_SET(KQ_QF4, SG_MX)
TILE_SET(KQ_QI4, SG_MX)

#define TILE_ROW(kind, sg)                                                          \
    {{tile_##kind##_##sg##_4_1, tile_##kind##_##sg##_1_1},                          \
     {tile_##kind##_##sg##_2_2, tile_##kind##_##sg##_1_2},                          \
     {tile_##kind##_##sg##_1_3, tile_##kind##_##sg##_1_3},                          \
     {tile_##kind##_##sg##_1_4, tile_##kind##_##sg##_1_4}}
/* [kind][multi][M - 1][0: the wide tile, 1: one row] */
static const tile_fn TILES[6][2][4][2] = {
    {TILE_ROW(KQ_Q4, SG_ONE), TILE_ROW(KQ_Q4, SG_MULTI)},    {TILE_ROW(KQ_QF4, SG_MX), TILE_ROW(KQ_QF4, SG_MX)},
    {TILE_ROW(KQ_QI4, SG_MX), TILE_ROW(KQ_QI4, SG_MX)},      {TILE_ROW(KQ_Q3, SG_MULTI), TILE_ROW(KQ_Q3, SG_MULTI)},
    {TILE_ROW(KQ_Q2, SG_MULTI), TILE_ROW(KQ_Q2, SG_MULTI)}, {TILE_ROW(KQ_Q8, SG_ONE), TILE_ROW(KQ_Q8, SG_MULTI)}};
static const int TILE_R[4] = {4, 2, 1, 1};

/* Rows [ra, rb) against M prepared rows. */
static void run_rows(const geom *g, const dconsts *k, const kv_qmat *w, const prow *xp, int M,
                     int64_t ra, int64_t rb, float *y, int64_t ldy, const float *bias) {
    const tile_fn wide = TILES[g->kind][g->multi][M - 1][0], one = TILES[g->kind][g->multi][M - 1][1];
    if (M == 1 && g->cm) {
        CM_TILES[g->kind][g->multi](g, k, w, xp, ra, rb, y, ldy, bias);
        return;
    }
    /* one activation row that stays in L1: row by row (kernels_internal.h), except
     * short int2 rows, where the 4 activation vectors per weight vector make the shared
     * loads of a 4-row tile worth more. At ~77 GB/s: 2560-wide int2, tiles 60-67 GB/s,
     * single rows 55-62; 5120-wide 67-69 vs 68-74, 9728-wide 64-65 vs 68. */
    const int short_int2 = g->kind == KQ_Q2 && row_bytes(g) < (4 << 10);
    const int R = M == 1 && !short_int2 && kvk_gemv_single(row_bytes(g)) ? 1 : TILE_R[M - 1];
    const int64_t rw = R > 1 ? ra + (rb - ra) / R * R : ra; /* the wide tiles' end */
    if (rw > ra) wide(g, k, w, xp, ra, rw, y, ldy, bias);
    if (rb > rw) one(g, k, w, xp, rw, rb, y, ldy, bias);
}

#define KV_Q8DRV_ISA avx512
#include "kernels/qmatmul_q8_driver.h"
