#!/usr/bin/env python3
"""Writes tests/data/optim/sgd_adagrad.safetensors: torch.optim.SGD and torch.optim.Adagrad on two
float64 parameters for 6 steps, for the configurations below.

Usage: python3 -m pip install torch safetensors
       python3 tools/make_optim_goldens.py

Tensors (float64): "init.a" (4, 5), "init.b" (7,); "grad.<step>.a" / "grad.<step>.b" for steps
0..5 (normal, seeded); "lr" (6,) the learning rate of each step; for each configuration NAME,
"<NAME>.<step>.a" / "<NAME>.<step>.b", the parameters after that step. Metadata: "configs", the
configuration names, comma-separated, and "<NAME>" its options as written below. Parameter "b"
gets weight decay 0 (a per-parameter group), "a" the configuration's.
"""
import pathlib

import torch
from safetensors.torch import save_file

CONFIGS = {
    "sgd_plain": ("sgd", dict(momentum=0.0, dampening=0.0, weight_decay=0.01, nesterov=False)),
    "sgd_momentum": ("sgd", dict(momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False)),
    "sgd_nesterov": ("sgd", dict(momentum=0.8, dampening=0.0, weight_decay=0.02, nesterov=True)),
    "adagrad": ("adagrad", dict(lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-10)),
}
STEPS = 6


def main():
    g = torch.Generator().manual_seed(2026)
    init = {"a": torch.randn(4, 5, generator=g, dtype=torch.float64),
            "b": torch.randn(7, generator=g, dtype=torch.float64)}
    grads = [{k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in init.items()} for _ in range(STEPS)]
    lrs = [0.1, 0.05, 0.2, 0.1, 0.01, 0.3]
    out = {"init.a": init["a"], "init.b": init["b"], "lr": torch.tensor(lrs, dtype=torch.float64)}
    for s in range(STEPS):
        out[f"grad.{s}.a"], out[f"grad.{s}.b"] = grads[s]["a"], grads[s]["b"]
    meta = {"configs": ",".join(CONFIGS)}
    for name, (kind, opts) in CONFIGS.items():
        meta[name] = kind + " " + " ".join(f"{k}={v}" for k, v in opts.items())
        a = init["a"].clone().requires_grad_(True)
        b = init["b"].clone().requires_grad_(True)
        groups = [{"params": [a]}, {"params": [b], "weight_decay": 0.0}]
        opt = torch.optim.SGD(groups, lr=lrs[0], **opts) if kind == "sgd" else torch.optim.Adagrad(groups, lr=lrs[0], **opts)
        for s in range(STEPS):
            for group in opt.param_groups:
                group["lr"] = lrs[s]
            a.grad, b.grad = grads[s]["a"].clone(), grads[s]["b"].clone()
            opt.step()
            out[f"{name}.{s}.a"], out[f"{name}.{s}.b"] = a.detach().clone(), b.detach().clone()
    path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "optim" / "sgd_adagrad.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, str(path), metadata=meta)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
