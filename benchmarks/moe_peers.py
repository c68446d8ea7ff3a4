#!/usr/bin/env python3
"""Runs einlm's CPU mixture-of-experts benchmark and the same layer in PyTorch eager, in one job.

Usage: benchmarks/moe_peers.py BUILD_DIR [--threads N]

einlm: BUILD_DIR/benchmarks/bench_moe (Google Benchmark): nn::moe_layer<float> forward_train +
backward (every gradient, auxiliary losses included) and the forward pass alone.
PyTorch: the same layer written the straightforward way (float32, eager): router logits x @ Wᵀ,
softmax, torch.topk, gates renormalised over the top-k, a loop over experts that gathers its tokens
with index_select, runs the SwiGLU expert and scatter-adds the gate-weighted output with
index_add_; the Switch balance loss and the router z-loss are added with einlm's default weights
(0.01, 1e-3), and backward is autograd of sum(y * dy) + aux, dy random. Same shapes as einlm's:
the smoke case (D 64, E 4, top-2, F 128, N 256) and the issue case (D 256, E 8, top-2, F 512,
N 2048). torch.set_num_threads(N). Both sides are timed the same way, taking turns (peer_timing.py): the
fastest of 5 rounds, each the mean over at least 0.5 s of calls.
Prints one table: tokens/s of each and einlm / PyTorch.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import einlm_benchmark, fastest_interleaved, mean_seconds  # noqa: E402

CASES = {
    0: dict(label="D64 E4 top2 F128 N256", d=64, e=4, k=2, f=128, n=256),
    1: dict(label="D256 E8 top2 F512 N2048", d=256, e=8, k=2, f=512, n=2048),
}


class MoE(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, e, f = c["d"], c["e"], c["f"]
        self.c = c
        self.router = torch.nn.Parameter(torch.randn(e, d) / d ** 0.5)
        p = lambda *shape: torch.nn.Parameter(torch.randn(*shape) * 0.02)
        self.w1 = torch.nn.ParameterList([p(f, d) for _ in range(e)])
        self.w2 = torch.nn.ParameterList([p(d, f) for _ in range(e)])
        self.w3 = torch.nn.ParameterList([p(f, d) for _ in range(e)])

    def forward(self, x):
        n, k, e = x.shape[0], self.c["k"], self.c["e"]
        logits = x @ self.router.T
        probs = torch.softmax(logits, dim=-1)
        top_p, top_i = torch.topk(probs, k, dim=-1)
        gates = top_p / top_p.sum(-1, keepdim=True)
        y = torch.zeros_like(x)
        flat_i, flat_g = top_i.reshape(-1), gates.reshape(-1)
        tokens = torch.arange(n).repeat_interleave(k)
        for j in range(e):
            slots = (flat_i == j).nonzero(as_tuple=True)[0]
            if slots.numel() == 0:
                continue
            rows = tokens.index_select(0, slots)
            xe = x.index_select(0, rows)
            out = (F.silu(xe @ self.w1[j].T) * (xe @ self.w3[j].T)) @ self.w2[j].T
            y = y.index_add(0, rows, out * flat_g.index_select(0, slots)[:, None])
        f = torch.bincount(flat_i, minlength=e).to(x.dtype) / (n * k)
        balance = e * (f * probs.mean(0)).sum()
        z = (torch.logsumexp(logits, dim=-1) ** 2).mean()
        return y, 0.01 * balance + 1e-3 * z


def torch_steps(c):
    """The PyTorch side of each benchmark of case c, by bench_moe's benchmark name."""
    torch.manual_seed(0)
    layer = MoE(c)
    x = torch.randn(c["n"], c["d"], requires_grad=True)
    dy = torch.randn(c["n"], c["d"])

    def train():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        y, aux = layer(x)
        ((y * dy).sum() + aux).backward()

    def forward():
        with torch.no_grad():
            layer(x)

    return {"bm_moe_train": train, "bm_moe_forward": forward}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU MoE layer, float32, {args.threads} threads (torch {torch.__version__})")
    print(f"{'case':<24} {'what':<16} {'einlm tok/s':>12} {'GFLOP/s':>8} {'torch tok/s':>12} {'einlm/torch':>12}")
    for case, c in CASES.items():
        steps = torch_steps(c)
        for kind, what in (("bm_moe_train", "fwd + backward"), ("bm_moe_forward", "forward")):
            ours = einlm_benchmark(args.build, "bench_moe", args.threads, f"{kind}/{case}/real_time")
            mine, theirs = fastest_interleaved([ours, lambda: mean_seconds(steps[kind])])
            gflops = ours.per_iteration("flops") / mine / 1e9
            print(f"{c['label']:<24} {what:<16} {c['n'] / mine:>12.0f} {gflops:>8.1f} {c['n'] / theirs:>12.0f} "
                  f"{theirs / mine:>12.2f}")


if __name__ == "__main__":
    main()
