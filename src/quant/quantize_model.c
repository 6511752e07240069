/* quantize_model.c — quantize a Hugging Face checkpoint directory into one of quant.h's
 * packed formats (see include/kvant/quantize.h). Issue 3, points 2, 3, 7.
 *
 * Pipeline stage: quantize. The flow of one run:
 *
 *   check paths ─▶ load config.json + mmap weights ─▶ plan (every tensor: quantize or
 *   copy; every group size checked before anything is written) ─▶ temp dir beside
 *   out_dir ─▶ safetensors (st_writer; a quantized layer is produced by a callback
 *   when the writer reaches its first part, so one layer's packed bytes are in memory
 *   at a time) ─▶ config.json + quantization_config, tokenizer files ─▶ rename the
 *   temp dir into place.
 *
 * Threads: kv_quantize_tensor splits a weight into row blocks aligned to
 * kv_quant_row_align; each OpenMP thread converts its block to f32, quantizes it as a
 * small tensor of its own and copies the packed bytes into the layer's tensor. Rows are
 * quantized independently, so the result is byte-identical to kv_quantize_ref on the
 * whole f32 matrix, whatever the thread count (tests/test_quantize_model.c checks). */
#include "kvant/quantize.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvant/config.h"
#include "kvant/fileio.h"
#include "kvant/safetensors.h"
#include "kvant/sbuf.h"
#include "kvant/st_writer.h"

/* ---- methods ---- */

static const char *method_names[KV_QMETHOD_COUNT] = {"rtn"};

kv_status kv_qmethod_parse(const char *s, kv_qmethod *out, kv_err *err) {
    for (int m = 0; s && m < KV_QMETHOD_COUNT; m++)
        if (strcmp(s, method_names[m]) == 0) {
            if (out) *out = (kv_qmethod)m;
            return KV_OK;
        }
    return kv_err_set(err, KV_EINVAL, "quantize: unknown method '%.64s'; known methods: rtn",
                      s ? s : "");
}

const char *kv_qmethod_name(kv_qmethod m) {
    return (unsigned)m < KV_QMETHOD_COUNT ? method_names[m] : "?";
}

/* ---- which tensors are quantized ---- */

int kv_quantize_is_target(const char *name) {
    static const char *pre = "model.layers.";
    static const char *const sub[] = {
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
        "self_attn.o_proj.weight", "mlp.gate_proj.weight",    "mlp.up_proj.weight",
        "mlp.down_proj.weight"};
    if (!name || strncmp(name, pre, strlen(pre)) != 0) return 0;
    const char *p = name + strlen(pre);
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    if (*p++ != '.') return 0;
    for (size_t k = 0; k < sizeof sub / sizeof sub[0]; k++)
        if (strcmp(p, sub[k]) == 0) return 1;
    return 0;
}

/* ---- one tensor ---- */

/* Rows per block: a multiple of the alignment, about 1 MB of f32 per block. */
static int64_t block_rows(int64_t n_in, int64_t align, int64_t n_out) {
    int64_t rb = ((int64_t)262144 / n_in) / align * align;
    if (rb < align) rb = align;
    if (rb > n_out) rb = n_out;
    return rb;
}

/* Copy the packed rows of `sub` (rows [r0, r0 + sub->n_out) of the layer) into qt. */
static void scatter_rows(kv_qtensor *qt, const kv_qtensor *sub, int64_t r0) {
    unsigned char *dst = qt->owned;
    const unsigned char *src = sub->owned;
    const int64_t n = sub->n_out, n_out = qt->n_out;
    if (qt->qf.fmt == KV_QFMT_INT) {
        const int64_t B = qt->qf.bits;
        /* qweight I32 [n_in*B/32, n_out]: row o is column o */
        const kv_qpart *pw = &qt->part[0], *sw = &sub->part[0];
        for (int64_t k = 0; k < pw->shape[0]; k++)
            memcpy(dst + pw->offset + ((size_t)(k * n_out + r0)) * 4,
                   src + sw->offset + (size_t)(k * n) * 4, (size_t)n * 4);
        /* qzeros I32 [ng, zw]: r0 % 32 == 0, so row r0 starts at word r0*B/32 */
        const kv_qpart *pz = &qt->part[1], *sz = &sub->part[1];
        for (int64_t g = 0; g < pz->shape[0]; g++)
            memcpy(dst + pz->offset + (size_t)(g * pz->shape[1] + r0 * B / 32) * 4,
                   src + sz->offset + (size_t)(g * sz->shape[1]) * 4, (size_t)sz->shape[1] * 4);
        /* scales F16 [ng, n_out] */
        const kv_qpart *ps = &qt->part[2], *ss = &sub->part[2];
        for (int64_t g = 0; g < ps->shape[0]; g++)
            memcpy(dst + ps->offset + (size_t)(g * n_out + r0) * 2,
                   src + ss->offset + (size_t)(g * n) * 2, (size_t)n * 2);
        /* g_idx was filled by kv_qtensor_alloc */
    } else {
        /* _blocks U8 [n_out, ng, 16], _scales U8 [n_out, ng]: rows are contiguous */
        for (int p = 0; p < 2; p++) {
            size_t row_bytes = sub->part[p].nbytes / (size_t)n;
            memcpy(dst + qt->part[p].offset + (size_t)r0 * row_bytes, src + sub->part[p].offset,
                   sub->part[p].nbytes);
        }
    }
}

/* Convert rows [r0, r1) of t to f32 and check they are finite. */
static kv_status rows_to_f32(const kv_tensor *t, int64_t r0, int64_t r1, float *buf,
                             const char *name, const char *fname, kv_err *err) {
    const int64_t n_in = t->shape[1];
    const size_t es = kv_dtype_size(t->dtype);
    kv_to_f32(t->dtype, (const unsigned char *)t->data + (size_t)(r0 * n_in) * es, buf,
              (size_t)((r1 - r0) * n_in));
    for (int64_t i = 0; i < (r1 - r0) * n_in; i++)
        if (!isfinite(buf[i]))
            return kv_err_set(err, KV_EINVAL, "%s: %s: non-finite weight %s at [%lld, %lld]",
                              name, fname, isnan(buf[i]) ? "NaN" : "Inf",
                              (long long)(r0 + i / n_in), (long long)(i % n_in));
    return KV_OK;
}

kv_status kv_quantize_tensor(const kv_tensor *t, kv_qformat qf, const kv_quant_opts *opts,
                             kv_qtensor *qt, const char *name, kv_err *err) {
    if (!qt) return kv_err_set(err, KV_EINVAL, "quantize: NULL output tensor");
    memset(qt, 0, sizeof *qt);
    if (!t || !t->data) return kv_err_set(err, KV_EINVAL, "quantize: NULL input tensor");
    if (!name) name = t->name ? t->name : "(unnamed tensor)";
    if (t->dtype != KV_DTYPE_F32 && t->dtype != KV_DTYPE_F16 && t->dtype != KV_DTYPE_BF16)
        return kv_err_set(err, KV_EUNSUPPORTED,
                          "%s: dtype %s cannot be quantized (F32, F16 or BF16 expected)", name,
                          kv_dtype_name(t->dtype));
    if (t->ndim != 2)
        return kv_err_set(err, KV_EINVAL, "%s: a linear weight must have 2 dims, not %d", name,
                          t->ndim);
    kv_status st = kv_qtensor_init(qt, qf, t->shape[0], t->shape[1], name, err);
    if (!st) st = kv_qtensor_alloc(qt, err);
    if (st) {
        kv_qtensor_free(qt);
        return st;
    }
    char fname[32];
    kv_qformat_name(qf, fname, sizeof fname);
    const int64_t n_out = qt->n_out, n_in = qt->n_in;
    const int64_t rb = block_rows(n_in, kv_quant_row_align(qf), n_out);
    const int64_t nb = (n_out + rb - 1) / rb;
    int64_t bad_block = INT64_MAX; /* lowest failing block: its error is reported */
    kv_status bad_st = KV_OK;

#pragma omp parallel
    {
        kv_err lerr = {0};
        kv_status lst = KV_OK;
        float *buf = malloc((size_t)(rb * n_in) * sizeof(float));
        if (!buf)
            lst = kv_err_set(&lerr, KV_ENOMEM, "%s: out of memory allocating %zu bytes of rows",
                             name, (size_t)(rb * n_in) * sizeof(float));
        int64_t my_bad = INT64_MAX;
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nb; b++) {
            if (my_bad != INT64_MAX) continue;
            if (!buf) {
                my_bad = b;
                continue;
            }
            int64_t r0 = b * rb, r1 = r0 + rb < n_out ? r0 + rb : n_out;
            kv_qtensor sub;
            memset(&sub, 0, sizeof sub);
            lst = rows_to_f32(t, r0, r1, buf, name, fname, &lerr);
            if (!lst) lst = kv_qtensor_init(&sub, qf, r1 - r0, n_in, name, &lerr);
            if (!lst) lst = kv_qtensor_alloc(&sub, &lerr);
            if (!lst) {
                lst = kv_quantize_ref(&sub, buf, 0, r1 - r0, opts, name, &lerr);
                if (lst && r0 > 0) {
                    /* the sub-tensor counts rows from r0 */
                    size_t k = strlen(lerr.msg);
                    snprintf(lerr.msg + k, sizeof lerr.msg - k, " (rows counted from row %lld)",
                             (long long)r0);
                }
            }
            if (!lst) scatter_rows(qt, &sub, r0);
            kv_qtensor_free(&sub);
            if (lst) my_bad = b;
        }
        free(buf);
#pragma omp critical(kv_quantize_tensor_err)
        if (my_bad < bad_block) {
            bad_block = my_bad;
            bad_st = lst;
            if (err) *err = lerr;
        }
    }
    if (bad_block != INT64_MAX) {
        kv_qtensor_free(qt);
        return bad_st ? bad_st : KV_EIO;
    }
    return KV_OK;
}

/* ---- paths ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Remove a directory tree (files we wrote, or the out_dir being replaced). */
static int rm_tree(const char *path) {
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Entries of a directory other than "." and ".."; -1 if it cannot be read. */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

/* 1 if dir is empty or holds config.json: a directory --force may replace. */
static int replaceable_dir(const char *dir) {
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/config.json", dir);
    return kv_is_file(p) || count_entries(dir) == 0;
}

/* ---- the run's state ---- */

typedef struct {
    const kv_tensor *t; /* input weight */
    kv_qtensor shape;   /* part layout (no data) */
} qlayer;

typedef struct job job;

typedef struct {
    job *j;
    int layer, part;
} part_ref;

struct job {
    const kv_quantize_opts *opts;
    qlayer *layers;
    int n_layers;
    int cur;            /* layer held in cur_qt, -1 none */
    kv_qtensor cur_qt;
    kv_progress *progress;
    char plabel[96];
    int64_t bytes_done, unit_div;
    double q_seconds;
};

static kv_status part_stream(void *ctx, int index, kv_st_sink *sink, kv_err *err) {
    (void)index;
    part_ref *r = ctx;
    job *j = r->j;
    qlayer *L = &j->layers[r->layer];
    if (j->cur != r->layer) {
        kv_qtensor_free(&j->cur_qt);
        j->cur = -1;
        double t0 = kv_now();
        kv_status st = kv_quantize_tensor(L->t, j->opts->qf, &j->opts->qopts, &j->cur_qt,
                                          L->t->name, err);
        j->q_seconds += kv_now() - t0;
        if (st) return st;
        j->cur = r->layer;
        j->bytes_done += (int64_t)L->t->nbytes;
        if (j->progress) {
            snprintf(j->plabel, sizeof j->plabel, "quantize layer %d/%d", r->layer + 1,
                     j->n_layers);
            j->progress->label = j->plabel;
            if (r->layer + 1 < j->n_layers)
                kv_progress_update(j->progress, j->bytes_done / j->unit_div);
        }
    }
    const kv_qpart *p = &j->cur_qt.part[r->part];
    kv_status st = kv_st_sink_write(sink, j->cur_qt.data[r->part], p->nbytes, err);
    if (r->part == j->cur_qt.n_parts - 1) {
        kv_qtensor_free(&j->cur_qt);
        j->cur = -1;
    }
    return st;
}

static int cmp_tensor_name(const void *a, const void *b) {
    const kv_tensor *x = *(const kv_tensor *const *)a, *y = *(const kv_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* The module a tensor belongs to: its name without the last ".component". */
static size_t module_len(const char *name) {
    const char *d = strrchr(name, '.');
    return d ? (size_t)(d - name) : strlen(name);
}

/* ---- config.json ---- */

/* The input config.json text with "quantization_config" appended as the last key;
 * the rest of the text is kept byte for byte. */
static kv_status make_config(const char *in_path, const char *text, size_t len,
                             const kv_quantize_opts *o, const kv_tensor *const *copied,
                             int n_copied, const kv_tensor *const *quant, int n_quant,
                             kv_sbuf *out, kv_err *err) {
    size_t e = len;
    while (e > 0 && (text[e - 1] == ' ' || text[e - 1] == '\n' || text[e - 1] == '\r' ||
                     text[e - 1] == '\t'))
        e--;
    if (e == 0 || text[e - 1] != '}')
        return kv_err_set(err, KV_EFORMAT, "%s: does not end with a JSON object", in_path);
    size_t c = e - 1; /* the closing brace */
    size_t k = c;
    while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '\n' || text[k - 1] == '\r' ||
                     text[k - 1] == '\t'))
        k--;
    int empty = k > 0 && text[k - 1] == '{';
    kv_sbuf_put(out, text, k);
    char fname[32];
    kv_qformat_name(o->qf, fname, sizeof fname);
    kv_sbuf_printf(out, "%s\n  \"quantization_config\": {\n", empty ? "" : ",");
    kv_sbuf_printf(out, "    \"quant_method\": \"kvant\",\n    \"format\": \"%s\",\n", fname);
    kv_sbuf_printf(out, "    \"bits\": %d,\n    \"group_size\": %d,\n", o->qf.bits, o->qf.group);
    if (o->qf.fmt == KV_QFMT_INT)
        kv_sbuf_printf(out, "    \"sym\": false,\n    \"desc_act\": false,\n"
                       "    \"checkpoint_format\": \"gptq_v2\",\n"
                       "    \"pack_dtype\": \"int32\",\n");
    else
        kv_sbuf_printf(out, "    \"block_size\": %d,\n    \"scale_format\": \"e8m0\",\n", KV_MX_BLOCK);
    kv_sbuf_printf(out, "    \"method\": \"%s\",\n    \"calibration\": null,\n",
              kv_qmethod_name(o->method));
    kv_sbuf_printf(out, "    \"mx_scale\": \"%s\",\n",
              o->qopts.mx_scale == KV_MX_SCALE_MSE ? "mse" : "spec");
    kv_sbuf_printf(out, "    \"kvant_version\": \"%s\",\n", KVANT_VERSION);
    kv_sbuf_printf(out, "    \"quantized_modules\": %d,\n", n_quant);
    kv_sbuf_printf(out, "    \"modules_to_not_convert\": [");
    /* modules of the copied tensors, except modules that are quantized (their bias
     * stays in full precision, but the module itself is converted); both lists are
     * sorted by name, so duplicates are adjacent */
    const char *prev = NULL;
    size_t prev_len = 0;
    int first = 1, qi = 0;
    for (int i = 0; i < n_copied; i++) {
        const char *nm = copied[i]->name;
        size_t ml = module_len(nm);
        if (prev && ml == prev_len && strncmp(prev, nm, ml) == 0) continue;
        int is_q = 0;
        for (qi = 0; qi < n_quant; qi++) {
            const char *qn = quant[qi]->name;
            if (module_len(qn) == ml && strncmp(qn, nm, ml) == 0) {
                is_q = 1;
                break;
            }
        }
        prev = nm;
        prev_len = ml;
        if (is_q) continue;
        kv_sbuf_put(out, first ? "\n      " : ",\n      ", first ? 7 : 8);
        kv_sbuf_json_str(out, nm, ml);
        first = 0;
    }
    kv_sbuf_printf(out, "%s]\n  }\n}\n", first ? "" : "\n    ");
    if (out->oom)
        return kv_err_set(err, KV_ENOMEM, "%s: out of memory building config.json", in_path);
    return KV_OK;
}

static const char *const copy_files[] = {
    "tokenizer.json",      "tokenizer_config.json", "special_tokens_map.json",
    "generation_config.json", "vocab.json",         "merges.txt",
    "tokenizer.model",     "added_tokens.json",     "chat_template.jinja",
    "chat_template.json",
};

static kv_status copy_file(const char *from, const char *to, kv_err *err) {
    char *buf = NULL;
    size_t len = 0;
    kv_status st = kv_read_file(from, &buf, &len, err);
    if (!st) st = kv_write_file_atomic(to, buf, len, err);
    free(buf);
    return st;
}

/* ---- out_dir checks and the final rename ---- */

/* out_dir with trailing slashes removed; its last component must name a directory
 * we can create ("", "." and ".." cannot be renamed into place). */
static kv_status norm_out(const char *out_dir, char *out, size_t cap, kv_err *err) {
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/') n--;
    if (n + 32 >= cap)
        return kv_err_set(err, KV_EINVAL, "%s: output path too long", out_dir);
    memcpy(out, out_dir, n);
    out[n] = 0;
    const char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return kv_err_set(err, KV_EINVAL,
                          "%s: not a usable output directory name (give a new directory's "
                          "name)",
                          out_dir);
    return KV_OK;
}

/* Checks on out (normalised) against in_dir; *exists tells whether out exists. */
static kv_status check_out(const char *in_dir, const char *out, int force, int *exists,
                           kv_err *err) {
    char rin[PATH_MAX], rout[PATH_MAX];
    *exists = 0;
    if (!realpath(in_dir, rin))
        return kv_err_set(err, KV_ENOTFOUND, "%s: cannot resolve input directory: %s", in_dir,
                          strerror(errno));
    struct stat st;
    if (stat(out, &st) == 0) {
        *exists = 1;
        if (!realpath(out, rout))
            return kv_err_set(err, KV_EIO, "%s: cannot resolve output path: %s", out,
                              strerror(errno));
        if (strcmp(rin, rout) == 0)
            return kv_err_set(err, KV_EINVAL,
                              "%s: the output directory is the input directory (%s)", out, rin);
        if (!S_ISDIR(st.st_mode))
            return kv_err_set(err, KV_EINVAL, "%s: exists and is not a directory", out);
        if (!force)
            return kv_err_set(err, KV_EINVAL,
                              "%s: output directory already exists (use --force to replace it)",
                              out);
        size_t lo = strlen(rout);
        if (strncmp(rin, rout, lo) == 0 && (rin[lo] == '/' || lo == 1))
            return kv_err_set(err, KV_EINVAL,
                              "%s: the output directory contains the input directory %s; "
                              "refusing to replace it",
                              out, in_dir);
        if (!replaceable_dir(out))
            return kv_err_set(err, KV_EINVAL,
                              "%s: exists and is neither empty nor a checkpoint (no config.json); "
                              "refusing to replace it even with --force",
                              out);
        return KV_OK;
    }
    if (errno != ENOENT)
        return kv_err_set(err, KV_EIO, "%s: stat: %s", out, strerror(errno));
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = 0;
    else
        *slash = 0;
    if (!kv_is_dir(parent))
        return kv_err_set(err, KV_ENOTFOUND, "%s: parent directory %s does not exist", out,
                          parent);
    return KV_OK;
}

/* Move the finished temp dir to out; an existing out (checked replaceable) is
 * swapped out atomically where the file system allows, then deleted. */
static kv_status move_into_place(const char *tmp, const char *out, int exists, kv_err *err) {
    if (!exists) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE) == 0) return KV_OK;
        if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
            return kv_err_set(err, KV_EIO, "%s: rename %s into place: %s", out, tmp,
                              strerror(errno));
        if (rename(tmp, out) == 0) return KV_OK;
        return kv_err_set(err, KV_EIO, "%s: rename %s into place: %s", out, tmp,
                          strerror(errno));
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_EXCHANGE) == 0) {
        rm_tree(tmp); /* now the old directory */
        return KV_OK;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return kv_err_set(err, KV_EIO, "%s: exchange with %s: %s", out, tmp, strerror(errno));
    /* no RENAME_EXCHANGE: move the old one aside under a fresh name, then ours in */
    char old[PATH_MAX + 32];
    snprintf(old, sizeof old, "%s.kvant-old-XXXXXX", out);
    if (!mkdtemp(old))
        return kv_err_set(err, KV_EIO, "%s: make a name for the old directory: %s", out,
                          strerror(errno));
    if (rename(out, old) != 0) {
        int e = errno;
        rmdir(old);
        return kv_err_set(err, KV_EIO, "%s: move the old directory aside: %s", out, strerror(e));
    }
    if (rename(tmp, out) != 0) {
        int e = errno;
        (void)rename(old, out);
        return kv_err_set(err, KV_EIO, "%s: rename %s into place: %s", out, tmp, strerror(e));
    }
    rm_tree(old);
    return KV_OK;
}

/* ---- the whole checkpoint ---- */

kv_status kv_quantize_checkpoint(const char *in_dir, const char *out_dir,
                                 const kv_quantize_opts *opts, kv_progress *progress,
                                 kv_quantize_result *res, kv_err *err) {
    double t_start = kv_now();
    kv_quantize_result r;
    memset(&r, 0, sizeof r);
    if (res) *res = r;
    if (!in_dir || !out_dir || !opts)
        return kv_err_set(err, KV_EINVAL, "quantize: NULL argument");
    kv_status st = kv_qformat_check(opts->qf, err);
    if (st) return st;
    if ((unsigned)opts->method >= KV_QMETHOD_COUNT)
        return kv_err_set(err, KV_EINVAL, "quantize: unknown method id %d", (int)opts->method);
    if (opts->qopts.mx_scale != KV_MX_SCALE_SPEC && opts->qopts.mx_scale != KV_MX_SCALE_MSE)
        return kv_err_set(err, KV_EINVAL, "quantize: unknown mx_scale mode %d",
                          (int)opts->qopts.mx_scale);
    if (!kv_is_dir(in_dir))
        return kv_err_set(err, KV_ENOTFOUND, "%s: no such checkpoint directory", in_dir);
    char out[PATH_MAX], tmp[PATH_MAX + 32], path[PATH_MAX + 64], from[PATH_MAX + 64];
    int exists = 0;
    if ((st = norm_out(out_dir, out, sizeof out, err))) return st;
    if ((st = check_out(in_dir, out, opts->force, &exists, err))) return st;

    char *cfg_text = NULL;
    size_t cfg_len = 0;
    kv_weights *w = NULL;
    const kv_tensor **all = NULL, **quant = NULL, **copied = NULL;
    qlayer *layers = NULL;
    part_ref *refs = NULL;
    kv_st_writer *sw = NULL;
    kv_sbuf cfg_out = {0};
    job j;
    memset(&j, 0, sizeof j);
    j.cur = -1;
    int tmp_made = 0, n_q = 0, n_c = 0;
    char fname[32];
    kv_qformat_name(opts->qf, fname, sizeof fname);

    /* input: config.json (validated by kv_config_parse), weights */
    kv_config cfg;
    if ((st = kv_path_join(path, sizeof path, in_dir, "config.json", err))) goto done;
    if ((st = kv_read_file(path, &cfg_text, &cfg_len, err))) goto done;
    if ((st = kv_config_parse(cfg_text, cfg_len, path, &cfg, err))) goto done;
    {
        cJSON *root = cJSON_ParseWithLength(cfg_text, cfg_len);
        int quantized = root && cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
        cJSON_Delete(root);
        if (quantized) {
            st = kv_err_set(err, KV_EUNSUPPORTED,
                            "%s: the input checkpoint is already quantized (it has a "
                            "quantization_config); quantize a full-precision checkpoint",
                            path);
            goto done;
        }
    }
    if ((st = kv_weights_open(in_dir, &w, err))) goto done;

    /* plan: tensors sorted by name; targets checked (dtype, shape, group) up front */
    int n = kv_weights_count(w);
    all = kv_calloc((size_t)n + 1, sizeof *all, err, "quantize: tensor list");
    quant = kv_calloc((size_t)n + 1, sizeof *quant, err, "quantize: tensor list");
    copied = kv_calloc((size_t)n + 1, sizeof *copied, err, "quantize: tensor list");
    layers = kv_calloc((size_t)n + 1, sizeof *layers, err, "quantize: layer list");
    refs = kv_calloc((size_t)n * KV_QPART_MAX + 1, sizeof *refs, err, "quantize: part list");
    if (!all || !quant || !copied || !layers || !refs) {
        st = KV_ENOMEM;
        goto done;
    }
    for (int i = 0; i < n; i++) all[i] = kv_weights_at(w, i);
    qsort(all, (size_t)n, sizeof *all, cmp_tensor_name);
    for (int i = 0; i < n; i++) {
        const kv_tensor *t = all[i];
        r.params_total += kv_tensor_numel(t);
        if (!kv_quantize_is_target(t->name)) {
            copied[n_c++] = t;
            continue;
        }
        if (t->dtype != KV_DTYPE_F32 && t->dtype != KV_DTYPE_F16 && t->dtype != KV_DTYPE_BF16) {
            st = kv_err_set(err, KV_EUNSUPPORTED,
                            "%s: %s: dtype %s cannot be quantized (F32, F16 or BF16 expected)",
                            t->file, t->name, kv_dtype_name(t->dtype));
            goto done;
        }
        if (t->ndim != 2) {
            st = kv_err_set(err, KV_EFORMAT, "%s: %s: a linear weight must have 2 dims, not %d",
                            t->file, t->name, t->ndim);
            goto done;
        }
        qlayer *L = &layers[n_q];
        L->t = t;
        if ((st = kv_qtensor_init(&L->shape, opts->qf, t->shape[0], t->shape[1], t->name, err)))
            goto done;
        quant[n_q++] = t;
        r.params_quantized += kv_tensor_numel(t);
        r.bytes_in_quantized += (int64_t)t->nbytes;
        r.bytes_quantized += (int64_t)kv_qtensor_nbytes(&L->shape);
    }
    if (n_q == 0) {
        st = kv_err_set(err, KV_EUNSUPPORTED,
                        "%s: no linear layers to quantize (expected tensors named "
                        "model.layers.N.self_attn.{q,k,v,o}_proj.weight and "
                        "model.layers.N.mlp.{gate,up,down}_proj.weight)",
                        in_dir);
        goto done;
    }

    /* the output, built in a temp dir beside out */
    snprintf(tmp, sizeof tmp, "%s.kvant-tmp-XXXXXX", out);
    if (!mkdtemp(tmp)) {
        st = kv_err_set(err, KV_EIO, "%s: create temporary directory %s: %s", out, tmp,
                        strerror(errno));
        goto done;
    }
    tmp_made = 1;
    (void)chmod(tmp, 0755);

    if ((st = kv_st_writer_new(&sw, err))) goto done;
    if ((st = kv_st_writer_set_meta(sw, "format", "pt", err))) goto done;
    if ((st = kv_st_writer_set_meta(sw, "kvant_format", fname, err))) goto done;
    j.opts = opts;
    j.layers = layers;
    j.n_layers = n_q;
    j.progress = progress;
    int li = 0, nr = 0;
    for (int i = 0; i < n; i++) {
        const kv_tensor *t = all[i];
        if (li < n_q && layers[li].t == t) {
            qlayer *L = &layers[li];
            for (int p = 0; p < L->shape.n_parts; p++) {
                char pname[1024];
                if (!kv_qpart_name(&L->shape, p, t->name, pname, sizeof pname)) {
                    st = kv_err_set(err, KV_EINVAL, "%s: tensor name too long", t->name);
                    goto done;
                }
                part_ref *pr = &refs[nr++];
                pr->j = &j;
                pr->layer = li;
                pr->part = p;
                const kv_qpart *pp = &L->shape.part[p];
                if ((st = kv_st_writer_add_stream(sw, pname, pp->dtype, pp->ndim, pp->shape,
                                                  part_stream, pr, NULL, err)))
                    goto done;
            }
            li++;
        } else {
            if ((st = kv_st_writer_add(sw, t->name, t->dtype, t->ndim, t->shape, t->data, NULL,
                                       err)))
                goto done;
            r.n_copied++;
        }
    }
    int big = r.bytes_in_quantized >= (int64_t)100000000;
    j.unit_div = big ? 1000000 : 1000;
    snprintf(j.plabel, sizeof j.plabel, "quantize layer 0/%d", n_q);
    if (progress)
        kv_progress_start(progress, j.plabel, big ? "MB" : "KB", r.bytes_in_quantized / j.unit_div,
                          progress->quiet);
    if ((st = kv_st_writer_write_dir(sw, tmp, opts->max_shard_bytes, &r.n_shards, err))) goto done;
    if (progress) kv_progress_end(progress, j.bytes_done / j.unit_div);

    /* config.json with quantization_config; tokenizer and generation files */
    if ((st = kv_path_join(path, sizeof path, in_dir, "config.json", err))) goto done;
    if ((st = make_config(path, cfg_text, cfg_len, opts, copied, n_c, quant, n_q, &cfg_out, err)))
        goto done;
    if ((st = kv_path_join(path, sizeof path, tmp, "config.json", err))) goto done;
    if ((st = kv_write_file_atomic(path, cfg_out.p, cfg_out.n, err))) goto done;
    for (size_t k = 0; k < sizeof copy_files / sizeof copy_files[0]; k++) {
        if ((st = kv_path_join(from, sizeof from, in_dir, copy_files[k], err))) goto done;
        if (!kv_is_file(from)) continue;
        if ((st = kv_path_join(path, sizeof path, tmp, copy_files[k], err))) goto done;
        if ((st = copy_file(from, path, err))) goto done;
    }
    if ((st = move_into_place(tmp, out, exists, err))) goto done;
    tmp_made = 0;

    r.n_quantized = n_q;
    r.bytes_total = kv_st_writer_data_bytes(sw);
    r.bpw_format = kv_qformat_bpw(opts->qf);
    r.bpw_study = kv_qformat_bpw_study(opts->qf);
    r.bpw_layers = 8.0 * (double)r.bytes_quantized / (double)r.params_quantized;
    r.bpw_file = r.params_total ? 8.0 * (double)r.bytes_total / (double)r.params_total : 0;
    r.quantize_seconds = j.q_seconds;
    r.seconds = kv_now() - t_start;
    if (res) *res = r;

done:
    if (tmp_made) rm_tree(tmp);
    kv_qtensor_free(&j.cur_qt);
    kv_st_writer_free(sw);
    kv_sbuf_free(&cfg_out);
    free(refs);
    free(layers);
    free(copied);
    free(quant);
    free(all);
    kv_weights_close(w);
    free(cfg_text);
    return st;
}
