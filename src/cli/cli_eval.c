/* cli_eval.c — `kvant eval MODEL_DIR --tasks piqa,mmlu_ru,... [options]`.
 *
 * Runs lm-evaluation-harness-compatible tasks (include/kvant/eval.h) on a base or
 * quantized checkpoint. Progress goes to stderr; the results JSON (in the spirit of
 * the harness's: per task metrics with stderr and n, plus model path, content hash,
 * quantization_config, data file hashes, kvant version and wall time) goes to
 * --output, written atomically, or to stdout. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "kvant/eval.h"
#include "kvant/fileio.h"
#include "kvant/model.h"
#include "kvant/tokenizer.h"

#ifndef KVANT_VERSION
#define KVANT_VERSION "0.1.0"
#endif

static const char *EVAL_USAGE =
    "kvant eval MODEL_DIR --tasks T1,T2,... [--limit N] [--num-fewshot K] [--output FILE]\n"
    "           [--log-samples] [--data DIR] [--batch N] [--max-length N] [--ctx N]\n"
    "           [--threads N] [--quiet]\n"
    "tasks: piqa piqa_ru mmlu mmlu_ru arc_ru wikitext2 wikitext_ru mmlu_<subject>";

static void json_num(FILE *f, double v) {
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.17g", v);
}

/* "quantization_config" of MODEL_DIR/config.json as compact JSON, or NULL. */
static char *quant_config(const char *dir) {
    char path[4096], *buf = NULL, *out = NULL;
    size_t len = 0;
    kv_err e = {0};
    if (kv_path_join(path, sizeof path, dir, "config.json", &e) || kv_read_file(path, &buf, &len, &e))
        return NULL;
    cJSON *root = cJSON_ParseWithLength(buf, len);
    free(buf);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (q) out = cJSON_PrintUnformatted(q);
    cJSON_Delete(root);
    return out;
}

typedef struct {
    kv_task *task;
    kv_task_result res;
    char (*hash)[65];
} task_run;

static void write_task(FILE *f, const task_run *r, int log_samples) {
    const kv_task *t = r->task;
    fprintf(f, "    ");
    cli_json_str(f, kv_task_name(t));
    fprintf(f, ": {\"note\": ");
    cli_json_str(f, kv_task_note(t));
    fprintf(f, ", \"num_fewshot\": %d, \"n\": %lld, \"seconds\": %.3f, \"tokens_run\": %lld, "
               "\"docs_per_second\": %.3f,\n      \"data_files\": [",
            kv_task_num_fewshot(t), (long long)r->res.n_docs, r->res.seconds,
            (long long)r->res.tokens_run,
            r->res.seconds > 0 ? (double)r->res.n_docs / r->res.seconds : 0.0);
    for (int i = 0; i < kv_task_n_files(t); i++) {
        fprintf(f, "%s{\"path\": ", i ? ", " : "");
        cli_json_str(f, kv_task_file(t, i));
        fprintf(f, ", \"sha256\": \"%s\"}", r->hash[i]);
    }
    fprintf(f, "]");
    if (r->res.has_gptq) {
        const kv_ppl_result *g = &r->res.gptq;
        fprintf(f, ",\n      \"gptq\": {\"ctx\": %lld, \"windows\": %lld, \"tokens\": %lld, "
                   "\"nll\": %.9g, \"nll_stderr\": %.9g, \"ppl\": %.9g}",
                (long long)g->ctx, (long long)g->windows, (long long)g->tokens, g->nll,
                g->nll_stderr, g->ppl);
    }
    if (log_samples) {
        fprintf(f, ",\n      \"samples\": [");
        for (int64_t i = 0; i < r->res.n_docs; i++) {
            fprintf(f, "%s\n        {\"doc\": %lld", i ? "," : "", (long long)i);
            const kv_mc_doc *d = kv_task_mc_doc(t, i);
            if (d) {
                fprintf(f, ", \"record\": %lld, \"gold\": %d, \"pred\": %d, \"pred_norm\": %d",
                        (long long)d->record, d->gold, r->res.pred[i], r->res.pred_norm[i]);
                if (d->subject) {
                    fprintf(f, ", \"subject\": ");
                    cli_json_str(f, d->subject);
                }
                fprintf(f, ", \"ll\": [");
                for (int c = 0; c < d->n_choices; c++) {
                    fprintf(f, c ? ", " : "");
                    json_num(f, r->res.ll[r->res.req_off[i] + c]);
                }
                fprintf(f, "], \"is_greedy\": [");
                for (int c = 0; c < d->n_choices; c++)
                    fprintf(f, "%s%s", c ? ", " : "", r->res.greedy[r->res.req_off[i] + c] ? "true" : "false");
                fprintf(f, "]}");
            } else {
                const kv_roll_doc *rd = kv_task_roll_doc(t, i);
                fprintf(f, ", \"ll\": ");
                json_num(f, r->res.ll[i]);
                fprintf(f, ", \"tokens\": %lld, \"words\": %lld, \"bytes\": %lld}",
                        (long long)r->res.n_tokens[i], (long long)rd->words, (long long)rd->bytes);
            }
        }
        fprintf(f, "]");
    }
    fprintf(f, "}");
}

int cli_eval(int argc, char **argv) {
    const char *dir = NULL, *tasks = NULL, *output = NULL, *data = NULL;
    int64_t limit = 0, shots = -1, batch = 16, maxlen = 0, ctx = 2048, threads = 0;
    int quiet = 0, log_samples = 0;
    const cli_optdef opts[] = {
        CLI_STR("--tasks", &tasks),
        CLI_STR("--output", &output),
        CLI_STR("--data", &data),
        CLI_INT("--limit", &limit, 1, INT64_MAX / 2, "a positive integer"),
        CLI_INT("--num-fewshot", &shots, 0, 64, "an integer 0-64"),
        CLI_INT("--batch", &batch, 1, 4096, "an integer 1-4096"),
        CLI_INT("--max-length", &maxlen, 2, 1 << 22, "an integer >= 2"),
        CLI_INT("--ctx", &ctx, 2, 1 << 22, "an integer >= 2"),
        CLI_THREADS(&threads),
        CLI_FLAG("--log-samples", NULL, &log_samples),
        CLI_QUIET(&quiet),
    };
    const cli_spec spec = {"eval", EVAL_USAGE, opts, CLI_N_OPTS(opts), &dir, 1, 0};
    int bad = cli_parse(&spec, argc, argv);
    if (bad) return bad;
    if (!dir) return cli_usage_error("eval", EVAL_USAGE, "missing MODEL_DIR");
    if (!tasks || !*tasks) return cli_usage_error("eval", EVAL_USAGE, "missing --tasks");
    cli_set_threads(threads);

    double t_wall = kv_now();
    kv_err err = {0};
    kv_model *m = NULL;
    kv_tokenizer *tok = NULL;
    task_run *runs = NULL;
    int n_runs = 0, rc = 1;
    char *qcfg = NULL, *json = NULL;
    size_t json_len = 0;
    char model_hash[65];

    /* load every task first, so a bad name or missing data fails before the model loads */
    char *list = strdup(tasks);
    if (!list) {
        kv_err_set(&err, KV_ENOMEM, "eval: out of memory");
        goto fail;
    }
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        task_run *nr = realloc(runs, (size_t)(n_runs + 1) * sizeof *runs);
        if (!nr) {
            kv_err_set(&err, KV_ENOMEM, "eval: out of memory");
            goto fail;
        }
        runs = nr;
        memset(&runs[n_runs], 0, sizeof *runs);
        kv_task_opts to = {.limit = limit, .num_fewshot = (int)shots};
        if (kv_task_load(name, data, &to, &runs[n_runs].task, &err)) goto fail;
        n_runs++;
        task_run *r = &runs[n_runs - 1];
        int nf = kv_task_n_files(r->task);
        r->hash = calloc((size_t)(nf > 0 ? nf : 1), sizeof *r->hash);
        if (!r->hash) {
            kv_err_set(&err, KV_ENOMEM, "eval: out of memory");
            goto fail;
        }
        for (int i = 0; i < nf; i++)
            if (kv_eval_file_sha256(kv_task_file(r->task, i), r->hash[i], &err)) goto fail;
    }
    if (kv_model_load(dir, &m, &err) || kv_tok_load(dir, &tok, &err)) goto fail;
    if (kv_eval_model_hash(dir, model_hash, &err)) goto fail;
    qcfg = quant_config(dir);
    int32_t prefix = -1;
    for (int k = 0; k < n_runs; k++)
        if (kv_task_kind_of(runs[k].task) == KV_TASK_ROLLING && prefix < 0 &&
            kv_eval_prefix_token(dir, tok, &prefix, &err))
            goto fail;
    kv_eval_opts eo = {.max_length = maxlen, .batch = (int)batch, .prefix_token = prefix, .gptq_ctx = ctx};
    for (int k = 0; k < n_runs; k++) {
        kv_progress prog;
        char label[128];
        snprintf(label, sizeof label, "eval %s", kv_task_name(runs[k].task));
        if (!quiet)
            fprintf(stderr, "eval: %s: %lld documents, %d-shot\n", kv_task_name(runs[k].task),
                    (long long)kv_task_n_docs(runs[k].task), kv_task_num_fewshot(runs[k].task));
        kv_progress_start(&prog, label,
                          kv_task_kind_of(runs[k].task) == KV_TASK_MC ? "req" : "win", 0, quiet);
        if (kv_eval_task(m, tok, runs[k].task, &eo, &prog, &runs[k].res, &err)) goto fail;
        if (!quiet) {
            const kv_score *s = &runs[k].res.scores[0];
            fprintf(stderr, "eval: %s:", s->name);
            for (int i = 0; i < s->n_metrics; i++)
                fprintf(stderr, " %s %.4f", s->m[i].name, s->m[i].value);
            if (runs[k].res.has_gptq) fprintf(stderr, " gptq_ppl %.4f", runs[k].res.gptq.ppl);
            fprintf(stderr, " (%.1f docs/s)\n",
                    runs[k].res.seconds > 0 ? (double)runs[k].res.n_docs / runs[k].res.seconds : 0.0);
        }
    }

    /* ---- results JSON ---- */
    FILE *f = open_memstream(&json, &json_len);
    if (!f) {
        kv_err_set(&err, KV_ENOMEM, "eval: cannot build the results");
        goto fail;
    }
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\n  \"kvant_version\": \"%s\",\n  \"date\": \"%s\",\n  \"model\": {\"path\": ",
            KVANT_VERSION, date);
    cli_json_str(f, dir);
    fprintf(f, ", \"content_hash\": \"sha256:%s\", \"arch\": ", model_hash);
    cli_json_str(f, kv_model_config(m)->arch_name);
    fprintf(f, ", \"n_params\": %lld, \"quantization_config\": %s},\n",
            (long long)kv_model_n_params(m), qcfg ? qcfg : "null");
    fprintf(f, "  \"config\": {\"limit\": %lld, \"num_fewshot\": %lld, \"max_length\": %lld, "
               "\"batch\": %lld, \"gptq_ctx\": %lld, \"prefix_token\": %d, \"data\": ",
            (long long)limit, (long long)(shots < 0 ? 0 : shots), (long long)maxlen, (long long)batch,
            (long long)ctx, (int)prefix);
    cli_json_str(f, data ? data : getenv("KVANT_DATA") && *getenv("KVANT_DATA") ? getenv("KVANT_DATA")
                                                                              : "../shared/data");
    fprintf(f, "},\n  \"results\": {");
    int first = 1;
    for (int k = 0; k < n_runs; k++)
        for (int s = 0; s < runs[k].res.n_scores; s++) {
            const kv_score *sc = &runs[k].res.scores[s];
            fprintf(f, "%s\n    ", first ? "" : ",");
            first = 0;
            cli_json_str(f, sc->name);
            fprintf(f, ": {\"task\": ");
            cli_json_str(f, kv_task_name(runs[k].task));
            fprintf(f, ", \"level\": %d, \"n\": %lld", sc->level, (long long)sc->n);
            for (int i = 0; i < sc->n_metrics; i++) {
                fprintf(f, ", \"%s\": ", sc->m[i].name);
                json_num(f, sc->m[i].value);
                fprintf(f, ", \"%s_stderr\": ", sc->m[i].name);
                json_num(f, sc->m[i].stderr);
            }
            fprintf(f, "}");
        }
    fprintf(f, "\n  },\n  \"tasks\": {\n");
    for (int k = 0; k < n_runs; k++) {
        write_task(f, &runs[k], log_samples);
        fprintf(f, "%s\n", k + 1 < n_runs ? "," : "");
    }
    fprintf(f, "  },\n  \"wall_seconds\": %.3f\n}\n", kv_now() - t_wall);
    if (fclose(f)) {
        kv_err_set(&err, KV_ENOMEM, "eval: cannot build the results");
        goto fail;
    }
    if (output) {
        if (kv_write_file_atomic(output, json, json_len, &err)) goto fail;
        if (!quiet) fprintf(stderr, "eval: results written to %s\n", output);
    } else {
        fwrite(json, 1, json_len, stdout);
    }
    rc = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    free(list);
    for (int k = 0; k < n_runs; k++) {
        kv_task_result_free(&runs[k].res);
        kv_task_free(runs[k].task);
        free(runs[k].hash);
    }
    free(runs);
    free(json);
    free(qcfg);
    kv_tok_free(tok);
    kv_model_free(m);
    return rc;
}
