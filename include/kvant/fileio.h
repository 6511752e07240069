/* fileio.h — whole-file reads and atomic writes (temporary file, fsync, rename).
 *
 * Every output kvant writes goes through kv_atomic_*: a crash or a full disk
 * leaves either the old file or nothing, never a half-written one. */
#ifndef KVANT_FILEIO_H
#define KVANT_FILEIO_H

#include <stddef.h>
#include <stdio.h>

#include "kvant/err.h"

/* Read a whole file into a malloc'd buffer with a NUL appended (not counted in *len). */
kv_status kv_read_file(const char *path, char **buf, size_t *len, kv_err *err);
/* 1 if path exists and is a regular file / a directory. */
int kv_is_file(const char *path);
int kv_is_dir(const char *path);
/* dir + "/" + name into buf (cap bytes); error if too long. */
kv_status kv_path_join(char *buf, size_t cap, const char *dir, const char *name, kv_err *err);
/* The last component of path, trailing slashes ignored ("a/b/" -> "b"), into buf (cap
 * bytes, cap >= 1; truncated to fit). Returns buf. */
const char *kv_path_base(const char *path, char *buf, size_t cap);

typedef struct {
    FILE *fp;
    char *final_path;
    char *tmp_path;
} kv_atomic_file;

/* Create "<path>.tmp.<pid>.<n>" (same directory, so rename is atomic) for writing. */
kv_status kv_atomic_open(kv_atomic_file *af, const char *path, kv_err *err);
/* Flush, fsync, close and rename over path; on any failure remove the temp file. */
kv_status kv_atomic_commit(kv_atomic_file *af, kv_err *err);
/* Close and remove the temp file (after an error). Accepts a zeroed struct. */
void kv_atomic_abort(kv_atomic_file *af);
/* Convenience: write a buffer atomically. */
kv_status kv_write_file_atomic(const char *path, const void *data, size_t len, kv_err *err);

#endif
