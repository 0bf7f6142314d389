// `ferry demo`, `ferry send --connect URI` and `ferry recv --listen URI`: a live migration of a
// synthetic guest memory image that a writer thread keeps dirtying.
//
//   recv: allocates an empty image, accepts one session, runs MigrationDestination, checks
//         that the engine's per-block hashes matched and prints its image hash.
//   send: builds the image from --seed/--size, starts the writer and kernel dirty tracking,
//         connects and runs MigrationSource; prints the summary and the image hash at
//         switchover (writer stopped).
//   demo: both on one host: the parent listens, forks the destination (before it creates any
//         thread, ring or userfaultfd), then sends to it; the child's image hash comes back
//         over a pipe and must equal the source's.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <thread>

#include "tools/ferry/cli_util.h"
#include "tools/ferry/commands.h"
#include "tools/ferry/image.h"
#include "tools/ferry/migrate_options.h"
#include "tools/ferry/session.h"

namespace ferry::cli {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// What the demo's destination child reports to the parent over the pipe.
struct ChildReport {
  uint32_t ok = 0;
  uint32_t verified = 0;
  uint64_t hash = 0;
  uint64_t normal = 0, zero = 0, xbzrle = 0, lz4 = 0, zero_skipped = 0, wire_bytes = 0;
  uint64_t placed = 0;
  uint32_t iterations = 0;
  uint32_t devices = 0;
  double seconds = 0;
  char error[1024] = {};
};

void print_destination(std::ostream& out, const DestinationStats& d) {
  char buf[300];
  std::snprintf(buf, sizeof buf,
                "destination:   %.1f MiB received in %.3f s over %u iteration(s); pages normal "
                "%llu, zero %llu (%llu already zero, not written), xbzrle %llu, lz4 %llu\n",
                static_cast<double>(d.wire_bytes) / kMiB, d.seconds, d.iterations,
                static_cast<unsigned long long>(d.pages.normal),
                static_cast<unsigned long long>(d.pages.zero),
                static_cast<unsigned long long>(d.zero_pages_skipped),
                static_cast<unsigned long long>(d.pages.xbzrle),
                static_cast<unsigned long long>(d.pages.lz4));
  out << buf;
  if (d.devices) {
    out << "devices:       " << d.devices << " loaded, equal to the seed's state\n";
  }
}

bool write_all(int fd, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t r = ::write(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

size_t read_all(int fd, void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, b + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

// Waits for the child, killing it if it does not end within `grace`.
int reap(pid_t pid, std::chrono::milliseconds grace) {
  const auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int run_demo(MigrateOptions o) {
  const std::string prog = "ferry demo";
  if (std::string err = o.resolve(); !err.empty()) {
    std::cerr << prog << ": " << err << "\n";
    return kExitUsage;
  }
  // rdma: verbs and rdma_cm state must not cross a fork (the child could not use the parent's
  // device contexts), so the destination child listens itself and reports its address over
  // a pipe; the parent touches no RDMA device before it connects.
  const bool listen_in_child = o.uri.rfind("rdma:", 0) == 0;
  std::unique_ptr<transport::Listener> listener;
  if (!listen_in_child) {
    try {
      listener = transport::listen(o.uri, o.transport_options(o.channels));
    } catch (const std::exception& e) {
      std::cerr << prog << ": cannot listen on " << o.uri << ": " << e.what() << "\n";
      return kExitFailure;
    }
  }
  int pfd[2], afd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0 || ::pipe2(afd, O_CLOEXEC) != 0) {
    std::cerr << prog << ": pipe: " << std::strerror(errno) << "\n";
    return kExitFailure;
  }
  std::cout.flush();
  std::cerr.flush();
  const pid_t parent = ::getpid();
  // Fork while this process is still single-threaded and owns no ring or userfaultfd: the
  // child only inherits the listening socket.
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::cerr << prog << ": fork: " << std::strerror(errno) << "\n";
    return kExitFailure;
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(kExitFailure);
    ::signal(SIGINT, SIG_IGN);  // the parent cancels; the child then sees the session end
    ::close(pfd[0]);
    ::close(afd[0]);
    RecvOutcome r;
    if (listen_in_child) {
      try {
        listener = transport::listen(o.uri, o.transport_options(o.channels));
      } catch (const std::exception& e) {
        r.error = "cannot listen on " + o.uri + ": " + e.what();
      }
    }
    if (listener && listen_in_child) {
      const std::string a = listener->address();
      const uint32_t n = static_cast<uint32_t>(a.size());
      write_all(afd[1], &n, sizeof n);
      write_all(afd[1], a.data(), a.size());
    }
    ::close(afd[1]);  // the parent reads the address (rdma) or nothing (it listened itself)
    if (listener) {
      try {
        auto mem = destination_memory(o);
        r = receive_image(o, *mem, *listener);
      } catch (const std::exception& e) {
        r.error = std::string("destination guest memory: ") + e.what();
      }
    }
    ChildReport rep;
    rep.ok = r.ok;
    rep.verified = r.stats.verified;
    rep.hash = r.hash;
    rep.normal = r.stats.pages.normal;
    rep.zero = r.stats.pages.zero;
    rep.xbzrle = r.stats.pages.xbzrle;
    rep.lz4 = r.stats.pages.lz4;
    rep.zero_skipped = r.stats.zero_pages_skipped;
    rep.placed = r.stats.placed_pages;
    rep.wire_bytes = r.stats.wire_bytes;
    rep.iterations = r.stats.iterations;
    rep.devices = r.stats.devices;
    rep.seconds = r.stats.seconds;
    std::snprintf(rep.error, sizeof rep.error, "%s", r.error.c_str());
    write_all(pfd[1], &rep, sizeof rep);
    ::_exit(r.ok ? kExitOk : kExitFailure);
  }
  ::close(pfd[1]);
  ::close(afd[1]);
  std::string address;
  if (listener) {
    address = listener->address();
  } else {
    uint32_t n = 0;
    if (read_all(afd[0], &n, sizeof n) == sizeof n && n < 4096) {
      address.resize(n);
      if (read_all(afd[0], address.data(), n) != n) address.clear();
    }
  }
  ::close(afd[0]);
  if (address.empty()) {  // the child could not listen: its report says why
    ChildReport rep;
    const size_t got = read_all(pfd[0], &rep, sizeof rep);
    ::close(pfd[0]);
    reap(pid, std::chrono::seconds(10));
    std::cerr << prog << ": destination: "
              << (got == sizeof rep ? std::string(rep.error) : std::string("ended without a report"))
              << "\n";
    return kExitFailure;
  }
  if (!o.quiet) {
    std::cout << "destination: process " << pid << " listening on " << address << "\n";
  }
  SendOutcome s = send_image(o, address, std::cout);
  if (!s.ok) ::kill(pid, SIGTERM);

  ChildReport rep;
  const size_t got = read_all(pfd[0], &rep, sizeof rep);
  ::close(pfd[0]);
  const int status = reap(pid, std::chrono::seconds(10));
  const bool child_ok = got == sizeof rep && rep.ok && WIFEXITED(status) &&
                        WEXITSTATUS(status) == 0;

  if (!s.ok) {
    std::cerr << prog << ": migration failed: " << s.error << "\n";
    if (got == sizeof rep && !rep.ok && rep.error[0] != '\0') {
      std::cerr << prog << ": destination: " << rep.error << "\n";
    }
    write_outputs(o, s, std::cout, prog);
    return kExitFailure;
  }
  bool ok = write_outputs(o, s, std::cout, prog);
  if (!child_ok) {
    std::cerr << prog << ": destination failed: "
              << (got == sizeof rep ? std::string(rep.error)
                                    : "process ended without a report (status " +
                                          std::to_string(status) + ")")
              << "\n";
    return kExitFailure;
  }
  if (!o.quiet) {
    DestinationStats d;
    d.pages.normal = rep.normal;
    d.pages.zero = rep.zero;
    d.pages.xbzrle = rep.xbzrle;
    d.pages.lz4 = rep.lz4;
    d.zero_pages_skipped = rep.zero_skipped;
    d.placed_pages = rep.placed;
    d.wire_bytes = rep.wire_bytes;
    d.iterations = rep.iterations;
    d.devices = rep.devices;
    d.seconds = rep.seconds;
    print_destination(std::cout, d);
  }
  if (rep.hash != s.source_hash) {
    std::cout << "verification FAILED: source image hash " << hash_hex(s.source_hash)
              << " at switchover, destination image hash " << hash_hex(rep.hash) << "\n";
    return kExitFailure;
  }
  if (o.verify != "off" && (!s.stats.verified || !rep.verified)) {
    std::cout << "verification FAILED: image hashes match (" << hash_hex(rep.hash)
              << ") but the engine's per-block check did not pass (source "
              << (s.stats.verified ? "yes" : "no") << ", destination "
              << (rep.verified ? "yes" : "no") << ")\n";
    return kExitFailure;
  }
  std::cout << "verified: destination identical (hash " << hash_hex(rep.hash)
            << (o.verify == "off" ? ", engine check off)\n" : ", engine per-block check passed)\n");
  return ok ? kExitOk : kExitFailure;
}

int run_send(MigrateOptions o) {
  const std::string prog = "ferry send";
  if (std::string err = o.resolve(); !err.empty()) {
    std::cerr << prog << ": " << err << "\n";
    return kExitUsage;
  }
  SendOutcome s = send_image(o, o.uri, std::cout);
  if (!s.ok) {
    std::cerr << prog << ": " << s.error << "\n";
    write_outputs(o, s, std::cout, prog);
    return kExitFailure;
  }
  bool ok = write_outputs(o, s, std::cout, prog);
  if (s.stats.one_way) {
    // Nobody answers a stream file: the reader checks the hashes written into it.
    std::cout << "written: " << o.uri << " (" << s.stats.channels
              << " file(s); `ferry recv --listen " << o.uri
              << "` loads and verifies it, `ferry dump` reads it; source image hash "
              << hash_hex(s.source_hash) << " at switchover)\n";
    return ok ? kExitOk : kExitFailure;
  }
  if (o.verify == "off") {
    std::cout << "done: not verified (--verify off; source image hash " << hash_hex(s.source_hash)
              << " at switchover)\n";
    return ok ? kExitOk : kExitFailure;
  }
  if (!s.stats.verified) {
    std::cout << "verification FAILED: the destination's per-block hashes did not match "
                 "(source image hash "
              << hash_hex(s.source_hash) << ")\n";
    return kExitFailure;
  }
  std::cout << "verified: destination confirmed identical blocks (source image hash "
            << hash_hex(s.source_hash) << " at switchover)\n";
  return ok ? kExitOk : kExitFailure;
}

int run_recv(MigrateOptions o, uint32_t channels) {
  const std::string prog = "ferry recv";
  if (std::string err = o.resolve(); !err.empty()) {
    std::cerr << prog << ": " << err << "\n";
    return kExitUsage;
  }
  // The memory first: with --prealloc it is all there before the sender can connect.
  std::unique_ptr<GuestMemory> mem;
  try {
    mem = destination_memory(o);
  } catch (const std::exception& e) {
    std::cerr << prog << ": destination guest memory: " << e.what() << "\n";
    return kExitFailure;
  }
  std::unique_ptr<transport::Listener> listener;
  try {
    listener = transport::listen(o.uri, o.transport_options(channels));
  } catch (const std::exception& e) {
    std::cerr << prog << ": cannot listen on " << o.uri << ": " << e.what() << "\n";
    return kExitFailure;
  }
  // One line, first, always: scripts read the address (and the port the kernel chose) here.
  std::cout << "listening on " << listener->address() << std::endl;
  RecvOutcome r = receive_image(o, *mem, *listener);
  if (!r.ok) {
    std::cerr << prog << ": " << r.error << "\n";
    return kExitFailure;
  }
  if (!o.quiet) print_destination(std::cout, r.stats);
  if (!r.stats.verify_requested) {
    std::cout << "done: not verified (the sender ran with --verify off; image hash "
              << hash_hex(r.hash) << ")\n";
    return kExitOk;
  }
  if (!r.stats.verified) {
    std::cout << "verification FAILED: the engine's per-block hashes were not confirmed "
                 "(destination image hash "
              << hash_hex(r.hash) << ")\n";
    return kExitFailure;
  }
  std::cout << "verified: destination identical to the source's blocks (image hash "
            << hash_hex(r.hash) << ")\n";
  return kExitOk;
}

}  // namespace

std::pair<CLI::App*, Runner> add_demo_command(CLI::App& app) {
  auto o = std::make_shared<MigrateOptions>();
  CLI::App* sub = app.add_subcommand(
      "demo",
      "Live-migrate a synthetic guest memory image (default 2 GiB) that a writer keeps "
      "dirtying, from this process to a forked destination over loopback, and verify it");
  add_migrate_options(sub, *o, kImageOptions | kSourceOptions | kOutputOptions | kAuthOptions);
  sub->add_option("--uri", o->uri,
                  "where the destination listens (tcp:HOST:PORT, unix:/path, rdma:HOST:PORT)")
      ->capture_default_str();
  return {sub, [o] { return run_demo(*o); }};
}

std::pair<CLI::App*, Runner> add_send_command(CLI::App& app) {
  auto o = std::make_shared<MigrateOptions>();
  CLI::App* sub = app.add_subcommand(
      "send", "Migrate the synthetic image (from --seed/--size) to a `ferry recv` on another host");
  sub->add_option("--connect", o->uri,
                  "the receiver's address (as `ferry recv` printed it), or file:PATH to write a "
                  "stream file (channel i > 0 in PATH.i)")
      ->required();
  sub->add_option("--connect-timeout", o->connect_timeout_s,
                  "seconds to keep retrying a refused connection")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  add_migrate_options(sub, *o, kImageOptions | kSourceOptions | kOutputOptions | kAuthOptions);
  return {sub, [o] { return run_send(*o); }};
}

std::pair<CLI::App*, Runner> add_recv_command(CLI::App& app) {
  auto o = std::make_shared<MigrateOptions>();
  auto channels = std::make_shared<uint32_t>(0);
  CLI::App* sub = app.add_subcommand(
      "recv", "Receive a `ferry send` migration into an empty image and verify it");
  sub->add_option("--listen", o->uri,
                  "address to listen on (port 0: the kernel picks one), or file:PATH to load a "
                  "stream file that `ferry send` wrote")
      ->required();
  sub->add_option("--channels", *channels, "channels to expect (0: as many as the sender opens)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  o->accept_timeout_s = 300;
  sub->add_option("--accept-timeout", o->accept_timeout_s, "seconds to wait for the sender")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  add_migrate_options(sub, *o, kImageOptions | kAuthOptions);
  sub->add_flag("--thp", o->destination_thp,
                "back the received guest RAM with transparent huge pages, as QEMU does (faster "
                "to fill; on hosts that reclaim free huge blocks it can be much slower)");
  sub->add_flag("--prealloc", o->destination_prealloc,
                "fault the guest RAM in before listening (as QEMU's prealloc=on), so that "
                "receiving costs no page faults; the memory is taken whether used or not");
  sub->add_flag("-q,--quiet", o->quiet, "only the address and the result line");
  return {sub, [o, channels] { return run_recv(*o, *channels); }};
}

}  // namespace ferry::cli
