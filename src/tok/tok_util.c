/* tok_util.c — UTF-8, Unicode classes, NFC, hash maps and regex translation for src/tok.
 *
 * Unicode sources: White_Space from PropList.txt (what Oniguruma's \s and Rust regex's
 * \s match), NFC from utf8proc (Unicode normalization, UAX #15), lossy decoding as Rust's
 * String::from_utf8_lossy (Unicode 15 §3.9 "maximal subpart" substitution). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/tok_internal.h"

/* ---- buffers ------------------------------------------------------------------------ */
int tok_buf_reserve(tok_buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tok_buf_put(tok_buf *b, const void *s, size_t n) {
    if (tok_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

void tok_buf_free(tok_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- UTF-8 -------------------------------------------------------------------------- */
/* Length of the valid sequence starting at s[i] (1..4), or 0 with *bad set to the length
 * of the maximal invalid subpart (>= 1) that Rust's Utf8Chunks would report. */
static int utf8_seq(const uint8_t *s, size_t len, size_t i, int *bad) {
    uint8_t c = s[i];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    else {
        *bad = 1;
        return 0;
    }
    for (int k = 1; k <= need; k++) {
        if (i + k >= len) {
            *bad = k;
            return 0;
        }
        uint8_t d = s[i + k];
        uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (d < l || d > h) {
            *bad = k;
            return 0;
        }
    }
    return need + 1;
}

size_t tok_utf8_valid_upto(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= len) break;
        int bad = 0, n = utf8_seq(s, len, i, &bad);
        if (!n) return i;
        i += (size_t)n;
    }
    return len;
}

int tok_utf8_enc(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int tok_utf8_lossy(const uint8_t *s, size_t len, tok_buf *out) {
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    size_t i = 0, run = 0; /* run: start of the pending valid bytes */
    while (i < len) {
        int bad = 0, n = utf8_seq(s, len, i, &bad);
        if (n) {
            i += (size_t)n;
            continue;
        }
        if (tok_buf_put(out, s + run, i - run) || tok_buf_put(out, fffd, 3)) return -1;
        i += (size_t)bad;
        run = i;
    }
    return tok_buf_put(out, s + run, len - run);
}

int tok_is_white_space(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85) return 0;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int tok_is_word_char(uint32_t c) {
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    if (c == 0x200C || c == 0x200D) return 1;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

/* ---- byte-level table (GPT-2 bytes_to_unicode) ------------------------------------- */
uint16_t tok_byte_to_cp[256];
static int16_t cp_to_byte[324];
static uint8_t *nfc_safe; /* bitmap over U+0000..U+10FFFF: NFC leaves the char alone and
                             it starts a fresh normalization segment */
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_init(void) {
    /* printable Latin-1 maps to itself, the other 68 bytes to U+0100.. in byte order */
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        tok_byte_to_cp[b] = keep ? (uint16_t)b : (uint16_t)(256 + n++);
    }
    for (int c = 0; c < 324; c++) cp_to_byte[c] = -1;
    for (int b = 0; b < 256; b++) cp_to_byte[tok_byte_to_cp[b]] = (int16_t)b;

    /* NFC quick check, conservatively: a char is "safe" when its canonical combining
     * class is 0, NFC maps it to itself, and it never appears after the first position of
     * a canonical decomposition (so it cannot compose with what precedes it). A run of
     * text whose chars are all safe is its own NFC; other runs go through utf8proc. */
    size_t nb = (0x110000 + 7) / 8;
    uint8_t *m = malloc(nb);
    if (!m) return; /* nfc_safe stays NULL: every string goes through utf8proc */
    memset(m, 0xFF, nb);
#define CLR(c) (m[(c) >> 3] &= (uint8_t) ~(1u << ((c) & 7)))
    for (int32_t c = 0x300; c < 0x110000; c++) { /* below U+0300 everything is safe */
        const utf8proc_property_t *p = utf8proc_get_property(c);
        if (p->combining_class != 0) CLR(c);
        if (p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0) {
            /* canonical decomposition: its tail chars can compose with a predecessor */
            utf8proc_int32_t d[8];
            int last = 0;
            utf8proc_ssize_t k = utf8proc_decompose_char(c, d, 8, UTF8PROC_DECOMPOSE, &last);
            for (utf8proc_ssize_t j = 1; j < k && j < 8; j++) CLR(d[j]);
            /* does NFC keep c itself? (not for singletons and composition exclusions) */
            char u[5];
            int ul = tok_utf8_enc((uint32_t)c, u);
            u[ul] = 0;
            utf8proc_uint8_t *o = utf8proc_NFC((const utf8proc_uint8_t *)u);
            if (!o || strcmp((const char *)o, u) != 0) CLR(c);
            free(o);
        }
    }
    for (int32_t c = 0x1160; c <= 0x11FF; c++) CLR(c); /* Hangul V and T jamo compose */
    for (int32_t c = 0xD7B0; c <= 0xD7FF; c++) CLR(c); /* algorithmically */
#undef CLR
    nfc_safe = m;
}

void tok_tables_ready(void) { pthread_once(&tables_once, tables_init); }

int tok_cp_to_byte(uint32_t cp) { return cp < 324 ? cp_to_byte[cp] : -1; }

static inline int is_safe(uint32_t c) { return (nfc_safe[c >> 3] >> (c & 7)) & 1; }

int tok_utf8proc_map(const char *s, size_t len, int options, tok_buf *buf) {
    utf8proc_uint8_t *o = NULL;
    utf8proc_ssize_t n =
        utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &o, options);
    if (n < 0) return -1;
    int r = tok_buf_put(buf, o, (size_t)n);
    free(o);
    return r;
}

int tok_nfc(const char *s, size_t len, tok_buf *buf, const char **out, size_t *out_len) {
    const uint8_t *u = (const uint8_t *)s;
    if (!nfc_safe) {
        buf->n = 0;
        if (tok_utf8proc_map(s, len, UTF8PROC_STABLE | UTF8PROC_COMPOSE, buf)) return -1;
        *out = buf->p;
        *out_len = buf->n;
        return 0;
    }
    /* Find the first unsafe char; most text has none. */
    size_t i = 0, seg = 0; /* seg: start of the last safe char, a segment boundary */
    while (i < len) {
        if (u[i] < 0x80) {
            seg = i++;
            continue;
        }
        int n;
        uint32_t c = tok_utf8_dec(u + i, &n);
        if (!is_safe(c)) break;
        seg = i;
        i += (size_t)n;
    }
    if (i >= len) {
        *out = s;
        *out_len = len;
        return 0;
    }
    /* Segments: a safe char and the unsafe chars after it (composition and reordering
     * never cross the start of a safe char). Clean segments are copied, the others go
     * through utf8proc one by one. */
    buf->n = 0;
    if (tok_buf_put(buf, s, seg)) return -1;
    size_t pos = seg;
    while (pos < len) {
        int n, unsafe = 0;
        uint32_t c = tok_utf8_dec(u + pos, &n);
        size_t j = pos + (size_t)n;
        if (!is_safe(c)) unsafe = 1;
        while (j < len) {
            c = tok_utf8_dec(u + j, &n);
            if (is_safe(c)) break;
            unsafe = 1;
            j += (size_t)n;
        }
        int r = unsafe ? tok_utf8proc_map(s + pos, j - pos, UTF8PROC_STABLE | UTF8PROC_COMPOSE,
                                          buf)
                       : tok_buf_put(buf, s + pos, j - pos);
        if (r) return -1;
        pos = j;
    }
    *out = buf->p;
    *out_len = buf->n;
    return 0;
}

/* ---- string map --------------------------------------------------------------------- */
int tok_strmap_init(tok_strmap *m, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2 + 16) cap *= 2;
    m->slot = calloc(cap, sizeof *m->slot);
    m->mask = cap - 1;
    m->cap = expected + 16;
    m->ent = malloc(m->cap * sizeof *m->ent);
    m->n = 0;
    return m->slot && m->ent ? 0 : -1;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slot);
    free(m->ent);
    memset(m, 0, sizeof *m);
}

static int strmap_grow(tok_strmap *m, const char *arena) {
    size_t cap = (m->mask + 1) * 2;
    uint32_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (size_t k = 0; k < m->n; k++) {
        uint64_t i = tok_hash_bytes(arena + m->ent[k].off, m->ent[k].len) & (cap - 1);
        while (slot[i]) i = (i + 1) & (cap - 1);
        slot[i] = (uint32_t)(k + 1);
    }
    free(m->slot);
    m->slot = slot;
    m->mask = cap - 1;
    return 0;
}

int tok_strmap_put(tok_strmap *m, const char *arena, uint64_t off, uint32_t len, int32_t val) {
    if ((m->n + 1) * 2 > m->mask + 1 && strmap_grow(m, arena)) return -1;
    uint64_t i = tok_hash_bytes(arena + off, len) & m->mask;
    while (m->slot[i]) {
        struct tok_sent *e = &m->ent[m->slot[i] - 1];
        if (e->len == len && memcmp(arena + e->off, arena + off, len) == 0) {
            e->val = val;
            return 0;
        }
        i = (i + 1) & m->mask;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap * 2;
        struct tok_sent *e = realloc(m->ent, cap * sizeof *e);
        if (!e) return -1;
        m->ent = e;
        m->cap = cap;
    }
    m->ent[m->n] = (struct tok_sent){off, len, val};
    m->slot[i] = (uint32_t)++m->n;
    return 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *arena, const char *key, size_t len) {
    if (!m->slot) return -1;
    uint64_t i = tok_hash_bytes(key, len) & m->mask;
    while (m->slot[i]) {
        const struct tok_sent *e = &m->ent[m->slot[i] - 1];
        if (e->len == len && memcmp(arena + e->off, key, len) == 0) return e->val;
        i = (i + 1) & m->mask;
    }
    return -1;
}

/* ---- regex -------------------------------------------------------------------------- */
/* tokenizer.json patterns are Oniguruma syntax (HF compiles them with the onig crate).
 * PCRE2 with UTF|UCP reads them the same except for a few escapes whose Unicode meaning
 * differs; those are rewritten:
 *   \s \S   Oniguruma: White_Space. PCRE2 UCP: \p{Z} plus \h\v, which adds U+180E in
 *           some versions and misses U+0085 in others -> \p{White_Space} / \P{...}
 *   \w      Oniguruma: Letter|Mark|Decimal_Number|Connector_Punctuation; PCRE2 UCP:
 *           \p{L}\p{N}_ -> the explicit class
 *   \h \H   Oniguruma: hexadecimal digit; PCRE2: horizontal space -> [0-9a-fA-F]
 * Everything else (\p{..}, (?i:..), lookarounds, classes) is shared syntax. */
pcre2_code *tok_regex_compile(const char *pat, size_t len, int literal, char *errbuf,
                              size_t errcap) {
    tok_buf b = {0};
    int in_class = 0, ok = 1;
    if (!literal) {
        for (size_t i = 0; i < len && ok; i++) {
            char c = pat[i];
            const char *rep = NULL;
            if (c == '\\' && i + 1 < len) {
                char e = pat[i + 1];
                if (e == 's') rep = "\\p{White_Space}";
                else if (e == 'S') rep = "\\P{White_Space}";
                else if (e == 'w') rep = in_class ? "\\p{L}\\p{M}\\p{Nd}\\p{Pc}"
                                                  : "[\\p{L}\\p{M}\\p{Nd}\\p{Pc}]";
                else if (e == 'W' && !in_class) rep = "[^\\p{L}\\p{M}\\p{Nd}\\p{Pc}]";
                else if (e == 'h') rep = in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
                else if (e == 'H' && !in_class) rep = "[^0-9a-fA-F]";
                else if ((e == 'W' || e == 'H') && in_class) ok = 0;
                if (rep) {
                    ok = ok && !tok_buf_put(&b, rep, strlen(rep));
                } else {
                    ok = ok && !tok_buf_put(&b, pat + i, 2);
                }
                i++;
                continue;
            }
            if (c == '[' && !in_class) {
                in_class = 1;
                ok = !tok_buf_put(&b, &c, 1);
                /* a ']' right after '[' or '[^' is a literal */
                if (i + 1 < len && pat[i + 1] == '^') ok = ok && !tok_buf_put(&b, "^", 1), i++;
                if (i + 1 < len && pat[i + 1] == ']') ok = ok && !tok_buf_put(&b, "\\]", 2), i++;
                continue;
            }
            if (c == ']' && in_class) in_class = 0;
            ok = ok && !tok_buf_put(&b, &c, 1);
        }
    } else {
        ok = !tok_buf_put(&b, pat, len);
    }
    if (!ok) {
        snprintf(errbuf, errcap, "%s", b.p ? "unsupported escape in a character class"
                                            : "out of memory");
        tok_buf_free(&b);
        return NULL;
    }
    int ec;
    PCRE2_SIZE eo;
    uint32_t opt = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.n, opt, &ec, &eo, NULL);
    tok_buf_free(&b);
    if (!re) {
        PCRE2_UCHAR m[256];
        pcre2_get_error_message(ec, m, sizeof m);
        snprintf(errbuf, errcap, "%s at offset %zu", (const char *)m, (size_t)eo);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    return re;
}
