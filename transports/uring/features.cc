#include "transports/uring/features.h"

#include <liburing.h>

#include <cerrno>

namespace ferry::transport::uring {
namespace {

bool setup_accepts(unsigned flags) {
  io_uring ring;
  io_uring_params p{};
  p.flags = flags;
  p.cq_entries = 64;
  int r = io_uring_queue_init_params(4, &ring, &p);
  if (r < 0) return false;
  io_uring_queue_exit(&ring);
  return true;
}

Features probe() {
  Features f;
  io_uring ring;
  io_uring_params p{};
  int r = io_uring_queue_init_params(4, &ring, &p);
  if (r < 0) {
    f.setup_error = -r;
    return f;
  }
  f.kernel_features = p.features;
  if (io_uring_probe* pr = io_uring_get_probe_ring(&ring)) {
    f.sendmsg = io_uring_opcode_supported(pr, IORING_OP_SENDMSG);
    f.recvmsg = io_uring_opcode_supported(pr, IORING_OP_RECVMSG);
    f.readv = io_uring_opcode_supported(pr, IORING_OP_READV);
    f.writev = io_uring_opcode_supported(pr, IORING_OP_WRITEV);
    f.send_zc = io_uring_opcode_supported(pr, IORING_OP_SEND_ZC);
    f.sendmsg_zc = io_uring_opcode_supported(pr, IORING_OP_SENDMSG_ZC);
    f.async_cancel = io_uring_opcode_supported(pr, IORING_OP_ASYNC_CANCEL);
    io_uring_free_probe(pr);
  }
  io_uring_queue_exit(&ring);
  f.cqsize = setup_accepts(IORING_SETUP_CQSIZE);
  f.coop_taskrun = setup_accepts(IORING_SETUP_COOP_TASKRUN);
  f.taskrun_flag = setup_accepts(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
  f.single_issuer = setup_accepts(IORING_SETUP_SINGLE_ISSUER);
  f.defer_taskrun = setup_accepts(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  return f;
}

}  // namespace

bool Features::ext_arg() const { return kernel_features & IORING_FEAT_EXT_ARG; }
bool Features::nodrop() const { return kernel_features & IORING_FEAT_NODROP; }
bool Features::submit_stable() const { return kernel_features & IORING_FEAT_SUBMIT_STABLE; }

unsigned Features::channel_setup_flags() const {
  unsigned flags = 0;
  if (cqsize) flags |= IORING_SETUP_CQSIZE;
  // Completion work runs only when the driving thread waits in the ring instead of interrupting
  // it: a channel's thread is in the ring whenever it waits, so nothing is delayed. DEFER_TASKRUN
  // (6.1) does that fully but needs one issuing thread: UringChannel::ensure_ring handles that.
  if (defer_taskrun) return flags | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (taskrun_flag) flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  else if (coop_taskrun) flags |= IORING_SETUP_COOP_TASKRUN;
  return flags;
}

std::string Features::describe() const {
  if (setup_error) return "io_uring unavailable (errno " + std::to_string(setup_error) + ")";
  std::string s = "io_uring:";
  auto add = [&s](bool have, const char* name) {
    s += ' ';
    if (!have) s += '!';
    s += name;
  };
  add(sendmsg_zc, "sendmsg_zc");
  add(send_zc, "send_zc");
  add(recvmsg, "recvmsg");
  add(readv && writev, "readv/writev");
  add(async_cancel, "cancel");
  add(ext_arg(), "ext_arg");
  add(nodrop(), "nodrop");
  add(submit_stable(), "submit_stable");
  add(coop_taskrun, "coop_taskrun");
  add(taskrun_flag, "taskrun_flag");
  add(single_issuer, "single_issuer");
  add(defer_taskrun, "defer_taskrun");
  s += "; channels use:";
  unsigned f = channel_setup_flags();
  if (f & IORING_SETUP_COOP_TASKRUN) s += " coop_taskrun";
  if (f & IORING_SETUP_TASKRUN_FLAG) s += " taskrun_flag";
  if (f & IORING_SETUP_CQSIZE) s += " cqsize";
  s += sendmsg_zc ? " sendmsg_zc(large sends, until the kernel reports copying)" : " sendmsg";
  s += "; receive: blocking recvmsg(MSG_WAITALL), ring recvmsg while sends are in flight;"
       " files: ring readv/writev";
  return s;
}

const Features& features() {
  static const Features f = probe();
  return f;
}

}  // namespace ferry::transport::uring
