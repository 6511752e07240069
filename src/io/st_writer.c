/* st_writer.c — .safetensors writer and HF shard sets (see st_writer.h).
 *
 * Pipeline stage: quantize (writes the quantized checkpoint). The header JSON is
 * built by hand rather than with cJSON so that integers (shapes, offsets up to 2^63)
 * are printed exactly and the byte count is known before anything is written.
 * Tensor bytes are either borrowed pointers (e.g. views into an mmap'd input
 * checkpoint) or produced by a callback at write time, so the writer itself never
 * holds more than its header in memory. */
#include "kvant/st_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvant/fileio.h"
#include "kvant/sbuf.h"

typedef struct {
    char *name;
    kv_dtype dtype;
    int ndim;
    int64_t shape[KV_MAX_DIMS];
    uint64_t nbytes;
    const void *data;   /* borrowed, or NULL when fn is set */
    kv_st_stream_fn fn; /* streaming producer, or NULL */
    void *ctx;
} st_entry;

struct kv_st_writer {
    st_entry *t;
    int n, cap;
    char **meta_key, **meta_val;
    int n_meta, cap_meta;
};

struct kv_st_sink {
    FILE *fp;
    const char *path; /* final file path, for messages */
    const char *name; /* tensor being written */
    uint64_t want, got;
};

/* A NUL-terminated string as a JSON string literal. */
static void put_json(kv_sbuf *b, const char *s) { kv_sbuf_json_str(b, s, strlen(s)); }

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ---- building the tensor list ---- */

kv_status kv_st_writer_new(kv_st_writer **out, kv_err *err) {
    if (!out) return kv_err_set(err, KV_EINVAL, "st_writer: NULL argument");
    *out = kv_calloc(1, sizeof **out, err, "st_writer");
    return *out ? KV_OK : KV_ENOMEM;
}

void kv_st_writer_free(kv_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_key[i]);
        free(w->meta_val[i]);
    }
    free(w->t);
    free(w->meta_key);
    free(w->meta_val);
    free(w);
}

kv_status kv_st_writer_set_meta(kv_st_writer *w, const char *key, const char *value,
                                kv_err *err) {
    if (!w || !key || !value) return kv_err_set(err, KV_EINVAL, "st_writer: set_meta: NULL argument");
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta_key[i], key) == 0) {
            char *v = dup_str(value);
            if (!v) return kv_err_set(err, KV_ENOMEM, "st_writer: out of memory copying metadata");
            free(w->meta_val[i]);
            w->meta_val[i] = v;
            return KV_OK;
        }
    if (w->n_meta == w->cap_meta) {
        int c = w->cap_meta ? w->cap_meta * 2 : 4;
        char **k = realloc(w->meta_key, (size_t)c * sizeof *k);
        if (k) w->meta_key = k;
        char **v = k ? realloc(w->meta_val, (size_t)c * sizeof *v) : NULL;
        if (v) w->meta_val = v;
        if (!k || !v)
            return kv_err_set(err, KV_ENOMEM, "st_writer: out of memory growing metadata to %d",
                              c);
        w->cap_meta = c;
    }
    char *k = dup_str(key), *v = dup_str(value);
    if (!k || !v) {
        free(k);
        free(v);
        return kv_err_set(err, KV_ENOMEM, "st_writer: out of memory copying metadata");
    }
    w->meta_key[w->n_meta] = k;
    w->meta_val[w->n_meta] = v;
    w->n_meta++;
    return KV_OK;
}

static kv_status add_entry(kv_st_writer *w, const char *name, kv_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, kv_st_stream_fn fn,
                           void *ctx, int *index, kv_err *err) {
    if (index) *index = -1;
    if (!w || !name) return kv_err_set(err, KV_EINVAL, "st_writer: add: NULL argument");
    if (!*name || strcmp(name, "__metadata__") == 0)
        return kv_err_set(err, KV_EINVAL, "st_writer: add: invalid tensor name \"%s\"", name);
    if ((unsigned)dtype >= KV_DTYPE_COUNT)
        return kv_err_set(err, KV_EINVAL, "st_writer: %s: unknown dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > KV_MAX_DIMS || (ndim > 0 && !shape))
        return kv_err_set(err, KV_EINVAL, "st_writer: %s: %d dims (0 to %d supported)", name,
                          ndim, KV_MAX_DIMS);
    uint64_t numel = 1, nbytes;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return kv_err_set(err, KV_EINVAL, "st_writer: %s: negative dim %lld", name,
                              (long long)shape[d]);
        if (__builtin_mul_overflow(numel, (uint64_t)shape[d], &numel))
            return kv_err_set(err, KV_EINVAL, "st_writer: %s: shape overflows", name);
    }
    if (__builtin_mul_overflow(numel, (uint64_t)kv_dtype_size(dtype), &nbytes) ||
        nbytes > (uint64_t)INT64_MAX / 2)
        return kv_err_set(err, KV_EINVAL, "st_writer: %s: byte count overflows", name);
    if (!fn && !data && nbytes)
        return kv_err_set(err, KV_EINVAL, "st_writer: %s: NULL data for %llu bytes", name,
                          (unsigned long long)nbytes);
    /* Linear search for duplicates would be quadratic on big checkpoints; a sorted
     * check happens at write time instead (see check_unique). */
    if (w->n == w->cap) {
        int c = w->cap ? w->cap * 2 : 64;
        st_entry *t = realloc(w->t, (size_t)c * sizeof *t);
        if (!t)
            return kv_err_set(err, KV_ENOMEM, "st_writer: out of memory growing the list to %d "
                              "tensors", c);
        w->t = t;
        w->cap = c;
    }
    st_entry *e = &w->t[w->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = dup_str(name)))
        return kv_err_set(err, KV_ENOMEM, "st_writer: out of memory copying a name");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    e->nbytes = nbytes;
    e->data = data;
    e->fn = fn;
    e->ctx = ctx;
    if (index) *index = w->n;
    w->n++;
    return KV_OK;
}

kv_status kv_st_writer_add(kv_st_writer *w, const char *name, kv_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, int *index, kv_err *err) {
    return add_entry(w, name, dtype, ndim, shape, data, NULL, NULL, index, err);
}

kv_status kv_st_writer_add_stream(kv_st_writer *w, const char *name, kv_dtype dtype, int ndim,
                                  const int64_t *shape, kv_st_stream_fn fn, void *ctx,
                                  int *index, kv_err *err) {
    if (!fn) return kv_err_set(err, KV_EINVAL, "st_writer: %s: NULL callback", name ? name : "?");
    return add_entry(w, name, dtype, ndim, shape, NULL, fn, ctx, index, err);
}

int kv_st_writer_count(const kv_st_writer *w) { return w ? w->n : 0; }

int64_t kv_st_writer_data_bytes(const kv_st_writer *w) {
    int64_t s = 0;
    for (int i = 0; w && i < w->n; i++) s += (int64_t)w->t[i].nbytes;
    return s;
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static kv_status check_unique(const kv_st_writer *w, kv_err *err) {
    if (w->n < 2) return KV_OK;
    const char **names = kv_malloc((size_t)w->n * sizeof *names, err, "st_writer: name check");
    if (!names) return KV_ENOMEM;
    for (int i = 0; i < w->n; i++) names[i] = w->t[i].name;
    qsort(names, (size_t)w->n, sizeof *names, cmp_name_ptr);
    kv_status st = KV_OK;
    for (int i = 1; i < w->n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            st = kv_err_set(err, KV_EINVAL, "st_writer: duplicate tensor name %s", names[i]);
            break;
        }
    free(names);
    return st;
}

/* ---- writing ---- */

kv_status kv_st_sink_write(kv_st_sink *s, const void *data, size_t n, kv_err *err) {
    if (!s || (!data && n)) return kv_err_set(err, KV_EINVAL, "st_writer: sink: NULL argument");
    if ((uint64_t)n > s->want - s->got)
        return kv_err_set(err, KV_EINVAL,
                          "%s: tensor %s: producer wrote more than its %llu bytes", s->path,
                          s->name, (unsigned long long)s->want);
    if (n && fwrite(data, 1, n, s->fp) != n) {
        int e = errno;
        return kv_err_set(err, KV_EIO, "%s: write tensor %s: %s", s->path, s->name,
                          strerror(e ? e : EIO));
    }
    s->got += n;
    return KV_OK;
}

/* Header JSON of tensors [i0, i1) with offsets relative to this file's data section,
 * padded with spaces so that 8 + length is a multiple of 8. */
static kv_status build_header(const kv_st_writer *w, int i0, int i1, kv_sbuf *b,
                              kv_err *err) {
    kv_sbuf_str(b, "{");
    int first = 1;
    if (w->n_meta) {
        kv_sbuf_str(b, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) kv_sbuf_str(b, ",");
            put_json(b, w->meta_key[i]);
            kv_sbuf_str(b, ":");
            put_json(b, w->meta_val[i]);
        }
        kv_sbuf_str(b, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (int i = i0; i < i1; i++) {
        const st_entry *e = &w->t[i];
        if (!first) kv_sbuf_str(b, ",");
        first = 0;
        put_json(b, e->name);
        kv_sbuf_str(b, ":{\"dtype\":\"");
        kv_sbuf_str(b, kv_dtype_name(e->dtype));
        kv_sbuf_str(b, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            if (d) kv_sbuf_str(b, ",");
            kv_sbuf_printf(b, "%lld", (long long)e->shape[d]);
        }
        kv_sbuf_str(b, "],\"data_offsets\":[");
        kv_sbuf_printf(b, "%lld", (long long)off);
        kv_sbuf_str(b, ",");
        off += e->nbytes;
        kv_sbuf_printf(b, "%lld", (long long)off);
        kv_sbuf_str(b, "]}");
    }
    kv_sbuf_str(b, "}");
    while (!b->oom && (8 + b->n) % 8 != 0) kv_sbuf_str(b, " ");
    if (b->oom)
        return kv_err_set(err, KV_ENOMEM, "st_writer: out of memory building a header of %zu "
                          "bytes", b->n);
    return KV_OK;
}

/* Write tensors [i0, i1) to path atomically. */
static kv_status write_range(kv_st_writer *w, const char *path, int i0, int i1, kv_err *err) {
    kv_sbuf hb = {0};
    kv_atomic_file af = {0};
    kv_status st = build_header(w, i0, i1, &hb, err);
    if (st) goto fail;
    if ((st = kv_atomic_open(&af, path, err))) goto fail;
    unsigned char len8[8];
    uint64_t hl = hb.n;
    for (int k = 0; k < 8; k++) len8[k] = (unsigned char)(hl >> (8 * k));
    if (fwrite(len8, 1, 8, af.fp) != 8 || fwrite(hb.p, 1, hb.n, af.fp) != hb.n) {
        int e = errno;
        st = kv_err_set(err, KV_EIO, "%s: write header: %s", path, strerror(e ? e : EIO));
        goto fail;
    }
    for (int i = i0; i < i1; i++) {
        st_entry *e = &w->t[i];
        kv_st_sink sink = {af.fp, path, e->name, e->nbytes, 0};
        if (e->fn) {
            errno = 0;
            st = e->fn(e->ctx, i, &sink, err);
        } else {
            errno = 0;
            st = kv_st_sink_write(&sink, e->data, (size_t)e->nbytes, err);
        }
        if (st) goto fail;
        if (sink.got != sink.want) {
            st = kv_err_set(err, KV_EINVAL, "%s: tensor %s: producer wrote %llu of %llu bytes",
                            path, e->name, (unsigned long long)sink.got,
                            (unsigned long long)sink.want);
            goto fail;
        }
    }
    kv_sbuf_free(&hb);
    return kv_atomic_commit(&af, err);
fail:
    kv_atomic_abort(&af);
    kv_sbuf_free(&hb);
    return st;
}

kv_status kv_st_writer_write(kv_st_writer *w, const char *path, kv_err *err) {
    if (!w || !path) return kv_err_set(err, KV_EINVAL, "st_writer: write: NULL argument");
    kv_status st = check_unique(w, err);
    if (st) return st;
    return write_range(w, path, 0, w->n, err);
}

kv_status kv_st_writer_write_dir(kv_st_writer *w, const char *dir, int64_t max_shard_bytes,
                                 int *n_shards, kv_err *err) {
    if (n_shards) *n_shards = 0;
    if (!w || !dir) return kv_err_set(err, KV_EINVAL, "st_writer: write_dir: NULL argument");
    if (max_shard_bytes <= 0) max_shard_bytes = KV_ST_DEFAULT_SHARD_BYTES;
    kv_status st = check_unique(w, err);
    if (st) return st;
    char path[4096];
    /* Greedy assignment in insertion order: start[s] is the first tensor of shard s. */
    int *start = kv_malloc(((size_t)w->n + 2) * sizeof *start, err, "st_writer: shards");
    if (!start) return KV_ENOMEM;
    int ns = 0;
    uint64_t cur = 0;
    start[ns++] = 0;
    for (int i = 0; i < w->n; i++) {
        if (cur > 0 && cur + w->t[i].nbytes > (uint64_t)max_shard_bytes) {
            start[ns++] = i;
            cur = 0;
        }
        cur += w->t[i].nbytes;
    }
    start[ns] = w->n;
    if (ns == 1) {
        st = kv_path_join(path, sizeof path, dir, "model.safetensors", err);
        if (!st) st = write_range(w, path, 0, w->n, err);
        if (!st && n_shards) *n_shards = 1;
        free(start);
        return st;
    }
    if (ns > 99999) {
        free(start);
        return kv_err_set(err, KV_EINVAL, "%s: %d shards: more than the 5-digit names allow", dir,
                          ns);
    }
    kv_sbuf ix = {0};
    kv_sbuf_str(&ix, "{\n  \"metadata\": {\n    \"total_size\": ");
    kv_sbuf_printf(&ix, "%lld", (long long)kv_st_writer_data_bytes(w));
    kv_sbuf_str(&ix, "\n  },\n  \"weight_map\": {");
    for (int s = 0; s < ns && !st; s++) {
        char fname[64];
        snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, ns);
        st = kv_path_join(path, sizeof path, dir, fname, err);
        if (!st) st = write_range(w, path, start[s], start[s + 1], err);
        for (int i = start[s]; i < start[s + 1]; i++) {
            kv_sbuf_str(&ix, i ? ",\n    " : "\n    ");
            put_json(&ix, w->t[i].name);
            kv_sbuf_str(&ix, ": ");
            put_json(&ix, fname);
        }
    }
    kv_sbuf_str(&ix, "\n  }\n}\n");
    if (!st && ix.oom)
        st = kv_err_set(err, KV_ENOMEM, "st_writer: out of memory building the shard index");
    if (!st) st = kv_path_join(path, sizeof path, dir, "model.safetensors.index.json", err);
    if (!st) st = kv_write_file_atomic(path, ix.p, ix.n, err);
    if (!st && n_shards) *n_shards = ns;
    kv_sbuf_free(&ix);
    free(start);
    return st;
}
