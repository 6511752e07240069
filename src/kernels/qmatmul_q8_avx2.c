/* qmatmul_q8_avx2.c — the int8-activation ("q8") path for quantized weights on AVX2
 * (+ FMA, F16C): every kv_qmat format, the same integers as qmatmul_q8_ref.c (kernels.h
 * gives the specification), fp32 sums in another order.
 *
 * Pipeline stage: run (the fast decode option). Issue 3, point 8. The scheme of
 * qmatmul_q8_avx512.c (read its header first) at 8 lanes, with vpmaddubsw (u8 x s8
 * -> s16 pairs) + vpmaddwd (-> s32) in place of vpdpbusd. The s16 pair sums cannot
 * saturate: codes are at most 24 (mxfp4) for every format but int8, whose codes are
 * split into nibbles (c = lo + 16 hi, two vpmaddwd). A chunk is 32 weight bytes
 * (one ymm): 4-bit E = 64 elements (vectors: low, high nibbles), 2-bit E = 128 (bit
 * pairs 0..3 of each byte), 8-bit E = 32; 3-bit E = 32 from 12 bytes: vpshufb puts the
 * 16 bits holding elements 2k, 2k+1 in word k, vpmullw shifts each word's field to bit
 * 8 (a per-word shift AVX2 lacks), two shifts and masks split it into bytes 2k, 2k+1.
 * In every case byte p of vector t is element NV * p + t of the chunk, so the
 * activations are permuted per chunk by that one rule (scalar, once per call), and
 * dword lane l covers one 32-block. Activations are quantized with the scalar
 * kvq8_quant_block, so they are bit-identical to the ref's by construction. */
#include <immintrin.h>

#include "kernels/kernels_internal.h"

#define AI static inline __attribute__((always_inline))

static int elems_of(int kind) { return kind == KQ_Q2 ? 128 : kind == KQ_Q3 || kind == KQ_Q8 ? 32 : 64; }
static int nvec_of(int kind) { return kind == KQ_Q2 ? 4 : kind == KQ_Q3 || kind == KQ_Q8 ? 1 : 2; }

typedef struct {
    const int8_t *x8p; /* [nc][NV][32] */
    const float *dxv;  /* [nc][8] */
    const float *X;    /* [ng] */
} prow;

typedef struct {
    int kind, B, G, E, NV, CB;
    int64_t n, nc, ncf, ng;
    int multi, gsh, per, tgroups;
    size_t tbytes;
    __m256i gidx;
    __m256i bidx; /* lane -> 32-block within the chunk */
} geom;

/* How a chunk finds its weight scales, fixed per tile at compile time: one fp16 scale
 * (G >= E), several (G < E), or MX E8M0 exponents (one per 32-block). */
enum { SG_ONE = 0, SG_MULTI = 1, SG_MX = 2 };

static size_t up64(size_t v) { return (v + 63) & ~(size_t)63; }

static geom make_geom(const kv_qmat *w) {
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
    g.gsh = 0;
    while (!g.multi && (g.E << g.gsh) < g.G) g.gsh++;
    g.per = g.multi ? g.E / g.G : 1; /* groups per chunk */
    int32_t gi[8];
    for (int l = 0; l < 8; l++) gi[l] = l / (8 / g.per);
    g.gidx = _mm256_loadu_si256((const __m256i *)gi);
    for (int l = 0; l < 8; l++) gi[l] = l / (8 / (g.E / KV_Q8_BLOCK));
    g.bidx = _mm256_loadu_si256((const __m256i *)gi);
    const int64_t tail = g.n - g.ncf * g.E;
    g.tbytes = (size_t)(tail * g.B / 8);
    g.tgroups = (int)(tail / g.G);
    return g;
}

static size_t row_bytes(const geom *g) {
    return up64((size_t)g->nc * (size_t)g->NV * 32) + up64((size_t)g->nc * 32) + up64((size_t)g->ng * 4);
}
static size_t tmp_bytes(const geom *g) {
    const size_t nbp = (size_t)g->nc * (size_t)g->E / KV_Q8_BLOCK;
    return up64((size_t)g->nc * (size_t)g->E) + 2 * up64(nbp * 4);
}

AI float hmax8(__m256 v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

/* One 32-block (kvq8_quant_block's rules, the same bits) into q[32]; returns d, the
 * block's code sum in *xs. 8 lanes at a time: the scalar loop was most of the prep. */
AI float quant_block8(const float *x, int8_t *q, int32_t *xs) {
    const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(__builtin_inff());
    __m256 v[4], m = _mm256_setzero_ps();
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        const __m256 a = _mm256_andnot_ps(sign, v[i]);
        /* NaN (unordered with itself) or +-Inf */
        bad |= _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(v[i], v[i], _CMP_UNORD_Q), _mm256_cmp_ps(a, inf, _CMP_EQ_OQ)));
        m = _mm256_max_ps(m, a);
    }
    float id, d = kvq8_scale(hmax8(m), bad != 0, &id);
    if (!(d == d && d > 0.0f)) {
        memset(q, 0, KV_Q8_BLOCK);
        *xs = 0;
        return d;
    }
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
    __m256i c[4], sum = _mm256_setzero_si256();
    for (int i = 0; i < 4; i++) {
        c[i] = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid)), lim), nlim);
        sum = _mm256_add_epi32(sum, c[i]);
    }
    /* 32 int32 -> 32 int8 in order: packs work per 128-bit lane, so undo with vpermd */
    __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
    w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, w);
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
    *xs = _mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1)));
    return d;
}

/* The chunk's codes in decode order: vector t = bytes NV * p + t. */
AI void permute_chunk(int NV, const int8_t *s, int8_t *o) {
    if (NV == 1) {
        memcpy(o, s, 32);
        return;
    }
    /* per 16 bytes: byte order 0, NV, 2 NV, .. then 1, NV + 1, ..: NV groups of 16 / NV */
    const __m128i sh2 = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    const __m128i sh4 = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const int per = 16 / NV; /* bytes of each t per 16 input bytes */
    for (int u = 0; u < 2 * NV; u++) { /* 16 input bytes at a time */
        __m128i v = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(s + 16 * u)), NV == 2 ? sh2 : sh4);
        int8_t tmp[16];
        _mm_storeu_si128((__m128i *)tmp, v);
        for (int t = 0; t < NV; t++) memcpy(o + 32 * t + per * u, tmp + per * t, (size_t)per);
    }
}

static void prep_row(const geom *g, const float *x, uint8_t *dst, uint8_t *tmp, prow *out) {
    const int64_t nb = g->n / KV_Q8_BLOCK, nbp = g->nc * g->E / KV_Q8_BLOCK;
    int8_t *x8 = (int8_t *)tmp;
    float *d = (float *)(void *)(tmp + up64((size_t)g->nc * (size_t)g->E));
    int32_t *xs = (int32_t *)(void *)((uint8_t *)d + up64((size_t)nbp * 4));
    for (int64_t b = 0; b < nb; b++) d[b] = quant_block8(x + b * KV_Q8_BLOCK, x8 + b * KV_Q8_BLOCK, &xs[b]);
    for (int64_t b = nb; b < nbp; b++) {
        d[b] = 0.0f;
        xs[b] = 0;
        memset(x8 + b * KV_Q8_BLOCK, 0, KV_Q8_BLOCK);
    }
    int8_t *x8p = (int8_t *)dst;
    float *dxv = (float *)(void *)(dst + up64((size_t)g->nc * (size_t)g->NV * 32));
    float *X = (float *)(void *)((uint8_t *)dxv + up64((size_t)g->nc * 32));
    kvq8_group_sums(d, xs, g->ng, g->G / KV_Q8_BLOCK, X);
    /* MX codes are 2x the E2M1 value (mxfp4) or 4x the int4 element (mxint4): the
     * factor goes here, so a lane's scale is the bare 2^(e - 127) (lane_scales) */
    const __m256 fold = _mm256_set1_ps(g->kind == KQ_QF4 ? 0.5f : g->kind == KQ_QI4 ? 0.25f : 1.0f);
    const int bpc = g->E / KV_Q8_BLOCK; /* blocks per chunk: 1, 2 or 4 */
    const __m256i bmask = _mm256_cmpgt_epi32(_mm256_set1_epi32(bpc), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int64_t c = 0; c < g->nc; c++) {
        const int8_t *s = x8 + c * g->E;
        int8_t *o = x8p + c * g->NV * 32;
        switch (g->NV) {
        case 1: permute_chunk(1, s, o); break;
        case 2: permute_chunk(2, s, o); break;
        default: permute_chunk(4, s, o); break;
        }
        /* lane l: the block bidx names (a permute, not a division per lane) */
        const __m256 db = _mm256_maskload_ps(d + c * bpc, bmask);
        _mm256_storeu_ps(dxv + c * 8, _mm256_mul_ps(_mm256_permutevar8x32_ps(db, g->bidx), fold));
    }
    out->x8p = x8p;
    out->dxv = dxv;
    out->X = X;
}

#define MAXR 2
#define MAXM 4

typedef struct {
    __m256i m0f, m03, m07, m700, lut, ones, sixteen;
    __m256i c3, mul3; /* int3: vpshufb control, vpmullw factors */
    __m256i mxsel;    /* MX: vpshufb taking exponent byte l / 4 to dword lane l */
    __m256i sub;      /* 2^-127 as float bits (E8M0 0, below fp32's normals) */
} dconsts;

static dconsts make_dconsts(void) {
    dconsts k;
    k.m0f = _mm256_set1_epi8(0x0F);
    k.m03 = _mm256_set1_epi8(0x03);
    k.m07 = _mm256_set1_epi16(0x0007);
    k.m700 = _mm256_set1_epi16(0x0700);
    const uint8_t fp4[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};
    k.lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)fp4));
    k.ones = _mm256_set1_epi16(1);
    k.sixteen = _mm256_set1_epi16(16);
    int8_t c[32];
    int16_t mu[16];
    for (int L = 0; L < 2; L++)
        for (int j = 0; j < 8; j++) {
            int bit = 6 * j; /* elements 2j, 2j+1 of the lane's 16 start at bit 6j */
            c[16 * L + 2 * j] = (int8_t)(6 * L + bit / 8);
            c[16 * L + 2 * j + 1] = (int8_t)(6 * L + bit / 8 + 1);
            mu[8 * L + j] = (int16_t)(1 << (8 - bit % 8));
        }
    k.c3 = _mm256_loadu_si256((const __m256i *)c);
    int8_t sel[32];
    for (int b = 0; b < 32; b++) sel[b] = (int8_t)(b % 4 ? 0x80 : b / 16);
    k.mxsel = _mm256_loadu_si256((const __m256i *)sel);
    k.sub = _mm256_set1_epi32(0x00400000);
    k.mul3 = _mm256_loadu_si256((const __m256i *)mu);
    return k;
}

AI void decode(int kind, const dconsts *k, __m256i v, __m256i *t) {
    switch (kind) {
    case KQ_Q4:
    case KQ_QI4:
        if (kind == KQ_QI4) v = _mm256_xor_si256(v, _mm256_set1_epi8((char)0x88));
        t[0] = _mm256_and_si256(v, k->m0f);
        t[1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), k->m0f);
        break;
    case KQ_QF4:
        t[0] = _mm256_shuffle_epi8(k->lut, _mm256_and_si256(v, k->m0f));
        t[1] = _mm256_shuffle_epi8(k->lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), k->m0f));
        break;
    case KQ_Q3: {
        __m256i m = _mm256_mullo_epi16(_mm256_shuffle_epi8(v, k->c3), k->mul3);
        t[0] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(m, 8), k->m07),
                               _mm256_and_si256(_mm256_srli_epi16(m, 3), k->m700));
        break;
    }
    case KQ_Q2:
        t[0] = _mm256_and_si256(v, k->m03);
        t[1] = _mm256_and_si256(_mm256_srli_epi16(v, 2), k->m03);
        t[2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), k->m03);
        t[3] = _mm256_and_si256(_mm256_srli_epi16(v, 6), k->m03);
        break;
    default: t[0] = v; break;
    }
}

/* Weight bytes of chunk c (a partial last chunk through a zeroed copy). */
AI __m256i load_chunk(int kind, const geom *g, const uint8_t *p, int tail) {
    if (tail) {
        uint8_t buf[32] = {0};
        memcpy(buf, p, g->tbytes);
        return _mm256_loadu_si256((const __m256i *)buf);
    }
    if (kind == KQ_Q3) /* 12 bytes; the int layout copy has 64 bytes of padding */
        return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_loadu_si256((const __m256i *)p);
}

/* 2^(e-127) for 8 E8M0 bytes (e = 0: the subnormal 2^-127; 0xFF never passes load
 * validation) times `mul`: kvq8_wscale of MX in vector form. */
AI __m256 e8m0x8(__m256i e, __m256 mul) {
    const __m256i bits = _mm256_blendv_epi8(_mm256_slli_epi32(e, 23), _mm256_set1_epi32(0x00400000),
                                            _mm256_cmpeq_epi32(e, _mm256_setzero_si256()));
    return _mm256_mul_ps(_mm256_castsi256_ps(bits), mul);
}

AI float hsum(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* n (1..8) bytes at p, zero-extended: fixed-size loads (a variable-length memcpy here
 * was a libc call per chunk, a third of the MX GEMV's time). */
AI uint64_t load_upto8(const uint8_t *p, int n) {
    uint64_t v = 0;
    switch (n) {
    case 1: v = p[0]; break;
    case 2: { uint16_t t; memcpy(&t, p, 2); v = t; break; }
    case 4: { uint32_t t; memcpy(&t, p, 4); v = t; break; }
    case 8: memcpy(&v, p, 8); break;
    default:
        for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
        break;
    }
    return v;
}

/* The weight scale of each lane of chunk c, from the row's scale bytes sr. MX: the
 * two exponents of the chunk broadcast, byte l / 4 moved to lane l, shifted into a
 * float's exponent field (2^(e - 127); e = 0 is the subnormal 2^-127, hence the max;
 * the lanes past a partial chunk get it too, times activations that are 0). */
AI __m256 lane_scales(int sg, const geom *g, const dconsts *k, const uint8_t *sr, int64_t c, int tail) {
    if (sg == SG_ONE) {
        uint16_t h;
        memcpy(&h, sr + 2 * (size_t)(c >> g->gsh), 2);
        return _mm256_set1_ps(_cvtsh_ss(h));
    }
    const int cnt = tail ? g->tgroups : g->per; /* <= 4 */
    const size_t gi = (size_t)c * (size_t)g->per;
    if (sg == SG_MULTI) {
        const uint64_t h = load_upto8(sr + 2 * gi, 2 * cnt);
        __m128 s4 = _mm_cvtph_ps(_mm_cvtsi64_si128((long long)h));
        return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(s4), g->gidx);
    }
    const uint32_t e2 = (uint32_t)load_upto8(sr + gi, cnt); /* E = 64: two blocks */
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)e2), k->mxsel);
    return _mm256_castsi256_ps(_mm256_max_epu32(_mm256_slli_epi32(b, 23), k->sub));
}

/* sum_g s_g z_g X_g over the row's groups, 8 groups a step (MX has n/32 of them). */
AI float offset_term(const geom *g, const kv_qmat *w, int64_t r, const float *X) {
    const size_t rg = (size_t)r * (size_t)g->ng;
    const int mx = w->qf.fmt != KV_QFMT_INT;
    const __m256 mul = _mm256_set1_ps(w->qf.fmt == KV_QFMT_MXFP4 ? 0.5f : 0.25f);
    const __m256 zmx = _mm256_set1_ps(w->qf.fmt == KV_QFMT_MXFP4 ? 12.0f : 8.0f);
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= g->ng; j += 8) {
        __m256 sc, z;
        if (mx) {
            sc = e8m0x8(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->scales + rg + (size_t)j))), mul);
            z = zmx;
        } else {
            sc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w->scales + 2 * (rg + (size_t)j))));
            z = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(w->zeros + rg + (size_t)j))));
        }
        acc = _mm256_fmadd_ps(_mm256_mul_ps(sc, z), _mm256_loadu_ps(X + j), acc);
    }
    float t = hsum(acc);
    for (; j < g->ng; j++) {
        uint16_t h = 0;
        if (!mx) memcpy(&h, w->scales + 2 * (rg + (size_t)j), 2);
        const float sj = mx ? kvq8_wscale(w, rg + (size_t)j) : _cvtsh_ss(h);
        t += sj * (float)kvq8_zero(w, rg + (size_t)j) * X[j];
    }
    return t;
}

AI void chunk(int kind, int sg, int R, int M, const geom *g, const dconsts *k, const kv_qmat *w,
              const uint8_t *const *row, const uint8_t *const *sr, const prow *xp, int64_t c,
              int tail, __m256 acc[MAXR][MAXM]) {
    const int NV = nvec_of(kind);
    const int CB = kind == KQ_Q3 ? 12 : 32;
    const int pf = (((size_t)c * (size_t)CB) & 63) < (size_t)CB; /* the chunk starting each line */
#pragma GCC unroll 2
    for (int q = 0; q < R; q++) {
        __m256i t[4];
        if (pf) kvk_prefetch_line(row[0], (size_t)w->row_bytes, R, (((size_t)c * (size_t)CB) >> 6) * (size_t)R + (size_t)q);
        decode(kind, k, load_chunk(kind, g, row[q] + (size_t)c * (size_t)CB, tail), t);
        const __m256 sv = lane_scales(sg, g, k, sr[q], c, tail);
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) {
            const int8_t *xc = xp[i].x8p + c * NV * 32;
            __m256i s32;
            if (kind == KQ_Q8) {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)xc);
                __m256i lo = _mm256_and_si256(t[0], k->m0f);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(t[0], 4), k->m0f);
                s32 = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, xv), k->ones),
                                       _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xv), k->sixteen));
            } else {
                __m256i s16 = _mm256_maddubs_epi16(t[0], _mm256_loadu_si256((const __m256i *)xc));
#pragma GCC unroll 4
                for (int u = 1; u < NV; u++)
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(t[u], _mm256_loadu_si256((const __m256i *)(xc + 32 * u))));
                s32 = _mm256_madd_epi16(s16, k->ones);
            }
            __m256 pv = _mm256_mul_ps(_mm256_cvtepi32_ps(s32), _mm256_loadu_ps(xp[i].dxv + c * 8));
            acc[q][i] = _mm256_fmadd_ps(pv, sv, acc[q][i]);
        }
    }
}


AI void gemv_tile(int kind, int sg, int R, int M, const geom *g, const dconsts *k, const kv_qmat *w,
                  const prow *xp, int64_t r, float *y, int64_t ldy, const float *bias) {
    const uint8_t *row[MAXR], *sr[MAXR];
    const size_t es = sg == SG_MX ? 1 : 2;
    __m256 acc[MAXR][MAXM];
    kvk_prefetch_side(w, r, R);
#pragma GCC unroll 2
    for (int q = 0; q < R; q++) {
        row[q] = w->q + (size_t)(r + q) * (size_t)w->row_bytes;
        sr[q] = w->scales + (size_t)(r + q) * (size_t)g->ng * es;
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) acc[q][i] = _mm256_setzero_ps();
    }
    for (int64_t c = 0; c < g->ncf; c++) chunk(kind, sg, R, M, g, k, w, row, sr, xp, c, 0, acc);
    if (g->ncf < g->nc) chunk(kind, sg, R, M, g, k, w, row, sr, xp, g->ncf, 1, acc);
#pragma GCC unroll 2
    for (int q = 0; q < R; q++) {
#pragma GCC unroll 4
        for (int i = 0; i < M; i++) {
            float v = hsum(acc[q][i]) - offset_term(g, w, r + q, xp[i].X);
            if (bias) v += bias[r + q];
            y[i * ldy + r + q] = v;
        }
    }
}

typedef void (*tile_fn)(const geom *, const dconsts *, const kv_qmat *, const prow *, int64_t,
                        float *, int64_t, const float *);

#define TILE_FN(kind, sg, R, M)                                                              \
    static void tile_##kind##_##sg##_##R##_##M(const geom *g, const dconsts *k,                \
                                               const kv_qmat *w, const prow *xp, int64_t r,     \
                                               float *y, int64_t ldy, const float *bias) {      \
        gemv_tile(kind, sg, R, M, g, k, w, xp, r, y, ldy, bias);                               \
    }
#define TILE_SET(kind, sg)                                                                      \
    TILE_FN(kind, sg, 2, 1) TILE_FN(kind, sg, 1, 1) TILE_FN(kind, sg, 2, 2)                    \
    TILE_FN(kind, sg, 1, 2) TILE_FN(kind, sg, 1, 3) TILE_FN(kind, sg, 1, 4)
TILE_SET(KQ_Q4, SG_ONE)
TILE_SET(KQ_Q4, SG_MULTI)
TILE_SET(KQ_Q3, SG_ONE) /* int3 and int8 chunks (32) never hold more than one group */
TILE_SET(KQ_Q8, SG_ONE)
TILE_SET(KQ_Q2, SG_ONE)
TILE_SET(KQ_Q2, SG_MULTI)
TILE_SET(KQ_QF4, SG_MX)
TILE_SET(KQ_QI4, SG_MX)

#define TILE_ROW(kind, sg)                                                          \
    {{tile_##kind##_##sg##_2_1, tile_##kind##_##sg##_1_1},                          \
     {tile_##kind##_##sg##_2_2, tile_##kind##_##sg##_1_2},                          \
     {tile_##kind##_##sg##_1_3, tile_##kind##_##sg##_1_3},                          \
     {tile_##kind##_##sg##_1_4, tile_##kind##_##sg##_1_4}}
/* [kind][multi][M - 1][0: the wide tile, 1: one row] */
static const tile_fn TILES[6][2][4][2] = {
    {TILE_ROW(KQ_Q4, SG_ONE), TILE_ROW(KQ_Q4, SG_MULTI)},   {TILE_ROW(KQ_QF4, SG_MX), TILE_ROW(KQ_QF4, SG_MX)},
    {TILE_ROW(KQ_QI4, SG_MX), TILE_ROW(KQ_QI4, SG_MX)},     {TILE_ROW(KQ_Q3, SG_ONE), TILE_ROW(KQ_Q3, SG_ONE)},
    {TILE_ROW(KQ_Q2, SG_ONE), TILE_ROW(KQ_Q2, SG_MULTI)},   {TILE_ROW(KQ_Q8, SG_ONE), TILE_ROW(KQ_Q8, SG_ONE)}};
static const int TILE_R[4] = {2, 2, 1, 1};

static void run_rows(const geom *g, const dconsts *k, const kv_qmat *w, const prow *xp, int M,
                     int64_t ra, int64_t rb, float *y, int64_t ldy, const float *bias) {
    const tile_fn wide = TILES[g->kind][g->multi][M - 1][0], one = TILES[g->kind][g->multi][M - 1][1];
    const int R = TILE_R[M - 1];
    int64_t r = ra;
    for (; r + R <= rb; r += R) wide(g, k, w, xp, r, y, ldy, bias);
    for (; r < rb; r++) one(g, k, w, xp, r, y, ldy, bias);
}

#define KV_Q8DRV_ISA avx2
#include "kernels/qmatmul_q8_driver.h"
