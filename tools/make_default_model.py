#!/usr/bin/env python3
"""make_default_model.py — models/tiny-qwen3, the checkpoint `kvant ppl` runs on out of
the box until a trained one exists.

Run by hand (never in CI), from the repository root:

    venv/bin/python tools/make_default_model.py [--out models/tiny-qwen3] [--merges 7936]
        [--src ../shared/data/tokenizer_qwen3]

What it writes into --out (about 4 MB):
    config.json, generation_config.json, model.safetensors   (save_pretrained, bf16)
    tokenizer.json, tokenizer_config.json                     (tools/make_small_tokenizer.py:
                                                               Qwen3's tokenizer cut to its
                                                               first --merges merges)
    README.md                                                 (what this is)

The model is a Qwen3ForCausalLM with RANDOM weights (seed SEED below): hidden 128, 4
layers, 4 query heads and 2 key/value heads of head_dim 32, intermediate 384, tied
embeddings, bf16. Its vocab_size is the tokenizer's size rounded up to a multiple of
128 (as real Qwen3 checkpoints pad 151,669 tokens to 151,936), so rows past the
tokenizer exist but are never produced by encoding. Weights ~ N(0, 0.02), norms 1: the
perplexity it gives is near the vocabulary size, which is the point — it exercises the
whole pipeline (load, tokenize, forward, perplexity) on a real tokenizer, not quality.

The script reloads the directory with transformers (AutoTokenizer and
AutoModelForCausalLM) and prints the perplexity of a sample sentence.
"""

import argparse
import json
import os
import subprocess
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

SEED = 20250612
HERE = os.path.dirname(os.path.abspath(__file__))

README = """# tiny-qwen3 — random-weight default checkpoint

Made by `tools/make_default_model.py` (seed {seed}; transformers {tf}, torch {torch}).
It is NOT a trained model: weights are random (N(0, 0.02), unit norms), so its
perplexity is close to its vocabulary size. It exists so that `kvant ppl` and the
tests have a real Hugging Face directory to run on without downloads.

- Architecture: Qwen3ForCausalLM, hidden {hidden}, {layers} layers, {heads} heads /
  {kv} key-value heads, head_dim {hd}, intermediate {inter}, tied embeddings, bf16,
  vocab_size {vocab} ({ntok} tokenizer tokens, padded to a multiple of 128).
- Tokenizer: the real Qwen3 byte-level BPE (normalizer, pre-tokenizer, decoder and
  post-processor unchanged) restricted to the 256 byte tokens and its first {merges}
  merges, then Qwen3's 26 added tokens renumbered to ids {first_added}..{last_added}
  (`<|endoftext|>` = {eot}, `<|im_start|>` = {ims}, `<|im_end|>` = {ime}). Made by
  `tools/make_small_tokenizer.py {merges} tokenizer.json`.
- config.json is as transformers {tf} save_pretrained writes it (`rope_parameters`,
  `dtype`).
"""


def main():
    ap = argparse.ArgumentParser(description="random-weight default Qwen3 checkpoint")
    ap.add_argument("--out", default="models/tiny-qwen3")
    ap.add_argument("--merges", type=int, default=7936)
    ap.add_argument("--src", default=None)
    args = ap.parse_args()
    transformers.utils.logging.disable_progress_bar()
    os.makedirs(args.out, exist_ok=True)

    cmd = [sys.executable, os.path.join(HERE, "make_small_tokenizer.py"), str(args.merges),
           os.path.join(args.out, "tokenizer.json"),
           "--config-out", os.path.join(args.out, "tokenizer_config.json")]
    if args.src:
        cmd += ["--src", args.src]
    subprocess.run(cmd, check=True)

    with open(os.path.join(args.out, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    ntok = len(tj["model"]["vocab"]) + len(tj["added_tokens"])
    ids = {t["content"]: t["id"] for t in tj["added_tokens"]}
    eot = ids["<|endoftext|>"]
    vocab = (ntok + 127) // 128 * 128

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    cfg = Qwen3Config(
        vocab_size=vocab,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=384,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_theta": 1000000.0, "rope_type": "default"},
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
    )
    model = Qwen3ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    model = model.to(torch.bfloat16)
    model.save_pretrained(args.out)

    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(README.format(
            seed=SEED, tf=transformers.__version__, torch=torch.__version__, hidden=128, layers=4,
            heads=4, kv=2, hd=32, inter=384, vocab=vocab, ntok=ntok, merges=args.merges,
            first_added=min(ids.values()), last_added=max(ids.values()), eot=eot,
            ims=ids["<|im_start|>"], ime=ids["<|im_end|>"]))
    for fn in os.listdir(args.out):
        os.chmod(os.path.join(args.out, fn), 0o644)

    # Reload as a user would and score a sentence.
    tok = AutoTokenizer.from_pretrained(args.out)
    m = AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.float32).eval()
    text = "Квантование весов уменьшает размер модели. Quantization shrinks the model."
    enc = tok(text, return_tensors="pt")
    assert tok.decode(enc.input_ids[0]) == text
    with torch.no_grad():
        loss = m(**enc, labels=enc.input_ids).loss
    size = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"{args.out}: {size / 1e6:.2f} MB, vocab_size {vocab} ({ntok} tokens), "
          f"{sum(p.numel() for p in m.parameters())} params; "
          f"sample: {enc.input_ids.shape[1]} tokens, ppl {loss.exp().item():.1f}")


if __name__ == "__main__":
    main()
