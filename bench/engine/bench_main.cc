// main() of ferry_bench_engine: the end-to-end benchmarks (BM_MigrateLoopback..., BM_BaselineRawTcp)
// are reported without the "/real_time" suffix (bench/summary looks them up by name); the others
// keep the names they always had.
#include <string>

#include "bench/common/plain_names.h"

int main(int argc, char** argv) {
  return ferry::bench::run_benchmarks(argc, argv, [](const std::string& name) {
    return name.rfind("BM_MigrateLoopback", 0) == 0 || name.rfind("BM_BaselineRawTcp", 0) == 0;
  });
}
