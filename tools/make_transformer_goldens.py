#!/usr/bin/env python3
"""Writes tests/data/nn/transformer_<name>.safetensors: a PyTorch reference of the CS336 TransformerLM
(forward logits, loss and every parameter gradient, all in float64) for three small configurations.

Usage: python3 -m pip install torch numpy safetensors
       EINLM_FIXTURES_DIR=/path/to/fixtures python3 tools/make_transformer_goldens.py

The model (CS336 assignment 1, the layout of einlm/nn/config.hpp):
  * no biases; every weight is stored (out, in) and applied as x @ W.T;
  * RMSNorm(x) = x * rsqrt(mean(x^2, -1) + eps) * weight, computed in at least float32
    (float64 here), eps = norm_eps = 1e-5;
  * RoPE on q and k with interleaved pairs (x0, x1), (x2, x3), ...: pair k of position p is
    rotated by p * theta^(-2k/Dh), theta = rope_theta = 10000, positions 0..S-1;
  * causal softmax attention with scale 1/sqrt(Dh), mask true = may attend (key j <= query i);
    grouped-query attention: query head h reads kv head h // (H // Hkv);
  * optional qk_norm: an RMSNorm over the head dimension (weights (Dh,), eps = norm_eps) applied
    to q and to k per head, before RoPE;
  * pre-norm blocks: h = x + attn(ln1(x)); out = h + ffn(ln2(h)); ffn(x) = w2(silu(w1 x) * w3 x);
  * logits = lm_head(ln_final(x)); embeddings and lm_head are not tied;
  * loss = mean over the B*S positions of cross_entropy(logits, targets)
           + z_loss * mean(logsumexp(logits, -1)^2).

Each file holds (every floating tensor float64, little-endian, row-major):
  <parameter name>        every parameter, named as in the CS336 state dict (list in README.md)
  input_ids               int64 (B, S)
  targets                 int64 (B, S), the next tokens: input_ids and targets are the windows
                          [0, S) and [1, S+1) of one random sequence of S+1 tokens per row
  logits                  float64 (B, S, V)
  loss                    float64, 0-d (shape []), the scalar that backward() was called on
  grad.<parameter name>   float64, the gradient of loss with respect to that parameter
and string metadata: vocab_size, context_length, d_model, num_layers, num_heads, num_kv_heads,
d_ff, rope_theta, norm_eps, qk_norm ("true"/"false"), z_loss, plus batch_size, seq_len, seed,
init ("normal(0, 0.3); norm weights 1 + normal(0, 0.3)"), dtype ("float64") and loss (the value
as repr(float), i.e. round-trip decimal). Floats in metadata are repr() strings (round-trip).

Initialisation: a torch.Generator seeded per configuration; weight matrices normal(0, 0.3^2),
RMSNorm weights 1 + normal(0, 0.3^2) (so the gains matter and their gradients are not trivial);
tokens uniform in [0, V). Drawn in the order of the parameter list, then the tokens.

Checks this script runs before writing (it stops on a failure):
  1. Its sub-layers against CS336's snapshots (fixtures under $EINLM_FIXTURES_DIR/cs336, see
     that README; skipped with a message when the variable is not set):
       rms_norm   vs _snapshots/test_rmsnorm.npz  (derived/in_embeddings.npy, recovered gain)
       rope       vs _snapshots/test_rope.npz     (in_embeddings as (B, S, Dh=64), theta 1e4, positions 0..11)
       attention  vs _snapshots/test_scaled_dot_product_attention.npz and
                     _snapshots/test_4d_scaled_dot_product_attention.npz (derived q, k, v, mask)
     all within 2e-6 (the derived inputs reproduce the snapshots only to 1.5e-6; see
     tests/nn/test_functional.cpp). The MHA, block and LM snapshots need CS336's model.pt,
     which the fixtures do not have, so they are not checked.
  2. Its attention (causal, GQA) against torch.nn.functional.scaled_dot_product_attention,
     its RMSNorm against torch.nn.functional.rms_norm and its cross entropy against
     torch.nn.functional.cross_entropy, in float64 (within 1e-12).
  3. Its autograd gradients for configs "mha" and "gqa_qknorm" against central finite
     differences of the loss (step 1e-5, float64) at one random entry of every parameter; the
     error |fd - autograd| / max(|fd|, |autograd|, 1e-3) is printed per entry, and its maximum
     (about 1e-8 for "mha", 5e-8 for "gqa_qknorm") must be below 1e-6.
"""
import json
import math
import os
import pathlib
import struct
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "data" / "nn"
DTYPE = torch.float64
INIT_STD = 0.3


@dataclass(frozen=True)
class Config:
    name: str
    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    d_ff: int
    batch_size: int
    seq_len: int
    seed: int
    qk_norm: bool = False
    z_loss: float = 0.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self):
        return self.d_model // self.num_heads


CONFIGS = [
    Config("mha", vocab_size=37, context_length=7, d_model=16, num_layers=2, num_heads=4, num_kv_heads=4,
           d_ff=24, batch_size=2, seq_len=7, seed=1001),
    # context_length > seq_len: the model must not depend on it (RoPE positions are 0..S-1).
    Config("gqa_qknorm", vocab_size=29, context_length=12, d_model=24, num_layers=2, num_heads=6, num_kv_heads=2,
           d_ff=40, batch_size=2, seq_len=9, seed=1002, qk_norm=True, z_loss=1e-3),
    Config("mqa", vocab_size=19, context_length=5, d_model=16, num_layers=1, num_heads=4, num_kv_heads=1,
           d_ff=32, batch_size=3, seq_len=5, seed=1003),
]


# ---------------------------------------------------------------------------------------------
# The layers, as plain functions of tensors.
# ---------------------------------------------------------------------------------------------

def linear(x, weight):
    """x (..., in) @ weight (out, in).T -> (..., out)."""
    return x @ weight.T


def rms_norm(x, weight, eps):
    """RMSNorm over the last axis, computed in float32 or wider, returned in x's dtype."""
    compute = torch.promote_types(x.dtype, torch.float32)
    xc = x.to(compute)
    y = xc * torch.rsqrt(xc.pow(2).mean(dim=-1, keepdim=True) + eps) * weight.to(compute)
    return y.to(x.dtype)


def rope(x, positions, theta):
    """Rotary embedding of interleaved pairs; x (..., S, D) with D even, positions (S,) of ints."""
    d = x.shape[-1]
    k = torch.arange(d // 2, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * k / d)                                        # (D/2,)
    angle = positions.to(torch.float64)[:, None] * inv_freq[None, :]         # (S, D/2)
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]                                      # (..., S, D/2) each
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)   # (..., S, D/2, 2)
    return out.flatten(-2)                                                   # (..., S, D)


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d) with -inf where mask is false) v; q (..., Sq, d), k (..., Sk, d)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])               # (..., Sq, Sk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def attention(x, p, prefix, cfg):
    """Causal multi-head (grouped-query) self-attention with RoPE; x (B, S, D)."""
    b, s, _ = x.shape
    h, hkv, dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    q = linear(x, p[f"{prefix}.q_proj.weight"]).view(b, s, h, dh).transpose(1, 2)     # (B, H, S, Dh)
    k = linear(x, p[f"{prefix}.k_proj.weight"]).view(b, s, hkv, dh).transpose(1, 2)   # (B, Hkv, S, Dh)
    v = linear(x, p[f"{prefix}.v_proj.weight"]).view(b, s, hkv, dh).transpose(1, 2)   # (B, Hkv, S, Dh)
    if cfg.qk_norm:
        q = rms_norm(q, p[f"{prefix}.q_norm.weight"], cfg.norm_eps)
        k = rms_norm(k, p[f"{prefix}.k_norm.weight"], cfg.norm_eps)
    positions = torch.arange(s)
    q, k = rope(q, positions, cfg.rope_theta), rope(k, positions, cfg.rope_theta)
    # Query head i reads kv head i // (H / Hkv): repeat each kv head H / Hkv times in place.
    k = k.repeat_interleave(h // hkv, dim=1)                                # (B, H, S, Dh)
    v = v.repeat_interleave(h // hkv, dim=1)                                # (B, H, S, Dh)
    causal = torch.tril(torch.ones(s, s, dtype=torch.bool))                 # (S, S), [i, j] = j <= i
    o = scaled_dot_product_attention(q, k, v, causal)                       # (B, H, S, Dh)
    o = o.transpose(1, 2).reshape(b, s, h * dh)                             # (B, S, D)
    return linear(o, p[f"{prefix}.output_proj.weight"])


def swiglu(x, p, prefix):
    return linear(F.silu(linear(x, p[f"{prefix}.w1.weight"])) * linear(x, p[f"{prefix}.w3.weight"]),
                  p[f"{prefix}.w2.weight"])


def transformer_lm(p, input_ids, cfg):
    """Logits (B, S, V) of the token ids (B, S)."""
    x = p["token_embeddings.weight"][input_ids]                             # (B, S, D)
    for i in range(cfg.num_layers):
        x = x + attention(rms_norm(x, p[f"layers.{i}.ln1.weight"], cfg.norm_eps), p, f"layers.{i}.attn", cfg)
        x = x + swiglu(rms_norm(x, p[f"layers.{i}.ln2.weight"], cfg.norm_eps), p, f"layers.{i}.ffn")
    return linear(rms_norm(x, p["ln_final.weight"], cfg.norm_eps), p["lm_head.weight"])


def lm_loss(logits, targets, z_loss):
    """Mean cross entropy over all positions + z_loss * mean(logsumexp^2)."""
    lse = torch.logsumexp(logits, dim=-1)                                   # (B, S)
    target_logit = logits.gather(-1, targets[..., None])[..., 0]            # (B, S)
    return (lse - target_logit).mean() + z_loss * lse.pow(2).mean()


# ---------------------------------------------------------------------------------------------
# Parameters and goldens.
# ---------------------------------------------------------------------------------------------

def parameter_shapes(cfg):
    """(name, shape) of every parameter, in the CS336 state-dict order."""
    d, dh, f, v = cfg.d_model, cfg.head_dim, cfg.d_ff, cfg.vocab_size
    shapes = [("token_embeddings.weight", (v, d))]
    for i in range(cfg.num_layers):
        a = f"layers.{i}.attn"
        shapes += [(f"layers.{i}.ln1.weight", (d,)),
                   (f"{a}.q_proj.weight", (cfg.num_heads * dh, d)),
                   (f"{a}.k_proj.weight", (cfg.num_kv_heads * dh, d)),
                   (f"{a}.v_proj.weight", (cfg.num_kv_heads * dh, d)),
                   (f"{a}.output_proj.weight", (d, cfg.num_heads * dh))]
        if cfg.qk_norm:
            shapes += [(f"{a}.q_norm.weight", (dh,)), (f"{a}.k_norm.weight", (dh,))]
        shapes += [(f"layers.{i}.ln2.weight", (d,)),
                   (f"layers.{i}.ffn.w1.weight", (f, d)),
                   (f"layers.{i}.ffn.w2.weight", (d, f)),
                   (f"layers.{i}.ffn.w3.weight", (f, d))]
    shapes += [("ln_final.weight", (d,)), ("lm_head.weight", (v, d))]
    return shapes


def is_norm_weight(name):
    return any(name.endswith(s) for s in ("ln1.weight", "ln2.weight", "ln_final.weight", "norm.weight"))


def make_inputs(cfg):
    g = torch.Generator().manual_seed(cfg.seed)
    params = {}
    for name, shape in parameter_shapes(cfg):
        w = torch.randn(shape, generator=g, dtype=DTYPE) * INIT_STD
        if is_norm_weight(name):
            w = w + 1.0
        params[name] = w.requires_grad_(True)
    tokens = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.seq_len + 1), generator=g, dtype=torch.int64)
    return params, tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def metadata(cfg, loss):
    return {
        "vocab_size": str(cfg.vocab_size), "context_length": str(cfg.context_length),
        "d_model": str(cfg.d_model), "num_layers": str(cfg.num_layers), "num_heads": str(cfg.num_heads),
        "num_kv_heads": str(cfg.num_kv_heads), "d_ff": str(cfg.d_ff), "rope_theta": repr(cfg.rope_theta),
        "norm_eps": repr(cfg.norm_eps), "qk_norm": "true" if cfg.qk_norm else "false", "z_loss": repr(cfg.z_loss),
        "batch_size": str(cfg.batch_size), "seq_len": str(cfg.seq_len), "seed": str(cfg.seed),
        "init": "normal(0, 0.3); norm weights 1 + normal(0, 0.3)", "dtype": "float64", "loss": repr(loss),
        "note": "written by tools/make_transformer_goldens.py",
    }


def sort_header(path):
    """Rewrites the JSON header with sorted keys, so that a rerun writes the same bytes (the
    safetensors writer stores the metadata in hash order). The data section is unchanged."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)                                         # the writer's padding
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def write_golden(cfg):
    params, input_ids, targets = make_inputs(cfg)
    logits = transformer_lm(params, input_ids, cfg)
    loss = lm_loss(logits, targets, cfg.z_loss)
    loss.backward()
    tensors = {name: w.detach().clone() for name, w in params.items()}
    tensors["input_ids"] = input_ids
    tensors["targets"] = targets
    tensors["logits"] = logits.detach().contiguous()
    tensors["loss"] = loss.detach().reshape(())
    for name, w in params.items():
        tensors[f"grad.{name}"] = w.grad.detach().clone()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"transformer_{cfg.name}.safetensors"
    save_file(tensors, str(path), metadata=metadata(cfg, loss.item()))
    sort_header(path)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes): loss {loss.item():.17g}")


# ---------------------------------------------------------------------------------------------
# Checks.
# ---------------------------------------------------------------------------------------------

def check(what, error, bound):
    print(f"  {what}: max error {error:.3g} (bound {bound:g})")
    if not error <= bound:
        sys.exit(f"check failed: {what}")


def check_snapshots():
    """Sub-layers against CS336's snapshots (see the module docstring)."""
    fixtures = os.environ.get("EINLM_FIXTURES_DIR")
    if not fixtures:
        print("snapshots: skipped (EINLM_FIXTURES_DIR is not set)")
        return
    root = pathlib.Path(fixtures) / "cs336"
    print(f"snapshots ({root}):")

    def derived(name):
        return torch.from_numpy(np.load(root / "derived" / name)).to(DTYPE) if not name.startswith("mask") \
            else torch.from_numpy(np.load(root / "derived" / name))

    def snapshot(name):
        with np.load(root / "_snapshots" / f"{name}.npz") as z:
            return torch.from_numpy(z["array"]).to(DTYPE)

    def max_abs(a, b):
        assert a.shape == b.shape, (a.shape, b.shape)
        return (a - b).abs().max().item()

    atol = 2e-6
    x = derived("in_embeddings.npy")                                        # (4, 12, 64)
    gain = derived("rmsnorm_gain_layers.1.ln1.weight_recovered.npy")        # (64,)
    check("rms_norm vs test_rmsnorm", max_abs(rms_norm(x, gain, 1e-5), snapshot("test_rmsnorm")), atol)
    check("rope vs test_rope", max_abs(rope(x, torch.arange(12), 10000.0), snapshot("test_rope")), atol)
    q, k, v, mask = derived("q.npy"), derived("k.npy"), derived("v.npy"), derived("mask.npy")
    check("attention vs test_scaled_dot_product_attention",
          max_abs(scaled_dot_product_attention(q, k, v, mask), snapshot("test_scaled_dot_product_attention")), atol)

    def four_d(t):
        return t.reshape(t.shape[0] // 2, 2, *t.shape[1:])

    check("attention vs test_4d_scaled_dot_product_attention",
          max_abs(scaled_dot_product_attention(four_d(q), four_d(k), four_d(v), four_d(mask)),
                  snapshot("test_4d_scaled_dot_product_attention")), atol)


def check_against_torch():
    """The hand-written layers against torch.nn.functional's, in float64."""
    print("torch.nn.functional:")
    g = torch.Generator().manual_seed(7)
    b, h, hkv, s, dh = 2, 6, 2, 9, 8
    q = torch.randn(b, h, s, dh, generator=g, dtype=DTYPE)
    k = torch.randn(b, hkv, s, dh, generator=g, dtype=DTYPE)
    v = torch.randn(b, hkv, s, dh, generator=g, dtype=DTYPE)
    causal = torch.tril(torch.ones(s, s, dtype=torch.bool))
    ours = scaled_dot_product_attention(q, k.repeat_interleave(h // hkv, 1), v.repeat_interleave(h // hkv, 1), causal)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    check("causal GQA attention vs F.scaled_dot_product_attention", (ours - theirs).abs().max().item(), 1e-12)
    x, w = torch.randn(3, 5, 24, generator=g, dtype=DTYPE), torch.randn(24, generator=g, dtype=DTYPE)
    check("rms_norm vs F.rms_norm", (rms_norm(x, w, 1e-5) - F.rms_norm(x, (24,), w, 1e-5)).abs().max().item(), 1e-12)
    logits = torch.randn(2, 7, 37, generator=g, dtype=DTYPE) * 3
    targets = torch.randint(0, 37, (2, 7), generator=g)
    check("cross entropy vs F.cross_entropy",
          abs(lm_loss(logits, targets, 0.0).item() - F.cross_entropy(logits.reshape(-1, 37), targets.reshape(-1)).item()),
          1e-12)


def check_gradient(cfg, step=1e-5):
    """Autograd against central finite differences of the loss at one random entry of every parameter."""
    print(f"gradient of '{cfg.name}' vs central differences (step {step:g}):")
    params, input_ids, targets = make_inputs(cfg)
    loss = lm_loss(transformer_lm(params, input_ids, cfg), targets, cfg.z_loss)
    loss.backward()
    names = list(params)
    picks = torch.Generator().manual_seed(99)
    worst = 0.0
    with torch.no_grad():
        for name in names:
            w = params[name]
            flat = int(torch.randint(0, w.numel(), (1,), generator=picks))
            index = np.unravel_index(flat, tuple(w.shape))
            saved = w[index].item()
            w[index] = saved + step
            up = lm_loss(transformer_lm(params, input_ids, cfg), targets, cfg.z_loss).item()
            w[index] = saved - step
            down = lm_loss(transformer_lm(params, input_ids, cfg), targets, cfg.z_loss).item()
            w[index] = saved
            fd = (up - down) / (2 * step)
            ag = w.grad[index].item()
            rel = abs(fd - ag) / max(abs(fd), abs(ag), 1e-3)
            worst = max(worst, rel)
            print(f"    {name}{list(map(int, index))}: autograd {ag:+.12e}  difference {fd:+.12e}  rel {rel:.2e}")
    check(f"max relative error over {len(names)} parameters", worst, 1e-6)


def main():
    torch.use_deterministic_algorithms(True)
    check_snapshots()
    check_against_torch()
    check_gradient(CONFIGS[0])
    check_gradient(CONFIGS[1])
    for cfg in CONFIGS:
        assert cfg.d_model % cfg.num_heads == 0 and cfg.num_heads % cfg.num_kv_heads == 0
        write_golden(cfg)


if __name__ == "__main__":
    main()
