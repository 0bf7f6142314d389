// A build with io_uring on a host that refuses it (a seccomp'd container, io_uring_disabled):
// this binary installs a real seccomp filter that fails io_uring_setup with ENOSYS before
// anything probes io_uring, so every tcp, unix and file channel must fall back to the plain
// blocking-syscall channel and say so in send_path().
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <mutex>

#include "tests/transports/test_util.h"

namespace ferry::transport {
namespace {

using namespace testing;
using ::testing::HasSubstr;

// Fails io_uring_setup with ENOSYS, allows everything else (x86-64 and aarch64 share the
// syscall number, and the filter checks the number only).
void refuse_io_uring() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    std::perror("installing the seccomp filter");
    std::exit(2);
  }
}

void moves_bytes_through_the_plain_channel(const std::string& uri, const char* call) {
  std::vector<uint8_t> src(8 << 20), dst(src.size());
  fill_pattern(src.data(), src.size(), 5, 0);
  std::mutex mu;
  std::vector<std::string> paths;
  std::atomic<uint64_t> completed{0};
  std::string err = run_session(
      uri, 2, test_options(), test_options(),
      [&](Channel& ch) {
        ch.set_send_callback([&](uint64_t) { ++completed; });
        MemoryRegion mr = ch.register_memory(src.data(), src.size());
        EXPECT_EQ(mr.key, ~uint64_t{0}) << "nothing is pinned without io_uring";
        for (size_t off = 0; off < src.size(); off += 1 << 20) {
          iovec v{src.data() + off, 1 << 20};
          ch.send(std::span<const iovec>(&v, 1), off);
        }
        ch.wait_all();
        std::lock_guard<std::mutex> lock(mu);
        paths.push_back(ch.send_path());
        ch.deregister_memory(mr);
      },
      [&](Channel& ch) {
        ch.recv(dst.data(), dst.size());
        EXPECT_EQ(find_mismatch(dst.data(), dst.size(), 5, 0), -1);
      });
  ASSERT_EQ(err, "");
  EXPECT_EQ(completed.load(), 2u * 8u);  // two channels, 8 sends each
  ASSERT_EQ(paths.size(), 2u);
  for (const std::string& path : paths) {
    EXPECT_THAT(path, HasSubstr(call));
    EXPECT_THAT(path, HasSubstr("io_uring unavailable: Function not implemented"));
  }
}

TEST(IoUringRefused, TcpFallsBackToPlainSockets) {
  moves_bytes_through_the_plain_channel("tcp:127.0.0.1:0", "blocking sendmsg");
}

TEST(IoUringRefused, UnixFallsBackToPlainSockets) {
  TempDir dir;
  moves_bytes_through_the_plain_channel("unix:" + dir.path() + "/s", "blocking sendmsg");
}

TEST(IoUringRefused, FileFallsBackToPlainWrites) {
  TempDir dir;
  moves_bytes_through_the_plain_channel("file:" + dir.path() + "/f", "blocking pwritev");
}

}  // namespace
}  // namespace ferry::transport

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ferry::transport::refuse_io_uring();
  return RUN_ALL_TESTS();
}
