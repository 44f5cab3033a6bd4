#!/usr/bin/env bash
# Builds every plugin under plugins/examples/ from source into target/plugins/<name>.wasm:
# release build for wasm32-unknown-unknown (scripts/wasm-cargo: rustup target, or the Debian
# fallback), then evfold-componentize wraps each module into a component that imports nothing
# but the evfold plugin ABI. The WASI test plugin (wasi-probe) is built for wasm32-wasip2 instead:
# rustc emits a component for that target (it imports WASI 0.2), so it needs no componentizer. Idempotent: cargo skips what is up to date, and a component is only
# re-encoded when its module (or the tool) is newer. A no-op run takes about a second.
#
#   scripts/build-plugins.sh                       # all plugins
#   EVFOLD_PLUGIN_DIR=/tmp/p scripts/build-plugins.sh
#
# Environment: EVFOLD_PLUGIN_DIR (output, default target/plugins), EVFOLD_WASM_TARGET_DIR (cargo
# target dir of the wasm build, default target/wasm), CARGO_TARGET_DIR (host build of the tool).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out_dir=${EVFOLD_PLUGIN_DIR:-$root/target/plugins}
wasm_dir=${EVFOLD_WASM_TARGET_DIR:-$root/target/wasm}
tool_dir=${CARGO_TARGET_DIR:-$root/target}
plugins=(counter bank-account bank-account-fees balances hostile wrong-abi)
wasi_plugins=(wasi-probe)

echo "build-plugins: componentizer (evfold-componentize)" >&2
CARGO_TARGET_DIR=$tool_dir cargo build -q -p evfold-componentize
tool=$tool_dir/debug/evfold-componentize

echo "build-plugins: plugins for wasm32-unknown-unknown (release)" >&2
CARGO_TARGET_DIR=$wasm_dir scripts/wasm-cargo build -q --release --target wasm32-unknown-unknown \
  --manifest-path plugins/examples/Cargo.toml --workspace ${wasi_plugins[@]/#/--exclude }

echo "build-plugins: WASI plugins for wasm32-wasip2 (release)" >&2
CARGO_TARGET_DIR=$wasm_dir scripts/wasm-cargo build -q --release --target wasm32-wasip2 \
  --manifest-path plugins/examples/Cargo.toml ${wasi_plugins[@]/#/-p }

mkdir -p "$out_dir"
for plugin in "${plugins[@]}"; do
  module=$wasm_dir/wasm32-unknown-unknown/release/${plugin//-/_}.wasm
  component=$out_dir/$plugin.wasm
  if [[ ! -e $component || $module -nt $component || $tool -nt $component ]]; then
    "$tool" "$module" "$component"
    echo "build-plugins: $component ($(stat -c %s "$component") bytes)" >&2
  fi
done
for plugin in "${wasi_plugins[@]}"; do
  module=$wasm_dir/wasm32-wasip2/release/${plugin//-/_}.wasm
  component=$out_dir/$plugin.wasm
  if [[ ! -e $component || $module -nt $component ]]; then
    cp "$module" "$component"
    echo "build-plugins: $component ($(stat -c %s "$component") bytes, wasm32-wasip2)" >&2
  fi
done
echo "build-plugins: up to date in $out_dir" >&2
