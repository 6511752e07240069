#!/usr/bin/env python3
"""make_model_fixtures.py — reference logits for kvant's forward pass, from HF transformers.

Run by hand on a developer machine (never in CI), from the repository root:

    python3 -m venv venv && venv/bin/pip install torch transformers safetensors numpy
    venv/bin/python tools/make_model_fixtures.py            # writes everything
    venv/bin/python tools/make_model_fixtures.py --check    # regenerate in a temp dir
                                                            # and compare to the committed files

What it writes, for each tiny random checkpoint <name> listed in SPECS below:

    tests/fixtures/models/<name>/config.json               (save_pretrained, see "config styles")
    tests/fixtures/models/<name>/model.safetensors          (or model-0000k-of-0000n.safetensors
                                                             + model.safetensors.index.json)
    tests/fixtures/models/<name>/generation_config.json    (save_pretrained; unused by kvant)
    tests/fixtures/models/<name>/reference.safetensors     ids_<k> I32 [T], logits_<k> F32 [R, vocab]
                                                            (+ logits_native_<k> for f16/bf16 models,
                                                             + ids_batch<j>/logits_batch<j> for one model)
    tests/fixtures/models/<name>/reference.json            what every tensor is, tolerances measured here

The checkpoints are built with transformers' own config/model classes (eager attention),
given a larger-than-default random initialisation (weights ~ N(0, init_std), RMSNorm
weights ~ 1 + N(0, 0.25), biases ~ N(0, 0.1)) so that logits have O(1) spread, cast to the
checkpoint dtype and written with save_pretrained (safetensors). The reference logits come
from reloading that directory with from_pretrained, so what is recorded is what
transformers computes from the files on disk:

  * logits_<k>:        fp32 forward. For f16/bf16 checkpoints this is from_pretrained(...,
                       dtype=float32): the half weights converted exactly to fp32 and fp32
                       math everywhere — what kvant's CPU path does, so the C test can use a
                       tight tolerance.
  * logits_native_<k>: (half checkpoints only) the forward in the checkpoint's own dtype,
                       upcast to fp32 for storage. Loose agreement only; for information.

For the long sequence only the last rows are kept (reference.json "rows" gives the
half-open range of positions); the C test must still run the whole sequence.

Config styles (config.json is what the C parser reads): transformers 5 writes
`rope_parameters: {rope_theta, rope_type, ...}` and `dtype`; checkpoints on the Hub made
with transformers 4 carry `rope_theta`, `rope_scaling` and `torch_dtype` instead. Each
fixture's config.json is left as transformers 5 wrote it ("native"), rewritten to the
transformers-4 spelling ("classic"), or carries both ("hybrid"); every rewritten file is
reloaded with from_pretrained and must give the same rope parameters and bit-identical
logits, else the script fails.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

SEED = 20250611
LENGTHS = [1, 7, 64, 300]  # sequence lengths of ids_0 .. ids_3
LONG_KEEP_ROWS = 32  # rows of logits kept for sequences longer than 64
BATCH_LENGTHS = [11, 23]  # two sequences of different lengths, for the batching test

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

# Every fixture: 2 layers, small vocab, max_position_embeddings >= 512.
SPECS = [
    dict(
        name="qwen3_tied_f32",
        cls=Qwen3ForCausalLM,
        cfg_cls=Qwen3Config,
        dtype="f32",
        style="native",
        init_std=0.15,
        batch=True,
        what="Qwen3, tied embeddings, head_dim 32 != hidden 64 / 4 heads, GQA 4:2, qk-norm",
        cfg=dict(
            vocab_size=384,
            hidden_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            intermediate_size=128,
            num_hidden_layers=2,
            max_position_embeddings=1024,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            tie_word_embeddings=True,
            bos_token_id=380,
            eos_token_id=381,
        ),
    ),
    dict(
        name="qwen3_untied_bf16",
        cls=Qwen3ForCausalLM,
        cfg_cls=Qwen3Config,
        dtype="bf16",
        style="native",
        init_std=0.15,
        what="Qwen3, untied lm_head, bf16, head_dim 24 != hidden 96 / 6 heads, GQA 6:2",
        cfg=dict(
            vocab_size=320,
            hidden_size=96,
            num_attention_heads=6,
            num_key_value_heads=2,
            head_dim=24,
            intermediate_size=160,
            num_hidden_layers=2,
            max_position_embeddings=512,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            tie_word_embeddings=False,
        ),
    ),
    dict(
        name="qwen2_bias_f32",
        cls=Qwen2ForCausalLM,
        cfg_cls=Qwen2Config,
        dtype="f32",
        style="classic",
        init_std=0.15,
        what="Qwen2, q/k/v biases, untied, odd vocab 331, MHA 4:4",
        cfg=dict(
            vocab_size=331,
            hidden_size=64,
            num_attention_heads=4,
            num_key_value_heads=4,
            intermediate_size=112,
            num_hidden_layers=2,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            tie_word_embeddings=False,
            use_sliding_window=False,
        ),
    ),
    dict(
        name="llama3_bf16_sharded",
        cls=LlamaForCausalLM,
        cfg_cls=LlamaConfig,
        dtype="bf16",
        style="classic",
        init_std=0.15,
        shard="100KB",
        what=(
            "Llama with llama3 rope scaling (factor 8, low 1, high 4, original max 64, "
            "theta 10000, head_dim 16: 1 unscaled, 2 smoothed, 5 scaled frequencies), "
            "bf16, untied, sharded with an index"
        ),
        cfg=dict(
            vocab_size=300,
            hidden_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=96,
            num_hidden_layers=2,
            max_position_embeddings=512,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
        ),
    ),
    dict(
        name="llama_f16",
        cls=LlamaForCausalLM,
        cfg_cls=LlamaConfig,
        dtype="f16",
        style="hybrid",
        init_std=0.12,
        what="Llama, attention_bias (q/k/v/o biases), no mlp bias, f16, untied, GQA 8:2 head_dim 8",
        cfg=dict(
            vocab_size=448,
            hidden_size=64,
            num_attention_heads=8,
            num_key_value_heads=2,
            intermediate_size=144,
            num_hidden_layers=2,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            attention_bias=True,
            mlp_bias=False,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
        ),
    ),
]


def make_config(spec):
    kw = dict(spec["cfg"])
    # transformers 5 takes rope settings as rope_parameters; build it from the
    # classic keys so the intent reads the same as a Hub config.
    rp = {"rope_theta": kw.pop("rope_theta"), "rope_type": "default"}
    if "rope_scaling" in kw:
        rp.update(kw.pop("rope_scaling"))
    kw["rope_parameters"] = rp
    return spec["cfg_cls"](**kw)


def randomize(model, init_std, gen):
    """Large random init so logits vary: the default (std 0.02, unit norms, zero biases)
    gives near-constant logits that would hide bugs."""
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied params are listed once
            if "norm" in name:
                p.copy_(1.0 + 0.25 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(init_std * torch.randn(p.shape, generator=gen))


def restyle_config(path, style):
    """Rewrite config.json to the transformers-4 ("classic") spelling, or add those keys
    beside the transformers-5 ones ("hybrid"). "native" leaves the file alone."""
    if style == "native":
        return
    with open(path) as f:
        d = json.load(f)
    rp = dict(d["rope_parameters"])
    theta = rp.pop("rope_theta")
    scaling = None if rp.get("rope_type", "default") == "default" else rp
    if style == "classic":
        out = {}
        for k, v in d.items():  # keep key order, replace in place
            if k == "rope_parameters":
                out["rope_scaling"] = scaling
                out["rope_theta"] = theta
            elif k == "dtype":
                out["torch_dtype"] = v
            elif k == "layer_types":
                continue  # not in transformers-4 era Qwen2 configs; derived on load
            else:
                out[k] = v
    elif style == "hybrid":
        out = dict(d)
        out["rope_theta"] = theta
        out["rope_scaling"] = scaling
        out["torch_dtype"] = d["dtype"]
    else:
        raise ValueError(style)
    with open(path, "w") as f:
        json.dump(dict(sorted(out.items())), f, indent=2)
        f.write("\n")


def forward(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long)[None], use_cache=False)
    return out.logits[0].float().numpy()


def make_ids(rng, vocab, n):
    ids = rng.integers(0, vocab, size=n).astype(np.int32)
    if n >= 7:  # exercise the first and last rows of the embedding
        ids[2] = 0
        ids[5] = vocab - 1
    return ids


def build(spec, index, outroot):
    name = spec["name"]
    d = os.path.join(outroot, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    seed = SEED + 1000 * index  # per-model seed: results do not depend on SPECS order
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    dtype = DTYPES[spec["dtype"]]

    cfg = make_config(spec)
    model = spec["cls"](cfg).float().eval()
    randomize(model, spec["init_std"], gen)
    model = model.to(dtype)
    save_kw = {}
    if "shard" in spec:
        save_kw["max_shard_size"] = spec["shard"]
    model.save_pretrained(d, **save_kw)
    with open(os.path.join(d, "config.json")) as f:
        native_cfg = json.load(f)
    saved_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    del model

    # Reference model: reloaded from disk, fp32 math.
    def load(dt):
        return spec["cls"].from_pretrained(d, dtype=dt, attn_implementation="eager").eval()

    ref = load(torch.float32)
    for k, v in ref.state_dict().items():  # the round trip through the files is exact
        assert torch.equal(v, saved_sd[k].float()), (name, k)

    vocab = spec["cfg"]["vocab_size"]
    tensors, desc = {}, {}
    seqs = [make_ids(rng, vocab, n) for n in LENGTHS]
    native = load(dtype) if dtype != torch.float32 else None
    ref64 = load(torch.float64)  # only to measure fp32 rounding, to size tolerances
    stats = {"logits_std": [], "max_abs_native_minus_f32": [], "max_abs_f32_minus_f64": []}
    for k, ids in enumerate(seqs):
        T = len(ids)
        lo = max(0, T - LONG_KEEP_ROWS) if T > 64 else 0
        full = forward(ref, ids)
        tensors[f"ids_{k}"] = ids
        tensors[f"logits_{k}"] = np.ascontiguousarray(full[lo:])
        stats["logits_std"].append(float(full.std()))
        with torch.no_grad():
            l64 = ref64(input_ids=torch.tensor(ids, dtype=torch.long)[None], use_cache=False).logits[0].numpy()
        stats["max_abs_f32_minus_f64"].append(float(np.abs(full.astype(np.float64) - l64).max()))
        desc[f"ids_{k}"] = f"I32 [{T}] token ids, one sequence starting at position 0"
        desc[f"logits_{k}"] = {
            "shape": list(tensors[f"logits_{k}"].shape),
            "rows": [lo, T],
            "what": "fp32 forward of ids_%d (half weights upcast exactly)" % k
            if native is not None
            else "fp32 forward of ids_%d" % k,
        }
        if native is not None:
            nat = forward(native, ids)
            tensors[f"logits_native_{k}"] = np.ascontiguousarray(nat[lo:])
            diff = float(np.abs(nat - full).max())
            stats["max_abs_native_minus_f32"].append(diff)
            desc[f"logits_native_{k}"] = {
                "shape": list(tensors[f"logits_native_{k}"].shape),
                "rows": [lo, T],
                "what": f"forward of ids_{k} in {spec['dtype']} (transformers' own half "
                f"math on CPU), stored as fp32; max |native - logits_{k}| over all "
                f"{T} rows = {diff:.4g}",
            }
    if spec.get("batch"):
        for j, n in enumerate(BATCH_LENGTHS):
            ids = make_ids(rng, vocab, n)
            tensors[f"ids_batch{j}"] = ids
            tensors[f"logits_batch{j}"] = forward(ref, ids)
            desc[f"ids_batch{j}"] = f"I32 [{n}] sequence {j} of a two-sequence batch"
            desc[f"logits_batch{j}"] = {
                "shape": [n, vocab],
                "rows": [0, n],
                "what": f"fp32 forward of ids_batch{j} alone (reference for running "
                "ids_batch0 and ids_batch1 together as one batch, each in its own slot)",
            }

    # Config styles: rewrite, reload, and demand identical behaviour.
    cfg_path = os.path.join(d, "config.json")
    restyle_config(cfg_path, spec["style"])
    if spec["style"] != "native":
        re = load(torch.float32)
        assert re.config.rope_parameters == ref.config.rope_parameters, (
            name,
            re.config.rope_parameters,
            ref.config.rope_parameters,
        )
        assert re.config.tie_word_embeddings == ref.config.tie_word_embeddings
        for k, ids in enumerate(seqs):
            got = forward(re, ids)
            lo = tensors[f"logits_{k}"].shape[0]
            assert np.array_equal(got[-lo:], tensors[f"logits_{k}"]), (name, k)
        del re
    if spec["cfg"].get("rope_scaling"):
        # The fixture must be sensitive to the scaling: the same weights with plain
        # rope give clearly different logits on the long sequence.
        plain = spec["cls"].from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        plain.config.rope_parameters = {"rope_theta": spec["cfg"]["rope_theta"], "rope_type": "default"}
        plain.model.rotary_emb = type(plain.model.rotary_emb)(plain.config)
        k = len(LENGTHS) - 1
        delta = float(np.abs(forward(plain, seqs[k]) - forward(ref, seqs[k])).max())
        assert delta > 0.1, (name, delta)
        stats["max_abs_diff_if_rope_scaling_ignored"] = delta
        del plain
    with open(cfg_path) as f:
        final_cfg = json.load(f)

    save_file(tensors, os.path.join(d, "reference.safetensors"), metadata={"generator": "tools/make_model_fixtures.py"})
    for f in os.listdir(d):  # safetensors/HF write some files 0600
        os.chmod(os.path.join(d, f), 0o644)
    meta = {
        "generator": "tools/make_model_fixtures.py",
        "seed": seed,
        "model_class": spec["cls"].__name__,
        "checkpoint_dtype": spec["dtype"],
        "description": spec["what"],
        "config_style": spec["style"],
        "config_style_note": {
            "native": "config.json exactly as transformers 5 save_pretrained wrote it "
            "(rope_parameters, dtype)",
            "classic": "config.json rewritten to transformers-4 / Hub spelling (rope_theta, "
            "rope_scaling, torch_dtype; no rope_parameters); reload verified identical",
            "hybrid": "config.json as transformers 5 wrote it plus rope_theta, rope_scaling "
            "and torch_dtype; reload verified identical",
        }[spec["style"]],
        "init": {"weight_std": spec["init_std"], "norm": "1 + N(0, 0.25)", "bias": "N(0, 0.1)"},
        "attn_implementation": "eager",
        "transformers_config_keys_as_saved": sorted(native_cfg.keys()),
        "rope_parameters_as_saved": native_cfg.get("rope_parameters"),
        "tensors": desc,
        "stats": stats,
        "versions": versions(),
    }
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return meta, final_cfg


def versions():
    import safetensors
    import tokenizers

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/models", help="output root")
    ap.add_argument("--check", action="store_true", help="regenerate in a temporary directory and compare with --out")
    ap.add_argument("--only", action="append", help="build only this fixture (repeatable)")
    args = ap.parse_args()
    transformers.utils.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # one reduction order, so regeneration is bit-for-bit

    root = tempfile.mkdtemp(prefix="kvant_fix_") if args.check else args.out
    os.makedirs(root, exist_ok=True)
    total = 0
    for i, spec in enumerate(SPECS):
        if args.only and spec["name"] not in args.only:
            continue
        meta, cfg = build(spec, i, root)
        d = os.path.join(root, spec["name"])
        size = dir_size(d)
        total += size
        s = meta["stats"]
        print(
            f"{spec['name']:22s} {size / 1024:7.1f} KiB  files={sorted(os.listdir(d))}\n"
            f"    logits std {['%.3f' % x for x in s['logits_std']]}"
            + f"  max|f32-f64| {['%.2g' % x for x in s['max_abs_f32_minus_f64']]}"
            + (f"\n    max|native-f32| {['%.3g' % x for x in s['max_abs_native_minus_f32']]}" if s["max_abs_native_minus_f32"] else "")
        )
        if args.check:
            ref = load_file(os.path.join(args.out, spec["name"], "reference.safetensors"))
            new = load_file(os.path.join(d, "reference.safetensors"))
            assert ref.keys() == new.keys(), spec["name"]
            for k in ref:
                err = float(np.abs(ref[k].astype(np.float64) - new[k].astype(np.float64)).max())
                print(f"    check {k:18s} max abs diff {err:.3g}")
    print(f"total {total / 1024:.1f} KiB in {root}")
    if args.check:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
