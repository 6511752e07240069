/* test_st_writer.c — the safetensors writer (include/kvant/st_writer.h): files it
 * writes read back through kv_st_open / kv_weights_open with the same names, dtypes,
 * shapes and bytes; header alignment and padding; metadata; streamed tensors; shards
 * with an index; and every handled error, leaving no file behind. */
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "kvant/fileio.h"
#include "kvant/safetensors.h"
#include "kvant/st_writer.h"
#include "test.h"

static char tmpdir[256];

static int rm_cb(const char *p, const struct stat *sb, int fl, struct FTW *f) {
    (void)sb, (void)fl, (void)f;
    return remove(p);
}

/* Entries in dir (not . and ..). */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* A fresh empty subdirectory of tmpdir. */
static const char *subdir(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    mkdir(p, 0755);
    return p;
}

/* Streams bytes 0, 1, 2, ... (mod 251) in pieces of 7 bytes; ctx = total bytes. */
static kv_status stream_counting(void *ctx, int index, kv_st_sink *sink, kv_err *err) {
    (void)index;
    size_t total = *(size_t *)ctx;
    unsigned char piece[7];
    for (size_t i = 0; i < total; i += sizeof piece) {
        size_t n = total - i < sizeof piece ? total - i : sizeof piece;
        for (size_t k = 0; k < n; k++) piece[k] = (unsigned char)((i + k) % 251);
        kv_status st = kv_st_sink_write(sink, piece, n, err);
        if (st) return st;
    }
    return KV_OK;
}

/* Writes ctx bytes (a size_t) of 0x5A: used to write too few or too many. */
static kv_status stream_n(void *ctx, int index, kv_st_sink *sink, kv_err *err) {
    (void)index;
    size_t n = *(size_t *)ctx;
    unsigned char buf[64];
    memset(buf, 0x5A, sizeof buf);
    return kv_st_sink_write(sink, buf, n, err);
}

static kv_status stream_fail(void *ctx, int index, kv_st_sink *sink, kv_err *err) {
    (void)ctx, (void)index, (void)sink;
    return kv_err_set(err, KV_EINVAL, "producer: deliberate failure");
}

static void test_roundtrip(void) {
    kv_err err = {0};
    kv_st_writer *w = NULL;
    CHECK(kv_st_writer_new(&w, &err) == KV_OK);
    float a[6] = {1, -2, 3.5f, 0, 1e-30f, -7};
    uint16_t b[5] = {0x3f80, 0xbf80, 0x0000, 0x7f80, 0x1234};
    int32_t c[2 * 3 * 4];
    for (int i = 0; i < 24; i++) c[i] = i * 1000003 - 7;
    uint8_t sc = 42;
    size_t stream_bytes = 3 * 5 * 2;
    int64_t sa[2] = {2, 3}, sb[1] = {5}, scs[3] = {2, 3, 4}, sz[2] = {0, 4}, ss[2] = {3, 5};
    int idx = -1;
    CHECK(kv_st_writer_add(w, "z.first", KV_DTYPE_F32, 2, sa, a, &idx, &err) == KV_OK);
    CHECK_EQ_INT(idx, 0);
    CHECK(kv_st_writer_add(w, "b.bf16", KV_DTYPE_BF16, 1, sb, b, NULL, &err) == KV_OK);
    CHECK(kv_st_writer_add(w, "c.i32 \"quoted\" \\ ünï", KV_DTYPE_I32, 3, scs, c, NULL, &err) ==
          KV_OK);
    CHECK(kv_st_writer_add(w, "scalar", KV_DTYPE_U8, 0, NULL, &sc, NULL, &err) == KV_OK);
    CHECK(kv_st_writer_add(w, "empty", KV_DTYPE_F16, 2, sz, NULL, NULL, &err) == KV_OK);
    CHECK(kv_st_writer_add_stream(w, "streamed", KV_DTYPE_F16, 2, ss, stream_counting,
                                  &stream_bytes, &idx, &err) == KV_OK);
    CHECK_EQ_INT(idx, 5);
    CHECK(kv_st_writer_set_meta(w, "format", "np", &err) == KV_OK);
    CHECK(kv_st_writer_set_meta(w, "format", "pt", &err) == KV_OK); /* replaces */
    CHECK(kv_st_writer_set_meta(w, "note", "a \"b\"\n", &err) == KV_OK);
    CHECK_EQ_INT(kv_st_writer_count(w), 6);
    CHECK_EQ_INT(kv_st_writer_data_bytes(w), 24 + 10 + 96 + 1 + 0 + 30);
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
    kv_status st = kv_st_writer_write(w, path, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    kv_st_writer_free(w);

    /* header: u64 length, 8 + N a multiple of 8, padded with spaces */
    char *raw = NULL;
    size_t len = 0;
    CHECK(kv_read_file(path, &raw, &len, &err) == KV_OK);
    if (raw && len >= 8) {
        uint64_t hl = 0;
        for (int k = 0; k < 8; k++) hl |= (uint64_t)(unsigned char)raw[k] << (8 * k);
        CHECK((8 + hl) % 8 == 0);
        CHECK(8 + hl + 161 == len);
        CHECK(raw[8] == '{');
        size_t e = 8 + hl;
        while (e > 8 && raw[e - 1] == ' ') e--;
        CHECK(raw[e - 1] == '}');
        /* insertion order: z.first's entry precedes b.bf16's */
        char *hdr = strndup(raw + 8, hl);
        CHECK(hdr && strstr(hdr, "z.first") < strstr(hdr, "b.bf16"));
        free(hdr);
    }
    free(raw);

    kv_st_file *f = NULL;
    st = kv_st_open(path, &f, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    if (f) {
        CHECK_EQ_INT(kv_st_count(f), 6);
        CHECK(kv_st_meta(f, "format") && !strcmp(kv_st_meta(f, "format"), "pt"));
        CHECK(kv_st_meta(f, "note") && !strcmp(kv_st_meta(f, "note"), "a \"b\"\n"));
        const kv_tensor *t = kv_st_find(f, "z.first");
        CHECK(t && t->dtype == KV_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 2 &&
              t->shape[1] == 3 && t->nbytes == 24 && !memcmp(t->data, a, 24));
        CHECK(t && ((uintptr_t)t->data % 8) == 0); /* data section is 8-aligned */
        t = kv_st_find(f, "b.bf16");
        CHECK(t && t->dtype == KV_DTYPE_BF16 && t->nbytes == 10 && !memcmp(t->data, b, 10));
        t = kv_st_find(f, "c.i32 \"quoted\" \\ ünï");
        CHECK(t && t->dtype == KV_DTYPE_I32 && t->ndim == 3 && t->shape[2] == 4 &&
              !memcmp(t->data, c, sizeof c));
        t = kv_st_find(f, "scalar");
        CHECK(t && t->ndim == 0 && t->nbytes == 1 && *(const uint8_t *)t->data == 42);
        t = kv_st_find(f, "empty");
        CHECK(t && t->nbytes == 0 && t->shape[0] == 0 && t->shape[1] == 4);
        t = kv_st_find(f, "streamed");
        CHECK(t && t->nbytes == 30);
        for (size_t i = 0; t && i < 30; i++)
            CHECK(((const unsigned char *)t->data)[i] == (unsigned char)(i % 251));
    }
    kv_st_close(f);
}

static void test_shards(void) {
    kv_err err = {0};
    const char *dir = subdir("shards");
    kv_st_writer *w = NULL;
    CHECK(kv_st_writer_new(&w, &err) == KV_OK);
    static float data[5][100];
    int64_t shp[2] = {10, 10}, big[2] = {25, 10};
    for (int t = 0; t < 5; t++)
        for (int i = 0; i < 100; i++) data[t][i] = (float)(t * 1000 + i);
    char name[32];
    for (int t = 0; t < 4; t++) {
        snprintf(name, sizeof name, "t%d", t);
        CHECK(kv_st_writer_add(w, name, KV_DTYPE_F32, 2, shp, data[t], NULL, &err) == KV_OK);
    }
    /* 1000 bytes, above the 900-byte limit: a shard of its own */
    static float bigdata[250];
    CHECK(kv_st_writer_add(w, "huge", KV_DTYPE_F32, 2, big, bigdata, NULL, &err) == KV_OK);
    CHECK(kv_st_writer_add(w, "t4", KV_DTYPE_F32, 2, shp, data[4], NULL, &err) == KV_OK);
    int ns = 0;
    kv_status st = kv_st_writer_write_dir(w, dir, 900, &ns, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    /* 400 B per tensor: [t0 t1] [t2 t3] [huge] [t4] */
    CHECK_EQ_INT(ns, 4);
    CHECK_EQ_INT(count_entries(dir), 5);
    char p[600];
    snprintf(p, sizeof p, "%s/model-00003-of-00004.safetensors", dir);
    CHECK(kv_is_file(p));
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    char *ix = NULL;
    size_t il;
    CHECK(kv_read_file(p, &ix, &il, &err) == KV_OK);
    cJSON *root = ix ? cJSON_Parse(ix) : NULL;
    CHECK(root != NULL);
    cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "metadata"), "total_size");
    CHECK(cJSON_IsNumber(ts) && cJSON_GetNumberValue(ts) == 5 * 400 + 1000);
    cJSON *wm = cJSON_GetObjectItem(root, "weight_map");
    CHECK(cJSON_GetStringValue(cJSON_GetObjectItem(wm, "t3")) &&
          !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(wm, "t3")),
                  "model-00002-of-00004.safetensors"));
    cJSON_Delete(root);
    free(ix);
    kv_weights *ws = NULL;
    st = kv_weights_open(dir, &ws, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    CHECK_EQ_INT(kv_weights_count(ws), 6);
    for (int t = 0; t < 5; t++) {
        snprintf(name, sizeof name, "t%d", t);
        const kv_tensor *x = kv_weights_find(ws, name);
        CHECK(x && x->nbytes == 400 && !memcmp(x->data, data[t], 400));
    }
    kv_weights_close(ws);

    /* under the limit: one model.safetensors, no index */
    const char *one = subdir("single");
    CHECK(kv_st_writer_write_dir(w, one, 0, &ns, &err) == KV_OK);
    CHECK_EQ_INT(ns, 1);
    CHECK_EQ_INT(count_entries(one), 1);
    snprintf(p, sizeof p, "%s/model.safetensors", one);
    CHECK(kv_is_file(p));
    kv_st_writer_free(w);
}

static void test_errors(void) {
    kv_err err = {0};
    kv_st_writer *w = NULL;
    CHECK(kv_st_writer_new(&w, &err) == KV_OK);
    float x[4] = {0};
    int64_t s2[2] = {2, 2}, neg[1] = {-1}, s5[5] = {1, 1, 1, 1, 1}, huge[3] = {1LL << 40, 1LL << 40, 8};
    CHECK_ERR(kv_st_writer_add(w, "", KV_DTYPE_F32, 2, s2, x, NULL, &err), &err, KV_EINVAL,
              "invalid tensor name");
    CHECK_ERR(kv_st_writer_add(w, "__metadata__", KV_DTYPE_F32, 2, s2, x, NULL, &err), &err,
              KV_EINVAL, "invalid tensor name");
    CHECK_ERR(kv_st_writer_add(w, "n", KV_DTYPE_F32, 1, neg, x, NULL, &err), &err, KV_EINVAL,
              "negative dim");
    CHECK_ERR(kv_st_writer_add(w, "n", KV_DTYPE_F32, 5, s5, x, NULL, &err), &err, KV_EINVAL,
              "5 dims");
    CHECK_ERR(kv_st_writer_add(w, "n", KV_DTYPE_F32, 3, huge, x, NULL, &err), &err, KV_EINVAL,
              "overflows");
    CHECK_ERR(kv_st_writer_add(w, "n", KV_DTYPE_F32, 2, s2, NULL, NULL, &err), &err, KV_EINVAL,
              "NULL data");
    CHECK_ERR(kv_st_writer_add(w, "n", KV_DTYPE_COUNT, 2, s2, x, NULL, &err), &err, KV_EINVAL,
              "unknown dtype");
    CHECK_EQ_INT(kv_st_writer_count(w), 0);

    const char *dir = subdir("errors");
    char path[600];
    snprintf(path, sizeof path, "%s/dup.safetensors", dir);
    CHECK(kv_st_writer_add(w, "a", KV_DTYPE_F32, 2, s2, x, NULL, &err) == KV_OK);
    CHECK(kv_st_writer_add(w, "a", KV_DTYPE_F32, 2, s2, x, NULL, &err) == KV_OK);
    CHECK_ERR(kv_st_writer_write(w, path, &err), &err, KV_EINVAL, "duplicate tensor name a");
    kv_st_writer_free(w);

    /* producers that write too little, too much, or fail: an error, no file left */
    size_t few = 3, many = 20;
    kv_st_stream_fn fns[3] = {stream_n, stream_n, stream_fail};
    void *ctxs[3] = {&few, &many, NULL};
    const char *msgs[3] = {"producer wrote 3 of 16 bytes", "more than its 16 bytes",
                           "deliberate failure"};
    for (int k = 0; k < 3; k++) {
        CHECK(kv_st_writer_new(&w, &err) == KV_OK);
        CHECK(kv_st_writer_add(w, "ok", KV_DTYPE_F32, 2, s2, x, NULL, &err) == KV_OK);
        CHECK(kv_st_writer_add_stream(w, "s", KV_DTYPE_F32, 2, s2, fns[k], ctxs[k], NULL, &err) ==
              KV_OK);
        snprintf(path, sizeof path, "%s/bad%d.safetensors", dir, k);
        kv_status st = kv_st_writer_write(w, path, &err);
        CHECK_MSG(st != KV_OK && strstr(err.msg, msgs[k]), "case %d: %d %s", k, st, err.msg);
        kv_st_writer_free(w);
    }
    CHECK_EQ_INT(count_entries(dir), 0);

    /* a directory that does not exist */
    CHECK(kv_st_writer_new(&w, &err) == KV_OK);
    CHECK(kv_st_writer_add(w, "a", KV_DTYPE_F32, 2, s2, x, NULL, &err) == KV_OK);
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", tmpdir);
    CHECK_ERR(kv_st_writer_write(w, path, &err), &err, KV_EIO, "create temporary file");
    snprintf(path, sizeof path, "%s/no-such-dir", tmpdir);
    CHECK_ERR(kv_st_writer_write_dir(w, path, 0, NULL, &err), &err, KV_EIO, "no-such-dir");
    kv_st_writer_free(w);
    kv_st_writer_free(NULL);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_test_stw_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KV_RUN(test_roundtrip);
    KV_RUN(test_shards);
    KV_RUN(test_errors);
    nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return kv_test_summary();
}
