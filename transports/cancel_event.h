// Listener::cancel() for accept loops that wait in poll(): an eventfd that cancel() makes
// readable, so the loop puts it in its poll set and wakes at once instead of at the next timeout.
// Stays set once signalled (a listener is cancelled for good).
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

#include "ferry/transport_error.h"
#include "transports/fd.h"

namespace ferry::transport {

class CancelEvent {
 public:
  CancelEvent() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!fd_) throw TransportError(-1, "", errno, "eventfd for accept cancellation");
  }

  // Any thread; async-signal-safe apart from the atomic store.
  void signal() noexcept {
    set_.store(true);
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof one);
  }
  bool is_set() const noexcept { return set_.load(); }
  // For the accept loop's poll set (readable once signalled).
  pollfd poll_entry() const { return pollfd{fd_.get(), POLLIN, 0}; }

  // What accept() throws once cancelled.
  void throw_if_set(const std::string& address) const {
    if (is_set()) throw TransportError(-1, address, ECANCELED, "accept cancelled");
  }

 private:
  Fd fd_;
  std::atomic<bool> set_{false};
};

}  // namespace ferry::transport
