// Running the `ferry` CLI from a test as a user would: through the shell, with stdout and stderr
// captured in files of a temporary directory that goes away with the test. FERRY_CLI is the
// binary (set by tests/tools/CMakeLists.txt).
#pragma once

#include <stdlib.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace ferry::cli_test {

namespace fs = std::filesystem;

inline const std::string kFerry = FERRY_CLI;

struct Result {
  int status = -1;
  std::string out;
  std::string err;
};

inline std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ferry-cli-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Runs `ferry ARGS` through the shell; `tag` names the capture files, so that two commands of
// one test running at the same time keep theirs apart.
inline Result run(const std::string& args, const TempDir& dir, const std::string& tag = "run") {
  const fs::path out = dir.path() / (tag + ".out"), err = dir.path() / (tag + ".err");
  const std::string cmd = kFerry + " " + args + " >'" + out.string() + "' 2>'" + err.string() + "'";
  const int st = std::system(cmd.c_str());
  Result r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

}  // namespace ferry::cli_test
