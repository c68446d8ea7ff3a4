#!/usr/bin/env python3
"""Writes tests/data/nn/gpt2_tiny.safetensors: a PyTorch reference of a small GPT-2-shaped language
model (forward logits, loss and every parameter gradient, all in float64), the model that
einlm::nn::blocks::gpt2_lm spells as a type.

Usage: python3 -m pip install torch numpy safetensors
       python3 tools/make_gpt2_goldens.py

The model (GPT-2's layout, with einlm's parameter names):
  * x = token_embeddings.weight[ids] + position_embeddings.weight[0..S-1] (learned positions);
  * pre-norm blocks: h = x + attn(ln_1(x)); out = h + mlp(ln_2(h));
      LayerNorm(x) = (x - mean) / sqrt(var + eps) * weight + bias, biased variance, eps = 1e-5;
      attn: q, k, v = x @ W.T + b for q_proj, k_proj, v_proj (D, D); heads split as (h d), no
      rotary embedding; causal softmax attention with scale 1/sqrt(Dh); output_proj with a bias;
      mlp(x) = fc2(gelu(fc1 x)), fc1 (4D, D), fc2 (D, 4D), both with biases, GELU in its erf form
      (torch.nn.functional.gelu's default; GPT-2 itself used the tanh approximation);
  * logits = ln_final(x) @ token_embeddings.weight.T (the LM head is tied to the embedding);
  * loss = mean over the B*S positions of cross_entropy(logits, targets).

The file holds (floating tensors float64, row-major): every parameter under its einlm name,
input_ids and targets (int64 (B, S): windows [0, S) and [1, S+1) of one random row of S+1 tokens),
logits (B, S, V), loss (0-d) and grad.<name> for every parameter; metadata: vocab_size,
context_length, d_model, num_layers, num_heads, batch_size, seq_len, seed, loss (repr).

Initialisation: a torch.Generator seeded with SEED; every weight and bias normal(0, 0.3^2) and
LayerNorm weights 1 + normal(0, 0.3^2), drawn in the order of the parameter list; then the tokens.
S equals the context length, so every row of the position table takes part.

Checks this script runs before writing (it stops on a failure):
  1. its attention against torch.nn.functional.scaled_dot_product_attention(is_causal=True), and
     its LayerNorm against a hand-written one, within 1e-12;
  2. its autograd gradients against central finite differences of the loss (step 1e-5) at one
     random entry of every parameter: the largest |fd - autograd| / max(|fd|, |autograd|, 1e-3)
     must be below 1e-6.
"""
import math
import pathlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "nn" / "gpt2_tiny.safetensors"
DTYPE = torch.float64
STD = 0.3
SEED = 2024
BATCH, SEQ = 2, 12


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int = 0  # 0: 4·d_model
    norm_eps: float = 1e-5

    @property
    def ffn(self):
        return self.d_ff or 4 * self.d_model


TINY = GPT2Config(vocab_size=29, context_length=12, d_model=16, num_layers=2, num_heads=4)
EPS = 1e-5


def parameter_shapes(c):
    D, F = c.d_model, c.ffn
    shapes = [("token_embeddings.weight", (c.vocab_size, D)), ("position_embeddings.weight", (c.context_length, D))]
    for i in range(c.num_layers):
        p = f"layers.{i}."
        shapes += [(p + "ln_1.weight", (D,)), (p + "ln_1.bias", (D,))]
        for proj in ("q_proj", "k_proj", "v_proj", "output_proj"):
            shapes += [(p + f"attn.{proj}.weight", (D, D)), (p + f"attn.{proj}.bias", (D,))]
        shapes += [(p + "ln_2.weight", (D,)), (p + "ln_2.bias", (D,))]
        shapes += [(p + "mlp.fc1.weight", (F, D)), (p + "mlp.fc1.bias", (F,))]
        shapes += [(p + "mlp.fc2.weight", (D, F)), (p + "mlp.fc2.bias", (D,))]
    shapes += [("ln_final.weight", (D,)), ("ln_final.bias", (D,))]
    return shapes


def is_gain(name):
    return name.endswith(".weight") and (".ln_" in name or name.startswith("ln_"))


def make_parameters(gen, c=TINY):
    params = {}
    for name, shape in parameter_shapes(c):
        w = torch.randn(shape, generator=gen, dtype=DTYPE) * STD
        params[name] = (w + 1.0 if is_gain(name) else w).requires_grad_(True)
    return params


def attention(q, k, v):
    """Causal softmax attention of (B, H, S, Dh) tensors, written out."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = q.shape[-2]
    mask = torch.ones(s, s, dtype=torch.bool).tril()
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def layer_norm(x, w, b, eps=EPS):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def forward(params, ids, c=TINY):
    """Logits (B, S, V) of ids (B, S) under the model c with parameters `params` (einlm's names)."""
    B, S = ids.shape
    D, H = c.d_model, c.num_heads
    x = params["token_embeddings.weight"][ids] + params["position_embeddings.weight"][:S]
    Dh = D // H
    for i in range(c.num_layers):
        p = f"layers.{i}."
        n = layer_norm(x, params[p + "ln_1.weight"], params[p + "ln_1.bias"], c.norm_eps)

        def proj(name, t):
            return t @ params[p + f"attn.{name}.weight"].T + params[p + f"attn.{name}.bias"]

        def heads(t):
            return t.reshape(B, S, H, Dh).transpose(1, 2)

        a = attention(heads(proj("q_proj", n)), heads(proj("k_proj", n)), heads(proj("v_proj", n)))
        x = x + proj("output_proj", a.transpose(1, 2).reshape(B, S, D))
        n = layer_norm(x, params[p + "ln_2.weight"], params[p + "ln_2.bias"], c.norm_eps)
        f = F.gelu(n @ params[p + "mlp.fc1.weight"].T + params[p + "mlp.fc1.bias"])
        x = x + f @ params[p + "mlp.fc2.weight"].T + params[p + "mlp.fc2.bias"]
    x = layer_norm(x, params["ln_final.weight"], params["ln_final.bias"], c.norm_eps)
    return x @ params["token_embeddings.weight"].T


def loss_of(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def check_layers(gen):
    q, k, v = (torch.randn(2, 3, 7, 5, generator=gen, dtype=DTYPE) for _ in range(3))
    ours = attention(q, k, v)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (ours - theirs).abs().max() < 1e-12, "attention differs from torch's"
    x = torch.randn(4, 9, generator=gen, dtype=DTYPE)
    w, b = torch.randn(9, generator=gen, dtype=DTYPE), torch.randn(9, generator=gen, dtype=DTYPE)
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    by_hand = (x - mean) / torch.sqrt(var + EPS) * w + b
    assert (layer_norm(x, w, b) - by_hand).abs().max() < 1e-12, "LayerNorm differs from its formula"


def check_gradients(params, ids, targets, gen):
    worst = 0.0
    h = 1e-5
    for name, w in params.items():
        i = int(torch.randint(w.numel(), (1,), generator=gen))
        flat = w.detach().view(-1)
        saved = flat[i].item()
        with torch.no_grad():
            flat[i] = saved + h
            up = loss_of(forward(params, ids), targets).item()
            flat[i] = saved - h
            down = loss_of(forward(params, ids), targets).item()
            flat[i] = saved
        fd = (up - down) / (2 * h)
        auto = w.grad.view(-1)[i].item()
        err = abs(fd - auto) / max(abs(fd), abs(auto), 1e-3)
        worst = max(worst, err)
    print(f"finite differences: worst relative error {worst:.2e} over {len(params)} parameters")
    assert worst < 1e-6, "autograd disagrees with finite differences"


def main():
    gen = torch.Generator().manual_seed(SEED)
    check_layers(torch.Generator().manual_seed(SEED + 1))
    params = make_parameters(gen)
    rows = torch.randint(TINY.vocab_size, (BATCH, SEQ + 1), generator=gen)
    ids, targets = rows[:, :SEQ].contiguous(), rows[:, 1:].contiguous()
    logits = forward(params, ids)
    loss = loss_of(logits, targets)
    loss.backward()
    check_gradients(params, ids, targets, torch.Generator().manual_seed(SEED + 2))
    tensors = {name: w.detach().clone() for name, w in params.items()}
    tensors.update({f"grad.{name}": w.grad.detach().clone() for name, w in params.items()})
    tensors.update({"input_ids": ids, "targets": targets, "logits": logits.detach().clone(),
                    "loss": loss.detach().clone()})
    metadata = {"vocab_size": str(TINY.vocab_size), "context_length": str(TINY.context_length),
                "d_model": str(TINY.d_model), "num_layers": str(TINY.num_layers),
                "num_heads": str(TINY.num_heads), "batch_size": str(BATCH),
                "seq_len": str(SEQ), "seed": str(SEED), "loss": repr(loss.item())}
    save_file(tensors, str(OUT), metadata=metadata)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size:,} bytes), loss {loss.item()!r}")


if __name__ == "__main__":
    main()
