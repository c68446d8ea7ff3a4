// Shared pieces of the benchmarks: a main that runs Google Benchmark, collects each benchmark's
// rate, and prints a summary table of ratios against the baseline measured in the same run.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
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

/// Collects every counter of every run: rates()[counter][benchmark name].
class rate_collector : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs)
      for (const auto& [name, counter] : run.counters) rates_[name][run.benchmark_name()] = counter.value;
    ConsoleReporter::ReportRuns(runs);
  }
  const std::map<std::string, std::map<std::string, double>>& rates() const { return rates_; }

 private:
  std::map<std::string, std::map<std::string, double>> rates_;
};

/// One row of the summary: name, numerator benchmark, denominator benchmark, goal (≥, as a ratio),
/// and the rate compared when it is not the summary's (a row of bandwidth in a table of FLOP/s).
struct ratio_row {
  std::string label, ours, baseline;
  double goal;
  std::optional<rate_unit> unit = {};
};

/// Runs the registered benchmarks and prints the ratio table; returns the exit status.
inline int run_and_summarise(int argc, char** argv, const std::vector<ratio_row>& rows, const rate_unit& unit = {}) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  rate_collector reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  const std::string ours = "ours " + unit.name, base = "base " + unit.name;
  std::printf("\n%-58s %12s %12s %8s %6s\n", "summary (same run)", ours.c_str(), base.c_str(), "ratio", "goal");
  for (const auto& row : rows) {
    const rate_unit& u = row.unit ? *row.unit : unit;
    const auto counter = reporter.rates().find(u.counter);
    if (counter == reporter.rates().end()) continue;
    const auto& r = counter->second;
    const auto a = r.find(row.ours), b = r.find(row.baseline);
    if (a == r.end() || b == r.end()) continue;
    const double ratio = a->second / b->second;
    const std::string label = row.unit ? row.label + " (" + u.name + ")" : row.label;
    std::printf("%-58s %12.2f %12.2f %7.2fx %5.2fx %s\n", label.c_str(), a->second / u.scale, b->second / u.scale, ratio,
                row.goal, ratio >= row.goal ? "" : "(below goal)");
  }
  return 0;
}

}  // namespace einlm::bench
