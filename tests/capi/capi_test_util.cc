#include "tests/capi/capi_test_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <stdexcept>

namespace ferry::capi_test {

Memory::Memory(size_t bytes) : n_(bytes) {
  p_ = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p_ == MAP_FAILED) throw std::runtime_error("mmap failed");
}
Memory::~Memory() { ::munmap(p_, n_); }

Destination::Destination(size_t bytes, const char* block, const ferry_options* options)
    : mem_(bytes) {
  EXPECT_EQ(ferry_destination_new(options, &d_), FERRY_OK) << ferry_last_error();
  const ferry_ram_block b = {block, mem_.data(), bytes, 4096, FERRY_RAM_KNOWN_ZERO};
  EXPECT_EQ(ferry_destination_add_ram(d_, &b), FERRY_OK) << ferry_last_error();
}

Destination::~Destination() {
  if (run_.valid()) {
    ferry_destination_cancel(d_);
    run_.wait();
  }
  ferry_destination_free(d_);
}

std::string Destination::listen(const std::string& uri) {
  if (ferry_destination_listen(d_, uri.c_str()) != FERRY_OK) {
    ADD_FAILURE() << "listen " << uri << ": " << ferry_last_error();
    return "";
  }
  char* address = nullptr;
  EXPECT_EQ(ferry_destination_address(d_, &address), FERRY_OK) << ferry_last_error();
  std::string a = address ? address : "";
  ferry_free(address);
  return a;
}

void Destination::start() {
  run_ = std::async(std::launch::async, [d = d_] {
    Outcome o;
    o.status = ferry_destination_run(d);
    o.error = ferry_last_error();
    return o;
  });
}

Outcome Destination::wait() { return run_.get(); }

nlohmann::json Destination::stats() const {
  char* text = nullptr;
  EXPECT_EQ(ferry_destination_stats_json(d_, &text), FERRY_OK) << ferry_last_error();
  return take_json(text);
}

nlohmann::json take_json(char* text) {
  if (!text) return nlohmann::json();
  nlohmann::json j = nlohmann::json::parse(text);
  ferry_free(text);
  return j;
}

nlohmann::json source_stats(ferry_source* s) {
  char* text = nullptr;
  EXPECT_EQ(ferry_source_stats_json(s, &text), FERRY_OK) << ferry_last_error();
  return take_json(text);
}

}  // namespace ferry::capi_test
