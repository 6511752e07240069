/* report_svg.c — the report's plots as inline SVG (no scripts, no external resources).
 *
 * Pipeline stage: report. Bits per weight (x, log2 scale: 2, 3, 4 and 16 bits all stay
 * readable) against perplexity (y, log10 scale) and against accuracy (y, %), English
 * on the left and Russian on the right, as the issue asks. Each quantized row is a
 * point coloured by its series (model x method x calibration) with its precision as a
 * label; the base model is a dashed reference line; a failed evaluation is a red cross
 * on the x axis. Points at the same bpw (int4-g128, mxfp4 and mxint4 are all 4.25) are
 * spread sideways by a few pixels so none hides another. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_internal.h"

#define W 600
#define H 430
#define ML 66  /* margins: left (y tick labels), right, top (title), bottom (x axis + legend) */
#define MR 18
#define MT 40
#define MB 104

static const char *PALETTE[] = {"#2f6db5", "#d35400", "#2e8b57", "#8e44ad",
                                "#c0392b", "#16a085", "#b8860b", "#5d6d7e"};
#define N_PALETTE ((int)(sizeof PALETTE / sizeof PALETTE[0]))

/* Marker per metric of one plot: circle, square, triangle. */
static void marker(FILE *f, int shape, double x, double y, const char *col) {
    switch (shape) {
    case 0: fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>", x, y, col); break;
    case 1:
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"9\" height=\"9\" fill=\"%s\"/>", x - 4.5,
                y - 4.5, col);
        break;
    default:
        fprintf(f, "<path d=\"M%.1f %.1fL%.1f %.1fL%.1f %.1fZ\" fill=\"%s\"/>", x, y - 6, x + 5.5,
                y + 4, x - 5.5, y + 4, col);
    }
}

/* Series = model x method x calibration of the quantized rows. */
static int series_of(const kv_report *r, int row) {
    const rrow *w = &r->rows[row];
    int s = 0;
    for (int i = 0; i < row; i++) {
        const rrow *v = &r->rows[i];
        if (v->is_base) continue;
        int same = 0;
        for (int j = 0; j < i && !same; j++) {
            const rrow *u = &r->rows[j];
            same = !u->is_base && !strcmp(u->model, v->model) && !strcmp(u->method, v->method) &&
                   !strcmp(u->calib, v->calib);
        }
        if (same) continue;
        if (!strcmp(w->model, v->model) && !strcmp(w->method, v->method) &&
            !strcmp(w->calib, v->calib))
            return s;
        s++;
    }
    return s;
}

/* A point's label: clusters (same bpw) sorted top to bottom, then spaced. */
typedef struct {
    double x, y, bpw;
    int row;
} plabel;

static int plabel_cmp(const void *a, const void *b) {
    const plabel *p = a, *q = b;
    if (p->bpw != q->bpw) return p->bpw < q->bpw ? -1 : 1;
    return p->y < q->y ? -1 : p->y > q->y;
}

typedef struct {
    const char *title;
    int cols[3];     /* report columns drawn, -1 unused */
    const char *names[3];
    int logy;        /* perplexity, KL: log10 axis; accuracy: linear % */
    const char *ylabel;
} plot_spec;

static double tx(double bpw, double lo, double hi) {
    return ML + (log2(bpw) - log2(lo)) / (log2(hi) - log2(lo)) * (W - ML - MR);
}

static double yval(const plot_spec *p, double v) {
    return p->logy ? log10(v) : 100.0 * v;
}

static double ty(double yv, double lo, double hi) {
    return H - MB - (yv - lo) / (hi - lo) * (H - MB - MT);
}

/* A point that can be drawn: a finite figure (positive on a log axis) at a known bpw. */
static int usable(const plot_spec *p, const rrow *w, int c) {
    return w->c[c].state == CELL_VALUE && isfinite(w->c[c].v) && (!p->logy || w->c[c].v > 0) &&
           !isnan(w->bpw) && w->bpw > 0;
}

static void y_label(char *b, size_t cap, const plot_spec *p, double yv) {
    if (!p->logy) {
        snprintf(b, cap, "%g", yv);
        return;
    }
    double v = pow(10, yv);
    if (v >= 1e5)
        snprintf(b, cap, "1e%d", (int)lround(yv));
    else
        snprintf(b, cap, "%g", v);
}

static void plot(FILE *f, const kv_report *r, const plot_spec *p) {
    /* ranges over the values drawn (base rows included: they set reference lines) */
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    int n_metrics = 0, any = 0, any_fail = 0;
    for (int m = 0; m < 3 && p->cols[m] >= 0; m++) n_metrics++;
    for (int i = 0; i < r->n_rows; i++) {
        const rrow *w = &r->rows[i];
        int drawn = 0;
        for (int m = 0; m < n_metrics; m++) {
            int c = p->cols[m];
            if (w->c[c].state == CELL_FAILED) any_fail = drawn = 1;
            if (!usable(p, w, c)) continue;
            any = drawn = 1;
            double yv = yval(p, w->c[c].v);
            if (yv < ylo) ylo = yv;
            if (yv > yhi) yhi = yv;
        }
        if (drawn && !isnan(w->bpw) && w->bpw > 0) {
            if (w->bpw < xlo) xlo = w->bpw;
            if (w->bpw > xhi) xhi = w->bpw;
        }
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" "
               "height=\"%d\" font-family=\"system-ui,'DejaVu Sans',sans-serif\" font-size=\"12\" "
               "role=\"img\" class=\"plot\">\n<title>",
            W, H, W, H);
    kv_report_html_esc(f, p->title);
    fprintf(f, "</title>\n<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n<text x=\"%d\" y=\"22\" "
               "font-size=\"15\" font-weight=\"600\" text-anchor=\"middle\">",
            W, H, W / 2);
    kv_report_html_esc(f, p->title);
    fputs("</text>\n", f);
    if (!any && !any_fail) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n"
                   "</svg>\n", W / 2, H / 2);
        return;
    }
    if (!isfinite(xlo)) xlo = xhi = 4;
    xlo /= 1.18;
    xhi *= 1.18;
    if (!any) {
        ylo = 0;
        yhi = p->logy ? 1 : 100;
    }
    /* nice y range and ticks */
    double step;
    if (p->logy) {
        /* a narrow range (quantization moves perplexity by a few %) keeps its detail */
        double span = yhi - ylo;
        if (span >= 0.5) {
            double pad = span * 0.08;
            ylo = floor((ylo - pad) * 10) / 10;
            yhi = ceil((yhi + pad) * 10) / 10;
        } else {
            double pad = fmax(span * 0.15, 0.004);
            ylo -= pad;
            yhi += pad;
        }
        step = 1;
    } else {
        double span = fmax(yhi - ylo, 4);
        ylo = fmax(0, ylo - span * 0.15);
        yhi = fmin(100, yhi + span * 0.15);
        static const double steps[] = {1, 2, 5, 10, 20, 25};
        step = 25;
        for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
            if ((yhi - ylo) / steps[i] <= 8) {
                step = steps[i];
                break;
            }
        ylo = floor(ylo / step) * step;
        yhi = ceil(yhi / step) * step;
        if (yhi <= ylo) yhi = ylo + step;
    }

    /* plot frame, grid and ticks */
    int x0 = ML, x1 = W - MR, y0 = MT, y1 = H - MB;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fbfcfe\" "
               "stroke=\"#9aa5b4\"/>\n",
            x0, y0, x1 - x0, y1 - y0);
    char b[64];
    if (p->logy && yhi - ylo < 0.7) {
        /* less than a factor of 5 from bottom to top: round values at a linear step,
         * placed on the log axis (1-2-5 decades would leave one tick or none) */
        double vlo = pow(10, ylo), vhi = pow(10, yhi), raw = (vhi - vlo) / 5;
        double mag = pow(10, floor(log10(raw))), q = raw / mag;
        double st = q < 1.5 ? mag : q < 3 ? 2 * mag : q < 7 ? 5 * mag : 10 * mag;
        for (double v = ceil(vlo / st) * st; v <= vhi; v += st) {
            double yy = ty(log10(v), ylo, yhi);
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e3e8ef\"/>"
                       "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#3a4452\">%g</text>\n",
                    x0, yy, x1, yy, x0 - 6, yy + 4, v);
        }
    } else if (p->logy) {
        /* 1, 2, 5 x 10^k when few decades, else powers of ten only */
        int dec = (int)ceil(yhi - ylo);
        for (int k = (int)floor(ylo); k <= (int)ceil(yhi); k++) {
            static const double mul[] = {1, 2, 5};
            for (int j = 0; j < 3; j++) {
                if (dec > 3 && j > 0) continue;
                double yv = k + log10(mul[j]);
                if (yv < ylo || yv > yhi) continue;
                double yy = ty(yv, ylo, yhi);
                y_label(b, sizeof b, p, yv);
                fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e3e8ef\"/>"
                           "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#3a4452\">%s</text>\n",
                        x0, yy, x1, yy, x0 - 6, yy + 4, b);
            }
        }
    } else {
        for (double yv = ylo; yv <= yhi + 1e-9; yv += step) {
            double yy = ty(yv, ylo, yhi);
            y_label(b, sizeof b, p, yv);
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e3e8ef\"/>"
                       "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#3a4452\">%s</text>\n",
                    x0, yy, x1, yy, x0 - 6, yy + 4, b);
        }
    }
    static const double xt[] = {1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32};
    for (size_t i = 0; i < sizeof xt / sizeof xt[0]; i++) {
        if (xt[i] < xlo || xt[i] > xhi) continue;
        double xx = tx(xt[i], xlo, xhi);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e3e8ef\"/>"
                   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#3a4452\">%g</text>\n",
                xx, y0, xx, y1, xx, y1 + 16, xt[i]);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#1d2430\">bits per weight "
               "(log scale)</text>\n",
            (x0 + x1) / 2, y1 + 34);
    fprintf(f, "<text transform=\"translate(16 %d) rotate(-90)\" text-anchor=\"middle\" "
               "fill=\"#1d2430\">%s</text>\n",
            (y0 + y1) / 2, p->ylabel);

    /* base model reference lines; a label that would overlap the one before moves up */
    double used_y[16];
    int n_used = 0;
    for (int i = 0; i < r->n_rows; i++) {
        const rrow *w = &r->rows[i];
        if (!w->is_base) continue;
        for (int m = 0; m < n_metrics; m++) {
            if (!usable(p, w, p->cols[m])) continue;
            double yy = ty(yval(p, w->c[p->cols[m]].v), ylo, yhi);
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#1d2430\" "
                       "stroke-dasharray=\"6 4\" stroke-width=\"1.2\"/>",
                    x0, yy, x1, yy);
            double xx = tx(w->bpw, xlo, xhi), ly = yy - 6;
            for (int k = 0; k < n_used; k++)
                if (fabs(used_y[k] - ly) < 12) {
                    ly = used_y[k] - 13;
                    k = -1; /* check again from the first */
                }
            if (n_used < 16) used_y[n_used++] = ly;
            marker(f, m, xx, yy, "#1d2430");
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#1d2430\">",
                    xx - 8, ly);
            kv_report_html_esc(f, w->precision);
            if (n_metrics > 1) {
                fputs(" ", f);
                kv_report_html_esc(f, p->names[m]);
            }
            fputs("</text>\n", f);
        }
    }

    /* quantized points; same-bpw points dodge sideways; their labels go right of the
     * cluster, each at its point's height but pushed apart to a 12 px pitch */
    int n_fail = 0, n_lab = 0;
    plabel *lab = calloc((size_t)r->n_rows + 1, sizeof *lab);
    for (int i = 0; i < r->n_rows; i++) {
        const rrow *w = &r->rows[i];
        if (w->is_base) continue;
        const char *col = PALETTE[series_of(r, i) % N_PALETTE];
        int rank = 0, same = 0; /* this row's place among rows at the same bpw */
        for (int j = 0; j < r->n_rows; j++) {
            const rrow *v = &r->rows[j];
            if (v->is_base || v->bpw != w->bpw) continue;
            if (j < i) rank++;
            same++;
        }
        double dx = (rank - (same - 1) / 2.0) * 10;
        for (int m = 0; m < n_metrics; m++) {
            int c = p->cols[m];
            if (w->c[c].state == CELL_FAILED && !isnan(w->bpw)) {
                double xx = tx(w->bpw, xlo, xhi) + dx, yy = y1 - 8 - 10 * (n_fail % 3);
                fprintf(f, "<path d=\"M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f\" stroke=\"#b3261e\" "
                           "stroke-width=\"2\"/><title>",
                        xx - 4, yy - 4, xx + 4, yy + 4, xx - 4, yy + 4, xx + 4, yy - 4);
                kv_report_html_esc(f, w->precision);
                fputs(": n/a</title>\n", f);
                n_fail++;
                continue;
            }
            if (!usable(p, w, c)) continue;
            double xx = tx(w->bpw, xlo, xhi) + dx, yy = ty(yval(p, w->c[c].v), ylo, yhi);
            char val[64];
            kv_report_fmt(val, sizeof val, &w->c[c], kv_report_cols[c].kind);
            fputs("<g><title>", f); /* hover: which point is which */
            kv_report_html_esc(f, w->precision);
            fprintf(f, " %s/%s, %s: %s</title>", w->method, w->calib, p->names[m], val);
            marker(f, m, xx, yy, col);
            fputs("</g>", f);
            if (m == 0 && lab) {
                lab[n_lab].x = tx(w->bpw, xlo, xhi) + (same - 1) / 2.0 * 10 + 8;
                lab[n_lab].y = yy + 4;
                lab[n_lab].bpw = w->bpw;
                lab[n_lab++].row = i;
            }
            fputc('\n', f);
        }
    }
    if (lab) qsort(lab, (size_t)n_lab, sizeof *lab, plabel_cmp);
    for (int a = 0; a < n_lab; a++) {
        if (a > 0 && lab[a - 1].bpw == lab[a].bpw && lab[a].y < lab[a - 1].y + 12)
            lab[a].y = lab[a - 1].y + 12; /* below the label above it in the cluster */
        const rrow *w = &r->rows[lab[a].row];
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\" font-size=\"11\">", lab[a].x,
                lab[a].y, PALETTE[series_of(r, lab[a].row) % N_PALETTE]);
        kv_report_html_esc(f, w->precision);
        fputs("</text>\n", f);
    }
    free(lab);

    /* legend: series (colour), metrics (marker), base line, n/a */
    int ly = y1 + 56, lx = x0;
    for (int i = 0, s_seen = -1; i < r->n_rows; i++) {
        if (r->rows[i].is_base) continue;
        int s = series_of(r, i);
        if (s <= s_seen) continue;
        s_seen = s;
        const rrow *w = &r->rows[i];
        char lab[256];
        snprintf(lab, sizeof lab, "%s, %s, calib %s", w->model, w->method, w->calib);
        int wid = 24 + 6 * (int)strlen(lab);
        if (lx + wid > x1) {
            lx = x0;
            ly += 16;
        }
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" "
                   "y=\"%d\">",
                lx, ly - 10, PALETTE[s % N_PALETTE], lx + 16, ly);
        kv_report_html_esc(f, lab);
        fputs("</text>\n", f);
        lx += wid;
    }
    ly += 18;
    lx = x0;
    if (n_metrics > 1)
        for (int m = 0; m < n_metrics; m++) {
            marker(f, m, lx + 5, ly - 4, "#5a6472");
            fprintf(f, "<text x=\"%d\" y=\"%d\">", lx + 14, ly);
            kv_report_html_esc(f, p->names[m]);
            fputs("</text>\n", f);
            lx += 24 + 7 * (int)strlen(p->names[m]);
        }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#1d2430\" "
               "stroke-dasharray=\"6 4\"/><text x=\"%d\" y=\"%d\">base model</text>\n",
            lx, ly - 4, lx + 22, ly - 4, lx + 28, ly);
    lx += 110;
    if (n_fail)
        fprintf(f, "<path d=\"M%d %dL%d %dM%d %dL%d %d\" stroke=\"#b3261e\" stroke-width=\"2\"/>"
                   "<text x=\"%d\" y=\"%d\">n/a (failed)</text>\n",
                lx, ly - 8, lx + 8, ly, lx, ly, lx + 8, ly - 8, lx + 14, ly);
    fputs("</svg>\n", f);
}

void kv_report_svg_plots(FILE *f, const kv_report *r) {
    static const char PPL[] = "perplexity (log scale, lower is better)";
    static const char ACC[] = "accuracy, % (higher is better)";
    static const char KL[] = "KL divergence, nats/token (log scale)";
    const plot_spec plots[] = {
        {"English: WikiText-2 perplexity (W2)", {RC_W2, -1, -1}, {"W2", 0, 0}, 1, PPL},
        {"Russian: WikiText-RU perplexity (W2-Ru)", {RC_W2RU, -1, -1}, {"W2-Ru", 0, 0}, 1, PPL},
        {"English: MMLU and PIQA accuracy",
         {RC_MMLU, RC_PIQA, RC_PIQA_N},
         {"MMLU", "PIQA acc", "PIQA acc_norm"},
         0,
         ACC},
        {"Russian: MMLU-Ru and PIQA-Ru accuracy",
         {RC_MMLURU, RC_PIQARU, RC_PIQARU_N},
         {"MMLU-Ru", "PIQA-Ru acc", "PIQA-Ru acc_norm"},
         0,
         ACC},
        {"English: KL divergence from the base model (W2)", {RC_KL_W2, -1, -1}, {"KL", 0, 0}, 1, KL},
        {"Russian: KL divergence from the base model (W2-Ru)",
         {RC_KL_W2RU, -1, -1},
         {"KL", 0, 0},
         1,
         KL},
    };
    int has_kl = 0;
    for (int i = 0; i < r->n_rows; i++)
        if (r->rows[i].c[RC_KL_W2].state == CELL_VALUE ||
            r->rows[i].c[RC_KL_W2RU].state == CELL_VALUE)
            has_kl = 1;
    int n = has_kl ? 6 : 4;
    for (int i = 0; i < n; i++) plot(f, r, &plots[i]);
}
