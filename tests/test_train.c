/* test_train.c — `kvant pretokenize` and `kvant train` end to end on a tiny model, in a
 * few seconds: the CLI ($KVANT_BIN, default build/kvant) is run in child processes, on
 * one thread (thread-count independence is test_backward's; one thread also keeps the
 * sanitizer run fast on a loaded machine).
 *
 * The headline check is exact resume: a run killed with SIGKILL in the middle of a step
 * (--die-at-step, a real raise(SIGKILL)) and then resumed with --resume must produce a
 * loss log (every column but wall time) and a final checkpoint bitwise identical to an
 * uninterrupted run; so must a run killed from outside at an arbitrary moment. Also:
 * Gutenberg cleaning, shard validation, the exported checkpoint loading in kvant's
 * inference path with the same logits as the training forward, and option errors. */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvant/fileio.h"
#include "kvant/model.h"
#include "kvant/progress.h"
#include "kvant/train.h"
#include "test.h"

#define TOKENIZER "models/tiny-qwen3/tokenizer.json"

static char tmpdir[256];

static const char *kvant_bin(void) {
    const char *b = getenv("KVANT_BIN");
    return b && *b ? b : "build/kvant";
}

/* Start the CLI with args (NULL-terminated); returns the pid. stdout/stderr -> /dev/null. */
static pid_t spawn(const char *const *args) {
    const char *argv[64];
    int n = 0;
    argv[n++] = kvant_bin();
    for (int i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            if (!getenv("KVANT_TEST_VERBOSE")) dup2(fd, 2);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Run to completion; returns the exit code, or 128 + signal. */
static int run(const char *const *args) {
    pid_t pid = spawn(args);
    int ws = 0;
    if (pid < 0 || waitpid(pid, &ws, 0) < 0) return -1;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : -1;
}

static char *slurp(const char *path, size_t *len) {
    char *b = NULL;
    kv_err err;
    size_t l = 0;
    if (kv_read_file(path, &b, &l, &err)) return NULL;
    if (len) *len = l;
    return b;
}

/* The log without its last column (wall time). */
static char *log_no_time(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/train_log.csv", dir);
    char *b = slurp(path, NULL);
    if (!b) return NULL;
    char *w = b;
    for (char *s = b, *nl; *s; s = nl + 1) {
        nl = strchr(s, '\n');
        if (!nl) break;
        char *comma = nl;
        while (comma > s && *comma != ',') comma--;
        memmove(w, s, (size_t)(comma - s));
        w += comma - s;
        *w++ = '\n';
    }
    *w = 0;
    return b;
}

static int same_file(const char *a, const char *b) {
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    int same = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return same;
}

/* A small deterministic corpus, wrapped like a Project Gutenberg file (BOM, CRLF). */
static void make_corpus(const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs("\xEF\xBB\xBFThe Project Gutenberg eBook of Tests\r\n\r\n"
          "*** START OF THE PROJECT GUTENBERG EBOOK TESTS ***\r\n", f);
    const char *w[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far",
                       "кот", "сидел", "на", "ковре", "и", "пёс", "бежал", "далеко"};
    uint64_t s = 7;
    for (int i = 0; i < 2500; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        fputs(w[(s >> 33) % 18], f);
        fputs(i % 13 == 12 ? ".\r\n" : " ", f);
    }
    fputs("\r\n*** END OF THE PROJECT GUTENBERG EBOOK TESTS ***\r\nlicense text\r\n", f);
    fclose(f);
}

static char data_dir[300];

static void test_clean(void) {
    char t1[] = "\xEF\xBB\xBFheader\r\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n\r\n"
                "Body line\r\nsecond\rthird\r\n***END OF THE PROJECT GUTENBERG EBOOK X***\r\nfooter";
    size_t n = kv_text_clean(t1, strlen(t1));
    CHECK(n == strlen("Body line\nsecond\nthird"));
    CHECK(!memcmp(t1, "Body line\nsecond\nthird", n));
    char t2[] = "no markers\r\nat all";
    n = kv_text_clean(t2, strlen(t2));
    CHECK(n == strlen("no markers\nat all") && !memcmp(t2, "no markers\nat all", n));
}

static void test_pretokenize(void) {
    char text[300];
    snprintf(text, sizeof text, "%s/book.txt", tmpdir);
    snprintf(data_dir, sizeof data_dir, "%s/data", tmpdir);
    make_corpus(text);
    const char *args[] = {"pretokenize", "--tokenizer", TOKENIZER, "--out", data_dir,
                          "--val-fraction", "0.1", "--quiet", text, NULL};
    CHECK_EQ_INT(run(args), 0);
    char path[400];
    kv_shard tr, va;
    kv_err err = {0};
    snprintf(path, sizeof path, "%s/train_0000.bin", data_dir);
    CHECK_EQ_INT(kv_shard_open(path, &tr, &err), KV_OK);
    snprintf(path, sizeof path, "%s/val_0000.bin", data_dir);
    CHECK_EQ_INT(kv_shard_open(path, &va, &err), KV_OK);
    if (tr.map && va.map) {
        fprintf(stderr, "  train %lld tokens, val %lld tokens, sep %lld, %d bytes/id\n",
                (long long)tr.n_tokens, (long long)va.n_tokens, (long long)tr.sep_id, tr.id_bytes);
        CHECK(tr.id_bytes == 2 && tr.sep_id == 8192);
        CHECK(kv_shard_id(&tr, tr.n_tokens - 1) == 8192); /* document ends with <|endoftext|> */
        CHECK(va.n_tokens > tr.n_tokens / 12 && va.n_tokens < tr.n_tokens / 8);
        /* nothing of the header/footer survived */
        snprintf(path, sizeof path, "%s/manifest.json", data_dir);
        char *man = slurp(path, NULL);
        CHECK(man && strstr(man, "\"gutenberg_stripped\": true"));
        free(man);
    }
    kv_shard_close(&tr);
    kv_shard_close(&va);
    /* a file that is not a shard */
    snprintf(path, sizeof path, "%s/bad.bin", tmpdir);
    kv_write_file_atomic(path, "KVTOKENX0000000000000000000000000000000000000000000000000000000000", 66, &err);
    kv_shard s;
    CHECK_ERR(kv_shard_open(path, &s, &err), &err, KV_EFORMAT, "not a kvant token shard");
}

#define TRAIN_ARGS(out)                                                                      \
    "train", "--data", data_dir, "--out", out, "--hidden", "32", "--layers", "2", "--heads", \
        "2", "--kv-heads", "1", "--head-dim", "16", "--intermediate", "64", "--seq", "16",   \
        "--batch", "4", "--accum", "2", "--steps", "12", "--warmup", "3", "--lr", "3e-3",    \
        "--eval-every", "4", "--eval-batches", "2", "--ckpt-every", "4", "--log-every", "1", \
        "--dtype", "f32", "--threads", "1", "--quiet"

static void test_resume_exact(void) {
    char a[300], b[300], c[300], p1[400], p2[400];
    snprintf(a, sizeof a, "%s/run_a", tmpdir);
    snprintf(b, sizeof b, "%s/run_b", tmpdir);
    snprintf(c, sizeof c, "%s/run_c", tmpdir);
    const char *full[] = {TRAIN_ARGS(a), NULL};
    double t0 = kv_now();
    CHECK_EQ_INT(run(full), 0);
    double t_full = kv_now() - t0;

    /* killed by SIGKILL in the middle of step 7 (last checkpoint: step 4), resumed */
    const char *die[] = {TRAIN_ARGS(b), "--die-at-step", "7", NULL};
    CHECK_EQ_INT(run(die), 128 + SIGKILL);
    const char *res[] = {TRAIN_ARGS(b), "--resume", NULL};
    CHECK_EQ_INT(run(res), 0);
    char *la = log_no_time(a), *lb = log_no_time(b);
    CHECK(la && lb && !strcmp(la, lb));
    if (la && lb && strcmp(la, lb)) fprintf(stderr, "  uninterrupted:\n%s  resumed:\n%s", la, lb);
    snprintf(p1, sizeof p1, "%s/model.safetensors", a);
    snprintf(p2, sizeof p2, "%s/model.safetensors", b);
    CHECK(same_file(p1, p2));
    int lines = 0;
    for (char *s = la; s && *s; s++) lines += *s == '\n';
    CHECK_EQ_INT(lines, 13); /* header + 12 steps */
    fprintf(stderr, "  die at step 7 + resume: log and weights bitwise equal (%d log lines)\n", lines);

    /* killed from outside at a moment of the OS's choosing: after the first checkpoint */
    const char *ext[] = {TRAIN_ARGS(c), NULL};
    pid_t pid = spawn(ext);
    char st_path[400];
    snprintf(st_path, sizeof st_path, "%s/train_state.bin", c);
    double deadline = kv_now() + 30 + 10 * t_full;
    while (!kv_is_file(st_path) && kv_now() < deadline) usleep(1000);
    usleep((useconds_t)(t_full * 1e6 / 12)); /* about one step further */
    kill(pid, SIGKILL);
    int ws = 0;
    waitpid(pid, &ws, 0);
    int killed = WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL;
    fprintf(stderr, "  external SIGKILL: %s\n", killed ? "killed mid-run" : "run had already finished");
    const char *res_c[] = {TRAIN_ARGS(c), "--resume", NULL};
    CHECK_EQ_INT(run(res_c), 0);
    char *lc = log_no_time(c);
    CHECK(la && lc && !strcmp(la, lc));
    snprintf(p2, sizeof p2, "%s/model.safetensors", c);
    CHECK(same_file(p1, p2));
    free(la);
    free(lb);
    free(lc);

    /* the loss went down and a plot exists */
    snprintf(p1, sizeof p1, "%s/loss.svg", a);
    char *svg = slurp(p1, NULL);
    CHECK(svg && strstr(svg, "<svg") && strstr(svg, "polyline"));
    free(svg);
}

/* The exported checkpoint through kvant's inference path: same logits as the training
 * forward (both fp32; different kernels/order for attention: 1e-4). */
static void test_export_loads(void) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s/run_a", tmpdir);
    kv_model *im = NULL;
    kv_tmodel *tm = NULL;
    kv_err err = {0};
    CHECK_EQ_INT(kv_model_load(dir, &im, &err), KV_OK);
    CHECK_EQ_INT(kv_tmodel_load_hf(dir, &tm, &err), KV_OK);
    if (!im || !tm) {
        fprintf(stderr, "  %s\n", err.msg);
        kv_model_free(im);
        kv_tmodel_free(tm);
        return;
    }
    const int64_t T = 20, V = kv_tmodel_config(tm)->vocab_size;
    int32_t ids[20];
    for (int i = 0; i < T; i++) ids[i] = (int32_t)((i * 977 + 13) % 8218);
    double loss;
    CHECK_EQ_INT(kv_tmodel_forward(tm, ids, NULL, 1, T, &loss, &err), KV_OK);
    float *lg = malloc((size_t)(T * V) * sizeof(float));
    kv_cache *kc = NULL;
    CHECK_EQ_INT(kv_cache_new(im, 1, T, &kc, &err), KV_OK);
    CHECK_EQ_INT(kv_model_forward1(im, kc, 0, ids, T, KV_LOGITS_ALL, lg, &err), KV_OK);
    CHECK_CLOSE("export: kvant forward vs training forward", lg, kv_tmodel_logits(tm),
                (size_t)(T * V), 1e-4, 1e-4);
    free(lg);
    kv_cache_free(kc);
    kv_model_free(im);
    kv_tmodel_free(tm);
}

static void test_option_errors(void) {
    char b[300];
    snprintf(b, sizeof b, "%s/run_b", tmpdir);
    /* resuming with a different shape is refused */
    const char *args[] = {TRAIN_ARGS(b), "--resume", "--seq", "32", NULL};
    CHECK_EQ_INT(run(args), 1);
    /* an existing state without --resume is refused */
    const char *args2[] = {TRAIN_ARGS(b), NULL};
    CHECK_EQ_INT(run(args2), 1);
    kv_train_opts o;
    kv_err err = {0};
    kv_train_opts_default(&o);
    CHECK_ERR(kv_train_opts_set(&o, "hiden", "3", &err), &err, KV_EINVAL, "unknown option 'hiden'");
    CHECK_ERR(kv_train_opts_set(&o, "lr", "abc", &err), &err, KV_EINVAL, "option lr: bad value");
    CHECK_ERR(kv_train_opts_set(&o, "dtype", "f16", &err), &err, KV_EINVAL, "bf16 or f32");
    CHECK_EQ_INT(kv_train_opts_set(&o, "kv_heads", "4", &err), KV_OK);
    CHECK_EQ_INT(o.kv_heads, 4);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_test_train.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    if (access(kvant_bin(), X_OK)) fprintf(stderr, "  %s is not executable\n", kvant_bin());
    KV_RUN(test_clean);
    KV_RUN(test_pretokenize);
    KV_RUN(test_resume_exact);
    KV_RUN(test_export_loads);
    KV_RUN(test_option_errors);
    int rc = kv_test_summary();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (!rc && system(cmd)) fprintf(stderr, "  could not remove %s\n", tmpdir);
    return rc;
}
