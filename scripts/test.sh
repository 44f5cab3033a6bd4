#!/usr/bin/env bash
# Runs every evfold test on a fresh machine, installing what it needs first (the wasm32 targets,
# or the Debian fallback toolchain; PostgreSQL for the scale-out driver's tests).
#
#   scripts/test.sh            # everything
#   SIM_SEEDS=100000 scripts/test.sh   # a longer simulator soak
#
# Steps: build the plugins from source -> host test suite (nextest if installed, else cargo test;
# includes the simulator's 10,000 seeds, the 50-round kill test, the load test, plugin
# conformance and the PostgreSQL suite, which installs and starts its own server) -> doctests ->
# the core's test suite again on wasm32-wasip1 under evfold-wasi-run -> the kill/load figures
# -> a short fuzz run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$SECONDS
step() {
  printf '\n==> %s (%ds)\n' "$*" $((SECONDS - started))
  df -h --output=avail "$root" 2>/dev/null | tail -n 1 | sed 's/^ */    free disk: /' || true
}
# CI builds once from a clean clone: incremental-compilation caches would only take disk space
# (several GB with every test binary), and a full disk is what a linker's bus error means.
[[ ${CI:-} == true ]] && export CARGO_INCREMENTAL=0

step "wasm toolchain and example/hostile plugins (scripts/build-plugins.sh)"
scripts/build-plugins.sh

step "host test suite"
if cargo nextest --version >/dev/null 2>&1; then
  # The kill and load tests run in the next step, where their figures are printed.
  cargo nextest run --workspace --no-fail-fast --failure-output final \
    -E 'not (package(evfold-reliability) & (binary(kill) | binary(load)))'
else
  cargo test --workspace --no-fail-fast
fi

step "doctests"
cargo test --workspace --doc

step "core test suite on wasm32-wasip1"
# The host suite above already built the runner (a bin of a package with integration tests);
# building it alone would re-resolve features and recompile wasmtime for nothing.
runner="$root/target/debug/evfold-wasi-run"
[[ -x $runner ]] || cargo build -q -p evfold-wasi --bin evfold-wasi-run
export CARGO_TARGET_WASM32_WASIP1_RUNNER="$runner"
CARGO_TARGET_DIR="$root/target/wasm" scripts/wasm-cargo test -p evfold-core --target wasm32-wasip1 --lib

step "kill test and load test figures (SIGKILL rounds, throughput, p50/p99)"
figures=$(mktemp)
cargo test -q -p evfold-reliability --test kill --test load -- --nocapture >"$figures" 2>&1 || { cat "$figures"; exit 1; }
grep -E "acknowledged|lost|p50|p99|rounds" "$figures" || true

step "fuzz smoke run (cargo-fuzz, ${FUZZ_SECS:=10} s per target)"
FUZZ_SECS=$FUZZ_SECS scripts/fuzz-smoke.sh

step "all tests passed"
