// A destination process killed with SIGKILL in the middle of a migration (no orderly close, no
// ERROR packet): the source must fail with an error within a bounded time, resume its guest, and
// leave its memory exactly as the guest wrote it. Runs over tcp on the host and over rdma inside
// tools/rxe/run-in-vm (tests/rxe/migrate.sh runs the '*Rdma*' cases).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "ferry/migration.h"
#include "tests/engine/migration_test_util.h"

namespace ferry {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kSize = 16 << 20;

// The destination side, in the forked child: listen, tell the parent where, take the migration.
// Never returns; the parent kills it.
[[noreturn]] void run_destination(const std::string& uri, int to_parent, uint8_t* mem) {
  try {
    transport::Options o;
    o.channels = 2;
    o.io_timeout = std::chrono::milliseconds(60'000);
    o.insecure = true;  // without a key on the soft-RoCE VM's rdma address, not loopback
    auto listener = transport::listen(uri, o);
    const std::string addr = listener->address() + "\n";
    if (write(to_parent, addr.data(), addr.size()) != static_cast<ssize_t>(addr.size())) _exit(3);
    auto channels = listener->accept();
    MigrationDestination dst({RamBlock{"ram0", mem, kSize, kPage}});
    dst.run(std::move(channels));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "destination child: %s\n", e.what());
    _exit(2);
  }
  _exit(0);
}

// The child is this test binary run again (fork + exec): a fresh process, as a destination
// really is. A plain fork() would share the RDMA state (verbs contexts, rdma_cm) that earlier
// tests in this process set up, and the child's connection then sometimes broke at once.
// With these variables set, the destination runs before gtest's main() and never returns.
constexpr const char* kChildUriVar = "FERRY_PEER_KILLED_DESTINATION_URI";
constexpr const char* kChildFdVar = "FERRY_PEER_KILLED_DESTINATION_FD";
[[maybe_unused]] const bool kRunAsChild = [] {
  const char* uri = std::getenv(kChildUriVar);
  const char* fd = std::getenv(kChildFdVar);
  if (!uri || !fd) return false;
  static testing::GuardedMem dst(kSize);
  run_destination(uri, std::atoi(fd), dst.data());
}();

pid_t spawn_destination(const std::string& uri, int to_parent) {
  const std::string uri_var = std::string(kChildUriVar) + "=" + uri;
  const std::string fd_var = std::string(kChildFdVar) + "=" + std::to_string(to_parent);
  std::vector<char*> env;
  for (char** e = environ; *e; ++e) env.push_back(*e);
  env.push_back(const_cast<char*>(uri_var.c_str()));
  env.push_back(const_cast<char*>(fd_var.c_str()));
  env.push_back(nullptr);
  char exe[] = "/proc/self/exe";
  char* argv[] = {exe, nullptr};
  const pid_t pid = fork();
  if (pid == 0) {
    execve(exe, argv, env.data());
    _exit(127);
  }
  return pid;
}

// The listener's address as the child wrote it, or "" after 30 s.
std::string read_address(int fd) {
  std::string addr;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (addr.empty() || addr.back() != '\n') {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return "";
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
    char buf[256];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return "";
    addr.append(buf, static_cast<size_t>(n));
  }
  addr.pop_back();
  return addr;
}

class EnginePeerKilled : public ::testing::TestWithParam<std::string> {};

TEST_P(EnginePeerKilled, SourceFailsInBoundedTimeResumesAndIsUntouched) {
  std::string uri = "tcp:127.0.0.1:0";
  if (GetParam() == "Rdma") {
    const std::string why = testing::rdma_uri_or_skip_reason(&uri);
    if (!why.empty()) GTEST_SKIP() << why;
  }
  testing::GuardedMem src(kSize);
  testing::fill_guest(src.data(), kSize, kPage, 5);
  std::vector<uint8_t> shadow(src.data(), src.data() + kSize);

  int pipefd[2];
  ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  // Only the write end goes to the child, under its own number.
  const int child_fd = fcntl(pipefd[1], F_DUPFD, 100);
  ASSERT_GE(child_fd, 0);
  const pid_t child = spawn_destination(uri, child_fd);
  close(child_fd);
  ASSERT_GE(child, 0);
  close(pipefd[1]);
  const std::string addr = read_address(pipefd[0]);
  close(pipefd[0]);
  if (addr.empty()) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    FAIL() << "the destination child never listened on " << uri;
  }

  ExplicitMarkSource marks(kSize / kPage);
  std::vector<std::unique_ptr<DirtySource>> sources;
  // Every page dirty on every sync: the run only ends when the destination is gone.
  sources.push_back(std::make_unique<testing::AllDirty>(
      std::make_unique<testing::DirtySourceProxy>(&marks)));
  testing::GuestWriter writer(src.data(), kSize, kPage, &marks, 9, shadow.data());
  MigrationConfig cfg;
  cfg.max_iterations = 100'000;
  cfg.downtime_limit = std::chrono::milliseconds(0);
  cfg.xbzrle = true;  // the XBZRLE cache and stable copies must not leak into guest memory either
  std::chrono::steady_clock::time_point killed_at{};
  int stops = 0, resumes = 0;
  MigrationHooks h;
  h.stop_guest = [&] { ++stops; writer.stop(); };
  h.resume_guest = [&] { ++resumes; };
  h.on_iteration = [&](const IterationStats& is) {
    if (is.iteration == 2) {
      kill(child, SIGKILL);
      killed_at = std::chrono::steady_clock::now();
    }
  };
  transport::Options o;
  o.channels = 2;
  o.io_timeout = std::chrono::milliseconds(60'000);
  auto channels = transport::connect(addr, o);
  writer.start();
  std::string err;
  MigrationSource source({RamBlock{"ram0", src.data(), kSize, kPage}}, std::move(sources), cfg,
                         std::move(h));
  try {
    source.run(std::move(channels));
  } catch (const MigrationError& e) {
    err = e.what();
  }
  const auto failed_at = std::chrono::steady_clock::now();
  writer.stop();
  int status = 0;
  if (killed_at == std::chrono::steady_clock::time_point{}) kill(child, SIGKILL);
  ASSERT_EQ(waitpid(child, &status, 0), child);

  ASSERT_NE(killed_at, std::chrono::steady_clock::time_point{}) << "ended before iteration 2: "
                                                                << err;
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  EXPECT_NE(err, "") << "the source did not notice its destination died";
  const double secs = std::chrono::duration<double>(failed_at - killed_at).count();
  EXPECT_LT(secs, 30.0) << err;
  EXPECT_EQ(source.last_stats().status, "failed");
  EXPECT_EQ(resumes, stops);  // a guest stopped for a final pass runs again
  EXPECT_EQ(std::memcmp(src.data(), shadow.data(), kSize), 0) << "source memory changed";
  EXPECT_TRUE(src.canaries_intact());
  std::printf("[ peer     ] %s: source failed %.2f s after the kill: %s\n", GetParam().c_str(),
              secs, err.c_str());
}

INSTANTIATE_TEST_SUITE_P(Transports, EnginePeerKilled, ::testing::Values("Tcp", "Rdma"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ferry
