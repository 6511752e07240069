/* fileio.c — whole-file reads, path helpers and atomic writes (see fileio.h).
 *
 * Pipeline stage: load (configs, index files) and every output (quantized
 * checkpoints, results). An atomic write goes to a temporary file in the same
 * directory (rename is only atomic within one file system), is fsync'ed, then
 * renamed over the target, so a crash or a full disk leaves the old file or
 * nothing, never a torn one. */
#include "kvant/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static kv_status errno_status(int e) {
    return (e == ENOENT || e == ENOTDIR) ? KV_ENOTFOUND : KV_EIO;
}

kv_status kv_read_file(const char *path, char **buf, size_t *len, kv_err *err) {
    if (buf) *buf = NULL;
    if (len) *len = 0;
    if (!path || !buf) return kv_err_set(err, KV_EINVAL, "kv_read_file: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return kv_err_set(err, errno_status(e), "%s: open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return kv_err_set(err, KV_EIO, "%s: stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return kv_err_set(err, KV_EIO, "%s: is a directory, expected a file", path);
    }
    /* Size hint from fstat; the loop still reads to EOF (pipes, /proc files). */
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    if (st.st_size > 0 && (uint64_t)st.st_size >= SIZE_MAX / 2) {
        close(fd);
        return kv_err_set(err, KV_ENOMEM, "%s: file of %lld bytes is too large to read", path,
                          (long long)st.st_size);
    }
    char *p = malloc(cap);
    if (!p) {
        close(fd);
        return kv_err_set(err, KV_ENOMEM, "%s: out of memory allocating %zu bytes", path, cap);
    }
    size_t n = 0;
    for (;;) {
        if (n + 1 >= cap) {
            size_t ncap = cap * 2;
            char *q = ncap > cap ? realloc(p, ncap) : NULL;
            if (!q) {
                free(p);
                close(fd);
                return kv_err_set(err, KV_ENOMEM, "%s: out of memory allocating %zu bytes",
                                  path, ncap);
            }
            p = q;
            cap = ncap;
        }
        ssize_t r = read(fd, p + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(p);
            close(fd);
            return kv_err_set(err, KV_EIO, "%s: read: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    p[n] = '\0';
    *buf = p;
    if (len) *len = n;
    return KV_OK;
}

int kv_is_file(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int kv_is_dir(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

kv_status kv_path_join(char *buf, size_t cap, const char *dir, const char *name, kv_err *err) {
    if (!buf || cap == 0 || !dir || !name)
        return kv_err_set(err, KV_EINVAL, "kv_path_join: NULL argument");
    size_t dl = strlen(dir), nl = strlen(name);
    /* No separator after "" (name relative to the cwd) or after a trailing '/'. */
    int sep = dl > 0 && dir[dl - 1] != '/';
    if (dl + (size_t)sep + nl + 1 > cap) {
        buf[0] = '\0';
        return kv_err_set(err, KV_EINVAL, "%s: path too long joining \"%s\" (limit %zu bytes)",
                          dir, name, cap - 1);
    }
    memcpy(buf, dir, dl);
    if (sep) buf[dl] = '/';
    memcpy(buf + dl + (size_t)sep, name, nl + 1);
    return KV_OK;
}

const char *kv_path_base(const char *path, char *buf, size_t cap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    size_t len = n - b < cap - 1 ? n - b : cap - 1;
    memcpy(buf, path + b, len);
    buf[len] = '\0';
    return buf;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static void atomic_reset(kv_atomic_file *af) {
    free(af->final_path);
    free(af->tmp_path);
    af->fp = NULL;
    af->final_path = NULL;
    af->tmp_path = NULL;
}

/* Per-process counter so two atomic files for one path in one process get distinct
 * temporary names. */
static atomic_uint tmp_counter;

kv_status kv_atomic_open(kv_atomic_file *af, const char *path, kv_err *err) {
    if (!af || !path || !*path) return kv_err_set(err, KV_EINVAL, "kv_atomic_open: bad argument");
    af->fp = NULL;
    af->final_path = NULL;
    af->tmp_path = NULL;
    size_t cap = strlen(path) + 64;
    af->final_path = dup_str(path);
    af->tmp_path = malloc(cap);
    if (!af->final_path || !af->tmp_path) {
        atomic_reset(af);
        return kv_err_set(err, KV_ENOMEM, "%s: out of memory allocating %zu bytes", path, cap);
    }
    int fd = -1, e = 0;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        unsigned k = atomic_fetch_add(&tmp_counter, 1u);
        snprintf(af->tmp_path, cap, "%s.tmp.%ld.%u", path, (long)getpid(), k);
        fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        e = errno;
        if (fd < 0 && e != EEXIST) break;
    }
    if (fd < 0) {
        kv_err_set(err, KV_EIO, "%s: create temporary file %s: %s", path, af->tmp_path,
                   strerror(e));
        atomic_reset(af);
        return KV_EIO;
    }
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        e = errno;
        close(fd);
        unlink(af->tmp_path);
        kv_err_set(err, KV_EIO, "%s: fdopen %s: %s", path, af->tmp_path, strerror(e));
        atomic_reset(af);
        return KV_EIO;
    }
    return KV_OK;
}

/* fsync the directory holding path so the rename itself is durable. Best effort:
 * some file systems refuse fsync on directories. */
static void sync_parent_dir(const char *path) {
    char *copy = dup_str(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

kv_status kv_atomic_commit(kv_atomic_file *af, kv_err *err) {
    if (!af || !af->fp || !af->tmp_path || !af->final_path) {
        kv_atomic_abort(af);
        return kv_err_set(err, KV_EINVAL, "kv_atomic_commit: file is not open");
    }
    const char *what = NULL;
    int e = 0;
    if (fflush(af->fp) != 0) {
        what = "write", e = errno;
    } else if (ferror(af->fp)) {
        what = "write", e = EIO;
    } else if (fsync(fileno(af->fp)) != 0) {
        what = "fsync", e = errno;
    }
    int close_rc = fclose(af->fp);
    af->fp = NULL;
    if (!what && close_rc != 0) what = "close", e = errno;
    if (!what && rename(af->tmp_path, af->final_path) != 0) what = "rename", e = errno;
    if (what) {
        kv_err_set(err, KV_EIO, "%s: %s %s: %s", af->final_path, what, af->tmp_path,
                   strerror(e));
        unlink(af->tmp_path);
        atomic_reset(af);
        return KV_EIO;
    }
    sync_parent_dir(af->final_path);
    atomic_reset(af);
    return KV_OK;
}

void kv_atomic_abort(kv_atomic_file *af) {
    if (!af) return;
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_reset(af);
}

kv_status kv_write_file_atomic(const char *path, const void *data, size_t len, kv_err *err) {
    if (!data && len) return kv_err_set(err, KV_EINVAL, "%s: NULL data", path ? path : "?");
    kv_atomic_file af;
    kv_status st = kv_atomic_open(&af, path, err);
    if (st != KV_OK) return st;
    if (len && fwrite(data, 1, len, af.fp) != len) {
        int e = errno;
        kv_atomic_abort(&af);
        return kv_err_set(err, KV_EIO, "%s: write %zu bytes: %s", path, len, strerror(e));
    }
    return kv_atomic_commit(&af, err);
}
