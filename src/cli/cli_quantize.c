/* cli_quantize.c — `kvant quantize IN_DIR OUT_DIR --format F [--method rtn]
 * [--mx-scale spec|mse] [--force] [--max-shard-mb N] [--threads N] [--quiet]`.
 *
 * Pipeline stage: quantize (include/kvant/quantize.h does the work). Progress per
 * layer goes to stderr; a summary of bits per weight follows on stderr, and the last
 * line on stdout is one JSON object with the figures. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "kvant/quantize.h"
#include "kvant/st_writer.h"

static const char *QUANT_USAGE =
    "kvant quantize IN_DIR OUT_DIR --format F [--method rtn] [--mx-scale spec|mse] [--force] "
    "[--max-shard-mb N] [--threads N] [--quiet]\n"
    "  formats: int4-g128, int3-g128, int2-g64, mxfp4, mxint4 (any intB-gG, B in "
    "{2,3,4,8}, G in {32,64,128})";

int cli_quantize(int argc, char **argv) {
    const char *fmt = NULL, *method = "rtn", *mx = "spec";
    const char *pos[2] = {NULL, NULL}; /* IN_DIR, OUT_DIR */
    int64_t threads = 0, shard_mb = 0;
    int quiet = 0, force = 0;
    const cli_optdef opts[] = {
        CLI_STR("--format", &fmt),
        CLI_STR("--method", &method),
        CLI_STR("--mx-scale", &mx),
        CLI_THREADS(&threads),
        CLI_INT("--max-shard-mb", &shard_mb, 1, (int64_t)1 << 40, "a positive integer"),
        CLI_FLAG("--force", NULL, &force),
        CLI_QUIET(&quiet),
    };
    const cli_spec spec = {"quantize", QUANT_USAGE, opts, CLI_N_OPTS(opts), pos, 2, 1};
    int bad = cli_parse(&spec, argc, argv);
    if (bad) return bad;
    const char *in = pos[0], *out = pos[1];
    if (!in || !out) return cli_usage_error("quantize", QUANT_USAGE, "missing IN_DIR or OUT_DIR");
    if (!fmt) return cli_usage_error("quantize", QUANT_USAGE, "missing --format");
    kv_err err = {0};
    kv_quantize_opts o;
    memset(&o, 0, sizeof o);
    if (kv_qformat_parse(fmt, &o.qf, &err) || kv_qmethod_parse(method, &o.method, &err))
        return cli_fail(&err);
    if (!strcmp(mx, "spec"))
        o.qopts.mx_scale = KV_MX_SCALE_SPEC;
    else if (!strcmp(mx, "mse"))
        o.qopts.mx_scale = KV_MX_SCALE_MSE;
    else
        return cli_usage_error("quantize", QUANT_USAGE, "--mx-scale must be spec or mse, not '%s'",
                               mx);
    o.force = force;
    o.max_shard_bytes = shard_mb * 1000000;
    cli_set_threads(threads);

    kv_progress prog;
    memset(&prog, 0, sizeof prog);
    prog.quiet = quiet;
    kv_quantize_result r;
    if (kv_quantize_checkpoint(in, out, &o, &prog, &r, &err)) return cli_fail(&err);

    char fname[32];
    kv_qformat_name(o.qf, fname, sizeof fname);
    double mbps = r.quantize_seconds > 0 ? r.bytes_in_quantized / 1e6 / r.quantize_seconds : 0;
    if (!quiet) {
        fprintf(stderr, "quantized %lld linear weights (%lld parameters) to %s, copied %lld tensors\n",
                (long long)r.n_quantized, (long long)r.params_quantized, fname,
                (long long)r.n_copied);
        fprintf(stderr, "bits per weight, quantized layers: %.4f stored (%.4f with g_idx), %.4f "
                "study accounting\n", r.bpw_format, r.bpw_layers, r.bpw_study);
        fprintf(stderr, "bits per weight, whole checkpoint: %.4f (%lld bytes of tensors / %lld "
                "parameters)\n", r.bpw_file, (long long)r.bytes_total, (long long)r.params_total);
        fprintf(stderr, "wrote %s (%d safetensors file%s) in %.2f s; quantization %.1f MB/s of input\n",
                out, r.n_shards, r.n_shards == 1 ? "" : "s", r.seconds, mbps);
    }
    printf("{\"out\": ");
    cli_json_str(stdout, out);
    printf(", \"format\": \"%s\", \"method\": \"%s\", \"mx_scale\": \"%s\", "
           "\"quantized_layers\": %lld, \"copied_tensors\": %lld, \"params_quantized\": %lld, "
           "\"params_total\": %lld, \"bpw_stored\": %.6f, \"bpw_layers\": %.6f, "
           "\"bpw_study\": %.6f, \"bpw_file\": %.6f, \"bytes_total\": %lld, \"shards\": %d, "
           "\"seconds\": %.3f, \"quantize_mb_per_s\": %.1f}\n",
           fname, kv_qmethod_name(o.method), mx, (long long)r.n_quantized,
           (long long)r.n_copied, (long long)r.params_quantized, (long long)r.params_total,
           r.bpw_format, r.bpw_layers, r.bpw_study, r.bpw_file, (long long)r.bytes_total,
           r.n_shards, r.seconds, mbps);
    return 0;
}
