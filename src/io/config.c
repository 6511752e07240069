/* config.c — kv_config from a Hugging Face config.json (see config.h).
 *
 * Pipeline stage: load. Defaults and per-architecture rules follow transformers'
 * configuration_*.py / modeling_*.py for Qwen3, Qwen2 and Llama, since transformers is
 * the reference the forward pass is checked against:
 *   - Qwen2 hard-codes bias=True on q/k/v and False on o (no attention_bias key);
 *   - Qwen3 and Llama put attention_bias on q, k, v and o; Llama also has mlp_bias;
 *   - only Qwen3 has the per-head q/k RMSNorm;
 *   - Qwen3Config's head_dim defaults to 128 when the key is absent (not hidden/heads);
 *     an explicit null, and the other architectures, use hidden_size / heads.
 * RoPE comes in two spellings: transformers <= 4.x writes a top-level rope_theta and
 * an optional rope_scaling {"type"|"rope_type", factor, ...}; 5.x writes
 * rope_parameters {"rope_type", "rope_theta", ...}. Both are accepted. Anything that
 * would change the math and is not implemented (YaRN, sliding windows, another
 * activation) is refused with KV_EUNSUPPORTED rather than silently ignored. */
#include "kvant/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvant/fileio.h"

#define CFG_INT_MAX 2147483647.0 /* sizes and ids must fit int32 */

static const struct {
    const char *arch_name, *model_type;
    kv_arch arch;
    int64_t max_pos_default;
} archs[] = {
    {"Qwen3ForCausalLM", "qwen3", KV_ARCH_QWEN3, 32768},
    {"Qwen2ForCausalLM", "qwen2", KV_ARCH_QWEN2, 32768},
    {"LlamaForCausalLM", "llama", KV_ARCH_LLAMA, 2048},
};
#define N_ARCHS (int)(sizeof archs / sizeof archs[0])

const char *kv_arch_name(kv_arch a) {
    for (int i = 0; i < N_ARCHS; i++)
        if (archs[i].arch == a) return archs[i].arch_name;
    return "unknown";
}

/* Absent and JSON null both mean "use the default". */
static const cJSON *get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* An integer-valued key in [lo, hi]. With required = 0 an absent key yields def. */
static kv_status get_int(const cJSON *obj, const char *key, int required, int64_t def,
                         int64_t lo, const char *name, int64_t *out, kv_err *err) {
    const cJSON *v = get(obj, key);
    if (!v) {
        if (required)
            return kv_err_set(err, KV_ENOTFOUND, "%s: required key \"%s\" is missing", name, key);
        *out = def;
        return KV_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return kv_err_set(err, KV_EFORMAT, "%s: \"%s\" is not an integer", name, key);
    double d = v->valuedouble;
    if (d < (double)lo || d > CFG_INT_MAX)
        return kv_err_set(err, KV_ERANGE, "%s: \"%s\" = %.17g out of range [%lld, %.0f]", name,
                          key, d, (long long)lo, CFG_INT_MAX);
    *out = (int64_t)d;
    return KV_OK;
}

/* A positive finite number; an absent key yields def. */
static kv_status get_pos_num(const cJSON *obj, const char *key, double def, const char *name,
                             const char *ctx, double *out, kv_err *err) {
    const cJSON *v = get(obj, key);
    if (!v) {
        *out = def;
        return KV_OK;
    }
    if (!cJSON_IsNumber(v))
        return kv_err_set(err, KV_EFORMAT, "%s: %s\"%s\" is not a number", name, ctx, key);
    if (!(v->valuedouble > 0) || !isfinite(v->valuedouble))
        return kv_err_set(err, KV_ERANGE, "%s: %s\"%s\" = %.17g, must be positive", name, ctx,
                          key, v->valuedouble);
    *out = v->valuedouble;
    return KV_OK;
}

static kv_status get_bool(const cJSON *obj, const char *key, int def, const char *name,
                          int *out, kv_err *err) {
    const cJSON *v = get(obj, key);
    if (!v) {
        *out = def;
        return KV_OK;
    }
    if (!cJSON_IsBool(v))
        return kv_err_set(err, KV_EFORMAT, "%s: \"%s\" is not true/false", name, key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return KV_OK;
}

/* bos/eos: an int, null, or a list of ints (the first is taken). -1 when absent. */
static kv_status get_token_id(const cJSON *obj, const char *key, const char *name,
                              int64_t *out, kv_err *err) {
    const cJSON *v = get(obj, key);
    *out = -1;
    if (!v) return KV_OK;
    if (cJSON_IsArray(v)) {
        v = v->child;
        if (!v) return KV_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > CFG_INT_MAX)
        return kv_err_set(err, KV_EFORMAT, "%s: \"%s\" is not a token id (non-negative integer)",
                          name, key);
    *out = (int64_t)v->valuedouble;
    return KV_OK;
}

/* Set cfg->arch and arch_name from the table entry whose class name (by_model_type 0)
 * or model_type (1) is s; 0 when there is none. */
static int set_arch(kv_config *cfg, const char *s, int by_model_type) {
    for (int i = 0; i < N_ARCHS; i++) {
        if (strcmp(s, by_model_type ? archs[i].model_type : archs[i].arch_name) == 0) {
            cfg->arch = archs[i].arch;
            snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", archs[i].arch_name);
            return 1;
        }
    }
    return 0;
}

static kv_status get_arch(const cJSON *root, const char *name, kv_config *cfg, kv_err *err) {
    const cJSON *a = get(root, "architectures");
    if (a && cJSON_IsArray(a) && a->child) {
        const cJSON *a0 = a->child;
        if (!cJSON_IsString(a0) || !a0->valuestring)
            return kv_err_set(err, KV_EFORMAT, "%s: architectures[0] is not a string", name);
        if (set_arch(cfg, a0->valuestring, 0)) return KV_OK;
        return kv_err_set(err, KV_EUNSUPPORTED,
                          "%s: architecture \"%.64s\" not supported (supported: "
                          "Qwen3ForCausalLM, Qwen2ForCausalLM, LlamaForCausalLM)",
                          name, a0->valuestring);
    }
    if (a && !cJSON_IsArray(a))
        return kv_err_set(err, KV_EFORMAT, "%s: \"architectures\" is not a list", name);
    const cJSON *mt = get(root, "model_type");
    if (!mt)
        return kv_err_set(err, KV_ENOTFOUND,
                          "%s: neither \"architectures\" nor \"model_type\" is given", name);
    if (!cJSON_IsString(mt) || !mt->valuestring)
        return kv_err_set(err, KV_EFORMAT, "%s: \"model_type\" is not a string", name);
    if (set_arch(cfg, mt->valuestring, 1)) return KV_OK;
    return kv_err_set(err, KV_EUNSUPPORTED,
                      "%s: model_type \"%.64s\" not supported (supported: qwen3, qwen2, llama)",
                      name, mt->valuestring);
}

static kv_status get_rope(const cJSON *root, const char *name, kv_config *cfg, kv_err *err) {
    kv_status st;
    const cJSON *rp = get(root, "rope_parameters");
    const char *ctx = "rope_parameters.";
    if (rp && !cJSON_IsObject(rp))
        return kv_err_set(err, KV_EFORMAT, "%s: \"rope_parameters\" is not an object", name);
    /* 5.x may key rope_parameters by layer type; these models only have full attention */
    if (rp && !get(rp, "rope_type") && !get(rp, "rope_theta") && get(rp, "full_attention")) {
        rp = get(rp, "full_attention");
        ctx = "rope_parameters.full_attention.";
        if (!cJSON_IsObject(rp))
            return kv_err_set(err, KV_EFORMAT, "%s: %s is not an object", name, ctx);
    }
    const cJSON *rs = rp;
    if (!rs) {
        rs = get(root, "rope_scaling");
        ctx = "rope_scaling.";
        if (rs && !cJSON_IsObject(rs))
            return kv_err_set(err, KV_EFORMAT, "%s: \"rope_scaling\" is not an object", name);
    }
    /* theta: rope_parameters wins over the top-level key */
    if ((st = get_pos_num(root, "rope_theta", 10000.0, name, "", &cfg->rope_theta, err)) != KV_OK)
        return st;
    if (rp && (st = get_pos_num(rp, "rope_theta", cfg->rope_theta, name, ctx, &cfg->rope_theta,
                                err)) != KV_OK)
        return st;
    cfg->rope_type = KV_ROPE_DEFAULT;
    cfg->rope_factor = 1.0;
    cfg->rope_low_freq_factor = 1.0;
    cfg->rope_high_freq_factor = 1.0;
    cfg->rope_original_max_pos = cfg->max_position_embeddings;
    if (!rs) return KV_OK;
    const cJSON *ty = get(rs, "rope_type");
    if (!ty) ty = get(rs, "type");
    if (!ty) return KV_OK; /* no type: default RoPE */
    if (!cJSON_IsString(ty) || !ty->valuestring)
        return kv_err_set(err, KV_EFORMAT, "%s: %srope_type is not a string", name, ctx);
    const char *t = ty->valuestring;
    if (strcmp(t, "default") == 0) return KV_OK;
    int llama3 = strcmp(t, "llama3") == 0, linear = strcmp(t, "linear") == 0;
    if (!llama3 && !linear)
        return kv_err_set(err, KV_EUNSUPPORTED,
                          "%s: %srope_type \"%.32s\" not supported (supported: default, linear, "
                          "llama3)",
                          name, ctx, t);
    if (!get(rs, "factor"))
        return kv_err_set(err, KV_ENOTFOUND, "%s: %sfactor is missing for rope_type %s", name,
                          ctx, t);
    if ((st = get_pos_num(rs, "factor", 1.0, name, ctx, &cfg->rope_factor, err)) != KV_OK)
        return st;
    if (linear) {
        cfg->rope_type = KV_ROPE_LINEAR;
        return KV_OK;
    }
    cfg->rope_type = KV_ROPE_LLAMA3;
    static const char *need[] = {"low_freq_factor", "high_freq_factor",
                                 "original_max_position_embeddings"};
    for (int i = 0; i < 3; i++)
        if (!get(rs, need[i]))
            return kv_err_set(err, KV_ENOTFOUND, "%s: %s%s is missing for rope_type llama3",
                              name, ctx, need[i]);
    if ((st = get_pos_num(rs, "low_freq_factor", 1.0, name, ctx, &cfg->rope_low_freq_factor,
                          err)) != KV_OK ||
        (st = get_pos_num(rs, "high_freq_factor", 1.0, name, ctx, &cfg->rope_high_freq_factor,
                          err)) != KV_OK ||
        (st = get_int(rs, "original_max_position_embeddings", 1, 0, 1, name,
                      &cfg->rope_original_max_pos, err)) != KV_OK)
        return st;
    /* the llama3 ramp divides by (high - low) */
    if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
        return kv_err_set(err, KV_ERANGE,
                          "%s: %shigh_freq_factor (%g) must exceed low_freq_factor (%g)", name,
                          ctx, cfg->rope_high_freq_factor, cfg->rope_low_freq_factor);
    return KV_OK;
}

static kv_status get_string(const cJSON *obj, const char *key, const char *def, char *buf,
                            size_t cap, const char *name, kv_err *err) {
    const cJSON *v = get(obj, key);
    if (!v) {
        snprintf(buf, cap, "%s", def);
        return KV_OK;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return kv_err_set(err, KV_EFORMAT, "%s: \"%s\" is not a string", name, key);
    size_t n = strlen(v->valuestring);
    if (n >= cap)
        return kv_err_set(err, KV_EUNSUPPORTED, "%s: \"%s\" value \"%.40s\" is too long", name,
                          key, v->valuestring);
    memcpy(buf, v->valuestring, n + 1);
    return KV_OK;
}

static kv_status parse_root(const cJSON *root, const char *name, kv_config *cfg, kv_err *err) {
    kv_status st;
    if (!cJSON_IsObject(root))
        return kv_err_set(err, KV_EFORMAT, "%s: top level is not a JSON object", name);
    if ((st = get_arch(root, name, cfg, err)) != KV_OK) return st;
    int ai = 0;
    while (archs[ai].arch != cfg->arch) ai++;

    if ((st = get_int(root, "hidden_size", 1, 0, 1, name, &cfg->hidden_size, err)) ||
        (st = get_int(root, "intermediate_size", 1, 0, 1, name, &cfg->intermediate_size, err)) ||
        (st = get_int(root, "num_hidden_layers", 1, 0, 1, name, &cfg->n_layers, err)) ||
        (st = get_int(root, "num_attention_heads", 1, 0, 1, name, &cfg->n_heads, err)) ||
        (st = get_int(root, "vocab_size", 1, 0, 1, name, &cfg->vocab_size, err)) ||
        (st = get_int(root, "num_key_value_heads", 0, cfg->n_heads, 1, name, &cfg->n_kv_heads,
                      err)) ||
        (st = get_int(root, "max_position_embeddings", 0, archs[ai].max_pos_default, 1, name,
                      &cfg->max_position_embeddings, err)))
        return st;
    if (cfg->n_heads % cfg->n_kv_heads != 0)
        return kv_err_set(err, KV_EFORMAT,
                          "%s: num_attention_heads (%lld) is not a multiple of "
                          "num_key_value_heads (%lld)",
                          name, (long long)cfg->n_heads, (long long)cfg->n_kv_heads);

    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if (!hd && cfg->arch == KV_ARCH_QWEN3) {
        cfg->head_dim = 128; /* Qwen3Config's default */
    } else if (hd && !cJSON_IsNull(hd)) {
        if ((st = get_int(root, "head_dim", 1, 0, 1, name, &cfg->head_dim, err)) != KV_OK)
            return st;
    } else {
        if (cfg->hidden_size % cfg->n_heads != 0)
            return kv_err_set(err, KV_EFORMAT,
                              "%s: no head_dim, and hidden_size (%lld) is not a multiple of "
                              "num_attention_heads (%lld)",
                              name, (long long)cfg->hidden_size, (long long)cfg->n_heads);
        cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    }
    if (cfg->head_dim % 2 != 0)
        return kv_err_set(err, KV_EFORMAT, "%s: head_dim %lld is odd (RoPE rotates pairs)", name,
                          (long long)cfg->head_dim);
    if ((double)cfg->n_heads * (double)cfg->head_dim > CFG_INT_MAX)
        return kv_err_set(err, KV_ERANGE,
                          "%s: num_attention_heads x head_dim = %lld x %lld overflows int32", name,
                          (long long)cfg->n_heads, (long long)cfg->head_dim);

    if ((st = get_pos_num(root, "rms_norm_eps", 1e-6, name, "", &cfg->rms_norm_eps, err)) ||
        (st = get_rope(root, name, cfg, err)))
        return st;

    int attn_bias = 0;
    if ((st = get_bool(root, "tie_word_embeddings", 0, name, &cfg->tie_word_embeddings, err)) ||
        (st = get_bool(root, "attention_bias", 0, name, &attn_bias, err)))
        return st;
    switch (cfg->arch) {
    case KV_ARCH_QWEN2:
        cfg->attention_bias = 1; /* hard-coded in Qwen2Attention */
        cfg->o_bias = 0;
        break;
    case KV_ARCH_LLAMA:
        cfg->attention_bias = cfg->o_bias = attn_bias;
        if ((st = get_bool(root, "mlp_bias", 0, name, &cfg->mlp_bias, err)) != KV_OK) return st;
        break;
    case KV_ARCH_QWEN3:
        cfg->attention_bias = cfg->o_bias = attn_bias;
        cfg->qk_norm = 1;
        break;
    }

    if ((st = get_string(root, "hidden_act", "silu", cfg->hidden_act, sizeof cfg->hidden_act,
                         name, err)) != KV_OK)
        return st;
    if (strcmp(cfg->hidden_act, "silu") != 0)
        return kv_err_set(err, KV_EUNSUPPORTED, "%s: hidden_act \"%s\" not supported (only silu)",
                          name, cfg->hidden_act);
    const char *dkey = get(root, "dtype") ? "dtype" : "torch_dtype";
    if ((st = get_string(root, dkey, "", cfg->torch_dtype, sizeof cfg->torch_dtype, name, err)))
        return st;

    /* Sliding-window attention changes which keys a query sees: refuse it. */
    int sliding = 0;
    if ((st = get_bool(root, "use_sliding_window", 0, name, &sliding, err)) != KV_OK) return st;
    if (sliding)
        return kv_err_set(err, KV_EUNSUPPORTED,
                          "%s: use_sliding_window = true is not supported", name);
    const cJSON *lt = get(root, "layer_types");
    if (lt && cJSON_IsArray(lt)) {
        for (const cJSON *e = lt->child; e; e = e->next)
            if (!cJSON_IsString(e) || strcmp(e->valuestring, "full_attention") != 0)
                return kv_err_set(err, KV_EUNSUPPORTED,
                                  "%s: layer_types: only \"full_attention\" layers are supported",
                                  name);
    }

    if ((st = get_token_id(root, "bos_token_id", name, &cfg->bos_token_id, err)) ||
        (st = get_token_id(root, "eos_token_id", name, &cfg->eos_token_id, err)))
        return st;
    return KV_OK;
}

kv_status kv_config_parse(const char *json, size_t len, const char *name, kv_config *cfg,
                          kv_err *err) {
    if (!name) name = "config.json";
    if (!json || !cfg) return kv_err_set(err, KV_EINVAL, "%s: NULL argument", name);
    memset(cfg, 0, sizeof *cfg);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    size_t off = end && end >= json ? (size_t)(end - json) : 0;
    if (root) { /* only whitespace may follow the object */
        while (off < len && (json[off] == ' ' || json[off] == '\t' || json[off] == '\n' ||
                             json[off] == '\r'))
            off++;
        if (off < len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        if (off > len) off = len;
        long line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (json[i] == '\n') line++, col = 1;
            else col++;
        }
        return kv_err_set(err, KV_EFORMAT, "%s: invalid JSON at byte %zu (line %ld, column %ld)",
                          name, off, line, col);
    }
    kv_status st = parse_root(root, name, cfg, err);
    cJSON_Delete(root);
    if (st != KV_OK) memset(cfg, 0, sizeof *cfg);
    return st;
}

kv_status kv_config_load(const char *path, kv_config *cfg, kv_err *err) {
    if (!path || !cfg) return kv_err_set(err, KV_EINVAL, "kv_config_load: NULL argument");
    char file[4096];
    kv_status st;
    if (kv_is_dir(path)) {
        if ((st = kv_path_join(file, sizeof file, path, "config.json", err)) != KV_OK) return st;
    } else if (strlen(path) < sizeof file) {
        memcpy(file, path, strlen(path) + 1);
    } else {
        return kv_err_set(err, KV_EINVAL, "%.200s...: path too long", path);
    }
    char *text = NULL;
    size_t len = 0;
    if ((st = kv_read_file(file, &text, &len, err)) != KV_OK) return st;
    st = kv_config_parse(text, len, file, cfg, err);
    free(text);
    return st;
}
