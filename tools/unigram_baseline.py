#!/usr/bin/env python3
"""unigram_baseline.py — what a unigram model over the testbed's training tokens scores
on the study's tasks, the floor the trained testbed must clear (models/*/MODEL_CARD.md).

Run by hand (never in CI), from the repository root:

    venv/bin/python tools/unigram_baseline.py --shards SHARD_DIR --tokenizer models/X/tokenizer.json

SHARD_DIR is the output of `kvant pretokenize` (train_*.bin: a 64-byte header, then
little-endian uint16/uint32 ids). p(token) = (count + 1) / (N + V) (add-one smoothing over
the tokenizer's vocabulary). Perplexity is over all tokens of the evaluation text
(a unigram ignores context, so windows do not matter); multiple-choice tasks score each
continuation, tokenized on its own as the harness's target (" " + choice), by its summed
unigram log-probability; acc_norm divides by the continuation's length in characters.
"""
import argparse
import csv
import glob
import json
import math
import os

import numpy as np
from tokenizers import Tokenizer


def load_counts(shard_dir, vocab):
    counts = np.zeros(vocab, dtype=np.int64)
    for path in sorted(glob.glob(os.path.join(shard_dir, "train_*.bin"))):
        raw = open(path, "rb").read()
        body = raw[64:]
        ids = np.frombuffer(body, dtype="<u2")  # pretokenize writes 2-byte ids for vocabularies < 65536
        counts += np.bincount(ids, minlength=vocab)[:vocab]
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--data", default="../shared/data")
    args = ap.parse_args()
    tok = Tokenizer.from_file(args.tokenizer)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    counts = load_counts(args.shards, vocab)
    logp = np.log((counts + 1) / (counts.sum() + vocab))

    def nll_text(text):
        ids = tok.encode(text, add_special_tokens=False).ids
        return -float(logp[ids].sum()), len(ids)

    def ll(cont):
        return float(logp[tok.encode(cont, add_special_tokens=False).ids].sum())

    out = {"train_tokens": int(counts.sum()), "vocab": vocab}
    d = args.data
    s, n = nll_text(open(f"{d}/wikitext2/wiki.test.raw", encoding="utf-8").read())
    out["wikitext2_token_ppl"] = math.exp(s / n)
    sents = [l.rstrip("\n").split("\t", 1)[1] for l in open(f"{d}/wikitext_ru/rus_wikipedia_2021_10K-sentences.txt", encoding="utf-8")]
    s, n = nll_text("\n\n".join(sents))
    out["wikitext_ru_token_ppl"] = math.exp(s / n)

    def piqa(folder):
        items = [json.loads(l) for l in open(f"{d}/{folder}/valid.jsonl", encoding="utf-8")]
        labels = [int(l) for l in open(f"{d}/{folder}/valid-labels.lst")]
        acc = accn = 0
        for it, lab in zip(items, labels):
            conts = [" " + it["sol1"], " " + it["sol2"]]
            lls = [ll(c) for c in conts]
            acc += int(np.argmax(lls) == lab)
            accn += int(np.argmax([x / len(c) for x, c in zip(lls, conts)]) == lab)
        return acc / len(labels), accn / len(labels)

    out["piqa_acc"], out["piqa_acc_norm"] = piqa("piqa")
    out["piqa_ru_acc"], out["piqa_ru_acc_norm"] = piqa("piqa_ru")
    # MMLU: the continuations " A".." D" do not depend on the question, so a unigram
    # model always picks the same letter.
    letters = [ll(" " + c) for c in "ABCD"]
    pick = int(np.argmax(letters))
    right = total = 0
    for f in sorted(glob.glob(f"{d}/mmlu/test/*.csv")):
        rows = list(csv.reader(open(f, encoding="utf-8")))[1:]
        right += sum(int(r[5]) == pick for r in rows)
        total += len(rows)
    out["mmlu_acc"] = right / total
    ru = json.load(open(f"{d}/mmlu_ru/ru_val.json", encoding="utf-8"))
    out["mmlu_ru_acc"] = sum("ABCD".index(x["answer"]) == pick for x in ru) / len(ru)
    out["mmlu_letter_picked"] = "ABCD"[pick]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
