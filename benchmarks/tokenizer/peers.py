#!/usr/bin/env python3
"""einlm's tokenizer against tiktoken and HF tokenizers: same machine, same run, same text.

  benchmarks/tokenizer/peers.py --build build/test [--corpus build/bench/corpus.txt]
                                [--threads 1 2] [--repeat 3] [--skip-train] [--skip-encode]

Needs: pip install tiktoken tokenizers regex blobfile; the cs336 fixtures (GPT-2 vocab.json and
merges.txt; EINLM_FIXTURES_DIR or ../shared/fixtures); a build of bench_tokenizer and
einlm-tokenizer (scripts/test builds both); the corpus from make_corpus.py (made if missing).

Encoding: the corpus is cut into ~10 KB documents after a newline (bench_tokenizer cuts the same
bytes). tiktoken runs encode_ordinary per document (1 thread) and encode_ordinary_batch
(num_threads=T); HF runs encode_batch with RAYON_NUM_THREADS=T in a fresh process; einlm runs
bench_tokenizer's BM_encode/threads:T (encode_batch). Best of --repeat runs; MB = 10^6 bytes. The
ids of all three must be identical (FNV-1a digest over every id) or the script fails.

Training: einlm-tokenizer train --vocab-size 30000 --threads T (CS336 tie rule, and the HF rule
to compare merges) against HF BpeTrainer(vocab_size=30000, initial_alphabet=ByteLevel.alphabet(),
special_tokens=["<|endoftext|>"]) with ByteLevel(add_prefix_space=False) and RAYON_NUM_THREADS=T,
fed ~10 KB documents cut where the pieces cannot change (train_from_iterator), each in its own
process; wall time (process start to end, file reading included) and peak RSS (GNU time's %M).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))


def fnv_ids(seq_of_lists):
    h, n = 0xCBF29CE484222325, 0
    for ids in seq_of_lists:
        for i in ids:
            n += 1
            for k in range(4):
                h ^= (i >> (8 * k)) & 0xFF
                h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return n, f"{h:016x}"


def documents(data):
    docs, i = [], 0
    while i < len(data):
        j = data.find(b"\n", i + 10000)
        j = len(data) if j < 0 else j + 1
        docs.append(data[i:j].decode("utf-8"))
        i = j
    return docs


def run_child(code, env_extra, args):
    """Runs python code in a fresh process; returns (its JSON output, wall seconds)."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                       env={**os.environ, **env_extra})
    if p.returncode != 0:
        sys.exit(f"child failed: {code[:80]}")
    return json.loads(p.stdout), time.perf_counter() - t


def timed_process(cmd, env_extra=None):
    """Runs cmd under GNU time; returns (wall seconds, peak RSS in MB, stdout bytes). (The child's
    ru_maxrss from os.wait4 would include this Python process's pages, copied at fork.)"""
    env = {**os.environ, **(env_extra or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], env=env, stdout=out, stderr=err)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{err.read().decode()}")
        return wall, int(rss.read().split()[-1]) / 1024, out.read()


def train_documents(data):
    """~10 KB documents cut after a newline that has no whitespace on either side, so that the
    pieces of the documents are exactly the pieces of the whole text (see find_safe_split)."""
    space = b" \t\r\n\x0b\x0c\xc2\xe1\xe2\xe3\x85\xa0\x80\x81"  # ASCII spaces; lead/trail bytes of others
    docs, i = [], 0
    while i < len(data):
        j = i + 10000
        while True:
            j = data.find(b"\n", j)
            if j < 0 or j + 1 >= len(data) or (data[j + 1] not in space and data[j - 1] not in space):
                break
            j += 1
        j = len(data) if j < 0 else j + 1
        docs.append(data[i:j].decode("utf-8"))
        i = j
    return docs


HF_ENCODE = textwrap.dedent("""
    import json, sys, time
    from tokenizers import Tokenizer, models, pre_tokenizers
    fx, corpus, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.path.insert(0, sys.argv[4]); from peers import documents, fnv_ids
    tok = Tokenizer(models.BPE.from_file(fx + "/gpt2_vocab.json", fx + "/gpt2_merges.txt"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    docs = documents(open(corpus, "rb").read())
    best = 1e9
    for _ in range(repeat):
        t = time.perf_counter(); enc = tok.encode_batch(docs); best = min(best, time.perf_counter() - t)
    print(json.dumps({"seconds": best, "digest": fnv_ids(e.ids for e in enc)}))
""")

HF_TRAIN = textwrap.dedent("""
    import json, sys, time
    t = time.perf_counter()
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    corpus, vocab = sys.argv[1], int(sys.argv[2])
    sys.path.insert(0, sys.argv[3]); from peers import train_documents
    # Documents rather than tok.train([corpus]): the file API feeds HF one line at a time, which
    # splits whitespace runs at line ends differently from pre-tokenizing the whole text.
    docs = train_documents(open(corpus, "rb").read())
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tr = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, tr, length=len(docs)); secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "merges": [" ".join(m) for m in json.loads(tok.to_str())["model"]["merges"]]}))
""")


PATHOLOGICAL = [("x", "x"), ("^", "^"), ("0", "0"), (" ", "space"), ("\n", "newline"), ("'s", "'s"), ("ab", "ab")]

PEER_PATHOLOGICAL = textwrap.dedent("""
    import json, sys, time
    which, unit, fx = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.path.insert(0, sys.argv[4])
    text = unit * (1_000_000 // len(unit)) + "x"
    if which == "tiktoken":
        from tokenizer_common import gpt2_encoding
        enc = gpt2_encoding(fx).encode_ordinary
    else:
        from tokenizers import Tokenizer, models, pre_tokenizers
        tok = Tokenizer(models.BPE.from_file(fx + "/gpt2_vocab.json", fx + "/gpt2_merges.txt"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        enc = lambda t: tok.encode(t).ids
    best = 1e9
    for _ in range(2):
        t = time.perf_counter(); enc(text); best = min(best, time.perf_counter() - t)
    print(json.dumps({"mb_s": len(text.encode()) / best / 1e6}))
""")


def pathological(args, fx, bench):
    out = subprocess.run([bench, "--benchmark_filter=BM_encode_pathological", "--benchmark_format=json",
                          "--benchmark_repetitions=3"],
                         env={**os.environ, "EINLM_FIXTURES_DIR": os.path.dirname(fx)},
                         capture_output=True, text=True, check=True).stdout
    ours = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") == "iteration":
            ours[b["label"]] = max(ours.get(b["label"], 0), b["bytes_per_second"] / 1e6)
    print("\n| 10^6 bytes of | einlm MB/s | tiktoken MB/s | HF MB/s |\n|---|---:|---:|---:|")
    for unit, name in PATHOLOGICAL:
        cells = []
        for which in ("tiktoken", "hf"):
            p = subprocess.run([sys.executable, "-c", PEER_PATHOLOGICAL, which, unit, fx, os.path.join(ROOT, "tools")],
                               capture_output=True, text=True)
            cells.append(f"{json.loads(p.stdout)['mb_s']:.2f}" if p.returncode == 0 else "crashes")
        print(f"| `{name}` repeated, then `x` | {ours[name]:.2f} | {cells[0]} | {cells[1]} |")


def main():
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "test"))
    ap.add_argument("--corpus", default=os.path.join(ROOT, "build", "bench", "corpus.txt"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--vocab-size", type=int, default=30000)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-encode", action="store_true")
    ap.add_argument("--skip-pathological", action="store_true")
    args = ap.parse_args()

    from tokenizer_common import fixtures_dir, gpt2_encoding
    import tiktoken
    import tokenizers
    fx = fixtures_dir()
    if not os.path.exists(args.corpus):
        subprocess.run([sys.executable, os.path.join(HERE, "make_corpus.py"), "--out", args.corpus], check=True)
    data = open(args.corpus, "rb").read()
    mb = len(data) / 1e6
    print(f"corpus {args.corpus}: {mb:.1f} MB; tiktoken {tiktoken.__version__}, tokenizers "
          f"{tokenizers.__version__}; {os.cpu_count()} CPUs")
    bench = os.path.join(args.build, "benchmarks", "bench_tokenizer")
    cli = os.path.join(args.build, "apps", "einlm-tokenizer")
    rows = []

    if not args.skip_encode:
        docs = documents(data)
        enc = gpt2_encoding(fx)
        for t in args.threads:
            best = 1e9
            for _ in range(args.repeat):
                s = time.perf_counter()
                ids = [enc.encode_ordinary(d) for d in docs] if t == 1 else enc.encode_ordinary_batch(docs, num_threads=t)
                best = min(best, time.perf_counter() - s)
            tk_digest = fnv_ids(ids)
            hf, _ = run_child(HF_ENCODE, {"RAYON_NUM_THREADS": str(t), "TOKENIZERS_PARALLELISM": "true"},
                              [fx, args.corpus, str(max(1, args.repeat - 1)), HERE])
            out = subprocess.run([bench, f"--benchmark_filter=^BM_encode/threads:{t}/", "--benchmark_format=json",
                                  f"--benchmark_repetitions={args.repeat}", "--benchmark_min_time=0.5"],
                                 env={**os.environ, "EINLM_BENCH_CORPUS": args.corpus,
                                      "EINLM_FIXTURES_DIR": os.path.dirname(fx)},
                                 capture_output=True, text=True, check=True).stdout
            runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type") == "iteration"]
            ours = max(b["bytes_per_second"] for b in runs) / 1e6
            label = runs[0]["label"]  # "GPT-2 ids=N fnv=H"
            ours_digest = (int(label.split("ids=")[1].split()[0]), label.split("fnv=")[1])
            same = tk_digest == tuple(hf["digest"]) == ours_digest
            print(f"encode, {t} thread(s): einlm {ours:.2f} MB/s, tiktoken {mb / best:.2f} MB/s, "
                  f"HF {mb / hf['seconds']:.2f} MB/s; ids identical: {same} ({tk_digest[0]} ids)")
            if not same:
                sys.exit(f"ids differ: tiktoken {tk_digest}, HF {hf['digest']}, einlm {ours_digest}")
            rows.append((f"encode MB/s, {t} thread(s)", ours, mb / best, mb / hf["seconds"]))

    if not args.skip_train:
        with tempfile.TemporaryDirectory() as d:
            for t in args.threads:
                wall, rss, _ = timed_process([cli, "train", "--vocab-size", str(args.vocab_size), "--special",
                                              "<|endoftext|>", "--threads", str(t), "--progress", "never",
                                              "--out", os.path.join(d, "cs336"), args.corpus])
                wall_hf_rule, rss_hf_rule, _ = timed_process([cli, "train", "--vocab-size", str(args.vocab_size), "--special",
                                                    "<|endoftext|>", "--threads", str(t), "--tie-break", "hf",
                                                    "--progress", "never", "--format", "hf",
                                                    "--out", os.path.join(d, "hfrule"), args.corpus])
                hf_wall, hf_rss, out = timed_process([sys.executable, "-c", HF_TRAIN, args.corpus, str(args.vocab_size), HERE],
                                                     {"RAYON_NUM_THREADS": str(t), "TOKENIZERS_PARALLELISM": "true"})
                hf = json.loads(out)
                ours_merges = [" ".join(m) for m in json.load(open(os.path.join(d, "hfrule", "tokenizer.json")))["model"]["merges"]]
                same = 0
                while same < min(len(ours_merges), len(hf["merges"])) and ours_merges[same] == hf["merges"][same]:
                    same += 1
                print(f"train {args.vocab_size}, {t} thread(s): einlm {wall:.2f} s (peak RSS {rss:.0f} MB; HF tie rule "
                      f"{wall_hf_rule:.2f} s), HF BpeTrainer {hf_wall:.2f} s (in-process {hf['seconds']:.2f} s, peak RSS "
                      f"{hf_rss:.0f} MB); ratio {wall / hf_wall:.3f}; merges identical to HF: {same} of "
                      f"{len(hf['merges'])} (einlm made {len(ours_merges)})")
                rows.append((f"train {args.vocab_size} s, {t} thread(s)", wall, None, hf_wall))

    if not args.skip_pathological:
        pathological(args, fx, bench)

    print("\n| measure | einlm | tiktoken | HF tokenizers | einlm/tiktoken | einlm/HF |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, ours, tik, hf in rows:
        if name.startswith("encode"):
            print(f"| {name} | {ours:.2f} | {tik:.2f} | {hf:.2f} | {ours / tik:.1f}x | {ours / hf:.1f}x |")
        else:
            print(f"| {name} | {ours:.2f} | - | {hf:.2f} | - | {ours / hf:.3f} (time) |")


if __name__ == "__main__":
    main()
