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

/// Collects bytes_per_second (or items_per_second) of every run, keyed by benchmark name.
class rate_collector : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      const auto it = run.counters.find("bytes_per_second");
      if (it != run.counters.end()) rates_[run.benchmark_name()] = it->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  const std::map<std::string, double>& rates() const { return rates_; }

 private:
  std::map<std::string, double> rates_;
};

/// One row of the summary: name, numerator benchmark, denominator benchmark, goal (≥, as a ratio).
struct ratio_row {
  std::string label, ours, baseline;
  double goal;
};

/// Runs the registered benchmarks and prints the ratio table; returns the exit status.
inline int run_and_summarise(int argc, char** argv, const std::vector<ratio_row>& rows) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  rate_collector reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  const auto& r = reporter.rates();
  std::printf("\n%-58s %12s %12s %8s %6s\n", "summary (same run)", "ours GB/s", "base GB/s", "ratio", "goal");
  for (const auto& row : rows) {
    const auto a = r.find(row.ours), b = r.find(row.baseline);
    if (a == r.end() || b == r.end()) continue;
    const double ratio = a->second / b->second;
    std::printf("%-58s %12.2f %12.2f %7.2fx %5.2fx %s\n", row.label.c_str(), a->second / 1e9, b->second / 1e9, ratio,
                row.goal, ratio >= row.goal ? "" : "(below goal)");
  }
  return 0;
}

}  // namespace einlm::bench
