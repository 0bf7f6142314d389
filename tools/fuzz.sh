#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, -DFERRY_FUZZ=ON) in build/fuzz and runs each
# for a bounded time from the seed corpus in tests/fuzz/seeds. Fails if any target finds a crash,
# a sanitizer report, a leak or a timeout; the reproducer is then in build/fuzz/artifacts/.
#
#   tools/fuzz.sh [SECONDS]   seconds per target (default 30; 10 when CI=true); 0 = build only
#   FUZZ_TARGETS="fuzz_vmstate_ber" tools/fuzz.sh 60   run only some targets
#
# Targets run one after another, single process each (the machine is shared: two cores).
# The corpus each run grows is kept in build/fuzz/corpus/<target> (not checked in).
# Reproduce a crash: build/fuzz/tests/fuzz/<target> build/fuzz/artifacts/<target>/crash-...
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
default_secs=30
[ "${CI:-}" = "true" ] && default_secs=10
secs=${1:-$default_secs}
targets=(${FUZZ_TARGETS:-fuzz_qemu_stream fuzz_vmstate_binary fuzz_vmstate_ber fuzz_vmstate_any fuzz_destination fuzz_handshake})
dir=build/fuzz

log() { printf '\033[1m[fuzz]\033[0m %s\n' "$*"; }

for tool in clang clang++; do
  command -v "$tool" >/dev/null || { log "$tool not found (Debian: apt-get install clang libclang-rt-14-dev)"; exit 1; }
done

log "configuring $dir (clang, FERRY_FUZZ=ON)"
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_FUZZ=ON -DFERRY_BUILD_TESTS=OFF \
  -DFERRY_BUILD_BENCH=OFF >/dev/null
log "building the fuzz targets"
cmake --build "$dir" --target ferry_fuzz -j "${FUZZ_JOBS:-2}"
[ "$secs" = 0 ] && exit 0

seeds_for() {
  case "$1" in
    fuzz_qemu_stream) echo tests/fuzz/seeds/stream ;;
    fuzz_vmstate_binary) echo tests/fuzz/seeds/binary ;;
    fuzz_vmstate_ber) echo tests/fuzz/seeds/ber ;;
    fuzz_vmstate_any) echo tests/fuzz/seeds/binary tests/fuzz/seeds/ber ;;
    fuzz_destination) echo tests/fuzz/seeds/destination ;;
    fuzz_handshake) echo tests/fuzz/seeds/handshake ;;
  esac
}

status=0
summary=()
for t in "${targets[@]}"; do
  corpus=$dir/corpus/$t
  artifacts=$dir/artifacts/$t
  out=$dir/fuzz-$t.log
  mkdir -p "$corpus" "$artifacts"
  log "$t: ${secs}s"
  # -seed fixed: a run is reproducible given the same corpus; -timeout: a single input taking
  # more than 10 s counts as a failure (hang); -rss_limit_mb: the default, spelled out.
  # shellcheck disable=SC2046
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
     "$dir/tests/fuzz/$t" -max_total_time="$secs" -seed=1 -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" $(seeds_for "$t") \
       >"$out" 2>&1; then
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$out" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$out" | tail -1)
    log "$t: ok, ${runs:-? runs}, ${cov:-cov ?}"
    summary+=("$t: ${runs:-?} (${cov:-?}), 0 crashes")
  else
    status=1
    tail -40 "$out"
    log "$t: FAILED (log $out, reproducer in $artifacts/)"
    summary+=("$t: FAILED, see $out")
  fi
done
for line in "${summary[@]}"; do log "$line"; done
exit $status
