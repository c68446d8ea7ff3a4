#!/usr/bin/env python3
"""Runs einlm's norm benchmark and PyTorch's norms on the same shapes, in one job.

Usage: benchmarks/norm_peers.py BUILD_DIR [--threads N]

einlm: BUILD_DIR/benchmarks/bench_train --benchmark_filter=bm_norm (Google Benchmark): nn::rms_norm,
nn::layer_norm and their backward passes on float32 host tensors, through the row kernels and
through the einops expressions they replaced, on (2048, 128) and (1024, 768). PyTorch
(torch.set_num_threads(N)): torch.nn.functional.rms_norm and layer_norm (eps 1e-5) on the same
shapes; the backward pass is torch.autograd.grad of the output with respect to x, the gain (and the
bias), on a graph kept between runs, so it is timed alone. Each PyTorch case takes the best of 7
runs of 50 calls after 5 warm-ups. Prints M elements per second of each and einlm / PyTorch (goal
>= 1.0).
"""
import argparse
import json
import os
import subprocess
import time

import torch
import torch.nn.functional as F

KERNELS = ["rms_norm", "rms_norm_backward", "layer_norm", "layer_norm_backward"]
SHAPES = [(2048, 128), (1024, 768)]


def best_rate(f, elements, calls=50, runs=7, warmup=5):
    for _ in range(warmup):
        f()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        best = min(best, (time.perf_counter() - t) / calls)
    return elements / best


def torch_rate(kernel, n, d):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, requires_grad=True)
    dy = torch.randn(n, d, generator=g)
    gain = (1 + 0.2 * torch.randn(d, generator=g)).requires_grad_()
    bias = (0.2 * torch.randn(d, generator=g)).requires_grad_()
    if kernel.startswith("rms_norm"):
        forward, inputs = (lambda: F.rms_norm(x, (d,), gain, eps=1e-5)), (x, gain)
    else:
        forward, inputs = (lambda: F.layer_norm(x, (d,), gain, bias, eps=1e-5)), (x, gain, bias)
    if not kernel.endswith("backward"):
        with torch.no_grad():
            return best_rate(forward, n * d)
    y = forward()
    return best_rate(lambda: torch.autograd.grad(y, inputs, dy, retain_graph=True), n * d)


def bench_train_rates(build, threads, name, counter):
    """{(args…): counter} of bench_train's benchmark `name`, keyed by its integer arguments."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([os.path.join(build, "benchmarks", "bench_train"), "--benchmark_format=json",
                          f"--benchmark_filter={name}/", "--benchmark_min_time=1"],
                         env=env, check=True, capture_output=True, text=True).stdout
    rates = {}
    for b in json.loads(out)["benchmarks"]:
        args = tuple(int(a) for a in b["name"].split("/")[1:] if a.isdigit())
        rates[args] = b[counter]
    return rates


def einlm_rates(build, threads):
    return bench_train_rates(build, threads, "bm_norm", "elements/s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours = einlm_rates(args.build, args.threads)
    print(f"M elements/s, float32, {args.threads} thread(s)")
    print(f"| kernel | shape | einlm row kernel | einlm expressions | PyTorch {torch.__version__} | einlm / PyTorch |")
    print("|---|---|---|---|---|---|")
    for k, kernel in enumerate(KERNELS):
        for s, (n, d) in enumerate(SHAPES):
            rows, expressions = ours[(k, 1, s)], ours[(k, 0, s)]
            peer = torch_rate(kernel, n, d)
            print(f"| {kernel} | {n} x {d} | {rows / 1e6:,.0f} | {expressions / 1e6:,.0f} | {peer / 1e6:,.0f} "
                  f"| {rows / peer:.2f} |")


if __name__ == "__main__":
    main()
