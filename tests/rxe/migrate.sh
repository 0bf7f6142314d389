#!/bin/sh
# Runs inside tools/rxe/run-in-vm: live migration over rdma (RDMA WRITE placement), one boot:
#  1. the engine's rdma end-to-end tests (1 and 2 channels, concurrent writer, SYNC_ACK order,
#     destination process killed: the source fails in bounded time with its memory unchanged)
#  2. `ferry demo --uri rdma:...` with 1 and 2 channels: exit 0, 'verified', placement rdma-write
#  3. a RLIMIT_MEMLOCK too small for placement: the demo still works over the stream and the
#     summary says what placement needs
#  4. `ferry recv` killed while `ferry send` runs: the sender fails with a clear error within a
#     bounded time.
# Usage: migrate.sh FERRY_BINARY ENGINE_TEST_BINARY
set -u
ferry="$1"; engine_test="$2"
addr="${FERRY_RXE_SERVER_ADDR:?run under tools/rxe/run-in-vm}"
fail=0
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

echo "== engine rdma tests"
t=$(now)
if "$engine_test" --gtest_filter='*Rdma*' --gtest_brief=1; then
  echo "engine rdma tests: ok ($(took "$t") s)"
else
  echo "engine rdma tests: FAILED"; fail=1
fi

for ch in 1 2; do
  echo "== ferry demo over rdma, $ch channel(s)"
  t=$(now)
  "$ferry" demo --insecure --uri "rdma:$addr:0" --size 128M --channels "$ch" --dirty-rate 32 \
    --json /tmp/demo$ch.json >/tmp/demo$ch.log 2>&1
  rc=$?
  grep -E '^(connected|placement|transferred|downtime|destination:|verified)' /tmp/demo$ch.log
  if [ $rc -ne 0 ] || ! grep -q '^verified' /tmp/demo$ch.log || \
     ! grep -q '^placement: *rdma-write' /tmp/demo$ch.log; then
    echo "demo $ch channel(s): FAILED (exit $rc)"; tail -20 /tmp/demo$ch.log; fail=1
  else
    echo "demo $ch channel(s): ok ($(took "$t") s)"
  fi
done

echo "== RLIMIT_MEMLOCK too small for placement (not root): stream, saying what is needed"
if command -v setpriv >/dev/null; then
  t=$(now)
  (ulimit -l 16384 && exec setpriv --reuid 65534 --regid 65534 --clear-groups \
    "$ferry" demo --insecure --uri "rdma:$addr:0" --size 64M --channels 1 --dirty-rate 8) >/tmp/memlock.log 2>&1
  rc=$?
  grep -E '^(placement|verified)' /tmp/memlock.log
  if [ $rc -ne 0 ] || ! grep -q '^verified' /tmp/memlock.log || \
     ! grep -q '^placement: *stream (.*RLIMIT_MEMLOCK' /tmp/memlock.log; then
    echo "memlock fallback: FAILED (exit $rc)"; tail -20 /tmp/memlock.log; fail=1
  else
    echo "memlock fallback: ok ($(took "$t") s)"
  fi
else
  echo "memlock fallback: skipped (no setpriv)"
fi

echo "== receiver killed mid-transfer"
"$ferry" recv --insecure --listen "rdma:$addr:0" --size 256M >/tmp/recv.log 2>&1 &
recv=$!
i=0; while [ $i -lt 100 ] && ! grep -q '^listening on' /tmp/recv.log; do sleep 0.1; i=$((i + 1)); done
uri=$(sed -n 's/^listening on //p' /tmp/recv.log)
if [ -z "$uri" ]; then
  echo "peer-kill: FAILED: ferry recv did not listen"; cat /tmp/recv.log; kill $recv; fail=1
else
  "$ferry" send --connect "$uri" --size 256M --dirty-rate 64 --downtime-ms 1 --max-iterations 1000 \
    >/tmp/send.log 2>&1 &
  send=$!
  # Until the migration moves pages (a progress line), then a little more.
  i=0; while [ $i -lt 200 ] && ! grep -q 'sent [0-9]' /tmp/send.log; do sleep 0.1; i=$((i + 1)); done
  sleep 1
  if ! kill -0 $send 2>/dev/null; then
    echo "peer-kill: FAILED: the sender ended before the receiver was killed"; cat /tmp/send.log; fail=1
  else
    kill -9 $recv
    t=$(now)
    i=0; while [ $i -lt 600 ] && kill -0 $send 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    if kill -0 $send 2>/dev/null; then
      echo "peer-kill: FAILED: the sender still runs 60 s after the receiver was killed"
      kill -9 $send; fail=1
    else
      wait $send; rc=$?
      secs=$(took "$t")
      err=$(grep 'ferry send:' /tmp/send.log | tail -1)
      echo "sender: exit $rc, $secs s after the kill: $err"
      if [ $rc -eq 0 ] || [ -z "$err" ]; then
        echo "peer-kill: FAILED"; tail -5 /tmp/send.log; fail=1
      else
        echo "peer-kill: ok"
      fi
    fi
  fi
  wait $recv 2>/dev/null
fi
[ $fail -eq 0 ] && echo "rxe migrate: ok"
exit $fail
