/* eval_util.c — strings with Python semantics and SHA-256 for the eval module.
 *
 * The harness's prompts are Python strings: strip() and len() work on code points and
 * Python's notion of whitespace, so these helpers do the same on UTF-8. SHA-256 (FIPS
 * 180-4) fingerprints data files and weights in results files. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval_internal.h"
#include "kvant/fileio.h"

int ev_str_put(ev_str *s, const char *p, size_t n) {
    kv_sbuf_put(s, p, n);
    return s->oom ? -1 : 0;
}

int ev_str_puts(ev_str *s, const char *p) { return ev_str_put(s, p, strlen(p)); }

void ev_str_free(ev_str *s) { kv_sbuf_free(s); }

uint32_t ev_utf8_next(const char *str, size_t len, int *n) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[0];
    int k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (k == 0 || (size_t)k > len) {
        *n = 1;
        return c;
    }
    uint32_t cp = k == 1 ? c : c & (0x7Fu >> k);
    for (int i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *n = 1;
            return c;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *n = k;
    return cp;
}

/* Python's _PyUnicode_IsWhitespace table (bidirectional WS/B/S or category Zs). */
int ev_py_isspace(uint32_t c) {
    if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int64_t ev_utf8_chars(const char *s, size_t len) {
    int64_t k = 0;
    for (size_t i = 0; i < len; k++) {
        int n;
        ev_utf8_next(s + i, len - i, &n);
        i += (size_t)n;
    }
    return k;
}

size_t ev_py_rstrip_len(const char *s, size_t len) {
    /* walk forward remembering where the current whitespace run began */
    size_t run = len;
    for (size_t i = 0; i < len;) {
        int n;
        uint32_t cp = ev_utf8_next(s + i, len - i, &n);
        if (ev_py_isspace(cp)) {
            if (run == len) run = i;
        } else {
            run = len;
        }
        i += (size_t)n;
    }
    return len - run;
}

void ev_py_strip(const char *s, size_t len, size_t *b, size_t *e) {
    size_t i = 0;
    while (i < len) {
        int n;
        uint32_t cp = ev_utf8_next(s + i, len - i, &n);
        if (!ev_py_isspace(cp)) break;
        i += (size_t)n;
    }
    *b = i;
    *e = i + (len - i) - ev_py_rstrip_len(s + i, len - i);
}

/* ---- SHA-256 ------------------------------------------------------------------------- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static inline uint32_t ror(uint32_t x, int r) { return (x >> r) | (x << (32 - r)); }

static void sha_block(ev_sha256 *c, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5],
             g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = cc;
        cc = b;
        b = a;
        a = t1 + t2;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
    c->h[5] += f;
    c->h[6] += g;
    c->h[7] += h;
}

void ev_sha256_init(ev_sha256 *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->total = 0;
    c->fill = 0;
}

void ev_sha256_update(ev_sha256 *c, const void *data, size_t n) {
    const uint8_t *p = data;
    c->total += n;
    if (c->fill) {
        size_t k = 64 - c->fill < n ? 64 - c->fill : n;
        memcpy(c->buf + c->fill, p, k);
        c->fill += k;
        p += k;
        n -= k;
        if (c->fill < 64) return;
        sha_block(c, c->buf);
        c->fill = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha_block(c, p);
    memcpy(c->buf, p, n);
    c->fill = n;
}

void ev_sha256_final(ev_sha256 *c, uint8_t out[32]) {
    uint64_t bits = c->total * 8;
    uint8_t pad[72] = {0x80};
    size_t padn = (c->fill < 56 ? 56 : 120) - c->fill;
    for (int i = 0; i < 8; i++) pad[padn + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    ev_sha256_update(c, pad, padn + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

void ev_sha256_hex(const uint8_t d[32], char hex[65]) {
    static const char *x = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = x[d[i] >> 4];
        hex[2 * i + 1] = x[d[i] & 15];
    }
    hex[64] = '\0';
}

kv_status ev_sha256_file(const char *path, char hex[65], kv_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return kv_err_set(err, KV_EIO, "%s: cannot open for hashing", path);
    ev_sha256 c;
    ev_sha256_init(&c);
    static __thread uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) ev_sha256_update(&c, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return kv_err_set(err, KV_EIO, "%s: read error while hashing", path);
    uint8_t d[32];
    ev_sha256_final(&c, d);
    ev_sha256_hex(d, hex);
    return KV_OK;
}

kv_status kv_eval_file_sha256(const char *path, char hex[65], kv_err *err) {
    return ev_sha256_file(path, hex, err);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

kv_status kv_eval_model_hash(const char *dir, char hex[65], kv_err *err) {
    char path[4096];
    kv_status st = kv_path_join(path, sizeof path, dir, "config.json", err);
    if (st) return st;
    char *cfg = NULL;
    size_t clen = 0;
    if ((st = kv_read_file(path, &cfg, &clen, err))) return st;
    ev_sha256 c;
    ev_sha256_init(&c);
    ev_sha256_update(&c, cfg, clen);
    free(cfg);
    DIR *d = opendir(dir);
    if (!d) return kv_err_set(err, KV_EIO, "%s: cannot list the directory", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **v = realloc(names, cap * sizeof *v);
            if (!v) break;
            names = v;
        }
        if (!(names[n] = malloc(l + 1))) break;
        memcpy(names[n++], e->d_name, l + 1);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && !st; i++) {
        if ((st = kv_path_join(path, sizeof path, dir, names[i], err))) break;
        FILE *f = fopen(path, "rb");
        if (!f) {
            st = kv_err_set(err, KV_EIO, "%s: cannot open", path);
            break;
        }
        uint8_t h8[8];
        uint64_t hl = 0;
        int ok = fread(h8, 1, 8, f) == 8 && fseek(f, 0, SEEK_END) == 0;
        long size = ok ? ftell(f) : -1;
        for (int k = 7; k >= 0; k--) hl = (hl << 8) | h8[k];
        ok = ok && size >= 8 && hl <= (uint64_t)size - 8 && fseek(f, 8, SEEK_SET) == 0;
        char *hdr = ok ? malloc(hl + 1) : NULL;
        ok = ok && hdr && fread(hdr, 1, hl, f) == hl;
        fclose(f);
        if (!ok) {
            free(hdr);
            st = kv_err_set(err, KV_EFORMAT, "%s: cannot read the safetensors header", path);
            break;
        }
        char meta[64];
        int ml = snprintf(meta, sizeof meta, "\n%ld\n", size);
        ev_sha256_update(&c, names[i], strlen(names[i]));
        ev_sha256_update(&c, meta, (size_t)ml);
        ev_sha256_update(&c, hdr, hl);
        free(hdr);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (st) return st;
    uint8_t dg[32];
    ev_sha256_final(&c, dg);
    ev_sha256_hex(dg, hex);
    return KV_OK;
}
