#include "tests/transports/test_util.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "transports/handshake.h"
#include "transports/tcp/socket.h"

namespace ferry::transport::testing {

TempDir::TempDir() {
  char tmpl[] = "/tmp/ferry-transports-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void fill_pattern(uint8_t* p, size_t n, uint64_t seed, uint64_t off) {
  for (size_t i = 0; i < n; ++i) p[i] = pattern_byte(seed, off + i);
}

int64_t find_mismatch(const uint8_t* p, size_t n, uint64_t seed, uint64_t off) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != pattern_byte(seed, off + i)) return static_cast<int64_t>(i);
  }
  return -1;
}

Scatter make_scatter(uint64_t total, size_t min_piece, size_t max_piece, uint32_t rng_seed) {
  std::mt19937 rng(rng_seed);
  std::uniform_int_distribution<size_t> dist(min_piece, max_piece);
  std::vector<size_t> sizes;
  uint64_t sum = 0;
  while (sum < total) {
    size_t n = std::min<uint64_t>(dist(rng), total - sum);
    sizes.push_back(n);
    sum += n;
  }
  Scatter s;
  s.total = total;
  s.storage.assign(sum + kGap * (sizes.size() + 1), kCanary);
  size_t pos = kGap;
  for (size_t n : sizes) {
    s.iov.push_back(iovec{s.storage.data() + pos, n});
    pos += n + kGap;
  }
  return s;
}

void fill_scatter(Scatter& s, uint64_t seed) {
  uint64_t off = 0;
  for (const iovec& v : s.iov) {
    fill_pattern(static_cast<uint8_t*>(v.iov_base), v.iov_len, seed, off);
    off += v.iov_len;
  }
}

std::string verify_scatter(const Scatter& s, uint64_t seed) {
  uint64_t off = 0;
  const uint8_t* prev_end = s.storage.data();
  for (size_t i = 0; i < s.iov.size(); ++i) {
    const auto* p = static_cast<const uint8_t*>(s.iov[i].iov_base);
    for (const uint8_t* c = prev_end; c < p; ++c) {
      if (*c != kCanary) return "canary overwritten before piece " + std::to_string(i);
    }
    int64_t bad = find_mismatch(p, s.iov[i].iov_len, seed, off);
    if (bad >= 0) {
      return "piece " + std::to_string(i) + " differs at stream offset " +
             std::to_string(off + static_cast<uint64_t>(bad));
    }
    off += s.iov[i].iov_len;
    prev_end = p + s.iov[i].iov_len;
  }
  for (const uint8_t* c = prev_end; c < s.storage.data() + s.storage.size(); ++c) {
    if (*c != kCanary) return "canary overwritten after the last piece";
  }
  return "";
}

Options test_options() {
  Options o;
  // Everything bounded: a broken transport fails a test instead of hanging it.
  o.connect_timeout = std::chrono::milliseconds(5'000);
  o.handshake_timeout = std::chrono::milliseconds(2'000);
  o.accept_timeout = std::chrono::milliseconds(10'000);
  o.io_timeout = std::chrono::milliseconds(10'000);
  o.file_sync = false;
  // The rdma cases listen on the soft-RoCE VM's address, which is not loopback, without a key;
  // the listen rule itself is tested with insecure off (auth_test.cc, AuthPolicy).
  o.insecure = true;
  return o;
}

namespace {

class Errors {
 public:
  void add(const std::string& who, const std::exception_ptr& e) {
    std::string text;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      text = ex.what();
    } catch (...) {
      text = "unknown exception";
    }
    std::lock_guard<std::mutex> lock(mu_);
    all_ += who + ": " + text + "\n";
  }
  std::string text() const { return all_; }

 private:
  std::mutex mu_;
  std::string all_;
};

void drive(std::vector<ChannelPtr>& chans, const ChannelFn& fn, const char* side, Errors& errors,
           std::vector<std::thread>& threads) {
  for (auto& ch : chans) {
    Channel* c = ch.get();
    threads.emplace_back([c, &fn, side, &errors] {
      try {
        fn(*c);
        c->close();
      } catch (...) {
        errors.add(std::string(side) + " " + std::to_string(c->index()), std::current_exception());
      }
    });
  }
}

}  // namespace

std::string run_session(const std::string& listen_uri, uint32_t channels, const Options& send_opts,
                        const Options& recv_opts, const ChannelFn& sender,
                        const ChannelFn& receiver) {
  Errors errors;
  Options so = send_opts;
  so.channels = channels;
  Options ro = recv_opts;
  ro.channels = channels;
  try {
    if (parse_uri(listen_uri).scheme == "file") {
      std::vector<ChannelPtr> writers = connect(listen_uri, so);
      std::vector<std::thread> threads;
      drive(writers, sender, "sender", errors, threads);
      for (auto& t : threads) t.join();
      threads.clear();
      auto listener = listen(listen_uri, ro);
      std::vector<ChannelPtr> readers = listener->accept();
      if (readers.size() != channels) return "reader got " + std::to_string(readers.size()) + " channels";
      drive(readers, receiver, "receiver", errors, threads);
      for (auto& t : threads) t.join();
      return errors.text();
    }
    auto listener = listen(listen_uri, ro);
    auto accepted = std::async(std::launch::async, [&] { return listener->accept(); });
    std::vector<ChannelPtr> senders = connect(listener->address(), so);
    std::vector<ChannelPtr> receivers = accepted.get();
    if (receivers.size() != channels) return "accepted " + std::to_string(receivers.size()) + " channels";
    std::vector<std::thread> threads;
    drive(receivers, receiver, "receiver", errors, threads);
    drive(senders, sender, "sender", errors, threads);
    for (auto& t : threads) t.join();
  } catch (...) {
    errors.add("session", std::current_exception());
  }
  return errors.text();
}

Session open_session(Listener& l, uint32_t channels, const Options& o) {
  Options co = o;
  co.channels = channels;
  auto accepted = std::async(std::launch::async, [&] { return l.accept(); });
  Session s;
  try {
    s.connected = connect(l.address(), co);
  } catch (...) {
    accepted.wait();
    throw;
  }
  s.accepted = accepted.get();
  return s;
}

Fd raw_connect(const std::string& address) {
  const Uri uri = parse_uri(address);
  Options o = test_options();
  o.socket_buffer_bytes = 0;
  o.connect_timeout = std::chrono::milliseconds(2'000);
  return tcp::connect(uri, o, -1);
}

std::vector<uint8_t> hello_bytes(uint32_t magic, uint16_t version, uint64_t session, uint32_t index,
                                 uint32_t count) {
  handshake::Hello h;
  h.magic = magic;
  h.version = version;
  h.role = handshake::Role::kConnector;
  h.session_id = session;
  h.index = index;
  h.count = count;
  handshake::Wire w = handshake::encode(h);
  return std::vector<uint8_t>(w.begin(), w.end());
}

double seconds(const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace ferry::transport::testing
