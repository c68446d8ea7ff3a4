#!/usr/bin/env python3
"""Runs einlm's causal attention benchmark and PyTorch's scaled_dot_product_attention on the same
shapes, in one job.

Usage: benchmarks/attention_peers.py BUILD_DIR [--threads N]

einlm: BUILD_DIR/benchmarks/bench_train --benchmark_filter=bm_attention (Google Benchmark):
nn::attention_forward and nn::attention_backward, causal, float32 (B, H, S, Dh) heads, in blocks
of query rows (what the library runs) and over the whole square of scores (the path they
replaced). PyTorch (torch.set_num_threads(N)): F.scaled_dot_product_attention(q, k, v,
is_causal=True) under no_grad for the forward; for the backward, torch.autograd.grad of a kept
output with respect to q, k and v (its CPU flash kernel recomputes the probabilities, as ours
does from the saved log-sum-exp). Both sides are timed the same way, taking turns (peer_timing.py):
the fastest of 5 rounds, each the mean over at least 0.5 s of calls. Prints milliseconds per call
and einlm / PyTorch in speed (goal >= 1.0).
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import einlm_benchmark, fastest_interleaved, mean_seconds  # noqa: E402

SHAPES = [(16, 4, 128, 32), (8, 8, 256, 32), (4, 12, 512, 64), (2, 12, 1024, 64)]
PASSES = ["forward", "backward"]


def torch_call(which, shape):
    """PyTorch's attention pass `which` on random (B, H, S, Dh) q, k, v, as a function to time."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=g, requires_grad=True) for _ in range(3))
    dout = torch.randn(*shape, generator=g)
    if which == "forward":
        def forward():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return forward
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"causal attention, float32, ms per call, {args.threads} thread(s)")
    print(f"| pass | B x H x S x Dh | einlm, query blocks | einlm, whole square | PyTorch {torch.__version__} "
          f"| einlm / PyTorch |")
    print("|---|---|---|---|---|---|")
    for p, which in enumerate(PASSES):
        for s, shape in enumerate(SHAPES):
            # bm_attention/PASS/PATH/SHAPE: path 1 the query blocks, 0 the whole square.
            blocks = einlm_benchmark(args.build, "bench_train", args.threads, f"bm_attention/{p}/1/{s}/real_time")
            square = einlm_benchmark(args.build, "bench_train", args.threads, f"bm_attention/{p}/0/{s}/real_time")
            peer = torch_call(which, shape)
            t_blocks, t_square, t_peer = fastest_interleaved([blocks, square, lambda: mean_seconds(peer)])
            name = " x ".join(str(x) for x in shape)
            print(f"| {which} | {name} | {t_blocks * 1e3:.2f} | {t_square * 1e3:.2f} | {t_peer * 1e3:.2f} "
                  f"| {t_peer / t_blocks:.2f} |")


if __name__ == "__main__":
    main()
