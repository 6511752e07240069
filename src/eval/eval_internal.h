/* eval_internal.h — helpers shared by the src/eval sources: a growable string, the
 * Python string semantics the harness's prompts rely on (str.isspace / strip / len
 * count code points, not bytes), and SHA-256 for content hashes. */
#ifndef KVANT_EVAL_INTERNAL_H
#define KVANT_EVAL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kvant/err.h"
#include "kvant/eval.h"
#include "kvant/sbuf.h"

/* ---- growable NUL-terminated string ------------------------------------------------ */
/* A kv_sbuf with return codes, so eval code can chain appends with ||. */
typedef kv_sbuf ev_str;
int ev_str_put(ev_str *s, const char *p, size_t n); /* 0, or -1 on OOM (now or before) */
int ev_str_puts(ev_str *s, const char *p);
void ev_str_free(ev_str *s);

/* ---- Python str semantics on UTF-8 -------------------------------------------------- */
/* Decode one code point at s[0..len); *n gets its length (1 for an invalid byte, which
 * then counts as one character). */
uint32_t ev_utf8_next(const char *s, size_t len, int *n);
/* Python's str.isspace() (also what re's \s matches in str patterns). */
int ev_py_isspace(uint32_t cp);
/* Python len(): code points. */
int64_t ev_utf8_chars(const char *s, size_t len);
/* Python str.strip(): the [*b, *e) range of s without leading/trailing whitespace. */
void ev_py_strip(const char *s, size_t len, size_t *b, size_t *e);
/* Bytes of the trailing whitespace run (Python rstrip). */
size_t ev_py_rstrip_len(const char *s, size_t len);

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------------------ */
typedef struct {
    uint32_t h[8];
    uint64_t total;
    uint8_t buf[64];
    size_t fill;
} ev_sha256;
void ev_sha256_init(ev_sha256 *c);
void ev_sha256_update(ev_sha256 *c, const void *p, size_t n);
void ev_sha256_final(ev_sha256 *c, uint8_t out[32]);
void ev_sha256_hex(const uint8_t d[32], char hex[65]);
/* sha256 of a whole file as 64 hex digits. */
kv_status ev_sha256_file(const char *path, char hex[65], kv_err *err);

/* ---- tasks -> scoring ---------------------------------------------------------------- */
typedef enum { EV_MMLU_NONE = 0, EV_MMLU_EN, EV_MMLU_RU } ev_mmlu_kind;
/* MMLU categories of the harness (stem, other, social_sciences, humanities);
 * NULL for an unknown subject. */
const char *ev_mmlu_category(const char *subject);
int ev_task_has_acc_norm(const kv_task *t);
ev_mmlu_kind ev_task_mmlu(const kv_task *t);

#endif
