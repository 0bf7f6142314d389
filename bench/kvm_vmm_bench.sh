#!/usr/bin/env bash
# Live migrations of examples/kvm-vmm's 1 GiB guest over tcp loopback, N times (default 5), with
# the guest rewriting 64 MiB/s of pages; prints the destination-side blackout (the source's
# stop_guest to the destination vCPU running again) as median/min/max, the source's total time
# (median), and the pages per iteration of the median run.
#
# usage: bench/kvm_vmm_bench.sh [-n RUNS] [-r DIRTY_RATE] [-m MEM] [-d DOWNTIME_MS] [-b SECONDS] [KVM_VMM]
#   -b: how long the guest runs before the migration starts (1.0); longer means more of its RAM
#       holds written (non-zero) pages for the bulk pass
#   KVM_VMM: the kvm-vmm binary (default: build/release/examples/kvm-vmm/kvm-vmm)
set -euo pipefail

runs=5 rate=64M mem=1G downtime=20 before=1.0
while getopts "n:r:m:d:b:" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    r) rate=$OPTARG ;;
    m) mem=$OPTARG ;;
    d) downtime=$OPTARG ;;
    b) before=$OPTARG ;;
    *) sed -n '2,11p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
repo=$(cd "$(dirname "$0")/.." && pwd)
vmm=${1:-$repo/build/release/examples/kvm-vmm/kvm-vmm}
[[ -x "$vmm" ]] || { echo "kvm_vmm_bench: no kvm-vmm at $vmm (build the kvm-vmm target)" >&2; exit 2; }
[[ -r /dev/kvm && -w /dev/kvm ]] || { echo "kvm_vmm_bench: /dev/kvm is not usable here" >&2; exit 2; }

work=$(mktemp -d /tmp/kvm-vmm-bench.XXXXXX)
dest_pid=""
trap '[[ -n "$dest_pid" ]] && kill "$dest_pid" 2>/dev/null; rm -rf "$work"' EXIT
field() { sed -n "s/^$2: \([^ ]*\).*/\1/p" "$1" | head -n 1; }
opts="--mem $mem --dirty-rate $rate --prealloc"

for i in $(seq "$runs"); do
  "$vmm" --incoming tcp:127.0.0.1:0 $opts --run-after 0.2 > "$work/$i.dst" 2>&1 &
  dest_pid=$!
  uri=""
  for _ in $(seq 100); do
    uri=$(sed -n 's/^listening on //p' "$work/$i.dst")
    [[ -n "$uri" ]] && break
    sleep 0.1
  done
  [[ -n "$uri" ]] || { cat "$work/$i.dst"; exit 1; }
  "$vmm" --migrate-to "$uri" $opts --run-before "$before" --downtime-limit "$downtime" > "$work/$i.src" 2>&1 ||
    { cat "$work/$i.src" "$work/$i.dst"; exit 1; }
  wait "$dest_pid" || { echo "run $i: destination failed"; cat "$work/$i.dst"; exit 1; }
  dest_pid=""
  printf "run %d: blackout %s ms (destination), %s ms (source), total %s s, %s iterations, guest %s MiB/s, %s\n" \
    "$i" "$(field "$work/$i.dst" blackout_ms)" "$(field "$work/$i.src" blackout_ms)" \
    "$(field "$work/$i.src" total_time_s)" "$(field "$work/$i.src" iterations)" \
    "$(field "$work/$i.src" guest_write_rate_mib_s)" "$(grep '^self_check:' "$work/$i.dst" | cut -c1-17)"
done

# run blackout total: sorted by blackout; the median run is the middle line.
for i in $(seq "$runs"); do
  echo "$i $(field "$work/$i.dst" blackout_ms) $(field "$work/$i.src" total_time_s)"
done | sort -k2,2g > "$work/table"
median_run=$(awk -v n="$runs" 'NR == int((n + 1) / 2) { print $1 }' "$work/table")
echo
echo "kvm-vmm live migration, $runs runs: guest $mem, dirty rate $rate/s, tcp loopback, downtime limit $downtime ms, guest ran ${before} s before"
awk '{ b[NR] = $2 } END { printf "blackout (destination): median %.1f ms, min %.1f ms, max %.1f ms\n", b[int((NR + 1) / 2)], b[1], b[NR] }' "$work/table"
sort -k3,3g "$work/table" | awk '{ t[NR] = $3 } END { printf "total time (source): median %.3f s\n", t[int((NR + 1) / 2)] }'
echo "pages per iteration of the median run (run $median_run):"
sed -n 's/^iteration \([0-9]*\): final=\([01]\) dirty_pages=\([0-9]*\) normal_pages=\([0-9]*\) zero_pages=\([0-9]*\) wire_bytes=\([0-9]*\) seconds=\([0-9.]*\).*/  iteration \1: dirty \3, sent \4 normal + \5 zero, \6 wire bytes, \7 s (final=\2)/p' \
  "$work/$median_run.src"
