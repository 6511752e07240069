#!/usr/bin/env python3
"""make_ppl_fixtures.py — expected `kvant ppl` results, computed with HF transformers
and tokenizers, for the end-to-end CLI test (tests/test_cli.c).

Run by hand from the repository root (never in CI):

    venv/bin/python tools/make_ppl_fixtures.py

Writes tests/fixtures/ppl/expected.json and the id files it names. The protocol is the
GPTQ one kvant implements: non-overlapping windows of ctx tokens (trailing remainder
dropped; an input shorter than ctx is one window), the first token of every window is
context only, NLL averaged over all predicted tokens. Logits come from transformers in
float32 (half-precision weights converted exactly to fp32), eager attention.
"""
import json
import os
import sys

import numpy as np
import torch
import tokenizers
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

OUT = "tests/fixtures/ppl"
SEED = 1234


def gptq_nll(model, ids, ctx):
    n = len(ids)
    if n < ctx:
        ctx = n
    windows = n // ctx
    total, count = 0.0, 0
    for w in range(windows):
        x = torch.tensor([ids[w * ctx:(w + 1) * ctx]])
        with torch.no_grad():
            logits = model(x).logits[0].double()
        lp = torch.log_softmax(logits[:-1], dim=-1)
        tgt = x[0, 1:]
        nll = -lp[torch.arange(ctx - 1), tgt]
        total += float(nll.sum())
        count += ctx - 1
    return {"tokens": count, "windows": windows, "ctx": ctx,
            "dropped_tokens": n - windows * ctx, "nll": total / count}


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(SEED)
    cases = []

    # 1. the shipped default model on the shipped sample text: tokenizer + model + ppl
    mdir = "models/tiny-qwen3"
    tok = AutoTokenizer.from_pretrained(mdir)
    text = open("docs/sample.txt", encoding="utf-8").read()
    ids = tok(text)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager")
    for ctx in (64, 4096):
        r = gptq_nll(model, ids, ctx)
        r.update({"model": mdir, "text": "docs/sample.txt", "ctx_arg": ctx, "n_input_ids": len(ids)})
        cases.append(r)
    with open(f"{OUT}/tiny_qwen3_sample_ids.txt", "w") as f:
        f.write(" ".join(map(str, ids)) + "\n")

    # 2. a sharded bf16 Llama with llama3 rope scaling, from an ids file: model + ppl only
    mdir = "tests/fixtures/models/llama3_bf16_sharded"
    model = AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager")
    rng = np.random.default_rng(SEED)
    ids = rng.integers(0, model.config.vocab_size, size=250).tolist()
    with open(f"{OUT}/llama3_ids.txt", "w") as f:
        # several per line, with varied spacing, as a user's file might have
        for i in range(0, len(ids), 17):
            f.write("  ".join(map(str, ids[i:i + 17])) + "\n")
    r = gptq_nll(model, ids, 100)
    r.update({"model": mdir, "ids": f"{OUT}/llama3_ids.txt", "ctx_arg": 100})
    cases.append(r)

    meta = {"script": "tools/make_ppl_fixtures.py", "seed": SEED,
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
            "cases": cases}
    with open(f"{OUT}/expected.json", "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
