#!/usr/bin/env bash
# Fuzz smoke run for CI: installs cargo-fuzz if missing, builds the libFuzzer targets in fuzz/
# and runs each for FUZZ_SECS seconds (default 20). Exits non-zero on the first crash; the
# crashing input is left in fuzz/artifacts/<target>/ (turn it into a regression test).
#
#   scripts/fuzz-smoke.sh                      # CI: 5 targets x 20 s
#   FUZZ_SECS=3600 scripts/fuzz-smoke.sh       # the longer run, one hour per target
#   FUZZ_SECS=600 scripts/fuzz-smoke.sh decode_line_crc   # one target
#
# cargo-fuzz needs nightly-only rustc flags (-Z sanitizer); on the stable toolchain this script
# sets RUSTC_BOOTSTRAP=1, the documented escape hatch, for the fuzz build only.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${FUZZ_SECS:-20}
target_dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-../target}/fuzz}
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p "$target_dir"
for t in "${targets[@]}"; do
  if [ "$t" = plugin_output ] && [ ! -f ../host-wasi/src/json.rs ]; then
    echo "==> skip plugin_output: host-wasi/src/json.rs (the plugin output decoder) is not in this tree"
    continue
  fi
  echo "==> fuzz $t for ${secs}s"
  mkdir -p "corpus/$t"
  log="$target_dir/fuzz-$t.log"
  if cargo fuzz run --target-dir "$target_dir" "$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  else
    tail -n 60 "$log"
    echo "fuzz target $t FAILED (crashing input in fuzz/artifacts/$t/, full log $log)"
    exit 1
  fi
done
echo "fuzz smoke: ${#targets[@]} targets x ${secs}s, no crash"
