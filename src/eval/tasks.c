/* tasks.c — the evaluation tasks: which files they read and the prompts they build.
 *
 * Pipeline stage: evaluate. Prompts follow lm-evaluation-harness 0.4.x task configs:
 *   piqa      piqa/piqa.yaml: "Question: {goal}\nAnswer:", choices [sol1, sol2]
 *   piqa_ru   the same with the two prompt words translated: "Вопрос: {goal}\nОтвет:"
 *   mmlu      mmlu/default/_default_template_yaml: description "The following are
 *             multiple choice questions (with answers) about {subject}.\n\n", then
 *             first_n few-shot dev examples "{q} {letter}\n\n", then
 *             "{question.strip()}\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer:", choices A-D
 *   mmlu_ru   okapi/mmlu_multilingual (m_mmlu_ru): the same template on instruction/
 *             option_a..d, no description, first_n few-shot from ru_dev.json
 *   arc_ru    okapi/arc_multilingual (arc_ru): "Question: {pre(instruction)}\nAnswer:",
 *             choices pre(option) for the non-empty options
 *   wikitext2 / wikitext_ru: rolling log-likelihood (wikitext/wikitext.yaml) and the
 *             GPTQ protocol text.
 * Every choice is scored as the continuation " " + choice (target_delimiter). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/tasks_data.h"
#include "kvant/fileio.h"

struct kv_task {
    char name[96];
    kv_task_kind kind;
    int num_fewshot;
    int has_acc_norm;
    ev_mmlu_kind mmlu;
    char note[512];
    kv_mc_doc *mc;
    kv_roll_doc *roll;
    int64_t n, cap;
    char **files;
    int n_files;
    ev_str gptq;
    char **owned; /* every string and choice array the docs point into */
    size_t n_owned, cap_owned;
};

/* ---- the harness's MMLU subjects and categories (tags in mmlu/default/mmlu_SUBJECT.yaml) --------- */
static const struct {
    const char *subject, *category;
} MMLU[] = {
    {"abstract_algebra", "stem"}, {"anatomy", "stem"}, {"astronomy", "stem"},
    {"business_ethics", "other"}, {"clinical_knowledge", "other"}, {"college_biology", "stem"},
    {"college_chemistry", "stem"}, {"college_computer_science", "stem"},
    {"college_mathematics", "stem"}, {"college_medicine", "other"}, {"college_physics", "stem"},
    {"computer_security", "stem"}, {"conceptual_physics", "stem"},
    {"econometrics", "social_sciences"}, {"electrical_engineering", "stem"},
    {"elementary_mathematics", "stem"}, {"formal_logic", "humanities"}, {"global_facts", "other"},
    {"high_school_biology", "stem"}, {"high_school_chemistry", "stem"},
    {"high_school_computer_science", "stem"}, {"high_school_european_history", "humanities"},
    {"high_school_geography", "social_sciences"},
    {"high_school_government_and_politics", "social_sciences"},
    {"high_school_macroeconomics", "social_sciences"}, {"high_school_mathematics", "stem"},
    {"high_school_microeconomics", "social_sciences"}, {"high_school_physics", "stem"},
    {"high_school_psychology", "social_sciences"}, {"high_school_statistics", "stem"},
    {"high_school_us_history", "humanities"}, {"high_school_world_history", "humanities"},
    {"human_aging", "other"}, {"human_sexuality", "social_sciences"},
    {"international_law", "humanities"}, {"jurisprudence", "humanities"},
    {"logical_fallacies", "humanities"}, {"machine_learning", "stem"}, {"management", "other"},
    {"marketing", "other"}, {"medical_genetics", "other"}, {"miscellaneous", "other"},
    {"moral_disputes", "humanities"}, {"moral_scenarios", "humanities"}, {"nutrition", "other"},
    {"philosophy", "humanities"}, {"prehistory", "humanities"},
    {"professional_accounting", "other"}, {"professional_law", "humanities"},
    {"professional_medicine", "other"}, {"professional_psychology", "social_sciences"},
    {"public_relations", "social_sciences"}, {"security_studies", "social_sciences"},
    {"sociology", "social_sciences"}, {"us_foreign_policy", "social_sciences"},
    {"virology", "other"}, {"world_religions", "humanities"},
};
#define N_MMLU ((int)(sizeof MMLU / sizeof MMLU[0]))

const char *ev_mmlu_category(const char *subject) {
    for (int i = 0; i < N_MMLU; i++)
        if (!strcmp(MMLU[i].subject, subject)) return MMLU[i].category;
    return NULL;
}

static const char *const TASK_NAMES[] = {"piqa", "piqa_ru", "mmlu", "mmlu_ru", "arc_ru",
                                         "wikitext2", "wikitext_ru", NULL};

const char *const *kv_task_names(void) { return TASK_NAMES; }

/* ---- ownership ------------------------------------------------------------------------ */

static void *own(kv_task *t, void *p) {
    if (!p) return NULL;
    if (t->n_owned == t->cap_owned) {
        size_t cap = t->cap_owned ? 2 * t->cap_owned : 256;
        char **v = realloc(t->owned, cap * sizeof *v);
        if (!v) {
            free(p);
            return NULL;
        }
        t->owned = v;
        t->cap_owned = cap;
    }
    t->owned[t->n_owned++] = p;
    return p;
}

/* Take the string out of an ev_str into the task. */
static char *own_str(kv_task *t, ev_str *s) {
    char *p = s->p ? s->p : calloc(1, 1);
    s->p = NULL;
    s->n = s->cap = 0;
    return own(t, p);
}

static char *own_dup(kv_task *t, const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return own(t, p);
}

void kv_task_free(kv_task *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_owned; i++) free(t->owned[i]);
    free(t->owned);
    for (int i = 0; i < t->n_files; i++) free(t->files[i]);
    free(t->files);
    free(t->mc);
    free(t->roll);
    ev_str_free(&t->gptq);
    free(t);
}

static kv_status add_file(kv_task *t, const char *path, kv_err *err) {
    char **v = realloc(t->files, (size_t)(t->n_files + 1) * sizeof *v);
    if (!v) return kv_err_set(err, KV_ENOMEM, "eval: out of memory");
    t->files = v;
    size_t n = strlen(path);
    if (!(v[t->n_files] = malloc(n + 1))) return kv_err_set(err, KV_ENOMEM, "eval: out of memory");
    memcpy(v[t->n_files++], path, n + 1);
    return KV_OK;
}

static kv_status grow_docs(kv_task *t, kv_err *err) {
    if (t->n < t->cap) return KV_OK;
    int64_t cap = t->cap ? 2 * t->cap : 64;
    if (t->kind == KV_TASK_MC) {
        kv_mc_doc *v = realloc(t->mc, (size_t)cap * sizeof *v);
        if (!v) return kv_err_set(err, KV_ENOMEM, "eval: out of memory for %lld docs", (long long)cap);
        t->mc = v;
    } else {
        kv_roll_doc *v = realloc(t->roll, (size_t)cap * sizeof *v);
        if (!v) return kv_err_set(err, KV_ENOMEM, "eval: out of memory for %lld docs", (long long)cap);
        t->roll = v;
    }
    t->cap = cap;
    return KV_OK;
}

/* Add an MC document; strings are copied into the task. */
static kv_status add_mc(kv_task *t, ev_str *context, const char *const *choices, int n_choices,
                        int gold, const char *subject, int64_t record, kv_err *err) {
    kv_status st = grow_docs(t, err);
    if (st) return st;
    const char **ch = own(t, malloc((size_t)n_choices * sizeof *ch));
    char *ctx = own_str(t, context);
    if (!ch || !ctx) return kv_err_set(err, KV_ENOMEM, "eval: out of memory");
    for (int i = 0; i < n_choices; i++)
        if (!(ch[i] = own_dup(t, choices[i]))) return kv_err_set(err, KV_ENOMEM, "eval: out of memory");
    kv_mc_doc *d = &t->mc[t->n++];
    d->context = ctx;
    d->choices = ch;
    d->n_choices = n_choices;
    d->gold = gold;
    d->subject = subject;
    d->record = record;
    return KV_OK;
}

/* ---- missing data ---------------------------------------------------------------------- */

static kv_status need_files(const char *task, const char *dir, const char *folder,
                            const char *const *files, const char *expected, kv_err *err) {
    char path[4096];
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", dir, folder, files[i]);
        if (!kv_is_file(path))
            return kv_err_set(err, KV_ENOTFOUND,
                              "%s: data set not found: %s/%s (missing %s; expected %s; see "
                              "../shared/data/README.md, or point --data / KVANT_DATA at a copy)",
                              task, dir, folder, files[i], expected);
    }
    return KV_OK;
}

/* ---- prompts ---------------------------------------------------------------------------- */

/* piqa / piqa_ru */
static kv_status load_piqa(kv_task *t, const char *dir, int ru, int64_t limit, kv_err *err) {
    const char *folder = ru ? "piqa_ru" : "piqa";
    static const char *const files[] = {"valid.jsonl", "valid-labels.lst", NULL};
    kv_status st = need_files(t->name, dir, folder, files,
                              "valid.jsonl ({goal, sol1, sol2} per line) and valid-labels.lst "
                              "(0/1 per line)", err);
    if (st) return st;
    char pj[4096], pl[4096];
    snprintf(pj, sizeof pj, "%s/%s/valid.jsonl", dir, folder);
    snprintf(pl, sizeof pl, "%s/%s/valid-labels.lst", dir, folder);
    ev_records r = {0};
    if ((st = ev_read_piqa(pj, pl, &r, err))) goto done;
    if ((st = add_file(t, pj, err)) || (st = add_file(t, pl, err))) goto done;
    t->has_acc_norm = 1;
    snprintf(t->note, sizeof t->note, "%s: lm-eval piqa prompt%s on %s/valid.jsonl",
             t->name, ru ? " with its words translated (\"Вопрос: {goal}\\nОтвет:\")" : "", folder);
    for (int64_t i = 0; i < r.n && (limit <= 0 || i < limit) && !st; i++) {
        ev_str c = {0};
        if (ev_str_puts(&c, ru ? "Вопрос: " : "Question: ") || ev_str_puts(&c, r.v[i].f[0]) ||
            ev_str_puts(&c, ru ? "\nОтвет:" : "\nAnswer:")) {
            ev_str_free(&c);
            st = kv_err_set(err, KV_ENOMEM, "eval: out of memory");
            break;
        }
        const char *ch[2] = {r.v[i].f[1], r.v[i].f[2]};
        st = add_mc(t, &c, ch, 2, r.v[i].label, NULL, i, err);
        ev_str_free(&c);
    }
done:
    ev_records_free(&r);
    return st;
}

/* "{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:" */
static int mmlu_question(ev_str *s, const char *q, char *const *opts) {
    size_t b, e;
    ev_py_strip(q, strlen(q), &b, &e);
    if (ev_str_put(s, q + b, e - b)) return -1;
    static const char *lead[4] = {"\nA. ", "\nB. ", "\nC. ", "\nD. "};
    for (int k = 0; k < 4; k++)
        if (ev_str_puts(s, lead[k]) || ev_str_puts(s, opts[k])) return -1;
    return ev_str_puts(s, "\nAnswer:");
}

static const char *const LETTERS[5] = {"A", "B", "C", "D", "E"};

static kv_status load_mmlu_subject(kv_task *t, const char *dir, const char *subject, int k,
                                   int64_t limit, kv_err *err) {
    char tp[4096], dp[4096];
    snprintf(tp, sizeof tp, "%s/mmlu/test/%s_test.csv", dir, subject);
    snprintf(dp, sizeof dp, "%s/mmlu/dev/%s_dev.csv", dir, subject);
    char tf[300], df[300];
    snprintf(tf, sizeof tf, "test/%s_test.csv", subject);
    snprintf(df, sizeof df, "dev/%s_dev.csv", subject);
    const char *const files[] = {tf, df, NULL};
    kv_status st = need_files(t->name, dir, "mmlu", files,
                              "test/<subject>_test.csv and dev/<subject>_dev.csv for the 57 "
                              "subjects, CSV with header question,choice0..3,answer", err);
    if (st) return st;
    ev_records test = {0}, dev = {0};
    ev_str fs = {0};
    if ((st = ev_read_mmlu_csv(tp, &test, err)) || (st = ev_read_mmlu_csv(dp, &dev, err))) goto done;
    if ((st = add_file(t, tp, err)) || (st = add_file(t, dp, err))) goto done;
    if (k > dev.n) {
        st = kv_err_set(err, KV_EINVAL, "%s: --num-fewshot %d exceeds the %lld dev examples of %s",
                        t->name, k, (long long)dev.n, subject);
        goto done;
    }
    /* description + few-shot block, shared by every question of the subject */
    int oom = ev_str_puts(&fs, "The following are multiple choice questions (with answers) about ");
    for (const char *p = subject; *p && !oom; p++) oom = ev_str_put(&fs, *p == '_' ? " " : p, 1);
    oom = oom || ev_str_puts(&fs, ".\n\n");
    for (int i = 0; i < k && !oom; i++)
        oom = mmlu_question(&fs, dev.v[i].f[0], dev.v[i].f + 1) || ev_str_puts(&fs, " ") ||
              ev_str_puts(&fs, LETTERS[dev.v[i].label]) || ev_str_puts(&fs, "\n\n");
    const char *subj = NULL;
    for (int i = 0; i < N_MMLU; i++)
        if (!strcmp(MMLU[i].subject, subject)) subj = MMLU[i].subject;
    for (int64_t i = 0; i < test.n && (limit <= 0 || i < limit) && !oom && !st; i++) {
        ev_str c = {0};
        oom = ev_str_put(&c, fs.p, fs.n) || mmlu_question(&c, test.v[i].f[0], test.v[i].f + 1);
        if (!oom) st = add_mc(t, &c, LETTERS, 4, test.v[i].label, subj, i, err);
        ev_str_free(&c);
    }
    if (oom) st = kv_err_set(err, KV_ENOMEM, "eval: out of memory");
done:
    ev_str_free(&fs);
    ev_records_free(&test);
    ev_records_free(&dev);
    return st;
}

/* Subject name from an Okapi id "<subject>/<split>/<n>", interned in the MMLU table. */
static const char *okapi_subject(const char *id) {
    const char *sl = strchr(id, '/');
    size_t n = sl ? (size_t)(sl - id) : strlen(id);
    for (int i = 0; i < N_MMLU; i++)
        if (strlen(MMLU[i].subject) == n && !strncmp(MMLU[i].subject, id, n)) return MMLU[i].subject;
    return NULL;
}

static kv_status load_mmlu_ru(kv_task *t, const char *dir, int k, int64_t limit, kv_err *err) {
    static const char *const files[] = {"ru_val.json", "ru_dev.json", NULL};
    kv_status st = need_files(t->name, dir, "mmlu_ru", files,
                              "Okapi JSON arrays ru_val.json (scored) and ru_dev.json (few-shot)", err);
    if (st) return st;
    char vp[4096], dp[4096];
    snprintf(vp, sizeof vp, "%s/mmlu_ru/ru_val.json", dir);
    snprintf(dp, sizeof dp, "%s/mmlu_ru/ru_dev.json", dir);
    ev_records val = {0}, dev = {0};
    ev_str fs = {0};
    if ((st = ev_read_okapi(vp, 4, &val, err)) || (st = ev_read_okapi(dp, 4, &dev, err))) goto done;
    if ((st = add_file(t, vp, err)) || (st = add_file(t, dp, err))) goto done;
    if (k > dev.n) {
        st = kv_err_set(err, KV_EINVAL, "%s: --num-fewshot %d exceeds the %lld dev examples", t->name,
                        k, (long long)dev.n);
        goto done;
    }
    snprintf(t->note, sizeof t->note,
             "mmlu_ru: lm-eval okapi m_mmlu_ru prompt on mmlu_ru/ru_val.json (Okapi validation "
             "split, the stand-in has no test split), few-shot = first k of ru_dev.json");
    int oom = 0;
    for (int i = 0; i < k && !oom; i++)
        oom = mmlu_question(&fs, dev.v[i].f[0], dev.v[i].f + 1) || ev_str_puts(&fs, " ") ||
              ev_str_puts(&fs, LETTERS[dev.v[i].label]) || ev_str_puts(&fs, "\n\n");
    for (int64_t i = 0; i < val.n && (limit <= 0 || i < limit) && !oom && !st; i++) {
        const char *subj = okapi_subject(val.v[i].f[6]);
        if (!subj) {
            st = kv_err_set(err, KV_EFORMAT, "%s: record %lld: id \"%.60s\" does not start with an "
                            "MMLU subject", vp, (long long)i, val.v[i].f[6]);
            break;
        }
        ev_str c = {0};
        oom = ev_str_put(&c, fs.p ? fs.p : "", fs.n) || mmlu_question(&c, val.v[i].f[0], val.v[i].f + 1);
        if (!oom) st = add_mc(t, &c, LETTERS, 4, val.v[i].label, subj, i, err);
        ev_str_free(&c);
    }
    if (oom) st = kv_err_set(err, KV_ENOMEM, "eval: out of memory");
done:
    ev_str_free(&fs);
    ev_records_free(&val);
    ev_records_free(&dev);
    return st;
}

/* okapi arc_multilingual utils.preprocess: strip; " [title]" -> ". "; drop "[...]"
 * (shortest, within a line); "  " -> " " (one left-to-right pass). */
static int arc_pre(ev_str *out, const char *s) {
    size_t b, e;
    ev_py_strip(s, strlen(s), &b, &e);
    ev_str a = {0}, c = {0};
    int oom = 0;
    for (size_t i = b; i < e && !oom;) {
        if (e - i >= 8 && !memcmp(s + i, " [title]", 8)) {
            oom = ev_str_puts(&a, ". ");
            i += 8;
        } else {
            oom = ev_str_put(&a, s + i, 1);
            i++;
        }
    }
    for (size_t i = 0; i < a.n && !oom;) {
        if (a.p[i] == '[') {
            size_t j = i + 1;
            while (j < a.n && a.p[j] != ']' && a.p[j] != '\n') j++;
            if (j < a.n && a.p[j] == ']') {
                i = j + 1;
                continue;
            }
        }
        oom = ev_str_put(&c, a.p + i, 1);
        i++;
    }
    for (size_t i = 0; i < c.n && !oom;) {
        if (i + 1 < c.n && c.p[i] == ' ' && c.p[i + 1] == ' ') {
            oom = ev_str_put(out, " ", 1);
            i += 2;
        } else {
            oom = ev_str_put(out, c.p + i, 1);
            i++;
        }
    }
    if (!oom && !out->p) oom = ev_str_put(out, "", 0);
    ev_str_free(&a);
    ev_str_free(&c);
    return oom;
}

static kv_status load_arc_ru(kv_task *t, const char *dir, int k, int64_t limit, kv_err *err) {
    static const char *const files[] = {"ru_challenge_test.json", NULL};
    kv_status st = need_files(t->name, dir, "arc_ru", files,
                              "the Okapi JSON array ru_challenge_test.json", err);
    if (st) return st;
    if (k > 0)
        return kv_err_set(err, KV_EUNSUPPORTED, "arc_ru: few-shot is not supported (the harness "
                          "samples it at random from the train split); use --num-fewshot 0");
    char p[4096];
    snprintf(p, sizeof p, "%s/arc_ru/ru_challenge_test.json", dir);
    ev_records r = {0};
    if ((st = ev_read_okapi(p, 5, &r, err)) || (st = add_file(t, p, err))) goto done;
    t->has_acc_norm = 1;
    snprintf(t->note, sizeof t->note,
             "arc_ru: lm-eval okapi arc_ru prompt on arc_ru/ru_challenge_test.json");
    for (int64_t i = 0; i < r.n && (limit <= 0 || i < limit) && !st; i++) {
        ev_str c = {0}, opt[5] = {{0}};
        const char *ch[5];
        int n = 0, oom = ev_str_puts(&c, "Question: ") || arc_pre(&c, r.v[i].f[0]) ||
                         ev_str_puts(&c, "\nAnswer:");
        for (int o = 0; o < 5 && !oom; o++) {
            const char *s = r.v[i].f[1 + o];
            if (!s || !*s) continue; /* `if option`: null and "" are skipped */
            oom = arc_pre(&opt[n], s);
            ch[n] = opt[n].p;
            n++;
        }
        if (oom)
            st = kv_err_set(err, KV_ENOMEM, "eval: out of memory");
        else
            st = add_mc(t, &c, ch, n, r.v[i].label, NULL, i, err);
        ev_str_free(&c);
        for (int o = 0; o < 5; o++) ev_str_free(&opt[o]);
    }
done:
    ev_records_free(&r);
    return st;
}

/* ---- WikiText ----------------------------------------------------------------------------- */

/* Python str.replace(a, b): non-overlapping, left to right. */
static int replace_all(ev_str *s, const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (!s->p || !strstr(s->p, a)) return 0;
    ev_str o = {0};
    const char *p = s->p, *q;
    while ((q = strstr(p, a))) {
        if (ev_str_put(&o, p, (size_t)(q - p)) || ev_str_put(&o, b, nb)) {
            ev_str_free(&o);
            return -1;
        }
        p = q + na;
    }
    if (ev_str_puts(&o, p)) {
        ev_str_free(&o);
        return -1;
    }
    ev_str_free(s);
    *s = o;
    return 0;
}

/* re.sub(r"O\s*([^C]*?)\s*C", r"O\1C"): each O up to the next C, inner text stripped. */
static int strip_pairs(ev_str *s, char open, char close) {
    ev_str o = {0};
    size_t i = 0;
    while (i < s->n) {
        if (s->p[i] == open) {
            const char *c = memchr(s->p + i + 1, close, s->n - i - 1);
            if (c) {
                size_t j = (size_t)(c - s->p), b, e;
                ev_py_strip(s->p + i + 1, j - i - 1, &b, &e);
                if (ev_str_put(&o, &open, 1) || ev_str_put(&o, s->p + i + 1 + b, e - b) ||
                    ev_str_put(&o, &close, 1))
                    goto oom;
                i = j + 1;
                continue;
            }
        }
        if (ev_str_put(&o, s->p + i, 1)) goto oom;
        i++;
    }
    if (!o.p && ev_str_put(&o, "", 0)) goto oom;
    ev_str_free(s);
    *s = o;
    return 0;
oom:
    ev_str_free(&o);
    return -1;
}

/* lm-eval wikitext/preprocess_wikitext.py: wikitext_detokenizer, step by step. */
static int wikitext_detok(ev_str *s) {
    if (replace_all(s, "s '", "s'")) return -1;
    /* re.sub(r"/' [0-9]/", r"/'[0-9]/"): the replacement is literal text */
    for (char d = '0'; d <= '9'; d++) {
        char pat[6] = {'/', '\'', ' ', d, '/', 0};
        if (replace_all(s, pat, "/'[0-9]/")) return -1;
    }
    static const char *const rep1[][2] = {
        {" @-@ ", "-"}, {" @,@ ", ","}, {" @.@ ", "."}, {" : ", ": "}, {" ; ", "; "},
        {" . ", ". "},  {" ! ", "! "},  {" ? ", "? "},  {" , ", ", "}};
    for (size_t k = 0; k < sizeof rep1 / sizeof rep1[0]; k++)
        if (replace_all(s, rep1[k][0], rep1[k][1])) return -1;
    if (strip_pairs(s, '(', ')') || strip_pairs(s, '[', ']') || strip_pairs(s, '{', '}') ||
        strip_pairs(s, '"', '"') || strip_pairs(s, '\'', '\''))
        return -1;
    static const char *const rep2[][2] = {
        {"= = = =", "===="}, {"= = =", "==="}, {"= =", "=="}, {" \xc2\xb0 ", "\xc2\xb0"},
        {" \n", "\n"},       {"\n ", "\n"},    {" N ", " 1 "}, {" 's", "'s"}};
    for (size_t k = 0; k < sizeof rep2 / sizeof rep2[0]; k++)
        if (replace_all(s, rep2[k][0], rep2[k][1])) return -1;
    return 0;
}

/* len(re.split(r"\s+", s)): one more than the number of whitespace runs. */
static int64_t py_split_words(const char *s, size_t len) {
    int64_t runs = 0;
    int in = 0;
    for (size_t i = 0; i < len;) {
        int n;
        uint32_t cp = ev_utf8_next(s + i, len - i, &n);
        int sp = ev_py_isspace(cp);
        if (sp && !in) runs++;
        in = sp;
        i += (size_t)n;
    }
    return runs + 1;
}

static kv_status add_roll(kv_task *t, const char *page, size_t len, int detok, kv_err *err) {
    kv_status st = grow_docs(t, err);
    if (st) return st;
    ev_str s = {0};
    if (ev_str_put(&s, page, len) || (detok && wikitext_detok(&s))) {
        ev_str_free(&s);
        return kv_err_set(err, KV_ENOMEM, "eval: out of memory");
    }
    kv_roll_doc *d = &t->roll[t->n];
    if (!(d->text = own_str(t, &s))) return kv_err_set(err, KV_ENOMEM, "eval: out of memory");
    d->words = py_split_words(page, len);
    d->bytes = (int64_t)len;
    t->n++;
    return KV_OK;
}

/* Is this raw line a top-level heading " = Title = " (wikitext_document_level's test)? */
static int is_page_heading(const char *s, size_t n) {
    ev_str a = {0};
    if (ev_str_put(&a, s, n) || replace_all(&a, "= = =", "===") || replace_all(&a, "= =", "==")) {
        ev_str_free(&a);
        return -1;
    }
    size_t b, e;
    ev_py_strip(a.p, a.n, &b, &e);
    int r = e - b >= 2 && !memcmp(a.p + b, "= ", 2) && e - b >= 2 && !memcmp(a.p + e - 2, " =", 2);
    ev_str_free(&a);
    return r;
}

static int has_non_space(const char *s, size_t n) {
    size_t b, e;
    ev_py_strip(s, n, &b, &e);
    return e > b;
}

static kv_status load_wikitext2(kv_task *t, const char *dir, int64_t limit, kv_err *err) {
    static const char *const files[] = {"wiki.test.raw", NULL};
    kv_status st = need_files(t->name, dir, "wikitext2", files,
                              "the raw WikiText-2 test split wiki.test.raw (LF line endings)", err);
    if (st) return st;
    char p[4096];
    snprintf(p, sizeof p, "%s/wikitext2/wiki.test.raw", dir);
    char *buf = NULL;
    size_t len = 0;
    if ((st = kv_read_file(p, &buf, &len, err)) || (st = add_file(t, p, err))) goto done;
    if (memchr(buf, '\r', len)) {
        st = kv_err_set(err, KV_EFORMAT, "%s: has CR bytes; expected LF line endings (see SOURCE.md)", p);
        goto done;
    }
    snprintf(t->note, sizeof t->note,
             "wikitext2: lm-eval wikitext (documents cut as EleutherAI/wikitext_document_level, "
             "detokenized, rolling windows); gptq: HF wikitext-2-raw-v1 test rows joined with \\n\\n");
    /* Pages: split(\"\\n\"), a new page at each top-level heading; the GPTQ text is the
     * HF line dataset ("row" with its \\n, or "" for blank rows) joined with "\\n\\n",
     * over the lines of the pages kept. */
    size_t cur = 0, gptq_end = 0;
    int64_t pages = 0, rows = 0;
    for (size_t ls = 0;;) {
        size_t le = ls;
        while (le < len && buf[le] != '\n') le++;
        int head = is_page_heading(buf + ls, le - ls);
        if (head < 0) goto oom;
        if (head) {
            size_t pe = ls > cur ? ls - 1 : cur; /* "\n".join(lines before this one) */
            if (has_non_space(buf + cur, pe - cur)) {
                if (limit > 0 && pages >= limit) break;
                if ((st = add_roll(t, buf + cur, pe - cur, 1, err))) goto done;
                pages++;
                gptq_end = pe;
            }
            cur = ls;
        }
        if (le >= len) {
            /* the last page is always yielded, as the dataset script does */
            if (limit <= 0 || pages < limit) {
                if ((st = add_roll(t, buf + cur, len - cur, 1, err))) goto done;
                gptq_end = len;
            }
            break;
        }
        ls = le + 1;
    }
    /* GPTQ rows over [0, gptq_end) (plus its newline when the file has one) */
    if (gptq_end < len) gptq_end++;
    for (size_t ls = 0; ls < gptq_end;) {
        size_t le = ls;
        while (le < gptq_end && buf[le] != '\n') le++;
        size_t re = le < gptq_end ? le + 1 : le; /* Python file iteration keeps "\n" */
        if (rows++ && ev_str_puts(&t->gptq, "\n\n")) goto oom;
        if (has_non_space(buf + ls, re - ls) && ev_str_put(&t->gptq, buf + ls, re - ls)) goto oom;
        ls = re;
    }
    if (!t->gptq.p && ev_str_put(&t->gptq, "", 0)) goto oom;
    goto done;
oom:
    st = kv_err_set(err, KV_ENOMEM, "eval: out of memory");
done:
    free(buf);
    return st;
}

static kv_status load_wikitext_ru(kv_task *t, const char *dir, int64_t limit, kv_err *err) {
    static const char *const files[] = {"rus_wikipedia_2021_10K-sentences.txt", NULL};
    kv_status st = need_files(t->name, dir, "wikitext_ru", files,
                              "the Leipzig TSV rus_wikipedia_2021_10K-sentences.txt (id TAB sentence)",
                              err);
    if (st) return st;
    char p[4096];
    snprintf(p, sizeof p, "%s/wikitext_ru/rus_wikipedia_2021_10K-sentences.txt", dir);
    ev_records r = {0};
    if ((st = ev_read_leipzig(p, &r, err)) || (st = add_file(t, p, err))) goto done;
    snprintf(t->note, sizeof t->note,
             "wikitext_ru: Leipzig rus_wikipedia_2021_10K sentences (stand-in); each sentence is "
             "one rolling document (no detokenizer); gptq: sentences joined with \\n\\n");
    for (int64_t i = 0; i < r.n && (limit <= 0 || i < limit) && !st; i++) {
        const char *s = r.v[i].f[0];
        st = add_roll(t, s, strlen(s), 0, err);
        if (!st && ((i && ev_str_puts(&t->gptq, "\n\n")) || ev_str_puts(&t->gptq, s)))
            st = kv_err_set(err, KV_ENOMEM, "eval: out of memory");
    }
done:
    ev_records_free(&r);
    return st;
}

/* ---- the registry ----------------------------------------------------------------------- */

kv_status kv_task_load(const char *name, const char *data_dir, const kv_task_opts *opts,
                       kv_task **out, kv_err *err) {
    *out = NULL;
    if (!name) return kv_err_set(err, KV_EINVAL, "eval: no task name");
    if (!data_dir || !*data_dir) {
        const char *e = getenv("KVANT_DATA");
        data_dir = e && *e ? e : "../shared/data";
    }
    int64_t limit = opts ? opts->limit : 0;
    int k = opts && opts->num_fewshot > 0 ? opts->num_fewshot : 0;
    const char *subject = NULL;
    int known = 0;
    for (int i = 0; TASK_NAMES[i]; i++) known |= !strcmp(name, TASK_NAMES[i]);
    if (!known && !strncmp(name, "mmlu_", 5)) {
        for (int i = 0; i < N_MMLU; i++)
            if (!strcmp(name + 5, MMLU[i].subject)) subject = MMLU[i].subject;
        known = subject != NULL;
    }
    if (!known) {
        char list[512] = "";
        for (int i = 0; TASK_NAMES[i]; i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, TASK_NAMES[i], sizeof list - strlen(list) - 1);
        }
        return kv_err_set(err, KV_EINVAL, "eval: unknown task '%s'; known tasks: %s, and "
                          "mmlu_<subject> (e.g. mmlu_anatomy)", name, list);
    }
    kv_task *t = calloc(1, sizeof *t);
    if (!t) return kv_err_set(err, KV_ENOMEM, "eval: out of memory");
    snprintf(t->name, sizeof t->name, "%s", name);
    t->num_fewshot = k;
    int rolling = !strcmp(name, "wikitext2") || !strcmp(name, "wikitext_ru");
    t->kind = rolling ? KV_TASK_ROLLING : KV_TASK_MC;
    kv_status st;
    if (rolling && k > 0) {
        st = kv_err_set(err, KV_EINVAL, "%s: a perplexity task takes no few-shot examples", name);
    } else if (!strcmp(name, "piqa") || !strcmp(name, "piqa_ru")) {
        st = load_piqa(t, data_dir, name[4] == '_', limit, err);
    } else if (!strcmp(name, "mmlu") || subject) {
        t->mmlu = EV_MMLU_EN;
        snprintf(t->note, sizeof t->note, "%s: lm-eval mmlu default template, %d-shot (first_n "
                 "from dev), on mmlu/test", name, k);
        st = KV_OK;
        for (int i = 0; i < N_MMLU && !st; i++)
            if (!subject || subject == MMLU[i].subject)
                st = load_mmlu_subject(t, data_dir, MMLU[i].subject, k, limit, err);
    } else if (!strcmp(name, "mmlu_ru")) {
        t->mmlu = EV_MMLU_RU;
        st = load_mmlu_ru(t, data_dir, k, limit, err);
    } else if (!strcmp(name, "arc_ru")) {
        st = load_arc_ru(t, data_dir, k, limit, err);
    } else if (!strcmp(name, "wikitext2")) {
        st = load_wikitext2(t, data_dir, limit, err);
    } else {
        st = load_wikitext_ru(t, data_dir, limit, err);
    }
    if (!st && t->n == 0) st = kv_err_set(err, KV_EFORMAT, "%s: no documents to evaluate", name);
    if (st) {
        kv_task_free(t);
        return st;
    }
    *out = t;
    return KV_OK;
}

const char *kv_task_name(const kv_task *t) { return t ? t->name : ""; }
kv_task_kind kv_task_kind_of(const kv_task *t) { return t ? t->kind : KV_TASK_MC; }
int64_t kv_task_n_docs(const kv_task *t) { return t ? t->n : 0; }
int kv_task_num_fewshot(const kv_task *t) { return t ? t->num_fewshot : 0; }
const char *kv_task_note(const kv_task *t) { return t ? t->note : ""; }
int kv_task_n_files(const kv_task *t) { return t ? t->n_files : 0; }
const char *kv_task_file(const kv_task *t, int i) {
    return t && i >= 0 && i < t->n_files ? t->files[i] : NULL;
}
int ev_task_has_acc_norm(const kv_task *t) { return t && t->has_acc_norm; }
ev_mmlu_kind ev_task_mmlu(const kv_task *t) { return t ? t->mmlu : EV_MMLU_NONE; }

const kv_mc_doc *kv_task_mc_doc(const kv_task *t, int64_t i) {
    return t && t->kind == KV_TASK_MC && i >= 0 && i < t->n ? &t->mc[i] : NULL;
}
const kv_roll_doc *kv_task_roll_doc(const kv_task *t, int64_t i) {
    return t && t->kind == KV_TASK_ROLLING && i >= 0 && i < t->n ? &t->roll[i] : NULL;
}
const char *kv_task_gptq_text(const kv_task *t, size_t *len) {
    if (!t || t->kind != KV_TASK_ROLLING) return NULL;
    if (len) *len = t->gptq.n;
    return t->gptq.p;
}
