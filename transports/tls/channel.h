// A tcp or unix channel whose bytes are TLS 1.3, encrypted in user space by OpenSSL
// (encryption() == "tls-user"), on the blocking socket the handshake left behind (handshake.h).
//
// It behaves as the plain channel does (transports/plain/channel.h): send() has written every
// byte into TLS records on the socket before it returns and then reports its completion, so
// wait_all() and poll_completions() have nothing left to do; recv() reads records until the
// exact length arrived; io_timeout bounds each blocking call (SO_SNDTIMEO / SO_RCVTIMEO); abort()
// shuts the socket down from any thread. Small iovecs are gathered into one staging buffer so
// that a header is not a record of its own; large ones go to SSL_write_ex in place. close()
// sends TLS close_notify, so the peer tells an orderly end from a cut connection.
//
// A later kernel-TLS channel (the tls TCP ULP, keys handed over after this handshake) would
// take the same place behind the same Options::tls; this machine's kernel has none.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "ferry/transport.h"
#include "transports/fd.h"
#include "transports/stream_channel.h"
#include "transports/tls/context.h"

namespace ferry::transport::tls {

class TlsChannel final : public Channel {
 public:
  explicit TlsChannel(StreamChannelSpec spec);
  ~TlsChannel() override;

  Capabilities capabilities() const override { return kTls; }
  ChannelStats stats() const override { return stats_; }
  std::string send_path() const override;
  std::string encryption() const override { return "tls-user"; }

  void send(std::span<const iovec> iov, uint64_t cookie) override;
  size_t poll_completions() override;
  void wait_all() override;
  void recv(std::span<const iovec> iov) override;
  void close() override;
  void abort() noexcept override;
  MemoryRegion register_memory(void* addr, size_t len) override;
  void deregister_memory(const MemoryRegion& region) override;

  static constexpr uint64_t kNoFixedBuffer = ~uint64_t{0};
  // Iovecs shorter than this are copied into the staging buffer, which holds this much.
  static constexpr size_t kStageBytes = 64 * 1024;

 private:
  void check_usable(const char* op);
  [[noreturn]] void fail(int err, const std::string& what);
  // Sends or receives one contiguous buffer; done/total for messages.
  void write_all(const uint8_t* p, size_t n, uint64_t* done, uint64_t total);
  void read_all(uint8_t* p, size_t n, uint64_t* done, uint64_t total);
  void flush_stage(uint64_t* done, uint64_t total);
  // Turns a failed SSL call into the channel's error.
  [[noreturn]] void ssl_failed(int ret, const char* op, uint64_t done, uint64_t total);

  std::string transport_;
  Fd fd_;
  SslPtr ssl_;
  std::mutex fd_mutex_;  // abort() from another thread against close() releasing fd_
  Options opts_;
  std::string description_;

  std::atomic<bool> aborted_{false};
  bool closed_ = false;
  bool failed_ = false;
  int fail_errno_ = 0;
  std::string fail_what_;

  std::vector<uint8_t> stage_;  // preallocated, kStageBytes
  size_t staged_ = 0;
  std::vector<uint32_t> regions_;
  uint32_t next_region_id_ = 1;
  ChannelStats stats_;
};

}  // namespace ferry::transport::tls
