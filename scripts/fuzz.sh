#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS seconds each (default 60).
# Usage: scripts/fuzz.sh [target...]   (FUZZ_SECONDS=600 scripts/fuzz.sh archive_index)
#
# cargo-fuzz passes nightly-only -Z flags to rustc; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. No sanitizer (-s none): the code is safe Rust, so what the
# fuzzers look for is panics, overflows (debug assertions stay on), hangs and unbounded
# allocation (-rss_limit_mb). A crash leaves its input in fuzz/artifacts/<target>/: turn
# it into a regression input (fuzz/regressions/<target>/, replayed by
# tests/it/fuzz_regressions.rs in the normal suite) before fixing it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
if [ $# -gt 0 ]; then targets=("$@"); else
  targets=(archive_index index_walk manifest_config reference tar_headers www_authenticate)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  seeds=()
  [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
  echo "== fuzzing $target for ${seconds}s" >&2
  cargo fuzz run -s none "$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10
done
