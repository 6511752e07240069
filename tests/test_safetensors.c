/* test_safetensors.c — the .safetensors reader, shard sets and kv_weights_get.
 *
 * Valid files are written here by a small writer (header JSON padded to 8 bytes, as
 * the reference writer does) and read back; each malformed-header case is a hand
 * written header. A mutation fuzz loop (fixed seed) corrupts a valid file thousands of
 * times: every open must return a status, never crash or read out of bounds (the
 * suite also runs this under ASan+UBSan). If tools/ has generated real transformers
 * checkpoints under tests/fixtures/models/, each is opened too. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvant/config.h"
#include "kvant/fileio.h"
#include "kvant/safetensors.h"
#include "test.h"

static char tmpdir[256];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static const char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        fprintf(stderr, "  cannot create %s: %s\n", path, strerror(errno));
        return;
    }
    if (n) fwrite(p, 1, n, fp);
    fclose(fp);
}

/* [u64 len][header][data] with the header given verbatim. */
static void write_raw(const char *path, const char *header, const void *data, size_t dlen) {
    size_t hl = strlen(header);
    unsigned char *buf = malloc(8 + hl + dlen + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (dlen) memcpy(buf + 8 + hl, data, dlen);
    write_bytes(path, buf, 8 + hl + dlen);
    free(buf);
}

typedef struct {
    const char *name, *dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
} tspec;

/* Valid file: tensors laid out back to back in order; header padded with spaces to a
 * multiple of 8. meta: "__metadata__" JSON object text or NULL. */
static void write_st(const char *path, const tspec *t, int n, const char *meta) {
    static char hdr[1 << 17]; /* 600 tensors of ~80 bytes fit */
    size_t pos = 0, off = 0, dlen = 0;
    pos += (size_t)snprintf(hdr + pos, sizeof hdr - pos, "{");
    if (meta) pos += (size_t)snprintf(hdr + pos, sizeof hdr - pos, "\"__metadata__\":%s", meta);
    for (int i = 0; i < n; i++) {
        pos += (size_t)snprintf(hdr + pos, sizeof hdr - pos, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                (i || meta) ? "," : "", t[i].name, t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++)
            pos += (size_t)snprintf(hdr + pos, sizeof hdr - pos, "%s%lld", d ? "," : "",
                                    (long long)t[i].shape[d]);
        pos += (size_t)snprintf(hdr + pos, sizeof hdr - pos, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + t[i].nbytes);
        off += t[i].nbytes;
    }
    pos += (size_t)snprintf(hdr + pos, sizeof hdr - pos, "}");
    while (pos % 8) hdr[pos++] = ' ';
    hdr[pos] = 0;
    dlen = off;
    unsigned char *data = malloc(dlen + 1);
    off = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].nbytes) memcpy(data + off, t[i].data, t[i].nbytes);
        off += t[i].nbytes;
    }
    write_raw(path, hdr, data, dlen);
    free(data);
}

/* ---- a standard small valid file ---- */
static float w_f32[6] = {1, 2, 3, 4, 5, 6};
static uint16_t w_bf16[8];
static int32_t w_i32[3] = {7, -8, 9};

static int std_specs(tspec *t) {
    for (int i = 0; i < 8; i++) w_bf16[i] = kv_f32_to_bf16(0.25f * (float)i);
    t[0] = (tspec){"a.weight", "F32", 2, {2, 3}, w_f32, sizeof w_f32};
    t[1] = (tspec){"b.bf16", "BF16", 3, {2, 2, 2}, w_bf16, sizeof w_bf16};
    t[2] = (tspec){"c.ids", "I32", 1, {3}, w_i32, sizeof w_i32};
    t[3] = (tspec){"d.empty", "F16", 2, {0, 5}, NULL, 0};
    t[4] = (tspec){"e.scalar", "F32", 0, {0}, w_f32 + 2, 4};
    return 5;
}

static void test_roundtrip(void) {
    tspec t[5];
    int n = std_specs(t);
    const char *p = tpath("ok.safetensors");
    write_st(p, t, n, "{\"format\":\"pt\",\"note\":\"hi\"}");
    kv_st_file *f = NULL;
    kv_err err;
    CHECK_EQ_INT(kv_st_open(p, &f, &err), KV_OK);
    if (!f) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK_EQ_INT(kv_st_count(f), n);
    CHECK(strcmp(kv_st_path(f), p) == 0);
    CHECK(kv_st_meta(f, "format") && strcmp(kv_st_meta(f, "format"), "pt") == 0);
    CHECK(kv_st_meta(f, "note") && strcmp(kv_st_meta(f, "note"), "hi") == 0);
    CHECK(kv_st_meta(f, "absent") == NULL);
    for (int i = 0; i < n; i++) {
        const kv_tensor *x = kv_st_find(f, t[i].name);
        CHECK(x != NULL);
        if (!x) continue;
        CHECK(x == kv_st_at(f, i)); /* header order kept */
        CHECK(strcmp(x->name, t[i].name) == 0);
        CHECK(strcmp(kv_dtype_name(x->dtype), t[i].dtype) == 0);
        CHECK_EQ_INT(x->ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) CHECK_EQ_INT(x->shape[d], t[i].shape[d]);
        CHECK_EQ_INT(x->nbytes, t[i].nbytes);
        CHECK(x->data != NULL);
        CHECK(x->nbytes == 0 || memcmp(x->data, t[i].data, x->nbytes) == 0);
        CHECK(x->file && strcmp(x->file, p) == 0);
    }
    const kv_tensor *b = kv_st_find(f, "b.bf16");
    float got[8], want[8];
    for (int i = 0; i < 8; i++) want[i] = 0.25f * (float)i;
    if (b) {
        kv_to_f32(b->dtype, b->data, got, 8);
        CHECK_CLOSE("bf16 data", got, want, 8, 0, 0); /* exact: representable values */
    }
    CHECK(kv_st_find(f, "nope") == NULL);
    CHECK(kv_st_find(f, "a.weigh") == NULL);
    CHECK(kv_st_at(f, -1) == NULL && kv_st_at(f, n) == NULL);
    kv_st_close(f);
    kv_st_close(NULL);
    CHECK(kv_st_find(NULL, "x") == NULL && kv_st_count(NULL) == 0);

    /* minimal files: empty header object, and no padding */
    write_raw(tpath("empty.safetensors"), "{}", NULL, 0);
    CHECK_EQ_INT(kv_st_open(tpath("empty.safetensors"), &f, &err), KV_OK);
    CHECK_EQ_INT(kv_st_count(f), 0);
    kv_st_close(f);
    /* many tensors: hash lookups all resolve */
    static tspec many[600];
    static char names[600][32];
    static float val[600];
    for (int i = 0; i < 600; i++) {
        snprintf(names[i], sizeof names[i], "model.layers.%d.w", i);
        val[i] = (float)i;
        many[i] = (tspec){names[i], "F32", 1, {1}, &val[i], 4};
    }
    write_st(tpath("many.safetensors"), many, 600, NULL);
    CHECK_EQ_INT(kv_st_open(tpath("many.safetensors"), &f, &err), KV_OK);
    int found = 0;
    for (int i = 0; i < 600; i++) {
        const kv_tensor *x = kv_st_find(f, names[i]);
        float v;
        if (x) memcpy(&v, x->data, 4);
        found += x && v == (float)i;
    }
    CHECK_EQ_INT(found, 600);
    kv_st_close(f);
}

/* Open a file expected to fail; f must come back NULL. */
#define EXPECT_OPEN_ERR(path, code, needle)                                                \
    do {                                                                                   \
        kv_st_file *f_ = (kv_st_file *)1;                                                  \
        kv_err e_;                                                                         \
        CHECK_ERR(kv_st_open((path), &f_, &e_), &e_, code, needle);                        \
        CHECK(f_ == NULL);                                                                 \
        if (f_ && f_ != (kv_st_file *)1) kv_st_close(f_);                                  \
    } while (0)

static void bad_header(const char *hdr, size_t dlen, kv_status code, const char *needle) {
    static unsigned char zeros[4096];
    const char *p = tpath("bad.safetensors");
    write_raw(p, hdr, zeros, dlen);
    kv_st_file *f = (kv_st_file *)1;
    kv_err err;
    kv_status st = kv_st_open(p, &f, &err);
    if (st != code || !strstr(err.msg, needle) || f != NULL) {
        fprintf(stderr, "  header %s\n  expected %d \"%s\", got %d \"%s\"\n", hdr, code, needle,
                st, st ? err.msg : "");
        kv_t_failed_checks++;
    }
    if (st == KV_OK) kv_st_close(f);
}

static void test_bad_files(void) {
    kv_err err;
    kv_st_file *f;
    /* missing file, directory */
    EXPECT_OPEN_ERR(tpath("missing.safetensors"), KV_ENOTFOUND, "missing.safetensors: open");
    EXPECT_OPEN_ERR(tmpdir, KV_EIO, "not a regular file");
    /* shorter than 8 bytes */
    write_bytes(tpath("short.safetensors"), "\x02\0\0", 3);
    EXPECT_OPEN_ERR(tpath("short.safetensors"), KV_EFORMAT, "short.safetensors: file is 3 bytes");
    write_bytes(tpath("zero.safetensors"), "", 0);
    EXPECT_OPEN_ERR(tpath("zero.safetensors"), KV_EFORMAT, "too short");
    /* header length beyond the file */
    unsigned char hb[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(tpath("hlen.safetensors"), hb, 10);
    EXPECT_OPEN_ERR(tpath("hlen.safetensors"), KV_EFORMAT, "header length 200 beyond the end");
    unsigned char huge[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    write_bytes(tpath("huge.safetensors"), huge, 8);
    EXPECT_OPEN_ERR(tpath("huge.safetensors"), KV_EFORMAT, "beyond the end of the file");
    /* absurd header length inside a (sparse) file larger than the limit */
    {
        const char *p = tpath("sparse.safetensors");
        int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        uint64_t hl = 100000001;
        unsigned char lb[8];
        for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(hl >> (8 * i));
        CHECK(fd >= 0 && write(fd, lb, 8) == 8 && ftruncate(fd, 100000016) == 0);
        close(fd);
        EXPECT_OPEN_ERR(p, KV_EFORMAT, "exceeds the 100000000-byte limit");
        remove(p);
    }
    /* truncated: a valid file cut inside the data section, and inside the header */
    tspec t[5];
    int n = std_specs(t);
    write_st(tpath("full.safetensors"), t, n, NULL);
    char *buf;
    size_t len;
    CHECK_EQ_INT(kv_read_file(tpath("full.safetensors"), &buf, &len, &err), KV_OK);
    write_bytes(tpath("trunc.safetensors"), buf, len - 5);
    EXPECT_OPEN_ERR(tpath("trunc.safetensors"), KV_ERANGE, "beyond the data section");
    write_bytes(tpath("trunc2.safetensors"), buf, 40);
    EXPECT_OPEN_ERR(tpath("trunc2.safetensors"), KV_EFORMAT, "beyond the end of the file");
    free(buf);

    /* header contents */
    bad_header("{\"a\":", 0, KV_EFORMAT, "header is not valid JSON (error at byte");
    bad_header("hello", 0, KV_EFORMAT, "not valid JSON");
    bad_header("[1,2]   ", 0, KV_EFORMAT, "header is not a JSON object");
    bad_header("{} x", 0, KV_EFORMAT, "unexpected data after the JSON object at byte 3");
    bad_header("{\"t\":[]}", 0, KV_EFORMAT, "tensor t: entry is not a JSON object");
    bad_header("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, KV_EFORMAT,
               "tensor t: missing or non-string \"dtype\"");
    bad_header("{\"t\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
               KV_EUNSUPPORTED, "tensor t: unknown dtype \"F8_E4M3\"");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, KV_EFORMAT,
               "tensor t: missing or non-list \"shape\"");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, KV_EFORMAT,
               "shape[0] is not a non-negative integer");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1.5],\"data_offsets\":[0,4]}}", 4,
               KV_EFORMAT, "shape[1] is not a non-negative integer");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,4]}}", 4,
               KV_EFORMAT, "shape[1] is not a non-negative integer");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
               KV_EUNSUPPORTED, "tensor t: 5 dims, at most 4");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
               "\"data_offsets\":[0,4]}}",
               4, KV_EFORMAT, "shape overflows");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4,
               KV_EFORMAT, "shape[0] is not a non-negative integer");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, KV_EFORMAT,
               "tensor t: \"data_offsets\" is not a list [begin, end]");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, KV_EFORMAT,
               "\"data_offsets\" is not a list");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, KV_EFORMAT,
               "data_offsets are not non-negative integers");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, KV_EFORMAT,
               "tensor t: data_offsets [8, 4]: begin > end");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 6, KV_ERANGE,
               "tensor t: data_offsets [4, 8] beyond the data section (6 bytes)");
    bad_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}",
               6, KV_EFORMAT, "data_offsets are not non-negative integers");
    bad_header("{\"t\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,8]}}", 8, KV_EFORMAT,
               "tensor t: data_offsets [0, 8] hold 8 bytes, but BF16 [2, 3] needs 12");
    bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, KV_EFORMAT, "tensor b: data_offsets [4, 12] overlap tensor a [0, 8]");
    bad_header("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
               12, KV_EFORMAT, "overlap tensor");
    bad_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, KV_EFORMAT, "duplicate tensor name a");
    bad_header("{\"__metadata__\":[1]}", 0, KV_EFORMAT, "__metadata__ is not a JSON object");
    bad_header("{\"__metadata__\":{\"k\":1}}", 0, KV_EFORMAT,
               "__metadata__ value for \"k\" is not a string");
    bad_header("{\"__metadata__\":{},\"__metadata__\":{}}", 0, KV_EFORMAT,
               "duplicate __metadata__");
    /* allowed: zero-size tensors share offsets with anything; adjacent spans touch */
    write_raw(tpath("zs.safetensors"),
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
              w_f32, 12);
    CHECK_EQ_INT(kv_st_open(tpath("zs.safetensors"), &f, &err), KV_OK);
    CHECK_EQ_INT(kv_st_count(f), 3);
    kv_st_close(f);
    /* NULL arguments */
    CHECK_ERR(kv_st_open(NULL, &f, &err), &err, KV_EINVAL, "NULL");
}

/* ---- fuzz ---- */

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rng(void) { /* xorshift64*, fixed seed: failures reproduce */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void test_fuzz_header(void) {
    tspec t[5];
    int n = std_specs(t);
    const char *src = tpath("fuzz_src.safetensors"), *p = tpath("fuzz.safetensors");
    write_st(src, t, n, "{\"format\":\"pt\"}");
    char *orig;
    size_t len;
    kv_err err;
    if (kv_read_file(src, &orig, &len, &err) != KV_OK) {
        CHECK(0);
        return;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (unsigned char)orig[i];
    static const char interesting[] = "{}[]\",:0123456789-.eE \\u\x01\xff";
    unsigned char *buf = malloc(len);
    int n_ok = 0, n_err = 0, iters = 4000;
    for (int it = 0; it < iters; it++) {
        memcpy(buf, orig, len);
        size_t flen = len;
        int muts = 1 + (int)(rng() % 4);
        for (int m = 0; m < muts; m++) {
            uint64_t r = rng();
            size_t pos;
            if (r % 16 == 0) pos = (size_t)(r >> 8) % 8; /* sometimes the length prefix */
            else pos = 8 + (size_t)((r >> 8) % hlen);
            switch ((r >> 4) % 3) {
            case 0: buf[pos] ^= (unsigned char)(1u << ((r >> 40) % 8)); break;
            case 1: buf[pos] = (unsigned char)(r >> 32); break;
            default: buf[pos] = (unsigned char)interesting[(r >> 32) % (sizeof interesting - 1)];
            }
        }
        if (rng() % 10 == 0) flen = (size_t)(rng() % (len + 1)); /* truncation */
        write_bytes(p, buf, flen);
        kv_st_file *f = NULL;
        kv_status st = kv_st_open(p, &f, &err);
        if (st == KV_OK) {
            n_ok++;
            /* every view must be readable and consistent */
            volatile unsigned sum = 0;
            for (int i = 0; i < kv_st_count(f); i++) {
                const kv_tensor *x = kv_st_at(f, i);
                CHECK(x && x->data && x->name);
                CHECK((size_t)kv_tensor_numel(x) * kv_dtype_size(x->dtype) == x->nbytes);
                CHECK(kv_st_find(f, x->name) == x);
                for (size_t b = 0; b < x->nbytes; b++) sum += ((const unsigned char *)x->data)[b];
            }
            (void)sum;
            kv_st_close(f);
        } else {
            n_err++;
            CHECK(f == NULL);
            CHECK(err.msg[0] != '\0' && strstr(err.msg, "fuzz.safetensors"));
        }
    }
    fprintf(stderr, "  fuzz: %d mutations, %d opened, %d rejected\n", iters, n_ok, n_err);
    CHECK(n_err > iters / 2); /* the loop actually exercised error paths */
    free(buf);
    free(orig);
}

/* ---- checkpoint directories ---- */

static const char *mkdir_in(const char *name) {
    const char *d = tpath(name);
    mkdir(d, 0755);
    return d;
}

static void path2(char *buf, size_t cap, const char *dir, const char *name) {
    snprintf(buf, cap, "%s/%s", dir, name);
}

static float q_data[64 * 64], k_data[64 * 32];

static void make_sharded(const char *dir, const char *index_json) {
    char p[600];
    tspec s1[2] = {{"model.layers.0.self_attn.q_proj.weight", "F32", 2, {64, 64}, q_data,
                    sizeof q_data},
                   {"model.embed_tokens.weight", "F32", 2, {64, 32}, k_data, sizeof k_data}};
    tspec s2[1] = {{"model.layers.0.self_attn.k_proj.weight", "F32", 2, {64, 32}, k_data,
                    sizeof k_data}};
    path2(p, sizeof p, dir, "model-00001-of-00002.safetensors");
    write_st(p, s1, 2, "{\"format\":\"pt\"}");
    path2(p, sizeof p, dir, "model-00002-of-00002.safetensors");
    write_st(p, s2, 1, NULL);
    path2(p, sizeof p, dir, "model.safetensors.index.json");
    write_bytes(p, index_json, strlen(index_json));
}

static const char *good_index =
    "{\"metadata\":{\"total_size\":24576},\"weight_map\":{"
    "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
    "\"model.layers.0.self_attn.k_proj.weight\":\"model-00002-of-00002.safetensors\","
    "\"model.layers.0.self_attn.q_proj.weight\":\"model-00001-of-00002.safetensors\"}}";

static void test_weights_sharded(void) {
    for (int i = 0; i < 64 * 64; i++) q_data[i] = (float)i;
    for (int i = 0; i < 64 * 32; i++) k_data[i] = -(float)i;
    const char *dir = mkdir_in("sharded");
    make_sharded(dir, good_index);
    kv_weights *w = NULL;
    kv_err err;
    CHECK_EQ_INT(kv_weights_open(dir, &w, &err), KV_OK);
    if (!w) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK_EQ_INT(kv_weights_count(w), 3);
    const kv_tensor *q = kv_weights_find(w, "model.layers.0.self_attn.q_proj.weight");
    const kv_tensor *k = kv_weights_find(w, "model.layers.0.self_attn.k_proj.weight");
    CHECK(q && strstr(q->file, "model-00001-of-00002.safetensors"));
    CHECK(k && strstr(k->file, "model-00002-of-00002.safetensors"));
    CHECK(q && memcmp(q->data, q_data, sizeof q_data) == 0);
    CHECK(kv_weights_at(w, 0) && strcmp(kv_weights_at(w, 0)->name, "model.embed_tokens.weight") == 0);
    CHECK(kv_weights_at(w, 3) == NULL);
    CHECK(kv_weights_find(w, "lm_head.weight") == NULL);

    /* kv_weights_get: success, shape, dtype, missing */
    const kv_tensor *out = NULL;
    int64_t sq[2] = {64, 64}, bad[2] = {64, 64}, s3[3] = {64, 32, 1};
    CHECK_EQ_INT(kv_weights_get(w, "model.layers.0.self_attn.q_proj.weight", KV_DMASK_FLOAT, 2, sq,
                                &out, &err),
                 KV_OK);
    CHECK(out == q);
    kv_status st = kv_weights_get(w, "model.layers.0.self_attn.k_proj.weight", KV_DMASK_FLOAT, 2,
                                  bad, &out, &err);
    CHECK_ERR(st, &err, KV_EFORMAT,
              "/sharded/model-00002-of-00002.safetensors: tensor "
              "model.layers.0.self_attn.k_proj.weight: shape [64, 32], expected [64, 64]");
    CHECK(out == NULL);
    CHECK_ERR(kv_weights_get(w, "model.embed_tokens.weight", KV_DMASK_FLOAT, 3, s3, &out, &err),
              &err, KV_EFORMAT, "shape [64, 32], expected [64, 32, 1]");
    CHECK_ERR(kv_weights_get(w, "model.embed_tokens.weight", KV_DMASK(KV_DTYPE_BF16), 2,
                             (int64_t[]){64, 32}, &out, &err),
              &err, KV_EUNSUPPORTED,
              "model-00001-of-00002.safetensors: tensor model.embed_tokens.weight: dtype F32, "
              "expected BF16");
    CHECK_ERR(kv_weights_get(w, "model.embed_tokens.weight",
                             KV_DMASK(KV_DTYPE_BF16) | KV_DMASK(KV_DTYPE_F16), 2,
                             (int64_t[]){64, 32}, &out, &err),
              &err, KV_EUNSUPPORTED, "expected F16 or BF16");
    CHECK_ERR(kv_weights_get(w, "lm_head.weight", KV_DMASK_FLOAT, 2, sq, &out, &err), &err,
              KV_ENOTFOUND, "model.safetensors.index.json: tensor lm_head.weight not found");
    CHECK_ERR(kv_weights_get(w, "x", KV_DMASK_FLOAT, 5, sq, &out, &err), &err, KV_EINVAL,
              "bad argument");
    kv_weights_close(w);
    kv_weights_close(NULL);
}

static void test_weights_errors(void) {
    kv_weights *w = (kv_weights *)1;
    kv_err err;
    char p[600];
    /* no weights at all */
    const char *d0 = mkdir_in("noweights");
    CHECK_ERR(kv_weights_open(d0, &w, &err), &err, KV_ENOTFOUND,
              "noweights: no weights: expected model.safetensors or "
              "model.safetensors.index.json");
    CHECK(w == NULL);
    CHECK_ERR(kv_weights_open(tpath("does-not-exist"), &w, &err), &err, KV_ENOTFOUND,
              "does-not-exist: no such checkpoint directory");
    /* index names a shard that is not there */
    const char *d1 = mkdir_in("missing_shard");
    make_sharded(d1, good_index);
    path2(p, sizeof p, d1, "model-00002-of-00002.safetensors");
    remove(p);
    CHECK_ERR(kv_weights_open(d1, &w, &err), &err, KV_ENOTFOUND,
              "shard model-00002-of-00002.safetensors (holding tensor "
              "model.layers.0.self_attn.k_proj.weight) not found");
    CHECK(strstr(err.msg, "missing_shard/model.safetensors.index.json"));
    /* index maps a tensor to a shard that does not hold it */
    const char *d2 = mkdir_in("absent_tensor");
    make_sharded(d2, "{\"weight_map\":{"
                     "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
                     "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}");
    CHECK_ERR(kv_weights_open(d2, &w, &err), &err, KV_ENOTFOUND,
              "absent_tensor/model-00002-of-00002.safetensors: tensor model.norm.weight not "
              "found");
    /* malformed indexes */
    const char *d3 = mkdir_in("bad_index");
    make_sharded(d3, "{\"weight_map\": [1, 2]}");
    CHECK_ERR(kv_weights_open(d3, &w, &err), &err, KV_EFORMAT, "missing \"weight_map\" object");
    make_sharded(d3, "{\"weight_map\": {\"a\": ");
    CHECK_ERR(kv_weights_open(d3, &w, &err), &err, KV_EFORMAT,
              "model.safetensors.index.json: not valid JSON (error at byte");
    make_sharded(d3, "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
    CHECK_ERR(kv_weights_open(d3, &w, &err), &err, KV_EFORMAT,
              "shard \"../x.safetensors\" is not a file name");
    make_sharded(d3, "{\"weight_map\": {\"a\": 3}}");
    CHECK_ERR(kv_weights_open(d3, &w, &err), &err, KV_EFORMAT, "weight_map[\"a\"] is not a string");
    make_sharded(d3, "{\"weight_map\": {"
                     "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
                     "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\"}}");
    CHECK_ERR(kv_weights_open(d3, &w, &err), &err, KV_EFORMAT,
              "duplicate tensor name model.embed_tokens.weight");
    make_sharded(d3, "{\"weight_map\": {}} trailing");
    CHECK_ERR(kv_weights_open(d3, &w, &err), &err, KV_EFORMAT, "not valid JSON");
    /* a broken shard: the shard's own error comes through */
    const char *d4 = mkdir_in("broken_shard");
    make_sharded(d4, good_index);
    path2(p, sizeof p, d4, "model-00002-of-00002.safetensors");
    write_bytes(p, "junk", 4);
    CHECK_ERR(kv_weights_open(d4, &w, &err), &err, KV_EFORMAT,
              "broken_shard/model-00002-of-00002.safetensors: file is 4 bytes");
    CHECK(w == NULL);
}

static void test_weights_single(void) {
    tspec t[5];
    int n = std_specs(t);
    const char *d = mkdir_in("single");
    char p[600];
    path2(p, sizeof p, d, "model.safetensors");
    write_st(p, t, n, NULL);
    kv_weights *w = NULL;
    kv_err err;
    CHECK_EQ_INT(kv_weights_open(d, &w, &err), KV_OK);
    CHECK_EQ_INT(kv_weights_count(w), n);
    CHECK(kv_weights_find(w, "c.ids") && kv_weights_find(w, "c.ids")->dtype == KV_DTYPE_I32);
    CHECK_ERR(kv_weights_get(w, "q", KV_DMASK_FLOAT, 0, NULL, NULL, &err), &err, KV_ENOTFOUND,
              "single/model.safetensors: tensor q not found");
    const kv_tensor *o;
    CHECK_EQ_INT(kv_weights_get(w, "e.scalar", KV_DMASK_FLOAT, 0, NULL, &o, &err), KV_OK);
    kv_weights_close(w);
    /* a file path works too */
    CHECK_EQ_INT(kv_weights_open(p, &w, &err), KV_OK);
    CHECK_EQ_INT(kv_weights_count(w), n);
    kv_weights_close(w);
    /* model.safetensors wins over an index (as in transformers) */
    char ip[600];
    path2(ip, sizeof ip, d, "model.safetensors.index.json");
    write_bytes(ip, "not json", 8);
    CHECK_EQ_INT(kv_weights_open(d, &w, &err), KV_OK);
    kv_weights_close(w);
    /* a broken single file reports that file */
    write_bytes(p, "\x01\0\0\0\0\0\0\0{", 9);
    CHECK_ERR(kv_weights_open(d, &w, &err), &err, KV_EFORMAT,
              "single/model.safetensors: header is not valid JSON");
}

/* Every tensor a layer must have, with its shape, as the config describes it; the
 * checkpoint must hold exactly these (nothing missing, nothing unexplained). This
 * checks the config rules (biases, q/k norm, tying, head_dim) against real files. */
static int check_layout(const kv_weights *w, const kv_config *c) {
    int64_t H = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    int64_t Q = c->n_heads * D, KV = c->n_kv_heads * D;
    int expected = 0, bad = 0;
    char name[160];
    kv_err err;
#define WANT(cond, shp, ...)                                                               \
    do {                                                                                   \
        if (cond) {                                                                        \
            int64_t s_[] = shp;                                                            \
            snprintf(name, sizeof name, __VA_ARGS__);                                      \
            expected++;                                                                    \
            if (kv_weights_get(w, name, KV_DMASK_FLOAT, (int)(sizeof s_ / sizeof s_[0]),   \
                               s_, NULL, &err) != KV_OK) {                                 \
                fprintf(stderr, "  %s\n", err.msg);                                        \
                bad++;                                                                     \
            }                                                                              \
        }                                                                                  \
    } while (0)
#define S1(a) {a}
#define S2(a, b) {a, b}
    WANT(1, S2(c->vocab_size, H), "model.embed_tokens.weight");
    WANT(1, S1(H), "model.norm.weight");
    WANT(!c->tie_word_embeddings, S2(c->vocab_size, H), "lm_head.weight");
    for (int64_t l = 0; l < c->n_layers; l++) {
        long long L = (long long)l;
        WANT(1, S1(H), "model.layers.%lld.input_layernorm.weight", L);
        WANT(1, S1(H), "model.layers.%lld.post_attention_layernorm.weight", L);
        WANT(1, S2(Q, H), "model.layers.%lld.self_attn.q_proj.weight", L);
        WANT(1, S2(KV, H), "model.layers.%lld.self_attn.k_proj.weight", L);
        WANT(1, S2(KV, H), "model.layers.%lld.self_attn.v_proj.weight", L);
        WANT(1, S2(H, Q), "model.layers.%lld.self_attn.o_proj.weight", L);
        WANT(c->attention_bias, S1(Q), "model.layers.%lld.self_attn.q_proj.bias", L);
        WANT(c->attention_bias, S1(KV), "model.layers.%lld.self_attn.k_proj.bias", L);
        WANT(c->attention_bias, S1(KV), "model.layers.%lld.self_attn.v_proj.bias", L);
        WANT(c->o_bias, S1(H), "model.layers.%lld.self_attn.o_proj.bias", L);
        WANT(c->qk_norm, S1(D), "model.layers.%lld.self_attn.q_norm.weight", L);
        WANT(c->qk_norm, S1(D), "model.layers.%lld.self_attn.k_norm.weight", L);
        WANT(1, S2(I, H), "model.layers.%lld.mlp.gate_proj.weight", L);
        WANT(1, S2(I, H), "model.layers.%lld.mlp.up_proj.weight", L);
        WANT(1, S2(H, I), "model.layers.%lld.mlp.down_proj.weight", L);
        WANT(c->mlp_bias, S1(I), "model.layers.%lld.mlp.gate_proj.bias", L);
        WANT(c->mlp_bias, S1(I), "model.layers.%lld.mlp.up_proj.bias", L);
        WANT(c->mlp_bias, S1(H), "model.layers.%lld.mlp.down_proj.bias", L);
    }
#undef WANT
#undef S1
#undef S2
    if (kv_weights_count(w) != expected) {
        fprintf(stderr, "  %d tensors in the checkpoint, the config explains %d\n",
                kv_weights_count(w), expected);
        bad++;
    }
    return bad;
}

/* Real checkpoints written by transformers' save_pretrained (tools/), if present. */
static void test_fixture_models(void) {
    const char *root = "tests/fixtures/models";
    DIR *dd = opendir(root);
    if (!dd) {
        fprintf(stderr, "  skipped: %s not present (generate with tools/)\n", root);
        return;
    }
    int n = 0;
    for (struct dirent *e; (e = readdir(dd));) {
        if (e->d_name[0] == '.') continue;
        char dir[1024], cfgp[1100];
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
        if (!kv_is_dir(dir) || !kv_is_file(cfgp)) continue;
        kv_err err;
        kv_config cfg;
        kv_weights *w = NULL;
        kv_status sc = kv_config_load(dir, &cfg, &err);
        CHECK_MSG(sc == KV_OK, "%s", err.msg);
        kv_status sw = kv_weights_open(dir, &w, &err);
        CHECK_MSG(sw == KV_OK, "%s", err.msg);
        if (sc == KV_OK && sw == KV_OK) {
            CHECK_MSG(check_layout(w, &cfg) == 0, "%s: layout differs from config", dir);
            fprintf(stderr, "  %s: %s, %d tensors, %lld layers\n", e->d_name, cfg.arch_name,
                    kv_weights_count(w), (long long)cfg.n_layers);
            n++;
        }
        kv_weights_close(w);
    }
    closedir(dd);
    if (!n) fprintf(stderr, "  skipped: no model fixtures under %s yet\n", root);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KV_RUN(test_roundtrip);
    KV_RUN(test_bad_files);
    KV_RUN(test_fuzz_header);
    KV_RUN(test_weights_sharded);
    KV_RUN(test_weights_errors);
    KV_RUN(test_weights_single);
    KV_RUN(test_fixture_models);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return kv_test_summary();
}
