#!/usr/bin/env python3
"""Runs einlm's einops benchmark and the same operations in NumPy and PyTorch, in one job.

Usage: benchmarks/einops_peers.py BUILD_DIR [--threads N]

Also runs BUILD_DIR/benchmarks/bench_einsum beside numpy.einsum and torch.einsum.

einlm: BUILD_DIR/benchmarks/bench_einops (Google Benchmark, bytes_per_second counters).
NumPy: np.ascontiguousarray(x.transpose(...)) and x.sum(axis) — NumPy's transposing copy is
single-threaded; PyTorch: x.permute(...).contiguous() and x.sum(dim) with torch.set_num_threads(N).
Both sides are timed the same way, taking turns (peer_timing.py): the fastest of 5 rounds, each
the mean over at least 0.5 s of calls. Bandwidth counts bytes read plus written,
as the C++ benchmark does. Prints one table with einlm's rate and the ratios to each peer
(goals: transposes ≥ 2× NumPy and ≥ 1× PyTorch).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_timing import einlm_benchmark, fastest_interleaved, google_benchmark, mean_seconds  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    n = 4096
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    x4 = np.random.default_rng(1).random((16, 16, n // 16, n // 16), dtype=np.float32)
    nbytes = a.nbytes

    cases = {
        "transpose_2d": ("rearrange 'a b -> b a'", 2 * nbytes,
                         lambda: np.ascontiguousarray(a.T), None),
        "heads_swap": ("rearrange 'b h s d -> b s h d'", 2 * nbytes,
                       lambda: np.ascontiguousarray(x4.transpose(0, 2, 1, 3)), None),
        "reduce_last": ("reduce 'a b -> a' sum", nbytes, lambda: a.sum(axis=1), None),
        "reduce_first": ("reduce 'a b -> b' sum", nbytes, lambda: a.sum(axis=0), None),
    }
    try:
        import torch

        torch.set_num_threads(args.threads)
        ta, tx4 = torch.from_numpy(a), torch.from_numpy(x4)
        torch_ops = {
            "transpose_2d": lambda: ta.t().contiguous(),
            "heads_swap": lambda: tx4.permute(0, 2, 1, 3).contiguous(),
            "reduce_last": lambda: ta.sum(dim=1),
            "reduce_first": lambda: ta.sum(dim=0),
        }
        torch_version = torch.__version__
    except ImportError:
        torch_ops, torch_version = {}, None

    print(f"einops on {args.threads} threads: einlm vs NumPy {np.__version__}"
          + (f" and PyTorch {torch_version}" if torch_version else " (PyTorch not installed)"))
    print(f"{'operation':34} {'einlm GB/s':>11} {'NumPy GB/s':>11} {'vs NumPy':>9} {'torch GB/s':>11} {'vs torch':>9}")
    for key, (label, moved, numpy_op, _) in cases.items():
        ours = einlm_benchmark(args.build, "bench_einops", args.threads, f"{key}/real_time")
        measures = [ours, lambda: mean_seconds(numpy_op)]
        if key in torch_ops:
            measures.append(lambda: mean_seconds(torch_ops[key]))
        times = fastest_interleaved(measures)
        g_ours = ours.per_iteration("bytes_per_second") / times[0] / 1e9
        g_np = moved / times[1] / 1e9
        line = f"{label:34} {g_ours:11.2f} {g_np:11.2f} {g_ours / g_np:8.2f}x"
        if key in torch_ops:
            g_t = moved / times[2] / 1e9
            line += f" {g_t:11.2f} {g_ours / g_t:8.2f}x"
        print(line)
    memcpy = einlm_benchmark(args.build, "bench_einops", args.threads, "memcpy_parallel/real_time")
    memcpy_seconds = fastest_interleaved([memcpy])[0]
    print(f"{'memcpy (parallel), same job':34} {memcpy.per_iteration('bytes_per_second') / memcpy_seconds / 1e9:11.2f}")
    einsum_peers(args, torch_version)


def einsum_peers(args, torch_version):
    """bench_einsum against numpy.einsum (optimize=True, which calls BLAS) and torch.einsum."""
    rng = np.random.default_rng(2)
    cases = {
        "einsum/16x256x256x256": ("'b i k, b k j -> b i j' 16x256^3", "bik,bkj->bij",
                                  [(16, 256, 256), (16, 256, 256)], 2 * 16 * 256 ** 3),
        "einsum/256x32x32x32": ("'b i k, b k j -> b i j' 256x32^3", "bik,bkj->bij",
                                [(256, 32, 32), (256, 32, 32)], 2 * 256 * 32 ** 3),
        "einsum_heads/2x8x512x512x64": ("'b h i d, b h j d -> b h i j'", "bhid,bhjd->bhij",
                                        [(2, 8, 512, 64), (2, 8, 512, 64)], 2 * 16 * 512 * 512 * 64),
    }
    print()
    print(f"einsum on {args.threads} threads (GFLOP/s): einlm vs numpy.einsum"
          + (" and torch.einsum" if torch_version else ""))
    print(f"{'operation':34} {'einlm':>9} {'NumPy':>9} {'vs NumPy':>9} {'torch':>9} {'vs torch':>9}")
    for key, (label, subscripts, shapes, flops) in cases.items():
        xs = [rng.random(shape, dtype=np.float32) for shape in shapes]
        ours = einlm_benchmark(args.build, "bench_einsum", args.threads, f"{key}/real_time")
        measures = [ours, lambda: mean_seconds(lambda: np.einsum(subscripts, *xs, optimize=True))]
        if torch_version:
            import torch

            ts = [torch.from_numpy(x) for x in xs]
            measures.append(lambda: mean_seconds(lambda: torch.einsum(subscripts, *ts)))
        times = fastest_interleaved(measures)
        g_ours = flops / times[0] / 1e9
        g_np = flops / times[1] / 1e9
        line = f"{label:34} {g_ours:9.1f} {g_np:9.1f} {g_ours / g_np:8.2f}x"
        if torch_version:
            g_t = flops / times[2] / 1e9
            line += f" {g_t:9.1f} {g_ours / g_t:8.2f}x"
        print(line)
    for name, b in google_benchmark(args.build, "bench_einsum", args.threads, "^cblas").items():
        key = "/".join(name.split("/")[:2])
        print(f"{'direct ' + key + ', same job':34} {b['flops_per_second'] / 1e9:9.1f}")


if __name__ == "__main__":
    sys.exit(main())
