#!/usr/bin/env bash
# One entry point for newcomers and CI: installs the Debian packages ferry needs
# (only those missing), configures, builds, and runs either the main job or the tests.
#
#   tools/bootstrap.sh demo   set up, build (release), run the main job
#   tools/bootstrap.sh test   set up, build release (-O3) + ASan/UBSan + the TCP-only library,
#                             all with warnings as errors, and run ctest on them
#   tools/bootstrap.sh deps   only install missing packages
#   tools/bootstrap.sh build  only build the release tree
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=$(nproc 2>/dev/null || echo 2)

# Every package the project needs, and why (keep README's dependency table in step).
packages=(
  build-essential cmake pkg-config python3   # toolchain; python3 runs bench/summary
  liburing-dev                               # io_uring TCP transport
  libibverbs-dev librdmacm-dev               # RDMA verbs transport
  liblz4-dev                                 # LZ4 page codec
  libxxhash-dev                              # XXH3 page digests (verification)
  libssl-dev                                 # OpenSSL 3: peer authentication (HKDF, HMAC), TLS 1.3 channels
  libgtest-dev libgmock-dev                  # tests
  libbenchmark-dev                           # bench/
  iperf3                                     # bench/summary's TCP baseline (the standard tool)
  libcli11-dev nlohmann-json3-dev            # ferry CLI arguments, JSON statistics
  asn1c                                      # checks the vmstate BER output against its ASN.1 module
  qemu-system-x86 busybox-static kmod cpio zstd  # tools/rxe/run-in-vm: soft-RoCE VM for rdma tests
  file xz-utils                              # run-in-vm: finds a static busybox, unpacks vmlinux
  rdma-core ibverbs-utils perftest           # rdma link / ibv_devices / ib_write_bw inside that VM
  clang libclang-rt-14-dev                   # fuzz targets (tools/fuzz.sh); libFuzzer and the
                                             # ASan/UBSan runtimes are in libclang-rt-14-dev, only
                                             # a Recommends of clang on Debian 12
)

log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

install_deps() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "all ${#packages[@]} Debian packages present"
    return
  fi
  log "installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# build DIR [cmake options...]
build() {
  local dir=$1; shift
  log "configuring $dir"
  cmake -S . -B "$dir" "$@" >/dev/null
  log "building $dir ($jobs jobs)"
  cmake --build "$dir" -j "$jobs"
}

# build_targets DIR TARGET... -- [cmake options...]: configure, then build only TARGETs.
build_targets() {
  local dir=$1; shift
  local targets=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do targets+=("$1"); shift; done
  shift
  log "configuring $dir"
  cmake -S . -B "$dir" "$@" >/dev/null
  log "building $dir: ${targets[*]} ($jobs jobs)"
  cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
}

# The TCP-only build's share of the suite: the transport tests (tcp, unix and file through the
# plain channel; rdma: refused clearly), the engine's migrations over tcp and unix, the header
# and export checks.
tcp_only_targets=(ferry_shared ferry_header_check_cxx ferry_header_check_c
                  ferry_transports_test ferry_transports_noalloc_test ferry_engine_test)
tcp_only_tests='^(headers[.]|All/(Transport|Channels)Test[.]|Handshake[.]|Names[.]|PlainChannel[.]|Rdma[.]|Registry[.]|Table/Uri|NoAlloc[.]|ChannelsCodecs/EngineMigrate[.]|EngineMigration[.]|Transports/EnginePeerKilled[.])'

# run_tests DIR [ctest options...]
run_tests() {
  local dir=$1; shift
  log "ctest in $dir"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 900 "$@"
}

# report_failures DIR: repeat, at the very end of the run, which tests of DIR failed and the tail
# of each one's output, so that a CI log cut to its last lines still says what went wrong.
report_failures() {
  local dir=$1 failed="$1/Testing/Temporary/LastTestsFailed.log" full="$1/Testing/Temporary/LastTest.log"
  [ -s "$failed" ] || return 0
  log "failed in $dir:"
  local name
  while IFS= read -r line; do
    name=${line#*:}
    printf '  - %s\n' "$name"
    [ -f "$full" ] || continue
    # LastTest.log holds each test's output between its "N/M Test: NAME" line and the next one.
    awk -v want="$name" '
      / Test: / { cur = $0; sub(/^[0-9]+\/[0-9]+ Test: /, "", cur); on = (cur == want); next }
      on' "$full" | grep -v -E '^-{10,}$' | tail -n 40 | sed 's/^/      | /'
  done < "$failed"
}

case "${1:-}" in
  deps)
    install_deps ;;
  build)
    install_deps
    build build/release -DCMAKE_BUILD_TYPE=Release -DFERRY_WERROR=ON ;;
  demo)
    install_deps
    build build/release -DCMAKE_BUILD_TYPE=Release -DFERRY_WERROR=ON
    # The main job: live-migrate a 2 GiB image that a writer keeps dirtying, from this process
    # to a forked destination over loopback TCP, and verify it arrived identical.
    build/release/tools/ferry demo ;;
  test)
    install_deps
    # What CI builds is what users build: Release (-O3, where GCC finds the most to warn about),
    # every warning an error; the same tree as `demo` and `build`.
    build build/release -DCMAKE_BUILD_TYPE=Release -DFERRY_WERROR=ON
    status=0
    run_tests build/release || status=1
    build build/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1 -DFERRY_SANITIZE=ON \
      -DFERRY_BUILD_BENCH=OFF -DFERRY_WERROR=ON
    ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      run_tests build/asan -LE rxe || status=1  # the soft-RoCE VM tests ran once above: enough
    # The library without its optional backends (plain-socket channels, no rdma:), as on a host
    # without liburing and rdma-core: it must build clean and carry tcp, unix and file sessions.
    # Only what the chosen tests need is built, to keep CI time down.
    build_targets build/tcp-only "${tcp_only_targets[@]}" -- -DCMAKE_BUILD_TYPE=Release \
      -DFERRY_WERROR=ON -DFERRY_WITH_URING=OFF -DFERRY_WITH_RDMA=OFF -DFERRY_BUILD_BENCH=OFF \
      -DFERRY_BUILD_EXAMPLES=OFF
    run_tests build/tcp-only -R "$tcp_only_tests" || status=1
    # libFuzzer targets (tests/fuzz): clang build in build/fuzz, each target run for a bounded
    # time (tools/fuzz.sh: 30 s each, 10 s when CI=true; FUZZ_SECONDS overrides, 0 = build only).
    tools/fuzz.sh ${FUZZ_SECONDS:+"$FUZZ_SECONDS"} || status=1
    if [ $status -ne 0 ]; then
      report_failures build/release
      report_failures build/asan
      report_failures build/tcp-only
      log "FAILED (see above)"
    else
      log "all test runs passed"
    fi
    exit $status ;;
  *)
    echo "usage: $0 demo|test|deps|build" >&2
    exit 2 ;;
esac
