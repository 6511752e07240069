/* train_loop.c — `kvant train`: pretraining a Qwen3-shaped model from token shards with
 * AdamW, warmup + cosine learning rate, gradient clipping, gradient accumulation,
 * held-out loss, checkpoints and exact resume.
 *
 * Pipeline stage: train. Everything that decides the numbers is a function of the
 * options and the step: the init (seed), the data order (a permutation of the
 * training windows per epoch, seeded by seed and epoch: the position in it is one
 * counter), the learning rate (the step). Kernels are thread-count independent. So a
 * checkpoint = parameters + AdamW moments + step + data position + tokens seen; a run
 * resumed from it reproduces the uninterrupted run bit for bit (tests/test_train.c kills
 * one with SIGKILL to check).
 *
 * Output directory (o->out):
 *   config.json, model.safetensors, tokenizer.json   HF checkpoint, rewritten at every
 *                                                    checkpoint and at the end
 *   train_state.bin   parameters, moments, counters (written last: the commit point)
 *   train_log.csv     step,tokens,lr,loss,grad_norm,val_loss,elapsed_s
 *   loss.svg          the loss curve (train, and held-out when evaluated)
 *   train_args.txt    the options, as a --config file
 * Every file is written atomically (temporary file + rename). */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvant/fileio.h"
#include "kvant/progress.h"
#include "kvant/train.h"

/* ---- options ----------------------------------------------------------------------- */

void kv_train_opts_default(kv_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->hidden = 256;
    o->layers = 6;
    o->heads = 4;
    o->kv_heads = 2;
    o->head_dim = 64;
    o->intermediate = 768;
    o->vocab = 0; /* from the data: tokenizer vocabulary rounded up to 128 */
    o->rope_theta = 1000000.0;
    o->init_std = 0.02;
    o->tie = 1;
    o->seq = 256;
    o->batch = 8;
    o->accum = 1;
    o->steps = 1000;
    o->warmup = 50;
    o->lr = 1e-3;
    o->min_lr = 1e-4;
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->eps = 1e-8;
    o->weight_decay = 0.1;
    o->clip = 1.0;
    o->seed = 1234;
    o->eval_every = 100;
    o->eval_batches = 8;
    o->ckpt_every = 100;
    o->log_every = 10;
    o->out_dtype = KV_DTYPE_BF16;
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *e;
    errno = 0;
    long long v = strtoll(s, &e, 10);
    if (!*s || *e || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_f64(const char *s, double lo, double hi, double *out) {
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (!*s || *e || errno || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

typedef struct {
    const char *key;
    char type; /* i: int64, f: double, s: string, b: bool */
    size_t off;
    double lo, hi;
} opt_def;

#define OI(k, f, lo, hi) {k, 'i', offsetof(kv_train_opts, f), lo, hi}
#define OF(k, f, lo, hi) {k, 'f', offsetof(kv_train_opts, f), lo, hi}
#define OS(k, f) {k, 's', offsetof(kv_train_opts, f), 0, 0}
#define OB(k, f) {k, 'b', offsetof(kv_train_opts, f), 0, 1}
static const opt_def OPTS[] = {
    OS("data", data), OS("tokenizer", tokenizer), OS("out", out),
    OI("hidden", hidden, 2, 1 << 16), OI("layers", layers, 1, 1024), OI("heads", heads, 1, 1024),
    OI("kv-heads", kv_heads, 1, 1024), OI("head-dim", head_dim, 2, 4096),
    OI("intermediate", intermediate, 1, 1 << 20), OI("vocab", vocab, 0, (int64_t)1 << 31),
    OF("rope-theta", rope_theta, 1, 1e12), OF("init-std", init_std, 0, 10), OB("tie", tie),
    OI("seq", seq, 2, 1 << 16), OI("batch", batch, 1, 1 << 16), OI("accum", accum, 1, 1 << 16),
    OI("steps", steps, 1, (int64_t)1 << 40), OI("warmup", warmup, 0, (int64_t)1 << 40),
    OF("lr", lr, 0, 10), OF("min-lr", min_lr, 0, 10), OF("beta1", beta1, 0, 0.999999),
    OF("beta2", beta2, 0, 0.9999999), OF("eps", eps, 0, 1), OF("weight-decay", weight_decay, 0, 10),
    OF("clip", clip, 0, 1e9), OI("seed", seed, 0, INT64_MAX),
    OI("eval-every", eval_every, 0, (int64_t)1 << 40), OI("eval-batches", eval_batches, 1, 1 << 20),
    OI("ckpt-every", ckpt_every, 0, (int64_t)1 << 40), OI("log-every", log_every, 1, (int64_t)1 << 40),
    OB("resume", resume), OB("quiet", quiet), OI("die-at-step", die_at_step, 0, (int64_t)1 << 40),
    {"dtype", 'd', 0, 0, 0},
};

kv_status kv_train_opts_set(kv_train_opts *o, const char *key, const char *value, kv_err *err) {
    char k[64];
    size_t n = strlen(key);
    if (n >= sizeof k) return kv_err_set(err, KV_EINVAL, "train: unknown option '%.40s...'", key);
    for (size_t i = 0; i <= n; i++) k[i] = key[i] == '_' ? '-' : key[i];
    if (!strcmp(k, "wd")) strcpy(k, "weight-decay");
    for (size_t i = 0; i < sizeof OPTS / sizeof OPTS[0]; i++) {
        const opt_def *d = &OPTS[i];
        if (strcmp(d->key, k)) continue;
        char *f = (char *)o + d->off;
        int bad = !value;
        if (!bad) switch (d->type) {
            case 'i': {
                int64_t v;
                bad = parse_i64(value, (int64_t)d->lo, d->hi >= 9.2e18 ? INT64_MAX : (int64_t)d->hi, &v);
                if (!bad) memcpy(f, &v, sizeof v);
                break;
            }
            case 'f': bad = parse_f64(value, d->lo, d->hi, (double *)(void *)f); break;
            case 's': {
                size_t l = strlen(value);
                bad = l == 0 || l >= 512;
                if (!bad) memcpy(f, value, l + 1);
                break;
            }
            case 'b': {
                int v = !strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes");
                bad = !v && strcmp(value, "0") && strcmp(value, "false") && strcmp(value, "no");
                if (!bad) *(int *)(void *)f = v;
                break;
            }
            case 'd':
                if (!strcmp(value, "bf16") || !strcmp(value, "bfloat16")) o->out_dtype = KV_DTYPE_BF16;
                else if (!strcmp(value, "f32") || !strcmp(value, "float32")) o->out_dtype = KV_DTYPE_F32;
                else bad = 1;
                break;
            }
        if (bad)
            return kv_err_set(err, KV_EINVAL, "train: option %s: bad value '%s'%s", k,
                              value ? value : "(none)",
                              d->type == 'd' ? " (bf16 or f32)" : d->type == 'b' ? " (0 or 1)" : "");
        return KV_OK;
    }
    return kv_err_set(err, KV_EINVAL, "train: unknown option '%s'", key);
}

/* s without leading blanks (space, tab) and trailing blanks (space, tab, CR), in place. */
static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    for (char *e = s + strlen(s); e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r');)
        *--e = 0;
    return s;
}

kv_status kv_train_opts_file(kv_train_opts *o, const char *path, kv_err *err) {
    char *buf;
    size_t len;
    kv_status st = kv_read_file(path, &buf, &len, err);
    if (st) return st;
    int line = 0;
    for (char *s = buf, *nl; s && *s && !st; s = nl ? nl + 1 : NULL) {
        nl = strchr(s, '\n');
        if (nl) *nl = 0;
        line++;
        char *h = strchr(s, '#');
        if (h) *h = 0;
        char *eq = strchr(s, '=');
        char *val = eq ? eq + 1 : NULL;
        if (eq) *eq = 0;
        char *key = trim(s);
        if (!*key) continue;
        if (!val) {
            st = kv_err_set(err, KV_EFORMAT, "%s:%d: expected 'key = value'", path, line);
            break;
        }
        val = trim(val);
        if (!strcmp(key, "config")) continue;
        if ((st = kv_train_opts_set(o, key, val, err))) kv_err_prefix(err, "%s:%d", path, line);
    }
    free(buf);
    return st;
}

static void write_args(FILE *f, const kv_train_opts *o) {
    for (size_t i = 0; i < sizeof OPTS / sizeof OPTS[0]; i++) {
        const opt_def *d = &OPTS[i];
        const char *p = (const char *)o + d->off;
        if (!strcmp(d->key, "die-at-step") || !strcmp(d->key, "resume") || !strcmp(d->key, "quiet")) continue;
        switch (d->type) {
        case 'i': fprintf(f, "%s = %lld\n", d->key, (long long)*(const int64_t *)(const void *)p); break;
        case 'f': fprintf(f, "%s = %.17g\n", d->key, *(const double *)(const void *)p); break;
        case 's': if (*p) fprintf(f, "%s = %s\n", d->key, p); break;
        case 'b': fprintf(f, "%s = %d\n", d->key, *(const int *)(const void *)p); break;
        default: fprintf(f, "dtype = %s\n", o->out_dtype == KV_DTYPE_BF16 ? "bf16" : "f32");
        }
    }
}

/* ---- data ------------------------------------------------------------------------- */

/* A split (train or val): its shards seen as one stream, cut into windows of seq + 1
 * tokens starting seq apart (window w = tokens [w seq, w seq + seq]). */
typedef struct {
    kv_shard *sh;
    int n;
    int64_t *start; /* [n + 1] first stream index of each shard */
    int64_t tokens, windows;
    /* training order: the permutation of the current epoch */
    int64_t *perm;
    int64_t perm_epoch;
} split;

static kv_status split_open(split *s, const char *dir, const char *prefix, int64_t seq, int64_t vocab,
                            kv_err *err) {
    memset(s, 0, sizeof *s);
    s->perm_epoch = -1;
    char path[1100];
    for (;;) {
        snprintf(path, sizeof path, "%s/%s_%04d.bin", dir, prefix, s->n);
        if (!kv_is_file(path)) break;
        kv_shard *nv = realloc(s->sh, (size_t)(s->n + 1) * sizeof *nv);
        int64_t *ns = realloc(s->start, (size_t)(s->n + 2) * sizeof *ns);
        if (nv) s->sh = nv;
        if (ns) s->start = ns;
        if (!nv || !ns) return kv_err_set(err, KV_ENOMEM, "train: out of memory (shard list)");
        kv_status st = kv_shard_open(path, &s->sh[s->n], err);
        if (st) return st;
        if (s->sh[s->n].vocab_size > vocab) {
            s->n++;
            return kv_err_set(err, KV_EINVAL, "%s: token vocabulary %lld exceeds the model's %lld", path,
                              (long long)s->sh[s->n - 1].vocab_size, (long long)vocab);
        }
        s->start[s->n] = s->tokens;
        s->tokens += s->sh[s->n].n_tokens;
        s->n++;
    }
    if (s->start) s->start[s->n] = s->tokens;
    s->windows = s->tokens > seq ? (s->tokens - 1) / seq : 0;
    return KV_OK;
}

static void split_close(split *s) {
    for (int i = 0; i < s->n; i++) kv_shard_close(&s->sh[i]);
    free(s->sh);
    free(s->start);
    free(s->perm);
}

static int32_t split_token(const split *s, int64_t i) {
    int k = 0;
    while (k + 1 < s->n && i >= s->start[k + 1]) k++;
    return kv_shard_id(&s->sh[k], i - s->start[k]);
}

/* ids[seq], tgt[seq] of window w */
static void split_window(const split *s, int64_t w, int64_t seq, int32_t *ids, int32_t *tgt) {
    int64_t a = w * seq;
    int32_t prev = split_token(s, a);
    for (int64_t j = 0; j < seq; j++) {
        int32_t nx = split_token(s, a + j + 1);
        ids[j] = prev;
        tgt[j] = nx;
        prev = nx;
    }
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Window of training sequence number pos: epoch = pos / windows, a Fisher-Yates
 * permutation seeded by (seed, epoch). */
static kv_status train_window(split *s, uint64_t seed, int64_t pos, int64_t *w, kv_err *err) {
    int64_t epoch = pos / s->windows, i = pos % s->windows;
    if (epoch != s->perm_epoch) {
        if (!s->perm) {
            s->perm = kv_malloc((size_t)s->windows * sizeof(int64_t), err, "train: data order");
            if (!s->perm) return KV_ENOMEM;
        }
        for (int64_t k = 0; k < s->windows; k++) s->perm[k] = k;
        uint64_t st = mix64(seed ^ 0x5851F42D4C957F2Dull) ^ mix64((uint64_t)epoch + 1);
        for (int64_t k = s->windows - 1; k > 0; k--) {
            st += 0x9E3779B97F4A7C15ull;
            int64_t j = (int64_t)(mix64(st) % (uint64_t)(k + 1));
            int64_t t = s->perm[k];
            s->perm[k] = s->perm[j];
            s->perm[j] = t;
        }
        s->perm_epoch = epoch;
    }
    *w = s->perm[i];
    return KV_OK;
}

/* ---- checkpoint state ---------------------------------------------------------------- */

#define STATE_MAGIC "KVTRAIN1"
/* Shape and data fields a resumed run must share with the checkpoint. */
typedef struct {
    char magic[8];
    int64_t version;
    int64_t hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, tie;
    int64_t seq, batch, accum;
    uint64_t seed;
    int64_t block_floats;
    /* progress */
    int64_t step, data_pos, tokens;
    double elapsed;
} state_hdr;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

static void hdr_from(state_hdr *h, const kv_train_opts *o, const kv_config *c, int64_t block) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, STATE_MAGIC, 8);
    h->version = 1;
    h->hidden = c->hidden_size;
    h->layers = c->n_layers;
    h->heads = c->n_heads;
    h->kv_heads = c->n_kv_heads;
    h->head_dim = c->head_dim;
    h->intermediate = c->intermediate_size;
    h->vocab = c->vocab_size;
    h->tie = c->tie_word_embeddings;
    h->seq = o->seq;
    h->batch = o->batch;
    h->accum = o->accum;
    h->seed = o->seed;
    h->block_floats = block;
}

/* | header | params | m1 | m2 | u64 FNV-1a of everything before | (native byte order:
 * a state file is for resuming on the machine type that wrote it) */
static kv_status state_save(const char *path, const state_hdr *h, const float *p, const float *m1,
                            const float *m2, kv_err *err) {
    kv_atomic_file af;
    kv_status st = kv_atomic_open(&af, path, err);
    if (st) return st;
    size_t n = (size_t)h->block_floats;
    uint64_t sum = 0xCBF29CE484222325ull;
    sum = fnv(sum, h, sizeof *h);
    sum = fnv(sum, p, n * sizeof(float));
    sum = fnv(sum, m1, n * sizeof(float));
    sum = fnv(sum, m2, n * sizeof(float));
    int ok = fwrite(h, sizeof *h, 1, af.fp) == 1 && fwrite(p, sizeof(float), n, af.fp) == n &&
             fwrite(m1, sizeof(float), n, af.fp) == n && fwrite(m2, sizeof(float), n, af.fp) == n &&
             fwrite(&sum, sizeof sum, 1, af.fp) == 1;
    if (!ok) {
        kv_atomic_abort(&af);
        return kv_err_set(err, KV_EIO, "%s: write failed: %s", path, strerror(errno));
    }
    return kv_atomic_commit(&af, err);
}

static kv_status state_load(const char *path, const state_hdr *want, state_hdr *h, float *p,
                            float *m1, float *m2, kv_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return kv_err_set(err, KV_ENOTFOUND, "%s: cannot resume: %s", path, strerror(errno));
    kv_status st = KV_OK;
    size_t n = (size_t)want->block_floats;
    uint64_t sum = 0xCBF29CE484222325ull, stored = 0;
    if (fread(h, sizeof *h, 1, f) != 1 || memcmp(h->magic, STATE_MAGIC, 8) || h->version != 1) {
        st = kv_err_set(err, KV_EFORMAT, "%s: not a kvant training state", path);
        goto done;
    }
#define SAME(field, what)                                                                      \
    if (h->field != want->field) {                                                             \
        st = kv_err_set(err, KV_EINVAL, "%s: cannot resume: %s is %lld in the checkpoint but %lld now", \
                        path, what, (long long)h->field, (long long)want->field);              \
        goto done;                                                                             \
    }
    SAME(hidden, "hidden") SAME(layers, "layers") SAME(heads, "heads") SAME(kv_heads, "kv-heads")
    SAME(head_dim, "head-dim") SAME(intermediate, "intermediate") SAME(vocab, "vocab")
    SAME(tie, "tie") SAME(seq, "seq") SAME(batch, "batch") SAME(accum, "accum") SAME(seed, "seed")
    SAME(block_floats, "the parameter count")
#undef SAME
    if (fread(p, sizeof(float), n, f) != n || fread(m1, sizeof(float), n, f) != n ||
        fread(m2, sizeof(float), n, f) != n || fread(&stored, sizeof stored, 1, f) != 1) {
        st = kv_err_set(err, KV_EFORMAT, "%s: truncated training state", path);
        goto done;
    }
    sum = fnv(sum, h, sizeof *h);
    sum = fnv(sum, p, n * sizeof(float));
    sum = fnv(sum, m1, n * sizeof(float));
    sum = fnv(sum, m2, n * sizeof(float));
    if (sum != stored) st = kv_err_set(err, KV_EFORMAT, "%s: checksum mismatch (corrupt state)", path);
done:
    fclose(f);
    return st;
}

/* ---- loss log and plot ------------------------------------------------------------ */

typedef struct {
    int64_t step;
    double loss, val; /* val NAN when not evaluated */
} point;

typedef struct {
    point *v;
    int64_t n, cap;
} curve;

static int curve_push(curve *c, int64_t step, double loss, double val) {
    if (c->n == c->cap) {
        int64_t nc = c->cap ? 2 * c->cap : 256;
        point *nv = realloc(c->v, (size_t)nc * sizeof *nv);
        if (!nv) return -1;
        c->v = nv;
        c->cap = nc;
    }
    c->v[c->n++] = (point){step, loss, val};
    return 0;
}

#define LOG_HEADER "step,tokens,lr,loss,grad_norm,val_loss,elapsed_s\n"

/* Keep the complete lines of the log with step <= upto (a killed run may have logged
 * steps after its last checkpoint, or half a line); rebuild the curve from them. */
static kv_status log_truncate(const char *path, int64_t upto, curve *cv, kv_err *err) {
    char *buf = NULL;
    size_t len = 0;
    kv_status st = kv_is_file(path) ? kv_read_file(path, &buf, &len, err) : KV_OK;
    if (st) return st;
    size_t cap = len + sizeof LOG_HEADER, w = 0;
    char *out = malloc(cap);
    if (!out) {
        free(buf);
        return kv_err_set(err, KV_ENOMEM, "train: out of memory (log)");
    }
    memcpy(out, LOG_HEADER, sizeof LOG_HEADER - 1);
    w = sizeof LOG_HEADER - 1;
    for (char *s = buf, *nl; s && (nl = strchr(s, '\n')); s = nl + 1) {
        long long step, tokens;
        double lr, loss, gn;
        if (sscanf(s, "%lld,%lld,%lf,%lf,%lf,", &step, &tokens, &lr, &loss, &gn) != 5 || step > upto)
            continue;
        const char *vf = s;
        for (int k = 0; k < 5 && vf; k++) vf = strchr(vf, ',') ? strchr(vf, ',') + 1 : NULL;
        double val = vf && *vf != ',' ? strtod(vf, NULL) : NAN;
        curve_push(cv, step, loss, val);
        memcpy(out + w, s, (size_t)(nl + 1 - s));
        w += (size_t)(nl + 1 - s);
    }
    st = kv_write_file_atomic(path, out, w, err);
    free(out);
    free(buf);
    return st;
}

/* The loss curve as SVG: train loss (line), held-out loss (dots + line), log-scale x
 * would hide warmup, so linear axes with the y range clipped to the curve's tail. */
static kv_status write_svg(const char *path, const curve *cv, kv_err *err) {
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    if (!f) return kv_err_set(err, KV_ENOMEM, "train: out of memory (plot)");
    const double W = 800, Hh = 480, L = 70, R = 20, T = 30, B = 50;
    int64_t x1 = cv->n ? cv->v[cv->n - 1].step : 1;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = cv->n / 20; i < cv->n; i++) { /* skip the first 5%: the initial drop */
        double a = cv->v[i].loss, b = cv->v[i].val;
        if (isfinite(a)) lo = fmin(lo, a), hi = fmax(hi, a);
        if (isfinite(b)) lo = fmin(lo, b), hi = fmax(hi, b);
    }
    if (!(hi > lo)) lo = 0, hi = lo + 1;
    double pad = 0.05 * (hi - lo);
    lo -= pad;
    hi += pad;
#define PX(st) (L + (W - L - R) * (double)(st) / (double)(x1 > 0 ? x1 : 1))
#define PY(v) (T + (Hh - T - B) * (1.0 - (fmin(fmax((v), lo), hi) - lo) / (hi - lo)))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, Hh);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"18\" text-anchor=\"middle\">kvant train: loss (nats/token)</text>\n", W / 2);
    for (int k = 0; k <= 5; k++) {
        double v = lo + (hi - lo) * k / 5.0, y = PY(v);
        fprintf(f, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.3f</text>\n",
                L, W - R, y, y, L - 6, y + 4, v);
        int64_t st = x1 * k / 5;
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%lld</text>\n", PX(st),
                Hh - B + 18, (long long)st);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">step</text>\n", W / 2, Hh - 10);
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1\" points=\"");
    for (int64_t i = 0; i < cv->n; i++)
        if (isfinite(cv->v[i].loss)) fprintf(f, "%.1f,%.1f ", PX(cv->v[i].step), PY(cv->v[i].loss));
    fprintf(f, "\"/>\n<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"");
    for (int64_t i = 0; i < cv->n; i++)
        if (isfinite(cv->v[i].val)) fprintf(f, "%.1f,%.1f ", PX(cv->v[i].step), PY(cv->v[i].val));
    fprintf(f, "\"/>\n");
    for (int64_t i = 0; i < cv->n; i++)
        if (isfinite(cv->v[i].val))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d62728\"/>\n", PX(cv->v[i].step),
                    PY(cv->v[i].val));
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#1f77b4\">train</text>"
               "<text x=\"%.0f\" y=\"%.0f\" fill=\"#d62728\">held-out</text>\n</svg>\n",
            W - R - 120, T + 14, W - R - 70, T + 14);
#undef PX
#undef PY
    fclose(f);
    kv_status st = kv_write_file_atomic(path, s, len, err);
    free(s);
    return st;
}

/* ---- the loop ----------------------------------------------------------------------- */

static void fmt_time(char *b, size_t cap, double s) {
    if (!(s >= 0) || s > 1e8) snprintf(b, cap, "?");
    else if (s >= 3600) snprintf(b, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(b, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

/* "key": number from a small JSON text (the data manifest), or -1 */
static int64_t json_int(const char *js, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(js, k);
    return p ? strtoll(p + strlen(k), NULL, 10) : -1;
}

static kv_status eval_loss(kv_tmodel *m, split *val, const kv_train_opts *o, int32_t *ids,
                           int32_t *tgt, double *out, kv_err *err) {
    int64_t nw = val->windows < o->eval_batches * o->batch ? val->windows : o->eval_batches * o->batch;
    /* Windows spread evenly over the whole split: the split is the held-out tail of
     * every input file in order, so its first windows would all be one language. */
    int64_t stride = nw > 0 ? val->windows / nw : 1;
    double sum = 0;
    int64_t nb = 0;
    for (int64_t w0 = 0; w0 + o->batch <= nw; w0 += o->batch, nb++) {
        for (int64_t b = 0; b < o->batch; b++)
            split_window(val, (w0 + b) * stride, o->seq, ids + b * o->seq, tgt + b * o->seq);
        double l;
        kv_status st = kv_tmodel_forward(m, ids, tgt, o->batch, o->seq, &l, err);
        if (st) return st;
        sum += l;
    }
    *out = nb ? sum / (double)nb : NAN;
    return KV_OK;
}

kv_status kv_train_run(const kv_train_opts *o, kv_err *err) {
    if (!o->data[0] || !o->out[0])
        return kv_err_set(err, KV_EINVAL, "train: --data DIR and --out DIR are required");
    kv_status st = KV_OK;
    kv_tmodel *m = NULL;
    split tr = {0}, va = {0};
    float *m1 = NULL, *m2 = NULL;
    int32_t *ids = NULL, *tgt = NULL;
    char *man = NULL, *tokjson = NULL;
    FILE *logf = NULL;
    curve cv = {0};
    char path[1200], tokpath[1200];
    size_t len;

    /* data manifest: vocabulary, separator, tokenizer */
    snprintf(path, sizeof path, "%s/manifest.json", o->data);
    if ((st = kv_read_file(path, &man, &len, err))) goto done;
    int64_t tok_vocab = json_int(man, "vocab_size"), sep = json_int(man, "sep_id");
    if (tok_vocab <= 0 || sep < 0) {
        st = kv_err_set(err, KV_EFORMAT, "%s: no vocab_size / sep_id", path);
        goto done;
    }
    int64_t vocab = o->vocab ? o->vocab : (tok_vocab + 127) / 128 * 128;
    if (vocab < tok_vocab) {
        st = kv_err_set(err, KV_EINVAL, "train: --vocab %lld is smaller than the tokenizer's %lld",
                        (long long)vocab, (long long)tok_vocab);
        goto done;
    }
    if (o->tokenizer[0]) snprintf(tokpath, sizeof tokpath, "%s%s", o->tokenizer,
                                  kv_is_dir(o->tokenizer) ? "/tokenizer.json" : "");
    else snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", o->data);
    if ((st = kv_read_file(tokpath, &tokjson, &len, err))) goto done;

    kv_config c;
    memset(&c, 0, sizeof c);
    c.arch = KV_ARCH_QWEN3;
    snprintf(c.arch_name, sizeof c.arch_name, "Qwen3ForCausalLM");
    c.hidden_size = o->hidden;
    c.intermediate_size = o->intermediate;
    c.n_layers = o->layers;
    c.n_heads = o->heads;
    c.n_kv_heads = o->kv_heads;
    c.head_dim = o->head_dim;
    c.vocab_size = vocab;
    c.max_position_embeddings = o->seq > 4096 ? o->seq : 4096;
    c.rms_norm_eps = 1e-6;
    c.rope_theta = o->rope_theta;
    c.rope_type = KV_ROPE_DEFAULT;
    c.tie_word_embeddings = o->tie;
    c.qk_norm = 1;
    c.bos_token_id = c.eos_token_id = sep;
    snprintf(c.hidden_act, sizeof c.hidden_act, "silu");
    if ((st = kv_tmodel_new(&c, &m, err))) goto done;
    const int64_t nf = kv_tmodel_block_floats(m);
    m1 = kv_calloc((size_t)nf, sizeof(float), err, "train: AdamW first moments");
    m2 = kv_calloc((size_t)nf, sizeof(float), err, "train: AdamW second moments");
    ids = kv_malloc((size_t)(o->batch * o->seq) * sizeof(int32_t), err, "train: batch");
    tgt = kv_malloc((size_t)(o->batch * o->seq) * sizeof(int32_t), err, "train: batch");
    if (!m1 || !m2 || !ids || !tgt) {
        st = KV_ENOMEM;
        goto done;
    }
    if ((st = split_open(&tr, o->data, "train", o->seq, vocab, err)) ||
        (st = split_open(&va, o->data, "val", o->seq, vocab, err)))
        goto done;
    if (tr.windows < 1) {
        st = kv_err_set(err, KV_EINVAL, "%s: %lld training tokens: fewer than one window of %lld",
                        o->data, (long long)tr.tokens, (long long)o->seq + 1);
        goto done;
    }
    if (mkdir(o->out, 0777) && errno != EEXIST) {
        st = kv_err_set(err, KV_EIO, "%s: mkdir: %s", o->out, strerror(errno));
        goto done;
    }

    state_hdr want, h;
    hdr_from(&want, o, &c, nf);
    h = want;
    char spath[1200], lpath[1200], gpath[1200];
    snprintf(spath, sizeof spath, "%s/train_state.bin", o->out);
    snprintf(lpath, sizeof lpath, "%s/train_log.csv", o->out);
    snprintf(gpath, sizeof gpath, "%s/loss.svg", o->out);
    if (o->resume && kv_is_file(spath)) {
        if ((st = state_load(spath, &want, &h, kv_tmodel_params(m), m1, m2, err))) goto done;
        if ((st = log_truncate(lpath, h.step, &cv, err))) goto done;
    } else {
        if (!o->resume && kv_is_file(spath)) {
            st = kv_err_set(err, KV_EINVAL, "%s: a training state exists: pass --resume to continue it "
                            "or choose another --out", spath);
            goto done;
        }
        kv_tmodel_init_random(m, o->seed, o->init_std);
        h.step = h.data_pos = h.tokens = 0;
        h.elapsed = 0;
        if ((st = kv_write_file_atomic(lpath, LOG_HEADER, sizeof LOG_HEADER - 1, err))) goto done;
    }
    {
        char *a = NULL;
        size_t al = 0;
        FILE *af = open_memstream(&a, &al);
        if (!af) {
            st = kv_err_set(err, KV_ENOMEM, "train: out of memory");
            goto done;
        }
        write_args(af, o);
        fclose(af);
        snprintf(path, sizeof path, "%s/train_args.txt", o->out);
        st = kv_write_file_atomic(path, a, al, err);
        free(a);
        if (st) goto done;
        snprintf(path, sizeof path, "%s/tokenizer.json", o->out);
        if ((st = kv_write_file_atomic(path, tokjson, len, err))) goto done;
    }
    logf = fopen(lpath, "a");
    if (!logf) {
        st = kv_err_set(err, KV_EIO, "%s: %s", lpath, strerror(errno));
        goto done;
    }

    kv_adamw aw = {o->beta1, o->beta2, o->eps, o->weight_decay};
    const int64_t tok_per_step = o->batch * o->seq * o->accum;
    if (!o->quiet)
        fprintf(stderr, "train: %lld parameters (hidden %lld, %lld layers, %lld/%lld heads x %lld, "
                "ffn %lld, vocab %lld%s), %lld train tokens (%lld windows), %lld held-out, "
                "%lld tokens/step, %d threads%s\n",
                (long long)kv_tmodel_n_params(m), (long long)o->hidden, (long long)o->layers,
                (long long)o->heads, (long long)o->kv_heads, (long long)o->head_dim,
                (long long)o->intermediate, (long long)vocab, o->tie ? ", tied" : "",
                (long long)tr.tokens, (long long)tr.windows, (long long)va.tokens,
                (long long)tok_per_step, omp_get_max_threads(),
                h.step ? " (resumed)" : "");
    const double t_start = kv_now() - h.elapsed;
    double t_mark = kv_now();
    int64_t tok_mark = h.tokens;
    while (h.step < o->steps) {
        const int64_t step = h.step + 1;
        kv_tmodel_zero_grad(m);
        double loss = 0;
        for (int64_t a = 0; a < o->accum; a++) {
            for (int64_t b = 0; b < o->batch; b++) {
                int64_t w;
                if ((st = train_window(&tr, o->seed, h.data_pos++, &w, err))) goto done;
                split_window(&tr, w, o->seq, ids + b * o->seq, tgt + b * o->seq);
            }
            double l;
            if ((st = kv_tmodel_forward(m, ids, tgt, o->batch, o->seq, &l, err)) ||
                (st = kv_tmodel_backward(m, 1.0 / (double)o->accum, err)))
                goto done;
            loss += l;
        }
        loss /= (double)o->accum;
        if (o->die_at_step == step) raise(SIGKILL); /* testing aid: a crash mid-step */
        double gn = kv_tmodel_grad_norm(m);
        if (!isfinite(loss) || !isfinite(gn)) {
            st = kv_err_set(err, KV_ERANGE, "train: step %lld: loss %g, gradient norm %g: diverged "
                            "(lower --lr?)", (long long)step, loss, gn);
            goto done;
        }
        if (o->clip > 0 && gn > o->clip) kv_tmodel_scale_grads(m, (float)(o->clip / gn));
        double lr = kv_lr_at(step, o->warmup, o->steps, o->lr, o->min_lr);
        kv_adamw_step(m, m1, m2, step, lr, &aw);
        h.step = step;
        h.tokens += tok_per_step;
        double val = NAN;
        if ((o->eval_every && step % o->eval_every == 0) || step == o->steps)
            if (va.windows >= o->batch && (st = eval_loss(m, &va, o, ids, tgt, &val, err))) goto done;
        double now = kv_now();
        h.elapsed = now - t_start;
        fprintf(logf, "%lld,%lld,%.9g,%.17g,%.17g,", (long long)step, (long long)h.tokens, lr, loss, gn);
        if (isfinite(val)) fprintf(logf, "%.17g", val);
        fprintf(logf, ",%.3f\n", h.elapsed);
        curve_push(&cv, step, loss, val);
        if (!o->quiet && (step % o->log_every == 0 || step == o->steps || isfinite(val))) {
            double rate = now > t_mark ? (double)(h.tokens - tok_mark) / (now - t_mark) : 0;
            char eta[32], el[32], vs[32] = "";
            fmt_time(eta, sizeof eta, rate > 0 ? (double)((o->steps - step) * tok_per_step) / rate : -1);
            fmt_time(el, sizeof el, h.elapsed);
            if (isfinite(val)) snprintf(vs, sizeof vs, " | val %.4f", val);
            fprintf(stderr, "step %lld/%lld | loss %.4f%s | lr %.2e | norm %.3f | %.0f tok/s | %s elapsed, ETA %s\n",
                    (long long)step, (long long)o->steps, loss, vs, lr, gn, rate, el, eta);
            t_mark = now;
            tok_mark = h.tokens;
        }
        if ((o->ckpt_every && step % o->ckpt_every == 0) || step == o->steps) {
            /* log first (fsync'd), then the HF checkpoint, then the state: the commit point */
            if (fflush(logf) || fsync(fileno(logf))) {
                st = kv_err_set(err, KV_EIO, "%s: %s", lpath, strerror(errno));
                goto done;
            }
            if ((st = kv_tmodel_export_hf(m, o->out, o->out_dtype, sep, sep, err)) ||
                (st = write_svg(gpath, &cv, err)) ||
                (st = state_save(spath, &h, kv_tmodel_params(m), m1, m2, err)))
                goto done;
        }
    }
    if (!o->quiet) {
        char el[32];
        fmt_time(el, sizeof el, h.elapsed);
        fprintf(stderr, "train: done: %lld steps, %lld tokens in %s; checkpoint in %s\n",
                (long long)h.step, (long long)h.tokens, el, o->out);
    }
done:
    if (logf) fclose(logf);
    free(cv.v);
    split_close(&tr);
    split_close(&va);
    free(m1);
    free(m2);
    free(ids);
    free(tgt);
    free(man);
    free(tokjson);
    kv_tmodel_free(m);
    return st;
}
