#!/usr/bin/env python3
"""make_small_tokenizer.py — the real Qwen3 byte-level BPE tokenizer cut down to its
first N merges, for the small default model (models/tiny-qwen3).

Run by hand (never in CI), from the repository root:

    venv/bin/python tools/make_small_tokenizer.py N OUT_TOKENIZER_JSON \
        [--src ../shared/data/tokenizer_qwen3] [--config-out OUT_TOKENIZER_CONFIG_JSON]

e.g. `tools/make_small_tokenizer.py 7936 models/tiny-qwen3/tokenizer.json` (what
tools/make_default_model.py does). Needs only the `tokenizers` package.

What it writes: a tokenizer.json whose BPE model keeps the 256 byte-level base tokens
and the first N merges of Qwen3's merge list (vocab = 256 + N), followed by Qwen3's 26
added tokens (<|endoftext|>, <|im_start|>, <|im_end|>, ..., <think>, </think>) with ids
256 + N onward, in their original order and with their original flags. The normalizer
(NFC), pre-tokenizer (Split regex + ByteLevel), post-processor and decoder are copied
unchanged, as are the BPE options (no byte fallback, no unk, ignore_merges false).

Why a prefix of the merge list works: in Qwen3's tokenizer.json the base bytes are ids
0..255 and merge i produces exactly token 256 + i, with both of its parts produced by
earlier merges (the script checks this). So the first N merges form a closed BPE model
and the ids of the kept tokens do not change; only the added tokens are renumbered.
A consequence, checked below: on any text whose full-tokenizer encoding uses only ids
< 256 + N, the small tokenizer gives the same ids.

With --config-out, also writes a tokenizer_config.json: Qwen3's own (chat template,
eos "<|im_end|>", pad "<|endoftext|>") with added_tokens_decoder renumbered.

The output is verified with HF `tokenizers` before the script exits: it loads, encodes
and decodes back exactly a set of English and Russian sentences (and a chat string with
special tokens), and agrees with the full tokenizer where it must.
"""

import argparse
import json
import os
import sys
import unicodedata

from tokenizers import Tokenizer

N_BASE = 256

# Sample text written for this check (not taken from any data set).
SAMPLES = [
    "The quick brown fox jumps over the lazy dog.",
    "Quantization trades a little accuracy for a lot of memory: 4 bits instead of 16.",
    "In 2025, the river froze on December 3rd; nobody expected it!",
    "  Leading spaces,\ttabs,\nnew lines\r\n and trailing spaces   ",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Квантование весов уменьшает размер модели в четыре раза.",
    "Москва — столица России; в ней живёт больше 13 миллионов человек.",
    "Mixed: привет, world! Ёлка 123 — ok?",
    "<|im_start|>user\nКак дела?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nFine.<|im_end|><|endoftext|>",
    "emoji 🙂 and CJK 漢字 and combining e\u0301 (NFC makes it é)",
]


def build(src_dir, n_merges):
    with open(os.path.join(src_dir, "tokenizer.json"), encoding="utf-8") as f:
        orig = json.load(f)
    model = orig["model"]
    assert model["type"] == "BPE", model["type"]
    vocab, merges = model["vocab"], model["merges"]
    assert 0 < n_merges <= len(merges), n_merges
    inv = {i: s for s, i in vocab.items()}
    assert len(inv) == len(vocab)

    kept = [inv[i] for i in range(N_BASE)]
    have = set(kept)
    for i, pair in enumerate(merges[:n_merges]):
        a, b = pair if isinstance(pair, list) else pair.split(" ")
        assert a in have and b in have, f"merge {i} uses a token not yet produced: {a!r} {b!r}"
        assert vocab[a + b] == N_BASE + i, f"merge {i} does not produce id {N_BASE + i}"
        kept.append(a + b)
        have.add(a + b)
    assert len(have) == len(kept), "duplicate token in kept vocab"

    new_vocab = {s: i for i, s in enumerate(kept)}
    id_map = {}  # original id -> new id, for added tokens
    added = []
    for j, tok in enumerate(orig["added_tokens"]):
        t = dict(tok)
        id_map[tok["id"]] = len(kept) + j
        t["id"] = len(kept) + j
        assert t["content"] not in new_vocab
        added.append(t)

    out = {}
    for k, v in orig.items():  # same key order and same components as the original
        if k == "added_tokens":
            out[k] = added
        elif k == "model":
            m = dict(model)
            m["vocab"] = new_vocab
            m["merges"] = merges[:n_merges]
            out[k] = m
        else:
            out[k] = v
    # Components that name token ids would need renumbering; Qwen3 has none.
    for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        assert '"id"' not in json.dumps(out[k]) and '"ids"' not in json.dumps(out[k]), k
    return orig, out, id_map


def small_config(src_dir, id_map):
    with open(os.path.join(src_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    dec = cfg.get("added_tokens_decoder", {})
    cfg["added_tokens_decoder"] = {str(id_map[int(k)]): v for k, v in dec.items()}
    return cfg


def verify(path, full_path, n_vocab_bpe, n_added):
    small = Tokenizer.from_file(path)
    full = Tokenizer.from_file(full_path)
    assert small.get_vocab_size(with_added_tokens=True) == n_vocab_bpe + n_added
    nfc_ok = 0
    for text in SAMPLES:
        enc = small.encode(text, add_special_tokens=False)
        dec = small.decode(enc.ids, skip_special_tokens=False)
        assert dec == unicodedata.normalize("NFC", text), (text, dec)
        nfc_ok += dec == text
        assert all(0 <= i < n_vocab_bpe + n_added for i in enc.ids)
        fids = full.encode(text, add_special_tokens=False).ids
        # Only the added tokens moved: map the full ids of added tokens to new ids.
        if all(i < n_vocab_bpe or i >= 151643 for i in fids):
            mapped = [i if i < n_vocab_bpe else i - 151643 + n_vocab_bpe for i in fids]
            assert enc.ids == mapped, (text, enc.ids, mapped)
        print(f"  {len(text):3d} chars -> {len(enc.ids):3d} tokens (full: {len(fids):3d})  {text[:48]!r}")
    # Word-level agreement: every word whose full encoding stays under the cut.
    agree = checked = 0
    words = set(" ".join(SAMPLES).split())
    for w in words:
        fids = full.encode(" " + w, add_special_tokens=False).ids
        if all(i < n_vocab_bpe for i in fids):
            checked += 1
            agree += small.encode(" " + w, add_special_tokens=False).ids == fids
    assert agree == checked, (agree, checked)
    print(f"  round trip ok on {len(SAMPLES)} samples; {checked} words agree with the full tokenizer")
    return small


def main():
    ap = argparse.ArgumentParser(description="Qwen3 tokenizer restricted to its first N merges")
    ap.add_argument("n_merges", type=int)
    ap.add_argument("out", help="output tokenizer.json")
    ap.add_argument("--src", default=None, help="directory with the full tokenizer.json and tokenizer_config.json")
    ap.add_argument("--config-out", default=None, help="also write tokenizer_config.json here")
    args = ap.parse_args()
    src = args.src or os.environ.get("KVANT_DATA", "../shared/data") + "/tokenizer_qwen3"
    if not os.path.exists(os.path.join(src, "tokenizer.json")):
        sys.exit(f"{src}/tokenizer.json: not found (pass --src or set KVANT_DATA)")

    orig, out, id_map = build(src, args.n_merges)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_bpe = len(out["model"]["vocab"])
    print(f"{args.out}: {n_bpe} BPE tokens (256 bytes + {args.n_merges} merges) + "
          f"{len(out['added_tokens'])} added = {n_bpe + len(out['added_tokens'])} tokens, "
          f"{os.path.getsize(args.out)} bytes")
    if args.config_out:
        with open(args.config_out, "w", encoding="utf-8") as f:
            json.dump(small_config(src, id_map), f, ensure_ascii=False, indent=2)
            f.write("\n")
    verify(args.out, os.path.join(src, "tokenizer.json"), n_bpe, len(out["added_tokens"]))


if __name__ == "__main__":
    main()
