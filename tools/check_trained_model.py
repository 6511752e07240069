#!/usr/bin/env python3
"""check_trained_model.py — does a checkpoint written by `kvant train` load in Hugging Face
transformers, and do transformers and kvant compute the same thing from it?

    /root/venv/bin/python tools/check_trained_model.py MODEL_DIR [--kvant build/kvant]
        [--text docs/sample.txt] [--n 256]

1. AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=float32, eager attention): the
   config.json and model.safetensors kvant wrote must load with no missing or unexpected
   weights (a tied model has no lm_head.weight, as save_pretrained writes it).
2. The first n tokens of --text, tokenized with MODEL_DIR/tokenizer.json by HF
   `tokenizers`, are written to an ids file; `kvant ppl MODEL_DIR --ids FILE --ctx n` gives
   the mean NLL of tokens 1..n-1 (the first is context only); transformers' logits on the
   same ids give the same mean from log_softmax. Both are fp32 on the same (bf16 or f32)
   weights, so they must agree to 1e-4 nats (summation order only). The per-token NLLs of
   transformers are also compared with the mean, and the max |logit| is printed.
Exit status 0 when everything agrees, 1 otherwise.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--kvant", default="build/kvant")
    ap.add_argument("--text", default="docs/sample.txt")
    ap.add_argument("--n", type=int, default=256)
    a = ap.parse_args()

    model, info = AutoModelForCausalLM.from_pretrained(
        a.model, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    print(f"transformers {transformers.__version__}: loaded {type(model).__name__}, "
          f"{sum(p.numel() for p in model.parameters())} parameters; loading problems: {problems or 'none'}")
    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    with open(a.text, encoding="utf-8") as f:
        ids = tok.encode(f.read()).ids[: a.n]
    n = len(ids)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    nll_tok = -lp[torch.arange(n - 1), torch.tensor(ids[1:])]
    nll_hf = nll_tok.mean().item()

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(" ".join(map(str, ids)) + "\n")
        idsf = f.name
    out = subprocess.run([a.kvant, "ppl", a.model, "--ids", idsf, "--ctx", str(n), "--quiet"],
                         capture_output=True, text=True)
    os.unlink(idsf)
    if out.returncode != 0:
        print("kvant ppl failed:", out.stderr.strip())
        return 1
    res = json.loads(out.stdout.strip().splitlines()[-1])
    nll_kv = res["nll"]
    diff = abs(nll_kv - nll_hf)
    print(f"{n} tokens: mean NLL transformers {nll_hf:.9f}, kvant {nll_kv:.9f}, |diff| {diff:.3g} "
          f"(ppl {res['ppl']:.4f}); max |logit| {logits.abs().max().item():.3f}; "
          f"per-token NLL range [{nll_tok.min().item():.3f}, {nll_tok.max().item():.3f}]")
    ok = not problems and res["tokens"] == n - 1 and diff <= 1e-4
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
