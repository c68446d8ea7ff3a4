#!/usr/bin/env python3
"""Independent reference of einlm's random streams (einlm/core/random.hpp), in plain Python.

Prints, for seed 42 and stream 7, the first 8 random bits, float uniforms, and normals computed
with Python's math module, as the values tests/core/test_random.cpp compares against.

Stream layout: element i uses Philox-4x32-10 with counter (i // 4 as two 32-bit words, stream as
two 32-bit words) and key (seed as two 32-bit words), lane i % 4. Uniform float: (bits >> 8)·2^-24.
Normal: Box-Muller on lanes (0, 1) and (2, 3): u1 = (b0 + 1)·2^-32, u2 = b1·2^-32,
r = sqrt(-2 ln u1), even element r·cos(2π u2), odd element r·sin(2π u2).
"""
import math

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox(ctr, key):
    c = list(ctr)
    k = list(key)
    for r in range(10):
        if r:
            k = [(k[0] + W0) & MASK, (k[1] + W1) & MASK]
        p0 = M0 * c[0]
        p1 = M1 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k[0]) & MASK, p1 & MASK, ((p0 >> 32) ^ c[3] ^ k[1]) & MASK, p0 & MASK]
    return c


def block(seed, stream, b):
    return philox([b & MASK, b >> 32, stream & MASK, stream >> 32], [seed & MASK, seed >> 32])


def bits(seed, stream, i):
    return block(seed, stream, i // 4)[i % 4]


def normal(seed, stream, i):
    b = block(seed, stream, i // 4)
    pair = (i // 2) % 2
    u1 = (b[2 * pair] + 1) * 2.0 ** -32
    u2 = b[2 * pair + 1] * 2.0 ** -32
    r = math.sqrt(-2.0 * math.log(u1))
    return r * (math.sin(2 * math.pi * u2) if i % 2 else math.cos(2 * math.pi * u2))


def main():
    seed, stream = 42, 7
    print("bits:", ", ".join(f"0x{bits(seed, stream, i):08x}u" for i in range(8)))
    print("uniform:", ", ".join(repr((bits(seed, stream, i) >> 8) * 2.0 ** -24) for i in range(8)))
    print("normal:", ", ".join(repr(normal(seed, stream, i)) for i in range(8)))


if __name__ == "__main__":
    main()
