/* test.h — the tiny test harness every tests/test_*.c uses.
 *
 * Each test is a function; KV_RUN(fn) runs it and prints "ok name" or "FAIL name".
 * Checks record failures and keep going, printing what differed. main() returns
 * kv_test_summary(), non-zero when anything failed, so a failing check can never
 * be hidden behind a zero exit code. tests/run.sh sums the "ok"/"FAIL" lines. */
#ifndef KVANT_TEST_H
#define KVANT_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int kv_t_failed_checks; /* in the current test */
static int kv_t_pass, kv_t_fail;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            kv_t_failed_checks++;                                                        \
        }                                                                                \
    } while (0)

#define CHECK_MSG(cond, ...)                                                             \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                       \
            kv_t_failed_checks++;                                                        \
        }                                                                                \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                               \
    do {                                                                                 \
        long long va_ = (long long)(a), vb_ = (long long)(b);                            \
        if (va_ != vb_) {                                                                \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__,        \
                    __LINE__, #a, #b, va_, vb_);                                         \
            kv_t_failed_checks++;                                                        \
        }                                                                                \
    } while (0)

/* Message check: the status equals `code` and the message contains `needle`. */
#define CHECK_ERR(status, errp, code_, needle)                                           \
    do {                                                                                 \
        int st_ = (int)(status);                                                         \
        if (st_ != (int)(code_) || !strstr((errp)->msg, (needle))) {                     \
            fprintf(stderr,                                                              \
                    "  %s:%d: expected error %d containing \"%s\", got %d \"%s\"\n",     \
                    __FILE__, __LINE__, (int)(code_), (needle), st_, (errp)->msg);       \
            kv_t_failed_checks++;                                                        \
        }                                                                                \
    } while (0)

/* Compare two float arrays: |a-b| <= atol + rtol*|b| elementwise. Prints label,
 * max abs and rel error and the first mismatches. Returns the max abs error. */
static inline double kv_check_close(const char *label, const float *a, const float *b,
                                    size_t n, double atol, double rtol, const char *file,
                                    int line) {
    double max_abs = 0, max_rel = 0;
    int shown = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double r = d / (fabs((double)b[i]) + 1e-30);
        if (!(d <= max_abs)) max_abs = d; /* also catches NaN */
        if (r > max_rel) max_rel = r;
        if (!(d <= atol + rtol * fabs((double)b[i]))) {
            bad++;
            if (shown < 5) {
                fprintf(stderr, "  %s:%d: %s[%zu]: got %.9g want %.9g\n", file, line, label,
                        i, a[i], b[i]);
                shown++;
            }
        }
    }
    fprintf(stderr, "  %s: n=%zu max_abs=%.3g max_rel=%.3g%s\n", label, n, max_abs, max_rel,
            bad ? " MISMATCH" : "");
    if (bad) kv_t_failed_checks++;
    return max_abs;
}
#define CHECK_CLOSE(label, a, b, n, atol, rtol)                                          \
    kv_check_close(label, a, b, n, atol, rtol, __FILE__, __LINE__)

#define KV_RUN(fn)                                                                       \
    do {                                                                                 \
        kv_t_failed_checks = 0;                                                          \
        fn();                                                                            \
        if (kv_t_failed_checks) {                                                        \
            printf("FAIL %s\n", #fn);                                                    \
            kv_t_fail++;                                                                 \
        } else {                                                                         \
            printf("ok %s\n", #fn);                                                      \
            kv_t_pass++;                                                                 \
        }                                                                                \
        fflush(stdout);                                                                  \
    } while (0)

static inline int kv_test_summary(void) {
    printf("# %d passed, %d failed\n", kv_t_pass, kv_t_fail);
    return kv_t_fail ? 1 : 0;
}

/* Paths: tests run from the repository root. Data lives in $KVANT_DATA or
 * ../shared/data; fixtures in tests/fixtures. */
static inline const char *kv_test_data_dir(void) {
    const char *d = getenv("KVANT_DATA");
    return d && *d ? d : "../shared/data";
}

/* The kvant binary under test: $KVANT_BIN (tests/run.sh sets it per build), else
 * build/kvant. */
static inline const char *kv_test_bin(void) {
    const char *b = getenv("KVANT_BIN");
    return b && *b ? b : "build/kvant";
}

/* Run "kvant ARGS" with stdin from stdin_file (NULL: /dev/null), stdout and stderr
 * captured together into out; returns the exit status (128 + signal if killed). */
static inline int kv_test_run(const char *args, const char *stdin_file, char *out, size_t cap) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s <%s 2>&1", kv_test_bin(), args,
             stdin_file ? stdin_file : "/dev/null");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The number after "key": in the last line of out (kvant's JSON result line); NAN if absent. */
static inline double kv_test_json_num(const char *out, const char *key) {
    const char *last = out, *nl;
    size_t len = strlen(out);
    while (len && out[len - 1] == '\n') len--;
    for (const char *q = out; (nl = memchr(q, '\n', (size_t)(out + len - q))); q = nl + 1) last = nl + 1;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *k = strstr(last, pat);
    return k ? atof(k + strlen(pat)) : NAN;
}

#endif
