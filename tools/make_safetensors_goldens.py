#!/usr/bin/env python3
"""Writes tests/data/core/torch_written.safetensors with PyTorch's safetensors writer.

Usage: python3 -m pip install safetensors torch numpy && python3 tools/make_safetensors_goldens.py

tests/core/test_safetensors.cpp reads it with einlm's reader and checks every value against the
formulas below, so the file proves that einlm reads what `safetensors.torch.save_file` writes:
float32, bfloat16, float16, float64, int64, int32, int16, int8, uint8 and bool tensors, a 0-d
tensor, an empty tensor, names in the CS336 state-dict convention, and string metadata.
Value formulas (flat row-major index i):
  float types:  (i % 17) * 0.25 - 2        (exact in bf16 and fp16)
  int64:        i * 1_000_003 - 7_000_000_000
  int32:        i * 7919 - 100_000
  int16:        i * 31 - 1000;   int8: i * 3 - 100;   uint8: (i * 37) % 256
  bool:         i % 3 == 0
"""
import pathlib

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "core" / "torch_written.safetensors"


def floats(shape, dtype):
    n = 1
    for d in shape:
        n *= d
    i = torch.arange(n, dtype=torch.float64)
    return ((i % 17) * 0.25 - 2).reshape(shape).to(dtype)


def main():
    tensors = {
        "token_embeddings.weight": floats((11, 8), torch.float32),
        "layers.0.attn.q_proj.weight": floats((8, 8), torch.bfloat16),
        "layers.0.ln1.weight": floats((8,), torch.float16),
        "lm_head.weight": floats((3, 4, 5), torch.float64),
        "step": torch.tensor(1200, dtype=torch.int64),
        "ids64": (torch.arange(6, dtype=torch.int64) * 1_000_003 - 7_000_000_000).reshape(2, 3),
        "ids32": torch.arange(7, dtype=torch.int32) * 7919 - 100_000,
        "i16": torch.arange(5, dtype=torch.int16) * 31 - 1000,
        "i8": torch.arange(9, dtype=torch.int8) * 3 - 100,
        "u8": ((torch.arange(300, dtype=torch.int64) * 37) % 256).to(torch.uint8),
        "mask": torch.arange(10) % 3 == 0,
        "empty": torch.zeros((0, 3), dtype=torch.float32),
    }
    metadata = {"format": "pt", "note": "written by tools/make_safetensors_goldens.py", "unicode": "\u00e9\u4e2d"}
    save_file(tensors, str(OUT), metadata=metadata)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
