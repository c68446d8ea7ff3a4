#!/usr/bin/env python3
"""Runs einlm's sampling benchmark and PyTorch's samplers on the same cases, in one job.

Usage: benchmarks/sampling_peers.py BUILD_DIR

einlm: BUILD_DIR/benchmarks/bench_sampling (Google Benchmark): nn::sample_token at GPT-2's
vocabulary (V = 50,257), one draw per iteration, 1 thread. PyTorch (torch.set_num_threads(1)):
the usual code of a generation loop on a float32 logits row — torch.softmax + torch.multinomial
for the full distribution; torch.topk, then softmax + multinomial for top_k; for top_p the Hugging
Face warper (TopPLogitsWarper): sort the row, softmax, cumsum, mask the tail, softmax again,
multinomial; torch.argmax for greedy. Logits are drawn from the same two distributions as the C++
cases (N(0, 3²) "peaked" and N(0, 0.3²) "flat"). Both sides are timed the same way, taking turns
(peer_timing.py): the fastest of 5 rounds, each the mean over at least 0.5 s of draws. Prints µs
per token of each and PyTorch / einlm (goal >= 1.0).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import einlm_benchmark, fastest_interleaved, mean_seconds  # noqa: E402

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


def torch_draw(logits, option):
    """One draw of PyTorch's sampler for `option`, as a function to time."""
    _, temperature, top_k, top_p = option
    g = torch.Generator().manual_seed(0)
    return lambda: draw(logits, temperature, top_k, top_p, g)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'case':<26}{'einlm µs':>10}{'PyTorch µs':>12}{'PyTorch/einlm':>15}")
    for spread, (name, sigma) in enumerate([("peaked", 3.0), ("flat", 0.3)]):
        logits = torch.randn(V, generator=torch.Generator().manual_seed(spread)) * sigma
        for which, option in enumerate(OPTIONS):
            ours = einlm_benchmark(args.build, "bench_sampling", 1, f"bm_sample_token/{spread}/{which}")
            peer = torch_draw(logits, option)
            mine, theirs = (t * 1e6 for t in fastest_interleaved([ours, lambda: mean_seconds(peer)]))
            print(f"{name + ', ' + option[0]:<26}{mine:>10.1f}{theirs:>12.1f}{theirs / mine:>15.2f}")


if __name__ == "__main__":
    main()
