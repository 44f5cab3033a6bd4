#!/usr/bin/env bash
# The README's demo command for a fresh machine: installs what it needs, builds the CLI, builds
# the two example plugins the demo runs with the CLI itself (`evfold plugin build`: a wasm32
# build through scripts/wasm-cargo, which installs the wasm toolchain, then the componentizer
# in-process), then runs the bank scenario on an embedded store in ./evfold-demo through them:
#
#   scripts/demo.sh              # == evfold demo, with the plugins built from source
#   scripts/demo.sh --json       # extra arguments go to `evfold demo`
#
# The CLI is built with cargo's dev profile (dependencies at opt-level 2, see Cargo.toml): the
# same build `cargo test` uses, so the README's next command (scripts/test.sh) does not build it
# again, and a cold first run is far shorter than a release build. DEMO_PROFILE=release builds a
# release binary instead; DEMO_TIMINGS=1 adds `cargo build --timings` (target/cargo-timings/).
# If the plugins cannot be built, the demo still runs on the native example code and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if ! command -v cargo >/dev/null 2>&1; then
  if [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH=$HOME/.cargo/bin:$PATH
  else
    echo "demo: installing the Rust toolchain (rustup, minimal profile)" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH=$HOME/.cargo/bin:$PATH
  fi
fi

profile=${DEMO_PROFILE:-dev}
flags=(--profile "$profile")
[[ -n ${DEMO_TIMINGS:-} ]] && flags+=(--timings)
target_dir=${CARGO_TARGET_DIR:-$root/target}
bin_dir=$target_dir/$([[ $profile == dev ]] && echo debug || echo "$profile")
echo "demo: cargo build ${flags[*]} -p evfold-cli" >&2
cargo build -q "${flags[@]}" -p evfold-cli
evfold=$bin_dir/evfold

plugin_dir=${EVFOLD_PLUGIN_DIR:-$root/target/plugins}
export EVFOLD_WASM_CARGO=$root/scripts/wasm-cargo
built=true
for plugin in bank-account balances; do
  echo "demo: evfold plugin build plugins/examples/$plugin" >&2
  if ! "$evfold" plugin build "plugins/examples/$plugin" --target-dir "${EVFOLD_WASM_TARGET_DIR:-$root/target/wasm}" \
       -o "$plugin_dir/$plugin.wasm" >&2; then
    built=false
  fi
done
if ! $built; then
  echo "demo: WARNING: the example plugins did not build; the demo falls back to native code" >&2
  exec "$evfold" demo --native "$@"
fi
exec "$evfold" demo --plugin-dir "$plugin_dir" "$@"
