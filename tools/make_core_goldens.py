#!/usr/bin/env python3
"""Writes the .npy/.npz files that tests/core/test_npy.cpp reads (tests/data/core/).

Every array holds values the test can recompute (a formula of the element's C-order position i),
written by NumPy itself in the layouts einlm must accept: little/big endian, Fortran order,
format versions 1.0 and 2.0, rank 0, an np.savez archive, and an np.savez_compressed archive
(which einlm rejects).

Usage: python3 tools/make_core_goldens.py   (needs numpy from PyPI)
"""
import os

import numpy as np
import numpy.lib.format as fmt

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "core")


def positions(shape):
    return np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)


def main():
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "f4_c.npy"), (positions((3, 4)) * 0.5 - 3).astype("<f4"))
    np.save(os.path.join(OUT, "f8_fortran.npy"), np.asfortranarray(positions((2, 3, 4)) * 0.25 + 1))
    np.save(os.path.join(OUT, "i8_big_endian.npy"), (positions((5,)) * 1000 - 2000).astype(">i8"))
    np.save(os.path.join(OUT, "b1.npy"), (positions((2, 3)) % 2 == 1))
    np.save(os.path.join(OUT, "f2.npy"), (positions((4,)) / 3).astype("<f2"))
    np.save(os.path.join(OUT, "u2_scalar.npy"), np.array(513, dtype="<u2"))
    with open(os.path.join(OUT, "f4_v2.npy"), "wb") as f:
        fmt.write_array(f, (positions((2, 2)) + 7).astype("<f4"), version=(2, 0))
    np.save(os.path.join(OUT, "c8_unsupported.npy"), np.zeros(2, dtype=np.complex64))
    np.savez(os.path.join(OUT, "archive.npz"), weights=(positions((2, 3)) - 1).astype("<f4"),
             ids=positions((4,)).astype("<i4"))
    np.savez_compressed(os.path.join(OUT, "compressed.npz"), a=np.ones(3, dtype="<f4"))


if __name__ == "__main__":
    main()
