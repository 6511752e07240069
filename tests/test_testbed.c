/* test_testbed.c — the checkpoint kvant ships and runs by default (models/testbed-qwen3)
 * computes what Hugging Face transformers computes from the same files.
 *
 * tests/fixtures/testbed (tools/make_testbed_fixture.py) holds the first tokens of
 * docs/sample.txt as HF `tokenizers` encodes them with the model's tokenizer.json, and
 * transformers' fp32 forward on them: every position's log-probability of the next
 * token and all logits at 4 positions. kvant must give the same ids, and the same
 * numbers within 1e-4 (both are fp32 forwards of the same bf16 weights; the summation
 * order differs, the generator recorded transformers' own fp32-vs-fp64 gap beside).
 * The fixture names the sha256 of the model.safetensors it was made from: a retrained
 * testbed without a regenerated fixture fails here with that message, not with
 * mismatching numbers. */
#include <cjson/cJSON.h>
#include <math.h>

#include "kvant/eval.h"
#include "kvant/fileio.h"
#include "kvant/model.h"
#include "kvant/safetensors.h"
#include "kvant/tokenizer.h"
#include "test.h"

#define MODEL "models/testbed-qwen3"
#define FIX "tests/fixtures/testbed"
#define TOL 1e-4

static void test_testbed_matches_transformers(void) {
    kv_err err = {0};
    char *txt = NULL;
    size_t len = 0;
    CHECK_MSG(kv_read_file(FIX "/reference.json", &txt, &len, &err) == KV_OK, "%s", err.msg);
    cJSON *meta = txt ? cJSON_Parse(txt) : NULL;
    free(txt);
    const cJSON *want = meta ? cJSON_GetObjectItem(meta, "model_safetensors_sha256") : NULL;
    CHECK(cJSON_IsString(want));
    char hex[65] = {0};
    CHECK_MSG(kv_eval_file_sha256(MODEL "/model.safetensors", hex, &err) == KV_OK, "%s", err.msg);
    if (!cJSON_IsString(want) || strcmp(hex, want->valuestring)) {
        CHECK_MSG(0, "%s/model.safetensors (sha256 %s) is not the checkpoint the fixture was made from: "
                     "rerun tools/make_testbed_fixture.py", MODEL, hex);
        cJSON_Delete(meta);
        return;
    }

    kv_st_file *ref = NULL;
    CHECK_MSG(kv_st_open(FIX "/reference.safetensors", &ref, &err) == KV_OK, "%s", err.msg);
    const kv_tensor *tid = ref ? kv_st_find(ref, "ids") : NULL, *tlp = ref ? kv_st_find(ref, "next_logprob") : NULL;
    const kv_tensor *tpos = ref ? kv_st_find(ref, "pos") : NULL, *tlg = ref ? kv_st_find(ref, "logits") : NULL;
    CHECK(tid && tlp && tpos && tlg);
    if (!tid || !tlp || !tpos || !tlg) {
        kv_st_close(ref);
        cJSON_Delete(meta);
        return;
    }
    const int64_t n = tid->shape[0];
    const int32_t *ids = tid->data, *pos = tpos->data;

    /* the same ids from kvant's tokenizer */
    kv_tokenizer *tok = NULL;
    kv_ids got = {0};
    char *text = NULL;
    size_t tlen = 0;
    CHECK_MSG(kv_tok_load(MODEL "/tokenizer.json", &tok, &err) == KV_OK, "%s", err.msg);
    CHECK_MSG(kv_read_file("docs/sample.txt", &text, &tlen, &err) == KV_OK, "%s", err.msg);
    if (tok && text) CHECK(kv_tok_encode(tok, text, tlen, 0, &got, &err) == KV_OK);
    CHECK((int64_t)got.n >= n);
    int same = (int64_t)got.n >= n;
    for (int64_t i = 0; same && i < n; i++) same = got.v[i] == ids[i];
    CHECK_MSG(same, "kvant's ids of docs/sample.txt differ from HF tokenizers'");

    /* the forward */
    kv_model *m = NULL;
    kv_cache *c = NULL;
    CHECK_MSG(kv_model_load(MODEL, &m, &err) == KV_OK, "%s", err.msg);
    const int64_t V = m ? kv_model_config(m)->vocab_size : 0;
    CHECK(V == tlg->shape[1]);
    float *lg = m ? malloc(sizeof(float) * (size_t)(n * V)) : NULL;
    if (m && V == tlg->shape[1]) {
        kv_status st = kv_cache_new(m, 1, n, &c, &err);
        if (!st) st = kv_model_forward1(m, c, 0, ids, n, KV_LOGITS_ALL, lg, &err);
        CHECK_MSG(st == KV_OK, "%s", err.msg);
        if (st == KV_OK) {
            float *lp = malloc(sizeof(float) * (size_t)(n - 1));
            for (int64_t t = 0; t + 1 < n; t++) {
                const float *row = lg + t * V;
                double mx = row[0], s = 0;
                for (int64_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
                for (int64_t v = 0; v < V; v++) s += exp((double)row[v] - mx);
                lp[t] = (float)((double)row[ids[t + 1]] - mx - log(s));
            }
            CHECK_CLOSE("next-token log-prob", lp, (const float *)tlp->data, (size_t)(n - 1), TOL, 0);
            free(lp);
            for (int k = 0; k < (int)tpos->shape[0]; k++) {
                char label[64];
                snprintf(label, sizeof label, "logits at position %d", pos[k]);
                CHECK_CLOSE(label, lg + (int64_t)pos[k] * V, (const float *)tlg->data + (size_t)k * (size_t)V,
                            (size_t)V, TOL, 0);
            }
        }
    }
    free(lg);
    kv_cache_free(c);
    kv_model_free(m);
    kv_ids_free(&got);
    free(text);
    kv_tok_free(tok);
    kv_st_close(ref);
    cJSON_Delete(meta);
}

int main(void) {
    KV_RUN(test_testbed_matches_transformers);
    return kv_test_summary();
}
