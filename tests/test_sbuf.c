/* test_sbuf.c — the growable string buffer: appends across growth, printf of long
 * text, JSON escaping, and free of a zeroed buffer. */
#include "kvant/sbuf.h"
#include "test.h"

static void test_put_grow(void) {
    kv_sbuf b = {0};
    kv_sbuf_free(&b); /* zeroed: no-op */
    CHECK(b.p == NULL && b.n == 0);
    for (int i = 0; i < 1000; i++) kv_sbuf_str(&b, "abc");
    CHECK_EQ_INT(b.n, 3000);
    CHECK(!b.oom && b.p[b.n] == '\0' && memcmp(b.p + 2997, "abc", 3) == 0);
    kv_sbuf_put(&b, "x\0y", 3); /* embedded NUL kept */
    CHECK_EQ_INT(b.n, 3003);
    CHECK(b.p[3001] == '\0' && b.p[3002] == 'y');
    kv_sbuf_free(&b);
    CHECK(b.p == NULL && b.n == 0 && b.cap == 0);
}

static void test_printf(void) {
    kv_sbuf b = {0};
    kv_sbuf_printf(&b, "%lld,%s", -9223372036854775807LL - 1, "z");
    CHECK(strcmp(b.p, "-9223372036854775808,z") == 0);
    char big[5000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    kv_sbuf_printf(&b, "[%s]", big); /* longer than the first allocation */
    CHECK_EQ_INT(b.n, 22 + 2 + 4999);
    CHECK(b.p[22] == '[' && b.p[b.n - 1] == ']' && b.p[b.n] == '\0');
    kv_sbuf_free(&b);
}

static void test_json_str(void) {
    kv_sbuf b = {0};
    const char s[] = "a\"b\\c\n\x01\xc3\xa9";
    kv_sbuf_json_str(&b, s, sizeof s - 1);
    CHECK_MSG(strcmp(b.p, "\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\"") == 0, "got %s", b.p);
    kv_sbuf_free(&b);
    kv_sbuf_json_str(&b, "ab", 1); /* only len bytes */
    CHECK(strcmp(b.p, "\"a\"") == 0);
    kv_sbuf_free(&b);
}

static void test_oom_sticky(void) {
    kv_sbuf b = {0};
    kv_sbuf_str(&b, "ok");
    b.oom = 1; /* as after a failed realloc: later appends are ignored */
    kv_sbuf_str(&b, "more");
    kv_sbuf_printf(&b, "%d", 5);
    CHECK_EQ_INT(b.n, 2);
    kv_sbuf_free(&b);
    CHECK(!b.oom);
}

int main(void) {
    KV_RUN(test_put_grow);
    KV_RUN(test_printf);
    KV_RUN(test_json_str);
    KV_RUN(test_oom_sticky);
    return kv_test_summary();
}
