#!/usr/bin/env bash
# The README's demo command for a fresh machine: installs what it needs, builds the example
# plugins from source (scripts/build-plugins.sh installs the wasm toolchain), then runs the bank
# scenario on an embedded store in ./evfold-demo through those plugins:
#
#   scripts/demo.sh              # == cargo run --release -p evfold-cli -- demo
#   scripts/demo.sh --json       # extra arguments go to `evfold demo`
#
# If the plugins cannot be built, the demo still runs on the native example code and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  if [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH=$HOME/.cargo/bin:$PATH
  else
    echo "demo: installing the Rust toolchain (rustup, minimal profile)" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH=$HOME/.cargo/bin:$PATH
  fi
fi

echo "demo: building the example plugins (scripts/build-plugins.sh)" >&2
if ! scripts/build-plugins.sh; then
  echo "demo: WARNING: the example plugins did not build; the demo falls back to native code" >&2
fi

echo "demo: cargo run --release -p evfold-cli -- demo" >&2
exec cargo run --release -q -p evfold-cli -- demo "$@"
