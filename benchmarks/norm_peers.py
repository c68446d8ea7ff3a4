#!/usr/bin/env python3
"""Runs einlm's norm benchmark and PyTorch's norms on the same shapes, in one job.

Usage: benchmarks/norm_peers.py BUILD_DIR [--threads N]

einlm: BUILD_DIR/benchmarks/bench_train --benchmark_filter=bm_norm (Google Benchmark): nn::rms_norm,
nn::layer_norm and their backward passes on float32 host tensors, through the row kernels and
through the einops expressions they replaced, on (2048, 128) and (1024, 768). PyTorch
(torch.set_num_threads(N)): torch.nn.functional.rms_norm and layer_norm (eps 1e-5) on the same
shapes; the backward pass is torch.autograd.grad of the output with respect to x, the gain (and the
bias), on a graph kept between runs, so it is timed alone. Both sides are timed the same way,
taking turns (peer_timing.py): the fastest of 5 rounds, each the mean over at least 0.5 s of calls.
Prints M elements per second of each and einlm / PyTorch (goal >= 1.0).
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import einlm_benchmark, fastest_interleaved, mean_seconds  # noqa: E402

KERNELS = ["rms_norm", "rms_norm_backward", "layer_norm", "layer_norm_backward"]
SHAPES = [(2048, 128), (1024, 768)]


def torch_call(kernel, n, d):
    """PyTorch's `kernel` on random (n, d) rows, as a function to time."""
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
        def no_grad_forward():
            with torch.no_grad():
                forward()
        return no_grad_forward
    y = forward()
    return lambda: torch.autograd.grad(y, inputs, dy, retain_graph=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"M elements/s, float32, {args.threads} thread(s)")
    print(f"| kernel | shape | einlm row kernel | einlm expressions | PyTorch {torch.__version__} | einlm / PyTorch |")
    print("|---|---|---|---|---|---|")
    for k, kernel in enumerate(KERNELS):
        for s, (n, d) in enumerate(SHAPES):
            # bm_norm/KERNEL/PATH/SHAPE: path 1 the row kernel, 0 the expressions it replaced.
            rows = einlm_benchmark(args.build, "bench_train", args.threads, f"bm_norm/{k}/1/{s}/real_time")
            expressions = einlm_benchmark(args.build, "bench_train", args.threads, f"bm_norm/{k}/0/{s}/real_time")
            peer = torch_call(kernel, n, d)
            times = fastest_interleaved([rows, expressions, lambda: mean_seconds(peer)])
            r_rows, r_expressions, r_peer = (n * d / t for t in times)
            print(f"| {kernel} | {n} x {d} | {r_rows / 1e6:,.0f} | {r_expressions / 1e6:,.0f} | {r_peer / 1e6:,.0f} "
                  f"| {r_rows / r_peer:.2f} |")


if __name__ == "__main__":
    main()
