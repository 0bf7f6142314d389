// Helpers for driving the C API from the tests as a C caller would: memory, a destination
// running on its own thread, a temporary directory for unix: sockets, stats JSON.
#pragma once

#include <sys/mman.h>

#include <future>
#include <nlohmann/json.hpp>
#include <string>

#include "ferry/ferry.h"
#include "tests/transports/test_util.h"

namespace ferry::capi_test {

// Fresh anonymous memory (all zero), unmapped at the end.
class Memory {
 public:
  explicit Memory(size_t bytes);
  ~Memory();
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;
  void* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  void* p_;
  size_t n_;
};

// A scratch directory removed at the end: the transport tests' helper.
using transport::testing::TempDir;

struct Outcome {
  ferry_status status = FERRY_ERR_INTERNAL;
  std::string error;  // ferry_last_error() on the thread that made the call
};

// A destination with one block "pc.ram" of `bytes` (or another name/size), run on its own
// thread by start(); the destructor cancels a run still going and frees everything.
class Destination {
 public:
  explicit Destination(size_t bytes, const char* block = "pc.ram",
                       const ferry_options* options = nullptr);
  ~Destination();
  ferry_destination* get() const { return d_; }
  void* memory() const { return mem_.data(); }
  // listen + address; "" (and a test failure) on error.
  std::string listen(const std::string& uri);
  void start();
  Outcome wait();
  nlohmann::json stats() const;

 private:
  Memory mem_;
  ferry_destination* d_ = nullptr;
  std::future<Outcome> run_;
};

nlohmann::json source_stats(ferry_source* s);
// Parses and frees a JSON string the library returned.
nlohmann::json take_json(char* text);

}  // namespace ferry::capi_test
