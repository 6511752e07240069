/* test_quant_ppl.c — a quantized checkpoint scores like its dequantized weights
 * (issue 3 point 6). `kvant quantize models/tiny-qwen3` to each format of
 * tests/fixtures/ppl/quant_expected.json, then `kvant ppl` on the result must give the
 * NLL that tools/make_quant_ppl_fixture.py computed with transformers on the base model
 * whose linear weights were replaced by values dequantized independently in numpy.
 *
 * Until the model module runs packed weights, `kvant ppl` rejects quantized
 * directories; the test then prints a SKIP note per format and passes (it fails on any
 * other error, and on a wrong NLL once the checkpoint loads). */
#include <cjson/cJSON.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kvant/fileio.h"
#include "test.h"

static char tmpdir[256];


static int rm_cb(const char *p, const struct stat *sb, int fl, struct FTW *f) {
    (void)sb, (void)fl, (void)f;
    return remove(p);
}



/* The ways `kvant ppl` says it cannot run a quantized checkpoint (yet). */
static int unsupported(const char *out) {
    return strstr(out, "unsupported") || strstr(out, "not supported") ||
           strstr(out, "quantization_config") || strstr(out, "_proj.weight not found");
}

static void test_quant_ppl(void) {
    static char out[1 << 16];
    char *text = NULL;
    size_t len;
    kv_err err = {0};
    kv_status st = kv_read_file("tests/fixtures/ppl/quant_expected.json", &text, &len, &err);
    CHECK_MSG(st == KV_OK, "%s", err.msg);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    cJSON *cases = cJSON_GetObjectItem(root, "cases");
    CHECK(cJSON_GetArraySize(cases) >= 5);
    int skipped = 0;
    for (cJSON *c = cases ? cases->child : NULL; c; c = c->next) {
        const char *fmt = cJSON_GetStringValue(cJSON_GetObjectItem(c, "format"));
        const char *mx = cJSON_GetStringValue(cJSON_GetObjectItem(c, "mx_scale"));
        const char *model = cJSON_GetStringValue(cJSON_GetObjectItem(c, "model"));
        const char *txt = cJSON_GetStringValue(cJSON_GetObjectItem(c, "text"));
        double ctx = cJSON_GetNumberValue(cJSON_GetObjectItem(c, "ctx_arg"));
        double want = cJSON_GetNumberValue(cJSON_GetObjectItem(c, "nll"));
        double tokens = cJSON_GetNumberValue(cJSON_GetObjectItem(c, "tokens"));
        if (!fmt || !mx || !model || !txt) {
            CHECK_MSG(0, "malformed case in quant_expected.json");
            continue;
        }
        char dir[512], args[2048];
        snprintf(dir, sizeof dir, "%s/%s-%s", tmpdir, fmt, mx);
        snprintf(args, sizeof args, "quantize %s %s --format %s --mx-scale %s --quiet", model, dir,
                 fmt, mx);
        int rc = kv_test_run(args, NULL, out, sizeof out);
        CHECK_MSG(rc == 0, "kvant %s: exit %d: %s", args, rc, out);
        snprintf(args, sizeof args, "ppl %s --text %s --ctx %d --quiet", dir, txt, (int)ctx);
        rc = kv_test_run(args, NULL, out, sizeof out);
        if (rc != 0 && unsupported(out)) {
            fprintf(stderr, "  SKIP %s (%s): kvant ppl does not run quantized checkpoints yet: %.200s",
                    fmt, mx, out);
            skipped++;
            continue;
        }
        CHECK_MSG(rc == 0, "kvant %s: exit %d: %s", args, rc, out);
        CHECK_EQ_INT(kv_test_json_num(out, "tokens"), tokens);
        /* 2e-4 nats: both sides use the same dequantized values exactly; what remains is
         * f32 reassociation in the logits (~1e-5, as for the base model in test_cli) */
        double nll = kv_test_json_num(out, "nll");
        CHECK_MSG(fabs(nll - want) < 2e-4, "%s %s: nll %.6f want %.6f", fmt, mx, nll, want);
    }
    if (skipped) printf("# SKIP test_quant_ppl: %d format(s) not runnable by kvant ppl yet\n", skipped);
    cJSON_Delete(root);
    free(text);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_test_qppl_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KV_RUN(test_quant_ppl);
    nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return kv_test_summary();
}
