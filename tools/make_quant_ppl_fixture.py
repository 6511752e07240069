#!/usr/bin/env python3
"""make_quant_ppl_fixture.py — expected perplexities of quantized tiny-qwen3 checkpoints,
for tests/test_quant_ppl.c (issue 3 point 6).

Run by hand from the repository root after `make` (never in CI):

    /root/venv/bin/python tools/make_quant_ppl_fixture.py

For each format below, `build/kvant quantize models/tiny-qwen3 TMP --format F` writes a
quantized checkpoint. This script then reads its packed tensors with the `safetensors`
package and dequantizes them INDEPENDENTLY of kvant, in numpy, from the layouts
documented in include/kvant/quant.h:

  intB-gG (GPTQ v2): qweight I32 [n_in*B/32, n_out], column o = one LSB-first bit string
      holding q[o, 0..n_in) at bits [B*i, B*i + B); qzeros I32 [n_in/G, ceil(n_out*B/32)],
      row g = one bit string holding z[g, 0..n_out); scales F16 [n_in/G, n_out];
      g_idx I32 [n_in] = i // G.   W[o, i] = f32(scales[g, o]) * f32(q[o, i] - z[g, o]).
  mxfp4 / mxint4: <w>_blocks U8 [n_out, n_in/32, 16] (byte j: element 2j in the low
      nibble, 2j+1 in the high one), <w>_scales U8 [n_out, n_in/32] (E8M0, X = 2^(s-127)).
      mxfp4 element = E2M1 {0, .5, 1, 1.5, 2, 3, 4, 6} with bit 3 the sign; mxint4
      element = two's complement nibble k / 4.  W = element * X.

It loads the BASE model (models/tiny-qwen3, bf16 weights converted exactly to f32) with
transformers, replaces each quantized linear weight by the dequantized values, checks
every other tensor of the quantized checkpoint is byte-identical to the base one, and
computes GPTQ-protocol perplexity on docs/sample.txt with ctx 64 (the protocol of
tools/make_ppl_fixtures.py: non-overlapping windows, first token of each window context
only, trailing remainder dropped). Writes tests/fixtures/ppl/quant_expected.json.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import safetensors
import torch
import transformers
from safetensors.torch import load_file as torch_load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

BASE = "models/tiny-qwen3"
TEXT = "docs/sample.txt"
CTX = 64
OUT = "tests/fixtures/ppl/quant_expected.json"
KVANT = os.environ.get("KVANT_BIN", "build/kvant")
# (format, mx_scale): the study's five formats that fit tiny-qwen3 (hidden 128,
# intermediate 384), plus MX with the MSE scale choice
FORMATS = [("int4-g128", "spec"), ("int3-g128", "spec"), ("int2-g64", "spec"),
           ("mxfp4", "spec"), ("mxint4", "spec"), ("mxfp4", "mse"), ("mxint4", "mse")]
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6],
                dtype=np.float32)


def load_file(path):
    """Every tensor of a .safetensors file as numpy (bf16 as its raw uint16 bits: numpy
    has no bfloat16; packed tensors are never bf16)."""
    out = {}
    for k, v in torch_load_file(path).items():
        out[k] = v.view(torch.uint16).numpy() if v.dtype == torch.bfloat16 else v.numpy()
    return out


def bit_values(words, nvals, bits):
    """words: uint32 [rows, nwords], each row one LSB-first bit string; returns
    int64 [rows, nvals], value j = bits [bits*j, bits*j + bits) of the row's string."""
    words = np.ascontiguousarray(words.astype(np.uint32))
    by = words.view(np.uint8).reshape(words.shape[0], -1)  # little-endian words
    bitarr = np.unpackbits(by, axis=1, bitorder="little").astype(np.int64)
    bitarr = bitarr[:, :nvals * bits].reshape(words.shape[0], nvals, bits)
    return (bitarr << np.arange(bits, dtype=np.int64)).sum(axis=2)


def dequant_int(t, prefix, bits, group):
    qweight = t[prefix + ".qweight"].view(np.uint32)   # [n_in*B/32, n_out]
    qzeros = t[prefix + ".qzeros"].view(np.uint32)     # [ng, zw]
    scales = t[prefix + ".scales"]                     # f16 [ng, n_out]
    g_idx = t[prefix + ".g_idx"]
    ng, n_out = scales.shape
    n_in = qweight.shape[0] * 32 // bits
    assert n_in == ng * group and qweight.shape[1] == n_out
    assert (g_idx == np.arange(n_in) // group).all(), prefix + ": g_idx"
    q = bit_values(qweight.T, n_in, bits)              # [n_out, n_in]
    z = bit_values(qzeros, n_out, bits)                # [ng, n_out]
    g = np.arange(n_in) // group
    diff = (q - z.T[:, g]).astype(np.float32)          # [n_out, n_in], exact small ints
    s = scales.astype(np.float32).T[:, g]              # [n_out, n_in]
    return s * diff


def dequant_mx(t, name, fmt):
    blocks = t[name + "_blocks"]                       # [n_out, nb, 16]
    scales = t[name + "_scales"].astype(np.int32)      # [n_out, nb]
    assert (scales != 0xFF).all(), name + ": E8M0 NaN"
    n_out, nb, _ = blocks.shape
    codes = np.empty((n_out, nb, 32), dtype=np.uint8)
    codes[:, :, 0::2] = blocks & 0x0F
    codes[:, :, 1::2] = blocks >> 4
    if fmt == "mxfp4":
        elem = E2M1[codes]
    else:
        k = codes.astype(np.int32)
        k = np.where(k >= 8, k - 16, k)
        elem = (k.astype(np.float32) / 4.0).astype(np.float32)
    w = np.ldexp(elem, (scales - 127)[:, :, None]).astype(np.float32)
    return w.reshape(n_out, nb * 32)


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
        total += float(-lp[torch.arange(ctx - 1), tgt].sum())
        count += ctx - 1
    return {"tokens": count, "windows": windows, "ctx": ctx,
            "dropped_tokens": n - windows * ctx, "nll": total / count}


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    tok = AutoTokenizer.from_pretrained(BASE)
    ids = tok(open(TEXT, encoding="utf-8").read())["input_ids"]
    base_t = load_file(os.path.join(BASE, "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    base_case = gptq_nll(model, ids, CTX)
    sd = model.state_dict()
    orig = {k: v.clone() for k, v in sd.items()}
    n_layers = model.config.num_hidden_layers
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, mx in FORMATS:
            out = os.path.join(tmp, f"{fmt}-{mx}")
            cmd = [KVANT, "quantize", BASE, out, "--format", fmt, "--mx-scale", mx, "--quiet"]
            summary = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                                text=True).stdout.strip().splitlines()[-1])
            qcfg = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
            assert qcfg["format"] == fmt and qcfg["mx_scale"] == mx
            t = load_file(os.path.join(out, "model.safetensors"))
            used = set()
            max_rel = 0.0
            with torch.no_grad():
                for k, v in orig.items():
                    sd[k].copy_(v)
                for l in range(n_layers):
                    for lin in LINEARS:
                        prefix = f"model.layers.{l}.{lin}"
                        name = prefix + ".weight"
                        if fmt.startswith("int"):
                            bits, group = int(fmt[3]), int(fmt.split("-g")[1])
                            w = dequant_int(t, prefix, bits, group)
                            used.update(prefix + s for s in (".qweight", ".qzeros", ".scales", ".g_idx"))
                        else:
                            w = dequant_mx(t, name, fmt)
                            used.update((name + "_blocks", name + "_scales"))
                        o = orig[name].numpy()
                        assert w.shape == o.shape, name
                        max_rel = max(max_rel, float(np.abs(w - o).max() / np.abs(o).max()))
                        sd[name].copy_(torch.from_numpy(w))
            # every tensor that is not a packed part is the base tensor, byte for byte
            for k, v in t.items():
                if k in used:
                    continue
                assert k in base_t and v.dtype == base_t[k].dtype and v.shape == base_t[k].shape \
                    and v.tobytes() == base_t[k].tobytes(), k
            assert len(used) + len([k for k in base_t if k in t]) == len(t)
            r = gptq_nll(model, ids, CTX)
            r.update({"format": fmt, "mx_scale": mx, "model": BASE, "text": TEXT, "ctx_arg": CTX,
                      "bpw_stored": summary["bpw_stored"], "bpw_study": summary["bpw_study"],
                      "max_rel_weight_error": max_rel})
            print(f"{fmt:10s} {mx:4s} nll {r['nll']:.6f} ppl {np.exp(r['nll']):.2f} "
                  f"(base {np.exp(base_case['nll']):.2f}) max|dW|/max|W| {max_rel:.3f}")
            cases.append(r)
    meta = {"script": "tools/make_quant_ppl_fixture.py",
            "protocol": "GPTQ windows of ctx tokens, first token of each window context only",
            "base": dict(base_case, model=BASE, text=TEXT),
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "transformers": transformers.__version__,
                         "safetensors": safetensors.__version__, "numpy": np.__version__},
            "cases": cases}
    with open(OUT, "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
