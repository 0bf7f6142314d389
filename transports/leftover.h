// What a stream socket still holds from a peer that went away: Channel::recv_leftover() of the
// io_uring and plain channels. A peer that fails sends its reason and closes; its reset ends our
// sends, but the bytes it sent before stay readable in the socket's receive queue (tcp and unix
// both return queued data before the error), also after our own shutdown().
#pragma once

#include <chrono>
#include <cstddef>

namespace ferry::transport {

// Up to len bytes from fd, waiting at most `wait` for them; 0 on nothing, end of stream or
// error. Never blocks beyond `wait`: poll() plus non-blocking receives.
size_t read_leftover(int fd, void* data, size_t len, std::chrono::milliseconds wait) noexcept;

}  // namespace ferry::transport
