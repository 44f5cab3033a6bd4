#!/usr/bin/env bash
# Side-by-side benchmark: evfold vs the peer crate eventfold-es 0.2 vs a raw fdatasync loop, in
# one run on the same disk (release build). Prints progress on stderr and a markdown table on
# stdout; the table is also saved to target/bench/<UTC date>.md.
#
#   scripts/bench.sh                   # full sizes (a few minutes)
#   BENCH_QUICK=1 scripts/bench.sh     # smoke run with small sizes
#   BENCH_DIR=/dev/shm scripts/bench.sh   # another disk (default: the system temp dir)
#   BENCH_ONLY=read scripts/bench.sh   # only some sections: throughput,cold,projection,read,memory,fold
#
# The plugin rows need the example plugins (scripts/build-plugins.sh; built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -e target/plugins/bank-account.wasm ]]; then
  scripts/build-plugins.sh || echo "bench: plugins did not build; plugin rows will be skipped" >&2
fi
export EVFOLD_PLUGIN_DIR=${EVFOLD_PLUGIN_DIR:-$(pwd)/target/plugins}
cargo build --release -q -p evfold-bench
bin=${CARGO_TARGET_DIR:-target}/release/evfold-bench
mkdir -p target/bench
out=target/bench/$(date -u +%Y-%m-%dT%H%M%SZ).md
{
  echo "evfold benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -sr), temp dir ${BENCH_DIR:-${TMPDIR:-/tmp}} ($(df -T "${BENCH_DIR:-${TMPDIR:-/tmp}}" | awk 'NR==2 {print $2}'))"
  echo
  "$bin"
} | tee "$out"
echo "bench: saved $out" >&2
