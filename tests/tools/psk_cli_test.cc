// `ferry send/recv --psk-file` as a user runs them: the key file's checks (mode, type, length),
// an authenticated migration end to end, a wrong key refused on both ends, and the listen
// policy (--insecure) off loopback. Also --tls-cert/--tls-key/--tls-ca: a migration over TLS.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/tools/cli_run.h"
#include "tests/transports/tls_certs.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using ferry::cli_test::Result;
using ferry::cli_test::run;
using ferry::cli_test::slurp;
using ferry::cli_test::TempDir;
using ferry::cli_test::kFerry;

fs::path write_key(const TempDir& dir, const std::string& name, const std::string& bytes,
                   mode_t mode) {
  const fs::path p = dir.path() / name;
  std::ofstream(p, std::ios::binary) << bytes;
  ::chmod(p.c_str(), mode);
  return p;
}

const std::string kKeyA(32, 'a');
const std::string kKeyB = std::string(31, 'a') + "b";

// A `ferry recv` in the background (its stdout read here, so pclose reports its own status);
// address() is what it printed first.
class Receiver {
 public:
  Receiver(const TempDir& dir, const std::string& args) : err_(dir.path() / "recv.err") {
    const std::string cmd = kFerry + " recv " + args + " 2>'" + err_.string() + "'";
    pipe_ = ::popen(cmd.c_str(), "r");
    std::array<char, 256> line{};
    if (pipe_ && std::fgets(line.data(), line.size(), pipe_)) out_ = line.data();
  }
  ~Receiver() { finish(); }
  std::string address() const {
    const std::string prefix = "listening on ";
    if (out_.rfind(prefix, 0) != 0) return "";
    return out_.substr(prefix.size(), out_.find('\n') - prefix.size());
  }
  int finish() {
    if (!pipe_) return status_;
    std::array<char, 256> line{};
    while (std::fgets(line.data(), line.size(), pipe_) != nullptr) out_ += line.data();
    const int st = ::pclose(pipe_);
    pipe_ = nullptr;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return status_;
  }
  std::string err() const { return slurp(err_); }
  const std::string& out() const { return out_; }

 private:
  fs::path err_;
  FILE* pipe_ = nullptr;
  std::string out_;
  int status_ = -1;
};

TEST(FerryPskCli, KeyFileReadableByOthersIsRefusedNamingItsMode) {
  TempDir dir;
  const fs::path open_key = write_key(dir, "open.key", kKeyA, 0644);
  auto r = run("send --connect tcp:127.0.0.1:1 --size 16M --psk-file '" + open_key.string() + "'",
               dir);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr(open_key.string()));
  EXPECT_THAT(r.err, HasSubstr("mode 0644"));
  const fs::path group_key = write_key(dir, "group.key", kKeyA, 0640);
  r = run("recv --listen tcp:127.0.0.1:0 --size 16M --psk-file '" + group_key.string() + "'", dir);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("mode 0640"));
}

TEST(FerryPskCli, KeyFileMustBeARegularFileOfAtLeast32Bytes) {
  TempDir dir;
  auto r = run("recv --listen tcp:127.0.0.1:0 --size 16M --psk-file '" + dir.path().string() + "'",
               dir);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("not a regular file"));
  const fs::path short_key = write_key(dir, "short.key", std::string(31, 'k'), 0600);
  r = run("recv --listen tcp:127.0.0.1:0 --size 16M --psk-file '" + short_key.string() + "'", dir);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("holds 31 bytes; a key needs at least 32"));
  r = run("recv --listen tcp:127.0.0.1:0 --size 16M --psk-file '" +
              (dir.path() / "missing.key").string() + "'",
          dir);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("missing.key: No such file"));
}

// A 0600 key on both ends: the migration runs and verifies.
TEST(FerryPskCli, SendRecvWithTheSameKeyMigrates) {
  TempDir dir;
  const fs::path k = write_key(dir, "a.key", kKeyA, 0600);
  Receiver recv(dir, "--listen tcp:127.0.0.1:0 --size 16M --seed 3 --psk-file '" + k.string() + "'");
  ASSERT_NE(recv.address(), "") << recv.err();
  auto s = run("send --connect " + recv.address() +
                   " --size 16M --seed 3 --channels 2 --verify digest --quiet --psk-file '" +
                   k.string() + "'",
               dir, "send");
  EXPECT_EQ(recv.finish(), 0) << recv.out() << recv.err();
  EXPECT_EQ(s.status, 0) << s.out << s.err;
  EXPECT_THAT(s.out, HasSubstr("verified: destination confirmed identical blocks"));
  EXPECT_THAT(recv.out(), HasSubstr("verified: destination identical"));
}

// A sender with another key is refused; the receiver names the refusal when its accept ends.
TEST(FerryPskCli, WrongKeyIsRefusedOnBothEnds) {
  TempDir dir;
  const fs::path a = write_key(dir, "a.key", kKeyA, 0600);
  const fs::path b = write_key(dir, "b.key", kKeyB, 0600);
  Receiver recv(dir, "--listen tcp:127.0.0.1:0 --size 16M --accept-timeout 2 --psk-file '" +
                         a.string() + "'");
  ASSERT_NE(recv.address(), "") << recv.err();
  auto s = run("send --connect " + recv.address() + " --size 16M --quiet --psk-file '" +
                   b.string() + "'",
               dir, "send");
  EXPECT_EQ(s.status, 1) << s.out << s.err;
  EXPECT_THAT(s.err, HasSubstr("proof of the pre-shared key wrong"));
  EXPECT_EQ(recv.finish(), 1) << recv.out();
  EXPECT_THAT(recv.err(), HasSubstr("did not prove the pre-shared key"));
}

TEST(FerryPskCli, SenderWithoutKeyIsTold) {
  TempDir dir;
  const fs::path a = write_key(dir, "a.key", kKeyA, 0600);
  Receiver recv(dir, "--listen tcp:127.0.0.1:0 --size 16M --accept-timeout 2 --psk-file '" +
                         a.string() + "'");
  ASSERT_NE(recv.address(), "") << recv.err();
  auto s = run("send --connect " + recv.address() + " --size 16M --quiet", dir, "send");
  EXPECT_EQ(s.status, 1) << s.out << s.err;
  EXPECT_THAT(s.err, HasSubstr("the peer requires authentication and this end has no"));
  EXPECT_EQ(recv.finish(), 1);
  EXPECT_THAT(recv.err(), HasSubstr("the peer offered none"));
}

TEST(FerryPskCli, ListeningOffLoopbackNeedsAKeyOrInsecure) {
  TempDir dir;
  auto r = run("recv --listen tcp:0.0.0.0:0 --size 16M", dir);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("not loopback without authentication"));
  EXPECT_THAT(r.err, HasSubstr("--psk-file"));
  // --insecure lets it listen; nobody comes, so it ends at its accept timeout.
  r = run("recv --listen tcp:0.0.0.0:0 --size 16M --insecure --accept-timeout 0.2", dir);
  EXPECT_THAT(r.out, HasSubstr("listening on tcp:0.0.0.0:"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("authentication")));
}

// Certificates from one CA on both ends: the migration runs over TLS and says so.
TEST(FerryTlsCli, SendRecvWithCertificatesMigratesOverTls) {
  TempDir dir;
  ferry::transport::testing::TestPki pki(dir.path().string(), "cli-ca");
  const auto src = pki.issue("cli-source");
  const auto dst = pki.issue("cli-destination");
  auto flags = [](const ferry::transport::Options::Tls& t) {
    return " --tls-cert '" + t.cert_file + "' --tls-key '" + t.key_file + "' --tls-ca '" +
           t.ca_file + "'";
  };
  // Off loopback: the certificates authenticate, no --insecure needed.
  Receiver recv(dir, "--listen tcp:0.0.0.0:0 --size 16M --seed 4" + flags(dst));
  ASSERT_NE(recv.address(), "") << recv.err();
  const std::string port = recv.address().substr(recv.address().rfind(':'));
  auto s = run("send --connect tcp:127.0.0.1" + port +
                   " --size 16M --seed 4 --channels 2 --verify digest" + flags(src),
               dir, "send");
  EXPECT_EQ(recv.finish(), 0) << recv.out() << recv.err();
  EXPECT_EQ(s.status, 0) << s.out << s.err;
  EXPECT_THAT(s.out, HasSubstr("tls-user: TLSv1.3"));
  EXPECT_THAT(s.out, HasSubstr("CN=cli-destination"));
  EXPECT_THAT(s.out, HasSubstr("verified: destination confirmed identical blocks"));
}

TEST(FerryTlsCli, PartialTlsFlagsAreAUsageError) {
  TempDir dir;
  auto r = run("recv --listen tcp:127.0.0.1:0 --size 16M --tls-cert x.pem", dir);
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("--tls-cert, --tls-key and --tls-ca go together"));
}

}  // namespace
