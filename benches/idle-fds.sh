#!/bin/bash
# File descriptors an idle sensorcast holds (connected to a private mosquitto, ready, no
# client): the base the HTTP connection cap's reserve (core::connections::FD_RESERVE) must
# cover beside the metrics listener, state writes and webhooks. Uses the debug binary
# (`cargo build` first); the count is the same for a release build.
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
port=$((30000 + RANDOM % 1000)); http=$((port+1)); metrics=$((port+2))
mosquitto -p $port > $tmp/mq.log 2>&1 &
mq=$!
sleep 0.5
SENSORCAST_HTTP__LISTEN=127.0.0.1:$http SENSORCAST_MQTT__URL=mqtt://127.0.0.1:$port \
SENSORCAST_MQTT__CLIENT_ID=fdcount SENSORCAST_STATE__DIR=$tmp/state \
SENSORCAST_METRICS__LISTEN=127.0.0.1:$metrics RUNTIME_DIRECTORY=$tmp \
  target/debug/sensorcast --config config/dev.toml > $tmp/log 2>&1 &
svc=$!
for i in $(seq 50); do curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:$http/health/ready | grep -q 200 && break; sleep 0.2; done
echo "fds of an idle, ready service: $(ls /proc/$svc/fd | wc -l)"
ls -l /proc/$svc/fd | awk 'NR>1 {print $NF}' | sed -E 's/[0-9]+//g' | sort | uniq -c
curl -s 127.0.0.1:$http/health | python3 -c 'import json,sys; print(json.load(sys.stdin)["checks"]["http"])'
grep -m1 "file descriptor limit" $tmp/log
kill $svc; wait $svc; kill $mq; wait $mq 2>/dev/null
rm -rf $tmp
