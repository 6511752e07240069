/* train_data.c — training text to token shards (`kvant pretokenize`) and reading them.
 *
 * Pipeline stage: train (data). Texts are cleaned (kv_text_clean: byte-order marks,
 * CRLF, Project Gutenberg header and footer), tokenized with the model's tokenizer
 * (files in parallel, results joined in input order, so the shards do not depend on
 * the thread count) and written as shards (format in include/kvant/train.h) plus a
 * manifest.json describing every input. The last val_fraction of each input's tokens
 * goes to the validation shards, so both languages (or any inputs) are held out in
 * proportion. Every output goes through kv_atomic_*. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvant/fileio.h"
#include "kvant/progress.h"
#include "kvant/tokenizer.h"
#include "kvant/train.h"

/* ---- cleaning --------------------------------------------------------------------- */

/* Start of the line holding `needle` (at the line start, "***" then optional spaces),
 * or NULL. */
static char *find_marker(char *s, size_t len, const char *what) {
    size_t wl = strlen(what);
    for (size_t i = 0; i + 3 <= len; i++) {
        if ((i == 0 || s[i - 1] == '\n') && !memcmp(s + i, "***", 3)) {
            size_t j = i + 3;
            while (j < len && s[j] == ' ') j++;
            if (j + wl <= len && !strncmp(s + j, what, wl)) return s + i;
        }
    }
    return NULL;
}

size_t kv_text_clean(char *text, size_t len) {
    /* byte-order marks (anywhere: concatenated files keep theirs) and CR / CRLF */
    size_t w = 0;
    for (size_t r = 0; r < len; r++) {
        unsigned char c = (unsigned char)text[r];
        if (c == 0xEF && r + 2 < len && (unsigned char)text[r + 1] == 0xBB &&
            (unsigned char)text[r + 2] == 0xBF) {
            r += 2;
            continue;
        }
        if (c == '\r') {
            if (r + 1 < len && text[r + 1] == '\n') continue;
            c = '\n';
        }
        text[w++] = (char)c;
    }
    len = w;
    /* Project Gutenberg: keep what lies between the START line and the END line */
    char *st = find_marker(text, len, "START OF");
    if (st) {
        char *nl = memchr(st, '\n', len - (size_t)(st - text));
        size_t from = nl ? (size_t)(nl + 1 - text) : len;
        memmove(text, text + from, len - from);
        len -= from;
    }
    char *en = find_marker(text, len, "END OF");
    if (en) len = (size_t)(en - text);
    /* trim leading and trailing blank lines */
    size_t a = 0;
    while (a < len && (text[a] == '\n' || text[a] == ' ')) a++;
    while (len > a && (text[len - 1] == '\n' || text[len - 1] == ' ')) len--;
    memmove(text, text + a, len - a);
    return len - a;
}

/* ---- shards ----------------------------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

kv_status kv_shard_write(const char *path, const int32_t *ids, int64_t n, int64_t vocab_size,
                         int64_t sep_id, kv_err *err) {
    int ib = vocab_size <= 65536 ? 2 : 4;
    unsigned char hdr[KV_SHARD_HEADER] = {0};
    memcpy(hdr, KV_SHARD_MAGIC, 8);
    put_u32(hdr + 8, 1);
    put_u32(hdr + 12, (uint32_t)ib);
    put_u64(hdr + 16, (uint64_t)n);
    put_u64(hdr + 24, (uint64_t)vocab_size);
    put_u64(hdr + 32, (uint64_t)sep_id);
    kv_atomic_file af;
    kv_status st = kv_atomic_open(&af, path, err);
    if (st) return st;
    int ok = fwrite(hdr, 1, sizeof hdr, af.fp) == sizeof hdr;
    unsigned char buf[8192];
    for (int64_t i = 0; ok && i < n;) {
        size_t k = 0;
        for (; i < n && k + 4 <= sizeof buf; i++) {
            if (ids[i] < 0 || ids[i] >= vocab_size) {
                kv_atomic_abort(&af);
                return kv_err_set(err, KV_ERANGE, "%s: token id %d out of range [0, %lld)", path,
                                  (int)ids[i], (long long)vocab_size);
            }
            uint32_t v = (uint32_t)ids[i];
            for (int b = 0; b < ib; b++) buf[k++] = (unsigned char)(v >> (8 * b));
        }
        ok = fwrite(buf, 1, k, af.fp) == k;
    }
    if (!ok) {
        kv_atomic_abort(&af);
        return kv_err_set(err, KV_EIO, "%s: write failed: %s", path, strerror(errno));
    }
    return kv_atomic_commit(&af, err);
}

kv_status kv_shard_open(const char *path, kv_shard *s, kv_err *err) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return kv_err_set(err, errno == ENOENT ? KV_ENOTFOUND : KV_EIO, "%s: open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || sb.st_size < KV_SHARD_HEADER) {
        close(fd);
        return kv_err_set(err, KV_EFORMAT, "%s: not a token shard (shorter than its header)", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return kv_err_set(err, KV_EIO, "%s: mmap: %s", path, strerror(errno));
    s->map = p;
    s->map_len = (size_t)sb.st_size;
    const unsigned char *h = p;
    kv_status st = KV_OK;
    if (memcmp(h, KV_SHARD_MAGIC, 8) || get_u32(h + 8) != 1)
        st = kv_err_set(err, KV_EFORMAT, "%s: not a kvant token shard (bad magic or version)", path);
    s->id_bytes = (int)get_u32(h + 12);
    s->n_tokens = (int64_t)get_u64(h + 16);
    s->vocab_size = (int64_t)get_u64(h + 24);
    s->sep_id = (int64_t)get_u64(h + 32);
    if (!st && s->id_bytes != 2 && s->id_bytes != 4)
        st = kv_err_set(err, KV_EFORMAT, "%s: %d bytes per id (expected 2 or 4)", path, s->id_bytes);
    if (!st && (s->n_tokens < 0 || s->n_tokens > (int64_t)((s->map_len - KV_SHARD_HEADER) / (size_t)s->id_bytes) ||
                (size_t)s->n_tokens * (size_t)s->id_bytes + KV_SHARD_HEADER != s->map_len))
        st = kv_err_set(err, KV_EFORMAT, "%s: header says %lld tokens but the file has %zu bytes",
                        path, (long long)s->n_tokens, s->map_len);
    if (st) kv_shard_close(s);
    return st;
}

void kv_shard_close(kv_shard *s) {
    if (s && s->map) munmap((void *)s->map, s->map_len);
    if (s) s->map = NULL;
}

/* ---- pretokenize ------------------------------------------------------------------ */

/* s as a JSON string literal */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

typedef struct {
    char *path;
    size_t bytes_in, bytes_clean;
    int64_t words;
    int stripped; /* a Gutenberg header was found */
    kv_ids ids;
    kv_status st;
    kv_err err;
} pt_file;

static int add_path(char ***v, int *n, int *cap, const char *p) {
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        char **nv = realloc(*v, (size_t)nc * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        *cap = nc;
    }
    if (!((*v)[*n] = strdup(p))) return -1;
    (*n)++;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Files under dir ending in .txt, recursively, sorted by path. */
static kv_status list_dir(const char *dir, char ***v, int *n, int *cap, kv_err *err) {
    DIR *d = opendir(dir);
    if (!d) return kv_err_set(err, KV_EIO, "%s: opendir: %s", dir, strerror(errno));
    int first = *n;
    struct dirent *e;
    kv_status st = KV_OK;
    char path[4096];
    while (!st && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t l = strlen(e->d_name);
        if (kv_is_dir(path)) {
            st = list_dir(path, v, n, cap, err);
        } else if (l > 4 && !strcmp(e->d_name + l - 4, ".txt")) {
            if (add_path(v, n, cap, path)) st = kv_err_set(err, KV_ENOMEM, "pretokenize: out of memory");
        }
    }
    closedir(d);
    if (!st) qsort(*v + first, (size_t)(*n - first), sizeof **v, cmp_str);
    return st;
}

static int64_t count_words(const char *s, size_t n) {
    int64_t w = 0;
    int in = 0;
    for (size_t i = 0; i < n; i++) {
        int sp = s[i] == ' ' || s[i] == '\n' || s[i] == '\t';
        if (!sp && !in) w++;
        in = !sp;
    }
    return w;
}

/* Shards prefix_NNNN.bin of at most per tokens each; returns their count. */
static kv_status write_stream(const char *dir, const char *prefix, const int32_t *ids, int64_t n,
                              int64_t per, int64_t vocab, int64_t sep, int *n_shards, kv_err *err) {
    *n_shards = 0;
    char path[1024];
    for (int64_t a = 0; a < n; a += per) {
        int64_t k = n - a < per ? n - a : per;
        snprintf(path, sizeof path, "%s/%s_%04d.bin", dir, prefix, *n_shards);
        kv_status st = kv_shard_write(path, ids + a, k, vocab, sep, err);
        if (st) return st;
        (*n_shards)++;
    }
    return KV_OK;
}

kv_status kv_pretokenize(const kv_pretok_opts *o, const char *const *inputs, int n_in, kv_err *err) {
    if (!o || !o->tokenizer || !o->out_dir || n_in <= 0)
        return kv_err_set(err, KV_EINVAL, "pretokenize: need a tokenizer, an output directory and inputs");
    if (!(o->val_fraction >= 0 && o->val_fraction <= 0.5))
        return kv_err_set(err, KV_EINVAL, "pretokenize: --val-fraction %g outside [0, 0.5]", o->val_fraction);
    kv_tokenizer *tok = NULL;
    char **paths = NULL;
    int n = 0, cap = 0;
    pt_file *f = NULL;
    int32_t *tr = NULL, *va = NULL;
    char *tokjson = NULL, *man = NULL;
    size_t toklen = 0, manlen = 0;
    FILE *mf = NULL;
    kv_status st = kv_tok_load(o->tokenizer, &tok, err);
    if (st) goto done;
    const int32_t sep = kv_tok_piece_to_id(tok, "<|endoftext|>");
    if (sep < 0) {
        st = kv_err_set(err, KV_ENOTFOUND, "%s: the tokenizer has no <|endoftext|> token to separate "
                        "documents", o->tokenizer);
        goto done;
    }
    const int64_t vocab = kv_tok_vocab_size(tok);
    for (int i = 0; i < n_in && !st; i++) {
        if (kv_is_dir(inputs[i])) st = list_dir(inputs[i], &paths, &n, &cap, err);
        else if (kv_is_file(inputs[i])) {
            if (add_path(&paths, &n, &cap, inputs[i])) st = kv_err_set(err, KV_ENOMEM, "pretokenize: out of memory");
        } else st = kv_err_set(err, KV_ENOTFOUND, "%s: no such file or directory", inputs[i]);
    }
    if (st) goto done;
    if (!n) {
        st = kv_err_set(err, KV_ENOTFOUND, "pretokenize: no .txt files in the inputs");
        goto done;
    }
    f = kv_calloc((size_t)n, sizeof *f, err, "pretokenize: file table");
    if (!f) {
        st = KV_ENOMEM;
        goto done;
    }
    kv_progress pg;
    kv_progress_start(&pg, "pretokenize", "files", n, o->quiet);
    int done_files = 0;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        pt_file *p = &f[i];
        p->path = paths[i];
        char *buf = NULL;
        size_t len = 0;
        p->st = kv_read_file(p->path, &buf, &len, &p->err);
        if (!p->st) {
            p->bytes_in = len;
            p->stripped = find_marker(buf, len, "START OF") != NULL;
            len = kv_text_clean(buf, len);
            p->bytes_clean = len;
            p->words = count_words(buf, len);
            p->st = kv_tok_encode(tok, buf, len, 0, &p->ids, &p->err);
            if (p->st) kv_err_prefix(&p->err, "%s", p->path);
        }
        free(buf);
#pragma omp critical
        {
            done_files++;
            if (omp_get_thread_num() == 0) kv_progress_update(&pg, done_files);
        }
    }
    kv_progress_end(&pg, n);
    int64_t n_tr = 0, n_va = 0;
    for (int i = 0; i < n; i++) {
        if (f[i].st) {
            st = f[i].st;
            if (err) *err = f[i].err;
            goto done;
        }
        int64_t k = (int64_t)f[i].ids.n, kv = (int64_t)((double)k * o->val_fraction);
        n_tr += k - kv + 1;
        n_va += kv ? kv + 1 : 0;
    }
    tr = kv_malloc((size_t)(n_tr + 1) * sizeof(int32_t), err, "pretokenize: train ids");
    va = kv_malloc((size_t)(n_va + 1) * sizeof(int32_t), err, "pretokenize: val ids");
    if (!tr || !va) {
        st = KV_ENOMEM;
        goto done;
    }
    int64_t a = 0, b = 0;
    for (int i = 0; i < n; i++) {
        int64_t k = (int64_t)f[i].ids.n, kv = (int64_t)((double)k * o->val_fraction);
        memcpy(tr + a, f[i].ids.v, (size_t)(k - kv) * sizeof(int32_t));
        a += k - kv;
        tr[a++] = sep;
        if (kv) {
            memcpy(va + b, f[i].ids.v + (k - kv), (size_t)kv * sizeof(int32_t));
            b += kv;
            va[b++] = sep;
        }
    }
    if (mkdir(o->out_dir, 0777) && errno != EEXIST) {
        st = kv_err_set(err, KV_EIO, "%s: mkdir: %s", o->out_dir, strerror(errno));
        goto done;
    }
    int64_t per = o->shard_tokens > 0 ? o->shard_tokens : (int64_t)1 << 28;
    int ns_tr = 0, ns_va = 0;
    if ((st = write_stream(o->out_dir, "train", tr, n_tr, per, vocab, sep, &ns_tr, err)) ||
        (st = write_stream(o->out_dir, "val", va, n_va, per, vocab, sep, &ns_va, err)))
        goto done;
    /* the tokenizer travels with the data: `kvant train` copies it into the checkpoint */
    char path[1024];
    char tpath[1024];
    snprintf(tpath, sizeof tpath, "%s%s", o->tokenizer, kv_is_dir(o->tokenizer) ? "/tokenizer.json" : "");
    if ((st = kv_read_file(tpath, &tokjson, &toklen, err))) goto done;
    snprintf(path, sizeof path, "%s/tokenizer.json", o->out_dir);
    if ((st = kv_write_file_atomic(path, tokjson, toklen, err))) goto done;

    mf = open_memstream(&man, &manlen);
    if (!mf) {
        st = kv_err_set(err, KV_ENOMEM, "pretokenize: out of memory (manifest)");
        goto done;
    }
    fprintf(mf, "{\n  \"format\": \"kvant-token-shards-1\",\n  \"tokenizer\": ");
    json_str(mf, tpath);
    fprintf(mf, ",\n  \"vocab_size\": %lld,\n  \"sep_id\": %d,\n  \"id_bytes\": %d,\n"
            "  \"val_fraction\": %.17g,\n", (long long)vocab, (int)sep, vocab <= 65536 ? 2 : 4,
            o->val_fraction);
    fprintf(mf, "  \"train\": {\"tokens\": %lld, \"shards\": %d},\n", (long long)n_tr, ns_tr);
    fprintf(mf, "  \"val\": {\"tokens\": %lld, \"shards\": %d},\n", (long long)n_va, ns_va);
    fprintf(mf, "  \"files\": [\n");
    for (int i = 0; i < n; i++) {
        int64_t k = (int64_t)f[i].ids.n, kv = (int64_t)((double)k * o->val_fraction);
        fprintf(mf, "    {\"path\": ");
        json_str(mf, f[i].path);
        fprintf(mf, ", \"bytes\": %zu, \"bytes_clean\": %zu, \"gutenberg_stripped\": %s, "
                "\"words\": %lld, \"tokens\": %lld, \"val_tokens\": %lld, \"tokens_per_word\": %.4f}%s\n",
                f[i].bytes_in, f[i].bytes_clean, f[i].stripped ? "true" : "false",
                (long long)f[i].words, (long long)k, (long long)kv,
                f[i].words ? (double)k / (double)f[i].words : 0.0, i + 1 < n ? "," : "");
    }
    fprintf(mf, "  ]\n}\n");
    fclose(mf);
    mf = NULL;
    snprintf(path, sizeof path, "%s/manifest.json", o->out_dir);
    st = kv_write_file_atomic(path, man, manlen, err);
done:
    if (mf) fclose(mf);
    free(man);
    free(tokjson);
    free(tr);
    free(va);
    if (f)
        for (int i = 0; i < n; i++) kv_ids_free(&f[i].ids);
    free(f);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    kv_tok_free(tok);
    return st;
}
