#!/usr/bin/env python3
"""einlm checkpoints in PyTorch and PyTorch checkpoints in einlm (PyPI torch + safetensors).

Usage:
  tools/torch_interop.py logits DIR --ids "1 2 3" [--compare FILE.npy]
      Loads DIR/config.json and DIR/model.safetensors (an einlm checkpoint directory, e.g. what
      `einlm-lm train --out DIR` wrote) with the safetensors package, runs the same model in
      PyTorch (float64) and prints the logits' shape; with --compare, the largest absolute
      difference to the float32 logits `einlm-lm logits` wrote to FILE.npy.
  tools/torch_interop.py export DIR --config config.json [--seed S] [--dtype float32|bfloat16|float16]
      Writes a checkpoint directory from PyTorch: random weights (normal, std 0.3; norm gains
      1 + normal) under CS336's names, saved with safetensors.torch.save_file, and config.json —
      what `einlm-lm logits/eval/generate --checkpoint DIR` reads.
  tools/torch_interop.py selftest --einlm-lm PATH [--workdir DIR]
      Both directions end to end: a PyTorch-written checkpoint (float32 and bfloat16) loaded by
      einlm-lm, and its logits compared with PyTorch's. Exits 77 (skipped) when torch or
      safetensors is not installed, 1 on a mismatch.

The model is the one of tools/make_transformer_goldens.py (CS336's TransformerLM), which is
checked against CS336's snapshots and finite differences; tied embeddings are supported. A
config.json of GPT-2's architecture ("ffn": "gelu_mlp", "positions": "learned", "norm":
"layer_norm", "linear_bias" and "tied_embeddings" true; what einlm-lm runs as
nn::blocks::gpt2_lm) uses the model of tools/make_gpt2_goldens.py instead.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file
except ImportError as e:  # pragma: no cover
    if len(sys.argv) > 1 and sys.argv[1] == "selftest":
        print(f"skipped: {e.name} is not installed (python3 -m pip install torch safetensors numpy)")
        sys.exit(77)
    raise

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_gpt2_goldens as gpt2  # noqa: E402
import make_transformer_goldens as ref  # noqa: E402


def is_gpt2(c):
    return (c.get("ffn") == "gelu_mlp" and c.get("positions") == "learned" and c.get("norm") == "layer_norm"
            and c.get("linear_bias") is True and c.get("tied_embeddings") is True)


def gpt2_config_of(c):
    return gpt2.GPT2Config(vocab_size=c["vocab_size"], context_length=c["context_length"], d_model=c["d_model"],
                           num_layers=c["num_layers"], num_heads=c["num_heads"], d_ff=c.get("d_ff", 0),
                           norm_eps=c.get("norm_eps", 1e-5))


def config_of(path):
    c = json.loads(pathlib.Path(path).read_text())
    default_ff = (8 * c["d_model"] // 3 + 63) // 64 * 64
    return ref.Config("checkpoint", vocab_size=c["vocab_size"], context_length=c["context_length"],
                      d_model=c["d_model"], num_layers=c["num_layers"], num_heads=c["num_heads"],
                      num_kv_heads=c.get("num_kv_heads", 0) or c["num_heads"], d_ff=c.get("d_ff", 0) or default_ff,
                      batch_size=1, seq_len=1, seed=0, qk_norm=c.get("qk_norm", False),
                      rope_theta=c.get("rope_theta", 10000.0), norm_eps=c.get("norm_eps", 1e-5)), \
        c.get("tied_embeddings", c.get("tie_embeddings", False))


def torch_logits(directory, ids):
    raw = json.loads((pathlib.Path(directory) / "config.json").read_text())
    params = {k: v.to(torch.float64) for k, v in load_file(str(pathlib.Path(directory) / "model.safetensors")).items()}
    if is_gpt2(raw):
        with torch.no_grad():
            return gpt2.forward(params, torch.tensor([ids], dtype=torch.int64), gpt2_config_of(raw))[0]  # (S, V)
    cfg, tied = config_of(pathlib.Path(directory) / "config.json")
    if tied:
        params["lm_head.weight"] = params["token_embeddings.weight"]
    with torch.no_grad():
        return ref.transformer_lm(params, torch.tensor([ids], dtype=torch.int64), cfg)[0]  # (S, V)


def export(directory, config_path, seed, dtype):
    raw = json.loads(pathlib.Path(config_path).read_text())
    if is_gpt2(raw):
        shapes, tied, is_gain = gpt2.parameter_shapes(gpt2_config_of(raw)), True, gpt2.is_gain
    else:
        cfg, tied = config_of(config_path)
        shapes, is_gain = ref.parameter_shapes(cfg), ref.is_norm_weight
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in shapes:
        if tied and name == "lm_head.weight":
            continue
        w = torch.randn(shape, generator=g, dtype=torch.float64) * 0.3
        if is_gain(name):
            w = w + 1.0
        tensors[name] = w.to(getattr(torch, dtype)).contiguous()
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(pathlib.Path(config_path).read_text())


def parse_ids(text):
    return [int(t) for t in text.replace(",", " ").split()]


def selftest(einlm_lm, workdir):
    work = pathlib.Path(workdir or tempfile.mkdtemp(prefix="einlm_interop_"))
    work.mkdir(parents=True, exist_ok=True)
    models = {
        "cs336": {"vocab_size": 97, "context_length": 16, "d_model": 32, "num_layers": 2, "num_heads": 4,
                  "num_kv_heads": 2, "d_ff": 48, "qk_norm": True},
        "gpt2": {"vocab_size": 97, "context_length": 16, "d_model": 32, "num_layers": 2, "num_heads": 4,
                 "ffn": "gelu_mlp", "positions": "learned", "norm": "layer_norm", "linear_bias": True,
                 "tied_embeddings": True},
    }
    ids = [5, 17, 96, 0, 3, 42, 42, 7]
    for model, fields in models.items():
        config = work / f"{model}.json"
        config.write_text(json.dumps(fields))
        for dtype, bound in (("float32", 1e-5), ("bfloat16", 1e-5)):
            d = work / f"{model}_{dtype}"
            export(d, config, seed=7, dtype=dtype)
            npy = work / f"{model}_{dtype}.npy"
            r = subprocess.run([einlm_lm, "logits", "--checkpoint", str(d), "--ids", " ".join(map(str, ids)),
                                "--out", str(npy)], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"einlm-lm failed on the {model} {dtype} checkpoint:\n{r.stdout}{r.stderr}")
                return 1
            ours = np.load(npy)
            theirs = torch_logits(d, ids).numpy()
            diff = float(np.max(np.abs(ours - theirs)) / max(1.0, float(np.max(np.abs(theirs)))))
            print(f"{model} {dtype} checkpoint written by PyTorch: einlm-lm logits vs PyTorch (float64), "
                  f"largest difference relative to the largest logit: {diff:.2e} (bound {bound})")
            if not diff < bound:
                return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("logits")
    a.add_argument("dir")
    a.add_argument("--ids", required=True)
    a.add_argument("--compare")
    e = sub.add_parser("export")
    e.add_argument("dir")
    e.add_argument("--config", required=True)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    s = sub.add_parser("selftest")
    s.add_argument("--einlm-lm", required=True)
    s.add_argument("--workdir")
    args = p.parse_args()
    if args.command == "logits":
        logits = torch_logits(args.dir, parse_ids(args.ids)).numpy()
        print(f"logits {logits.shape}")
        if args.compare:
            ours = np.load(args.compare)
            print(f"largest absolute difference to {args.compare}: {float(np.max(np.abs(ours - logits))):.3e} "
                  f"(largest logit {float(np.max(np.abs(logits))):.3f})")
        return 0
    if args.command == "export":
        export(args.dir, args.config, args.seed, args.dtype)
        return 0
    return selftest(args.einlm_lm, args.workdir)


if __name__ == "__main__":
    sys.exit(main())
