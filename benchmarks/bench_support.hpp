// Shared pieces of the benchmarks: a main that runs Google Benchmark, collects each benchmark's
// rate, and prints a summary table of ratios against the baseline measured in the same run.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace einlm::bench {

/// True when run as a ctest smoke test (EINLM_BENCH_SMOKE=1): use small sizes.
inline bool smoke() {
  const char* s = std::getenv("EINLM_BENCH_SMOKE");
  return s && *s == '1';
}

/// The rate a summary compares: a counter's name, how the table names its unit, and the unit's
/// size (bandwidth in GB/s by default; GEMMs report "flops_per_second" in GFLOP/s or TFLOP/s).
struct rate_unit {
  std::string counter = "bytes_per_second";
  std::string name = "GB/s";
  double scale = 1e9;
};

/// Collects one counter of every run, keyed by benchmark name.
class rate_collector : public benchmark::ConsoleReporter {
 public:
  explicit rate_collector(std::string counter = "bytes_per_second") : counter_(std::move(counter)) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      const auto it = run.counters.find(counter_);
      if (it != run.counters.end()) rates_[run.benchmark_name()] = it->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  const std::map<std::string, double>& rates() const { return rates_; }

 private:
  std::string counter_;
  std::map<std::string, double> rates_;
};

/// One row of the summary: name, numerator benchmark, denominator benchmark, goal (≥, as a ratio).
struct ratio_row {
  std::string label, ours, baseline;
  double goal;
};

/// Runs the registered benchmarks and prints the ratio table; returns the exit status.
inline int run_and_summarise(int argc, char** argv, const std::vector<ratio_row>& rows, const rate_unit& unit = {}) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  rate_collector reporter(unit.counter);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  const auto& r = reporter.rates();
  const std::string ours = "ours " + unit.name, base = "base " + unit.name;
  std::printf("\n%-58s %12s %12s %8s %6s\n", "summary (same run)", ours.c_str(), base.c_str(), "ratio", "goal");
  for (const auto& row : rows) {
    const auto a = r.find(row.ours), b = r.find(row.baseline);
    if (a == r.end() || b == r.end()) continue;
    const double ratio = a->second / b->second;
    std::printf("%-58s %12.2f %12.2f %7.2fx %5.2fx %s\n", row.label.c_str(), a->second / unit.scale,
                b->second / unit.scale, ratio, row.goal, ratio >= row.goal ? "" : "(below goal)");
  }
  return 0;
}

}  // namespace einlm::bench
