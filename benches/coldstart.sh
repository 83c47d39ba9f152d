#!/usr/bin/env bash
# Release binary size and cold start to ready, per target (issue 7).
# For each binary: its size, then RUNS starts against a private mosquitto (broker up), each timed
# from exec to the first `GET /health/ready` that answers 200 (HTTP listening and the MQTT
# subscriptions acknowledged), then SIGTERM. Prints the median and the range.
# ARM binaries (from .ci/package) run under qemu-user: their times are those of an emulator on
# this machine, an upper bound for nothing in particular; the size is exact.
#
#   benches/coldstart.sh                       # every target binary that exists under target/
#   RUNS=9 benches/coldstart.sh path/to/bin    # chosen binaries
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}

command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || apt-get install -y mosquitto >&2
command -v curl >/dev/null || apt-get install -y curl >&2
command -v file >/dev/null || apt-get install -y file >&2
command -v python3 >/dev/null || apt-get install -y python3 >&2

bins=("$@")
if ((${#bins[@]} == 0)); then
  for b in target/release/sensorcast target/aarch64-unknown-linux-gnu/release/sensorcast \
    target/armv7-unknown-linux-gnueabihf/release/sensorcast; do
    [ -x "$b" ] && bins+=("$b")
  done
fi
((${#bins[@]})) || { echo "error: no binary; run cargo build --release (and .ci/package)" >&2; exit 1; }

scratch=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$scratch"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mq_port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mq_port" >"$scratch/mosquitto.conf"
[ "$(id -u)" -eq 0 ] && echo "user root" >>"$scratch/mosquitto.conf"
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$scratch/mosquitto.conf" >"$scratch/mq.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$mq_port") 2>/dev/null && break; sleep 0.1; done

# How to run a binary: natively, or under qemu-user with the cross libc as its root.
runner() {
  case "$(file -b "$1")" in
    *aarch64*) echo "qemu-aarch64 -L /usr/aarch64-linux-gnu" ;;
    *ARM,*) echo "qemu-arm -L /usr/arm-linux-gnueabihf" ;;
    *) echo "" ;;
  esac
}

printf '| binary | target | size | cold start to ready, median (min-max) of %s |\n|---|---|---|---|\n' "$RUNS"
for bin in "${bins[@]}"; do
  run=$(runner "$bin")
  target=$(file -b "$bin" | cut -d, -f2 | sed 's/^ //')
  ms=()
  for i in $(seq "$RUNS"); do
    port=$(free_port)
    start=$(date +%s%N)
    # shellcheck disable=SC2086 # $run is a command prefix, split on purpose
    SENSORCAST_HTTP__LISTEN="127.0.0.1:$port" SENSORCAST_STATE__DIR="$scratch/state-$i" \
      SENSORCAST_MQTT__URL="mqtt://127.0.0.1:$mq_port" SENSORCAST_MQTT__CLIENT_ID="coldstart-$i" \
      SENSORCAST_LOG__LEVEL=warn $run "$bin" --config config/dev.toml >"$scratch/run.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    ready=""
    for _ in $(seq 3000); do
      if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")" = 200 ]; then
        ready=$(($(date +%s%N) - start))
        break
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.005
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ -n "$ready" ] || { cat "$scratch/run.log" >&2; echo "error: $bin never became ready" >&2; exit 1; }
    ms+=($((ready / 1000000)))
  done
  sorted=$(printf '%s\n' "${ms[@]}" | sort -n)
  median=$(echo "$sorted" | sed -n "$(((RUNS + 1) / 2))p")
  printf '| `%s` | %s%s | %s bytes | %s ms (%s-%s) |\n' "$bin" "$target" "${run:+ (qemu-user)}" \
    "$(stat -c %s "$bin")" "$median" "$(echo "$sorted" | head -1)" "$(echo "$sorted" | tail -1)"
done
