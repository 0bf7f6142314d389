// What the running kernel's io_uring offers, probed once per process, and which of it the
// channels use. Old kernels lose features (zero-copy, cooperative task running), never the
// transport: every missing piece has a plain fallback.
#pragma once

#include <string>

namespace ferry::transport::uring {

struct Features {
  int setup_error = 0;  // errno if io_uring itself is unavailable (then nothing below holds)
  unsigned kernel_features = 0;  // io_uring_params.features of a probe ring

  // Opcodes.
  bool sendmsg = false;
  bool recvmsg = false;
  bool readv = false;
  bool writev = false;
  bool send_zc = false;
  bool sendmsg_zc = false;
  bool async_cancel = false;

  // Setup flags the kernel accepts.
  bool coop_taskrun = false;
  bool taskrun_flag = false;
  bool single_issuer = false;
  bool defer_taskrun = false;
  bool cqsize = false;

  bool ext_arg() const;       // timeouts on waits without a timeout SQE
  bool nodrop() const;        // completions are never lost when the CQ ring is full
  bool submit_stable() const; // iovec arrays may change once submitted

  // The setup flags channels create their rings with.
  unsigned channel_setup_flags() const;
  // One line for logs and benchmark context, e.g.
  // "io_uring: sendmsg_zc send_zc coop_taskrun ...; channels use: ...".
  std::string describe() const;
};

const Features& features();

}  // namespace ferry::transport::uring
