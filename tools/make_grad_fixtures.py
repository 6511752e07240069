#!/usr/bin/env python3
"""make_grad_fixtures.py — reference loss and gradients for kvant's backward pass, from
PyTorch autograd on transformers' Qwen3ForCausalLM.

Run by hand on a developer machine (never in CI), from the repository root:

    /root/venv/bin/python tools/make_grad_fixtures.py

For each tiny random Qwen3 in SPECS it writes tests/fixtures/train/<name>/:

    config.json, model.safetensors, generation_config.json   save_pretrained, f32
    batch.safetensors    ids I32 [B, T]; targets I32 [B, T] (next token, -1 = ignored)
    grads.safetensors    grad of every parameter (HF names) from loss.backward(), f32
    reference.json       loss (fp32 autograd and fp64), per-tensor max |g32 - g64| / max |g64|
                         (how far torch's own fp32 is from exact), seed, versions

The checkpoints have head_dim != hidden/heads, grouped-query attention and random
RMSNorm weights (1 + N(0, 0.25), q/k norms included) so every gradient is exercised.
The loss is transformers' own: model(input_ids, labels=labels).loss with labels =
input_ids except one position set to -100 (ignored); transformers shifts labels by one,
so kvant's targets[b, t] = labels[b, t + 1] and targets[b, T-1] = -1.
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
import safetensors
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3ForCausalLM

SEED = 20250710
OUT = "tests/fixtures/train"

SPECS = [
    # name, tied, hidden, heads, kv heads, head_dim, intermediate, layers, vocab, B, T
    ("qwen3_tied", True, 48, 4, 2, 16, 80, 2, 300, 2, 17),
    ("qwen3_untied", False, 40, 6, 2, 8, 72, 2, 290, 3, 9),
]


def make(i, spec):
    name, tied, H, nh, nkv, hd, inter, L, V, B, T = spec
    seed = SEED + 1000 * i
    torch.manual_seed(seed)
    np.random.seed(seed)
    cfg = Qwen3Config(
        vocab_size=V, hidden_size=H, intermediate_size=inter, num_hidden_layers=L,
        num_attention_heads=nh, num_key_value_heads=nkv, head_dim=hd,
        max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=tied, attention_bias=False, bos_token_id=0, eos_token_id=1,
        pad_token_id=None,
    )
    cfg._attn_implementation = "eager"
    model = Qwen3ForCausalLM(cfg).to(torch.float32)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.25 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)

    ids = torch.randint(0, V, (B, T), dtype=torch.int64)
    labels = ids.clone()
    labels[0, T // 2] = -100  # ignored: kvant target at [0, T//2 - 1] is -1
    targets = torch.full((B, T), -1, dtype=torch.int32)
    targets[:, :-1] = labels[:, 1:].to(torch.int32)
    targets[targets == -100] = -1
    save_file({"ids": ids.to(torch.int32).contiguous(), "targets": targets.contiguous()},
              os.path.join(d, "batch.safetensors"))

    def run(dtype):
        m = Qwen3ForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        m = m.to(dtype)
        m.train(False)
        out = m(input_ids=ids, labels=labels)
        out.loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
        return out.loss.item(), grads

    loss32, g32 = run(torch.float32)
    loss64, g64 = run(torch.float64)
    save_file({n: g.contiguous() for n, g in g32.items()}, os.path.join(d, "grads.safetensors"))
    gap = {n: float((g32[n].double() - g64[n]).abs().max() / g64[n].abs().max().clamp_min(1e-30))
           for n in g32}
    ref = {
        "loss_f32": loss32, "loss_f64": loss64, "seed": seed, "B": B, "T": T,
        "tied": tied, "torch_f32_vs_f64_grad_relerr": gap,
        "max_torch_f32_vs_f64_grad_relerr": max(gap.values()),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "safetensors": safetensors.__version__,
                     "numpy": np.__version__},
    }
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
    print(f"{name}: loss {loss32:.9g} (f64 {loss64:.12g}), torch f32 grad rel err vs f64 "
          f"max {ref['max_torch_f32_vs_f64_grad_relerr']:.3g}")


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for i, s in enumerate(SPECS):
        make(i, s)


if __name__ == "__main__":
    main()
