// Benchmark names are an interface: bench/summary and users' scripts look them up. Google
// Benchmark appends "/real_time" to UseRealTime() benchmarks; run_benchmarks() reports the chosen
// ones under their registered names instead. It is the whole of a bench binary's main():
// console or JSON output as --benchmark_format asks, like benchmark_main.
#pragma once

#include <functional>
#include <string>

namespace ferry::bench {

// plain(name) says whether the benchmark `name` (the function name as registered) drops the
// suffix. before_run runs after flag parsing, e.g. to add context lines.
int run_benchmarks(int argc, char** argv, std::function<bool(const std::string& name)> plain,
                   std::function<void()> before_run = {});

}  // namespace ferry::bench
