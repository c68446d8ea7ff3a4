#!/usr/bin/env python3
"""Runs einlm's optimizer benchmarks and PyTorch's optimizers on the same sizes, in one job.

Usage: benchmarks/optimizer_peers.py BUILD_DIR [--threads N]

einlm: BUILD_DIR/benchmarks/bench_train --benchmark_filter='bm_adamw|bm_sgd_adagrad' (Google
Benchmark): one update of n float32 parameters through the one-pass kernel the optimizer runs and
through the executor expressions it replaced, for n = 49,152 (one FFN matrix of the demo model)
and 2,359,296 (one of GPT-2 small's):
  AdamW     betas 0.9/0.95, eps 1e-8, weight decay 0.1
  SGD       momentum 0.9, weight decay 1e-4 (past its first step: the buffer is read)
  AdaGrad   weight decay 1e-4, eps 1e-10
PyTorch (torch.set_num_threads(N)): torch.optim.AdamW / SGD / Adagrad with the same options, one
step on one parameter of n elements with a fixed gradient, in each CPU implementation this
PyTorch has (for-loop, foreach, fused). Both sides are timed the same way, taking turns
(peer_timing.py): the fastest of 5 rounds, each the mean over at least 0.5 s of steps. Prints M
parameters per second of each and einlm / PyTorch's fastest (goal >= 1.0).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import einlm_benchmark, fastest_interleaved, mean_seconds  # noqa: E402

SIZES = [49_152, 2_359_296]
VARIANTS = ("for-loop", "foreach", "fused")
# name: (torch optimizer, its options, einlm's benchmark, the benchmark's leading arguments)
OPTIMIZERS = {
    "AdamW": (torch.optim.AdamW, {"lr": 1e-3, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}, "bm_adamw", ()),
    "SGD momentum": (torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4}, "bm_sgd_adagrad", (0,)),
    "AdaGrad": (torch.optim.Adagrad, {"lr": 1e-3, "weight_decay": 1e-4, "eps": 1e-10}, "bm_sgd_adagrad", (1,)),
}


def torch_step(optimizer, options, n, variant):
    """One step of PyTorch's optimizer as a function to time, or None when this PyTorch lacks the
    variant on the CPU."""
    g = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(0.02 * torch.randn(n, generator=g))
    p.grad = 1e-3 * torch.randn(n, generator=g)
    extra = {"foreach": False} if variant == "for-loop" else {variant: True}
    try:
        opt = optimizer([p], **options, **extra)
        opt.step()
    except (RuntimeError, TypeError, ValueError):
        return None
    return opt.step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"M parameters/s, float32, {args.threads} thread(s), PyTorch {torch.__version__}")
    print("| optimizer | parameters | einlm kernel | einlm expressions | PyTorch for-loop | foreach | fused "
          "| einlm / PyTorch's fastest |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (optimizer, options, benchmark, leading) in OPTIMIZERS.items():
        for s, n in enumerate(SIZES):
            # BENCHMARK/LEADING…/PATH/SIZE: path 1 the one-pass kernel, 0 the expressions.
            ours = [einlm_benchmark(args.build, "bench_train", args.threads,
                                    "/".join(str(a) for a in (benchmark, *leading, path, s, "real_time")))
                    for path in (1, 0)]
            steps = {v: torch_step(optimizer, options, n, v) for v in VARIANTS}
            present = [v for v in VARIANTS if steps[v] is not None]
            times = fastest_interleaved(ours + [lambda v=v: mean_seconds(steps[v]) for v in present])
            kernel, expressions = n / times[0], n / times[1]
            theirs = dict(zip(present, (n / t for t in times[2:])))
            shown = " | ".join(f"{theirs[v] / 1e6:,.0f}" if v in theirs else "—" for v in VARIANTS)
            fastest = max(theirs.values())
            print(f"| {name} | {n:,} | {kernel / 1e6:,.0f} | {expressions / 1e6:,.0f} | {shown} "
                  f"| {kernel / fastest:.2f} |")


if __name__ == "__main__":
    main()
