#!/usr/bin/env python3
"""make_testbed_fixture.py — transformers' logits on the shipped testbed checkpoint, so that
CI checks that the model kvant ships and runs by default computes what transformers computes
from the same files (tests/test_testbed.c).

    /root/venv/bin/python tools/make_testbed_fixture.py [--model models/testbed-qwen3]
        [--text docs/sample.txt] [--n 96] [--out tests/fixtures/testbed]

The first n tokens of --text (tokenized by HF `tokenizers` from the model's own
tokenizer.json) go through AutoModelForCausalLM in fp32 (bf16 weights upcast, eager
attention). Written:
  reference.safetensors  ids I32[n]; next_logprob F32[n-1] (log-softmax of token t+1 at
                         position t, computed in float64); pos I32[4]; logits F32[4, vocab]
                         (all logits at 4 positions: first, two inside, last)
  reference.json         the model.safetensors sha256 the fixture belongs to, versions, and
                         transformers' own fp32-vs-fp64 gap on these logits
A test that finds another sha256 says the fixture is stale instead of comparing.
"""

import argparse
import hashlib
import json
import os

import numpy as np
import safetensors.numpy
import tokenizers
import torch
import transformers
from transformers import AutoModelForCausalLM


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/testbed-qwen3")
    ap.add_argument("--text", default="docs/sample.txt")
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--out", default="tests/fixtures/testbed")
    a = ap.parse_args()

    tok = tokenizers.Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    with open(a.text, encoding="utf-8") as f:
        ids = tok.encode(f.read()).ids[: a.n]
    n = len(ids)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        lg32 = model(torch.tensor([ids])).logits[0]
        lg64 = model.double()(torch.tensor([ids])).logits[0]
    lp = torch.log_softmax(lg32.double(), -1)
    next_lp = lp[torch.arange(n - 1), torch.tensor(ids[1:])].float().numpy()
    pos = np.array([0, n // 3, (2 * n) // 3, n - 1], dtype=np.int32)
    os.makedirs(a.out, exist_ok=True)
    safetensors.numpy.save_file(
        {"ids": np.array(ids, dtype=np.int32), "next_logprob": next_lp.astype(np.float32),
         "pos": pos, "logits": lg32[torch.from_numpy(pos).long()].numpy().astype(np.float32)},
        os.path.join(a.out, "reference.safetensors"))
    meta = {
        "model": a.model,
        "model_safetensors_sha256": sha256(os.path.join(a.model, "model.safetensors")),
        "text": a.text,
        "n_tokens": n,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
        "max_abs_f32_minus_f64_logit": float((lg32.double() - lg64).abs().max()),
        "max_abs_logit": float(lg32.abs().max()),
        "mean_nll": float(-next_lp.astype(np.float64).mean()),
    }
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
