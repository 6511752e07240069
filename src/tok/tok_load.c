/* tok_load.c — read a Hugging Face tokenizer.json into a kv_tokenizer.
 *
 * Format: the serde layout of huggingface/tokenizers (tokenizer/serialization.rs):
 * {"added_tokens": [...], "normalizer", "pre_tokenizer", "model", "post_processor",
 * "decoder"}. Only what decoder-only LLM checkpoints use is accepted; anything else is
 * refused with KV_EUNSUPPORTED and a list of what is supported, never guessed at.
 * Every merge must name vocabulary tokens (HF refuses the file otherwise too). */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "kvant/fileio.h"
#include "tok/tok_internal.h"

#define SUPPORTED_MODELS                                                                   \
    "supported: BPE, byte-level as in GPT-2/Qwen/Llama-3 or SentencePiece-style with "     \
    "byte_fallback as in Llama-2/Mistral"

int tok_normalize_all(const kv_tokenizer *t, const char *s, size_t n, tok_buf *a, tok_buf *b,
                      const char **out, size_t *out_len); /* tok_encode.c */

typedef struct {
    kv_tokenizer *t;
    kv_err *err;
} ld;

static kv_status fail(ld *L, kv_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kv_status fail(ld *L, kv_status code, const char *fmt, ...) {
    char m[KV_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    return kv_err_set(L->err, code, "%s: %s", L->t->path, m);
}

static kv_status oom(ld *L, size_t n) {
    return fail(L, KV_ENOMEM, "out of memory allocating %zu bytes", n);
}

static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static int is_null(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* Append s and a NUL to the arena (kv_tok_id_to_piece hands out C strings); *off
 * receives its offset. */
static int arena_put(kv_tokenizer *t, const char *s, size_t n, uint64_t *off) {
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 1 << 16;
        while (cap < t->arena_len + n + 1) cap *= 2;
        char *p = realloc(t->arena, cap);
        if (!p) return -1;
        t->arena = p;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, s, n);
    *off = t->arena_len;
    t->arena_len += n;
    t->arena[t->arena_len++] = 0;
    return 0;
}

static int valid_utf8(const char *s, size_t n) {
    return tok_utf8_valid_upto((const uint8_t *)s, n) == n;
}

/* A JSON number that is an integer id in [0, 2^31). */
static int json_id(const cJSON *v, int32_t *id) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d < 2147483647.0) || d != (double)(int64_t)d) return 0;
    *id = (int32_t)d;
    return 1;
}

/* ---- model ------------------------------------------------------------------------- */
static kv_status load_vocab(ld *L, const cJSON *vocab, int64_t *max_id) {
    kv_tokenizer *t = L->t;
    if (!cJSON_IsObject(vocab)) return fail(L, KV_EFORMAT, "model.vocab: expected an object");
    size_t n = 0;
    for (const cJSON *c = vocab->child; c; c = c->next) n++;
    if (tok_strmap_init(&t->vocab, n)) return oom(L, n * 40);
    for (const cJSON *c = vocab->child; c; c = c->next) {
        int32_t id;
        if (!json_id(c, &id))
            return fail(L, KV_EFORMAT, "model.vocab: token \"%.64s\" has no valid id",
                        c->string);
        size_t len = strlen(c->string);
        if (!valid_utf8(c->string, len))
            return fail(L, KV_EFORMAT, "model.vocab: token with id %d is not valid UTF-8", id);
        uint64_t off;
        if (arena_put(t, c->string, len, &off) ||
            tok_strmap_put(&t->vocab, t->arena, off, (uint32_t)len, id))
            return oom(L, len);
        if (id > *max_id) *max_id = id;
    }
    return KV_OK;
}

static kv_status load_added(ld *L, const cJSON *arr, int64_t *max_id) {
    kv_tokenizer *t = L->t;
    if (is_null(arr)) return KV_OK;
    if (!cJSON_IsArray(arr)) return fail(L, KV_EFORMAT, "added_tokens: expected an array");
    int n = cJSON_GetArraySize(arr);
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added) return oom(L, (size_t)n * sizeof *t->added);
    for (const cJSON *c = arr->child; c; c = c->next) {
        tok_added *a = &t->added[t->n_added];
        const char *content = jstr(c, "content");
        if (!content || !json_id(cJSON_GetObjectItemCaseSensitive(c, "id"), &a->id))
            return fail(L, KV_EFORMAT, "added_tokens[%d]: needs \"id\" and \"content\"",
                        t->n_added);
        a->len = strlen(content);
        if (!valid_utf8(content, a->len))
            return fail(L, KV_EFORMAT, "added_tokens[%d]: content is not valid UTF-8",
                        t->n_added);
        if (!a->len) continue; /* HF ignores empty added tokens */
        a->content = dupn(content, a->len);
        if (!a->content) return oom(L, a->len);
        a->special = (uint8_t)jbool(c, "special", 0);
        a->single_word = (uint8_t)jbool(c, "single_word", 0);
        a->lstrip = (uint8_t)jbool(c, "lstrip", 0);
        a->rstrip = (uint8_t)jbool(c, "rstrip", 0);
        a->normalized = (uint8_t)jbool(c, "normalized", !a->special);
        if (a->id > *max_id) *max_id = a->id;
        t->n_added++;
    }
    return KV_OK;
}

static kv_status merge_part_id(ld *L, size_t i, const char *s, size_t n, int32_t *id) {
    kv_tokenizer *t = L->t;
    *id = tok_strmap_get(&t->vocab, t->arena, s, n);
    if (*id < 0)
        return fail(L, KV_EFORMAT, "model.merges[%zu] references unknown token \"%.*s\"", i,
                    (int)(n > 64 ? 64 : n), s);
    return KV_OK;
}

static kv_status load_merges(ld *L, const cJSON *merges) {
    kv_tokenizer *t = L->t;
    if (is_null(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges)) return fail(L, KV_EFORMAT, "model.merges: expected an array");
    size_t n = 0;
    for (const cJSON *c = merges ? merges->child : NULL; c; c = c->next) n++;
    size_t cap = 16;
    int shift = 60;
    while (cap < n * 2 + 16) cap *= 2, shift--;
    t->merges.t = malloc(cap * sizeof *t->merges.t);
    if (!t->merges.t) return oom(L, cap * sizeof *t->merges.t);
    memset(t->merges.t, 0xFF, cap * sizeof *t->merges.t);
    t->merges.mask = cap - 1;
    t->merges.shift = shift;
    tok_buf cat = {0};
    size_t i = 0;
    kv_status st = KV_OK;
    for (const cJSON *c = merges ? merges->child : NULL; c; c = c->next, i++) {
        const char *a, *b;
        size_t an, bn;
        if (cJSON_IsString(c)) { /* "a b": exactly one space (tokens cannot hold one) */
            a = c->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = fail(L, KV_EFORMAT, "model.merges[%zu]: \"%.64s\" is not two tokens "
                          "separated by one space", i, a);
                break;
            }
            an = (size_t)(sp - a);
            b = sp + 1;
            bn = strlen(b);
        } else if (cJSON_IsArray(c) && cJSON_GetArraySize(c) == 2 &&
                   cJSON_IsString(c->child) && cJSON_IsString(c->child->next)) {
            a = c->child->valuestring;
            b = c->child->next->valuestring;
            an = strlen(a);
            bn = strlen(b);
        } else {
            st = fail(L, KV_EFORMAT, "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", i);
            break;
        }
        int32_t ia, ib, im;
        if ((st = merge_part_id(L, i, a, an, &ia)) || (st = merge_part_id(L, i, b, bn, &ib)))
            break;
        /* the merged token: a + b without b's continuing-subword prefix */
        size_t skip = 0;
        if (t->cont_prefix_len && bn >= t->cont_prefix_len &&
            memcmp(b, t->cont_prefix, t->cont_prefix_len) == 0)
            skip = t->cont_prefix_len;
        cat.n = 0;
        if (tok_buf_put(&cat, a, an) || tok_buf_put(&cat, b + skip, bn - skip)) {
            st = oom(L, an + bn);
            break;
        }
        if ((st = merge_part_id(L, i, cat.p, cat.n, &im))) break;
        /* insert; a repeated pair keeps the later rank, as HF's HashMap collect does */
        uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> t->merges.shift;
        while (t->merges.t[h].key != UINT64_MAX && t->merges.t[h].key != key)
            h = (h + 1) & t->merges.mask;
        t->merges.t[h] = (tok_pair){key, (int32_t)i, im};
    }
    tok_buf_free(&cat);
    return st;
}

static kv_status load_model(ld *L, const cJSON *m, int64_t *max_id) {
    kv_tokenizer *t = L->t;
    if (!cJSON_IsObject(m)) return fail(L, KV_EFORMAT, "no \"model\" object");
    const char *type = jstr(m, "type");
    if (!type && cJSON_GetObjectItemCaseSensitive(m, "merges")) type = "BPE";
    if (!type || strcmp(type, "BPE") != 0)
        return fail(L, KV_EUNSUPPORTED, "model type \"%s\" is not supported (" SUPPORTED_MODELS
                    ")", type ? type : "(none)");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (!is_null(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return fail(L, KV_EUNSUPPORTED, "model.dropout: BPE dropout is not supported "
                    "(encoding would be random)");
    kv_status st = load_vocab(L, cJSON_GetObjectItemCaseSensitive(m, "vocab"), max_id);
    if (st) return st;
    t->byte_fallback = jbool(m, "byte_fallback", 0);
    t->fuse_unk = jbool(m, "fuse_unk", 0);
    t->ignore_merges = jbool(m, "ignore_merges", 0);
    const char *cp = jstr(m, "continuing_subword_prefix"), *sf = jstr(m, "end_of_word_suffix");
    if (cp && *cp) {
        t->cont_prefix_len = strlen(cp);
        if (!(t->cont_prefix = dupn(cp, t->cont_prefix_len))) return oom(L, t->cont_prefix_len);
    }
    if (sf && *sf) {
        t->eow_suffix_len = strlen(sf);
        if (!(t->eow_suffix = dupn(sf, t->eow_suffix_len))) return oom(L, t->eow_suffix_len);
    }
    const char *unk = jstr(m, "unk_token");
    t->unk_id = -1;
    if (unk) {
        t->unk_id = tok_strmap_get(&t->vocab, t->arena, unk, strlen(unk));
        if (t->unk_id < 0)
            return fail(L, KV_EFORMAT, "model.unk_token \"%.64s\" is not in the vocabulary", unk);
    }
    return load_merges(L, cJSON_GetObjectItemCaseSensitive(m, "merges"));
}

/* ---- normalizer, pre-tokenizer, post-processor, decoder: Sequences of steps --------- */

typedef kv_status (*add_fn)(ld *L, const cJSON *step, int depth);

/* A "Sequence" step of a `what`: add each element of its array `key` in order, with
 * nesting capped at 8. */
static kv_status add_seq(ld *L, const cJSON *j, const char *what, const char *key, int depth,
                         add_fn add) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsArray(arr) || depth > 8)
        return fail(L, KV_EFORMAT, "%s Sequence: expected \"%s\" array", what, key);
    for (const cJSON *c = arr->child; c; c = c->next) {
        kv_status st = add(L, c, depth + 1);
        if (st) return st;
    }
    return KV_OK;
}

/* ---- normalizer ---------------------------------------------------------------------- */
static kv_status add_norm(ld *L, const cJSON *n, int depth) {
    kv_tokenizer *t = L->t;
    if (is_null(n)) return KV_OK;
    const char *type = jstr(n, "type");
    if (!type) return fail(L, KV_EFORMAT, "normalizer: missing \"type\"");
    if (!strcmp(type, "Sequence"))
        return add_seq(L, n, "normalizer", "normalizers", depth, add_norm);
    tok_norm *v = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *v);
    if (!v) return oom(L, sizeof *v);
    t->norm = v;
    tok_norm *x = &t->norm[t->n_norm];
    memset(x, 0, sizeof *x);
    if (!strcmp(type, "NFC")) x->kind = NORM_NFC;
    else if (!strcmp(type, "NFD")) x->kind = NORM_NFD;
    else if (!strcmp(type, "NFKC")) x->kind = NORM_NFKC;
    else if (!strcmp(type, "NFKD")) x->kind = NORM_NFKD;
    else if (!strcmp(type, "Prepend")) {
        const char *p = jstr(n, "prepend");
        if (!p) return fail(L, KV_EFORMAT, "normalizer Prepend: missing \"prepend\"");
        x->kind = NORM_PREPEND;
        x->alen = strlen(p);
        if (!(x->a = dupn(p, x->alen))) return oom(L, x->alen);
    } else if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *ps = jstr(pat, "String"), *content = jstr(n, "content");
        if (!ps || !*ps || !content)
            return fail(L, KV_EUNSUPPORTED, "normalizer Replace: only a non-empty String "
                        "pattern and a content are supported");
        x->kind = NORM_REPLACE;
        x->alen = strlen(ps);
        x->blen = strlen(content);
        if (!(x->a = dupn(ps, x->alen)) || !(x->b = dupn(content, x->blen)))
            return oom(L, x->alen + x->blen);
    } else {
        return fail(L, KV_EUNSUPPORTED, "normalizer \"%s\" is not supported (supported: NFC, "
                    "NFD, NFKC, NFKD, Prepend, Replace with a String pattern, Sequence)", type);
    }
    t->n_norm++;
    return KV_OK;
}

/* ---- pre-tokenizer ----------------------------------------------------------------- */
static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static kv_status read_char(ld *L, const cJSON *o, const char *what, tok_pre *x) {
    const char *r = jstr(o, "replacement");
    int n = 0;
    if (!r || !*r || (tok_utf8_dec((const uint8_t *)r, &n), r[n] != 0))
        return fail(L, KV_EFORMAT, "%s: \"replacement\" must be one character", what);
    x->rep_cp = tok_utf8_dec((const uint8_t *)r, &n);
    memcpy(x->rep, r, (size_t)n);
    x->rep_len = n;
    return KV_OK;
}

static int prepend_scheme(const cJSON *o) {
    const char *s = jstr(o, "prepend_scheme");
    if (s) return !strcmp(s, "first") ? PREPEND_FIRST : !strcmp(s, "never") ? PREPEND_NEVER
                                                                           : PREPEND_ALWAYS;
    return jbool(o, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER; /* legacy */
}

static kv_status add_pre(ld *L, const cJSON *p, int depth) {
    kv_tokenizer *t = L->t;
    if (is_null(p)) return KV_OK;
    const char *type = jstr(p, "type");
    if (!type) return fail(L, KV_EFORMAT, "pre_tokenizer: missing \"type\"");
    if (!strcmp(type, "Sequence"))
        return add_seq(L, p, "pre_tokenizer", "pretokenizers", depth, add_pre);
    if (t->byte_level)
        return fail(L, KV_EUNSUPPORTED, "pre_tokenizer: ByteLevel must be the last step");
    if (t->n_pre >= 8) return fail(L, KV_EUNSUPPORTED, "pre_tokenizer: more than 8 steps");
    tok_pre *v = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *v);
    if (!v) return oom(L, sizeof *v);
    t->pre = v;
    tok_pre *x = &t->pre[t->n_pre];
    memset(x, 0, sizeof *x);
    char eb[300];
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *rs = jstr(pat, "Regex"), *ss = jstr(pat, "String");
        const char *beh = jstr(p, "behavior");
        if (!rs && !ss) return fail(L, KV_EFORMAT, "pre_tokenizer Split: missing pattern");
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                      "MergedWithNext", "Contiguous"};
        x->behavior = -1;
        for (int i = 0; i < 5; i++)
            if (beh && !strcmp(beh, names[i])) x->behavior = i;
        if (x->behavior < 0)
            return fail(L, KV_EFORMAT, "pre_tokenizer Split: unknown behavior \"%s\"",
                        beh ? beh : "(none)");
        x->kind = PRE_SPLIT;
        x->invert = jbool(p, "invert", 0);
        const char *pt = rs ? rs : ss;
        x->re = tok_regex_compile(pt, strlen(pt), !rs, eb, sizeof eb);
        if (!x->re)
            return fail(L, KV_EUNSUPPORTED, "pre_tokenizer Split: pattern \"%.80s\": %s", pt, eb);
    } else if (!strcmp(type, "Metaspace")) {
        kv_status st = read_char(L, p, "pre_tokenizer Metaspace", x);
        if (st) return st;
        x->kind = PRE_METASPACE;
        x->prepend = prepend_scheme(p);
        x->split = jbool(p, "split", 1);
    } else if (!strcmp(type, "ByteLevel")) {
        x->kind = PRE_BYTELEVEL;
        x->add_prefix_space = jbool(p, "add_prefix_space", 1);
        if (jbool(p, "use_regex", 1)) {
            x->re = tok_regex_compile(GPT2_RE, sizeof GPT2_RE - 1, 0, eb, sizeof eb);
            if (!x->re) return fail(L, KV_EUNSUPPORTED, "ByteLevel regex: %s", eb);
        }
        t->byte_level = 1;
    } else {
        return fail(L, KV_EUNSUPPORTED, "pre_tokenizer \"%s\" is not supported (supported: "
                    "Split, ByteLevel, Metaspace, Sequence)", type);
    }
    t->n_pre++;
    return KV_OK;
}

/* ---- post-processor ---------------------------------------------------------------- */
static kv_status add_post(ld *L, const cJSON *p, int depth) {
    kv_tokenizer *t = L->t;
    if (is_null(p)) return KV_OK;
    const char *type = jstr(p, "type");
    if (!type) return fail(L, KV_EFORMAT, "post_processor: missing \"type\"");
    if (!strcmp(type, "ByteLevel")) return KV_OK; /* offsets only */
    if (!strcmp(type, "Sequence"))
        return add_seq(L, p, "post_processor", "processors", depth, add_post);
    if (strcmp(type, "TemplateProcessing") != 0)
        return fail(L, KV_EUNSUPPORTED, "post_processor \"%s\" is not supported (supported: "
                    "TemplateProcessing, ByteLevel, Sequence)", type);
    if (t->tmpl_pre || t->tmpl_post)
        return fail(L, KV_EUNSUPPORTED, "post_processor: more than one TemplateProcessing");
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    if (!cJSON_IsArray(single))
        return fail(L, KV_EFORMAT, "TemplateProcessing: \"single\" must be an array");
    int n = 0, seen_a = 0;
    for (const cJSON *c = single->child; c; c = c->next) {
        const cJSON *stk = cJSON_GetObjectItemCaseSensitive(c, "SpecialToken");
        const cJSON *ids = stk ? cJSON_GetObjectItemCaseSensitive(
                                     cJSON_GetObjectItemCaseSensitive(sp, jstr(stk, "id") ? jstr(stk, "id") : ""),
                                     "ids")
                               : NULL;
        n += ids ? cJSON_GetArraySize(ids) : 0;
    }
    t->tmpl_pre = calloc((size_t)n + 1, sizeof(int32_t));
    t->tmpl_post = calloc((size_t)n + 1, sizeof(int32_t));
    if (!t->tmpl_pre || !t->tmpl_post) return oom(L, (size_t)n * 8);
    for (const cJSON *c = single->child; c; c = c->next) {
        const cJSON *stk = cJSON_GetObjectItemCaseSensitive(c, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(c, "Sequence")) {
            if (seen_a++)
                return fail(L, KV_EUNSUPPORTED, "TemplateProcessing: \"single\" repeats $A");
            continue;
        }
        const char *name = stk ? jstr(stk, "id") : NULL;
        const cJSON *ids = name ? cJSON_GetObjectItemCaseSensitive(
                                      cJSON_GetObjectItemCaseSensitive(sp, name), "ids")
                                : NULL;
        if (!cJSON_IsArray(ids))
            return fail(L, KV_EFORMAT, "TemplateProcessing: special token \"%s\" has no ids",
                        name ? name : "(none)");
        for (const cJSON *i = ids->child; i; i = i->next) {
            int32_t id;
            if (!json_id(i, &id))
                return fail(L, KV_EFORMAT, "TemplateProcessing: bad id for \"%s\"", name);
            if (seen_a) t->tmpl_post[t->n_tmpl_post++] = id;
            else t->tmpl_pre[t->n_tmpl_pre++] = id;
        }
    }
    return KV_OK;
}

/* ---- decoder ------------------------------------------------------------------------- */
static kv_status add_dec(ld *L, const cJSON *d, int depth) {
    kv_tokenizer *t = L->t;
    if (is_null(d)) return KV_OK;
    t->has_decoder = 1;
    const char *type = jstr(d, "type");
    if (!type) return fail(L, KV_EFORMAT, "decoder: missing \"type\"");
    if (!strcmp(type, "Sequence"))
        return add_seq(L, d, "decoder", "decoders", depth, add_dec);
    tok_dec *v = realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *v);
    if (!v) return oom(L, sizeof *v);
    t->dec = v;
    tok_dec *x = &t->dec[t->n_dec];
    memset(x, 0, sizeof *x);
    if (!strcmp(type, "ByteLevel")) x->kind = DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) x->kind = DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) x->kind = DEC_FUSE;
    else if (!strcmp(type, "Metaspace")) {
        tok_pre tmp;
        memset(&tmp, 0, sizeof tmp);
        kv_status st = read_char(L, d, "decoder Metaspace", &tmp);
        if (st) return st;
        x->kind = DEC_METASPACE;
        x->cp = tmp.rep_cp;
        x->prepend = prepend_scheme(d);
    } else if (!strcmp(type, "Replace")) {
        const char *ps = jstr(cJSON_GetObjectItemCaseSensitive(d, "pattern"), "String");
        const char *content = jstr(d, "content");
        if (!ps || !*ps || !content)
            return fail(L, KV_EUNSUPPORTED, "decoder Replace: only a non-empty String pattern "
                        "and a content are supported");
        x->kind = DEC_REPLACE;
        x->alen = strlen(ps);
        x->blen = strlen(content);
        if (!(x->a = dupn(ps, x->alen)) || !(x->b = dupn(content, x->blen)))
            return oom(L, x->alen + x->blen);
    } else if (!strcmp(type, "Strip")) {
        const char *c = jstr(d, "content");
        int n = 0;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(d, "start");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(d, "stop");
        if (!c || !*c || !cJSON_IsNumber(a) || !cJSON_IsNumber(b))
            return fail(L, KV_EFORMAT, "decoder Strip: needs content, start, stop");
        x->kind = DEC_STRIP;
        x->cp = tok_utf8_dec((const uint8_t *)c, &n);
        x->start = a->valueint;
        x->stop = b->valueint;
    } else {
        return fail(L, KV_EUNSUPPORTED, "decoder \"%s\" is not supported (supported: ByteLevel, "
                    "Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)", type);
    }
    t->n_dec++;
    return KV_OK;
}

/* ---- added-token matchers ------------------------------------------------------------ */
static int matcher_build(tok_matcher *m) {
    int cnt[256] = {0};
    for (int i = 0; i < m->n; i++) cnt[(uint8_t)m->pat[i][0]]++;
    for (int b = 0; b < 256; b++) {
        if (!cnt[b]) continue;
        int *l = malloc(((size_t)cnt[b] + 1) * sizeof *l), k = 0;
        if (!l) return -1;
        for (int i = 0; i < m->n; i++) {
            if ((uint8_t)m->pat[i][0] != b) continue;
            /* insertion sort, longest first (ties keep list order): few patterns */
            int j = k++;
            while (j > 0 && m->len[l[j - 1]] < m->len[i]) l[j] = l[j - 1], j--;
            l[j] = i;
        }
        l[k] = -1;
        m->by_byte[b] = l;
    }
    return 0;
}

static kv_status build_matchers(ld *L) {
    kv_tokenizer *t = L->t;
    tok_matcher *ms[2] = {&t->m_raw, &t->m_norm};
    for (int k = 0; k < 2; k++) {
        ms[k]->pat = calloc((size_t)t->n_added + 1, sizeof(char *));
        ms[k]->len = calloc((size_t)t->n_added + 1, sizeof(size_t));
        ms[k]->added = calloc((size_t)t->n_added + 1, sizeof(int));
        if (!ms[k]->pat || !ms[k]->len || !ms[k]->added) return oom(L, (size_t)t->n_added * 24);
    }
    tok_buf a = {0}, b = {0};
    /* special tokens first, then the others, as refresh_added_tokens chains them */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < t->n_added; i++) {
            tok_added *x = &t->added[i];
            if (x->special != (pass == 0)) continue;
            tok_matcher *m = x->normalized ? &t->m_norm : &t->m_raw;
            const char *s = x->content;
            size_t n = x->len;
            if (x->normalized && tok_normalize_all(t, x->content, x->len, &a, &b, &s, &n)) {
                tok_buf_free(&a);
                tok_buf_free(&b);
                return oom(L, x->len * 4);
            }
            x->norm = x->content;
            x->norm_len = x->len;
            if (!n) continue;
            if (!(m->pat[m->n] = dupn(s, n))) {
                tok_buf_free(&a);
                tok_buf_free(&b);
                return oom(L, n);
            }
            if (x->normalized) { /* the pattern string lives as long as the matcher */
                x->norm = m->pat[m->n];
                x->norm_len = n;
            }
            m->len[m->n] = n;
            m->added[m->n] = i;
            m->n++;
        }
    }
    tok_buf_free(&a);
    tok_buf_free(&b);
    if (matcher_build(&t->m_raw) || matcher_build(&t->m_norm)) return oom(L, 4096);
    return KV_OK;
}

/* ---- tables ----------------------------------------------------------------------------- */
static kv_status build_tables(ld *L) {
    kv_tokenizer *t = L->t;
    size_t n = (size_t)t->n_ids;
    t->piece_off = malloc(n * sizeof *t->piece_off);
    t->piece_len = calloc(n, sizeof *t->piece_len);
    t->added_of_id = malloc(n * sizeof *t->added_of_id);
    if (!t->piece_off || !t->piece_len || !t->added_of_id) return oom(L, n * 16);
    memset(t->piece_off, 0xFF, n * sizeof *t->piece_off);
    memset(t->added_of_id, 0xFF, n * sizeof *t->added_of_id);
    /* map entries are in JSON order; the first string seen for an id wins */
    for (size_t k = 0; k < t->vocab.n; k++) {
        const struct tok_sent *e = &t->vocab.ent[k];
        if (t->piece_off[e->val] == UINT64_MAX) {
            t->piece_off[e->val] = e->off;
            t->piece_len[e->val] = e->len;
        }
    }
    for (int i = 0; i < t->n_added; i++) t->added_of_id[t->added[i].id] = i;

    char s[8];
    for (int b = 0; b < 256; b++) {
        int k = tok_utf8_enc(tok_byte_to_cp[b], s);
        t->byte_id[b] = tok_strmap_get(&t->vocab, t->arena, s, (size_t)k);
        snprintf(s, sizeof s, "<0x%02X>", b);
        t->fb_id[b] = tok_strmap_get(&t->vocab, t->arena, s, 6);
    }
    if (!t->byte_level) {
        t->cp_id = malloc(65536 * sizeof *t->cp_id);
        if (!t->cp_id) return oom(L, 65536 * sizeof *t->cp_id);
        for (uint32_t c = 0; c < 65536; c++) {
            int k = tok_utf8_enc(c, s);
            t->cp_id[c] = (c >= 0xD800 && c < 0xE000)
                              ? -1
                              : tok_strmap_get(&t->vocab, t->arena, s, (size_t)k);
        }
    }
    t->cache_ok = 1;
    for (int i = 0; i < TOK_CACHE_SHARDS; i++) {
        t->cache[i].e = calloc(TOK_CACHE_WAYS, sizeof(tok_cache_ent));
        if (!t->cache[i].e || pthread_mutex_init(&t->cache[i].mu, NULL)) {
            free(t->cache[i].e);
            t->cache[i].e = NULL;
            t->cache_ok = 0; /* encode works without a cache, only slower */
            break;
        }
    }
    return KV_OK;
}

/* ---- entry points ---------------------------------------------------------------------- */
kv_status kv_tok_load(const char *path, kv_tokenizer **out, kv_err *err) {
    if (out) *out = NULL;
    if (!path || !out) return kv_err_set(err, KV_EINVAL, "kv_tok_load: NULL argument");
    tok_tables_ready();
    kv_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return kv_err_set(err, KV_ENOMEM, "%s: out of memory", path);
    ld L = {t, err};
    struct stat sb;
    size_t pl = strlen(path);
    int is_dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    t->path = malloc(pl + 16);
    if (!t->path) {
        free(t);
        return kv_err_set(err, KV_ENOMEM, "%s: out of memory", path);
    }
    snprintf(t->path, pl + 16, is_dir ? "%s/tokenizer.json" : "%s", path);

    char *buf = NULL;
    size_t len = 0;
    cJSON *j = NULL;
    int64_t max_id = -1;
    kv_status st = kv_read_file(t->path, &buf, &len, err);
    if (st) goto done;
    const char *end = NULL;
    j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!j || !cJSON_IsObject(j)) {
        size_t at = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
        if (!j) {
            /* cJSON reports where it stopped; give the line too */
            size_t line = 1;
            for (size_t i = 0; i < at; i++) line += buf[i] == '\n';
            st = fail(&L, KV_EFORMAT, "malformed JSON near byte %zu (line %zu)", at, line);
        } else {
            st = fail(&L, KV_EFORMAT, "expected a JSON object at the top level");
        }
        goto done;
    }
    free(buf);
    buf = NULL;
    if ((st = load_added(&L, cJSON_GetObjectItemCaseSensitive(j, "added_tokens"), &max_id)))
        goto done;
    /* the pre-tokenizer decides byte-level mode, which the model tables depend on */
    if ((st = add_pre(&L, cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer"), 0))) goto done;
    if ((st = add_norm(&L, cJSON_GetObjectItemCaseSensitive(j, "normalizer"), 0))) goto done;
    if ((st = load_model(&L, cJSON_GetObjectItemCaseSensitive(j, "model"), &max_id))) goto done;
    if ((st = add_post(&L, cJSON_GetObjectItemCaseSensitive(j, "post_processor"), 0)))
        goto done;
    if ((st = add_dec(&L, cJSON_GetObjectItemCaseSensitive(j, "decoder"), 0))) goto done;
    t->n_ids = max_id + 1;
    if ((st = build_tables(&L))) goto done;
    if ((st = build_matchers(&L))) goto done;
done:
    cJSON_Delete(j);
    free(buf);
    if (st) {
        kv_tok_free(t);
        return st;
    }
    *out = t;
    return KV_OK;
}

void kv_tok_free(kv_tokenizer *t) {
    if (!t) return;
    free(t->path);
    free(t->arena);
    tok_strmap_free(&t->vocab);
    free(t->piece_off);
    free(t->piece_len);
    free(t->added_of_id);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    tok_matcher *ms[2] = {&t->m_raw, &t->m_norm};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < ms[k]->n; i++) free(ms[k]->pat[i]);
        free(ms[k]->pat);
        free(ms[k]->len);
        free(ms[k]->added);
        for (int b = 0; b < 256; b++) free(ms[k]->by_byte[b]);
    }
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
    free(t->pre);
    free(t->merges.t);
    free(t->cp_id);
    free(t->cont_prefix);
    free(t->eow_suffix);
    free(t->tmpl_pre);
    free(t->tmpl_post);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
    }
    free(t->dec);
    for (int i = 0; i < TOK_CACHE_SHARDS; i++) {
        if (!t->cache[i].e) continue;
        pthread_mutex_destroy(&t->cache[i].mu);
        free(t->cache[i].e);
    }
    free(t);
}

int64_t kv_tok_vocab_size(const kv_tokenizer *t) { return t ? t->n_ids : 0; }

/* As HF's id_to_token: an added token with normalized=true comes back normalized (for
 * Llama-2's Prepend+Replace normalizer "a b" is "▁a▁b"), while piece_to_id takes the
 * content as written, like token_to_id. */
const char *kv_tok_id_to_piece(const kv_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_ids) return NULL;
    if (t->added_of_id[id] >= 0) return t->added[t->added_of_id[id]].norm;
    return t->piece_off[id] == UINT64_MAX ? NULL : t->arena + t->piece_off[id];
}

int32_t kv_tok_piece_to_id(const kv_tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    size_t n = strlen(piece);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, piece, n)) return t->added[i].id;
    return tok_strmap_get(&t->vocab, t->arena, piece, n);
}

void kv_ids_free(kv_ids *ids) {
    if (!ids) return;
    free(ids->v);
    ids->v = NULL;
    ids->n = ids->cap = 0;
}

kv_status kv_ids_push(kv_ids *ids, int32_t id, kv_err *err) {
    if (!ids) return kv_err_set(err, KV_EINVAL, "kv_ids_push: NULL ids");
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v)
            return kv_err_set(err, KV_ENOMEM, "kv_ids_push: out of memory allocating %zu bytes",
                              cap * sizeof *v);
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return KV_OK;
}
