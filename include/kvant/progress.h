/* progress.h — progress lines on stderr for long work: done/total, rate, ETA.
 *
 * The CLI owns a kv_progress and passes it down; a NULL or quiet progress prints
 * nothing. Updates are throttled (at most ~5 per second) and always printed from
 * one thread (callers update outside OpenMP regions). */
#ifndef KVANT_PROGRESS_H
#define KVANT_PROGRESS_H

#include <stdint.h>

typedef struct {
    const char *label; /* "ppl", "quantize", ... */
    const char *unit;  /* "tok", "items", ... */
    int64_t total;     /* 0 when unknown */
    int quiet;
    double t_start, t_last;
    int printed;       /* a line is on screen and needs a newline at the end */
} kv_progress;

void kv_progress_start(kv_progress *p, const char *label, const char *unit, int64_t total,
                       int quiet);
void kv_progress_update(kv_progress *p, int64_t done);
/* Final line (always printed unless quiet) with the overall rate. */
void kv_progress_end(kv_progress *p, int64_t done);
/* Monotonic wall-clock seconds. */
double kv_now(void);

#endif
