/* test_tensor.c — dtype table, shapes and the bf16/f16 <-> f32 conversions.
 *
 * f16 -> f32 is checked on all 65536 inputs and f32 -> f16 on every rounding
 * boundary of binary16 plus a sweep of f32 bit patterns, both against the compiler's
 * _Float16 (IEEE conversions done by libgcc/F16C, which nobody on the team wrote).
 * Where _Float16 is missing, a formula in double is the reference. f32 -> bf16 is
 * checked for ties-to-even, NaN and Inf, and for being the nearest bf16 on random
 * inputs. */
#include <stdint.h>

#include "kvant/tensor.h"
#include "test.h"

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) { /* xorshift64*, fixed seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void test_dtype_table(void) {
    static const char *names[] = {"F32", "F16", "BF16", "F64", "I8",
                                  "U8",  "I16", "I32",  "I64", "BOOL"};
    static const size_t sizes[] = {4, 2, 2, 8, 1, 1, 2, 4, 8, 1};
    for (int i = 0; i < KV_DTYPE_COUNT; i++) {
        CHECK(strcmp(kv_dtype_name((kv_dtype)i), names[i]) == 0);
        CHECK_EQ_INT(kv_dtype_size((kv_dtype)i), sizes[i]);
        kv_dtype t = KV_DTYPE_COUNT;
        CHECK_EQ_INT(kv_dtype_from_name(names[i], &t), 0);
        CHECK_EQ_INT(t, i);
    }
    kv_dtype t;
    CHECK_EQ_INT(kv_dtype_from_name("F8_E4M3", &t), -1);
    CHECK_EQ_INT(kv_dtype_from_name("bf16", &t), -1); /* the spelling is upper case */
    CHECK_EQ_INT(kv_dtype_from_name(NULL, &t), -1);
    CHECK_EQ_INT(kv_dtype_size(KV_DTYPE_COUNT), 0);
}

static void test_numel_shape(void) {
    kv_tensor t = {.ndim = 2, .shape = {2560, 9728}};
    char buf[64];
    CHECK_EQ_INT(kv_tensor_numel(&t), 2560LL * 9728);
    CHECK(strcmp(kv_shape_str(&t, buf, sizeof buf), "[2560, 9728]") == 0);
    kv_tensor s = {.ndim = 0};
    CHECK_EQ_INT(kv_tensor_numel(&s), 1);
    CHECK(strcmp(kv_shape_str(&s, buf, sizeof buf), "[]") == 0);
    kv_tensor z = {.ndim = 3, .shape = {4, 0, 7}};
    CHECK_EQ_INT(kv_tensor_numel(&z), 0);
    kv_tensor big = {.ndim = 4, .shape = {151936, 5120, 64, 3}};
    CHECK_EQ_INT(kv_tensor_numel(&big), 151936LL * 5120 * 64 * 3);
    /* truncation stays NUL-terminated and in bounds */
    char small[6];
    kv_shape_str(&t, small, sizeof small);
    CHECK(strlen(small) == 5 && strncmp(small, "[2560", 5) == 0);
    CHECK_EQ_INT(kv_tensor_numel(NULL), 0);
}

/* Reference f16 -> f32. */
static float ref_f16_to_f32(uint16_t h) {
#ifdef __FLT16_MANT_DIG__
    _Float16 x;
    memcpy(&x, &h, 2);
    return (float)x;
#else
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (float)(s ? -v : v);
#endif
}

static void test_f16_to_f32_exhaustive(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = kv_f16_to_f32((uint16_t)h), want = ref_f16_to_f32((uint16_t)h);
        int ok = isnan(want) ? (isnan(got) && signbit(got) == signbit(want))
                             : f2u(got) == f2u(want);
        if (!ok && bad++ < 5)
            fprintf(stderr, "  f16 0x%04x: got %a (0x%08x) want %a\n", h, got, f2u(got), want);
    }
    CHECK_EQ_INT(bad, 0);
    /* spot values */
    CHECK(kv_f16_to_f32(0x3c00) == 1.0f);
    CHECK(kv_f16_to_f32(0xc000) == -2.0f);
    CHECK(kv_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(kv_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(kv_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    CHECK(isinf(kv_f16_to_f32(0x7c00)) && kv_f16_to_f32(0xfc00) < 0);
    CHECK(isnan(kv_f16_to_f32(0x7e00)) && isnan(kv_f16_to_f32(0x7c01)));
    CHECK(f2u(kv_f16_to_f32(0x8000)) == 0x80000000u);
}

/* Reference f32 -> f16 bits. */
static uint16_t ref_f32_to_f16(float f) {
#ifdef __FLT16_MANT_DIG__
    _Float16 x = (_Float16)f;
    uint16_t h;
    memcpy(&h, &x, 2);
    return h;
#else
    /* nearest binary16 by search over the 65536 values (slow; only without _Float16) */
    if (isnan(f)) return 0x7e00;
    uint16_t best = 0;
    double bd = INFINITY;
    for (uint32_t h = 0; h < 0x7c01; h++) {
        double v = ref_f16_to_f32((uint16_t)h), d = fabs(fabs((double)f) - v);
        if (d < bd || (d == bd && !(h & 1))) bd = d, best = (uint16_t)h;
    }
    if (fabs((double)f) >= 65520.0) best = 0x7c00;
    return (uint16_t)(best | (signbit(f) ? 0x8000 : 0));
#endif
}

static int f16_matches(float f, uint16_t got) {
    uint16_t want = ref_f32_to_f16(f);
    if (isnan(f)) /* any NaN with the sign kept */
        return (got & 0x7c00) == 0x7c00 && (got & 0x3ff) && (got & 0x8000) == (want & 0x8000);
    return got == want;
}

static void test_f32_to_f16(void) {
    int bad = 0, n = 0;
    /* Every f16 value, the midpoints between neighbours (ties) and one f32 ulp either
     * side of them: the complete set of rounding boundaries. */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float lo = kv_f16_to_f32((uint16_t)h), hi = kv_f16_to_f32((uint16_t)(h + 1));
        float mid = (float)(((double)lo + (double)hi) / 2); /* exact: 11-bit mantissas */
        float cand[] = {lo, mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
        for (int k = 0; k < 4; k++) {
            for (int s = 0; s < 2; s++) {
                float f = s ? -cand[k] : cand[k];
                uint16_t got = kv_f32_to_f16(f);
                n++;
                if (!f16_matches(f, got) && bad++ < 5)
                    fprintf(stderr, "  f32 %a -> 0x%04x, want 0x%04x\n", f, got,
                            ref_f32_to_f16(f));
            }
        }
    }
#ifdef __FLT16_MANT_DIG__
    /* a sweep over the f32 bit patterns (every 257th, plus random ones) */
    for (uint64_t u = 0; u < 0x100000000ull; u += 257 * 16) {
        float f = u2f((uint32_t)u);
        n++;
        if (!f16_matches(f, kv_f32_to_f16(f)) && bad++ < 5)
            fprintf(stderr, "  f32 0x%08x -> 0x%04x, want 0x%04x\n", (uint32_t)u,
                    kv_f32_to_f16(f), ref_f32_to_f16(f));
    }
    for (int i = 0; i < 200000; i++) {
        float f = u2f((uint32_t)rng());
        n++;
        if (!f16_matches(f, kv_f32_to_f16(f)) && bad++ < 5)
            fprintf(stderr, "  f32 0x%08x -> 0x%04x, want 0x%04x\n", f2u(f), kv_f32_to_f16(f),
                    ref_f32_to_f16(f));
    }
#endif
    fprintf(stderr, "  f32->f16: %d inputs, %d mismatches\n", n, bad);
    CHECK_EQ_INT(bad, 0);
    /* named cases */
    CHECK_EQ_INT(kv_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_INT(kv_f32_to_f16(65519.996f), 0x7bff);  /* below the tie to Inf */
    CHECK_EQ_INT(kv_f32_to_f16(65520.0f), 0x7c00);    /* tie rounds to even = Inf */
    CHECK_EQ_INT(kv_f32_to_f16(1e10f), 0x7c00);
    CHECK_EQ_INT(kv_f32_to_f16(-INFINITY), 0xfc00);
    CHECK_EQ_INT(kv_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);     /* tie to even: zero */
    CHECK_EQ_INT(kv_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    CHECK_EQ_INT(kv_f32_to_f16(ldexpf(3.0f, -25)), 0x0002);     /* 1.5 ulp: tie to even 2 */
    CHECK_EQ_INT(kv_f32_to_f16(ldexpf(1023.5f, -24)), 0x0400);  /* subnormal -> normal */
    CHECK_EQ_INT(kv_f32_to_f16(-0.0f), 0x8000);
    CHECK_EQ_INT(kv_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie, even down */
    CHECK_EQ_INT(kv_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02); /* tie, odd up */
    uint16_t qn = kv_f32_to_f16(u2f(0x7f800001u)); /* signalling NaN, low payload */
    CHECK((qn & 0x7c00) == 0x7c00 && (qn & 0x3ff) != 0);
    CHECK(kv_f32_to_f16(u2f(0xffc00000u)) & 0x8000);
}

/* Nearest-even reference for bf16 in double arithmetic. */
static uint16_t ref_f32_to_bf16(float f) {
    uint32_t u = f2u(f);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    double dl = fabs((double)f - (double)kv_bf16_to_f32(lo));
    /* the value just above in magnitude (may be Inf: then compare with 2^128) */
    double vh = isinf(kv_bf16_to_f32(hi)) ? (signbit(f) ? -ldexp(1, 128) : ldexp(1, 128))
                                          : (double)kv_bf16_to_f32(hi);
    double dh = fabs((double)f - vh);
    if (dl < dh) return lo;
    if (dh < dl) return hi;
    return (lo & 1) ? hi : lo;
}

static void test_bf16(void) {
    /* ties to even */
    CHECK_EQ_INT(kv_f32_to_bf16(u2f(0x3f808000u)), 0x3f80); /* tie, even: down */
    CHECK_EQ_INT(kv_f32_to_bf16(u2f(0x3f818000u)), 0x3f82); /* tie, odd: up */
    CHECK_EQ_INT(kv_f32_to_bf16(u2f(0x3f808001u)), 0x3f81); /* above tie: up */
    CHECK_EQ_INT(kv_f32_to_bf16(u2f(0x3f807fffu)), 0x3f80); /* below tie: down */
    CHECK_EQ_INT(kv_f32_to_bf16(u2f(0xbf818000u)), 0xbf82); /* sign symmetric */
    CHECK_EQ_INT(kv_f32_to_bf16(u2f(0x0000c000u)), 0x0001); /* subnormal tie, odd: up */
    /* Inf and overflow */
    CHECK_EQ_INT(kv_f32_to_bf16(INFINITY), 0x7f80);
    CHECK_EQ_INT(kv_f32_to_bf16(-INFINITY), 0xff80);
    CHECK_EQ_INT(kv_f32_to_bf16(u2f(0x7f7fffffu)), 0x7f80); /* FLT_MAX rounds to Inf */
    CHECK_EQ_INT(kv_f32_to_bf16(u2f(0x7f7f7fffu)), 0x7f7f);
    /* NaN stays NaN, even when only low payload bits are set, and keeps its sign */
    uint16_t n1 = kv_f32_to_bf16(u2f(0x7f800001u)), n2 = kv_f32_to_bf16(u2f(0xff800001u));
    CHECK((n1 & 0x7f80) == 0x7f80 && (n1 & 0x7f) && !(n1 & 0x8000));
    CHECK((n2 & 0x7f80) == 0x7f80 && (n2 & 0x7f) && (n2 & 0x8000));
    CHECK(isnan(kv_bf16_to_f32(kv_f32_to_bf16(NAN))));
    CHECK_EQ_INT(kv_f32_to_bf16(-0.0f), 0x8000);
    /* round trip of every non-NaN bf16 */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kv_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (kv_f32_to_bf16(f) != h && bad++ < 5) fprintf(stderr, "  bf16 0x%04x round trip\n", h);
    }
    /* nearest-even on random patterns */
    for (int i = 0; i < 1000000; i++) {
        float f = u2f((uint32_t)rng());
        if (isnan(f)) continue;
        uint16_t got = kv_f32_to_bf16(f), want = ref_f32_to_bf16(f);
        if (got != want && bad++ < 5)
            fprintf(stderr, "  f32 0x%08x -> bf16 0x%04x, want 0x%04x\n", f2u(f), got, want);
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_to_f32(void) {
    /* sources at an odd address: tensors in a map need not be aligned */
    unsigned char buf[64 + 1];
    float want[8], got[8];
    for (int i = 0; i < 8; i++) want[i] = (float)(i - 3) * 0.5f;
    uint16_t h[8];
    for (int i = 0; i < 8; i++) h[i] = kv_f32_to_bf16(want[i]);
    memcpy(buf + 1, h, sizeof h);
    kv_to_f32(KV_DTYPE_BF16, buf + 1, got, 8);
    CHECK_CLOSE("bf16", got, want, 8, 0, 0); /* exact: the values are representable */
    for (int i = 0; i < 8; i++) h[i] = kv_f32_to_f16(want[i]);
    memcpy(buf + 1, h, sizeof h);
    kv_to_f32(KV_DTYPE_F16, buf + 1, got, 8);
    CHECK_CLOSE("f16", got, want, 8, 0, 0);
    memcpy(buf + 1, want, sizeof want);
    kv_to_f32(KV_DTYPE_F32, buf + 1, got, 8);
    CHECK_CLOSE("f32", got, want, 8, 0, 0);
    int32_t iv[4] = {-7, 0, 5, 1 << 20};
    float iw[4] = {-7, 0, 5, 1 << 20};
    memcpy(buf + 1, iv, sizeof iv);
    kv_to_f32(KV_DTYPE_I32, buf + 1, got, 4);
    CHECK_CLOSE("i32", got, iw, 4, 0, 0);
    double dv[2] = {1.25, -3.5};
    float dw[2] = {1.25f, -3.5f};
    memcpy(buf + 1, dv, sizeof dv);
    kv_to_f32(KV_DTYPE_F64, buf + 1, got, 2);
    CHECK_CLOSE("f64", got, dw, 2, 0, 0);
    kv_to_f32(KV_DTYPE_F32, NULL, got, 0); /* no-op */
}

int main(void) {
    KV_RUN(test_dtype_table);
    KV_RUN(test_numel_shape);
    KV_RUN(test_f16_to_f32_exhaustive);
    KV_RUN(test_f32_to_f16);
    KV_RUN(test_bf16);
    KV_RUN(test_to_f32);
    return kv_test_summary();
}
