#!/usr/bin/env python3
"""Writes tests/data/nn/moe_<name>.safetensors: a PyTorch reference of einlm's mixture-of-experts
FFN layer (einlm/nn/moe.hpp) — output, auxiliary losses and every gradient, all in float64 — for
three small configurations.

Usage: python3 -m pip install torch numpy safetensors
       python3 tools/make_moe_goldens.py

The layer (x is (N, D): N tokens, N / seq_len sequences of seq_len consecutive rows; every weight
is stored (out, in) and applied as x @ W.T):
  * expert(x) = w2(silu(w1 x) * w3 x), w1, w3 (F, D), w2 (D, F);
  * logits = x @ router.weight.T, (N, E);
  * softmax router: p = softmax(logits); the top_k experts by p; gates = the selected p divided by
    their sum when top_k > 1, the selected p itself when top_k = 1; balance probabilities q = p;
  * sigmoid router: s = sigmoid(logits); the top_k experts by s + router.bias (the bias is not
    differentiated and only selects); gates = s_selected / sum(s_selected); q = s / sum_e(s);
  * capacity: with capacity_factor c > 0 each expert keeps at most ceil(c * N * top_k / E)
    token-slots, in slot order (token n's j-th choice, by descending score, is slot n * top_k + j);
    the others are dropped and contribute 0; gates are computed before dropping;
  * y = sum over kept slots of gate * expert_e(x) + sum over shared experts of expert_s(x),
    computed here densely: y = sum_e combine[:, e] * expert_e(x) with combine (N, E) the gate of a
    kept slot and 0 elsewhere (every expert runs on every token);
  * balance loss L_bal = E * sum_e f_e * P_e, f_e = (slots routed to e before capacity) / (N * top_k),
    a constant, P_e = mean over tokens of q_e;
  * router z-loss L_z = mean over tokens of logsumexp(logits)^2;
  * sequence-wise balance loss L_seq = mean over sequences of E * sum_e f_e * P_e with f and P over
    that sequence's tokens;
  * objective = sum(y * dy) + aux_loss_coef * L_bal + z_loss_coef * L_z + seq_aux_loss_coef * L_seq,
    dy a random upstream gradient; autograd gives the gradients of x and every trained parameter
    (router.bias has none).

Each file holds (every floating tensor float64, little-endian, row-major):
  router.weight (E, D), router.bias (E,) (sigmoid only), experts.{e}.w{1,2,3}.weight,
  shared_experts.{s}.w{1,2,3}.weight       the parameters
  x (N, D), dy (N, D), y (N, D)
  loss.balance, loss.z, loss.seq, loss.aux  0-d: the three raw losses and the coefficient-weighted sum
  tokens_per_expert int64 (E,)             slots each expert processed (after capacity)
  dropped_slots int64 0-d
  grad.x, grad.<parameter>                 gradients of the objective (not for router.bias)
and string metadata: d_model, num_experts, top_k, num_shared_experts, expert_d_ff, router,
capacity_factor, aux_loss_coef, z_loss_coef, seq_aux_loss_coef, tokens, seq_len, seed (floats as
repr(), round-trip).

Initialisation: torch.Generator seeded per configuration; x normal(0, 1), router.weight normal(0,
0.5^2), expert weights normal(0, 0.3^2), router.bias normal(0, 0.1^2), dy normal(0, 1), drawn in
that order (parameters in visiting order).

Checks this script runs before writing (it stops on a failure):
  1. No near-ties: for every token, the gap between the top_k-th and the next selection score is
     above 1e-3 (so routing is fixed under the finite-difference steps below and under float
     rounding in the C++ tests).
  2. The capacity configuration drops at least one slot; the others drop none.
  3. Autograd against central finite differences of the objective (step 1e-5) at 3 random entries
     of x and of every trained parameter: max |fd - ag| / max(|fd|, |ag|, 1e-3) below 1e-6.
"""
import json
import math
import pathlib
import struct
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "data" / "nn"
DTYPE = torch.float64


@dataclass(frozen=True)
class Config:
    name: str
    d_model: int
    num_experts: int
    top_k: int
    num_shared_experts: int
    expert_d_ff: int
    router: str
    capacity_factor: float
    aux_loss_coef: float
    z_loss_coef: float
    seq_aux_loss_coef: float
    tokens: int
    seq_len: int
    seed: int


CONFIGS = [
    Config("softmax_top2", d_model=8, num_experts=6, top_k=2, num_shared_experts=1, expert_d_ff=12,
           router="softmax", capacity_factor=0.0, aux_loss_coef=0.1, z_loss_coef=0.01, seq_aux_loss_coef=0.0,
           tokens=24, seq_len=8, seed=2001),
    Config("switch_top1_capacity", d_model=8, num_experts=4, top_k=1, num_shared_experts=0, expert_d_ff=12,
           router="softmax", capacity_factor=1.0, aux_loss_coef=0.1, z_loss_coef=0.01, seq_aux_loss_coef=0.0,
           tokens=24, seq_len=12, seed=2002),
    Config("sigmoid_top2", d_model=8, num_experts=6, top_k=2, num_shared_experts=1, expert_d_ff=12,
           router="sigmoid", capacity_factor=0.0, aux_loss_coef=0.05, z_loss_coef=0.01, seq_aux_loss_coef=0.1,
           tokens=24, seq_len=8, seed=2003),
]


def expert(x, w1, w2, w3):
    return (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T


def parameter_names(cfg):
    names = ["router.weight"] + (["router.bias"] if cfg.router == "sigmoid" else [])
    for group, count in (("experts", cfg.num_experts), ("shared_experts", cfg.num_shared_experts)):
        for i in range(count):
            names += [f"{group}.{i}.w1.weight", f"{group}.{i}.w2.weight", f"{group}.{i}.w3.weight"]
    return names


def parameter_shape(cfg, name):
    D, E, Fd = cfg.d_model, cfg.num_experts, cfg.expert_d_ff
    if name == "router.weight":
        return (E, D)
    if name == "router.bias":
        return (E,)
    return (D, Fd) if name.endswith("w2.weight") else (Fd, D)


def make_inputs(cfg):
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.tokens, cfg.d_model, generator=g, dtype=DTYPE)
    params = {}
    for name in parameter_names(cfg):
        std = 0.5 if name == "router.weight" else 0.1 if name == "router.bias" else 0.3
        params[name] = torch.randn(parameter_shape(cfg, name), generator=g, dtype=DTYPE) * std
    dy = torch.randn(cfg.tokens, cfg.d_model, generator=g, dtype=DTYPE)
    return x, params, dy


def routing(cfg, x, p):
    """Logits, affinities a, balance probabilities q, selection scores, chosen experts (N, k)."""
    logits = x @ p["router.weight"].T
    if cfg.router == "softmax":
        a = torch.softmax(logits, dim=-1)
        q = a
        score = a.detach()
    else:
        a = torch.sigmoid(logits)
        q = a / a.sum(-1, keepdim=True)
        score = a.detach() + p["router.bias"]
    top = torch.topk(score, cfg.top_k + 1 if cfg.top_k < cfg.num_experts else cfg.top_k, dim=-1)
    chosen = top.indices[:, :cfg.top_k]
    return logits, a, q, score, chosen, top.values


def balance(cfg, q, chosen):
    E, K = cfg.num_experts, cfg.top_k
    counts = torch.zeros(E, dtype=DTYPE)
    counts.index_add_(0, chosen.reshape(-1), torch.ones(chosen.numel(), dtype=DTYPE))
    f = counts / (q.shape[0] * K)
    return E * (f * q.mean(0)).sum()


def moe(cfg, x, p):
    """y and the losses; also the tokens per expert and the dropped slots."""
    N, E, K = x.shape[0], cfg.num_experts, cfg.top_k
    logits, a, q, score, chosen, _ = routing(cfg, x, p)
    selected = a.gather(1, chosen)
    gates = selected / selected.sum(-1, keepdim=True) if (cfg.router == "sigmoid" or K > 1) else selected
    keep = torch.ones(N, K, dtype=torch.bool)
    kept_count = [0] * E
    dropped = 0
    if cfg.capacity_factor > 0:
        capacity = math.ceil(cfg.capacity_factor * N * K / E)
        for n in range(N):
            for j in range(K):
                e = int(chosen[n, j])
                if kept_count[e] < capacity:
                    kept_count[e] += 1
                else:
                    keep[n, j] = False
                    dropped += 1
    else:
        for e in chosen.reshape(-1).tolist():
            kept_count[e] += 1
    combine = torch.zeros(N, E, dtype=DTYPE)
    combine = combine.scatter_add(1, chosen, gates * keep.to(DTYPE))
    y = torch.zeros_like(x)
    for e in range(E):
        w = [p[f"experts.{e}.w{i}.weight"] for i in (1, 2, 3)]
        y = y + combine[:, e:e + 1] * expert(x, *w)
    for s in range(cfg.num_shared_experts):
        y = y + expert(x, *[p[f"shared_experts.{s}.w{i}.weight"] for i in (1, 2, 3)])
    l_bal = balance(cfg, q, chosen)
    l_z = (torch.logsumexp(logits, dim=-1) ** 2).mean()
    S = cfg.seq_len
    l_seq = torch.stack([balance(cfg, q[b * S:(b + 1) * S], chosen[b * S:(b + 1) * S]) for b in range(N // S)]).mean()
    aux = cfg.aux_loss_coef * l_bal + cfg.z_loss_coef * l_z + cfg.seq_aux_loss_coef * l_seq
    return y, (l_bal, l_z, l_seq, aux), torch.tensor(kept_count), dropped


def objective(cfg, x, p, dy):
    y, losses, _, _ = moe(cfg, x, p)
    return (y * dy).sum() + losses[3]


def trained(cfg):
    return [n for n in parameter_names(cfg) if n != "router.bias"]


def check(what, error, bound):
    print(f"  {what}: {error:.3g} (bound {bound:g})")
    if not error <= bound:
        sys.exit(f"check failed: {what}")


def check_routing(cfg, x, p):
    _, _, _, score, _, top = routing(cfg, x, p)
    if cfg.top_k < cfg.num_experts:
        gap = (top[:, cfg.top_k - 1] - top[:, cfg.top_k]).min().item()
        print(f"  '{cfg.name}': smallest gap between the top_k-th and the next score {gap:.3g} (must exceed 1e-3)")
        if not gap > 1e-3:
            sys.exit(f"check failed: '{cfg.name}' has a near-tie in its routing")
    _, _, _, dropped = moe(cfg, x, p)
    print(f"  '{cfg.name}': {dropped} dropped slots")
    if (cfg.capacity_factor > 0) != (dropped > 0):
        sys.exit(f"check failed: '{cfg.name}' drops {dropped} slots")


def check_gradient(cfg, x, p, dy, step=1e-5):
    print(f"gradient of '{cfg.name}' vs central differences (step {step:g}):")
    leaves = {"x": x.clone().requires_grad_(True)}
    leaves.update({n: p[n].clone().requires_grad_(n != "router.bias") for n in p})
    objective(cfg, leaves["x"], leaves, dy).backward()
    picks = torch.Generator().manual_seed(7)
    worst = 0.0
    with torch.no_grad():
        for name in ["x"] + trained(cfg):
            w = leaves[name]
            for _ in range(3):
                i = int(torch.randint(0, w.numel(), (1,), generator=picks))
                flat = w.view(-1)
                saved = flat[i].item()
                flat[i] = saved + step
                up = objective(cfg, leaves["x"], leaves, dy).item()
                flat[i] = saved - step
                down = objective(cfg, leaves["x"], leaves, dy).item()
                flat[i] = saved
                fd = (up - down) / (2 * step)
                ag = w.grad.view(-1)[i].item()
                worst = max(worst, abs(fd - ag) / max(abs(fd), abs(ag), 1e-3))
    check("max relative error", worst, 1e-6)


def sort_header(path):
    """Rewrites the JSON header with sorted keys, so that a rerun writes the same bytes."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def write_golden(cfg, x, p, dy):
    leaves = {"x": x.clone().requires_grad_(True)}
    leaves.update({n: p[n].clone().requires_grad_(n != "router.bias") for n in p})
    y, losses, tokens_per_expert, dropped = moe(cfg, leaves["x"], leaves)
    ((y * dy).sum() + losses[3]).backward()
    tensors = {n: w.clone() for n, w in p.items()}
    tensors.update({"x": x, "dy": dy, "y": y.detach().contiguous(),
                    "loss.balance": losses[0].detach().reshape(()), "loss.z": losses[1].detach().reshape(()),
                    "loss.seq": losses[2].detach().reshape(()), "loss.aux": losses[3].detach().reshape(()),
                    "tokens_per_expert": tokens_per_expert.to(torch.int64),
                    "dropped_slots": torch.tensor(dropped, dtype=torch.int64)})
    for name in ["x"] + trained(cfg):
        tensors[f"grad.{name}"] = leaves[name].grad.detach().clone()
    meta = {k: repr(v) if isinstance(v, float) else str(v) for k, v in cfg.__dict__.items() if k != "name"}
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"moe_{cfg.name}.safetensors"
    save_file(tensors, str(path), metadata=meta)
    sort_header(path)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes): aux loss {losses[3].item():.17g}")


def main():
    torch.use_deterministic_algorithms(True)
    inputs = {}
    for cfg in CONFIGS:
        x, p, dy = make_inputs(cfg)
        check_routing(cfg, x, p)
        check_gradient(cfg, x, p, dy)
        inputs[cfg.name] = (x, p, dy)
    for cfg in CONFIGS:
        write_golden(cfg, *inputs[cfg.name])


if __name__ == "__main__":
    main()
