#!/usr/bin/env python3
"""Differential test of einlm's GPT-2 pre-tokenizer against Python's `regex` module.

  tools/pretokenize_oracle.py [--cases 1000000] [--seed 1] [--write-sample 2500]

1. Generates --cases strings from a seeded generator that mixes: every White_Space code point,
   U+0020 runs, CR/LF, ASCII letters/digits/punctuation, apostrophes and every contraction (also
   in the wrong case), combining marks (Mn/Mc/Me), format characters (Cf), the "looks like space
   but is not" characters (U+001C..U+001F, U+180E, U+200B, U+2800, U+3164, U+FEFF, U+00AD), digits
   of several scripts (Nd), No/Nl numbers, Latin/Greek/Cyrillic/Arabic/Hebrew/Devanagari/Thai
   letters, CJK, Hangul, kana, emoji (with ZWJ and skin tones), private use, unassigned and
   random code points.
2. Splits each with the GPT-2 pattern in `regex` and with tools/pretokenize_driver.cpp (built
   from this checkout) and compares piece by piece; also compares every fixture text file.
3. With --write-sample N, writes N of the cases (seeded choice) with their pieces to
   tests/data/tokenizer/pretokenize_cases.txt, and the fixture digests to
   tests/data/tokenizer/pretokenize_fixtures.txt; CI checks both.

Code points whose class differs between the Unicode 15.0 tables of einlm and the Unicode version
of the installed `regex` (letters and numbers added in Unicode 15.1-17) are listed and excluded from
generation; docs/tokenizer.md states the policy.
"""
import argparse
import os
import random
import struct
import subprocess
import sys
import tempfile

import regex

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_unicode_tables as ucd  # noqa: E402
from tokenizer_common import (DATA, GPT2_PATTERN, build_tool, fixtures_dir,  # noqa: E402
                              pieces_digest)

WHITE_SPACE = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
               0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
NOT_SPACE = [0x1C, 0x1D, 0x1E, 0x1F, 0x180E, 0x200B, 0x2800, 0x3164, 0xFEFF, 0xAD, 0x200C, 0x200D]


def divergent_code_points(cls):
    """Code points classified differently by einlm's tables and by the installed regex."""
    letter, number, space = (regex.compile(p) for p in (r"\p{L}", r"\p{N}", r"\s"))
    out = set()
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        r = 1 if letter.match(ch) else 2 if number.match(ch) else 3 if space.match(ch) else 0
        if r != cls[cp]:
            out.add(cp)
    return out


class Generator:
    def __init__(self, seed, excluded):
        self.r = random.Random(seed)
        gc = ucd.read_general_categories("/usr/share/unicode")
        ok = lambda cp: cp not in excluded and not (0xD800 <= cp < 0xE000)
        by = lambda cats: [cp for cp, c in gc.items() if c in cats and ok(cp)]
        self.marks = by({"Mn", "Mc", "Me"})
        self.format = by({"Cf"})
        self.nd = by({"Nd"})
        self.no_nl = by({"No", "Nl"})
        self.letters_all = by({"Lu", "Ll", "Lt", "Lm", "Lo"})
        self.symbols = by({"Sm", "Sc", "Sk", "So", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"})
        self.excluded = excluded
        ranges = [(0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x5D0, 0x5EA), (0x620, 0x64A),
                  (0x904, 0x939), (0xE01, 0xE30), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
                  (0x3041, 0x3096), (0x30A1, 0x30FA)]
        self.script_letters = [cp for a, b in ranges for cp in range(a, b + 1)
                               if gc.get(cp, "Cn")[0] == "L" and ok(cp)]
        self.emoji = [cp for cp in range(0x1F300, 0x1FAFF) if ok(cp)]
        self.digits_scripts = [0x30, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0xFF10, 0x1D7CE]
        self.atoms = [
            (30, self.ascii_word), (12, lambda: " "), (6, lambda: " " * self.r.randint(2, 5)),
            (6, self.apostrophe), (6, self.white_space), (3, lambda: self.r.choice(["\n", "\r\n", "\n\n"])),
            (5, self.ascii_punct), (4, self.ascii_digits), (3, self.pick(self.marks)),
            (2, self.pick(self.format)), (2, self.pick_cp(NOT_SPACE)), (3, self.script_digits),
            (2, self.pick(self.no_nl)), (5, self.pick(self.script_letters)),
            (2, self.pick(self.letters_all)), (3, self.emoji_seq), (3, self.pick(self.symbols)),
            (2, self.random_cp), (1, self.pick_cp([0xE000, 0xF8FF, 0xF0000, 0x10FFFD, 0x0378, 0xFFFF])),
        ]
        self.weights = [w for w, _ in self.atoms]

    def pick(self, pool):
        return lambda: chr(self.r.choice(pool))

    def pick_cp(self, cps):
        cps = [c for c in cps if c not in self.excluded]
        return lambda: chr(self.r.choice(cps))

    def ascii_word(self):
        n = self.r.randint(1, 7)
        return "".join(self.r.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZsdtmlrve")
                       for _ in range(n))

    def apostrophe(self):
        return self.r.choice(["'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'RE", "'l",
                              "'r", "'v", "''", "'x", "\u2019s", "'ss", "'lll"])

    def white_space(self):
        return "".join(chr(self.r.choice(WHITE_SPACE)) for _ in range(self.r.randint(1, 3)))

    def ascii_punct(self):
        return "".join(self.r.choice("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'") for _ in range(self.r.randint(1, 3)))

    def ascii_digits(self):
        return "".join(self.r.choice("0123456789") for _ in range(self.r.randint(1, 4)))

    def script_digits(self):
        base = self.r.choice(self.digits_scripts)
        return "".join(chr(base + self.r.randint(0, 9)) for _ in range(self.r.randint(1, 3)))

    def emoji_seq(self):
        s = chr(self.r.choice(self.emoji))
        k = self.r.random()
        if k < 0.2:
            s += chr(self.r.randint(0x1F3FB, 0x1F3FF))
        elif k < 0.35:
            s += "\u200d" + chr(self.r.choice(self.emoji))
        elif k < 0.45:
            s += "\ufe0f"
        return s

    def random_cp(self):
        while True:
            cp = self.r.randint(0, 0x10FFFF)
            if not (0xD800 <= cp < 0xE000) and cp not in self.excluded:
                return chr(cp)

    def case(self):
        n = self.r.choices([1, 2, 3, 4, 6, 8, 12], [3, 5, 6, 6, 5, 3, 2])[0]
        fns = self.r.choices(self.atoms, self.weights, k=n)
        return "".join(f() for _, f in fns)


def run_driver(driver, texts):
    with tempfile.TemporaryDirectory() as d:
        cases, out = os.path.join(d, "cases.bin"), os.path.join(d, "pieces.bin")
        with open(cases, "wb") as f:
            for t in texts:
                b = t.encode("utf-8")
                f.write(struct.pack("<I", len(b)))
                f.write(b)
        subprocess.run([driver, cases, out], check=True)
        data = open(out, "rb").read()
    words = struct.unpack(f"<{len(data) // 4}I", data)
    res, i = [], 0
    for _ in texts:
        n = words[i]
        res.append(list(words[i + 1:i + 1 + n]))
        i += 1 + n
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--write-sample", type=int, default=0)
    args = ap.parse_args()

    cls = ucd.read_classes("/usr/share/unicode")
    excluded = divergent_code_points(cls)
    print(f"regex {regex.__version__}: {len(excluded)} code points classified differently from "
          f"Unicode 15.0 (excluded from generation)")
    gen = Generator(args.seed, excluded)
    texts = [gen.case() for _ in range(args.cases)]
    expected = [[len(p.encode("utf-8")) for p in GPT2_PATTERN.findall(t)] for t in texts]
    with tempfile.TemporaryDirectory() as d:
        driver = build_tool("pretokenize_driver.cpp", os.path.join(d, "driver"))
        got = run_driver(driver, texts)
        bad = [i for i in range(len(texts)) if got[i] != expected[i]]
        print(f"{len(texts)} generated cases: {len(texts) - len(bad)} identical, {len(bad)} different")
        for i in bad[:20]:
            print("  DIFF", ascii(texts[i]), "regex", expected[i], "einlm", got[i])

        fx = fixtures_dir()
        names = sorted(n for n in os.listdir(fx) if n.endswith(".txt") or n == "corpus.en")
        names = [n for n in names if n not in ("gpt2_merges.txt", "train-bpe-reference-merges.txt")]
        fixture_texts = [open(os.path.join(fx, n), encoding="utf-8").read() for n in names]
        fixture_got = run_driver(driver, fixture_texts)
        digests = []
        for n, t, g in zip(names, fixture_texts, fixture_got):
            pieces = GPT2_PATTERN.findall(t)
            same = [len(p.encode("utf-8")) for p in pieces] == g
            print(f"fixture {n}: {len(pieces)} pieces, {'identical' if same else 'DIFFERENT'}")
            bad += [] if same else [n]
            digests.append((n, len(pieces), pieces_digest(pieces)))

    if args.write_sample:
        r = random.Random(args.seed + 1)
        idx = sorted(r.sample(range(len(texts)), args.write_sample))
        with open(os.path.join(DATA, "pretokenize_cases.txt"), "wb") as f:
            f.write(b"# GPT-2 pre-tokenizer oracle sample: generated by tools/pretokenize_oracle.py\n")
            f.write(f"# regex {regex.__version__}, seed {args.seed}; records: '<bytes> <piece lengths>' "
                    "newline, then the raw UTF-8 text and a newline\n".encode())
            for i in idx:
                b = texts[i].encode("utf-8")
                f.write(f"{len(b)} {','.join(map(str, expected[i]))}\n".encode())
                f.write(b + b"\n")
        with open(os.path.join(DATA, "pretokenize_fixtures.txt"), "w") as f:
            f.write("# GPT-2 pieces of the cs336 fixture texts per Python regex "
                    f"{regex.__version__}: file, piece count, FNV-1a 64 of the piece lengths\n")
            for n, c, h in digests:
                f.write(f"{n} {c} {h:016x}\n")
        print(f"wrote {args.write_sample} cases and {len(digests)} fixture digests to {DATA}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
