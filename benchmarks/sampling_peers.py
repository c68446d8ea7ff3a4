#!/usr/bin/env python3
"""Runs einlm's sampling benchmark and PyTorch's samplers on the same cases, in one job.

Usage: benchmarks/sampling_peers.py BUILD_DIR

einlm: BUILD_DIR/benchmarks/bench_sampling (Google Benchmark): nn::sample_token at GPT-2's
vocabulary (V = 50,257), one draw per iteration, 1 thread. PyTorch (torch.set_num_threads(1)):
the usual code of a generation loop on a float32 logits row — torch.softmax + torch.multinomial
for the full distribution; torch.topk, then softmax + multinomial for top_k; for top_p the Hugging
Face warper (TopPLogitsWarper): sort the row, softmax, cumsum, mask the tail, softmax again,
multinomial; torch.argmax for greedy. Logits are drawn from the same two distributions as the C++
cases (N(0, 3²) "peaked" and N(0, 0.3²) "flat"). Each PyTorch case takes the best of 5 runs of 200
draws. Prints µs per token of each and PyTorch / einlm (goal >= 1.0).
"""
import argparse
import json
import os
import subprocess
import time

import torch

V = 50257
OPTIONS = [  # (label, temperature, top_k, top_p), in bench_sampling's order
    ("full", 1.0, 0, 1.0),
    ("top_k 50", 0.8, 50, 1.0),
    ("top_p 0.95", 1.0, 0, 0.95),
    ("top_k+top_p", 0.8, 50, 0.95),
    ("greedy", 0.0, 0, 1.0),
]


def top_p_filter(logits, top_p):
    """Hugging Face's TopPLogitsWarper on one row (sorted ascending, mask cumsum <= 1 - top_p)."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - top_p)
    remove[-1:] = False
    return logits.masked_fill(remove.scatter(0, sorted_indices, remove), float("-inf"))


def draw(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return int(torch.argmax(logits))
    logits = logits / temperature
    indices = None
    if top_k:
        logits, indices = torch.topk(logits, top_k)
    if top_p < 1:
        logits = top_p_filter(logits, top_p)
    token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
    return int(indices[token] if indices is not None else token)


def torch_us_per_token(logits, option):
    _, temperature, top_k, top_p = option
    g = torch.Generator().manual_seed(0)
    draws = 200
    best = float("inf")
    for run in range(7):
        t = time.perf_counter()
        for _ in range(draws):
            draw(logits, temperature, top_k, top_p, g)
        if run >= 2:
            best = min(best, time.perf_counter() - t)
    return best / draws * 1e6


def einlm_us_per_token(build):
    out = subprocess.run([os.path.join(build, "benchmarks", "bench_sampling"), "--benchmark_format=json",
                          "--benchmark_filter=bm_sample_token", "--benchmark_min_time=1"],
                         env=dict(os.environ, OMP_NUM_THREADS="1"), check=True, capture_output=True,
                         text=True).stdout
    times = {}
    for b in json.loads(out)["benchmarks"]:
        _, spread, which = b["name"].split("/")[:3]
        times[(int(spread), int(which))] = b["real_time"]  # µs (the benchmark's unit)
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ours = einlm_us_per_token(args.build)
    print(f"{'case':<26}{'einlm µs':>10}{'PyTorch µs':>12}{'PyTorch/einlm':>15}")
    for spread, (name, sigma) in enumerate([("peaked", 3.0), ("flat", 0.3)]):
        logits = torch.randn(V, generator=torch.Generator().manual_seed(spread)) * sigma
        for which, option in enumerate(OPTIONS):
            theirs = torch_us_per_token(logits, option)
            mine = ours[(spread, which)]
            print(f"{name + ', ' + option[0]:<26}{mine:>10.1f}{theirs:>12.1f}{theirs / mine:>15.2f}")


if __name__ == "__main__":
    main()
