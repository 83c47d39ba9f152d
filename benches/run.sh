#!/usr/bin/env bash
# Side-by-side benchmark of sensorcast and the Node reference stack (issue 7).
# Builds sensorcast (release) and the load generator, prepares the Node reference outside the
# repository (/tmp/node-ref), then runs every scenario with the server under test pinned to
# core 1 and the load generator + mosquitto pinned to core 0. Prints one markdown table.
#
#   benches/run.sh                      # everything, about 8 minutes on 2 cores
#   benches/run.sh --scenarios fanout   # extra arguments go to `loadgen compare`
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

cargo build --release --bin sensorcast >&2
cargo build --release --manifest-path benches/loadgen/Cargo.toml >&2

mkdir -p target/bench
exec taskset -c 0 benches/loadgen/target/release/loadgen compare \
  --sensorcast-bin target/release/sensorcast --node-dir "$NODE_REF" \
  --rt --out target/bench/results.md "$@"
