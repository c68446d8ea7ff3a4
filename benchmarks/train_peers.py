#!/usr/bin/env python3
"""Runs einlm's CPU training benchmark and the same models in PyTorch eager, in one job.

Usage: benchmarks/train_peers.py BUILD_DIR [--threads N]

einlm: BUILD_DIR/benchmarks/bench_train (Google Benchmark): one training step of
nn::transformer_lm<float> (zero_grad, forward + backward, AdamW) and the forward pass alone.
PyTorch: the same architecture (CS336's TransformerLM: pre-norm RMSNorm, RoPE on interleaved
pairs, causal attention through torch.nn.functional.scaled_dot_product_attention, SwiGLU, untied
LM head), float32, the same batch and sequence, cross-entropy through F.cross_entropy, and
torch.optim.AdamW (foreach) — PyTorch's fast paths, eager mode, torch.set_num_threads(N). Both
sides are timed the same way, taking turns (peer_timing.py): the fastest of 5 rounds, each the mean
over at least 0.5 s of calls. The bf16 mixed-precision step
(einlm: a bf16 working copy of float master weights, train::fit's precision bf16_mixed) is set
beside PyTorch's torch.autocast("cpu", dtype=torch.bfloat16) step over float parameters. Prints
one table: tokens/s of each and einlm / PyTorch (goal >= 1.0). Case 2 is GPT-2's architecture
(einlm: nn::blocks::gpt2_lm, what einlm-lm runs for a GPT-2 config.json; PyTorch: the class GPT2
below, with F.layer_norm, F.linear with biases and F.gelu).
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import einlm_benchmark, fastest_interleaved, mean_seconds  # noqa: E402

CASES = {
    0: dict(label="demo model", vocab=2048, d=128, layers=4, heads=4, d_ff=384, batch=16, seq=128),
    1: dict(label="d256 L4 H8 S256 B8", vocab=8192, d=256, layers=4, heads=8, d_ff=768, batch=8, seq=256),
    2: dict(label="GPT-2, demo-sized", vocab=2048, d=128, layers=4, heads=4, d_ff=512, batch=16, seq=128,
            gpt2=True),
}


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Model(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f, v = c["d"], c["d_ff"], c["vocab"]
        self.c = c
        p = lambda *shape: torch.nn.Parameter(torch.randn(*shape) * 0.02)
        self.emb = p(v, d)
        self.layers = torch.nn.ModuleList()
        for _ in range(c["layers"]):
            layer = torch.nn.Module()
            layer.ln1, layer.ln2 = torch.nn.Parameter(torch.ones(d)), torch.nn.Parameter(torch.ones(d))
            layer.q, layer.k, layer.v, layer.o = p(d, d), p(d, d), p(d, d), p(d, d)
            layer.w1, layer.w2, layer.w3 = p(f, d), p(d, f), p(f, d)
            self.layers.append(layer)
        self.ln_final = torch.nn.Parameter(torch.ones(d))
        self.head = p(v, d)
        dh = d // c["heads"]
        angle = torch.arange(c["seq"], dtype=torch.float64)[:, None] * (
            10000.0 ** (-2.0 * torch.arange(dh // 2, dtype=torch.float64) / dh))[None, :]
        self.register_buffer("cos", torch.cos(angle).float())
        self.register_buffer("sin", torch.sin(angle).float())

    def forward(self, ids):
        b, s = ids.shape
        h = self.c["heads"]
        x = self.emb[ids]
        for l in self.layers:
            a = rms_norm(x, l.ln1)
            q = (a @ l.q.T).view(b, s, h, -1).transpose(1, 2)
            k = (a @ l.k.T).view(b, s, h, -1).transpose(1, 2)
            v = (a @ l.v.T).view(b, s, h, -1).transpose(1, 2)
            q, k = rope(q, self.cos[:s], self.sin[:s]), rope(k, self.cos[:s], self.sin[:s])
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + o.transpose(1, 2).reshape(b, s, -1) @ l.o.T
            m = rms_norm(x, l.ln2)
            x = x + (F.silu(m @ l.w1.T) * (m @ l.w3.T)) @ l.w2.T
        return rms_norm(x, self.ln_final) @ self.head.T


class GPT2(torch.nn.Module):
    """GPT-2's architecture (nn::blocks::gpt2_lm): learned positions, pre-norm LayerNorm blocks,
    attention and a GELU (erf) MLP with biases, a final LayerNorm, the LM head tied to the token
    embedding."""

    def __init__(self, c):
        super().__init__()
        d, f, v = c["d"], c["d_ff"], c["vocab"]
        self.c = c
        p = lambda *shape: torch.nn.Parameter(torch.randn(*shape) * 0.02)
        z = lambda n: torch.nn.Parameter(torch.zeros(n))
        o = lambda n: torch.nn.Parameter(torch.ones(n))
        self.wte, self.wpe = p(v, d), p(c["seq"], d)
        self.layers = torch.nn.ModuleList()
        for _ in range(c["layers"]):
            layer = torch.nn.Module()
            layer.ln1_w, layer.ln1_b, layer.ln2_w, layer.ln2_b = o(d), z(d), o(d), z(d)
            layer.q, layer.k, layer.v, layer.o = p(d, d), p(d, d), p(d, d), p(d, d)
            layer.qb, layer.kb, layer.vb, layer.ob = z(d), z(d), z(d), z(d)
            layer.fc1, layer.fc1_b, layer.fc2, layer.fc2_b = p(f, d), z(f), p(d, f), z(d)
            self.layers.append(layer)
        self.lnf_w, self.lnf_b = o(d), z(d)

    def forward(self, ids):
        b, s = ids.shape
        h, d = self.c["heads"], self.c["d"]
        x = self.wte[ids] + self.wpe[:s]
        for l in self.layers:
            a = F.layer_norm(x, (d,), l.ln1_w, l.ln1_b, 1e-5)
            q = F.linear(a, l.q, l.qb).view(b, s, h, -1).transpose(1, 2)
            k = F.linear(a, l.k, l.kb).view(b, s, h, -1).transpose(1, 2)
            v = F.linear(a, l.v, l.vb).view(b, s, h, -1).transpose(1, 2)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + F.linear(o.transpose(1, 2).reshape(b, s, -1), l.o, l.ob)
            m = F.layer_norm(x, (d,), l.ln2_w, l.ln2_b, 1e-5)
            x = x + F.linear(F.gelu(F.linear(m, l.fc1, l.fc1_b)), l.fc2, l.fc2_b)
        return F.layer_norm(x, (d,), self.lnf_w, self.lnf_b, 1e-5) @ self.wte.T


def torch_steps(c):
    """The PyTorch side of each benchmark of case c, by bench_train's benchmark name."""
    torch.manual_seed(0)
    model = GPT2(c) if c.get("gpt2") else Model(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, foreach=True)
    ids = torch.randint(0, c["vocab"], (c["batch"], c["seq"]))
    targets = torch.randint(0, c["vocab"], (c["batch"], c["seq"]))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(ids).view(-1, c["vocab"]), targets.view(-1))
        loss.backward()
        opt.step()

    def step_bf16():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(ids)
        loss = F.cross_entropy(logits.float().view(-1, c["vocab"]), targets.view(-1))
        loss.backward()
        opt.step()

    def forward():
        with torch.no_grad():
            model(ids)

    return {"bm_train_step": step, "bm_forward": forward, "bm_train_step_bf16": step_bf16}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU training, float32 (bf16 step: mixed precision), {args.threads} threads (torch {torch.__version__})")
    print(f"{'case':<22} {'what':<11} {'einlm tok/s':>12} {'GFLOP/s':>8} {'torch tok/s':>12} {'einlm/torch':>12}")
    for case, c in CASES.items():
        steps = torch_steps(c)
        tokens = c["batch"] * c["seq"]
        for kind, what in (("bm_train_step", "train step"), ("bm_forward", "forward"), ("bm_train_step_bf16", "bf16 step")):
            ours = einlm_benchmark(args.build, "bench_train", args.threads, f"{kind}/{case}/real_time")
            mine, theirs = fastest_interleaved([ours, lambda: mean_seconds(steps[kind])])
            gflops = ours.per_iteration("flops") / mine / 1e9
            print(f"{c['label']:<22} {what:<11} {tokens / mine:>12.0f} {gflops:>8.1f} {tokens / theirs:>12.0f} "
                  f"{theirs / mine:>12.2f}")


if __name__ == "__main__":
    main()
