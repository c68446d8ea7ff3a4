#!/usr/bin/env python3
"""Runs einlm's AdamW benchmark and PyTorch's AdamW on the same sizes, in one job.

Usage: benchmarks/adamw_peers.py BUILD_DIR [--threads N]

einlm: BUILD_DIR/benchmarks/bench_train --benchmark_filter=bm_adamw (Google Benchmark): one AdamW
update of n float32 parameters through the one-pass kernel optim::adamw runs and through the three
executor expressions it replaced, for n = 49,152 (one FFN matrix of the demo model) and 2,359,296
(one of GPT-2 small's). PyTorch (torch.set_num_threads(N)): torch.optim.AdamW's step on one
parameter of n elements with a fixed gradient (betas 0.9/0.95, eps 1e-8, weight decay 0.1), in
its three CPU implementations: the for-loop, foreach and fused. Each PyTorch case takes the best of
7 runs of 50 steps after 5 warm-ups. Prints M parameters per second of each and einlm / PyTorch's
fastest (goal >= 1.0).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from norm_peers import bench_train_rates, best_rate  # noqa: E402

SIZES = [49_152, 2_359_296]


def torch_rate(n, variant):
    g = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(0.02 * torch.randn(n, generator=g))
    p.grad = 1e-3 * torch.randn(n, generator=g)
    options = {"foreach": False} if variant == "for-loop" else {variant: True}
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, **options)
    return best_rate(opt.step, n)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours = bench_train_rates(args.build, args.threads, "bm_adamw", "params/s")
    print(f"M parameters/s, float32, {args.threads} thread(s), PyTorch {torch.__version__}")
    print("| parameters | einlm kernel | einlm expressions | PyTorch for-loop | foreach | fused | einlm / PyTorch's fastest |")
    print("|---|---|---|---|---|---|---|")
    for s, n in enumerate(SIZES):
        theirs = {v: torch_rate(n, v) for v in ("for-loop", "foreach", "fused")}
        kernel, expressions = ours[(1, s)], ours[(0, s)]
        print(f"| {n:,} | {kernel / 1e6:,.0f} | {expressions / 1e6:,.0f} | "
              + " | ".join(f"{theirs[v] / 1e6:,.0f}" for v in ("for-loop", "foreach", "fused"))
              + f" | {kernel / max(theirs.values()):.2f} |")


if __name__ == "__main__":
    main()
