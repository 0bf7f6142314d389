#include "transports/file/file_transport.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "transports/handshake.h"
#include "transports/stream_channel.h"

namespace ferry::transport::file {
namespace {

namespace hs = handshake;

ChannelPtr make_channel(Fd fd, const Options& o, const hs::Hello& h, bool writer,
                        std::string peer) {
  StreamChannelSpec c;
  c.file = true;
  c.transport = "file";
  c.fd = std::move(fd);
  c.file_offset = hs::kSize;
  c.file_writer = writer;
  c.options = o;
  c.index = h.index;
  c.count = h.count;
  c.session_id = h.session_id;
  c.peer = std::move(peer);
  return make_stream_channel(std::move(c));
}

class FileListener final : public Listener {
 public:
  FileListener(Uri uri, const Options& o) : uri_(std::move(uri)), opts_(o) {}
  std::string address() const override { return uri_.to_string(); }
  std::vector<ChannelPtr> accept() override;
  // Reading files never waits for a peer: accept() only has to check the flag between files.
  void cancel() noexcept override { cancelled_.store(true); }

 private:
  // Opens channel i's file and checks its hello against what the session so far says.
  Fd open_checked(uint32_t i, hs::Hello* expect);

  Uri uri_;
  Options opts_;
  std::atomic<bool> cancelled_{false};
};

Fd FileListener::open_checked(uint32_t i, hs::Hello* expect) {
  const std::string path = channel_path(uri_.path, i);
  const std::string peer = "file:" + path;
  const int idx = static_cast<int>(i);
  if (cancelled_.load()) throw TransportError(idx, peer, ECANCELED, "accept cancelled");
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw TransportError(idx, peer, errno, "open for reading");
  hs::Wire w{};
  int err = 0;
  size_t got = hs::read_until(fd.get(), w.data(), w.size(),
                              hs::Clock::now() + opts_.handshake_timeout, &err);
  if (got < w.size()) {
    throw TransportError(idx, peer, err,
                         "file holds " + std::to_string(got) + " of the " +
                             std::to_string(hs::kSize) + " bytes of a ferry stream header");
  }
  const hs::Hello h = hs::decode(w);
  std::string msg;
  if (hs::check_basic(*expect, h, hs::Role::kFileWriter, &msg) != hs::Status::kOk) {
    throw TransportError(idx, peer, 0, "refused stream: " + msg);
  }
  hs::Status s = hs::Status::kOk;
  if (expect->session_id && h.session_id != expect->session_id) s = hs::Status::kSessionMismatch;
  else if (expect->count && h.count != expect->count) s = hs::Status::kCountMismatch;
  else if (h.count == 0 || h.index != i) s = hs::Status::kIndexOutOfRange;
  if (s != hs::Status::kOk) {
    std::string m = hs::mismatch_message(s, *expect, h);
    if (s == hs::Status::kIndexOutOfRange) {
      m = "file for channel " + std::to_string(i) + " says it is channel " +
          std::to_string(h.index) + " of " + std::to_string(h.count);
    }
    throw TransportError(idx, peer, 0, "refused stream: " + m);
  }
  expect->session_id = h.session_id;
  expect->count = h.count;
  return fd;
}

std::vector<ChannelPtr> FileListener::accept() {
  hs::Hello expect = hs::local_hello(opts_, hs::Role::kAcceptor, opts_.session_id, 0,
                                     opts_.channels, 0);
  std::vector<Fd> fds;
  fds.push_back(open_checked(0, &expect));
  for (uint32_t i = 1; i < expect.count; ++i) fds.push_back(open_checked(i, &expect));
  std::vector<ChannelPtr> out;
  for (uint32_t i = 0; i < expect.count; ++i) {
    hs::Hello h = expect;
    h.index = i;
    out.push_back(make_channel(std::move(fds[i]), opts_, h, false,
                               "file:" + channel_path(uri_.path, i)));
  }
  return out;
}

}  // namespace

std::string channel_path(const std::string& base, uint32_t index) {
  return index == 0 ? base : base + "." + std::to_string(index);
}

std::unique_ptr<Listener> listen(const Uri& uri, const Options& options) {
  return std::make_unique<FileListener>(uri, options);
}

std::vector<ChannelPtr> connect(const Uri& uri, const Options& options) {
  if (options.channels == 0) {
    throw TransportError(-1, uri.to_string(), EINVAL, "connect: options.channels must be >= 1");
  }
  const uint64_t session = options.session_id ? options.session_id : hs::random_session_id();
  std::vector<ChannelPtr> out;
  for (uint32_t i = 0; i < options.channels; ++i) {
    const std::string path = channel_path(uri.path, i);
    const int idx = static_cast<int>(i);
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throw TransportError(idx, "file:" + path, errno, "open for writing");
    const hs::Hello h = hs::local_hello(options, hs::Role::kFileWriter, session, i,
                                        options.channels, 0);
    const hs::Wire w = hs::encode(h);
    if (::pwrite(fd.get(), w.data(), w.size(), 0) != static_cast<ssize_t>(w.size())) {
      throw TransportError(idx, "file:" + path, errno, "writing the stream header");
    }
    out.push_back(make_channel(std::move(fd), options, h, true, "file:" + path));
  }
  return out;
}

}  // namespace ferry::transport::file
