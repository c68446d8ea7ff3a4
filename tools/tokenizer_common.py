"""Helpers shared by the tokenizer tools: paths, the GPT-2 byte<->unicode map, the GPT-2
pattern, the Unicode 15.0 classes, the C++ helper build, and the digests the C++ tests recompute.

Not a library: imported by the scripts in tools/ only.
"""
import glob
import os
import subprocess
import sys

import regex

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")

# GPT-2's pattern exactly as written in openai/gpt-2 src/encoder.py.
GPT2_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def fixtures_dir():
    """The cs336/ fixtures directory: $EINLM_FIXTURES_DIR/cs336, else ../shared/fixtures/cs336."""
    base = os.environ.get("EINLM_FIXTURES_DIR") or os.path.join(ROOT, "..", "shared", "fixtures")
    d = os.path.join(base, "cs336")
    if not os.path.isdir(d):
        sys.exit(f"fixtures not found at {d}: set EINLM_FIXTURES_DIR")
    return d


def bytes_to_unicode():
    """GPT-2's byte -> printable character map (188 bytes map to themselves, 68 to U+0100+n)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def gpt2_ranks(fixtures):
    """tiktoken-style mergeable ranks (bytes -> rank) rebuilt from the fixture's GPT-2 files, the
    way tiktoken's data_gym_to_mergeable_bpe_ranks does it (and checked against vocab.json)."""
    import json
    b2u = bytes_to_unicode()
    u2b = {v: k for k, v in b2u.items()}
    order = list(b2u.keys())  # printable bytes first, then the 68 others
    ranks = {bytes([b]): i for i, b in enumerate(order)}
    with open(os.path.join(fixtures, "gpt2_merges.txt"), encoding="utf-8") as f:
        lines = [l for l in f.read().split("\n") if l and not l.startswith("#version")]
    for line in lines:
        a, b = line.split(" ")
        tok = bytes(u2b[c] for c in a) + bytes(u2b[c] for c in b)
        ranks[tok] = len(ranks)
    with open(os.path.join(fixtures, "gpt2_vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    for s, i in vocab.items():
        if s == "<|endoftext|>":
            continue
        assert ranks[bytes(u2b[c] for c in s)] == i
    return ranks


def gpt2_encoding(fixtures):
    import tiktoken
    return tiktoken.Encoding(
        name="gpt2-fixture",
        pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
        mergeable_ranks=gpt2_ranks(fixtures),
        special_tokens={"<|endoftext|>": 50256})


def cuda_include_flags():
    flags = []
    for d in ["/usr/local/cuda/include", "/usr/local/cuda/include/cccl",
              *glob.glob("/usr/local/cuda/targets/*/include/cccl")]:
        if os.path.isdir(d):
            flags += ["-isystem", d]
    return flags


def build_tool(source, out):
    """Compiles a tools/*.cpp helper against the headers of this checkout."""
    cmd = ["g++", "-O2", "-std=c++20", "-Wall", "-Wextra", "-I", os.path.join(ROOT, "include"),
           *cuda_include_flags(), os.path.join(ROOT, "tools", source), "-o", out]
    subprocess.run(cmd, check=True)
    return out


def fnv1a64(data, h=0xCBF29CE484222325):
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def pieces_digest(pieces):
    """FNV-1a 64 over the piece lengths (u32 little-endian each): tests/tokenizer recompute it."""
    h = 0xCBF29CE484222325
    for p in pieces:
        h = fnv1a64(len(p.encode("utf-8") if isinstance(p, str) else p).to_bytes(4, "little"), h)
    return h


def ids_digest(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        h = fnv1a64(int(i).to_bytes(4, "little"), h)
    return h
