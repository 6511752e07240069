/* tok_internal.h — the parts of kv_tokenizer shared by the src/tok sources.
 *
 * A tokenizer.json is compiled at load time into flat tables:
 *   vocab       string -> id (open addressing over one string arena), id -> string
 *   merges      (left id, right id) -> (rank, merged id), one 16-byte slot per pair
 *   added       the added_tokens list, split out of the text before anything else
 *   pipeline    normalizer steps, pre-tokenizer steps, decoder steps, as small tagged
 *               structs executed in order (the JSON "Sequence" nesting is flattened)
 * Encoding follows tokenizers/src/tokenizer/mod.rs: added-token split on the raw text,
 * normalize each remaining piece, added-token split (normalized tokens) again,
 * pre-tokenize, BPE per word, post-process. */
#ifndef KVANT_TOK_INTERNAL_H
#define KVANT_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>

#include "kvant/tokenizer.h"

/* ---- small growable byte buffer ---------------------------------------------------- */
typedef struct {
    char *p;
    size_t n, cap;
} tok_buf;
int tok_buf_reserve(tok_buf *b, size_t extra); /* 0 on success, -1 on OOM */
int tok_buf_put(tok_buf *b, const void *s, size_t n);
void tok_buf_free(tok_buf *b);

/* ---- UTF-8 ------------------------------------------------------------------------- */
/* Strict validation (no overlongs, surrogates or > U+10FFFF): returns len when valid,
 * else the offset of the first byte of the first invalid sequence. */
size_t tok_utf8_valid_upto(const uint8_t *s, size_t len);
/* Decode one code point of valid UTF-8 at s; *n receives its length. */
static inline uint32_t tok_utf8_dec(const uint8_t *s, int *n) {
    uint8_t c = s[0];
    if (c < 0x80) { *n = 1; return c; }
    if (c < 0xE0) { *n = 2; return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F); }
    if (c < 0xF0) {
        *n = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *n = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}
int tok_utf8_enc(uint32_t cp, char *out); /* returns 1..4 */
/* Rust's String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD. */
int tok_utf8_lossy(const uint8_t *s, size_t len, tok_buf *out);
/* Unicode White_Space (what Oniguruma's and Rust regex's \s match). */
int tok_is_white_space(uint32_t cp);
/* Rust regex \w: alphabetic, marks, decimal digits, connector punctuation, joiners. */
int tok_is_word_char(uint32_t cp);

/* NFC: *out gets s itself when already normalized (fast quick-check path), or a
 * normalized copy in buf. Returns 0, or -1 on OOM. */
int tok_nfc(const char *s, size_t len, tok_buf *buf, const char **out, size_t *out_len);
/* The other utf8proc normal forms, always through utf8proc (rare in LLM tokenizers). */
int tok_utf8proc_map(const char *s, size_t len, int options, tok_buf *buf);

/* ---- hash maps --------------------------------------------------------------------- */
static inline uint64_t tok_hash_bytes(const void *p, size_t n) {
    /* FNV-1a over 8-byte words then bytes, finished with a multiply-xorshift. */
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ (n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, s, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    while (n--) h = (h ^ *s++) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

/* string -> int32 map; strings live in the tokenizer's arena (offset + length). */
typedef struct {
    uint32_t *slot; /* index+1 into ent, 0 = empty */
    uint64_t mask;
    struct tok_sent {
        uint64_t off;
        uint32_t len;
        int32_t val;
    } *ent;
    size_t n, cap;
} tok_strmap;
/* Insert or overwrite; the key must already be in arena. -1 on OOM. */
int tok_strmap_put(tok_strmap *m, const char *arena, uint64_t off, uint32_t len, int32_t val);
int32_t tok_strmap_get(const tok_strmap *m, const char *arena, const char *key, size_t len);
void tok_strmap_free(tok_strmap *m);
int tok_strmap_init(tok_strmap *m, size_t expected);

/* (left, right) -> (rank, merged id). */
typedef struct {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    int32_t rank, id;
} tok_pair;
typedef struct {
    tok_pair *t;
    uint64_t mask;
    int shift;
} tok_pairmap;
static inline const tok_pair *tok_pair_get(const tok_pairmap *m, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> m->shift;
    for (;;) {
        const tok_pair *p = &m->t[i];
        if (p->key == key) return p;
        if (p->key == UINT64_MAX) return 0;
        i = (i + 1) & m->mask;
    }
}

/* ---- the compiled tokenizer -------------------------------------------------------- */
typedef struct {
    char *content; /* as written in added_tokens */
    size_t len;
    char *norm; /* the content normalized when normalized=true, else == content: what HF's
                   id_to_token and decode give for this id */
    size_t norm_len;
    int32_t id;
    uint8_t special, single_word, lstrip, rstrip, normalized;
} tok_added;

/* A set of literal patterns matched leftmost-longest (what aho-corasick's
 * MatchKind::LeftmostLongest gives HF). Few patterns (tens to hundreds): candidates are
 * bucketed by first byte. */
typedef struct {
    char **pat;
    size_t *len;
    int *added; /* index into tokenizer.added */
    int n;
    int *by_byte[256]; /* pattern indices starting with that byte, longest first, -1 ended */
} tok_matcher;

enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_PREPEND, NORM_REPLACE };
typedef struct {
    int kind;
    char *a; /* prepend string / replace pattern */
    char *b; /* replace content */
    size_t alen, blen;
} tok_norm;

enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
enum { PRE_SPLIT, PRE_METASPACE, PRE_BYTELEVEL };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct {
    int kind;
    pcre2_code *re; /* Split pattern, or ByteLevel's GPT-2 regex when use_regex */
    int behavior, invert;
    char rep[5]; /* Metaspace replacement char, UTF-8 */
    int rep_len;
    uint32_t rep_cp;
    int prepend, split; /* Metaspace */
    int add_prefix_space; /* ByteLevel */
} tok_pre;

enum { DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP };
typedef struct {
    int kind;
    char *a, *b; /* Replace pattern / content */
    size_t alen, blen;
    uint32_t cp; /* Metaspace replacement / Strip content */
    int prepend;
    int start, stop; /* Strip */
} tok_dec;

#define TOK_CACHE_SHARDS 64
#define TOK_CACHE_WAYS 1024 /* per shard */
#define TOK_CACHE_KEY 23    /* longest cached word in bytes */
#define TOK_CACHE_IDS 8     /* most ids a cached word may have */
typedef struct {
    uint32_t hash; /* low 32 bits of the word hash; 0 = empty */
    uint8_t klen, nids;
    char key[TOK_CACHE_KEY];
    int32_t ids[TOK_CACHE_IDS];
} tok_cache_ent; /* 64 bytes */
typedef struct {
    pthread_mutex_t mu;
    tok_cache_ent *e; /* TOK_CACHE_WAYS entries, direct mapped */
} tok_cache_shard;

struct kv_tokenizer {
    char *path; /* for messages */

    /* vocabulary: model vocab and added tokens */
    char *arena; /* all vocab strings back to back */
    size_t arena_len, arena_cap;
    tok_strmap vocab;     /* model vocab: piece -> id */
    uint64_t *piece_off;  /* [n_ids] offset into arena, UINT64_MAX = no piece */
    uint32_t *piece_len;  /* [n_ids] */
    int32_t *added_of_id; /* [n_ids] index into added, -1 */
    int64_t n_ids;        /* largest id + 1 over vocab and added tokens */

    tok_added *added;
    int n_added;
    tok_matcher m_raw, m_norm; /* non-normalized / normalized added tokens */

    tok_norm *norm;
    int n_norm;
    tok_pre *pre;
    int n_pre;
    int byte_level; /* the last pre-tokenizer is ByteLevel: model input bytes are mapped */

    /* BPE model */
    tok_pairmap merges;
    int32_t byte_id[256];   /* byte-level: id of the mapped char of each byte, -1 */
    int32_t fb_id[256];     /* byte_fallback: id of "<0xAB>", -1 */
    int32_t *cp_id;         /* [65536] id of each BMP char as a token, -1; non byte-level */
    int32_t unk_id;         /* -1 when no unk_token */
    int fuse_unk, byte_fallback, ignore_merges;
    char *cont_prefix, *eow_suffix; /* NULL or "" when unused */
    size_t cont_prefix_len, eow_suffix_len;

    /* post-processor (TemplateProcessing single): ids before and after $A */
    int32_t *tmpl_pre, *tmpl_post;
    int n_tmpl_pre, n_tmpl_post;

    tok_dec *dec;
    int n_dec;
    int has_decoder;

    tok_cache_shard cache[TOK_CACHE_SHARDS];
    int cache_ok;
};

/* byte <-> char table of GPT-2's bytes_to_unicode(). */
extern uint16_t tok_byte_to_cp[256];
int tok_cp_to_byte(uint32_t cp); /* -1 when cp is not one of the 256 */
/* Build the byte table and the NFC quick-check bitmap once per process (kv_tok_load
 * calls it before anything reads them). */
void tok_tables_ready(void);

/* Compile an Oniguruma-syntax pattern (as tokenizer.json writes it) for PCRE2. */
pcre2_code *tok_regex_compile(const char *pattern, size_t len, int literal, char *errbuf,
                              size_t errcap);

#endif
