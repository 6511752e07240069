/* sbuf.c — growable string buffer (see sbuf.h). */
#include "kvant/sbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for len more bytes and the NUL; 0 (and oom set) when it cannot be had. */
static int reserve(kv_sbuf *b, size_t len) {
    if (b->oom) return 0;
    if (len > SIZE_MAX / 2 - b->n - 1) {
        b->oom = 1;
        return 0;
    }
    if (b->n + len + 1 <= b->cap) return 1;
    size_t c = b->cap ? b->cap : 64; /* small: eval keeps one per document */
    while (c < b->n + len + 1) c *= 2;
    char *q = realloc(b->p, c);
    if (!q) {
        b->oom = 1;
        return 0;
    }
    b->p = q;
    b->cap = c;
    return 1;
}

void kv_sbuf_put(kv_sbuf *b, const void *s, size_t len) {
    if (!reserve(b, len)) return;
    if (len) memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
}

void kv_sbuf_str(kv_sbuf *b, const char *s) { kv_sbuf_put(b, s, strlen(s)); }

void kv_sbuf_printf(kv_sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || !reserve(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void kv_sbuf_json_str(kv_sbuf *b, const char *s, size_t len) {
    kv_sbuf_put(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            kv_sbuf_put(b, e, 2);
        } else if (c < 0x20) {
            kv_sbuf_printf(b, "\\u%04x", c);
        } else {
            kv_sbuf_put(b, &s[i], 1);
        }
    }
    kv_sbuf_put(b, "\"", 1);
}

void kv_sbuf_free(kv_sbuf *b) {
    if (!b) return;
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    b->oom = 0;
}
