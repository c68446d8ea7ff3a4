#!/usr/bin/env python3
"""Writes tests/data/einops/einsum_contractions.npz: NumPy goldens for tests/linalg/test_einsum.cpp.

Each case is an einops pattern, its inputs (random, uniform in [-1, 1), float32 — or values exact
in bf16 for the bf16 cases, or small integers for the integer cases) stored as <case>_in0,
<case>_in1, …, and the result of einops.einsum on the inputs in float64 (int64 for integers)
stored as <case>_out. The cases cover what einlm runs as a GEMM (batch, M, N and K axes in every
order, axes that do not fold into one stride, broadcast ellipsis parts, GEMV and dot shapes, sums
split across loops) and what it runs as one fused pass (outer products, diagonals, integer
inputs).

Usage:
    python3 -m pip install einops==0.8.2 numpy
    python3 tools/make_einsum_goldens.py            # rewrites the archive
    python3 tools/make_einsum_goldens.py --check    # exits 1 when it would change
"""
import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

import einops

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ROOT / "tests" / "data" / "einops" / "einsum_contractions.npz"
SEED = 20261128

# name, pattern, input shapes, kind ("f32", "bf16", "int")
CASES = [
    ("bmm", "b i k, b k j -> b i j", [(3, 17, 33), (3, 33, 9)], "f32"),
    ("mm", "i k, k j -> i j", [(65, 70), (70, 51)], "f32"),
    ("mm_out_t", "i k, k j -> j i", [(20, 31), (31, 12)], "f32"),
    ("mm_a_t", "k i, k j -> i j", [(31, 20), (31, 12)], "f32"),
    ("mm_b_t", "i k, j k -> i j", [(20, 31), (12, 31)], "f32"),
    ("scores", "b h i d, b h j d -> b h i j", [(2, 3, 10, 8), (2, 3, 12, 8)], "f32"),
    ("scores_bshd", "b i h d, b j h d -> b h i j", [(2, 10, 3, 8), (2, 12, 3, 8)], "f32"),
    ("attn_out", "b h i j, b j h d -> b i h d", [(2, 3, 10, 12), (2, 12, 3, 8)], "f32"),
    ("gemv", "i j, j -> i", [(37, 29), (29,)], "f32"),
    ("vecmat", "j, j i -> i", [(29,), (29, 37)], "f32"),
    ("dot", "i, i ->", [(101,), (101,)], "f32"),
    ("frobenius", "i j, i j ->", [(13, 7), (13, 7)], "f32"),
    ("shared_weight", "b i k, k j -> b i j", [(4, 9, 16), (16, 11)], "f32"),
    ("ellipsis_broadcast", "... i k, ... k j -> ... i j", [(2, 1, 5, 6), (3, 6, 4)], "f32"),
    ("k_split", "a b c, c b d -> a d", [(5, 3, 4), (4, 3, 6)], "f32"),
    ("k_transposed", "x y z, z y -> x", [(6, 5, 4), (4, 5)], "f32"),
    ("row_dot", "b i, b i -> b", [(7, 19), (7, 19)], "f32"),
    ("long_names", "batch seq_q dim, batch seq_k dim -> batch seq_k seq_q", [(2, 5, 16), (2, 7, 16)], "f32"),
    ("bmm_bf16", "b i k, b k j -> b i j", [(2, 19, 40), (2, 40, 13)], "bf16"),
    ("mm_bf16_big_k", "i k, k j -> i j", [(8, 1000), (1000, 6)], "bf16"),
    # fused: no shared summed axis, diagonals, integers
    ("outer", "i, j -> i j", [(5,), (7,)], "f32"),
    ("diag_mul", "i i, i -> i", [(6, 6), (6,)], "f32"),
    ("three_way", "a b, b c, c d -> a d", [(3, 4), (4, 5), (5, 2)], "f32"),
    ("mm_int", "i k, k j -> i j", [(9, 12), (12, 5)], "int"),
]


def bf16_round(x):
    """Rounds float32 values to the nearest bf16 value (ties to even), kept as float32."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def build():
    rng = np.random.default_rng(SEED)
    members = {}
    for name, pattern, shapes, kind in CASES:
        inputs = []
        for shape in shapes:
            if kind == "int":
                inputs.append(rng.integers(-9, 10, size=shape).astype(np.int32))
            else:
                x = rng.uniform(-1, 1, size=shape).astype(np.float32)
                inputs.append(bf16_round(x) if kind == "bf16" else x)
        wide = [v.astype(np.int64) if kind == "int" else v.astype(np.float64) for v in inputs]
        out = einops.einsum(*wide, pattern)
        for k, v in enumerate(inputs):
            members[f"{name}_in{k}"] = v
        members[f"{name}_out"] = np.asarray(out)
    return members


def serialise(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(members):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.array(members[name], order="C", copy=True), allow_pickle=False)
            z.writestr(info, payload.getvalue())
    return buf.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether the archive would change")
    args = parser.parse_args()
    data = serialise(build())
    same = ARCHIVE.exists() and ARCHIVE.read_bytes() == data
    if args.check:
        print("unchanged" if same else f"would change: {ARCHIVE.relative_to(ROOT)}")
        return 0 if same else 1
    if not same:
        ARCHIVE.parent.mkdir(parents=True, exist_ok=True)
        ARCHIVE.write_bytes(data)
        print(f"wrote: {ARCHIVE.relative_to(ROOT)} ({len(data) / 1e3:.1f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
