/* err.c — kv_err helpers (see include/kvant/err.h). */
#include "kvant/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kv_status kv_err_set(kv_err *err, kv_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

kv_status kv_err_prefix(kv_err *err, const char *fmt, ...) {
    if (!err) return KV_EINVAL;
    char pre[KV_ERR_MSG_MAX], old[KV_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation of over-long messages is acceptable; build the result piecewise
     * so the compiler sees the bounds. */
    size_t pl = strnlen(pre, sizeof err->msg - 3);
    memcpy(err->msg, pre, pl);
    memcpy(err->msg + pl, ": ", 2);
    size_t room = sizeof err->msg - pl - 3;
    size_t ol = strnlen(old, room);
    memcpy(err->msg + pl + 2, old, ol);
    err->msg[pl + 2 + ol] = '\0';
    return err->code;
}

void kv_err_clear(kv_err *err) {
    if (err) {
        err->code = KV_OK;
        err->msg[0] = '\0';
    }
}

const char *kv_status_name(kv_status code) {
    switch (code) {
    case KV_OK: return "ok";
    case KV_EIO: return "i/o error";
    case KV_EFORMAT: return "format error";
    case KV_ENOMEM: return "out of memory";
    case KV_EINVAL: return "invalid argument";
    case KV_EUNSUPPORTED: return "unsupported";
    case KV_ENOTFOUND: return "not found";
    case KV_ERANGE: return "out of range";
    }
    return "unknown error";
}

void *kv_malloc(size_t n, kv_err *err, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) kv_err_set(err, KV_ENOMEM, "%s: out of memory allocating %zu bytes", what, n);
    return p;
}

void *kv_calloc(size_t count, size_t size, kv_err *err, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        kv_err_set(err, KV_ENOMEM, "%s: out of memory allocating %zu x %zu bytes", what, count,
                   size);
    return p;
}
