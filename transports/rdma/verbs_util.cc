#include "transports/rdma/verbs_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <new>

namespace ferry::transport::rdma {

std::atomic<uint64_t> g_pinned{0};

std::string wc_text(const ibv_wc& wc) {
  std::string hint;
  if (wc.status == IBV_WC_REM_ACCESS_ERR || wc.status == IBV_WC_RETRY_EXC_ERR ||
      wc.status == IBV_WC_REM_INV_REQ_ERR || wc.status == IBV_WC_REM_OP_ERR) {
    hint = "; the peer is gone (process ended, memory deregistered) or refused the request";
  }
  return std::string(ibv_wc_status_str(wc.status)) + " (status " + std::to_string(wc.status) +
         ", vendor error " + std::to_string(wc.vendor_err) + ")" + hint;
}

const char* opcode_name(ibv_wc_opcode op) {
  switch (op) {
    case IBV_WC_SEND: return "SEND";
    case IBV_WC_RDMA_WRITE: return "RDMA_WRITE";
    case IBV_WC_RECV: return "RECV";
    default: return "work request";
  }
}

const char* event_name(rdma_cm_event_type t) { return rdma_event_str(t); }

int ms_until(Clock::time_point t) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
}

void check_memlock(uint64_t more, int channel, const std::string& peer, const char* what) {
  if (geteuid() == 0) return;  // CAP_IPC_LOCK: the kernel does not count against the limit
  rlimit rl{};
  if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
  const uint64_t need = g_pinned.load() + more;
  if (need <= rl.rlim_cur) return;
  if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_MEMLOCK, &raised) == 0) return;
  }
  throw TransportError(
      channel, peer, ENOMEM,
      std::string(what) + ": RLIMIT_MEMLOCK is " + std::to_string(rl.rlim_cur >> 10) +
          " KiB (hard " +
          (rl.rlim_max == RLIM_INFINITY ? std::string("unlimited")
                                        : std::to_string(rl.rlim_max >> 10)) +
          " KiB) but the rdma transport needs " + std::to_string(need >> 10) +
          " KiB pinned: raise it (`ulimit -l unlimited`, LimitMEMLOCK=infinity in a systemd "
          "unit, or memlock in /etc/security/limits.conf)");
}

void set_nonblocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl >= 0) ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

Buffer::Buffer(size_t bytes) : n(bytes) {
  p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
}

Buffer::~Buffer() {
  if (p) ::munmap(p, n);
}

std::string endpoint_of(const sockaddr* sa) {
  char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
  if (!sa) return "?";
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  ::getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  return "rdma:" + h + ":" + port;
}

AddrInfo resolve(const Uri& uri, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  AddrInfo r;
  const std::string port = std::to_string(uri.port);
  int e = ::getaddrinfo(uri.host.empty() ? nullptr : uri.host.c_str(), port.c_str(), &hints, &r.ai);
  if (e != 0) {
    throw TransportError(-1, uri.to_string(), 0,
                         std::string("cannot resolve '") + uri.host + "': " + gai_strerror(e));
  }
  return r;
}

}  // namespace ferry::transport::rdma
