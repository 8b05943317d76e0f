#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a while each, one after the other, one process at a time.
#
#   scripts/fuzz.sh [SECONDS]        # time-bounded: SECONDS per target (default 30), as CI does
#   FUZZ_RUNS=1000000 scripts/fuzz.sh  # count-bounded: that many executions per target instead
#
# Needs the nightly toolchain (cargo-fuzz builds with -Zsanitizer=address); installs cargo-fuzz
# from crates.io if it is missing. Without nightly it says so loudly and succeeds: the fuzz targets
# are a tool, not a test the stable toolchain can run. A crash fails the script; libFuzzer leaves the
# input in fuzz/artifacts/TARGET/ (see fuzz/README.md for what to do with it).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-30}"
targets=(open_store schema_decode api_ops)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "!!!!!!!! SKIPPED: no nightly toolchain: the fuzz targets (${targets[*]}) did not run !!!!!!!!"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

echo "== building the fuzz targets (nightly, AddressSanitizer, debug assertions on)"
cargo +nightly fuzz build

for t in "${targets[@]}"; do
  work="$(mktemp -d)"
  if [[ -n "${FUZZ_RUNS:-}" ]]; then bound="-runs=$FUZZ_RUNS"; else bound="-max_total_time=$secs"; fi
  echo "== fuzzing $t ($bound)"
  # The first corpus directory collects new inputs; the committed seed corpus is only read.
  # -timeout: an input running 10 s is a hang; -rss_limit_mb/-malloc_limit_mb: an allocation past
  # 2 GiB is a finding (bad input must never allocate without bound).
  if ! cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- \
      -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 "$bound" \
      >"$work.log" 2>&1; then
    tail -n 60 "$work.log"
    echo "FAILED: fuzz target $t crashed; the input is in fuzz/artifacts/$t/"
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|#[0-9]+ *DONE' "$work.log" || tail -n 5 "$work.log"
  rm -rf "$work" "$work.log"
done
echo "fuzz: ${#targets[@]} targets ran without a crash"
