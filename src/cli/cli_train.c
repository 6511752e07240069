/* cli_train.c — `kvant train --config FILE | --OPTION VALUE ...`: train a Qwen3-shaped
 * model on token shards (kvant pretokenize) and write a Hugging Face checkpoint.
 *
 * Options are applied in command-line order, so options after --config override the
 * file. Every option is a key of kv_train_opts_set (include/kvant/train.h); flags:
 * --resume, --quiet, --no-tie. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kvant/train.h"

static const char *TRAIN_USAGE =
    "kvant train --data DIR --out DIR [--config FILE] [--resume] [--quiet] [--threads N]\n"
    "  model:  --hidden N --layers N --heads N --kv-heads N --head-dim N --intermediate N\n"
    "          [--vocab N (default: tokenizer, rounded up to 128)] [--no-tie] [--rope-theta X]\n"
    "  optim:  --seq N --batch N --accum N --steps N --warmup N --lr X --min-lr X --beta1 X\n"
    "          --beta2 X --eps X --weight-decay X --clip X --seed N --init-std X\n"
    "  output: --eval-every N --eval-batches N --ckpt-every N --log-every N --dtype bf16|f32";

int cli_train(int argc, char **argv) {
    kv_train_opts o;
    kv_train_opts_default(&o);
    kv_err err = {0};
    int64_t threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resume")) {
            o.resume = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o.quiet = 1;
        } else if (!strcmp(a, "--no-tie")) {
            o.tie = 0;
        } else if (!strcmp(a, "--threads")) {
            if (i + 1 >= argc || cli_parse_i64(argv[i + 1], 1, 4096, &threads))
                return cli_usage_error("train", TRAIN_USAGE, "--threads needs a positive integer");
            i++;
        } else if (!strcmp(a, "--config")) {
            if (i + 1 >= argc) return cli_usage_error("train", TRAIN_USAGE, "--config needs a file");
            if (kv_train_opts_file(&o, argv[++i], &err)) return cli_fail(&err);
        } else if (a[0] == '-' && a[1] == '-' && a[2]) {
            if (i + 1 >= argc) return cli_usage_error("train", TRAIN_USAGE, "%s needs a value", a);
            if (kv_train_opts_set(&o, a + 2, argv[++i], &err))
                return cli_usage_error("train", TRAIN_USAGE, "%s", err.msg);
        } else {
            return cli_usage_error("train", TRAIN_USAGE, "unexpected argument '%s'", a);
        }
    }
    if (!o.data[0] || !o.out[0])
        return cli_usage_error("train", TRAIN_USAGE, "--data and --out are required");
    cli_set_threads(threads);
    if (kv_train_run(&o, &err)) return cli_fail(&err);
    return 0;
}
