/* tok_encode.c — text -> ids, step for step as huggingface/tokenizers encodes.
 *
 *   1. added tokens with normalized=false are split out of the raw text (leftmost-longest,
 *      then single_word / lstrip / rstrip as in added_vocabulary.rs find_matches);
 *   2. each remaining piece is normalized on its own (NFC, Prepend, Replace, ...), then
 *      added tokens with normalized=true are split out of the normalized piece;
 *   3. pre-tokenizers cut pieces into words (Split regex, Metaspace, ByteLevel); empty
 *      pieces are dropped at every step, as PreTokenizedString::split does;
 *   4. BPE per word (models/bpe/word.rs merge_all): repeatedly merge the adjacent pair of
 *      lowest rank, leftmost first; unknown chars use byte_fallback "<0xAB>" or unk;
 *   5. with KV_TOK_ADD_SPECIAL, the TemplateProcessing ids around the sequence.
 * Invalid UTF-8 is refused with the byte offset: HF only accepts str, so there is no
 * reference behaviour to copy, and silently replacing bytes would change the ids. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/tok_internal.h"

#define MAX_PRE 8
#define SMALL_WORD 48 /* words up to this many symbols merge by scanning; longer use a heap */

typedef struct {
    size_t a, b;
    int m;
} span;

typedef struct {
    int32_t rank, pos;
} hent;

typedef struct {
    const kv_tokenizer *t;
    kv_ids *ids;
    kv_err *err;
    kv_status st;
    pcre2_match_data *md;
    tok_buf na, nb;       /* normalizer ping-pong */
    tok_buf lvl[MAX_PRE]; /* rewritten text per pre-tokenizer level */
    span *sp[MAX_PRE];
    size_t spcap[MAX_PRE];
    tok_buf w; /* scratch strings */
    int32_t *sym, *rk, *nid, *prev, *next;
    hent *heap;
    size_t symcap;
} enc;

static int set_oom(enc *e, size_t n) {
    e->st = kv_err_set(e->err, KV_ENOMEM, "%s: encode: out of memory allocating %zu bytes",
                       e->t->path, n);
    return -1;
}

static inline int emit(enc *e, const int32_t *v, size_t k) {
    kv_ids *o = e->ids;
    if (!k) return 0;
    if (o->n + k > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->n + k) cap *= 2;
        int32_t *p = realloc(o->v, cap * sizeof *p);
        if (!p) return set_oom(e, cap * sizeof *p);
        o->v = p;
        o->cap = cap;
    }
    memcpy(o->v + o->n, v, k * sizeof *v);
    o->n += k;
    return 0;
}

/* ---- normalizers --------------------------------------------------------------------- */
int tok_normalize_all(const kv_tokenizer *t, const char *s, size_t n, tok_buf *a, tok_buf *b,
                      const char **out, size_t *out_len);
int tok_normalize_all(const kv_tokenizer *t, const char *s, size_t n, tok_buf *a, tok_buf *b,
                      const char **out, size_t *out_len) {
    const char *cur = s;
    size_t cn = n;
    for (int i = 0; i < t->n_norm; i++) {
        const tok_norm *x = &t->norm[i];
        tok_buf *d = (a->p && cur == a->p) ? b : a; /* never write where cur lives */
        d->n = 0;
        switch (x->kind) {
        case NORM_NFC: {
            const char *o;
            size_t on;
            if (tok_nfc(cur, cn, d, &o, &on)) return -1;
            cur = o;
            cn = on;
            continue;
        }
        case NORM_NFD:
        case NORM_NFKC:
        case NORM_NFKD: {
            int opt = x->kind == NORM_NFD    ? UTF8PROC_STABLE | UTF8PROC_DECOMPOSE
                      : x->kind == NORM_NFKC ? UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT
                                             : UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
            if (tok_utf8proc_map(cur, cn, opt, d)) return -1;
            break;
        }
        case NORM_PREPEND:
            if (!cn) continue; /* Prepend leaves an empty string alone */
            if (tok_buf_put(d, x->a, x->alen) || tok_buf_put(d, cur, cn)) return -1;
            break;
        case NORM_REPLACE: {
            size_t k = 0, last = 0;
            while (k + x->alen <= cn) {
                if (memcmp(cur + k, x->a, x->alen) == 0) {
                    if (tok_buf_put(d, cur + last, k - last) || tok_buf_put(d, x->b, x->blen))
                        return -1;
                    k += x->alen;
                    last = k;
                } else {
                    k++;
                }
            }
            if (last == 0) continue; /* no occurrence: unchanged */
            if (tok_buf_put(d, cur + last, cn - last)) return -1;
            break;
        }
        }
        if (tok_buf_reserve(d, 1)) return -1; /* d->p exists even for an empty result */
        cur = d->p;
        cn = d->n;
    }
    *out = cur;
    *out_len = cn;
    return 0;
}

/* ---- BPE ------------------------------------------------------------------------------- */
static int sym_reserve(enc *e, size_t n) {
    if (n <= e->symcap) return 0;
    size_t cap = e->symcap ? e->symcap : 64;
    while (cap < n) cap *= 2;
    int32_t **arr[] = {&e->sym, &e->rk, &e->nid, &e->prev, &e->next};
    for (int i = 0; i < 5; i++) {
        int32_t *p = realloc(*arr[i], cap * sizeof *p);
        if (!p) return set_oom(e, cap * sizeof *p);
        *arr[i] = p;
    }
    hent *h = realloc(e->heap, 2 * cap * sizeof *h);
    if (!h) return set_oom(e, 2 * cap * sizeof *h);
    e->heap = h;
    e->symcap = cap;
    return 0;
}

/* One unit (a char, or a byte in byte-level mode) that is not a vocab token: HF's
 * merge_word tries byte_fallback for all its bytes, else an unk (fused when fuse_unk).
 * A pending unk is not flushed before byte-fallback tokens, exactly as merge_word. */
static int unit_missing(enc *e, const char *us, size_t ul, size_t *m, int *pending_unk) {
    const kv_tokenizer *t = e->t;
    if (t->byte_fallback) {
        size_t k = 0;
        while (k < ul && t->fb_id[(uint8_t)us[k]] >= 0) k++;
        if (k == ul) {
            if (sym_reserve(e, *m + ul)) return -1;
            for (k = 0; k < ul; k++) e->sym[(*m)++] = t->fb_id[(uint8_t)us[k]];
            return 0;
        }
    }
    if (t->unk_id >= 0) {
        if (*pending_unk && !t->fuse_unk) {
            if (sym_reserve(e, *m + 1)) return -1;
            e->sym[(*m)++] = t->unk_id;
        }
        *pending_unk = 1;
    }
    return 0; /* no unk token: the char is dropped, as HF does */
}

static inline int unit_found(enc *e, int32_t id, size_t *m, int *pending_unk) {
    if (sym_reserve(e, *m + 2)) return -1;
    if (*pending_unk) {
        e->sym[(*m)++] = e->t->unk_id;
        *pending_unk = 0;
    }
    e->sym[(*m)++] = id;
    return 0;
}

/* Initial symbols of a word into e->sym; returns the count or -1. */
static long word_symbols(enc *e, const char *s, size_t n) {
    const kv_tokenizer *t = e->t;
    const uint8_t *u = (const uint8_t *)s;
    size_t m = 0;
    int pend = 0;
    if (sym_reserve(e, n + 2)) return -1;
    int affix = t->cont_prefix_len || t->eow_suffix_len;
    if (t->byte_level && !affix) {
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_id[u[i]];
            if (id >= 0 && !pend) {
                e->sym[m++] = id;
                continue;
            }
            char c[4];
            int cl = tok_utf8_enc(tok_byte_to_cp[u[i]], c);
            if (id >= 0 ? unit_found(e, id, &m, &pend) : unit_missing(e, c, (size_t)cl, &m, &pend))
                return -1;
        }
    } else {
        for (size_t i = 0; i < n;) {
            int cl;
            uint32_t cp;
            char mapped[4];
            const char *us = s + i;
            size_t ul;
            if (t->byte_level) { /* one byte, spelled as its mapped char */
                cl = 1;
                ul = (size_t)tok_utf8_enc(tok_byte_to_cp[u[i]], mapped);
                us = mapped;
                cp = 0x110000;
            } else {
                cp = tok_utf8_dec(u + i, &cl);
                ul = (size_t)cl;
            }
            int32_t id;
            if (!affix) {
                id = cp < 65536 ? t->cp_id[cp] : tok_strmap_get(&t->vocab, t->arena, us, ul);
            } else {
                e->w.n = 0;
                if ((i > 0 && tok_buf_put(&e->w, t->cont_prefix, t->cont_prefix_len)) ||
                    tok_buf_put(&e->w, us, ul) ||
                    (i + (size_t)cl == n && tok_buf_put(&e->w, t->eow_suffix, t->eow_suffix_len)))
                    return set_oom(e, n);
                us = e->w.p;
                ul = e->w.n;
                id = tok_strmap_get(&t->vocab, t->arena, us, ul);
            }
            if (id >= 0 ? unit_found(e, id, &m, &pend) : unit_missing(e, us, ul, &m, &pend))
                return -1;
            i += (size_t)cl;
        }
    }
    if (pend) {
        if (sym_reserve(e, m + 1)) return -1;
        e->sym[m++] = t->unk_id;
    }
    return (long)m;
}

static inline int hless(hent a, hent b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void hpush(hent *h, size_t *n, hent x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(x, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static hent hpop(hent *h, size_t *n) {
    hent top = h[0], x = h[--*n];
    size_t i = 0, k = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= k) break;
        if (c + 1 < k && hless(h[c + 1], h[c])) c++;
        if (!hless(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    if (k) h[i] = x;
    return top;
}

/* Merge e->sym[0..m) in place; returns the new count. Both paths merge the adjacent pair
 * of lowest (rank, position) first, which is the order of HF's BinaryHeap of Merge. */
static size_t merge_word(enc *e, size_t m) {
    const tok_pairmap *pm = &e->t->merges;
    int32_t *sym = e->sym;
    if (m < 2) return m;
    if (m <= SMALL_WORD) {
        int32_t *rk = e->rk, *nid = e->nid;
        for (size_t i = 0; i + 1 < m; i++) {
            const tok_pair *p = tok_pair_get(pm, sym[i], sym[i + 1]);
            rk[i] = p ? p->rank : INT32_MAX;
            nid[i] = p ? p->id : -1;
        }
        for (;;) {
            int32_t best = INT32_MAX;
            size_t bi = 0;
            for (size_t i = 0; i + 1 < m; i++)
                if (rk[i] < best) best = rk[i], bi = i;
            if (best == INT32_MAX) break;
            sym[bi] = nid[bi];
            /* symbols after the pair move left by one; so do the pairs after bi + 1 */
            memmove(sym + bi + 1, sym + bi + 2, (m - bi - 2) * sizeof *sym);
            if (bi + 3 < m) {
                memmove(rk + bi + 1, rk + bi + 2, (m - bi - 3) * sizeof *rk);
                memmove(nid + bi + 1, nid + bi + 2, (m - bi - 3) * sizeof *nid);
            }
            m--;
            for (size_t j = bi ? bi - 1 : 0; j <= bi && j + 1 < m; j++) {
                const tok_pair *p = tok_pair_get(pm, sym[j], sym[j + 1]);
                rk[j] = p ? p->rank : INT32_MAX;
                nid[j] = p ? p->id : -1;
            }
        }
        return m;
    }
    /* long words: doubly linked symbols and a heap of candidate pairs; stale entries are
     * recognised by looking the pair up again */
    int32_t *prev = e->prev, *next = e->next;
    hent *h = e->heap;
    size_t hn = 0;
    for (size_t i = 0; i < m; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < m; i++) {
        const tok_pair *p = tok_pair_get(pm, sym[i], sym[i + 1]);
        if (p) hpush(h, &hn, (hent){p->rank, (int32_t)i});
    }
    while (hn) {
        hent top = hpop(h, &hn);
        int32_t i = top.pos, j = next[i];
        if (sym[i] < 0 || j < 0) continue;
        const tok_pair *p = tok_pair_get(pm, sym[i], sym[j]);
        if (!p || p->rank != top.rank) continue;
        sym[i] = p->id;
        sym[j] = -1; /* removed */
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        if (prev[i] >= 0) {
            const tok_pair *q = tok_pair_get(pm, sym[prev[i]], sym[i]);
            if (q) hpush(h, &hn, (hent){q->rank, prev[i]});
        }
        if (next[i] >= 0) {
            const tok_pair *q = tok_pair_get(pm, sym[i], sym[next[i]]);
            if (q) hpush(h, &hn, (hent){q->rank, i});
        }
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[k++] = sym[i];
    return k;
}

static int bpe_word(enc *e, const char *s, size_t n) {
    const kv_tokenizer *t = e->t;
    tok_cache_shard *sh = NULL;
    tok_cache_ent *ce = NULL;
    uint32_t tag = 0;
    if (t->cache_ok && n <= TOK_CACHE_KEY) {
        uint64_t h = tok_hash_bytes(s, n);
        tag = (uint32_t)(h >> 32) | 1;
        sh = (tok_cache_shard *)&t->cache[h % TOK_CACHE_SHARDS]; /* cache is mutable state */
        ce = &sh->e[(h >> 6) % TOK_CACHE_WAYS];
        int32_t ids[TOK_CACHE_IDS];
        int hit = 0, k = 0;
        pthread_mutex_lock(&sh->mu);
        if (ce->hash == tag && ce->klen == n && memcmp(ce->key, s, n) == 0) {
            hit = 1;
            k = ce->nids;
            memcpy(ids, ce->ids, (size_t)k * sizeof *ids);
        }
        pthread_mutex_unlock(&sh->mu);
        if (hit) return emit(e, ids, (size_t)k);
    }
    if (t->ignore_merges) { /* a word that is a token is taken whole */
        const char *ws = s;
        size_t wn = n;
        if (t->byte_level) {
            e->w.n = 0;
            if (tok_buf_reserve(&e->w, 2 * n)) return set_oom(e, 2 * n);
            for (size_t i = 0; i < n; i++)
                e->w.n += (size_t)tok_utf8_enc(tok_byte_to_cp[(uint8_t)s[i]], e->w.p + e->w.n);
            ws = e->w.p;
            wn = e->w.n;
        }
        int32_t id = tok_strmap_get(&t->vocab, t->arena, ws, wn);
        if (id >= 0) return emit(e, &id, 1);
    }
    long m0 = word_symbols(e, s, n);
    if (m0 < 0) return -1;
    size_t m = merge_word(e, (size_t)m0);
    if (ce && m <= TOK_CACHE_IDS) {
        pthread_mutex_lock(&sh->mu);
        ce->hash = tag;
        ce->klen = (uint8_t)n;
        ce->nids = (uint8_t)m;
        memcpy(ce->key, s, n);
        memcpy(ce->ids, e->sym, m * sizeof *e->sym);
        pthread_mutex_unlock(&sh->mu);
    }
    return emit(e, e->sym, m);
}

/* ---- pre-tokenizers -------------------------------------------------------------------- */
static int pretok(enc *e, int lvl, const char *s, size_t n, int origin);

/* Next match of re in s[0..n) at or after off: 1 found, 0 none, -1 error. */
static int re_next(enc *e, const pcre2_code *re, const char *s, size_t n, size_t off,
                   size_t *ms, size_t *me) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, e->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(rc, msg, sizeof msg);
        e->st = kv_err_set(e->err, KV_EUNSUPPORTED, "%s: encode: pre-tokenizer regex failed at "
                           "byte %zu: %s", e->t->path, off, (const char *)msg);
        return -1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

static size_t char_len(const char *s) {
    uint8_t c = (uint8_t)*s;
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static int push_span(enc *e, int lvl, size_t *k, size_t a, size_t b, int m) {
    if (*k == e->spcap[lvl]) {
        size_t cap = e->spcap[lvl] ? e->spcap[lvl] * 2 : 64;
        span *p = realloc(e->sp[lvl], cap * sizeof *p);
        if (!p) return set_oom(e, cap * sizeof *p);
        e->sp[lvl] = p;
        e->spcap[lvl] = cap;
    }
    e->sp[lvl][(*k)++] = (span){a, b, m};
    return 0;
}

/* Where the next search starts after the match [ms, me): at its end, or one character
 * on after an empty match so the scan moves. 0 after an empty match at the end of s. */
static int next_off(const char *s, size_t n, size_t ms, size_t me, size_t *off) {
    if (me != ms) {
        *off = me;
        return 1;
    }
    if (me >= n) return 0;
    *off = me + char_len(s + me);
    return 1;
}

/* Split by a regex with a SplitDelimiterBehavior (normalizer.rs NormalizedString::split). */
static int split_regex(enc *e, int lvl, const pcre2_code *re, int behavior, int invert,
                       const char *s, size_t n, int origin, int to_model) {
    size_t prev = 0, off = 0, ms, me;
    if (behavior == SPLIT_ISOLATED) { /* every gap and every match is a piece: stream */
        for (;;) {
            int r = re_next(e, re, s, n, off, &ms, &me);
            if (r < 0) return -1;
            if (!r) break;
            if (prev < ms && (to_model ? bpe_word(e, s + prev, ms - prev)
                                       : pretok(e, lvl + 1, s + prev, ms - prev,
                                                origin && prev == 0)))
                return -1;
            if (ms < me && (to_model ? bpe_word(e, s + ms, me - ms)
                                     : pretok(e, lvl + 1, s + ms, me - ms, origin && ms == 0)))
                return -1;
            prev = me;
            if (!next_off(s, n, ms, me, &off)) break;
        }
        if (prev < n)
            return to_model ? bpe_word(e, s + prev, n - prev)
                            : pretok(e, lvl + 1, s + prev, n - prev, origin && prev == 0);
        return 0;
    }
    size_t k = 0;
    for (;;) {
        int r = re_next(e, re, s, n, off, &ms, &me);
        if (r < 0) return -1;
        if (!r) break;
        if (prev != ms && push_span(e, lvl, &k, prev, ms, invert)) return -1;
        if (push_span(e, lvl, &k, ms, me, !invert)) return -1;
        prev = me;
        if (!next_off(s, n, ms, me, &off)) break;
    }
    if (prev != n && push_span(e, lvl, &k, prev, n, invert)) return -1;
    span *sp = e->sp[lvl];
    /* fold the (offsets, is_match) list as the behavior says; keep[i] = piece survives */
    size_t out = 0;
    int prevm = 0;
    switch (behavior) {
    case SPLIT_REMOVED:
        for (size_t i = 0; i < k; i++)
            if (!sp[i].m) sp[out++] = sp[i];
        break;
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < k; i++) {
            if (out && sp[i].m == prevm) sp[out - 1].b = sp[i].b;
            else sp[out++] = sp[i];
            prevm = sp[i].m;
        }
        break;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < k; i++) {
            if (out && sp[i].m && !prevm) sp[out - 1].b = sp[i].b;
            else sp[out++] = sp[i];
            prevm = sp[i].m;
        }
        break;
    case SPLIT_MERGED_NEXT: /* right to left: a match joins the piece after it */
        for (size_t i = k; i-- > 0;) {
            if (out && sp[i].m && !prevm) sp[k - out].a = sp[i].a;
            else sp[k - 1 - out++] = sp[i];
            prevm = sp[i].m;
        }
        memmove(sp, sp + (k - out), out * sizeof *sp);
        break;
    }
    for (size_t i = 0; i < out; i++) {
        span x = e->sp[lvl][i]; /* the array may move when deeper levels grow theirs */
        if (x.a >= x.b) continue;
        if (to_model ? bpe_word(e, s + x.a, x.b - x.a)
                     : pretok(e, lvl + 1, s + x.a, x.b - x.a, origin && x.a == 0))
            return -1;
    }
    return 0;
}

static int pretok(enc *e, int lvl, const char *s, size_t n, int origin) {
    const kv_tokenizer *t = e->t;
    if (!n) return 0;
    if (lvl == t->n_pre) return bpe_word(e, s, n);
    const tok_pre *p = &t->pre[lvl];
    tok_buf *B = &e->lvl[lvl];
    switch (p->kind) {
    case PRE_SPLIT:
        return split_regex(e, lvl, p->re, p->behavior, p->invert, s, n, origin, 0);
    case PRE_METASPACE: {
        B->n = 0;
        int starts = s[0] == ' ' || (n >= (size_t)p->rep_len && !memcmp(s, p->rep, (size_t)p->rep_len));
        int pre = !starts && (p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && origin));
        if (tok_buf_reserve(B, n * (size_t)p->rep_len + (size_t)p->rep_len)) return set_oom(e, n * 4);
        if (pre) memcpy(B->p, p->rep, (size_t)p->rep_len), B->n = (size_t)p->rep_len;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') memcpy(B->p + B->n, p->rep, (size_t)p->rep_len), B->n += (size_t)p->rep_len;
            else B->p[B->n++] = s[i];
        }
        if (!p->split) return pretok(e, lvl + 1, B->p, B->n, origin);
        /* MergedWithNext on the replacement char: a piece starts at every occurrence */
        size_t a = 0;
        const char *q = B->p;
        size_t qn = B->n, rl = (size_t)p->rep_len;
        for (size_t i = 1; i + rl <= qn; i++) {
            if (memcmp(q + i, p->rep, rl) != 0) continue;
            if (pretok(e, lvl + 1, q + a, i - a, origin && a == 0)) return -1;
            a = i;
            i += rl - 1;
        }
        return pretok(e, lvl + 1, q + a, qn - a, origin && a == 0);
    }
    case PRE_BYTELEVEL: /* always the last step: words go to the model as raw bytes */
        if (p->add_prefix_space && s[0] != ' ') {
            B->n = 0;
            if (tok_buf_put(B, " ", 1) || tok_buf_put(B, s, n)) return set_oom(e, n + 1);
            s = B->p;
            n = B->n;
        }
        if (p->re) return split_regex(e, lvl, p->re, SPLIT_ISOLATED, 0, s, n, origin, 1);
        return bpe_word(e, s, n);
    }
    return 0;
}

/* ---- added tokens -------------------------------------------------------------------- */
static int find_added(const tok_matcher *m, const char *s, size_t n, size_t pos, size_t *ms,
                      size_t *ml) {
    if (!m->n) return -1;
    for (size_t i = pos; i < n; i++) {
        const int *l = m->by_byte[(uint8_t)s[i]];
        if (!l) continue;
        for (; *l >= 0; l++) {
            size_t L = m->len[*l];
            if (L <= n - i && memcmp(s + i, m->pat[*l], L) == 0) {
                *ms = i;
                *ml = L;
                return *l;
            }
        }
    }
    return -1;
}

static uint32_t last_char(const char *s, size_t end, size_t *start) {
    size_t i = end - 1;
    while (i > 0 && ((uint8_t)s[i] & 0xC0) == 0x80) i--;
    int k;
    *start = i;
    return tok_utf8_dec((const uint8_t *)s + i, &k);
}

static int process_gap(enc *e, const char *s, size_t n, int origin);

/* find_matches + split_with_indices: stage 0 on raw text, stage 1 on normalized text. */
static int split_added(enc *e, const tok_matcher *m, const char *s, size_t n, int origin,
                       int stage) {
    const kv_tokenizer *t = e->t;
    size_t start_off = 0, pos = 0, ms, ml;
    int pi;
    while (pos < n && (pi = find_added(m, s, n, pos, &ms, &ml)) >= 0) {
        pos = ms + ml; /* the automaton resumes after the match, kept or not */
        const tok_added *a = &t->added[m->added[pi]];
        size_t start = ms, stop = ms + ml, k;
        if (a->single_word) {
            int k2;
            int sp_before = start == 0 || !tok_is_word_char(last_char(s, start, &k));
            int sp_after = stop == n || !tok_is_word_char(tok_utf8_dec((const uint8_t *)s + stop, &k2));
            if (!sp_before || !sp_after) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                uint32_t c = last_char(s, ns, &k);
                if (!tok_is_white_space(c)) break;
                ns = k;
            }
            start = ns > start_off ? ns : start_off;
        }
        if (a->rstrip) {
            while (stop < n) {
                int k2;
                uint32_t c = tok_utf8_dec((const uint8_t *)s + stop, &k2);
                if (!tok_is_white_space(c)) break;
                stop += (size_t)k2;
            }
        }
        if (start_off < start) {
            int r = stage == 0 ? process_gap(e, s + start_off, start - start_off,
                                             origin && start_off == 0)
                               : pretok(e, 0, s + start_off, start - start_off,
                                        origin && start_off == 0);
            if (r) return -1;
        }
        if (emit(e, &a->id, 1)) return -1;
        start_off = stop;
    }
    if (start_off < n)
        return stage == 0 ? process_gap(e, s + start_off, n - start_off, origin && start_off == 0)
                          : pretok(e, 0, s + start_off, n - start_off, origin && start_off == 0);
    return 0;
}

static int process_gap(enc *e, const char *s, size_t n, int origin) {
    const char *ns;
    size_t nn;
    if (tok_normalize_all(e->t, s, n, &e->na, &e->nb, &ns, &nn)) return set_oom(e, n * 4);
    if (e->t->m_norm.n) return split_added(e, &e->t->m_norm, ns, nn, origin, 1);
    return pretok(e, 0, ns, nn, origin);
}

kv_status kv_tok_encode(const kv_tokenizer *t, const char *text, size_t len, int flags,
                        kv_ids *ids, kv_err *err) {
    if (!t || !ids || (!text && len))
        return kv_err_set(err, KV_EINVAL, "kv_tok_encode: NULL argument");
    size_t bad = tok_utf8_valid_upto((const uint8_t *)text, len);
    if (bad != len)
        return kv_err_set(err, KV_EINVAL, "%s: encode: input is not valid UTF-8 at byte offset "
                          "%zu (byte 0x%02X)", t->path, bad, (unsigned)(uint8_t)text[bad]);
    enc e;
    memset(&e, 0, sizeof e);
    e.t = t;
    e.ids = ids;
    e.err = err;
    size_t n0 = ids->n;
    int r = 0;
    e.md = pcre2_match_data_create(1, NULL);
    if (!e.md) r = set_oom(&e, 64);
    if (!r && (flags & KV_TOK_ADD_SPECIAL)) r = emit(&e, t->tmpl_pre, (size_t)t->n_tmpl_pre);
    if (!r && len) r = split_added(&e, &t->m_raw, text, len, 1, 0);
    if (!r && (flags & KV_TOK_ADD_SPECIAL)) r = emit(&e, t->tmpl_post, (size_t)t->n_tmpl_post);
    pcre2_match_data_free(e.md);
    tok_buf_free(&e.na);
    tok_buf_free(&e.nb);
    tok_buf_free(&e.w);
    for (int i = 0; i < MAX_PRE; i++) {
        tok_buf_free(&e.lvl[i]);
        free(e.sp[i]);
    }
    free(e.sym);
    free(e.rk);
    free(e.nid);
    free(e.prev);
    free(e.next);
    free(e.heap);
    if (r) {
        ids->n = n0;
        return e.st ? e.st : KV_ENOMEM;
    }
    return KV_OK;
}
