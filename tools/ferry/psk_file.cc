#include "tools/ferry/psk_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "transports/fd.h"

namespace ferry::cli {
namespace {

std::string mode_text(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// What fstat found wrong with the file, or "".
std::string check_file(const std::string& path, const struct stat& st) {
  const std::string where = "--psk-file " + path + ": ";
  if (!S_ISREG(st.st_mode)) return where + "not a regular file";
  if (st.st_mode & 077) {
    return where + "mode " + mode_text(st.st_mode) +
           " lets group or others access the key; make it private (chmod 600 " + path + ")";
  }
  if (st.st_size < static_cast<off_t>(kMinPskFileBytes)) {
    return where + "holds " + std::to_string(st.st_size) + " bytes; a key needs at least " +
           std::to_string(kMinPskFileBytes) + " (256 bits), e.g. head -c 32 /dev/urandom";
  }
  if (st.st_size > static_cast<off_t>(kMaxPskFileBytes)) {
    return where + "holds " + std::to_string(st.st_size) + " bytes; a key file holds at most " +
           std::to_string(kMaxPskFileBytes);
  }
  return "";
}

}  // namespace

std::string read_psk_file(const std::string& path, SecureBytes* key) {
  // O_NONBLOCK: a FIFO put in the key's place must not hang the open; fstat refuses it next.
  transport::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) return "--psk-file " + path + ": " + std::strerror(errno);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return "--psk-file " + path + ": " + std::strerror(errno);
  if (std::string err = check_file(path, st); !err.empty()) return err;
  key->assign(static_cast<size_t>(st.st_size), 0);
  size_t got = 0;
  while (got < key->size()) {
    const ssize_t n = ::read(fd.get(), key->data() + got, key->size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      key->clear();
      return "--psk-file " + path + ": " +
             (n < 0 ? std::strerror(errno) : "the file shrank while it was read");
    }
    got += static_cast<size_t>(n);
  }
  return "";
}

}  // namespace ferry::cli
