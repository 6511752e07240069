/* safetensors.c — the .safetensors reader and HF shard sets (see safetensors.h).
 *
 * Pipeline stage: load. File layout (https://github.com/huggingface/safetensors):
 *
 *   [ u64 little-endian N ][ N bytes of UTF-8 JSON header ][ data section ]
 *   header: { "__metadata__": {str: str},            (optional)
 *             "<name>": { "dtype": "BF16", "shape": [d0, d1, ...],
 *                         "data_offsets": [begin, end] }, ... }
 *   offsets are relative to the start of the data section.
 *
 * The file is mmap'd read-only and its fd closed at once; tensors are views into the
 * map. The header is copied out before parsing (the map is never written) and every
 * field is checked against the file size before any pointer is formed: a corrupt or
 * hostile file yields an error, never an out-of-bounds read. Lookups by name go
 * through an open-addressing hash table (checkpoints hold hundreds of tensors and
 * the model loader looks each one up). */
#include "kvant/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvant/fileio.h"

/* The reference implementation refuses headers above 100 MB; so do we (a real
 * header is a few hundred KB even for 70B models). */
#define ST_MAX_HEADER ((uint64_t)100000000)
/* Offsets and dims arrive as JSON numbers (doubles): above 2^53 they are not exact. */
#define ST_MAX_INT 9007199254740992.0

/* ---- name -> index hash table (FNV-1a, linear probing, power-of-two capacity) ---- */

typedef const char *(*name_fn)(const void *ctx, int i);

typedef struct {
    int32_t *slot; /* index + 1; 0 = empty */
    size_t cap;
} name_index;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static kv_status ni_init(name_index *ni, int n, const char *what, kv_err *err) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap *= 2;
    ni->slot = kv_calloc(cap, sizeof *ni->slot, err, what);
    ni->cap = ni->slot ? cap : 0;
    return ni->slot ? KV_OK : KV_ENOMEM;
}

/* Insert entry i; returns -1 on success, else the index already holding the name. */
static int ni_insert(name_index *ni, int i, name_fn name, const void *ctx) {
    const char *s = name(ctx, i);
    size_t mask = ni->cap - 1;
    for (size_t h = (size_t)fnv1a(s) & mask;; h = (h + 1) & mask) {
        if (ni->slot[h] == 0) {
            ni->slot[h] = i + 1;
            return -1;
        }
        if (strcmp(name(ctx, ni->slot[h] - 1), s) == 0) return ni->slot[h] - 1;
    }
}

static int ni_find(const name_index *ni, const char *s, name_fn name, const void *ctx) {
    if (!ni->cap || !s) return -1;
    size_t mask = ni->cap - 1;
    for (size_t h = (size_t)fnv1a(s) & mask;; h = (h + 1) & mask) {
        if (ni->slot[h] == 0) return -1;
        if (strcmp(name(ctx, ni->slot[h] - 1), s) == 0) return ni->slot[h] - 1;
    }
}

static char *dup_str(const char *s, kv_err *err) {
    size_t n = strlen(s) + 1;
    char *p = kv_malloc(n, err, "safetensors: string");
    if (p) memcpy(p, s, n);
    return p;
}

/* Error position of a failed cJSON parse as a byte offset into the text. */
static size_t json_err_offset(const char *text, size_t len, const char *end) {
    if (!end || end < text) return 0;
    size_t off = (size_t)(end - text);
    return off > len ? len : off;
}

/* ---- one file ---- */

struct kv_st_file {
    char *path;
    unsigned char *map;
    size_t map_len;
    kv_tensor *t; /* [n], header order */
    int n;
    name_index idx;
    char **meta_key, **meta_val; /* [n_meta] */
    int n_meta;
};

static const char *st_name(const void *ctx, int i) {
    return ((const kv_st_file *)ctx)->t[i].name;
}

void kv_st_close(kv_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    if (f->t)
        for (int i = 0; i < f->n; i++) free((char *)f->t[i].name);
    free(f->t);
    free(f->idx.slot);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->meta_key);
    free(f->meta_val);
    free(f->path);
    free(f);
}

/* A JSON number that is a non-negative integer exactly representable; -1 otherwise. */
static int64_t json_uint(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != (double)(int64_t)d) return -1;
    return (int64_t)d;
}

typedef struct {
    uint64_t begin, end;
    int i;
} st_span;

static int span_cmp(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->i - y->i;
}

static kv_status parse_metadata(kv_st_file *f, const cJSON *m, kv_err *err) {
    if (!cJSON_IsObject(m))
        return kv_err_set(err, KV_EFORMAT, "%s: __metadata__ is not a JSON object", f->path);
    int n = cJSON_GetArraySize(m);
    f->meta_key = kv_calloc((size_t)n, sizeof(char *), err, f->path);
    f->meta_val = kv_calloc((size_t)n, sizeof(char *), err, f->path);
    if (!f->meta_key || !f->meta_val) return KV_ENOMEM;
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring)
            return kv_err_set(err, KV_EFORMAT, "%s: __metadata__ value for \"%s\" is not a string",
                              f->path, e->string ? e->string : "");
        int k = f->n_meta;
        f->meta_key[k] = dup_str(e->string ? e->string : "", err);
        f->meta_val[k] = f->meta_key[k] ? dup_str(e->valuestring, err) : NULL;
        if (!f->meta_val[k]) {
            free(f->meta_key[k]);
            f->meta_key[k] = NULL;
            return KV_ENOMEM;
        }
        f->n_meta++;
    }
    return KV_OK;
}

/* Fill f->t[k] from one header entry, checking it against the data section size. */
static kv_status parse_entry(kv_st_file *f, const cJSON *e, size_t data_off, uint64_t data_len,
                             st_span *span, kv_err *err) {
    const char *name = e->string ? e->string : "";
    const char *P = f->path;
    if (!cJSON_IsObject(e))
        return kv_err_set(err, KV_EFORMAT, "%s: tensor %s: entry is not a JSON object", P, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return kv_err_set(err, KV_EFORMAT, "%s: tensor %s: missing or non-string \"dtype\"", P,
                          name);
    kv_dtype dtype;
    if (kv_dtype_from_name(dt->valuestring, &dtype) != 0)
        return kv_err_set(err, KV_EUNSUPPORTED,
                          "%s: tensor %s: unknown dtype \"%.32s\" (supported: F32, F16, BF16, "
                          "F64, I8, U8, I16, I32, I64, BOOL)",
                          P, name, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return kv_err_set(err, KV_EFORMAT, "%s: tensor %s: missing or non-list \"shape\"", P,
                          name);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > KV_MAX_DIMS)
        return kv_err_set(err, KV_EUNSUPPORTED, "%s: tensor %s: %d dims, at most %d supported", P,
                          name, ndim, KV_MAX_DIMS);
    kv_tensor *t = &f->t[span->i];
    t->dtype = dtype;
    t->ndim = ndim;
    uint64_t numel = 1;
    int overflow = 0;
    int d = 0;
    for (const cJSON *v = sh->child; v; v = v->next, d++) {
        int64_t x = json_uint(v);
        if (x < 0)
            return kv_err_set(err, KV_EFORMAT,
                              "%s: tensor %s: shape[%d] is not a non-negative integer", P, name,
                              d);
        t->shape[d] = x;
        if (__builtin_mul_overflow(numel, (uint64_t)x, &numel)) overflow = 1;
    }
    uint64_t nbytes = 0;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)kv_dtype_size(dtype), &nbytes))
        return kv_err_set(err, KV_EFORMAT, "%s: tensor %s: shape overflows 64-bit byte count", P,
                          name);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return kv_err_set(err, KV_EFORMAT,
                          "%s: tensor %s: \"data_offsets\" is not a list [begin, end]", P, name);
    int64_t b = json_uint(off->child), en = json_uint(off->child->next);
    if (b < 0 || en < 0)
        return kv_err_set(err, KV_EFORMAT,
                          "%s: tensor %s: data_offsets are not non-negative integers", P, name);
    if (b > en)
        return kv_err_set(err, KV_EFORMAT, "%s: tensor %s: data_offsets [%lld, %lld]: begin > end",
                          P, name, (long long)b, (long long)en);
    if ((uint64_t)en > data_len)
        return kv_err_set(err, KV_ERANGE,
                          "%s: tensor %s: data_offsets [%lld, %lld] beyond the data section "
                          "(%llu bytes)",
                          P, name, (long long)b, (long long)en, (unsigned long long)data_len);
    if ((uint64_t)(en - b) != nbytes) {
        char sbuf[96];
        return kv_err_set(err, KV_EFORMAT,
                          "%s: tensor %s: data_offsets [%lld, %lld] hold %lld bytes, but %s %s "
                          "needs %llu",
                          P, name, (long long)b, (long long)en, (long long)(en - b),
                          kv_dtype_name(dtype), kv_shape_str(t, sbuf, sizeof sbuf),
                          (unsigned long long)nbytes);
    }
    t->data = f->map + data_off + (size_t)b;
    t->nbytes = (size_t)nbytes;
    t->file = f->path;
    span->begin = (uint64_t)b;
    span->end = (uint64_t)en;
    return KV_OK;
}

static kv_status parse_header(kv_st_file *f, const char *hdr, size_t hlen, kv_err *err) {
    const char *P = f->path;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, hlen, &end, 0);
    if (!root)
        return kv_err_set(err, KV_EFORMAT, "%s: header is not valid JSON (error at byte %zu of %zu)",
                          P, json_err_offset(hdr, hlen, end), hlen);
    kv_status st = KV_OK;
    st_span *spans = NULL;
    /* The format pads the header with spaces; anything else after the object is junk. */
    for (const char *q = end; q && q < hdr + hlen; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            st = kv_err_set(err, KV_EFORMAT, "%s: header: unexpected data after the JSON "
                            "object at byte %zu", P, (size_t)(q - hdr));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        st = kv_err_set(err, KV_EFORMAT, "%s: header is not a JSON object", P);
        goto done;
    }
    size_t data_off = 8 + hlen;
    uint64_t data_len = (uint64_t)(f->map_len - data_off);
    int n = 0;
    for (const cJSON *e = root->child; e; e = e->next)
        if (!e->string || strcmp(e->string, "__metadata__") != 0) n++;
    f->t = kv_calloc((size_t)n, sizeof *f->t, err, P);
    spans = kv_calloc((size_t)n, sizeof *spans, err, P);
    if (!f->t || !spans) {
        st = KV_ENOMEM;
        goto done;
    }
    int have_meta = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (e->string && strcmp(e->string, "__metadata__") == 0) {
            if (have_meta++) {
                st = kv_err_set(err, KV_EFORMAT, "%s: duplicate __metadata__", P);
                goto done;
            }
            if ((st = parse_metadata(f, e, err)) != KV_OK) goto done;
            continue;
        }
        int k = f->n;
        f->t[k].name = dup_str(e->string ? e->string : "", err);
        if (!f->t[k].name) {
            st = KV_ENOMEM;
            goto done;
        }
        f->n++;
        spans[k].i = k;
        if ((st = parse_entry(f, e, data_off, data_len, &spans[k], err)) != KV_OK) goto done;
    }
    if ((st = ni_init(&f->idx, f->n, P, err)) != KV_OK) goto done;
    for (int i = 0; i < f->n; i++) {
        if (ni_insert(&f->idx, i, st_name, f) >= 0) {
            st = kv_err_set(err, KV_EFORMAT, "%s: duplicate tensor name %s", P, f->t[i].name);
            goto done;
        }
    }
    /* Overlap: sorted by begin, every non-empty span must start at or after the end
     * of all earlier ones. Empty tensors occupy no bytes and overlap nothing. */
    qsort(spans, (size_t)f->n, sizeof *spans, span_cmp);
    int prev = -1;
    uint64_t prev_end = 0;
    for (int j = 0; j < f->n; j++) {
        if (spans[j].begin == spans[j].end) continue;
        if (prev >= 0 && spans[j].begin < prev_end) {
            st = kv_err_set(err, KV_EFORMAT,
                            "%s: tensor %s: data_offsets [%llu, %llu] overlap tensor %s [%llu, "
                            "%llu]",
                            P, f->t[spans[j].i].name, (unsigned long long)spans[j].begin,
                            (unsigned long long)spans[j].end, f->t[spans[prev].i].name,
                            (unsigned long long)spans[prev].begin,
                            (unsigned long long)spans[prev].end);
            goto done;
        }
        prev = j;
        prev_end = spans[j].end;
    }
done:
    free(spans);
    cJSON_Delete(root);
    return st;
}

kv_status kv_st_open(const char *path, kv_st_file **out, kv_err *err) {
    if (out) *out = NULL;
    if (!path || !out) return kv_err_set(err, KV_EINVAL, "kv_st_open: NULL argument");
    kv_status st = KV_OK;
    char *hdr = NULL;
    kv_st_file *f = kv_calloc(1, sizeof *f, err, path);
    if (!f) return KV_ENOMEM;
    if (!(f->path = dup_str(path, err))) {
        st = KV_ENOMEM;
        goto fail;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        st = kv_err_set(err, (e == ENOENT || e == ENOTDIR) ? KV_ENOTFOUND : KV_EIO,
                        "%s: open: %s", path, strerror(e));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        st = kv_err_set(err, KV_EIO, "%s: stat: %s", path, strerror(e));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        st = kv_err_set(err, KV_EIO, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fsize < 8) {
        close(fd);
        st = kv_err_set(err, KV_EFORMAT,
                        "%s: file is %llu bytes, too short for the 8-byte header length", path,
                        (unsigned long long)fsize);
        goto fail;
    }
    if (fsize > SIZE_MAX) {
        close(fd);
        st = kv_err_set(err, KV_EUNSUPPORTED, "%s: file too large to map", path);
        goto fail;
    }
    void *map = mmap(NULL, (size_t)fsize, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) {
        st = kv_err_set(err, KV_EIO, "%s: mmap %llu bytes: %s", path, (unsigned long long)fsize,
                        strerror(map_errno));
        goto fail;
    }
    f->map = map;
    f->map_len = (size_t)fsize;

    const unsigned char *m = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | m[i];
    if (hlen > fsize - 8) {
        st = kv_err_set(err, KV_EFORMAT,
                        "%s: header length %llu beyond the end of the file (%llu bytes; "
                        "truncated or not a safetensors file)",
                        path, (unsigned long long)hlen, (unsigned long long)fsize);
        goto fail;
    }
    if (hlen > ST_MAX_HEADER) {
        st = kv_err_set(err, KV_EFORMAT, "%s: header length %llu exceeds the %llu-byte limit",
                        path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        goto fail;
    }
    /* Parse a NUL-terminated copy: the map is read-only and must never be written. */
    hdr = kv_malloc((size_t)hlen + 1, err, path);
    if (!hdr) {
        st = KV_ENOMEM;
        goto fail;
    }
    memcpy(hdr, m + 8, (size_t)hlen);
    hdr[hlen] = '\0';
    if ((st = parse_header(f, hdr, (size_t)hlen, err)) != KV_OK) goto fail;
    free(hdr);
    *out = f;
    return KV_OK;
fail:
    free(hdr);
    kv_st_close(f);
    return st;
}

int kv_st_count(const kv_st_file *f) { return f ? f->n : 0; }

const kv_tensor *kv_st_at(const kv_st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const kv_tensor *kv_st_find(const kv_st_file *f, const char *name) {
    if (!f) return NULL;
    int i = ni_find(&f->idx, name, st_name, f);
    return i >= 0 ? &f->t[i] : NULL;
}

const char *kv_st_path(const kv_st_file *f) { return f ? f->path : NULL; }

const char *kv_st_meta(const kv_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

/* ---- a checkpoint directory ---- */

#define ST_SINGLE "model.safetensors"
#define ST_INDEX "model.safetensors.index.json"

struct kv_weights {
    char *source;          /* the single file or the index: named in "not found" errors */
    kv_st_file **files;    /* [n_files], each shard opened once */
    int n_files;
    const kv_tensor **t;   /* [n] */
    int n;
    name_index idx;
};

static const char *w_name(const void *ctx, int i) {
    return ((const kv_weights *)ctx)->t[i]->name;
}

void kv_weights_close(kv_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_files; i++) kv_st_close(w->files[i]);
    free(w->files);
    free(w->t);
    free(w->idx.slot);
    free(w->source);
    free(w);
}

static kv_status build_index(kv_weights *w, kv_err *err) {
    kv_status st = ni_init(&w->idx, w->n, w->source, err);
    if (st != KV_OK) return st;
    for (int i = 0; i < w->n; i++)
        if (ni_insert(&w->idx, i, w_name, w) >= 0)
            return kv_err_set(err, KV_EFORMAT, "%s: duplicate tensor name %s", w->source,
                              w->t[i]->name);
    return KV_OK;
}

static kv_status open_single(kv_weights *w, const char *path, kv_err *err) {
    w->files = kv_calloc(1, sizeof *w->files, err, path);
    if (!w->files) return KV_ENOMEM;
    kv_status st = kv_st_open(path, &w->files[0], err);
    if (st != KV_OK) return st;
    w->n_files = 1;
    const kv_st_file *f = w->files[0];
    w->t = kv_calloc((size_t)f->n, sizeof *w->t, err, path);
    if (!w->t) return KV_ENOMEM;
    for (int i = 0; i < f->n; i++) w->t[i] = &f->t[i];
    w->n = f->n;
    return build_index(w, err);
}

/* A shard name from the index must be a plain file name inside the directory. */
static int bad_shard_name(const char *s) {
    return !*s || strchr(s, '/') || strchr(s, '\\') || strcmp(s, ".") == 0 ||
           strcmp(s, "..") == 0;
}

static kv_status open_sharded(kv_weights *w, const char *dir, const char *index_path,
                              kv_err *err) {
    const char *I = index_path;
    char *text = NULL;
    size_t len = 0;
    kv_status st = kv_read_file(I, &text, &len, err);
    if (st != KV_OK) return st;
    const char *end = NULL;
    const char **shard_names = NULL; /* [n_files], pointing into the parsed JSON */
    /* len + 1 covers the NUL kv_read_file appends: trailing junk is then an error */
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    char path[4096];
    if (!root) {
        st = kv_err_set(err, KV_EFORMAT, "%s: not valid JSON (error at byte %zu)", I,
                        json_err_offset(text, len, end));
        goto done;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = kv_err_set(err, KV_EFORMAT, "%s: missing \"weight_map\" object", I);
        goto done;
    }
    int n = cJSON_GetArraySize(wm);
    w->t = kv_calloc((size_t)n, sizeof *w->t, err, I);
    w->files = kv_calloc((size_t)n, sizeof *w->files, err, I); /* at most one shard each */
    shard_names = kv_calloc((size_t)n, sizeof(char *), err, I);
    if (!w->t || !w->files || !shard_names) {
        st = KV_ENOMEM;
        goto done;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        const char *tname = e->string ? e->string : "";
        if (!cJSON_IsString(e) || !e->valuestring) {
            st = kv_err_set(err, KV_EFORMAT, "%s: weight_map[\"%s\"] is not a string", I, tname);
            break;
        }
        const char *shard = e->valuestring;
        if (bad_shard_name(shard)) {
            st = kv_err_set(err, KV_EFORMAT,
                            "%s: weight_map[\"%s\"]: shard \"%s\" is not a file name in the "
                            "checkpoint directory",
                            I, tname, shard);
            break;
        }
        int s = 0;
        while (s < w->n_files && strcmp(shard_names[s], shard) != 0) s++;
        if (s == w->n_files) {
            if ((st = kv_path_join(path, sizeof path, dir, shard, err)) != KV_OK) break;
            if (!kv_is_file(path)) {
                st = kv_err_set(err, KV_ENOTFOUND,
                                "%s: shard %s (holding tensor %s) not found: %s", I, shard, tname,
                                path);
                break;
            }
            if ((st = kv_st_open(path, &w->files[s], err)) != KV_OK) break;
            shard_names[s] = shard;
            w->n_files++;
        }
        const kv_tensor *t = kv_st_find(w->files[s], tname);
        if (!t) {
            st = kv_err_set(err, KV_ENOTFOUND, "%s: tensor %s not found (%s maps it to this shard)",
                            kv_st_path(w->files[s]), tname, I);
            break;
        }
        w->t[w->n++] = t;
    }
    if (st == KV_OK) st = build_index(w, err);
done:
    free(shard_names);
    cJSON_Delete(root);
    free(text);
    return st;
}

kv_status kv_weights_open(const char *dir, kv_weights **out, kv_err *err) {
    if (out) *out = NULL;
    if (!dir || !out) return kv_err_set(err, KV_EINVAL, "kv_weights_open: NULL argument");
    kv_weights *w = kv_calloc(1, sizeof *w, err, dir);
    if (!w) return KV_ENOMEM;
    kv_status st;
    char path[4096];
    if (kv_is_file(dir)) { /* a single .safetensors file given directly */
        st = (w->source = dup_str(dir, err)) ? open_single(w, dir, err) : KV_ENOMEM;
    } else if (!kv_is_dir(dir)) {
        st = kv_err_set(err, KV_ENOTFOUND, "%s: no such checkpoint directory", dir);
    } else if ((st = kv_path_join(path, sizeof path, dir, ST_SINGLE, err)) == KV_OK &&
               kv_is_file(path)) {
        /* transformers prefers the single file when both exist; so do we */
        st = (w->source = dup_str(path, err)) ? open_single(w, path, err) : KV_ENOMEM;
    } else if (st == KV_OK &&
               (st = kv_path_join(path, sizeof path, dir, ST_INDEX, err)) == KV_OK &&
               kv_is_file(path)) {
        st = (w->source = dup_str(path, err)) ? open_sharded(w, dir, path, err) : KV_ENOMEM;
    } else if (st == KV_OK) {
        st = kv_err_set(err, KV_ENOTFOUND, "%s: no weights: expected %s or %s", dir, ST_SINGLE,
                        ST_INDEX);
    }
    if (st != KV_OK) {
        kv_weights_close(w);
        return st;
    }
    *out = w;
    return KV_OK;
}

const kv_tensor *kv_weights_find(const kv_weights *w, const char *name) {
    if (!w) return NULL;
    int i = ni_find(&w->idx, name, w_name, w);
    return i >= 0 ? w->t[i] : NULL;
}

int kv_weights_count(const kv_weights *w) { return w ? w->n : 0; }

const kv_tensor *kv_weights_at(const kv_weights *w, int i) {
    return w && i >= 0 && i < w->n ? w->t[i] : NULL;
}

/* "F32, F16 or BF16" for a dtype mask. */
static void mask_str(unsigned mask, char *buf, size_t cap) {
    size_t pos = 0;
    int total = 0, k = 0;
    buf[0] = '\0';
    for (int i = 0; i < KV_DTYPE_COUNT; i++) total += (mask >> i) & 1u;
    for (int i = 0; i < KV_DTYPE_COUNT && pos < cap; i++) {
        if (!((mask >> i) & 1u)) continue;
        const char *sep = k == 0 ? "" : (k == total - 1 ? " or " : ", ");
        int w = snprintf(buf + pos, cap - pos, "%s%s", sep, kv_dtype_name((kv_dtype)i));
        if (w < 0) break;
        pos += (size_t)w;
        k++;
    }
    if (total == 0) snprintf(buf, cap, "(none)");
}

kv_status kv_weights_get(const kv_weights *w, const char *name, unsigned dtype_mask, int ndim,
                         const int64_t *shape, const kv_tensor **out, kv_err *err) {
    if (out) *out = NULL;
    if (!w || !name || ndim < 0 || ndim > KV_MAX_DIMS || (ndim > 0 && !shape))
        return kv_err_set(err, KV_EINVAL, "kv_weights_get: bad argument (tensor %s, ndim %d)",
                          name ? name : "(null)", ndim);
    const kv_tensor *t = kv_weights_find(w, name);
    if (!t) return kv_err_set(err, KV_ENOTFOUND, "%s: tensor %s not found", w->source, name);
    if (!((dtype_mask >> t->dtype) & 1u)) {
        char want[128];
        mask_str(dtype_mask, want, sizeof want);
        return kv_err_set(err, KV_EUNSUPPORTED, "%s: tensor %s: dtype %s, expected %s", t->file,
                          name, kv_dtype_name(t->dtype), want);
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        kv_tensor want = {.ndim = ndim};
        for (int i = 0; i < ndim; i++) want.shape[i] = shape[i];
        char got_s[96], want_s[96];
        return kv_err_set(err, KV_EFORMAT, "%s: tensor %s: shape %s, expected %s", t->file, name,
                          kv_shape_str(t, got_s, sizeof got_s),
                          kv_shape_str(&want, want_s, sizeof want_s));
    }
    if (out) *out = t;
    return KV_OK;
}
