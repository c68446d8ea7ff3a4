"""Timing shared by the *_peers.py scripts: both sides of every ratio are the same statistic, taken
at the same moments.

Each side is measured ROUNDS times, the sides taking turns (einlm, the peer, einlm, the peer, …),
and the fastest round of each side is kept (fastest_interleaved). One round of einlm's side runs
the Google Benchmark program for that one benchmark with --benchmark_min_time=MIN_TIME
(einlm_benchmark: the mean time of the iterations made in at least MIN_TIME seconds); one round of
the peer's side is the mean time of the calls made in at least MIN_TIME seconds (mean_seconds).
On a shared virtual machine whose speed drifts over minutes, measuring one side after the other
would set a fast minute of one against a slow minute of the other; setting a peer's fastest single
call beside einlm's mean would favour the peer.
"""
import json
import os
import re
import subprocess
import tempfile
import time

ROUNDS = 5
MIN_TIME = 0.5  # seconds

_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def mean_seconds(f, min_time=MIN_TIME, warmup=1):
    """Seconds per call of f: the mean over the calls made in at least `min_time` seconds."""
    for _ in range(warmup):
        f()
    calls = 0
    start = time.perf_counter()
    while True:
        f()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / calls


def google_benchmark(build, binary, threads, benchmark_filter=None, min_time=MIN_TIME):
    """{run name: JSON entry} of one run of BUILD/benchmarks/BINARY on `threads` OpenMP threads.
    Run names are Google Benchmark's (`bm_forward/2/real_time`)."""
    with tempfile.TemporaryDirectory() as scratch:
        # The report goes to a file: some programs print their own summary table on stdout.
        report = os.path.join(scratch, "report.json")
        command = [os.path.join(build, "benchmarks", binary), f"--benchmark_out={report}",
                   "--benchmark_out_format=json", f"--benchmark_min_time={min_time}"]
        if benchmark_filter:
            command.append(f"--benchmark_filter={benchmark_filter}")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({run.returncode}):\n{run.stderr}")
        with open(report) as f:
            return {b.get("run_name", b["name"]): b for b in json.load(f)["benchmarks"]}


class einlm_benchmark:
    """The benchmark run `name` of BUILD/benchmarks/BINARY, run alone each time it is called:
    returns seconds per iteration, and keeps the run's JSON entry (its counters) in `entry`."""

    def __init__(self, build, binary, threads, name, min_time=MIN_TIME):
        self.build, self.binary, self.threads, self.name, self.min_time = build, binary, threads, name, min_time
        self.entry = None

    def __call__(self):
        self.entry = google_benchmark(self.build, self.binary, self.threads, f"^{re.escape(self.name)}$",
                                      self.min_time)[self.name]
        return self.seconds()

    def seconds(self):
        """Seconds per iteration of the last run."""
        return self.entry["real_time"] * _UNIT_SECONDS[self.entry["time_unit"]]

    def per_iteration(self, counter):
        """A rate counter of the last run (per second) as an amount per iteration."""
        return self.entry[counter] * self.seconds()


def fastest_interleaved(measures, rounds=ROUNDS):
    """Calls each function of `measures` (each returns seconds per call) in turn, `rounds` times,
    and returns the fastest result of each."""
    best = [float("inf")] * len(measures)
    for _ in range(rounds):
        for i, measure in enumerate(measures):
            best[i] = min(best[i], measure())
    return best
