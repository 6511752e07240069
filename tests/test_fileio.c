/* test_fileio.c — whole-file reads, path joining and atomic writes.
 *
 * The atomic-write contract: commit replaces the target; abort (or a failed commit)
 * leaves the old target byte-for-byte and no temporary file behind. All files live
 * in a mkdtemp directory removed at the end. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvant/fileio.h"
#include "test.h"

static char tmpdir[256];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void path_in(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void put(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        fprintf(stderr, "  cannot create %s: %s\n", path, strerror(errno));
        return;
    }
    fputs(text, fp);
    fclose(fp);
}

/* Number of entries in dir whose name contains ".tmp." (leftover temp files). */
static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static int file_is(const char *path, const char *want) {
    char *buf = NULL;
    size_t len = 0;
    kv_err err;
    if (kv_read_file(path, &buf, &len, &err) != KV_OK) return 0;
    int ok = len == strlen(want) && memcmp(buf, want, len) == 0;
    free(buf);
    return ok;
}

static void test_read_file(void) {
    char p[512];
    path_in(p, sizeof p, "r.txt");
    put(p, "hello\nworld");
    char *buf = NULL;
    size_t len = 0;
    kv_err err;
    CHECK_EQ_INT(kv_read_file(p, &buf, &len, &err), KV_OK);
    CHECK_EQ_INT(len, 11);
    CHECK(buf && buf[len] == '\0' && strcmp(buf, "hello\nworld") == 0);
    free(buf);
    /* empty file: a valid empty NUL-terminated buffer */
    path_in(p, sizeof p, "empty.txt");
    put(p, "");
    CHECK_EQ_INT(kv_read_file(p, &buf, &len, &err), KV_OK);
    CHECK(buf && len == 0 && buf[0] == '\0');
    free(buf);
    /* missing file: not found, message names the path */
    path_in(p, sizeof p, "missing.txt");
    CHECK_ERR(kv_read_file(p, &buf, &len, &err), &err, KV_ENOTFOUND, "missing.txt: open");
    CHECK(buf == NULL);
    /* a directory is not a file */
    CHECK_ERR(kv_read_file(tmpdir, &buf, &len, &err), &err, KV_EIO, "is a directory");
    /* bigger than the fstat-free growth path */
    path_in(p, sizeof p, "big.bin");
    FILE *fp = fopen(p, "wb");
    for (int i = 0; i < 100000; i++) fputc('a' + i % 26, fp);
    fclose(fp);
    CHECK_EQ_INT(kv_read_file(p, &buf, &len, &err), KV_OK);
    CHECK_EQ_INT(len, 100000);
    CHECK(buf && buf[99999] == 'a' + 99999 % 26 && buf[100000] == 0);
    free(buf);
    /* /proc files report size 0 but have content: read to EOF */
    CHECK_EQ_INT(kv_read_file("/proc/self/status", &buf, &len, &err), KV_OK);
    CHECK(len > 0 && strstr(buf, "Name:"));
    free(buf);
}

static void test_is_file_dir(void) {
    char p[512];
    path_in(p, sizeof p, "f.txt");
    put(p, "x");
    CHECK(kv_is_file(p) && !kv_is_dir(p));
    CHECK(kv_is_dir(tmpdir) && !kv_is_file(tmpdir));
    path_in(p, sizeof p, "nope");
    CHECK(!kv_is_file(p) && !kv_is_dir(p));
    CHECK(!kv_is_file(NULL) && !kv_is_dir(NULL));
}

static void test_path_join(void) {
    char buf[32];
    kv_err err;
    CHECK_EQ_INT(kv_path_join(buf, sizeof buf, "a/b", "c.json", &err), KV_OK);
    CHECK(strcmp(buf, "a/b/c.json") == 0);
    CHECK_EQ_INT(kv_path_join(buf, sizeof buf, "a/b/", "c.json", &err), KV_OK);
    CHECK(strcmp(buf, "a/b/c.json") == 0);
    CHECK_EQ_INT(kv_path_join(buf, sizeof buf, "", "c.json", &err), KV_OK);
    CHECK(strcmp(buf, "c.json") == 0);
    /* exactly fits: 9 + 1 + 21 + NUL = 32 */
    CHECK_EQ_INT(kv_path_join(buf, sizeof buf, "directory", "012345678901234567890", &err),
                 KV_OK);
    CHECK_ERR(kv_path_join(buf, sizeof buf, "directory", "0123456789012345678901", &err), &err,
              KV_EINVAL, "directory: path too long");
    CHECK_ERR(kv_path_join(buf, sizeof buf, NULL, "x", &err), &err, KV_EINVAL, "NULL");
}

static void test_path_base(void) {
    char b[8];
    CHECK(strcmp(kv_path_base("models/qwen3-8b", b, sizeof b), "qwen3-8") == 0); /* cut */
    CHECK(strcmp(kv_path_base("a/bc/", b, sizeof b), "bc") == 0);
    CHECK(strcmp(kv_path_base("a//", b, sizeof b), "a") == 0);
    CHECK(strcmp(kv_path_base("plain", b, sizeof b), "plain") == 0);
    CHECK(strcmp(kv_path_base("/", b, sizeof b), "") == 0);
    CHECK(strcmp(kv_path_base("", b, sizeof b), "") == 0);
    CHECK(strcmp(kv_path_base("x", b, 1), "") == 0);
}

static void test_atomic_replace(void) {
    char p[512];
    kv_err err;
    path_in(p, sizeof p, "out.json");
    put(p, "old contents");
    CHECK_EQ_INT(kv_write_file_atomic(p, "new", 3, &err), KV_OK);
    CHECK(file_is(p, "new"));
    CHECK_EQ_INT(count_tmp(tmpdir), 0);
    /* creating a file that did not exist */
    path_in(p, sizeof p, "fresh.txt");
    CHECK_EQ_INT(kv_write_file_atomic(p, "abc", 3, &err), KV_OK);
    CHECK(file_is(p, "abc"));
    /* empty write */
    CHECK_EQ_INT(kv_write_file_atomic(p, NULL, 0, &err), KV_OK);
    CHECK(file_is(p, ""));
    /* streaming through the FILE* */
    kv_atomic_file af;
    CHECK_EQ_INT(kv_atomic_open(&af, p, &err), KV_OK);
    CHECK(af.fp && af.tmp_path && strstr(af.tmp_path, "fresh.txt.tmp."));
    for (int i = 0; i < 1000; i++) fprintf(af.fp, "%d\n", i);
    CHECK(file_is(p, "")); /* target untouched until commit */
    CHECK_EQ_INT(kv_atomic_commit(&af, &err), KV_OK);
    CHECK(af.fp == NULL && af.tmp_path == NULL && af.final_path == NULL);
    char *buf = NULL;
    size_t len = 0;
    CHECK_EQ_INT(kv_read_file(p, &buf, &len, &err), KV_OK);
    CHECK(buf && strncmp(buf, "0\n1\n2\n", 6) == 0 && strstr(buf, "\n999\n"));
    free(buf);
    CHECK_EQ_INT(count_tmp(tmpdir), 0);
}

static void test_atomic_abort(void) {
    char p[512];
    kv_err err;
    path_in(p, sizeof p, "keep.json");
    put(p, "precious");
    kv_atomic_file af;
    CHECK_EQ_INT(kv_atomic_open(&af, p, &err), KV_OK);
    fputs("half-written garbage", af.fp);
    fflush(af.fp);
    CHECK_EQ_INT(count_tmp(tmpdir), 1);
    kv_atomic_abort(&af);
    CHECK(file_is(p, "precious"));
    CHECK_EQ_INT(count_tmp(tmpdir), 0);
    CHECK(af.fp == NULL && af.tmp_path == NULL);
    kv_atomic_abort(&af); /* twice is harmless */
    kv_atomic_file zero = {0};
    kv_atomic_abort(&zero);
    kv_atomic_abort(NULL);
    /* two open at once on one path get distinct temp files */
    kv_atomic_file a, b;
    CHECK_EQ_INT(kv_atomic_open(&a, p, &err), KV_OK);
    CHECK_EQ_INT(kv_atomic_open(&b, p, &err), KV_OK);
    CHECK(strcmp(a.tmp_path, b.tmp_path) != 0);
    kv_atomic_abort(&a);
    kv_atomic_abort(&b);
    CHECK(file_is(p, "precious"));
    CHECK_EQ_INT(count_tmp(tmpdir), 0);
}

static void test_atomic_errors(void) {
    char p[512];
    kv_err err;
    /* nonexistent directory: fails at open with the path in the message */
    path_in(p, sizeof p, "no/such/dir/out.json");
    CHECK_ERR(kv_write_file_atomic(p, "x", 1, &err), &err, KV_EIO, "no/such/dir/out.json");
    CHECK(strstr(err.msg, "No such file or directory"));
    kv_atomic_file af;
    CHECK_ERR(kv_atomic_open(&af, p, &err), &err, KV_EIO, "create temporary file");
    CHECK(af.fp == NULL && af.tmp_path == NULL);
    /* rename over a non-empty directory fails at commit: temp file removed, dir kept */
    char d[512], inner[600];
    path_in(d, sizeof d, "adir");
    mkdir(d, 0755);
    snprintf(inner, sizeof inner, "%s/inside", d);
    put(inner, "x");
    CHECK_ERR(kv_write_file_atomic(d, "data", 4, &err), &err, KV_EIO, "rename");
    CHECK(strstr(err.msg, "adir"));
    CHECK(kv_is_dir(d) && kv_is_file(inner));
    CHECK_EQ_INT(count_tmp(tmpdir), 0);
    /* commit of a file that was never opened */
    kv_atomic_file zero = {0};
    CHECK_ERR(kv_atomic_commit(&zero, &err), &err, KV_EINVAL, "not open");
    CHECK_ERR(kv_atomic_open(&af, "", &err), &err, KV_EINVAL, "bad argument");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_test_fileio_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KV_RUN(test_read_file);
    KV_RUN(test_is_file_dir);
    KV_RUN(test_path_join);
    KV_RUN(test_path_base);
    KV_RUN(test_atomic_replace);
    KV_RUN(test_atomic_abort);
    KV_RUN(test_atomic_errors);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return kv_test_summary();
}
