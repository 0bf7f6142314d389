// `ferry image --size 2G --seed 1 --content mix --output FILE`: writes exactly the image that
// `ferry send` with the same options migrates, so another hypervisor (QEMU's
// memory-backend-file, in bench/peer/vs-qemu) can start from the same bytes.
//
// The image is generated in anonymous memory (as `ferry send` does) and its non-zero pages are
// written with pwrite(); zero pages stay holes of the file. Written with write calls rather than
// through a shared mapping so that a full file system is an error message, not a SIGBUS.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "codecs/zero_page.h"
#include "tools/ferry/cli_util.h"
#include "tools/ferry/commands.h"
#include "tools/ferry/image.h"
#include "tools/ferry/migrate_options.h"
#include "transports/fd.h"

namespace ferry::cli {
namespace {

struct ImageFileOptions {
  MigrateOptions image;
  std::string output;
};

// Writes [p, p + len) at offset; returns 0 or the errno of the failed write.
int write_all(int fd, const uint8_t* p, size_t len, uint64_t offset) {
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

// Writes every run of non-zero pages of mem to fd at the same offset; zero pages are skipped
// (the file was truncated to length first, so they read as zero). Returns 0 or an errno.
int write_nonzero_runs(int fd, const uint8_t* mem, size_t size, size_t page) {
  size_t run_start = 0;
  size_t run_len = 0;
  for (size_t off = 0; off < size; off += page) {
    if (!is_zero_page(mem + off, page)) {
      if (run_len == 0) run_start = off;
      run_len += page;
      continue;
    }
    if (run_len > 0) {
      if (int err = write_all(fd, mem + run_start, run_len, run_start)) return err;
      run_len = 0;
    }
  }
  return run_len > 0 ? write_all(fd, mem + run_start, run_len, run_start) : 0;
}

int run_image(ImageFileOptions& o) {
  const std::string prog = "ferry image";
  if (std::string err = o.image.resolve(); !err.empty()) {
    std::cerr << prog << ": " << err << "\n";
    return kExitUsage;
  }
  const auto t0 = std::chrono::steady_clock::now();
  GuestMemory mem(o.image.size, false);
  const ImageMix mix = generate_image(mem.data(), mem.size(), o.image.page_size, o.image.seed,
                                      o.image.content);

  transport::Fd fd(::open(o.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    std::cerr << prog << ": cannot create " << o.output << ": " << std::strerror(errno) << "\n";
    return kExitFailure;
  }
  int err = ::ftruncate(fd.get(), static_cast<off_t>(o.image.size)) == 0 ? 0 : errno;
  if (err == 0) err = write_nonzero_runs(fd.get(), mem.data(), mem.size(), o.image.page_size);
  // close() may report a delayed write error (some file systems): checked, not dropped.
  if (err == 0 && ::close(fd.release()) != 0) err = errno;
  if (err != 0) {
    std::cerr << prog << ": writing " << o.output << ": " << std::strerror(err) << "\n";
    ::unlink(o.output.c_str());
    return kExitFailure;
  }

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // The hash `ferry recv` prints for the image it received: a check that both got the same.
  const std::string hash = hash_hex(image_hash(mem.data(), mem.size()));
  char line[400];
  std::snprintf(line, sizeof line,
                "image: %s, %s, %s pages, seed %llu, content %s: %llu zero, %llu text, %llu "
                "random pages, image hash %s (%.2f s)\n",
                o.output.c_str(), format_size(o.image.size).c_str(),
                format_size(o.image.page_size).c_str(),
                static_cast<unsigned long long>(o.image.seed),
                image_content_name(o.image.content), static_cast<unsigned long long>(mix.zero),
                static_cast<unsigned long long>(mix.text),
                static_cast<unsigned long long>(mix.random), hash.c_str(), seconds);
  std::cout << line;
  return kExitOk;
}

}  // namespace

std::pair<CLI::App*, Runner> add_image_command(CLI::App& app) {
  auto o = std::make_shared<ImageFileOptions>();
  CLI::App* sub = app.add_subcommand(
      "image",
      "Write the synthetic image that `ferry send` migrates (same --size/--page-size/--seed/"
      "--content) to a file, zero pages as holes; e.g. for QEMU's memory-backend-file");
  add_migrate_options(sub, o->image, kImageOptions);
  sub->add_option("-o,--output", o->output, "the file to write (created or truncated)")
      ->required()
      ->type_name("FILE");
  return {sub, [o] {
            try {
              return run_image(*o);
            } catch (const std::exception& e) {  // the memory for the image, mostly
              std::cerr << "ferry image: " << e.what() << "\n";
              return kExitFailure;
            }
          }};
}

}  // namespace ferry::cli
