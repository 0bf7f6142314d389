#!/bin/sh
# Runs inside tools/rxe/run-in-vm: the soft-RoCE devices exist, verbs see them, and ib_write_bw
# (perftest) moves data between them across the veth pair. Prints the MB/s line.
set -e
command -v ibv_devinfo >/dev/null || { echo "SKIP: ibv_devinfo missing (apt-get install ibverbs-utils)"; exit 77; }
command -v ib_write_bw >/dev/null || { echo "SKIP: ib_write_bw missing (apt-get install perftest)"; exit 77; }
rdma link
ibv_devices
ibv_devinfo -d "$FERRY_RXE_CLIENT_DEV" | grep -E 'hca_id|state|link_layer'
ib_write_bw -d "$FERRY_RXE_SERVER_DEV" -x 1 -D 3 >/tmp/server.log 2>&1 &
# Until the server listens for perftest's out-of-band exchange (port 18515).
i=0; while [ $i -lt 40 ] && ! ss -ltn | grep -q ':18515 '; do sleep 0.25; i=$((i + 1)); done
ib_write_bw -d "$FERRY_RXE_CLIENT_DEV" -x 1 -D 3 "$FERRY_RXE_SERVER_ADDR" >/tmp/client.log 2>&1 || { cat /tmp/client.log /tmp/server.log; exit 1; }
wait $! || { cat /tmp/server.log; exit 1; }
grep -A1 'BW average' /tmp/client.log
# Traffic crossed the veth pair: both devices counted packets.
rdma statistic show link "$FERRY_RXE_SERVER_DEV/1" | grep -o 'rcvd_pkts [0-9]*'
echo "rxe smoke: ok"
