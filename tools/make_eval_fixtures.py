#!/usr/bin/env python3
"""make_eval_fixtures.py — per-example reference scores from lm-evaluation-harness.

Runs lm_eval (Hugging Face backend, float32, CPU) on models/tiny-qwen3 over the local
data in ../shared/data through the custom task configs in tools/lm_eval_tasks/ (the
built-in tasks' prompts, pointed at local json files staged here), then writes small
fixtures under tests/fixtures/eval/ that tests/test_eval.c compares kvant against:

  <name>.jsonl   one line per document: gold, and per request a sha256 of
                 context + "\\x00" + continuation (so prompts must match byte for byte),
                 the log-likelihood and is_greedy; acc / acc_norm as the harness scored them
  wikitext.jsonl one line per document: rolling log-likelihood, words, bytes
  summary.json   the harness's aggregated metrics per task
  MANIFEST.md    versions, command, seeds

max_length is set to 512 so the rolling windows of wikitext and the left truncation of
long 5-shot MMLU prompts are both exercised while the C test stays fast.

Usage (from anywhere; needs a venv with lm_eval, torch, transformers):
  /root/venv/bin/python tools/make_eval_fixtures.py [--data ../shared/data]
"""
import argparse
import csv
import hashlib
import json
import os
import platform
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE = os.path.join("build", "eval_fixture_data")
OUT = os.path.join("tests", "fixtures", "eval")
MODEL = "models/tiny-qwen3"
MAX_LENGTH = 512

MMLU_SUBJECTS = ["abstract_algebra", "high_school_european_history"]

# (fixture name, lm_eval task, num_fewshot, limit)
RUNS = [
    ("piqa", "kvfx_piqa", 0, 40),
    ("piqa_ru", "kvfx_piqa_ru", 0, 40),
    ("arc_ru", "kvfx_arc_ru", 0, 30),
    ("mmlu_ru", "kvfx_mmlu_ru", 0, 30),
    ("mmlu_ru_5shot", "kvfx_mmlu_ru", 5, 10),
] + [(f"mmlu_{s}", f"kvfx_mmlu_{s}", 0, 20) for s in MMLU_SUBJECTS] + [
    (f"mmlu_{s}_5shot", f"kvfx_mmlu_{s}", 5, 10) for s in MMLU_SUBJECTS
] + [("wikitext", "kvfx_wikitext", 0, 3)]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def wikitext_documents(path):
    """Documents as EleutherAI/wikitext_document_level cuts the raw file: a new page
    starts at every top-level heading line ' = Title = '."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    pages, cur = [], []
    for line in lines:
        flat = line.replace("= = =", "===").replace("= =", "==").strip()
        if flat.startswith("= ") and flat.strip().endswith(" ="):
            page = "\n".join(cur)
            if page.strip():
                pages.append(page)
            cur = []
        cur.append(line)
    pages.append("\n".join(cur))
    return pages


def stage(data):
    os.makedirs(STAGE, exist_ok=True)
    for name in ("piqa", "piqa_ru"):
        with open(os.path.join(data, name, "valid.jsonl"), encoding="utf-8") as f:
            docs = [json.loads(x) for x in f]
        with open(os.path.join(data, name, "valid-labels.lst"), encoding="utf-8") as f:
            labels = [int(x) for x in f]
        rows = [{"goal": d["goal"], "sol1": d["sol1"], "sol2": d["sol2"], "label": l}
                for d, l in zip(docs, labels)]
        write_jsonl(os.path.join(STAGE, f"{name}.jsonl"), rows)
    for s in MMLU_SUBJECTS:
        for split in ("test", "dev"):
            with open(os.path.join(data, "mmlu", split, f"{s}_{split}.csv"), encoding="utf-8",
                      newline="") as f:
                r = list(csv.reader(f))
            rows = [{"question": x[0], "choices": x[1:5], "answer": int(x[5])} for x in r[1:]]
            write_jsonl(os.path.join(STAGE, f"mmlu_{s}_{split}.jsonl"), rows)
    for src, dst in (("ru_val.json", "mmlu_ru_val.jsonl"), ("ru_dev.json", "mmlu_ru_dev.jsonl")):
        with open(os.path.join(data, "mmlu_ru", src), encoding="utf-8") as f:
            write_jsonl(os.path.join(STAGE, dst), json.load(f))
    with open(os.path.join(data, "arc_ru", "ru_challenge_test.json"), encoding="utf-8") as f:
        arc = json.load(f)
    for d in arc:  # the harness's process_docs reads option_e; absent means none
        d.setdefault("option_e", None)
    write_jsonl(os.path.join(STAGE, "arc_ru_test.jsonl"), arc)
    pages = wikitext_documents(os.path.join(data, "wikitext2", "wiki.test.raw"))
    write_jsonl(os.path.join(STAGE, "wikitext.jsonl"), [{"page": p} for p in pages])


def sha(ctx, cont):
    return hashlib.sha256((ctx + "\x00" + cont).encode("utf-8")).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("KVANT_DATA", "../shared/data"))
    args = ap.parse_args()
    os.chdir(REPO)
    data = args.data
    stage(data)

    import lm_eval
    import torch
    import transformers
    from lm_eval.tasks import TaskManager

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tm = TaskManager(include_path=os.path.join(REPO, "tools", "lm_eval_tasks"))
    os.makedirs(OUT, exist_ok=True)
    summary = {}
    model_args = f"pretrained={MODEL},dtype=float32,max_length={MAX_LENGTH}"
    for name, task, shots, limit in RUNS:
        print(f"== {name}: {task} {shots}-shot limit {limit}", file=sys.stderr)
        res = lm_eval.simple_evaluate(
            model="hf", model_args=model_args, tasks=[task], num_fewshot=shots,
            limit=limit, log_samples=True, task_manager=tm, device="cpu", batch_size=1,
            random_seed=0, numpy_random_seed=1234, torch_random_seed=1234,
            fewshot_random_seed=1234)
        summary[name] = {k: v for k, v in res["results"][task].items()
                         if k not in ("alias", "name")}
        rows = []
        for s in sorted(res["samples"][task], key=lambda x: x["doc_id"]):
            if name == "wikitext":
                ll, words = s["word_perplexity"]
                _, nbytes = s["byte_perplexity"]
                rows.append({"doc": s["doc_id"], "ll": ll, "words": words, "bytes": nbytes,
                             "sha": hashlib.sha256(s["arguments"][0][0].encode()).hexdigest()})
                continue
            reqs = []
            for a, r in zip(s["arguments"], s["resps"]):
                ctx, cont = a[0], a[1]
                ll, greedy = r[0]
                reqs.append({"sha": sha(ctx, cont), "ll": float(ll), "greedy": bool(greedy)})
            row = {"doc": s["doc_id"], "gold": s["target"], "req": reqs, "acc": s["acc"]}
            if "acc_norm" in s:
                row["acc_norm"] = s["acc_norm"]
            rows.append(row)
        write_jsonl(os.path.join(OUT, f"{name}.jsonl"), rows)
    with open(os.path.join(OUT, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, sort_keys=True, default=str)
        f.write("\n")
    with open(os.path.join(OUT, "MANIFEST.md"), "w", encoding="utf-8") as f:
        f.write("# tests/fixtures/eval — lm-evaluation-harness reference scores\n\n")
        f.write("Made by `tools/make_eval_fixtures.py` (task configs in `tools/lm_eval_tasks/`).\n\n")
        f.write(f"- lm_eval {lm_eval.__version__}, transformers {transformers.__version__}, "
                f"torch {torch.__version__}, Python {platform.python_version()}\n")
        f.write(f"- model: `{MODEL}` with `{model_args}`, device cpu, batch_size 1\n")
        f.write("- seeds: random 0, numpy 1234, torch 1234, fewshot 1234 (first_n few-shot "
                "sampling does not use them)\n")
        f.write(f"- data: `{data}` (staged as jsonl under `{STAGE}/`)\n\n")
        f.write("| fixture | lm_eval task | num_fewshot | limit |\n|---|---|---:|---:|\n")
        for name, task, shots, limit in RUNS:
            f.write(f"| {name}.jsonl | {task} | {shots} | {limit} |\n")
        f.write("\nRequest hashes: sha256 of UTF-8 `context + \"\\x00\" + continuation` "
                "(wikitext: of the detokenized document).\n")


if __name__ == "__main__":
    main()
