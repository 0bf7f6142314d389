#include "bench/common/plain_names.h"

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <utility>
#include <vector>

namespace ferry::bench {
namespace {

class PlainNames : public benchmark::BenchmarkReporter {
 public:
  PlainNames(std::unique_ptr<benchmark::BenchmarkReporter> inner,
             std::function<bool(const std::string&)> plain)
      : inner_(std::move(inner)), plain_(std::move(plain)) {}
  bool ReportContext(const Context& c) override { return inner_->ReportContext(c); }
  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<Run> renamed = runs;
    for (Run& r : renamed) {
      if (plain_(r.run_name.function_name)) r.run_name.time_type.clear();
    }
    inner_->ReportRuns(renamed);
  }
  void Finalize() override { inner_->Finalize(); }

 private:
  std::unique_ptr<benchmark::BenchmarkReporter> inner_;
  std::function<bool(const std::string&)> plain_;
};

}  // namespace

int run_benchmarks(int argc, char** argv, std::function<bool(const std::string&)> plain,
                   std::function<void()> before_run) {
  // Initialize() consumes --benchmark_format; the wrapper must build the same reporter itself.
  std::string format = "console";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_format=", 19) == 0) format = argv[i] + 19;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (before_run) before_run();
  std::unique_ptr<benchmark::BenchmarkReporter> inner;
  if (format == "json") {
    inner = std::make_unique<benchmark::JSONReporter>();
  } else {
    inner = std::make_unique<benchmark::ConsoleReporter>(
        isatty(STDOUT_FILENO) ? benchmark::ConsoleReporter::OO_Color
                              : benchmark::ConsoleReporter::OO_None);
  }
  PlainNames reporter(std::move(inner), std::move(plain));
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}

}  // namespace ferry::bench
