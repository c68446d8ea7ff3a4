#!/usr/bin/env python3
"""Checks that vocabulary files written by einlm load in tiktoken and HF tokenizers and encode
identically to einlm (and, for GPT-2, to tiktoken's own GPT-2 encoding).

  tools/check_formats.py [--cli build/test/apps/einlm-tokenizer]

Needs pip packages tiktoken, tokenizers, blobfile, and the cs336 fixtures. Steps:
  1. einlm-tokenizer convert: the fixture's GPT-2 vocab.json/merges.txt -> .tiktoken and
     tokenizer.json; tiktoken and HF load them and must give tiktoken-GPT-2's ids.
  2. einlm-tokenizer train (vocabulary 2,000, <|endoftext|>, both tie rules) -> vocab.json/merges.txt,
     then convert -> .tiktoken and tokenizer.json; HF (from vocab.json/merges.txt and from
     tokenizer.json) and tiktoken (from the .tiktoken) must give einlm-tokenizer encode's ids.
"""
import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_common import DATA, ROOT, GPT2_PATTERN, fixtures_dir, gpt2_encoding  # noqa: E402


def einlm_ids(cli, model_args, path, specials):
    args = [cli, "encode", *model_args, path]
    for s in specials:
        args += ["--special", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]


def hf_from_files(vocab, merges):
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.BPE.from_file(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tok


def tiktoken_from_file(path, n_ordinary, specials):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    ranks = load_tiktoken_bpe(path)
    return tiktoken.Encoding(name="einlm", pat_str=GPT2_PATTERN.pattern, mergeable_ranks=ranks,
                             special_tokens={s: n_ordinary + i for i, s in enumerate(specials)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "test", "apps", "einlm-tokenizer"))
    args = ap.parse_args()
    from tokenizers import Tokenizer
    fx = fixtures_dir()
    texts = [os.path.join(fx, n) for n in ("corpus.en", "german.txt", "address.txt", "tinystories_sample.txt")]
    texts.append(os.path.join(DATA, "extra_text.txt"))
    failures = 0

    def check(what, got, want):
        nonlocal failures
        ok = got == want
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what} ({len(want)} ids)")
        if not ok:
            i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            print(f"     first difference at id {i}: got {got[i:i + 6]}, want {want[i:i + 6]}")

    with tempfile.TemporaryDirectory() as d:
        # 1. GPT-2 converted by einlm.
        gpt2 = ["--vocab", os.path.join(fx, "gpt2_vocab.json"), "--merges", os.path.join(fx, "gpt2_merges.txt")]
        subprocess.run([args.cli, "convert", *gpt2, "--special", "<|endoftext|>", "--to", "tiktoken",
                        "--out", f"{d}/gpt2.tiktoken"], check=True)
        subprocess.run([args.cli, "convert", *gpt2, "--special", "<|endoftext|>", "--to", "hf",
                        "--out", f"{d}/gpt2.json"], check=True)
        ref = gpt2_encoding(fx)
        # <|endoftext|> (id 50256) is left out of the rank file; tiktoken takes it as a special token.
        tik = tiktoken_from_file(f"{d}/gpt2.tiktoken", 50256, ["<|endoftext|>"])
        hf = Tokenizer.from_file(f"{d}/gpt2.json")
        for t in texts:
            text = open(t, encoding="utf-8", newline="").read()
            want = ref.encode(text, allowed_special="all")
            check(f"GPT-2 .tiktoken written by einlm, tiktoken, {os.path.basename(t)}",
                  tik.encode(text, allowed_special="all"), want)
            check(f"GPT-2 tokenizer.json written by einlm, HF, {os.path.basename(t)}", hf.encode(text).ids, want)

        # 2. Vocabularies trained by einlm.
        corpus = f"{d}/train.txt"
        with open(corpus, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(open(t, encoding="utf-8", newline="").read())
        for rule in ("cs336", "hf"):
            out = f"{d}/{rule}"
            subprocess.run([args.cli, "train", "--vocab-size", "2000", "--special", "<|endoftext|>", "--tie-break",
                            rule, "--progress", "never", "--out", out, corpus], check=True)
            model = ["--vocab", f"{out}/vocab.json", "--merges", f"{out}/merges.txt"]
            subprocess.run([args.cli, "convert", *model, "--special", "<|endoftext|>", "--to", "tiktoken",
                            "--out", f"{out}/v.tiktoken"], check=True)
            subprocess.run([args.cli, "convert", *model, "--special", "<|endoftext|>", "--to", "hf",
                            "--out", f"{out}/tokenizer.json"], check=True)
            n_ordinary = sum(1 for line in open(f"{out}/v.tiktoken") if line.strip())
            tik = tiktoken_from_file(f"{out}/v.tiktoken", n_ordinary, ["<|endoftext|>"])
            hf_files = hf_from_files(f"{out}/vocab.json", f"{out}/merges.txt")
            hf_json = Tokenizer.from_file(f"{out}/tokenizer.json")
            for t in texts:
                text = open(t, encoding="utf-8", newline="").read()
                want = einlm_ids(args.cli, model, t, ["<|endoftext|>"])
                name = f"trained ({rule} ties) {os.path.basename(t)}"
                check(f"{name}: tiktoken from .tiktoken", tik.encode(text, allowed_special="all"), want)
                check(f"{name}: HF from tokenizer.json", hf_json.encode(text).ids, want)
                # vocab.json/merges.txt hold <|endoftext|> as an ordinary entry: compare without it.
                want_plain = einlm_ids(args.cli, model, t, [])
                check(f"{name}: HF from vocab.json + merges.txt", hf_files.encode(text).ids, want_plain)
    print("all identical" if failures == 0 else f"{failures} FAILED")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
