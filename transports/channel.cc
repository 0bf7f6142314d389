#include <cerrno>

#include "ferry/transport.h"

namespace ferry::transport {

void Channel::send_all(std::span<const iovec> iov) {
  send(iov, 0);
  wait_all();
}

void Channel::send_all(const void* data, size_t len) {
  iovec v{const_cast<void*>(data), len};
  send_all(std::span<const iovec>(&v, 1));
}

void Channel::recv(void* data, size_t len) {
  iovec v{data, len};
  recv(std::span<const iovec>(&v, 1));
}

size_t Channel::recv_leftover(void*, size_t, std::chrono::milliseconds) noexcept { return 0; }

void Channel::write_remote(std::span<const iovec>, const RemoteRegion&, uint64_t, uint64_t) {
  throw TransportError(static_cast<int>(index()), peer(), ENOTSUP,
                       "write_remote: this transport has no remote placement (kRemoteWrite)");
}

}  // namespace ferry::transport
