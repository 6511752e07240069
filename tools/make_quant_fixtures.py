#!/usr/bin/env python3
"""make_quant_fixtures.py — independent references for kvant's quantized formats (issue 3).

Run by hand on a developer machine (never in CI), from the repository root:

    python3 -m venv venv && venv/bin/pip install torch transformers safetensors numpy gguf
    venv/bin/python tools/make_quant_fixtures.py            # writes tests/fixtures/quant/
    venv/bin/python tools/make_quant_fixtures.py --check    # regenerate in memory, compare

Writes tests/fixtures/quant/quant_ref.safetensors, quant_ref.json and MANIFEST.md.
Nothing here shares code with kvant's C: each reference is written from its source.

  (a) MX, OCP Microscaling Formats v1.0 rules in numpy, float64 (sec. 6.3:
      shared_exp = floor(log2(max|V|)) - emax_elem, X = 2^shared_exp clamped to E8M0's
      [-127, 127], P = V/X converted to the element format, saturating):
        mxfp4: E2M1 by nearest distance to the 8 magnitudes, a tie taking the code
               whose mantissa bit is 0 (roundTiesToEven); sign kept (-0 for negatives
               that round to zero).
        mxint4: microxcaling's int4 element (emax 0, max_norm 1.75): sign * floor(|v|*4
               + 0.5) / 4 in float64, clamped to +-7/4.
      applied to edge-case blocks and to random rows, packed into the transformers
      `_blocks` / `_scales` layout (low nibble = even element).
  (b) transformers' own MXFP4 dequantizer (integrations/mxfp4.py,
      _convert_moe_packed_tensors) run on those packed bytes: must equal (a).
  (c) the `gguf` package's MXFP4 (ggml GGML_TYPE_MXFP4): its dequantizer on the spec
      codes re-laid out as ggml blocks must equal (a); its quantizer is compared with
      (a) and the differences are recorded in quant_ref.json (it is not the spec:
      ties go to the lower magnitude, -0 is never written, tiny amax wraps the scale).
  (d) uniform integers: AutoGPTQ's Quantizer (find_params / quantize) in torch f32,
      then packed with AutoGPTQ QuantLinear.pack's loops (3-bit words straddled as
      there), zero points NOT shifted by -1 (checkpoint_format gptq_v2).
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

SEED = 20250603
OUT = "tests/fixtures/quant"

E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


# ---------------------------------------------------------------- MX, from the spec

def mx_shared_exp(blocks, emax_elem):
    """blocks float32 [nb, 32] -> int scale exponent per block (spec sec. 6.3)."""
    amax = np.abs(blocks.astype(np.float64)).max(axis=1)
    e = np.full(amax.shape, -127, dtype=np.int64)  # all-zero block: see quant.h
    nz = amax > 0
    m, ex = np.frexp(amax[nz])  # amax = m * 2^ex, m in [0.5, 1): floor(log2) = ex - 1
    e[nz] = ex - 1 - emax_elem
    return np.clip(e, -127, 127)


def e2m1_codes(v):
    """v float64 (already divided by X) -> 4-bit codes, RNE on the E2M1 grid, saturating."""
    a = np.minimum(np.abs(v), 6.0)
    d = np.abs(a[..., None] - E2M1)  # distance to each magnitude
    best = d.min(axis=-1, keepdims=True)
    cand = d == best
    # at most two candidates (a tie): prefer the one with mantissa bit 0 (even code)
    even = cand & ((np.arange(8) & 1) == 0)
    mag = np.where(even.any(axis=-1), even.argmax(axis=-1), cand.argmax(axis=-1))
    sign = np.signbit(v).astype(np.int64)
    return (mag | (sign << 3)).astype(np.uint8)


def int4_codes(v):
    """microxcaling int4 element: sign * floor(|v| * 4 + 0.5), clamp 7; 2's complement."""
    k = np.minimum(np.floor(np.abs(v) * 4.0 + 0.5), 7.0)
    k = np.where(v < 0, -k, k).astype(np.int64)
    return (k & 15).astype(np.uint8)


def code_value(codes, fmt):
    c = codes.astype(np.int64)
    if fmt == "mxfp4":
        return np.where(c & 8, -1.0, 1.0) * E2M1[c & 7]
    k = np.where(c & 8, c - 16, c)
    return k / 4.0


def mx_spec_quantize(w, fmt):
    """w float32 [n_out, n_in] -> (blocks u8 [n_out, nb, 16], scales u8 [n_out, nb],
    deq float32 [n_out, n_in])."""
    n_out, n_in = w.shape
    nb = n_in // 32
    blk = w.reshape(n_out * nb, 32)
    e = mx_shared_exp(blk, 2 if fmt == "mxfp4" else 0)
    v = blk.astype(np.float64) / np.ldexp(1.0, e)[:, None]
    codes = e2m1_codes(v) if fmt == "mxfp4" else int4_codes(v)
    deq = (code_value(codes, fmt) * np.ldexp(1.0, e)[:, None]).astype(np.float32)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return (packed.reshape(n_out, nb, 16), (e + 127).astype(np.uint8).reshape(n_out, nb),
            deq.reshape(n_out, n_in), codes.reshape(n_out, n_in))


def transformers_mxfp4_dequant(blocks, scales):
    from transformers.integrations.mxfp4 import _convert_moe_packed_tensors
    b = torch.from_numpy(blocks)[None]  # [1, n_out, nb, 16] as GPT-OSS experts
    s = torch.from_numpy(scales)[None]
    out = _convert_moe_packed_tensors(b, s, dtype=torch.float32)  # [1, n_in, n_out]
    return out[0].transpose(0, 1).contiguous().numpy()


def to_ggml_blocks(codes, scales):
    """element-order codes [n, 32] + scales [n] -> ggml block_mxfp4 bytes [n, 17]:
    e, then qs[j] = P[j] | P[j+16] << 4."""
    qs = codes[:, :16] | (codes[:, 16:] << 4)
    return np.concatenate([scales[:, None], qs], axis=1).astype(np.uint8)


def from_ggml_blocks(raw):
    e = raw[:, 0]
    qs = raw[:, 1:]
    codes = np.concatenate([qs & 15, qs >> 4], axis=1)
    return codes, e


def mx_edge_cases():
    """One block (32 weights) per row, with the name of the case."""
    rng = np.random.default_rng(SEED + 1)
    rows, names = [], []

    def add(name, x):
        x = np.asarray(x, dtype=np.float32)
        assert x.shape == (32,)
        rows.append(x)
        names.append(name)

    add("all_zero", np.zeros(32))
    add("all_neg_zero", -np.zeros(32))
    b = rng.uniform(-1, 1, 32); b[5] = 1.0
    add("amax_pow2_1", b)
    b = rng.uniform(-4, 4, 32); b[7] = -4.0
    add("amax_pow2_4_neg", b)
    b = rng.uniform(-0.5, 0.5, 32) * 2.0**-126; b[3] = 2.0**-126
    add("amax_min_normal", b)
    b = rng.uniform(-1, 1, 32) * 2.0**-130; b[9] = 2.0**-130
    add("amax_subnormal_2^-130", b)
    b = np.zeros(32); b[0] = 2.0**-149; b[1] = -2.0**-149
    add("amax_smallest_subnormal", b)
    b = rng.uniform(-1, 1, 32) * 2.0**-127; b[2] = 2.0**-127
    add("amax_2^-127_clamped_exp", b)
    b = rng.uniform(-1, 1, 32) * 1e-40; b[4] = 1e-40
    add("amax_1e-40", b)
    b = rng.uniform(-1, 1, 32) * 3.0e38; b[11] = 3.0e38
    add("amax_3e38", b)
    b = rng.uniform(-1, 1, 32) * 1e38; b[0] = np.finfo(np.float32).max
    add("amax_flt_max", b)
    b = np.full(32, -np.finfo(np.float32).max)
    add("all_neg_flt_max", b)
    # fp4 ties with X = 1 (amax = 4 -> e = 0): every midpoint, both signs
    t = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    b = np.array(t + [-x for x in t] + [4.0] + [0.0] * 17)
    add("fp4_ties_X1", b)
    # fp4 ties with X = 2^-3 (amax = 0.5)
    b = np.array([x / 8 for x in t] + [-x / 8 for x in t] + [0.5] + [0.0] * 17)
    add("fp4_ties_X2^-3", b)
    # int4 ties with X = 1 (amax in [1, 2)): (2k+1)/8
    b = np.array([(2 * k + 1) / 8 for k in range(7)] + [-(2 * k + 1) / 8 for k in range(7)] +
                 [1.0] + [0.0] * 17)
    add("int4_ties_X1", b)
    add("mixed_signs", rng.normal(0, 1, 32) * np.where(np.arange(32) % 2, 1, -1))
    b = np.zeros(32); b[17] = 0.3
    add("single_pos", b)
    b = np.zeros(32); b[30] = -5.0
    add("single_neg", b)
    b = rng.uniform(-1, 1, 32); b[1] = 7.9
    add("fp4_saturate_7.9", b)
    b = rng.uniform(-1, 1, 32); b[1] = -1.99
    add("int4_saturate_1.99", b)
    b = rng.uniform(-1, 1, 32) * 1e-3; b[6] = 0.99999994  # just below a power of two
    add("amax_just_below_1", b)
    b = np.full(32, 0.1)
    add("constant", b)
    b = rng.normal(0, 0.02, 32); b[12] = 0.5  # one outlier
    add("outlier", b)
    return np.stack(rows).astype(np.float32), names


def mx_random_rows():
    rng = np.random.default_rng(SEED + 2)
    n_out, n_in = 24, 256
    w = rng.standard_normal((n_out, n_in)) * np.exp(rng.uniform(-8, 4, (n_out, 1)))
    w[3, 40:44] *= 30.0  # outliers
    w[5, 64:96] = 0.0    # an all-zero block
    return w.astype(np.float32)


# ---------------------------------------------------------------- uniform int (AutoGPTQ)

def gptq_rtn(w, bits, group):
    """AutoGPTQ Quantizer.find_params(weight=True) per group + quantize(), torch f32.
    Returns scale f32 [n_out, ng], zero f32 [n_out, ng], q int [n_out, n_in]."""
    x = torch.from_numpy(w)
    n_out, n_in = x.shape
    maxq = torch.tensor(2**bits - 1)
    xg = x.reshape(n_out * (n_in // group), group)
    tmp = torch.zeros(xg.shape[0])
    xmin = torch.minimum(xg.min(1)[0], tmp)
    xmax = torch.maximum(xg.max(1)[0], tmp)
    t = (xmin == 0) & (xmax == 0)
    xmin[t] = -1
    xmax[t] = +1
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    q = torch.clamp(torch.round(xg / scale[:, None]) + zero[:, None], 0, maxq)
    return (scale.reshape(n_out, -1).numpy(), zero.reshape(n_out, -1).numpy(),
            q.reshape(n_out, n_in).numpy().astype(np.int64))


def autogptq_pack_rows(intw, bits):
    """AutoGPTQ QuantLinear.pack's loop: intw uint32 [n, m] packed along n into
    [n*bits/32, m] words (3 bits: 32 values in 3 words, straddling)."""
    intw = intw.astype(np.uint32)
    out = np.zeros((intw.shape[0] // 32 * bits, intw.shape[1]), dtype=np.uint32)
    i = 0
    row = 0
    while row < out.shape[0]:
        if bits in (2, 4, 8):
            for j in range(i, i + 32 // bits):
                out[row] |= intw[j] << np.uint32(bits * (j - i))
            i += 32 // bits
            row += 1
        elif bits == 3:
            for j in range(i, i + 10):
                out[row] |= intw[j] << np.uint32(3 * (j - i))
            i += 10
            out[row] |= intw[i] << np.uint32(30)
            row += 1
            out[row] |= (intw[i] >> np.uint32(2)) & np.uint32(1)
            i += 1
            for j in range(i, i + 10):
                out[row] |= intw[j] << np.uint32(3 * (j - i) + 1)
            i += 10
            out[row] |= intw[i] << np.uint32(31)
            row += 1
            out[row] |= (intw[i] >> np.uint32(1)) & np.uint32(3)
            i += 1
            for j in range(i, i + 10):
                out[row] |= intw[j] << np.uint32(3 * (j - i) + 2)
            i += 10
            row += 1
        else:
            raise ValueError(bits)
    return out


def int_random_weights():
    rng = np.random.default_rng(SEED + 3)
    n_out, n_in = 64, 256
    w = rng.standard_normal((n_out, n_in)) * np.exp(rng.uniform(-6, 1, (n_out, 1)))
    w[2, :] = np.abs(w[2, :])   # no negative weight: z = 0 in every group
    w[4, :] = -np.abs(w[4, :])  # no positive weight: z = 2^B - 1
    w[6, 0:128] = 0.0           # all-zero groups
    w[8, 32:64] = 0.37          # constant group (max == min)
    w[10, :] = 1e-3 * np.round(w[10, :] * 100)  # many exact ties
    return w.astype(np.float32)


INT_CONFIGS = [(4, 128), (3, 128), (2, 64), (8, 32), (3, 32), (4, 64)]
INT_DEQ_STORED = [(4, 128), (3, 128), (2, 64)]


# ---------------------------------------------------------------- main

def build():
    t = {}
    info = {"seed": SEED, "mx_edge_names": [], "ggml_vs_spec": {}, "int_configs": []}

    edge, names = mx_edge_cases()
    info["mx_edge_names"] = names
    rand = mx_random_rows()
    t["mx_edge_w"] = edge
    t["mx_rand_w"] = rand
    for fmt in ("mxfp4", "mxint4"):
        for tag, w in (("edge", edge), ("rand", rand)):
            blocks, scales, deq, codes = mx_spec_quantize(w, fmt)
            t[f"{fmt}_{tag}_blocks"] = blocks
            t[f"{fmt}_{tag}_scales"] = scales
            t[f"{fmt}_{tag}_deq"] = deq
            if fmt == "mxfp4":
                # (b) transformers on our bytes
                tf = transformers_mxfp4_dequant(blocks, scales)
                if not np.array_equal(tf, deq):
                    raise SystemExit(f"transformers dequant differs from the spec ({tag})")
                t[f"mxfp4_{tag}_deq_tf"] = tf
                # (c) gguf
                import gguf
                Q = gguf.GGMLQuantizationType.MXFP4
                flat_codes = codes.reshape(-1, 32)
                flat_sc = scales.reshape(-1)
                raw = to_ggml_blocks(flat_codes, flat_sc)
                gdeq = gguf.quants.dequantize(raw.reshape(w.shape[0], -1), Q).reshape(w.shape)
                if not np.array_equal(gdeq, deq):
                    raise SystemExit(f"gguf dequant of spec codes differs ({tag})")
                with np.errstate(all="ignore"):
                    graw = gguf.quants.quantize(w, Q).reshape(-1, 17)
                gcodes, ge = from_ggml_blocks(graw)
                gval = gguf.quants.dequantize(graw.reshape(w.shape[0], -1), Q).reshape(w.shape)
                t[f"mxfp4_{tag}_ggml_scales"] = ge.reshape(scales.shape).astype(np.uint8)
                t[f"mxfp4_{tag}_ggml_deq"] = gval.astype(np.float32)
                sc_diff = np.nonzero(ge != flat_sc)[0]
                code_diff = gcodes != flat_codes
                val_diff = gval.reshape(-1, 32) != deq.reshape(-1, 32)
                info["ggml_vs_spec"][tag] = {
                    "blocks": int(flat_sc.size),
                    "scale_bytes_differ": int(sc_diff.size),
                    "scale_differ_blocks": [int(i) for i in sc_diff],
                    "scale_differ_names": ([names[i] for i in sc_diff] if tag == "edge" else []),
                    "codes_differ": int(code_diff.sum()),
                    "codes_differ_only_sign_of_zero": int((code_diff & ~val_diff).sum()),
                    "values_differ": int(val_diff.sum()),
                    "values_differ_blocks_with_equal_scale": int(
                        (val_diff & (ge == flat_sc)[:, None]).sum()),
                }

    wi = int_random_weights()
    t["int_w"] = wi
    for bits, group in INT_CONFIGS:
        key = f"int{bits}_g{group}"
        scale, zero, q = gptq_rtn(wi, bits, group)
        s16 = scale.astype(np.float16)
        qweight = autogptq_pack_rows(q.T.copy(), bits)            # [n_in*B/32, n_out]
        # qzeros [ng, n_out*B/32]: AutoGPTQ packs zeros^T [ng, n_out] along n_out with the
        # same loop over columns; packing zero [n_out, ng] along its rows and transposing
        # is the same thing.
        qzeros = autogptq_pack_rows(zero.astype(np.int64), bits).T.copy()
        t[f"{key}_qweight"] = qweight.view(np.int32)
        t[f"{key}_qzeros"] = qzeros.view(np.int32)
        t[f"{key}_scales"] = s16.T.copy()                           # [ng, n_out]
        deq = (s16.astype(np.float32).repeat(group, axis=1) *
               (q - zero.astype(np.int64).repeat(group, axis=1)).astype(np.float32))
        if (bits, group) in INT_DEQ_STORED:  # the others: packed tensors only (size)
            t[f"{key}_deq"] = deq.astype(np.float32)
        t[f"{key}_scale_f32"] = scale.T.copy().astype(np.float32)  # for the error bound
        info["int_configs"].append(key)
    return t, info


def versions():
    import gguf
    import safetensors
    import transformers
    try:
        from importlib.metadata import version
        gv = version("gguf")
    except Exception:  # pragma: no cover
        gv = getattr(gguf, "__version__", "?")
    return {"python": sys.version.split()[0], "numpy": np.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "safetensors": safetensors.__version__,
            "gguf": gv}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    t, info = build()
    t = {k: np.ascontiguousarray(v) for k, v in t.items()}
    info["versions"] = versions()
    if args.check:
        old = load_file(os.path.join(OUT, "quant_ref.safetensors"))
        bad = [k for k in t if k not in old or not np.array_equal(old[k], t[k], equal_nan=True)]
        print("differ:", bad or "none")
        return 1 if bad else 0
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "quant_ref.safetensors")
    save_file(t, path, metadata={"script": "tools/make_quant_fixtures.py", "seed": str(SEED)})
    with open(os.path.join(OUT, "quant_ref.json"), "w") as f:
        json.dump(info, f, indent=1)
    h = hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]
    print(json.dumps(info["ggml_vs_spec"], indent=1))
    print("wrote", path, os.path.getsize(path), "bytes, sha256", h)
    print("versions", info["versions"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
