/* cli_info.c — `kvant info MODEL_DIR [--json]`: architecture, sizes, dtypes and
 * parameter count, read from config.json and the safetensors headers only. */
#include <stdio.h>

#include "cli/cli.h"
#include "kvant/config.h"
#include "kvant/fileio.h"
#include "kvant/model.h"
#include "kvant/safetensors.h"

static const char *INFO_USAGE = "kvant info MODEL_DIR [--json]";

int cli_info(int argc, char **argv) {
    const char *dir = NULL;
    int json = 0;
    const cli_optdef opts[] = {CLI_FLAG("--json", NULL, &json)};
    const cli_spec spec = {"info", INFO_USAGE, opts, CLI_N_OPTS(opts), &dir, 1, 0};
    int bad = cli_parse(&spec, argc, argv);
    if (bad) return bad;
    if (!dir) return cli_usage_error("info", INFO_USAGE, "missing MODEL_DIR");
    kv_err err = {0};
    kv_config cfg;
    kv_weights *w = NULL;
    kv_model *m = NULL;
    int rc = 1;
    if (kv_config_load(dir, &cfg, &err) || kv_weights_open(dir, &w, &err)) goto fail;
    /* Loading the model checks every tensor's presence, dtype and shape. */
    if (kv_model_load(dir, &m, &err)) goto fail;
    int64_t per_dtype[KV_DTYPE_COUNT] = {0}, bytes = 0, total = 0;
    for (int i = 0; i < kv_weights_count(w); i++) {
        const kv_tensor *t = kv_weights_at(w, i);
        per_dtype[t->dtype] += kv_tensor_numel(t);
        total += kv_tensor_numel(t);
        bytes += (int64_t)t->nbytes;
    }
    const char *rope = cfg.rope_type == KV_ROPE_LLAMA3 ? "llama3" : cfg.rope_type == KV_ROPE_LINEAR ? "linear" : "default";
    if (json) {
        printf("{\"model\": ");
        cli_json_str(stdout, dir);
        printf(", \"architecture\": ");
        cli_json_str(stdout, cfg.arch_name);
        printf(", \"hidden_size\": %lld, \"intermediate_size\": %lld, \"num_hidden_layers\": %lld, "
               "\"num_attention_heads\": %lld, \"num_key_value_heads\": %lld, \"head_dim\": %lld, "
               "\"vocab_size\": %lld, \"rms_norm_eps\": %g, \"rope_theta\": %g, \"rope_type\": \"%s\", "
               "\"tie_word_embeddings\": %s, \"attention_bias\": %s, \"qk_norm\": %s, "
               "\"parameters\": %lld, \"model_parameters\": %lld, \"weight_bytes\": %lld, \"dtypes\": {",
               (long long)cfg.hidden_size, (long long)cfg.intermediate_size, (long long)cfg.n_layers,
               (long long)cfg.n_heads, (long long)cfg.n_kv_heads, (long long)cfg.head_dim,
               (long long)cfg.vocab_size, cfg.rms_norm_eps, cfg.rope_theta, rope,
               cfg.tie_word_embeddings ? "true" : "false", cfg.attention_bias ? "true" : "false",
               cfg.qk_norm ? "true" : "false", (long long)total, (long long)kv_model_n_params(m),
               (long long)bytes);
        int first = 1;
        for (int d = 0; d < KV_DTYPE_COUNT; d++)
            if (per_dtype[d]) {
                printf("%s\"%s\": %lld", first ? "" : ", ", kv_dtype_name((kv_dtype)d), (long long)per_dtype[d]);
                first = 0;
            }
        printf("}}\n");
    } else {
        printf("model:        %s\n", dir);
        printf("architecture: %s\n", cfg.arch_name);
        printf("layers:       %lld\n", (long long)cfg.n_layers);
        printf("hidden:       %lld (intermediate %lld)\n", (long long)cfg.hidden_size, (long long)cfg.intermediate_size);
        printf("attention:    %lld heads, %lld kv heads, head_dim %lld%s%s\n", (long long)cfg.n_heads,
               (long long)cfg.n_kv_heads, (long long)cfg.head_dim, cfg.qk_norm ? ", q/k norm" : "",
               cfg.attention_bias ? ", biases" : "");
        printf("rope:         theta %g, %s", cfg.rope_theta, rope);
        if (cfg.rope_type == KV_ROPE_LLAMA3)
            printf(" (factor %g, low %g, high %g, original %lld)", cfg.rope_factor, cfg.rope_low_freq_factor,
                   cfg.rope_high_freq_factor, (long long)cfg.rope_original_max_pos);
        printf("\nvocab:        %lld, embeddings %s\n", (long long)cfg.vocab_size, cfg.tie_word_embeddings ? "tied" : "untied");
        printf("parameters:   %lld (%.3f B), %d tensors, %.1f MiB\n", (long long)total, total / 1e9,
               kv_weights_count(w), bytes / 1048576.0);
        for (int d = 0; d < KV_DTYPE_COUNT; d++)
            if (per_dtype[d])
                printf("  %-5s %lld parameters\n", kv_dtype_name((kv_dtype)d), (long long)per_dtype[d]);
    }
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    kv_model_free(m);
    kv_weights_close(w);
    return rc;
}
