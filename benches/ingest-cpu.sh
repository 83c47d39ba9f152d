#!/usr/bin/env bash
# CPU time per MQTT message of the ingest path alone (MQTT -> decode -> route -> emit, no
# sockets), for one or more sensorcast binaries side by side: what the framing guard
# (src/ingest/guard.rs) costs per message. A private mosquitto on a free port; for each round
# and binary: start the binary, publish N readings with `mosquitto_pub --repeat` (QoS as given;
# the subscription is QoS 1, so the broker delivers at the publish QoS), wait until /health
# counts N messages, print the binary's utime+stime / N. Rounds alternate the binaries.
#
#   benches/ingest-cpu.sh [-n 100000] [-q 1] [-r 5] BIN [BIN...]
set -euo pipefail
n=100000 qos=1 rounds=5
while getopts n:q:r: o; do
  case $o in n) n=$OPTARG ;; q) qos=$OPTARG ;; r) rounds=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
(($#)) || { echo "usage: $0 [-n N] [-q QOS] [-r ROUNDS] BIN [BIN...]" >&2; exit 2; }

tmp=$(mktemp -d)
spid="" mpid=""
trap '[ -n "$spid" ] && kill "$spid" 2>/dev/null; [ -n "$mpid" ] && kill "$mpid" 2>/dev/null; rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mport=$(port) hport=$(port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_queued_messages 1000000\nmax_inflight_messages 100\n' "$mport" >"$tmp/mosquitto.conf"
/usr/sbin/mosquitto -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
mpid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break; sleep 0.1; done
printf '[[org]]\nid = "o1"\n[[site]]\nid = "s1"\norg = "o1"\n[[unit]]\nid = "u1"\nsite = "s1"\n[[sensor]]\nid = "probe-1"\nunit = "u1"\n' >"$tmp/registry.toml"
echo "ingest-cpu-bench-secret-0123456789" >"$tmp/jwt.secret"
cat >"$tmp/sensorcast.toml" <<EOF
[http]
listen = "127.0.0.1:$hport"
[mqtt]
url = "mqtt://127.0.0.1:$mport"
client_id = "ingest-cpu"
clean_session = true
[[mqtt.subscriptions]]
topic = "sensors/+"
format = "json"
qos = 1
[auth]
mode = "jwt"
jwt_secret_file = "jwt.secret"
[registry]
file = "registry.toml"
[state]
dir = "state"
[metrics]
enabled = false
[log]
level = "warn"
EOF
messages() { curl -s "127.0.0.1:$hport/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pipeline"]["messages"])' 2>/dev/null || echo 0; }

for round in $(seq "$rounds"); do
  for bin in "$@"; do
    (cd "$tmp" && exec "$bin" --config sensorcast.toml 2>>"$tmp/sensorcast.log") &
    spid=$!
    for _ in $(seq 100); do curl -sf "127.0.0.1:$hport/health/ready" >/dev/null && break; sleep 0.1; done
    c0=$(awk '{print $14 + $15}' "/proc/$spid/stat")
    t0=$(date +%s.%N)
    mosquitto_pub -h 127.0.0.1 -p "$mport" -t sensors/probe-1 -q "$qos" -m '{"temperature": 4.5}' --repeat "$n"
    deadline=$((SECONDS + 120))
    while [ "$(messages)" -lt "$n" ]; do
      [ $SECONDS -lt $deadline ] || { echo "error: $bin counted only $(messages) of $n" >&2; exit 1; }
      sleep 0.05
    done
    t1=$(date +%s.%N)
    c1=$(awk '{print $14 + $15}' "/proc/$spid/stat")
    kill "$spid"; wait "$spid" 2>/dev/null || true; spid=""
    python3 -c "print(f'round $round qos $qos {\"$bin\"}: {($c1-$c0)/$(getconf CLK_TCK)/$n*1e6:.2f} us CPU per message, {$n/($t1-$t0):.0f} messages/s, load {open(\"/proc/loadavg\").read().split()[0]}')"
  done
done
