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
# Build every target first, in one cargo invocation, so that a build failure (a full disk, a
# compile error) is reported as one and never as a crash the fuzzer found.
build_log="$target_dir/fuzz-build.log"
echo "==> cargo fuzz build (${#targets[@]} targets)"
build() {
  if [ $# -eq 0 ]; then
    cargo fuzz build --target-dir "$target_dir"
  else
    for t in "$@"; do cargo fuzz build --target-dir "$target_dir" "$t" || return 1; done
  fi
}
if ! build "$@" >"$build_log" 2>&1; then
  tail -n 40 "$build_log"
  df -h "$target_dir" || true
  echo "fuzz smoke: the fuzz targets did not BUILD (no fuzzing ran; full log $build_log)"
  exit 1
fi
for t in "${targets[@]}"; do
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
