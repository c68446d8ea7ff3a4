#!/usr/bin/env python3
"""Generates the small golden files that tests/tokenizer compares against (committed under
tests/data/tokenizer/). Needs the PyPI packages tiktoken, tokenizers and regex, and the cs336
fixtures (EINLM_FIXTURES_DIR or ../shared/fixtures). tiktoken's own rank files cannot be
downloaded here, so its GPT-2 Encoding is rebuilt from the fixture's vocab.json/merges.txt exactly
as tiktoken's data_gym_to_mergeable_bpe_ranks does (tokenizer_common.gpt2_ranks asserts it).

  tools/make_tokenizer_goldens.py

Writes:
  gpt2_goldens.json      tiktoken GPT-2 ids of extra texts: extra_text.txt (whole and per line),
                         tiktoken's own test cases (repeated "0"s, catastrophically repetitive
                         inputs), pathological inputs of 10^6 characters (count + FNV-1a digest),
                         400 generated strings, the fixture corpus.en (digest)
  utf8_replace.json      random byte strings and Python's bytes.decode("utf-8", "replace")
  hf_train_merges.json   merges of HF tokenizers' BpeTrainer (ByteLevel, all 256 bytes as
                         initial alphabet) on fixture texts, for the tie_break::hf test
  formats_digests.json   FNV-1a digests of the GPT-2 vocabulary written by tiktoken
                         (dump_tiktoken_bpe) and by HF (tokenizer.json is compared by content)
"""
import json
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_common import (DATA, fixtures_dir, fnv1a64, gpt2_encoding, gpt2_ranks,  # noqa: E402
                              ids_digest)


def lcg_letters(n, seed=12345):
    """n pseudo-random lowercase letters; tests/tokenizer rebuilds the same string."""
    x, out = seed, []
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out.append(chr(ord("a") + (x >> 33) % 26))
    return "".join(out)


def gpt2_goldens(enc, fx):
    cases = []
    add = lambda name, text, **kw: cases.append({"name": name, "text": text, **kw})
    extra = open(os.path.join(DATA, "extra_text.txt"), encoding="utf-8", newline="").read()
    add("extra_text.txt", extra, ids=enc.encode_ordinary(extra))
    for i, line in enumerate(extra.splitlines(keepends=True)):
        add(f"extra_text.txt line {i + 1}", line, ids=enc.encode_ordinary(line))
    add("hello world", "hello world", ids=enc.encode("hello world"))
    add("hello <|endoftext|> (allowed)", "hello <|endoftext|>",
        ids=enc.encode("hello <|endoftext|>", allowed_special="all"), allowed_special=True)
    for n in range(1, 17):
        add(f"'0' * {n}", "0" * n, ids=enc.encode("0" * n))
    for c in ["^", "0", "a", "'s", " ", "\n"]:
        for pre, suf in [("", ""), (" ", ""), ("", "\n"), (" ", "\n")]:
            text = pre + c * 10_000 + suf
            ids = enc.encode_ordinary(text)
            cases.append({"name": f"repetitive {c!r} x 10^4 prefix {pre!r} suffix {suf!r}",
                          "repeat": c, "count": 10_000, "prefix": pre, "suffix": suf,
                          "n_ids": len(ids), "digest": f"{ids_digest(ids):016x}"})
    hf = hf_gpt2(fx)
    for c, n, pre, suf in [("x", 10**6, "", ""), ("^", 10**6, "", ""), ("0", 10**6, "", ""),
                           (" ", 10**6, "", "x"), ("'s", 500_000, "", ""), ("\n", 10**6, "a", "b"),
                           ("ab", 500_000, "", "")]:
        text = pre + c * n + suf
        ids_hf = hf.encode(text).ids
        # tiktoken 0.14 panics (fancy-regex stack overflow) on some of these; HF is the reference
        # then, and where both run they must agree.
        ref = "tiktoken and hf"
        try:
            ids = run_isolated(enc, text)
            assert ids == ids_hf, f"tiktoken and HF differ on {c!r} x {n}"
        except RuntimeError as e:
            print(f"tiktoken fails on {c!r} x {n}: {e}; using HF tokenizers")
            ids, ref = ids_hf, "hf (tiktoken fails)"
        cases.append({"name": f"pathological {c!r} x {n}", "repeat": c, "count": n, "prefix": pre,
                      "suffix": suf, "n_ids": len(ids), "digest": f"{ids_digest(ids):016x}",
                      "reference": ref})
    letters = lcg_letters(10**6)
    ids = enc.encode_ordinary(letters)
    cases.append({"name": "pathological random letters x 10^6", "lcg_letters": 10**6,
                  "n_ids": len(ids), "digest": f"{ids_digest(ids):016x}"})
    import pretokenize_oracle as po
    import gen_unicode_tables as ucd
    gen = po.Generator(7, po.divergent_code_points(ucd.read_classes("/usr/share/unicode")))
    for i in range(400):
        t = gen.case()
        add(f"generated {i}", t, ids=enc.encode_ordinary(t))
    corpus = open(os.path.join(fx, "corpus.en"), encoding="utf-8").read()
    ids = enc.encode_ordinary(corpus)
    cases.append({"name": "fixture corpus.en", "fixture": "corpus.en", "n_ids": len(ids),
                  "digest": f"{ids_digest(ids):016x}"})
    return cases


def hf_gpt2(fx):
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.BPE.from_file(os.path.join(fx, "gpt2_vocab.json"),
                                         os.path.join(fx, "gpt2_merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tok


def run_isolated(enc, text):
    """enc.encode_ordinary(text) in a child process, so that a panic does not end this one."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=lambda: q.put(enc.encode_ordinary(text)))
    p.start()
    while True:
        try:
            ids = q.get(timeout=1)
            break
        except Exception:
            if not p.is_alive():
                raise RuntimeError(f"exit code {p.exitcode}")
    p.join()
    return ids


def utf8_cases():
    r = random.Random(3)
    pool = [b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x99\x83", b"a", b"\x00", b"\x7f"]
    interesting = [0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF,
                   0x9F, 0xA0, 0x8F, 0x90]
    cases = []
    for i in range(400):
        parts = []
        for _ in range(r.randint(1, 6)):
            k = r.random()
            if k < 0.3:
                parts.append(r.choice(pool))
            elif k < 0.5:
                parts.append(r.choice(pool)[:-1])  # truncated sequence
            elif k < 0.8:
                parts.append(bytes([r.choice(interesting)]))
            else:
                parts.append(bytes([r.randint(0, 255)]))
        b = b"".join(parts)
        cases.append({"bytes": b.hex(), "replaced": b.decode("utf-8", "replace").encode("utf-8").hex()})
    return cases


def hf_merges(fx):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    out = []
    # HF's trainer does not split the training text at special tokens (it counts "<|endoftext|>"
    # as the pieces "<|", "endoftext", "|>"), so special tokens are only given where the text
    # holds none; tinystories_sample.txt (which holds five) is trained without them.
    for name, vocab, specials in [("corpus.en", 600, ["<|endoftext|>"]), ("tinystories_sample.txt", 400, []),
                                  ("german.txt", 300, ["<|endoftext|>"])]:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tr = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train([os.path.join(fx, name)], tr)
        merges = json.loads(tok.to_str())["model"]["merges"]
        out.append({"fixture": name, "vocab_size": vocab, "special_tokens": specials,
                    "merges": [" ".join(m) for m in merges]})
    return out


def formats_digests(fx):
    from tiktoken.load import dump_tiktoken_bpe
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "gpt2.tiktoken")
        dump_tiktoken_bpe(gpt2_ranks(fx), path)
        data = open(path, "rb").read()
    return {"gpt2.tiktoken": {"bytes": len(data), "fnv1a64": f"{fnv1a64(data):016x}"}}


def main():
    fx = fixtures_dir()
    enc = gpt2_encoding(fx)

    def dump(name, obj):
        with open(os.path.join(DATA, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {name}: {os.path.getsize(os.path.join(DATA, name))} bytes")

    dump("gpt2_goldens.json", gpt2_goldens(enc, fx))
    dump("utf8_replace.json", utf8_cases())
    dump("hf_train_merges.json", hf_merges(fx))
    dump("formats_digests.json", formats_digests(fx))


if __name__ == "__main__":
    main()
