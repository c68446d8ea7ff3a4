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
does from the saved log-sum-exp). Each PyTorch case takes the best of 7 runs of 10 calls after 3
warm-ups. Prints milliseconds per call and einlm / PyTorch in speed (goal >= 1.0).
"""
import argparse
import json
import os
import subprocess
import time

import torch
import torch.nn.functional as F

SHAPES = [(16, 4, 128, 32), (8, 8, 256, 32), (4, 12, 512, 64), (2, 12, 1024, 64)]
PASSES = ["forward", "backward"]


def best_time(f, calls=10, runs=7, warmup=3):
    for _ in range(warmup):
        f()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        best = min(best, (time.perf_counter() - t) / calls)
    return best


def torch_time(which, shape):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=g, requires_grad=True) for _ in range(3))
    dout = torch.randn(*shape, generator=g)
    if which == "forward":
        with torch.no_grad():
            return best_time(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return best_time(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True))


def einlm_times(build, threads):
    """{(pass, path, shape): seconds per call} of bench_train's bm_attention."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([os.path.join(build, "benchmarks", "bench_train"), "--benchmark_format=json",
                          "--benchmark_filter=bm_attention/", "--benchmark_min_time=1"],
                         env=env, check=True, capture_output=True, text=True).stdout
    times = {}
    for b in json.loads(out)["benchmarks"]:
        args = tuple(int(a) for a in b["name"].split("/")[1:] if a.isdigit())
        times[args] = b["real_time"] / 1e3  # milliseconds → seconds
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours = einlm_times(args.build, args.threads)
    print(f"causal attention, float32, ms per call, {args.threads} thread(s)")
    print(f"| pass | B x H x S x Dh | einlm, query blocks | einlm, whole square | PyTorch {torch.__version__} "
          f"| einlm / PyTorch |")
    print("|---|---|---|---|---|---|")
    for p, which in enumerate(PASSES):
        for s, shape in enumerate(SHAPES):
            blocks, square = ours[(p, 1, s)], ours[(p, 0, s)]
            peer = torch_time(which, shape)
            name = " x ".join(str(x) for x in shape)
            print(f"| {which} | {name} | {blocks * 1e3:.2f} | {square * 1e3:.2f} | {peer * 1e3:.2f} "
                  f"| {peer / blocks:.2f} |")


if __name__ == "__main__":
    main()
