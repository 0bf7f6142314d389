#include "engine/stream/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "engine/stream/block_name.h"
#include "transports/file/file_transport.h"

namespace ferry::stream {
namespace {

[[noreturn]] void throw_errno(const std::string& what, const std::filesystem::path& path) {
  throw std::system_error(errno, std::generic_category(), what + " " + path.string());
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

}  // namespace

std::vector<uint8_t> read_file(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw_errno("cannot open", path);
  std::vector<uint8_t> data;
  // Grow as we go rather than trusting st_size: works for pipes and /dev/stdin too.
  size_t used = 0;
  for (;;) {
    if (data.size() - used < 65536) data.resize(std::max<size_t>(data.size() * 2, 1 << 20));
    ssize_t n = ::read(fd.get(), data.data() + used, data.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot read", path);
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  data.resize(used);
  return data;
}

std::function<ChannelFile(uint32_t index)> channel_files(const std::filesystem::path& path) {
  return [base = path.string()](uint32_t index) {
    ChannelFile f;
    f.name = transport::file::channel_path(base, index);
    try {
      f.bytes = read_file(f.name);
    } catch (const std::system_error& e) {
      f.error = e.code().message();
    }
    return f;
  };
}

std::vector<std::filesystem::path> extract_ram(const RamImage& ram,
                                               const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::vector<std::filesystem::path> written;
  for (const auto& block : ram.blocks()) {
    auto path = dir / (block_file_name(block->name()) + ".bin");
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) throw_errno("cannot create", path);
    auto bytes = block->bytes();
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("cannot write", path);
      }
      done += static_cast<size_t>(n);
    }
    if (::close(fd.release()) != 0) throw_errno("cannot write", path);
    written.push_back(path);
  }
  return written;
}

}  // namespace ferry::stream
