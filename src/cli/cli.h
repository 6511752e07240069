/* cli.h — shared helpers of the `kvant` subcommands (one file per subcommand). */
#ifndef KVANT_CLI_H
#define KVANT_CLI_H

#include <stdint.h>

#include "kvant/err.h"

/* Each subcommand: returns the process exit status (0 ok, 1 runtime error, 2 usage). */
int cli_ppl(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_quantize(int argc, char **argv);
int cli_report(int argc, char **argv);
int cli_study(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_pretokenize(int argc, char **argv);

/* Print "kvant: <message>" for a failed call and return 1. */
int cli_fail(const kv_err *err);
/* Print "kvant <cmd>: <message>" plus a usage hint and return 2. */
int cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parse a whole decimal integer in [lo, hi]; 0 on success. */
int cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* --threads N / KVANT_THREADS: set the OpenMP thread count (0 = leave default). */
void cli_set_threads(int64_t n);

/* Standard option handling for "--name VALUE": if argv[*i] is `name`, store the next
 * argument in *val, advance *i and return 1; if the value is missing, return -1. */
int cli_opt(int argc, char **argv, int *i, const char *name, const char **val);

/* A command's options, for cli_parse. */
typedef struct {
    const char *name;  /* "--limit" */
    const char *alias; /* another spelling ("-q"), or NULL */
    char kind;         /* 's': string value, 'i': integer value in [lo, hi], 'f': flag */
    void *dst;         /* 's': const char **, 'i': int64_t *, 'f': int * (set to 1) */
    int64_t lo, hi;
    const char *need;  /* 'i': what a bad value gets told: "--limit needs <need>" */
} cli_optdef;

#define CLI_STR(name, dst) {name, NULL, 's', dst, 0, 0, NULL}
#define CLI_INT(name, dst, lo, hi, need) {name, NULL, 'i', dst, lo, hi, need}
#define CLI_FLAG(name, alias, dst) {name, alias, 'f', dst, 0, 0, NULL}
#define CLI_THREADS(dst) CLI_INT("--threads", dst, 1, 4096, "a positive integer")
#define CLI_QUIET(dst) CLI_FLAG("--quiet", "-q", dst)
#define CLI_N_OPTS(opts) (int)(sizeof(opts) / sizeof((opts)[0]))

typedef struct {
    const char *cmd, *usage; /* for usage errors */
    const cli_optdef *opts;
    int n_opts;
    const char **pos;        /* positional arguments in order (left as they were when absent) */
    int max_pos;             /* more is a usage error */
    int dash_is_arg;         /* a lone "-" is a positional argument, not an unknown option */
} cli_spec;

/* Parse argv[1..argc) against spec. Returns 0, or 2 after printing a usage error (a
 * missing or bad value, an unknown option, one positional argument too many). */
int cli_parse(const cli_spec *spec, int argc, char **argv);

#include <stdio.h>
/* Write s as a JSON string literal (quoted, escaped). */
void cli_json_str(FILE *f, const char *s);

#endif
