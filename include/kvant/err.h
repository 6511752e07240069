/* err.h — status codes and the message buffer every kvant call fills on failure.
 *
 * The library never prints or exits on bad input: it returns a kv_status and writes
 * "file: what: detail" into a kv_err that the caller (usually the CLI) prints. */
#ifndef KVANT_ERR_H
#define KVANT_ERR_H

#include <stddef.h>

typedef enum {
    KV_OK = 0,
    KV_EIO,          /* open/read/write/mmap failed */
    KV_EFORMAT,      /* malformed file contents */
    KV_ENOMEM,       /* allocation failed (the message states the size) */
    KV_EINVAL,       /* bad argument or option */
    KV_EUNSUPPORTED, /* valid but not handled (architecture, dtype, ...) */
    KV_ENOTFOUND,    /* missing file, tensor or key */
    KV_ERANGE,       /* value out of range (token id >= vocab, offsets, ...) */
} kv_status;

#define KV_ERR_MSG_MAX 1024

typedef struct {
    kv_status code;
    char msg[KV_ERR_MSG_MAX];
} kv_err;

/* Fill err (may be NULL) and return code, so callers can write
 * `return kv_err_set(err, KV_EFORMAT, "%s: bad header", path);`. */
kv_status kv_err_set(kv_err *err, kv_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "prefix: old message". Returns err->code. */
kv_status kv_err_prefix(kv_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void kv_err_clear(kv_err *err);
const char *kv_status_name(kv_status code);

/* malloc/calloc that fill err with the requested size when they fail. */
void *kv_malloc(size_t n, kv_err *err, const char *what);
void *kv_calloc(size_t count, size_t size, kv_err *err, const char *what);

#endif
