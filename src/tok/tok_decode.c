/* tok_decode.c — ids -> text as huggingface/tokenizers Tokenizer::decode with
 * skip_special_tokens=False: each id becomes its token string (added tokens by their
 * content), the decoder chain rewrites the token list (decode_chain in tokenizers/src/decoders), and
 * the result is the concatenation. Without a decoder HF joins tokens with " ".
 * Differs from HF on purpose in one point: an id with no token is an error (KV_ERANGE)
 * instead of being skipped silently, since it means a bug upstream. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

typedef struct {
    tok_buf d;    /* bytes of all tokens */
    size_t *off;  /* [n] */
    size_t *len;  /* [n] */
    size_t n, cap;
} toklist;

static void tl_free(toklist *l) {
    tok_buf_free(&l->d);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

/* Start a new token; its bytes are appended with tl_app. */
static int tl_new(toklist *l) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (!o) return -1;
        l->off = o;
        size_t *n = realloc(l->len, cap * sizeof *n);
        if (!n) return -1;
        l->len = n;
        l->cap = cap;
    }
    l->off[l->n] = l->d.n;
    l->len[l->n] = 0;
    l->n++;
    return 0;
}

static int tl_app(toklist *l, const void *s, size_t n) {
    if (tok_buf_put(&l->d, s, n)) return -1;
    l->len[l->n - 1] += n;
    return 0;
}

static int tl_add(toklist *l, const void *s, size_t n) { return tl_new(l) || tl_app(l, s, n); }

/* Rust u8::from_str_radix(s, 16) on the two bytes of "<0x??>": an optional '+' sign. */
static int fallback_byte(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *d = s + 3;
    int k = 2, v = 0;
    if (d[0] == '+') d++, k = 1;
    for (int i = 0; i < k; i++) {
        char c = d[i];
        int x = c >= '0' && c <= '9' ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (x < 0) return -1;
        v = v * 16 + x;
    }
    return v;
}

static int flush_bytes(toklist *o, tok_buf *pend) {
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    if (!pend->n) return 0;
    int r = 0;
    if (tok_utf8_valid_upto((const uint8_t *)pend->p, pend->n) == pend->n) {
        r = tl_add(o, pend->p, pend->n);
    } else { /* one U+FFFD per byte, as decoders/byte_fallback.rs */
        for (size_t i = 0; i < pend->n && !r; i++) r = tl_add(o, fffd, 3);
    }
    pend->n = 0;
    return r;
}

static int step(const tok_dec *x, const toklist *in, toklist *o) {
    const char *D = in->d.p;
    switch (x->kind) {
    case DEC_BYTELEVEL: { /* chars back to bytes; a token with any other char keeps its
                             UTF-8 bytes; then from_utf8_lossy over everything */
        tok_buf raw = {0};
        int r = 0;
        for (size_t i = 0; i < in->n && !r; i++) {
            const uint8_t *s = (const uint8_t *)D + in->off[i];
            size_t n = in->len[i], start = raw.n, k = 0;
            while (k < n) {
                int cl;
                uint32_t c = tok_utf8_dec(s + k, &cl);
                int b = tok_cp_to_byte(c);
                if (b < 0) break;
                uint8_t bb = (uint8_t)b;
                if ((r = tok_buf_put(&raw, &bb, 1))) break;
                k += (size_t)cl;
            }
            if (!r && k < n) {
                raw.n = start;
                r = tok_buf_put(&raw, s, n);
            }
        }
        if (!r) r = tl_new(o);
        if (!r) {
            tok_buf lossy = {0};
            r = tok_utf8_lossy((const uint8_t *)raw.p, raw.n, &lossy) ||
                tl_app(o, lossy.p, lossy.n);
            tok_buf_free(&lossy);
        }
        tok_buf_free(&raw);
        return r;
    }
    case DEC_FUSE:
        if (tl_new(o)) return -1;
        for (size_t i = 0; i < in->n; i++)
            if (tl_app(o, D + in->off[i], in->len[i])) return -1;
        return 0;
    case DEC_BYTEFALLBACK: {
        tok_buf pend = {0};
        int r = 0;
        for (size_t i = 0; i < in->n && !r; i++) {
            int b = fallback_byte(D + in->off[i], in->len[i]);
            if (b >= 0) {
                uint8_t bb = (uint8_t)b;
                r = tok_buf_put(&pend, &bb, 1);
            } else {
                r = flush_bytes(o, &pend) || tl_add(o, D + in->off[i], in->len[i]);
            }
        }
        if (!r) r = flush_bytes(o, &pend);
        tok_buf_free(&pend);
        return r;
    }
    default:
        break;
    }
    /* per-token rewrites */
    char rep[4];
    int rl = tok_utf8_enc(x->cp, rep);
    for (size_t i = 0; i < in->n; i++) {
        const char *s = D + in->off[i];
        size_t n = in->len[i];
        if (tl_new(o)) return -1;
        if (x->kind == DEC_REPLACE) {
            size_t k = 0, last = 0;
            while (k + x->alen <= n) {
                if (memcmp(s + k, x->a, x->alen) == 0) {
                    if (tl_app(o, s + last, k - last) || tl_app(o, x->b, x->blen)) return -1;
                    k += x->alen;
                    last = k;
                } else {
                    k++;
                }
            }
            if (tl_app(o, s + last, n - last)) return -1;
        } else if (x->kind == DEC_METASPACE) { /* every replacement char of the first token
                                                 is dropped unless prepend_scheme is never */
            size_t k = 0, last = 0;
            int drop = i == 0 && x->prepend != PREPEND_NEVER;
            while (k + (size_t)rl <= n) {
                if (memcmp(s + k, rep, (size_t)rl) == 0) {
                    if (tl_app(o, s + last, k - last) || (!drop && tl_app(o, " ", 1))) return -1;
                    k += (size_t)rl;
                    last = k;
                } else {
                    k++;
                }
            }
            if (tl_app(o, s + last, n - last)) return -1;
        } else { /* DEC_STRIP: up to start leading and stop trailing content chars */
            size_t a = 0, b = n;
            for (int c = 0; c < x->start && a + (size_t)rl <= b && !memcmp(s + a, rep, (size_t)rl); c++)
                a += (size_t)rl;
            for (int c = 0; c < x->stop && b >= a + (size_t)rl && !memcmp(s + b - rl, rep, (size_t)rl); c++)
                b -= (size_t)rl;
            if (tl_app(o, s + a, b - a)) return -1;
        }
    }
    return 0;
}

kv_status kv_tok_decode(const kv_tokenizer *t, const int32_t *ids, size_t n, char **out,
                        size_t *out_len, kv_err *err) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || !out || (!ids && n)) return kv_err_set(err, KV_EINVAL, "kv_tok_decode: NULL argument");
    toklist a = {0}, b = {0};
    kv_status st = KV_OK;
    for (size_t i = 0; i < n; i++) {
        const char *p = kv_tok_id_to_piece(t, ids[i]);
        if (!p) {
            st = kv_err_set(err, KV_ERANGE, "%s: decode: id %d at position %zu has no token "
                            "(vocabulary size %lld)", t->path, ids[i], i, (long long)t->n_ids);
            goto done;
        }
        size_t len = t->added_of_id[ids[i]] >= 0 ? t->added[t->added_of_id[ids[i]]].norm_len
                                                 : t->piece_len[ids[i]];
        if (tl_add(&a, p, len)) goto oom;
    }
    for (int k = 0; k < t->n_dec; k++) {
        b.n = 0;
        b.d.n = 0;
        if (step(&t->dec[k], &a, &b)) goto oom;
        toklist tmp = a;
        a = b;
        b = tmp;
    }
    tok_buf res = {0};
    for (size_t i = 0; i < a.n; i++) {
        if (!t->has_decoder && i && tok_buf_put(&res, " ", 1)) goto oom_res;
        if (tok_buf_put(&res, a.d.p + a.off[i], a.len[i])) goto oom_res;
    }
    if (tok_buf_put(&res, "", 1)) goto oom_res; /* NUL, not counted */
    *out = res.p;
    if (out_len) *out_len = res.n - 1;
    goto done;
oom_res:
    tok_buf_free(&res);
oom:
    st = kv_err_set(err, KV_ENOMEM, "%s: decode: out of memory", t->path);
done:
    tl_free(&a);
    tl_free(&b);
    return st;
}
