#!/usr/bin/env bash
# Side-by-side benchmark of sensorcast, a plain socketioxide broadcast server (issue 11's
# yardstick, benches/loadgen/src/bin/plain) and the Node reference stack (issue 7).
# Builds sensorcast (release), the load generator and the plain server (profile bench-server:
# sensorcast's release profile), prepares the Node reference outside the repository
# (/tmp/node-ref), then runs every scenario with the server under test pinned to core 1 and
# the load generator + mosquitto pinned to core 0. Prints one markdown table.
#
#   benches/run.sh                      # everything, about 12 minutes on 2 cores
#   benches/run.sh --scenarios fanout   # extra arguments go to `loadgen compare`
#   benches/run.sh --stacks sensorcast,plain   # a subset of sensorcast, plain, node
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_REF=${NODE_REF:-/tmp/node-ref}
REFERENCE=${REFERENCE:-../shared/reference}

need() { command -v "$1" >/dev/null || { echo "installing $2" >&2; apt-get install -y "$2" >&2; }; }
need mosquitto mosquitto
need node nodejs
need taskset util-linux
need strace strace

if [ ! -d "$NODE_REF/node_modules" ]; then
  rm -rf "$NODE_REF"
  cp -r "$REFERENCE" "$NODE_REF"
  chmod -R u+w "$NODE_REF"
  (cd "$NODE_REF" && npm install --no-audit --no-fund >&2)
fi

# The plain server is built only if it runs (its fat-LTO build takes a few minutes).
stacks=""
prev=""
for a in "$@"; do
  case "$a" in --stacks=*) stacks=${a#--stacks=} ;; esac
  [ "$prev" = "--stacks" ] && stacks=$a
  prev=$a
done

cargo build --release --bin sensorcast >&2
cargo build --release --manifest-path benches/loadgen/Cargo.toml --bin loadgen >&2
case ",${stacks:-plain}," in
  *,plain,*) cargo build --profile bench-server --manifest-path benches/loadgen/Cargo.toml --bin plain >&2 ;;
esac

mkdir -p target/bench
exec taskset -c 0 benches/loadgen/target/release/loadgen compare \
  --sensorcast-bin target/release/sensorcast \
  --plain-bin benches/loadgen/target/bench-server/plain --node-dir "$NODE_REF" \
  --rt --out target/bench/results.md "$@"
