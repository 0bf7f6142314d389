// Test certificates made at run time with the OpenSSL API (no private key is ever committed):
// a CA and leaf certificates it signs, written as PEM files into a directory, ready for
// Options::tls.
#pragma once

#include <string>

#include "ferry/transport.h"

namespace ferry::transport::testing {

class TestPki {
 public:
  // A fresh CA (EC P-256) named `ca_name`, its certificate in dir/<ca_name>.ca.pem.
  TestPki(std::string dir, const std::string& ca_name);
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  // A leaf certificate for `cn` signed by this CA, with its key: files dir/<cn>.{crt,key}.pem;
  // ca_file is this CA's certificate.
  Options::Tls issue(const std::string& cn);
  const std::string& ca_file() const { return ca_file_; }

 private:
  struct State;
  std::string dir_;
  std::string ca_file_;
  State* state_;
};

}  // namespace ferry::transport::testing
