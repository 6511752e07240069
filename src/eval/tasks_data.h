/* tasks_data.h — records read from the data folders (see tasks_data.c). */
#ifndef KVANT_EVAL_TASKS_DATA_H
#define KVANT_EVAL_TASKS_DATA_H

#include <stdint.h>

#include "eval/eval_internal.h"

#define EV_MAX_FIELDS 7

/* One record: up to 7 owned strings (NULL = absent/null), a label, and where it was
 * (line for line-based files, record index for JSON arrays). */
typedef struct {
    char *f[EV_MAX_FIELDS];
    int label;
    int64_t line;
} ev_record;

typedef struct {
    ev_record *v;
    int64_t n, cap;
} ev_records;

void ev_records_free(ev_records *r);
/* piqa: fields goal, sol1, sol2; label from the .lst file. */
kv_status ev_read_piqa(const char *jsonl, const char *labels, ev_records *out, kv_err *err);
/* mmlu CSV: fields question, choice0..3; label = answer 0-3. */
kv_status ev_read_mmlu_csv(const char *path, ev_records *out, kv_err *err);
/* Okapi JSON array: instruction, option_a..e, id; label = answer letter index. */
kv_status ev_read_okapi(const char *path, int max_options, ev_records *out, kv_err *err);
/* Leipzig sentences: field 0 = sentence. */
kv_status ev_read_leipzig(const char *path, ev_records *out, kv_err *err);

#endif
