/* progress.c — throttled "label done/total (pct) rate unit/s ETA" lines on stderr. */
#include "kvant/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double kv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void kv_progress_start(kv_progress *p, const char *label, const char *unit, int64_t total,
                       int quiet) {
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->quiet = quiet;
    p->t_start = kv_now();
    p->t_last = 0;
    p->printed = 0;
}

static void fmt_eta(char *buf, size_t cap, double s) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, cap, "?");
    } else if (s >= 3600) {
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    } else {
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    }
}

static void print_line(kv_progress *p, int64_t done, int final) {
    double el = kv_now() - p->t_start;
    double rate = el > 0 ? (double)done / el : 0;
    /* A terminal gets one line rewritten in place; a log file gets separate lines. */
    const char *lead = isatty(2) ? "\r" : "";
    const char *tail = isatty(2) && !final ? "" : "\n";
    if (p->total > 0) {
        char eta[32];
        fmt_eta(eta, sizeof eta, rate > 0 ? (double)(p->total - done) / rate : -1);
        fprintf(stderr, "%s%s: %lld/%lld %s (%.1f%%) %.1f %s/s ETA %s   %s", lead, p->label,
                (long long)done, (long long)p->total, p->unit, 100.0 * (double)done / (double)p->total,
                rate, p->unit, final ? "0m00s" : eta, tail);
    } else {
        fprintf(stderr, "%s%s: %lld %s %.1f %s/s   %s", lead, p->label, (long long)done,
                p->unit, rate, p->unit, tail);
    }
    fflush(stderr);
    p->printed = !final && isatty(2);
}

void kv_progress_update(kv_progress *p, int64_t done) {
    if (!p || p->quiet) return;
    double t = kv_now();
    /* A log file gets a line every 5 s, a terminal up to 5 per second. */
    double every = isatty(2) ? 0.2 : 5.0;
    if (t - p->t_last < every) return;
    p->t_last = t;
    print_line(p, done, 0);
}

void kv_progress_end(kv_progress *p, int64_t done) {
    if (!p || p->quiet) return;
    print_line(p, done, 1);
    p->printed = 0;
}
