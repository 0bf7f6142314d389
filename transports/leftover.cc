#include "transports/leftover.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

namespace ferry::transport {

size_t read_leftover(int fd, void* data, size_t len, std::chrono::milliseconds wait) noexcept {
  using Clock = std::chrono::steady_clock;
  if (fd < 0 || len == 0) return 0;
  const auto deadline = Clock::now() + wait;
  auto* out = static_cast<char*>(data);
  size_t got = 0;
  while (got < len) {
    const ssize_t r = ::recv(fd, out + got, len - got, MSG_DONTWAIT);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) break;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left));
    if (ready == 0 || (ready < 0 && errno != EINTR)) break;
  }
  return got;
}

}  // namespace ferry::transport
