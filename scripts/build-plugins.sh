#!/usr/bin/env bash
# Builds every plugin under plugins/examples/ from source into target/plugins/<name>.wasm. This is
# `cargo run -p evfold-plugin-artifacts`: that crate's build script builds the plugins for wasm32
# (release) through scripts/wasm-cargo (rustup target, or the Debian fallback), and its binary
# componentizes each module in-process (evfold-componentize) into a component that imports nothing
# but the evfold plugin ABI. The WASI test plugin (wasi-probe) is built for wasm32-wasip2, for
# which rustc emits a component itself; it is copied as is. Plain `cargo test` does the same
# through the tests' dependency on that crate, so this script is only needed for target/plugins
# outside a test run (the benchmark, an explicit EVFOLD_PLUGIN_DIR). Idempotent: a run with
# nothing to do takes about a second.
#
#   scripts/build-plugins.sh                       # all plugins
#   EVFOLD_PLUGIN_DIR=/tmp/p scripts/build-plugins.sh
#
# Environment: EVFOLD_PLUGIN_DIR (output, default target/plugins), EVFOLD_WASM_TARGET_DIR (cargo
# target dir of the wasm build, default target/wasm), CARGO_TARGET_DIR (host build of the tool).
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=${EVFOLD_PLUGIN_DIR:-$(pwd)/target/plugins}

echo "build-plugins: cargo run -p evfold-plugin-artifacts (wasm32 builds in its build script)" >&2
exec cargo run -q -p evfold-plugin-artifacts -- "$out_dir"
