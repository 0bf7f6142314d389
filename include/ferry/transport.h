// The channel interface every transport implements: tcp and unix sockets and file streams (over
// io_uring when built with liburing and the kernel allows a ring, otherwise over plain blocking
// syscalls; Channel::send_path() says which), and rdma (verbs RC queue pairs through rdma_cm,
// when built with rdma-core). The engine opens a session of N channels with listen()/connect()
// and moves bytes through Channel without knowing which transport carries them. Shape follows
// UCX's uct interface ops: asynchronous sends completed through a progress call, exact-length
// receives, capability flags and memory registration, which rdma turns into remote placement
// (write_remote() as RDMA WRITE).
//
// Threading: a Channel is driven by one thread at a time (send, poll_completions, wait_all, recv,
// close, register_memory, ...); it may be handed to another thread between calls. abort() is the
// only member that may be called from any thread at any time. Different channels of one session
// are independent and are meant to be driven from different threads.
#pragma once

#include "ferry/export.h"
#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/secure_bytes.h"
#include "ferry/transport_error.h"
#include "ferry/uri.h"

namespace ferry::transport {

// What a channel can do; also exchanged in the handshake.
enum Capability : uint64_t {
  kZeroCopySend = 1u << 0,    // sends may be carried without copying (SEND_ZC, RDMA)
  kRemoteWrite = 1u << 1,     // write_remote() places bytes in the peer's registered memory
  kFixedBuffers = 1u << 2,    // register_memory() pins regions for the kernel (io_uring fixed bufs)
  kOneWay = 1u << 3,          // bytes go one way only (a stream file): the peer can never answer
  // The channel's bytes are TLS 1.3 once the hello (and proof) crossed. Both ends must agree: a
  // hello with it meets a listener without Options::tls (or the reverse) and both refuse.
  kTls = 1u << 4,
};
using Capabilities = uint64_t;

enum class ZeroCopy : uint8_t {
  kAuto,    // zero-copy for large sends until the kernel reports it copied anyway (loopback)
  kAlways,  // zero-copy for every large send, even when the kernel copies
  kNever,
};

struct Options {
  // connect: channels to open. listen: channels to expect (0 = take the count from the first
  // valid handshake). The tcp, unix and rdma listeners take at most 256 channels a session and
  // refuse a first handshake announcing more.
  uint32_t channels = 1;
  // connect: 0 = pick a random id. listen: 0 = accept the first session that arrives, otherwise
  // refuse other ids.
  uint64_t session_id = 0;

  std::chrono::milliseconds connect_timeout{10'000};    // per channel, including retries
  std::chrono::milliseconds handshake_timeout{5'000};   // per connection, each direction
  std::chrono::milliseconds accept_timeout{60'000};     // a whole session on the listener
  // Bound on a blocking recv() or wait_all() that makes no progress at all, so that a peer that
  // goes silent (or a link that stalls) ends the migration with an error instead of blocking
  // run() for good; 0 = wait forever (abort() from another thread is then the way out). Raise it
  // when a phase may legitimately be silent longer: with verify_full the source waits while the
  // destination re-hashes all of its RAM.
  std::chrono::milliseconds io_timeout{60'000};

  // Sends that may be outstanding (queued or awaiting completion); send() blocks beyond it.
  uint32_t max_outstanding_sends = 256;
  // iovecs queued and not yet sent (adjacent buffers count once); send() blocks beyond it.
  uint32_t max_queued_iovecs = 8192;

  ZeroCopy zero_copy = ZeroCopy::kAuto;
  // Kernel submissions smaller than this are plain copies: pinning and the second completion
  // cost more than copying a header.
  size_t zero_copy_threshold = 64 * 1024;
  // SO_SNDBUF/SO_RCVBUF for socket transports (SO_*BUFFORCE when permitted); 0 = kernel
  // autotuning. Remote peers get large buffers to cover the bandwidth-delay product. Peers on
  // this host (loopback, unix) get small ones: there TCP is two memory copies, and with what
  // lies between them still in the CPU cache loopback moved 1.1-1.6x the bytes of 4 MiB
  // buffers in bench/ferry_bench_transports (see transports/README.md).
  int socket_buffer_bytes = 4 << 20;
  int local_socket_buffer_bytes = 512 << 10;
  // Receive through io_uring recvmsg even when none of the channel's sends is in flight (by
  // default those receives block in recvmsg, which measured cheaper per byte).
  bool uring_recv = false;
  // Register memory as io_uring fixed buffers (pinned) in register_memory().
  bool fixed_buffers = true;
  // file transport: fdatasync() each file in close().
  bool file_sync = true;

  // Authentication (tcp, unix and rdma). With a pre-shared key, at least
  // 32 bytes (256 bits) and the same on both ends, every channel's handshake proves it both ways
  // (HKDF-SHA256 and HMAC-SHA256 over both ends' nonces and the session parameters, see
  // transports/auth.h) and a peer without it, or with another key, is refused with a message
  // saying which end lacks what; a listener adopts a session only from a peer that proved it.
  // Without a key no proof is exchanged, and a peer that requires one is refused. listen()
  // refuses a tcp or rdma address that is not loopback without a key unless insecure is set
  // (unix sockets and loopback are fine without). Every copy of the key (each channel keeps
  // one) is wiped when it is freed (SecureBytes; a std::vector<uint8_t> assigns to it).
  SecureBytes psk;
  bool insecure = false;

  // TLS 1.3 on tcp and unix channels, enabled when any file is set (then all three must be):
  // this end's certificate chain and private key (PEM) and the CA (PEM) the peer's certificate
  // must verify against. Both ends verify (the listener requires a client certificate). After
  // the hello and, with a key, the proof, each channel runs a TLS handshake on its socket and
  // its bytes are encrypted in user space by OpenSSL (Channel::send_path() says "tls-user").
  // With psk as well, the proof keeps authenticating the session; TLS adds encryption and an
  // x509 identity. Not for file: or rdma:.
  struct Tls {
    std::string cert_file;
    std::string key_file;
    std::string ca_file;
    bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
  } tls;

  // Accept-side bounds (tcp, unix and rdma listeners), so a peer that opens connections and
  // never finishes a handshake cannot exhaust the listener or crowd out the real source. A peer
  // is an address (tcp, rdma: the IP without the port; unix: the connecting process). Within one
  // accept() call: at most max_pending_connections connections in their handshake at once and
  // max_pending_per_peer from one peer (beyond either, a new connection is closed at once and
  // reported to on_refused); a peer refused max_refusals_per_peer times has its further
  // connections closed at accept until accept() returns (a real source behind the same address,
  // e.g. one NAT, is then shut out too). 0 = no bound.
  uint32_t max_pending_connections = 64;
  uint32_t max_pending_per_peer = 8;
  uint32_t max_refusals_per_peer = 32;

  // Testing hooks: the values this end puts in its handshake.
  uint32_t handshake_magic = 0;    // 0 = the real magic
  uint16_t protocol_version = 0;   // 0 = the current version
};

// A region registered with a channel. key is opaque to the engine: an RDMA rkey to hand to the
// peer; for io_uring the first fixed-buffer slot, or ~0 when the kernel would not pin it (the
// region then still works, unpinned). Valid until deregister_memory() or the channel's
// destruction.
struct MemoryRegion {
  uint32_t id = 0;  // 0 = not registered
  void* addr = nullptr;
  size_t length = 0;
  uint64_t key = 0;
};

// The peer's registered memory as the engine learnt it (e.g. from a control message).
struct RemoteRegion {
  uint64_t addr = 0;
  uint64_t length = 0;
  uint64_t key = 0;
};

struct ChannelStats {
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t sends = 0;                   // send() calls
  uint64_t send_submissions = 0;        // kernel send operations (after batching)
  uint64_t zero_copy_submissions = 0;
  uint64_t zero_copy_copied = 0;        // zero-copy notifications saying the kernel copied
  uint64_t fixed_buffer_submissions = 0;  // zero-copy sends from registered (fixed) buffers
  uint64_t recv_submissions = 0;
  uint64_t ring_enters = 0;             // io_uring_enter / submit calls
};

class FERRY_API Channel {
 public:
  // Called once per send(), in send order, on the thread driving the channel (from inside send,
  // poll_completions, wait_all, recv or close) when the kernel no longer needs the send's
  // buffers. It must not call into the channel.
  using SendCallback = std::function<void(uint64_t cookie)>;

  virtual ~Channel() = default;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  uint32_t index() const { return index_; }
  uint32_t count() const { return count_; }
  uint64_t session_id() const { return session_id_; }
  const std::string& peer() const { return peer_; }
  Capabilities peer_capabilities() const { return peer_caps_; }
  virtual Capabilities capabilities() const = 0;
  virtual ChannelStats stats() const = 0;
  // How sends are carried right now, e.g. "io_uring sendmsg (zero-copy off: kernel copied)".
  virtual std::string send_path() const = 0;
  // What protects the channel's bytes on the wire: "none", or "tls-user" (TLS 1.3 encrypted in
  // user space by OpenSSL, Options::tls). Room for "ktls" (the kernel's TLS) later.
  virtual std::string encryption() const { return "none"; }

  void set_send_callback(SendCallback cb) { on_send_ = std::move(cb); }

  // Gather send. The iovec array is copied; the bytes it points to stay owned by the caller and
  // must not change until the completion for cookie is reported. May block (bounded by
  // io_timeout) while max_outstanding_sends or max_queued_iovecs are in use. Throws
  // TransportError; after an error the channel only accepts abort()/close()/destruction, and
  // the buffers of sends never reported are free once close() returned or the channel is gone.
  virtual void send(std::span<const iovec> iov, uint64_t cookie) = 0;
  // Reports finished sends without blocking; returns how many were reported.
  virtual size_t poll_completions() = 0;
  // Blocks until every send so far has completed and been reported.
  virtual void wait_all() = 0;
  // send() + wait_all() for one buffer list.
  void send_all(std::span<const iovec> iov);
  void send_all(const void* data, size_t len);

  // Receives exactly the total length of iov into the caller's memory (scatter, in place).
  // End of stream before that is an error naming how many bytes of how many arrived.
  virtual void recv(std::span<const iovec> iov) = 0;
  void recv(void* data, size_t len);

  // After a failed send (or abort()), by the thread driving the channel and before close():
  // copies up to len bytes the peer sent before it went away, so the engine can learn why the
  // peer gave up instead of only that the link broke. Waits at most `wait` for the first byte
  // (a channel already aborted answers at once). Returns the bytes read; 0 when nothing is
  // there, at end of stream, or where the transport cannot tell (the default: rdma, whose
  // queue pair flushes its receives on error, and files). Never throws.
  virtual size_t recv_leftover(void* data, size_t len, std::chrono::milliseconds wait) noexcept;

  // Orderly: waits for outstanding sends, then tells the peer no more data follows.
  virtual void close() = 0;
  // Immediate, from any thread: blocked and later calls fail, the peer sees the connection drop.
  virtual void abort() noexcept = 0;

  // Registers [addr, addr+len) once so sends from (and, for RDMA, placement into) it are cheap.
  virtual MemoryRegion register_memory(void* addr, size_t len) = 0;
  virtual void deregister_memory(const MemoryRegion& region) = 0;
  // Remote placement (kRemoteWrite): writes local bytes at offset within the peer's region,
  // completing through the send callback like send(). Throws ENOTSUP elsewhere.
  virtual void write_remote(std::span<const iovec> local, const RemoteRegion& remote,
                            uint64_t offset, uint64_t cookie);

 protected:
  struct Identity {
    uint32_t index = 0;
    uint32_t count = 1;
    uint64_t session_id = 0;
    std::string peer;
    Capabilities peer_caps = 0;
  };
  explicit Channel(Identity id)
      : index_(id.index), count_(id.count), session_id_(id.session_id),
        peer_(std::move(id.peer)), peer_caps_(id.peer_caps) {}

  SendCallback on_send_;

 private:
  uint32_t index_;
  uint32_t count_;
  uint64_t session_id_;
  std::string peer_;
  Capabilities peer_caps_;
};

using ChannelPtr = std::unique_ptr<Channel>;

// Refused connections (bad magic, wrong version, garbage, silence) are closed and reported here;
// they do not disturb the session being accepted.
using RefusalCallback = std::function<void(const TransportError&)>;

class FERRY_API Listener {
 public:
  virtual ~Listener() = default;
  // Where peers can connect, with the port the kernel chose (e.g. "tcp:127.0.0.1:40123").
  virtual std::string address() const = 0;
  // Accepts the channels of one session and returns them ordered by index. Throws when
  // accept_timeout passes first, naming the last refusal if there was one.
  virtual std::vector<ChannelPtr> accept() = 0;
  // From any thread, any time: an accept() in progress ends within about 100 ms, and every
  // later one at once, throwing a TransportError (ECANCELED) that says it was cancelled. The
  // listener stays cancelled; channels accept() already returned are not affected.
  virtual void cancel() noexcept = 0;
  void on_refused(RefusalCallback cb) { on_refused_ = std::move(cb); }

 protected:
  RefusalCallback on_refused_;
};

FERRY_API std::unique_ptr<Listener> listen(const Uri& uri, const Options& options = {});
FERRY_API std::unique_ptr<Listener> listen(std::string_view uri, const Options& options = {});
// Opens options.channels channels of one session, ordered by index.
FERRY_API std::vector<ChannelPtr> connect(const Uri& uri, const Options& options = {});
FERRY_API std::vector<ChannelPtr> connect(std::string_view uri, const Options& options = {});

// SPDK-style registry: a scheme maps to its factories. tcp, unix, file and rdma are built in (in
// a build without rdma-core, rdma: is refused with an error saying so); registering an existing
// scheme replaces it.
struct TransportFactory {
  std::function<std::unique_ptr<Listener>(const Uri&, const Options&)> listen;
  std::function<std::vector<ChannelPtr>(const Uri&, const Options&)> connect;
};
FERRY_API void register_transport(const std::string& scheme, TransportFactory factory);

}  // namespace ferry::transport
