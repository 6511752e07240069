/* test_report.c — `kvant report`: tables, CSV and the HTML page from results files,
 * checked as text and, when Chromium is installed, in a real browser.
 *
 * Fixtures: tests/fixtures/report/ (make_fixtures.sh: `kvant eval` on tiny-qwen3 and
 * three RTN-quantized copies, --limit 3; failed-mxint4.json is a study cell whose
 * checkpoint could not be loaded). The browser test renders report.html with headless
 * Chromium (Debian package `chromium`), decodes the screenshot (PNG: a small inflate
 * below, so the test needs no zlib) and checks it is not blank and that the plots'
 * colours are on it, and checks the DOM dump holds the tables and the SVG plots. With
 * no Chromium it prints a SKIP note and passes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvant/fileio.h"
#include "kvant/report.h"
#include "test.h"

#define FIX "tests/fixtures/report"

static char tmpdir[256];


static int count_sub(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static char *slurp(const char *path) {
    char *buf = NULL;
    size_t len = 0;
    kv_err e = {0};
    if (kv_read_file(path, &buf, &len, &e)) return NULL;
    return buf;
}

/* Render the fixtures into a report; NULL on failure (with checks recorded). */
static kv_report *fixture_report(void) {
    kv_report *r = NULL;
    kv_err e = {0};
    CHECK_EQ_INT(kv_report_new(&r, &e), KV_OK);
    kv_status st = kv_report_add_path(r, FIX, &e);
    CHECK_MSG(st == KV_OK, "%s", e.msg);
    if (st) {
        kv_report_free(r);
        return NULL;
    }
    return r;
}

static void test_tables(void) {
    kv_report *r = fixture_report();
    if (!r) return;
    kv_err e = {0};
    CHECK_EQ_INT(kv_report_n_files(r), 5);
    /* bf16 base, int4-g128, int2-g64, mxfp4 (plain eval results) + mxint4 (failed study
     * cell); the quantized checkpoints' folders "tiny-qwen3-<format>" map to tiny-qwen3 */
    CHECK_EQ_INT(kv_report_n_rows(r), 5);
    CHECK_EQ_INT(kv_report_n_warnings(r), 0);
    char *md = NULL, *csv = NULL, *tab = NULL;
    size_t n = 0;
    CHECK_EQ_INT(kv_report_render(r, KV_REPORT_MARKDOWN, &md, &n, &e), KV_OK);
    CHECK_EQ_INT(kv_report_render(r, KV_REPORT_CSV, &csv, NULL, &e), KV_OK);
    CHECK_EQ_INT(kv_report_render(r, KV_REPORT_TABLE, &tab, NULL, &e), KV_OK);
    if (md && csv && tab) {
        CHECK(n == strlen(md));
        CHECK(strstr(md, "| Model | Precision | Method | Calibration | bpw | W2 ↓ | W2-Ru ↓ | "
                         "MMLU ↑ | MMLU-Ru ↑ | PIQA acc ↑ | PIQA acc_norm ↑ | PIQA-Ru acc ↑ | "
                         "PIQA-Ru acc_norm ↑ |"));
        /* rows in the paper's order: base first, then by bits per weight */
        const char *b = strstr(md, "| tiny-qwen3 | base |"), *i4 = strstr(md, "| tiny-qwen3 | int4-g128 | rtn |");
        const char *i2 = strstr(md, "| tiny-qwen3 | int2-g64 | rtn |"), *na = strstr(md, "| tiny-qwen3 | mxint4 | rtn |");
        CHECK(b && i4 && i2 && na && b < i4 && i4 < i2);
        CHECK(strstr(md, "| 16.00* |"));  /* base, assumed 16-bit */
        CHECK(strstr(md, "| 2.50 |"));    /* int2-g64: 2 + 32/64 */
        CHECK(na && strstr(na, "| n/a | n/a |"));
        CHECK(strstr(md, "## Failures"));
        CHECK(strstr(md, "mxint4 is not supported"));
        /* stand-ins named, with the data README's wording or the built-in copy */
        CHECK(strstr(md, "wikitext_ru (wikitext_ru/: stand-in"));
        CHECK(strstr(md, "piqa_ru (piqa_ru/: stand-in"));
        CHECK(strstr(md, "mmlu_ru (mmlu_ru/: stand-in"));
        CHECK(strstr(md, "| piqa | piqa | original |"));
        CHECK(strstr(md, "first 3"));
        CHECK(!strstr(md, "KL W2")); /* no KL divergence in these files: no column */
        CHECK(strstr(tab, "| Model |") == tab);
        CHECK(!strstr(tab, "## Results files"));
        /* CSV: header + one line per row, every line with the same number of fields */
        CHECK(strncmp(csv, "model,precision,method,calibration,bpw,", 39) == 0);
        CHECK_EQ_INT(count_sub(csv, "\n"), 6);
        int fields0 = -1, same = 1;
        for (const char *l = csv; *l;) {
            const char *nl = strchr(l, '\n');
            int f = 1;
            for (const char *p = l; p < nl; p++) f += *p == ',';
            if (fields0 < 0) fields0 = f;
            same &= f == fields0;
            l = nl + 1;
        }
        CHECK(same);
        CHECK(strstr(csv, "\ntiny-qwen3,int2-g64,rtn,none,2.5,0,"));
        CHECK(strstr(csv, "n/a,,,"));
    }
    free(md);
    free(csv);
    free(tab);
    kv_report_free(r);
}

static void test_html_self_contained(void) {
    kv_report *r = fixture_report();
    if (!r) return;
    kv_err e = {0};
    char *h = NULL;
    CHECK_EQ_INT(kv_report_render(r, KV_REPORT_HTML, &h, NULL, &e), KV_OK);
    if (h) {
        CHECK(strncmp(h, "<!DOCTYPE html>", 15) == 0);
        CHECK(strstr(h, "<table id=\"results\">"));
        CHECK(strstr(h, "<table id=\"settings\">"));
        CHECK_EQ_INT(count_sub(h, "<svg "), 4);
        CHECK(count_sub(h, "<circle") >= 3);
        CHECK(strstr(h, "English: WikiText-2 perplexity (W2)"));
        CHECK(strstr(h, "Russian: WikiText-RU perplexity (W2-Ru)"));
        CHECK(strstr(h, "<style>"));
        /* nothing fetched: no scripts, links, images, imports; the only URL is the
         * SVG namespace */
        CHECK(!strstr(h, "<script"));
        CHECK(!strstr(h, "<link"));
        CHECK(!strstr(h, "<img"));
        CHECK(!strstr(h, "src="));
        CHECK(!strstr(h, "href="));
        CHECK(!strstr(h, "url("));
        CHECK(!strstr(h, "@import"));
        CHECK_EQ_INT(count_sub(h, "http"), count_sub(h, "xmlns=\"http://www.w3.org/2000/svg\""));
    }
    free(h);
    kv_report_free(r);
}

/* A results document with a different kvant_version still renders, with a warning. */
static void test_version_warning(void) {
    kv_report *r = fixture_report();
    if (!r) return;
    kv_err e = {0};
    char *doc = slurp(FIX "/int4-g128.json");
    CHECK(doc != NULL);
    if (doc) {
        char *v = strstr(doc, "\"kvant_version\": \"0.1.0\"");
        CHECK(v != NULL);
        if (v) memcpy(v + 17, "\"0.0.9\"", 7);
        /* a different model name so the row is new, not a duplicate */
        char *p = strstr(doc, "tiny-qwen3-int4-g128");
        if (p) memcpy(p, "olde", 4);
        CHECK_EQ_INT(kv_report_add_json(r, doc, strlen(doc), "old/int4-g128.json", &e), KV_OK);
        CHECK(kv_report_n_warnings(r) >= 1);
        const char *w = kv_report_warning(r, 0);
        CHECK(w && strstr(w, "old/int4-g128.json: written by kvant 0.0.9"));
        CHECK(w && strstr(w, "different kvant versions"));
        char *md = NULL;
        CHECK_EQ_INT(kv_report_render(r, KV_REPORT_MARKDOWN, &md, NULL, &e), KV_OK);
        CHECK(md && strstr(md, "## Warnings"));
        CHECK(md && strstr(md, "| olde-qwen3 | int4-g128 |"));
        free(md);
    }
    free(doc);
    /* the same cell from two files: the later one wins, with a warning */
    int nw = kv_report_n_warnings(r);
    char *dup = slurp(FIX "/mxfp4.json");
    if (dup) {
        char *d = strstr(dup, "\"date\": \"");
        if (d) memcpy(d + 9, "2999", 4);
        CHECK_EQ_INT(kv_report_add_json(r, dup, strlen(dup), "again/mxfp4.json", &e), KV_OK);
        CHECK(kv_report_n_warnings(r) > nw);
        const char *w = kv_report_warning(r, kv_report_n_warnings(r) - 1);
        CHECK(w && strstr(w, "using again/mxfp4.json (the later)"));
    }
    free(dup);
    kv_report_free(r);
}

static void test_malformed(void) {
    kv_report *r = NULL;
    kv_err e = {0};
    CHECK_EQ_INT(kv_report_new(&r, &e), KV_OK);
    const char *bad = "{\"kvant_version\": \"0.1.0\", \"model\": {\"path\": \"m\"}, \"results\": ";
    CHECK_ERR(kv_report_add_json(r, bad, strlen(bad), "cut.json", &e), &e, KV_EFORMAT,
              "cut.json: malformed JSON near byte");
    const char *nores = "{\"kvant_version\": \"0.1.0\", \"model\": {\"path\": \"m\"}}";
    CHECK_ERR(kv_report_add_json(r, nores, strlen(nores), "nores.json", &e), &e, KV_EFORMAT,
              "nores.json: not a kvant results file: no \"results\" object");
    const char *nover = "{\"model\": {\"path\": \"m\"}, \"results\": {}}";
    CHECK_ERR(kv_report_add_json(r, nover, strlen(nover), "nover.json", &e), &e, KV_EFORMAT,
              "nover.json: not a kvant results file: no \"kvant_version\"");
    const char *badnum = "{\"kvant_version\": \"0.1.0\", \"model\": {\"path\": \"m\"}, "
                         "\"results\": {\"piqa\": {\"task\": \"piqa\", \"acc\": \"high\"}}}";
    CHECK_ERR(kv_report_add_json(r, badnum, strlen(badnum), "str.json", &e), &e, KV_EFORMAT,
              "str.json: results.piqa.acc is not a number");
    CHECK_ERR(kv_report_add_json(r, "[1]", 3, "arr.json", &e), &e, KV_EFORMAT,
              "arr.json: not a kvant results file");
    CHECK_ERR(kv_report_add_path(r, "tests/fixtures/report/none.json", &e), &e, KV_ENOTFOUND,
              "none.json");
    /* a malformed file in a directory is named by its path */
    char dir[300], path[400];
    snprintf(dir, sizeof dir, "%s/bad", tmpdir);
    CHECK_EQ_INT(kv_mkdirs(dir, &e), KV_OK);
    CHECK_ERR(kv_report_add_path(r, dir, &e), &e, KV_EINVAL, "no results files");
    snprintf(path, sizeof path, "%s/broken.json", dir);
    CHECK_EQ_INT(kv_write_file_atomic(path, "{\"kvant_version\": 1}", 20, &e), KV_OK);
    CHECK_ERR(kv_report_add_path(r, dir, &e), &e, KV_EFORMAT, "bad/broken.json: not a kvant results file");
    char *out = NULL;
    CHECK_ERR(kv_report_render(r, KV_REPORT_MARKDOWN, &out, NULL, &e), &e, KV_EINVAL, "no results");
    CHECK(out == NULL);
    kv_report_free(r);
    kv_report_free(NULL);
}

static void test_write_and_cli(void) {
    kv_report *r = fixture_report();
    if (!r) return;
    kv_err e = {0};
    char dir[300], path[400];
    snprintf(dir, sizeof dir, "%s/lib/out", tmpdir);
    CHECK_EQ_INT(kv_report_write(r, dir, &e), KV_OK);
    static const char *names[] = {"report.md", "report.csv", "report.html"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        CHECK_MSG(kv_is_file(path), "%s", path);
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls -a %s | grep -c tmp", dir);
    FILE *p = popen(cmd, "r");
    int leftovers = -1;
    if (p) {
        if (fscanf(p, "%d", &leftovers) != 1) leftovers = -1;
        pclose(p);
    }
    CHECK_EQ_INT(leftovers, 0);
    kv_report_free(r);

    /* the CLI: table on stdout, files in --out; a bad file: exit 1 naming it */
    snprintf(cmd, sizeof cmd, "%s report %s/base.json %s/int4-g128.json --out %s/cli 2>/dev/null",
             kv_test_bin(), FIX, FIX, tmpdir);
    char out[1 << 14] = "";
    p = popen(cmd, "r");
    size_t got = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[got] = '\0';
    int rc = p ? pclose(p) : -1;
    CHECK_EQ_INT(rc, 0);
    CHECK(strstr(out, "| tiny-qwen3 | int4-g128 | rtn | none | 4.25 |"));
    snprintf(path, sizeof path, "%s/cli/report.html", tmpdir);
    CHECK(kv_is_file(path));
    snprintf(path, sizeof path, "%s/bad/broken.json", tmpdir);
    snprintf(cmd, sizeof cmd, "%s report %s/base.json %s --out %s/cli2 2>&1", kv_test_bin(), FIX, path,
             tmpdir);
    p = popen(cmd, "r");
    got = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[got] = '\0';
    rc = p ? pclose(p) : -1;
    CHECK(rc != 0);
    CHECK_MSG(strstr(out, "broken.json: not a kvant results file"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s report %s/base.json 2>&1", kv_test_bin(), FIX);
    p = popen(cmd, "r");
    got = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[got] = '\0';
    rc = p ? pclose(p) : -1;
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    CHECK(strstr(out, "missing --out"));
}

/* ---- PNG decoding: just enough of RFC 1950/1951 and the PNG spec for a screenshot ---- */

typedef struct {
    const uint8_t *in;
    size_t inlen, inpos;
    uint32_t bitbuf;
    int bitcnt;
    uint8_t *out;
    size_t outlen, outcap;
    int err;
} inflater;

static int getbits(inflater *s, int need) {
    uint32_t val = s->bitbuf;
    while (s->bitcnt < need) {
        if (s->inpos >= s->inlen) {
            s->err = 1;
            return 0;
        }
        val |= (uint32_t)s->in[s->inpos++] << s->bitcnt;
        s->bitcnt += 8;
    }
    s->bitbuf = val >> need;
    s->bitcnt -= need;
    return (int)(val & ((1u << need) - 1));
}

typedef struct {
    short count[16];
    short symbol[288];
} huff;

static void huff_build(huff *h, const short *len, int n) {
    short offs[16];
    memset(h->count, 0, sizeof h->count);
    for (int i = 0; i < n; i++) h->count[len[i]]++;
    h->count[0] = 0;
    offs[1] = 0;
    for (int l = 1; l < 15; l++) offs[l + 1] = (short)(offs[l] + h->count[l]);
    for (int i = 0; i < n; i++)
        if (len[i]) h->symbol[offs[len[i]]++] = (short)i;
}

static int huff_decode(inflater *s, const huff *h) {
    int code = 0, first = 0, index = 0;
    for (int l = 1; l <= 15; l++) {
        code |= getbits(s, 1);
        int count = h->count[l];
        if (code - count < first) return h->symbol[index + (code - first)];
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    s->err = 1;
    return -1;
}

static void inflate_codes(inflater *s, const huff *lc, const huff *dc) {
    static const short lbase[29] = {3,  4,  5,  6,  7,  8,  9,  10,  11,  13,  15,  17,  19,  23, 27,
                                    31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const short lext[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                   2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    static const short dbase[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                    33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                    1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
    static const short dext[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                   6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
    for (;;) {
        int sym = huff_decode(s, lc);
        if (s->err) return;
        if (sym < 256) {
            if (s->outlen >= s->outcap) {
                s->err = 1;
                return;
            }
            s->out[s->outlen++] = (uint8_t)sym;
        } else if (sym == 256) {
            return;
        } else {
            sym -= 257;
            if (sym >= 29) {
                s->err = 1;
                return;
            }
            size_t len = (size_t)lbase[sym] + (size_t)getbits(s, lext[sym]);
            int ds = huff_decode(s, dc);
            if (s->err || ds < 0 || ds >= 30) {
                s->err = 1;
                return;
            }
            size_t dist = (size_t)dbase[ds] + (size_t)getbits(s, dext[ds]);
            if (s->err || dist > s->outlen || s->outlen + len > s->outcap) {
                s->err = 1;
                return;
            }
            for (size_t i = 0; i < len; i++, s->outlen++) s->out[s->outlen] = s->out[s->outlen - dist];
        }
    }
}

static void inflate_all(inflater *s) {
    int last;
    do {
        last = getbits(s, 1);
        int type = getbits(s, 2);
        if (s->err) return;
        if (type == 0) {
            s->bitbuf = 0;
            s->bitcnt = 0;
            if (s->inpos + 4 > s->inlen) {
                s->err = 1;
                return;
            }
            size_t len = s->in[s->inpos] | (size_t)s->in[s->inpos + 1] << 8;
            s->inpos += 4;
            if (s->inpos + len > s->inlen || s->outlen + len > s->outcap) {
                s->err = 1;
                return;
            }
            memcpy(s->out + s->outlen, s->in + s->inpos, len);
            s->inpos += len;
            s->outlen += len;
        } else if (type == 1) {
            static huff lc, dc;
            static int built;
            if (!built) {
                short l[288];
                for (int i = 0; i < 288; i++) l[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
                huff_build(&lc, l, 288);
                for (int i = 0; i < 30; i++) l[i] = 5;
                huff_build(&dc, l, 30);
                built = 1;
            }
            inflate_codes(s, &lc, &dc);
        } else if (type == 2) {
            static const short order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5,
                                            11, 4,  12, 3, 13, 2, 14, 1, 15};
            int nlen = getbits(s, 5) + 257, ndist = getbits(s, 5) + 1, ncode = getbits(s, 4) + 4;
            short lengths[320] = {0};
            for (int i = 0; i < ncode; i++) lengths[order[i]] = (short)getbits(s, 3);
            huff cl, lc, dc;
            huff_build(&cl, lengths, 19);
            memset(lengths, 0, sizeof lengths);
            for (int i = 0; i < nlen + ndist && !s->err;) {
                int sym = huff_decode(s, &cl);
                if (sym < 16) {
                    lengths[i++] = (short)sym;
                    continue;
                }
                int rep = sym == 16 ? 3 + getbits(s, 2) : sym == 17 ? 3 + getbits(s, 3) : 11 + getbits(s, 7);
                short v = sym == 16 && i > 0 ? lengths[i - 1] : 0;
                if (sym == 16 && i == 0) s->err = 1;
                while (rep-- && i < nlen + ndist) lengths[i++] = v;
            }
            if (s->err) return;
            huff_build(&lc, lengths, nlen);
            huff_build(&dc, lengths + nlen, ndist);
            inflate_codes(s, &lc, &dc);
        } else {
            s->err = 1;
        }
    } while (!last && !s->err);
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decode an 8-bit RGB/RGBA non-interlaced PNG into RGB; returns malloc'd pixels. */
static uint8_t *png_rgb(const uint8_t *png, size_t n, int *w, int *h) {
    if (n < 33 || memcmp(png, "\x89PNG\r\n\x1a\n", 8) != 0) return NULL;
    int ch = 0;
    uint8_t *idat = NULL;
    size_t idat_n = 0;
    for (size_t pos = 8; pos + 12 <= n;) {
        uint32_t len = be32(png + pos);
        const uint8_t *type = png + pos + 4, *data = png + pos + 8;
        if (pos + 12 + len > n) break;
        if (!memcmp(type, "IHDR", 4)) {
            *w = (int)be32(data);
            *h = (int)be32(data + 4);
            if (data[8] != 8 || data[12] != 0) return NULL; /* 8-bit, not interlaced */
            ch = data[9] == 2 ? 3 : data[9] == 6 ? 4 : 0;
            if (!ch) return NULL;
        } else if (!memcmp(type, "IDAT", 4)) {
            uint8_t *q = realloc(idat, idat_n + len);
            if (!q) break;
            idat = q;
            memcpy(idat + idat_n, data, len);
            idat_n += len;
        }
        pos += 12 + len;
    }
    if (!ch || !idat || *w <= 0 || *h <= 0 || *w > 20000 || *h > 20000) {
        free(idat);
        return NULL;
    }
    size_t stride = (size_t)*w * (size_t)ch;
    inflater s = {.in = idat + 2, .inlen = idat_n > 2 ? idat_n - 2 : 0};
    s.outcap = (stride + 1) * (size_t)*h;
    s.out = malloc(s.outcap);
    uint8_t *rgb = malloc((size_t)*w * (size_t)*h * 3);
    uint8_t *prev = calloc(stride, 1), *cur = malloc(stride);
    if (!s.out || !rgb || !prev || !cur) s.err = 1;
    if (!s.err) inflate_all(&s);
    if (!s.err && s.outlen != s.outcap) s.err = 1;
    for (int y = 0; y < *h && !s.err; y++) {
        const uint8_t *line = s.out + (size_t)y * (stride + 1);
        int filt = line[0];
        for (size_t x = 0; x < stride; x++) {
            int a = x >= (size_t)ch ? cur[x - (size_t)ch] : 0, b = prev[x];
            int c = x >= (size_t)ch ? prev[x - (size_t)ch] : 0, v = line[1 + x];
            switch (filt) {
            case 0: break;
            case 1: v += a; break;
            case 2: v += b; break;
            case 3: v += (a + b) / 2; break;
            case 4: {
                int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
                v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
                break;
            }
            default: s.err = 1;
            }
            cur[x] = (uint8_t)v;
        }
        for (int x = 0; x < *w; x++)
            memcpy(rgb + ((size_t)y * (size_t)*w + (size_t)x) * 3, cur + (size_t)x * (size_t)ch, 3);
        uint8_t *t = prev;
        prev = cur;
        cur = t;
    }
    free(idat);
    free(s.out);
    free(prev);
    free(cur);
    if (s.err) {
        free(rgb);
        return NULL;
    }
    return rgb;
}

static int have_chromium(void) {
    return system("command -v chromium >/dev/null 2>&1") == 0;
}

static void test_browser(void) {
    if (!have_chromium()) {
        printf("# SKIP test_browser: chromium is not installed (apt-get install chromium)\n");
        return;
    }
    kv_report *r = fixture_report();
    if (!r) return;
    kv_err e = {0};
    char dir[300], html[400], png[400], dom[400], abs_html[4096], cmd[8192];
    snprintf(dir, sizeof dir, "%s/browser", tmpdir);
    CHECK_EQ_INT(kv_report_write(r, dir, &e), KV_OK);
    kv_report_free(r);
    snprintf(html, sizeof html, "%s/report.html", dir);
    snprintf(png, sizeof png, "%s/shot.png", dir);
    snprintf(dom, sizeof dom, "%s/dom.html", dir);
    if (!realpath(html, abs_html)) {
        CHECK_MSG(0, "realpath %s", html);
        return;
    }
    /* HOME: chromium writes its profile there; keep it inside the temp dir */
    const char *flags = "--headless --no-sandbox --disable-gpu --hide-scrollbars "
                        "--window-size=1280,2000";
    snprintf(cmd, sizeof cmd, "HOME=%s timeout 120 chromium %s --screenshot=%s file://%s "
             ">/dev/null 2>&1", dir, flags, png, abs_html);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "chromium --screenshot exited %d", rc);
    snprintf(cmd, sizeof cmd, "HOME=%s timeout 120 chromium %s --dump-dom file://%s >%s "
             "2>/dev/null", dir, flags, abs_html, dom);
    rc = system(cmd);
    CHECK_MSG(rc == 0, "chromium --dump-dom exited %d", rc);

    /* the DOM as the browser built it: both tables, all four plots with their points */
    char *d = slurp(dom);
    CHECK(d != NULL);
    if (d) {
        CHECK(strstr(d, "<table id=\"results\">"));
        CHECK(strstr(d, "<table id=\"settings\">"));
        CHECK_EQ_INT(count_sub(d, "<svg "), 4);
        CHECK(count_sub(d, "<circle") >= 3);
        CHECK(count_sub(d, "<tr>") >= 5 + 1 + 6 + 1);
        CHECK(strstr(d, "int2-g64"));
        CHECK(strstr(d, "n/a"));
    }
    free(d);

    /* the screenshot: full size, not blank, plot colours on it */
    char *buf = NULL;
    size_t n = 0;
    kv_status st = kv_read_file(png, &buf, &n, &e);
    CHECK_MSG(st == KV_OK, "%s", e.msg);
    if (st) return;
    int w = 0, h = 0;
    uint8_t *px = png_rgb((const uint8_t *)buf, n, &w, &h);
    CHECK_MSG(px != NULL, "cannot decode %s (%zu bytes)", png, n);
    if (px) {
        CHECK_EQ_INT(w, 1280);
        CHECK_EQ_INT(h, 2000);
        double sum = 0, sum2 = 0;
        long nonwhite = 0, series = 0, dark = 0;
        size_t np = (size_t)w * (size_t)h;
        for (size_t i = 0; i < np; i++) {
            const uint8_t *p = px + 3 * i;
            double lum = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            sum += lum;
            sum2 += lum * lum;
            nonwhite += lum < 240;
            dark += lum < 80;
            /* the first series' colour, #2f6db5 (markers, legend) */
            series += abs(p[0] - 0x2f) + abs(p[1] - 0x6d) + abs(p[2] - 0xb5) < 30;
        }
        double mean = sum / (double)np, sd = sqrt(fmax(0, sum2 / (double)np - mean * mean));
        fprintf(stderr, "  screenshot %dx%d: luminance mean %.1f sd %.1f, non-white %.2f%%, dark "
                "%ld px, series-colour %ld px (%s)\n", w, h, mean, sd, 100.0 * nonwhite / (double)np,
                dark, series, png);
        CHECK(sd > 10);                      /* a blank page has sd 0 */
        CHECK(nonwhite > (long)(np / 50));   /* > 2% of the page drawn */
        CHECK(dark > 2000);                  /* text */
        CHECK(series > 200);                 /* plot markers and legend swatches */
    }
    free(px);
    free(buf);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_test_report.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KV_RUN(test_tables);
    KV_RUN(test_html_self_contained);
    KV_RUN(test_version_warning);
    KV_RUN(test_malformed);
    KV_RUN(test_write_and_cli);
    KV_RUN(test_browser);
    char cmd[400];
    if (!getenv("KVANT_KEEP_TMP")) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    } else {
        fprintf(stderr, "kept %s\n", tmpdir);
    }
    return kv_test_summary();
}
