#!/usr/bin/env python3
"""benchmarks/compile_time/measure.py — the compile-time benchmark of einops patterns.

Compiles each translation unit of benchmarks/compile_time/ with the exact command the build uses
(taken from the build directory's compile_commands.json, or from `ninja -t compdb` when the build
was configured without CMAKE_EXPORT_COMPILE_COMMANDS), N times, and prints a markdown table of the
median wall time and the median peak resident memory of each compilation, and the cost per pattern:
(pattern TU - baseline TU) / 50. Beside the wall time it reports the CPU time (user + system, of
the compiler and its subprocesses), which varies less than the wall time on a busy machine. The
output object goes to a temporary file; nothing in the build directory changes, and the build
directory only has to be configured, not built.

Peak memory is the largest resident set of any one process of the compilation (cc1plus for g++;
cudafe++, cicc, ptxas or the host compiler for nvcc), as getrusage reports it for reaped children —
the same figure as `/usr/bin/time -v`'s "Maximum resident set size".

  measure.py --build build/dev [--repeat 3] [--compilers g++,nvcc]
  measure.py --verify PATTERNS_PROGRAM BASELINE_PROGRAM

--verify runs the two g++ programs and requires that they print the same 50 checksummed results
(the ctest bench_smoke.compile_time does this). Python 3 standard library only.
"""

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

PATTERNS = 50
HERE = os.path.dirname(os.path.abspath(__file__))
TRANSLATION_UNITS = [  # (compiler, role, file name)
    ("g++", "patterns", "einops_patterns.cpp"),
    ("g++", "baseline", "baseline.cpp"),
    ("nvcc", "patterns", "einops_patterns.cu"),
    ("nvcc", "baseline", "baseline.cu"),
]


def verify(patterns_program, baseline_program):
    """Runs both programs; returns 0 when they print the same results for ops 1..50."""
    outputs = []
    for program in (patterns_program, baseline_program):
        run = subprocess.run([program], capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            print(f"{program} exited with {run.returncode}:\n{run.stderr}", file=sys.stderr)
            return 1
        outputs.append(run.stdout.splitlines())
    pattern_lines, baseline_lines = outputs
    ops = {int(m.group(1)) for m in (re.match(r"op\s+(\d+):", line) for line in pattern_lines) if m}
    if ops != set(range(1, PATTERNS + 1)):
        print(f"expected results of ops 1..{PATTERNS}, got {sorted(ops)}", file=sys.stderr)
        return 1
    if pattern_lines != baseline_lines:
        for p, b in zip(pattern_lines, baseline_lines):
            if p != b:
                print(f"patterns: {p!r}\nbaseline: {b!r}", file=sys.stderr)
        if len(pattern_lines) != len(baseline_lines):
            print(f"{len(pattern_lines)} lines against {len(baseline_lines)}", file=sys.stderr)
        return 1
    print(f"the pattern and baseline programs agree on all {len(pattern_lines)} result lines "
          f"of the {PATTERNS} operations")
    return 0


def compile_commands(build):
    """The build's compile commands: compile_commands.json, else Ninja's compdb."""
    path = os.path.join(build, "compile_commands.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    if not os.path.exists(os.path.join(build, "build.ninja")):
        sys.exit(f"{build}: no compile_commands.json or build.ninja; configure it with CMake first "
                 "(-DEINLM_BUILD_BENCHMARKS=ON)")
    out = subprocess.run(["ninja", "-C", build, "-t", "compdb"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def command_for(entries, source):
    """(arguments, directory) of the compilation of `source`, its output sent to a temporary file."""
    for entry in entries:
        if os.path.realpath(os.path.join(entry["directory"], entry["file"])) == os.path.realpath(source):
            args = entry.get("arguments") or shlex.split(entry["command"])
            return args, entry["directory"]
    return None, None


def redirect_outputs(args, scratch):
    """The arguments with -o (and a depfile's -MF) pointing into `scratch`."""
    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a == "-o":
            out[i + 1] = os.path.join(scratch, "out.o")
        elif a == "-MF":
            out[i + 1] = os.path.join(scratch, "out.d")
    return out


def display(args):
    """The compile command without its output paths, with the repository root written as `.`."""
    root = os.path.dirname(os.path.dirname(HERE))
    shown, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-o", "-MF"):
            skip = True
        else:
            shown.append(a.replace(root, "."))
    return shlex.join(shown)


def time_once(args, directory):
    """(wall seconds, CPU seconds, peak resident MiB) of one compilation; exits if it fails."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(args, cwd=directory, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            log.seek(0)
            sys.exit(f"compilation failed ({process.returncode}): {shlex.join(args)}\n"
                     f"{log.read().decode(errors='replace')[-4000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0  # ru_maxrss: KiB


def compiler_version(args):
    try:
        out = subprocess.run([args[0], "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "?"
    lines = [line for line in out.splitlines() if line.strip()]
    release = [line for line in lines if "release" in line]  # nvcc: "Cuda compilation tools, release 13.0, …"
    return (release or lines or ["?"])[0].strip()


def measure(build, repeat, compilers):
    entries = compile_commands(build)
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for compiler, role, name in TRANSLATION_UNITS:
            if compiler not in compilers:
                continue
            args, directory = command_for(entries, os.path.join(HERE, name))
            if args is None:
                print(f"note: {name} is not in {build}'s build (nvcc TUs need CUDA); skipped", file=sys.stderr)
                continue
            args = redirect_outputs(args, scratch)
            samples = []
            for i in range(repeat):
                samples.append(time_once(args, directory))
                wall, cpu, mib = samples[-1]
                print(f"{compiler} {name} run {i + 1}/{repeat}: "
                      f"{wall:.2f} s wall, {cpu:.2f} s CPU, {mib:.0f} MiB", file=sys.stderr)
            medians = [statistics.median(s[k] for s in samples) for k in range(3)]
            rows[(compiler, role)] = (name, *medians, compiler_version(args), display(args))
    return rows


def table(rows, repeat):
    lines = [f"| compiler | translation unit | wall s | CPU s | peak MiB | per pattern: wall, CPU, memory |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for compiler in ("g++", "nvcc"):
        for role in ("baseline", "patterns"):
            if (compiler, role) not in rows:
                continue
            name, wall, cpu, mib, _, _ = rows[(compiler, role)]
            per_pattern = ""
            if role == "patterns" and (compiler, "baseline") in rows:
                _, base_wall, base_cpu, base_mib, _, _ = rows[(compiler, "baseline")]
                per_pattern = (f"{(wall - base_wall) / PATTERNS * 1000:+.0f} ms, "
                               f"{(cpu - base_cpu) / PATTERNS * 1000:+.0f} ms, "
                               f"{(mib - base_mib) / PATTERNS:+.2f} MiB")
            lines.append(f"| {compiler} | `{name}` | {wall:.1f} | {cpu:.1f} | {mib:.0f} | {per_pattern} |")
    return "\n".join(lines) + f"\n\nMedians of {repeat} compilations each."


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", help="a configured CMake build directory (EINLM_BUILD_BENCHMARKS=ON)")
    parser.add_argument("--repeat", type=int, default=3, help="compilations per translation unit (median)")
    parser.add_argument("--compilers", default="g++,nvcc", help="comma-separated: g++, nvcc")
    parser.add_argument("--verify", nargs=2, metavar=("PATTERNS_PROGRAM", "BASELINE_PROGRAM"),
                        help="run the two g++ programs and compare their results")
    options = parser.parse_args()
    if options.verify:
        return verify(*options.verify)
    if not options.build:
        parser.error("--build or --verify is required")
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")
    rows = measure(options.build, options.repeat, options.compilers.split(","))
    if not rows:
        sys.exit("nothing measured")
    print(table(rows, options.repeat))
    print()
    for (compiler, role), (name, _, _, _, version, args) in sorted(rows.items()):
        if role == "patterns":
            print(f"- {compiler}: {version}; `{args}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
