/* test_config.c — config.json parsing for Qwen3, Qwen2 and Llama.
 *
 * Configs are built from a base text with keys replaced or deleted (via cJSON), so
 * each case states exactly which key differs. Covers both RoPE spellings
 * (transformers 4.x rope_theta + rope_scaling, 5.x rope_parameters), the head_dim
 * rules, per-architecture bias rules, and every error the parser reports. */
#include <cjson/cJSON.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

#include "kvant/config.h"
#include "kvant/fileio.h"
#include "test.h"

static const char *qwen3_base =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"attention_bias\":false,"
    "\"bos_token_id\":151643,\"dtype\":\"bfloat16\",\"eos_token_id\":151645,\"head_dim\":128,"
    "\"hidden_act\":\"silu\",\"hidden_size\":2560,\"intermediate_size\":9728,"
    "\"layer_types\":[\"full_attention\",\"full_attention\"],"
    "\"max_position_embeddings\":40960,\"max_window_layers\":36,\"model_type\":\"qwen3\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":36,\"num_key_value_heads\":8,"
    "\"rms_norm_eps\":1e-06,\"rope_parameters\":{\"rope_theta\":1000000.0,"
    "\"rope_type\":\"default\"},\"sliding_window\":null,\"tie_word_embeddings\":true,"
    "\"use_sliding_window\":false,\"vocab_size\":151936}";

/* transformers 4.x spelling of a Qwen3 config */
static const char *qwen3_v4 =
    "{\"architectures\":[\"Qwen3ForCausalLM\"],\"attention_bias\":false,\"bos_token_id\":151643,"
    "\"eos_token_id\":151645,\"head_dim\":128,\"hidden_act\":\"silu\",\"hidden_size\":5120,"
    "\"intermediate_size\":25600,\"max_position_embeddings\":40960,\"model_type\":\"qwen3\","
    "\"num_attention_heads\":64,\"num_hidden_layers\":64,\"num_key_value_heads\":8,"
    "\"rms_norm_eps\":1e-06,\"rope_scaling\":null,\"rope_theta\":1000000,"
    "\"sliding_window\":null,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
    "\"use_sliding_window\":false,\"vocab_size\":151936}";

static const char *qwen2_base =
    "{\"architectures\":[\"Qwen2ForCausalLM\"],\"bos_token_id\":151643,"
    "\"eos_token_id\":[151645,151643],\"hidden_act\":\"silu\",\"hidden_size\":896,"
    "\"intermediate_size\":4864,\"max_position_embeddings\":32768,\"model_type\":\"qwen2\","
    "\"num_attention_heads\":14,\"num_hidden_layers\":24,\"num_key_value_heads\":2,"
    "\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,\"tie_word_embeddings\":true,"
    "\"torch_dtype\":\"bfloat16\",\"use_sliding_window\":false,\"vocab_size\":151936}";

static const char *llama_base =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"bos_token_id\":128000,"
    "\"eos_token_id\":128001,\"hidden_act\":\"silu\",\"hidden_size\":4096,"
    "\"intermediate_size\":14336,\"max_position_embeddings\":131072,\"mlp_bias\":false,"
    "\"model_type\":\"llama\",\"num_attention_heads\":32,\"num_hidden_layers\":32,"
    "\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,\"rope_scaling\":{\"factor\":8.0,"
    "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
    "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
    "\"rope_theta\":500000.0,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
    "\"vocab_size\":128256}";

/* base with key set to the JSON value text (NULL: key deleted). Returns malloc'd text. */
static char *with(const char *base, const char *key, const char *value) {
    cJSON *root = cJSON_Parse(base);
    if (!root) return NULL;
    cJSON_DeleteItemFromObjectCaseSensitive(root, key);
    if (value) cJSON_AddItemToObject(root, key, cJSON_Parse(value));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static kv_status parse(const char *text, kv_config *c, kv_err *e) {
    return kv_config_parse(text, strlen(text), "m/config.json", c, e);
}

/* Expect an error after replacing one key. */
static void bad(const char *base, const char *key, const char *value, kv_status code,
                const char *needle, int line) {
    char *s = with(base, key, value);
    kv_config c;
    kv_err e = {0};
    kv_status st = s ? parse(s, &c, &e) : KV_EINVAL;
    if (st != code || !strstr(e.msg, needle)) {
        fprintf(stderr, "  line %d: %s=%s: expected %d \"%s\", got %d \"%s\"\n", line, key,
                value ? value : "(deleted)", code, needle, st, e.msg);
        kv_t_failed_checks++;
    }
    cJSON_free(s);
}
#define BAD(base, key, value, code, needle) bad(base, key, value, code, needle, __LINE__)

static void test_qwen3(void) {
    kv_config c;
    kv_err e;
    CHECK_EQ_INT(parse(qwen3_base, &c, &e), KV_OK);
    CHECK_EQ_INT(c.arch, KV_ARCH_QWEN3);
    CHECK(strcmp(c.arch_name, "Qwen3ForCausalLM") == 0);
    CHECK(strcmp(kv_arch_name(c.arch), "Qwen3ForCausalLM") == 0);
    CHECK_EQ_INT(c.hidden_size, 2560);
    CHECK_EQ_INT(c.intermediate_size, 9728);
    CHECK_EQ_INT(c.n_layers, 36);
    CHECK_EQ_INT(c.n_heads, 32);
    CHECK_EQ_INT(c.n_kv_heads, 8);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.vocab_size, 151936);
    CHECK_EQ_INT(c.max_position_embeddings, 40960);
    CHECK(c.rms_norm_eps == 1e-6);
    CHECK(c.rope_theta == 1e6);
    CHECK_EQ_INT(c.rope_type, KV_ROPE_DEFAULT);
    CHECK_EQ_INT(c.tie_word_embeddings, 1);
    CHECK_EQ_INT(c.attention_bias, 0);
    CHECK_EQ_INT(c.o_bias, 0);
    CHECK_EQ_INT(c.mlp_bias, 0);
    CHECK_EQ_INT(c.qk_norm, 1);
    CHECK_EQ_INT(c.bos_token_id, 151643);
    CHECK_EQ_INT(c.eos_token_id, 151645);
    CHECK(strcmp(c.torch_dtype, "bfloat16") == 0);
    CHECK(strcmp(c.hidden_act, "silu") == 0);

    /* 4.x spelling: top-level rope_theta, rope_scaling null, torch_dtype */
    CHECK_EQ_INT(parse(qwen3_v4, &c, &e), KV_OK);
    CHECK(c.rope_theta == 1e6 && c.rope_type == KV_ROPE_DEFAULT);
    CHECK_EQ_INT(c.tie_word_embeddings, 0);
    CHECK_EQ_INT(c.n_heads, 64);
    CHECK(strcmp(c.torch_dtype, "bfloat16") == 0);

    /* attention_bias true biases q, k, v and o (Qwen3Attention) */
    char *s = with(qwen3_base, "attention_bias", "true");
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK(c.attention_bias == 1 && c.o_bias == 1);
    cJSON_free(s);
    /* mlp_bias is a Llama key: ignored for Qwen3 */
    s = with(qwen3_base, "mlp_bias", "true");
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK_EQ_INT(c.mlp_bias, 0);
    cJSON_free(s);
    /* head_dim absent: Qwen3Config's default 128, not hidden/heads (= 80 here) */
    s = with(qwen3_base, "head_dim", NULL);
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK_EQ_INT(c.head_dim, 128);
    cJSON_free(s);
    /* head_dim null: hidden/heads */
    s = with(qwen3_base, "head_dim", "null");
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK_EQ_INT(c.head_dim, 80);
    cJSON_free(s);
    /* num_key_value_heads absent -> n_heads; tie_word_embeddings absent -> false */
    s = with(qwen3_base, "num_key_value_heads", NULL);
    char *s2 = with(s, "tie_word_embeddings", NULL);
    CHECK_EQ_INT(parse(s2, &c, &e), KV_OK);
    CHECK_EQ_INT(c.n_kv_heads, 32);
    CHECK_EQ_INT(c.tie_word_embeddings, 0);
    cJSON_free(s);
    cJSON_free(s2);
    /* defaults: no rope at all, no eps, no dtype, no bos/eos, no max positions */
    s = with(qwen3_base, "rope_parameters", NULL);
    char *s3 = with(s, "rms_norm_eps", NULL), *s4 = with(s3, "dtype", NULL);
    char *s5 = with(s4, "bos_token_id", NULL), *s6 = with(s5, "eos_token_id", "null");
    char *s7 = with(s6, "max_position_embeddings", NULL);
    CHECK_EQ_INT(parse(s7, &c, &e), KV_OK);
    CHECK(c.rope_theta == 10000.0 && c.rms_norm_eps == 1e-6);
    CHECK(c.torch_dtype[0] == 0 && c.bos_token_id == -1 && c.eos_token_id == -1);
    CHECK_EQ_INT(c.max_position_embeddings, 32768);
    cJSON_free(s), cJSON_free(s3), cJSON_free(s4), cJSON_free(s5), cJSON_free(s6), cJSON_free(s7);
    /* 5.x rope_parameters keyed by layer type */
    s = with(qwen3_base, "rope_parameters",
             "{\"full_attention\":{\"rope_type\":\"default\",\"rope_theta\":5000}}");
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK(c.rope_theta == 5000.0);
    cJSON_free(s);
    /* model_type fallback when architectures is absent */
    s = with(qwen3_base, "architectures", NULL);
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK(c.arch == KV_ARCH_QWEN3 && strcmp(c.arch_name, "Qwen3ForCausalLM") == 0);
    cJSON_free(s);
}

static void test_qwen2(void) {
    kv_config c;
    kv_err e;
    CHECK_EQ_INT(parse(qwen2_base, &c, &e), KV_OK);
    CHECK_EQ_INT(c.arch, KV_ARCH_QWEN2);
    CHECK_EQ_INT(c.head_dim, 64); /* 896 / 14 */
    CHECK_EQ_INT(c.attention_bias, 1); /* hard-coded in Qwen2Attention */
    CHECK_EQ_INT(c.o_bias, 0);
    CHECK_EQ_INT(c.qk_norm, 0);
    CHECK_EQ_INT(c.eos_token_id, 151645); /* first of the list */
    CHECK(c.rope_theta == 1e6);
    CHECK_EQ_INT(c.tie_word_embeddings, 1);
    /* even attention_bias false cannot remove Qwen2's q/k/v biases */
    char *s = with(qwen2_base, "attention_bias", "false");
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK(c.attention_bias == 1 && c.o_bias == 0);
    cJSON_free(s);
    s = with(qwen2_base, "architectures", NULL);
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK_EQ_INT(c.arch, KV_ARCH_QWEN2);
    cJSON_free(s);
    s = with(qwen2_base, "eos_token_id", "[]");
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK_EQ_INT(c.eos_token_id, -1);
    cJSON_free(s);
    /* head_dim present for Qwen2 is honoured (getattr in Qwen2Attention) */
    s = with(qwen2_base, "head_dim", "128");
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK_EQ_INT(c.head_dim, 128);
    cJSON_free(s);
}

static void test_llama(void) {
    kv_config c;
    kv_err e;
    CHECK_EQ_INT(parse(llama_base, &c, &e), KV_OK);
    CHECK_EQ_INT(c.arch, KV_ARCH_LLAMA);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.qk_norm, 0);
    CHECK(c.rms_norm_eps == 1e-5);
    CHECK(c.rope_theta == 500000.0);
    CHECK_EQ_INT(c.rope_type, KV_ROPE_LLAMA3);
    CHECK(c.rope_factor == 8.0 && c.rope_low_freq_factor == 1.0 && c.rope_high_freq_factor == 4.0);
    CHECK_EQ_INT(c.rope_original_max_pos, 8192);
    /* attention_bias on Llama also biases o_proj; mlp_bias read */
    char *s = with(llama_base, "attention_bias", "true");
    char *s2 = with(s, "mlp_bias", "true");
    CHECK_EQ_INT(parse(s2, &c, &e), KV_OK);
    CHECK(c.attention_bias == 1 && c.o_bias == 1 && c.mlp_bias == 1);
    cJSON_free(s), cJSON_free(s2);
    /* 5.x spelling: rope_parameters with theta inside, no top-level rope_theta */
    s = with(llama_base, "rope_scaling", NULL);
    s2 = with(s, "rope_theta", NULL);
    char *s3 = with(s2, "rope_parameters",
                    "{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,\"factor\":32.0,"
                    "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                    "\"original_max_position_embeddings\":8192}");
    CHECK_EQ_INT(parse(s3, &c, &e), KV_OK);
    CHECK(c.rope_type == KV_ROPE_LLAMA3 && c.rope_factor == 32.0 && c.rope_theta == 500000.0);
    CHECK_EQ_INT(c.rope_original_max_pos, 8192);
    cJSON_free(s), cJSON_free(s2), cJSON_free(s3);
    /* old "type" key, linear scaling */
    s = with(llama_base, "rope_scaling", "{\"type\":\"linear\",\"factor\":2.0}");
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK(c.rope_type == KV_ROPE_LINEAR && c.rope_factor == 2.0);
    cJSON_free(s);
    /* rope_scaling null, head_dim absent / null, hidden_act absent (silu) */
    s = with(llama_base, "rope_scaling", "null");
    s2 = with(s, "hidden_act", NULL);
    s3 = with(s2, "head_dim", "null");
    CHECK_EQ_INT(parse(s3, &c, &e), KV_OK);
    CHECK(c.rope_type == KV_ROPE_DEFAULT && c.rope_factor == 1.0 && c.head_dim == 128);
    CHECK(strcmp(c.hidden_act, "silu") == 0);
    cJSON_free(s), cJSON_free(s2), cJSON_free(s3);
    s = with(llama_base, "max_position_embeddings", NULL);
    CHECK_EQ_INT(parse(s, &c, &e), KV_OK);
    CHECK_EQ_INT(c.max_position_embeddings, 2048);
    cJSON_free(s);
}

static void test_errors(void) {
    kv_config c;
    kv_err e;
    /* malformed JSON: byte offset, line and column */
    const char *broken = "{\n  \"hidden_size\": 64,\n  \"x\": ]\n}";
    CHECK_ERR(parse(broken, &c, &e), &e, KV_EFORMAT, "m/config.json: invalid JSON at byte");
    CHECK(strstr(e.msg, "line 3"));
    CHECK_ERR(parse("{} junk", &c, &e), &e, KV_EFORMAT, "invalid JSON at byte 3");
    CHECK_ERR(parse("", &c, &e), &e, KV_EFORMAT, "invalid JSON");
    CHECK_ERR(parse("[1]", &c, &e), &e, KV_EFORMAT, "top level is not a JSON object");
    CHECK_ERR(kv_config_parse(NULL, 0, "x", &c, &e), &e, KV_EINVAL, "NULL");
    /* architecture */
    BAD(qwen3_base, "architectures", "[\"MistralForCausalLM\"]", KV_EUNSUPPORTED,
        "m/config.json: architecture \"MistralForCausalLM\" not supported (supported: "
        "Qwen3ForCausalLM, Qwen2ForCausalLM, LlamaForCausalLM)");
    BAD(qwen3_base, "architectures", "[7]", KV_EFORMAT, "architectures[0] is not a string");
    BAD(qwen3_base, "architectures", "\"Qwen3ForCausalLM\"", KV_EFORMAT,
        "\"architectures\" is not a list");
    char *s = with(qwen3_base, "architectures", NULL), *s2 = with(s, "model_type", "\"gemma\"");
    CHECK_ERR(parse(s2, &c, &e), &e, KV_EUNSUPPORTED,
              "model_type \"gemma\" not supported (supported: qwen3, qwen2, llama)");
    cJSON_free(s2);
    s2 = with(s, "model_type", NULL);
    CHECK_ERR(parse(s2, &c, &e), &e, KV_ENOTFOUND,
              "neither \"architectures\" nor \"model_type\"");
    cJSON_free(s), cJSON_free(s2);
    /* required keys */
    static const char *req[] = {"hidden_size", "intermediate_size", "num_hidden_layers",
                                "num_attention_heads", "vocab_size"};
    for (int i = 0; i < 5; i++) {
        char want[128];
        snprintf(want, sizeof want, "m/config.json: required key \"%s\" is missing", req[i]);
        BAD(qwen3_base, req[i], NULL, KV_ENOTFOUND, want);
        BAD(qwen3_base, req[i], "null", KV_ENOTFOUND, want);
    }
    BAD(qwen3_base, "hidden_size", "\"2560\"", KV_EFORMAT, "\"hidden_size\" is not an integer");
    BAD(qwen3_base, "hidden_size", "64.5", KV_EFORMAT, "\"hidden_size\" is not an integer");
    BAD(qwen3_base, "hidden_size", "0", KV_ERANGE, "\"hidden_size\" = 0 out of range");
    BAD(qwen3_base, "num_hidden_layers", "-2", KV_ERANGE, "\"num_hidden_layers\" = -2");
    BAD(qwen3_base, "vocab_size", "4294967296", KV_ERANGE, "\"vocab_size\" = 4294967296");
    BAD(qwen3_base, "vocab_size", "1e300", KV_ERANGE, "out of range");
    BAD(qwen3_base, "num_key_value_heads", "0", KV_ERANGE, "\"num_key_value_heads\" = 0");
    BAD(qwen3_base, "num_key_value_heads", "5", KV_EFORMAT,
        "num_attention_heads (32) is not a multiple of num_key_value_heads (5)");
    BAD(qwen3_base, "head_dim", "0", KV_ERANGE, "\"head_dim\" = 0");
    BAD(qwen3_base, "head_dim", "33", KV_EFORMAT, "head_dim 33 is odd");
    BAD(qwen3_base, "head_dim", "2147483646", KV_ERANGE, "overflows int32");
    BAD(qwen2_base, "hidden_size", "900", KV_EFORMAT,
        "no head_dim, and hidden_size (900) is not a multiple of num_attention_heads (14)");
    /* floats, bools, strings */
    BAD(qwen3_base, "rms_norm_eps", "\"1e-6\"", KV_EFORMAT, "\"rms_norm_eps\" is not a number");
    BAD(qwen3_base, "rms_norm_eps", "0", KV_ERANGE, "\"rms_norm_eps\" = 0, must be positive");
    BAD(qwen3_base, "tie_word_embeddings", "1", KV_EFORMAT,
        "\"tie_word_embeddings\" is not true/false");
    BAD(qwen3_base, "attention_bias", "\"no\"", KV_EFORMAT, "\"attention_bias\" is not true/false");
    BAD(llama_base, "mlp_bias", "0", KV_EFORMAT, "\"mlp_bias\" is not true/false");
    BAD(qwen3_base, "hidden_act", "\"gelu\"", KV_EUNSUPPORTED,
        "hidden_act \"gelu\" not supported (only silu)");
    BAD(qwen3_base, "hidden_act", "1", KV_EFORMAT, "\"hidden_act\" is not a string");
    BAD(qwen3_base, "hidden_act", "\"a-very-long-activation-name\"", KV_EUNSUPPORTED,
        "is too long");
    BAD(qwen3_base, "dtype", "\"bfloat16bfloat16bfloat16\"", KV_EUNSUPPORTED,
        "\"dtype\" value \"bfloat16bfloat16bfloat16\" is too long");
    BAD(qwen3_base, "bos_token_id", "\"<s>\"", KV_EFORMAT,
        "\"bos_token_id\" is not a token id");
    BAD(qwen3_base, "eos_token_id", "[-1]", KV_EFORMAT, "\"eos_token_id\" is not a token id");
    /* attention variants that change the math */
    BAD(qwen3_base, "use_sliding_window", "true", KV_EUNSUPPORTED,
        "use_sliding_window = true is not supported");
    BAD(qwen3_base, "layer_types", "[\"full_attention\",\"sliding_attention\"]", KV_EUNSUPPORTED,
        "layer_types: only \"full_attention\"");
    /* RoPE */
    BAD(qwen3_base, "rope_parameters", "{\"rope_type\":\"yarn\",\"factor\":4.0}", KV_EUNSUPPORTED,
        "rope_parameters.rope_type \"yarn\" not supported (supported: default, linear, llama3)");
    BAD(llama_base, "rope_scaling", "{\"type\":\"dynamic\",\"factor\":2.0}", KV_EUNSUPPORTED,
        "rope_scaling.rope_type \"dynamic\" not supported");
    BAD(llama_base, "rope_scaling", "{\"rope_type\":\"llama3\",\"factor\":8.0}", KV_ENOTFOUND,
        "rope_scaling.low_freq_factor is missing for rope_type llama3");
    BAD(llama_base, "rope_scaling",
        "{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1,\"high_freq_factor\":4}",
        KV_ENOTFOUND, "original_max_position_embeddings is missing");
    BAD(llama_base, "rope_scaling",
        "{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":4,\"high_freq_factor\":4,"
        "\"original_max_position_embeddings\":8192}",
        KV_ERANGE, "high_freq_factor (4) must exceed low_freq_factor (4)");
    BAD(llama_base, "rope_scaling", "{\"type\":\"linear\"}", KV_ENOTFOUND,
        "rope_scaling.factor is missing for rope_type linear");
    BAD(llama_base, "rope_scaling", "{\"type\":\"linear\",\"factor\":-1}", KV_ERANGE,
        "rope_scaling.\"factor\" = -1, must be positive");
    BAD(llama_base, "rope_scaling", "[8]", KV_EFORMAT, "\"rope_scaling\" is not an object");
    BAD(llama_base, "rope_scaling", "{\"rope_type\":3}", KV_EFORMAT, "rope_type is not a string");
    BAD(llama_base, "rope_theta", "-5", KV_ERANGE, "\"rope_theta\" = -5, must be positive");
    BAD(qwen3_base, "rope_parameters", "{\"rope_theta\":\"big\"}", KV_EFORMAT,
        "rope_parameters.\"rope_theta\" is not a number");
    BAD(qwen3_base, "rope_parameters", "7", KV_EFORMAT, "\"rope_parameters\" is not an object");
}

static char tmpdir[256];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void test_load(void) {
    char p[512];
    kv_config c;
    kv_err e;
    snprintf(p, sizeof p, "%s/config.json", tmpdir);
    CHECK_EQ_INT(kv_write_file_atomic(p, qwen2_base, strlen(qwen2_base), &e), KV_OK);
    CHECK_EQ_INT(kv_config_load(tmpdir, &c, &e), KV_OK); /* a directory */
    CHECK_EQ_INT(c.arch, KV_ARCH_QWEN2);
    CHECK_EQ_INT(kv_config_load(p, &c, &e), KV_OK); /* the file itself */
    CHECK_EQ_INT(c.hidden_size, 896);
    /* messages name the file */
    const char *bad_json = "{\"hidden_size\": }";
    CHECK_EQ_INT(kv_write_file_atomic(p, bad_json, strlen(bad_json), &e), KV_OK);
    CHECK_ERR(kv_config_load(tmpdir, &c, &e), &e, KV_EFORMAT, "/config.json: invalid JSON at byte");
    snprintf(p, sizeof p, "%s/nodir", tmpdir);
    CHECK_ERR(kv_config_load(p, &c, &e), &e, KV_ENOTFOUND, "nodir: open");
    CHECK_ERR(kv_config_load(NULL, &c, &e), &e, KV_EINVAL, "NULL");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kvant_test_cfg_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    KV_RUN(test_qwen3);
    KV_RUN(test_qwen2);
    KV_RUN(test_llama);
    KV_RUN(test_errors);
    KV_RUN(test_load);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return kv_test_summary();
}
