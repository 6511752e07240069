/* sbuf.h — a growable, NUL-terminated string buffer for text kvant builds in memory
 * (safetensors headers, shard indexes, config.json).
 *
 * Appends never fail loudly: on out of memory the buffer sets oom and ignores every
 * later append, so a builder makes its calls and checks oom once at the end. A zeroed
 * kv_sbuf is empty and valid; p stays NULL until the first append. */
#ifndef KVANT_SBUF_H
#define KVANT_SBUF_H

#include <stddef.h>

typedef struct {
    char *p;         /* text, NUL-terminated once anything was appended */
    size_t n, cap;   /* bytes used (without the NUL), bytes allocated */
    int oom;         /* 1 after a failed allocation: the content is incomplete */
} kv_sbuf;

/* len bytes of s (may contain NULs). */
void kv_sbuf_put(kv_sbuf *b, const void *s, size_t len);
/* A NUL-terminated string. */
void kv_sbuf_str(kv_sbuf *b, const char *s);
/* printf-formatted text, of any length. */
void kv_sbuf_printf(kv_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* len bytes of s as a JSON string literal: quotes, backslashes and control bytes
 * escaped (\uXXXX for the latter), other bytes (UTF-8) copied as they are. */
void kv_sbuf_json_str(kv_sbuf *b, const char *s, size_t len);
/* Free the text and reset to empty. Accepts a zeroed buffer. */
void kv_sbuf_free(kv_sbuf *b);

#endif
