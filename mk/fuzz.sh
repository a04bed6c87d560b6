#!/usr/bin/env bash
# `make fuzz` (mk/fuzz.mk): builds the fuzz targets of fuzz/ with cargo-fuzz and
# runs each for FUZZ_SECONDS, one after another; prints per target the time run,
# the executions and what it found; copies each crash into
# fuzz/regressions/<target>/ (replayed by `make test`). Exits 1 when a target found
# something.
#
# The instrumented build has its own target folder ($FUZZ_TARGET_DIR), and the
# corpus a run grows stays in $FUZZ_WORK (the seeds in fuzz/corpus/ are read, not
# written).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo_fuzz=${CARGO_FUZZ:-cargo-fuzz}
target_dir=${FUZZ_TARGET_DIR:-$HOME/.cache/hearth/fuzz-target}
work=${FUZZ_WORK:-$HOME/.cache/hearth/fuzz}
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
targets=${FUZZ_TARGETS:-}
if [ -z "$targets" ]; then
  targets=$(ls fuzz/fuzz_targets | sed -n 's/\.rs$//p' | sort)
fi

# `cargo fuzz` as a cargo subcommand finds the binary on PATH by its name.
export PATH="$(dirname "$cargo_fuzz"):$PATH"
# Stable Rust: no sanitizer (they need nightly's -Z flags); libFuzzer's coverage
# instrumentation (sancov) and debug assertions are stable flags.
build() {
  cargo fuzz build --sanitizer none --debug-assertions --target-dir "$target_dir" "$@"
}

case "${1:-run}" in
  build)
    build
    exit 0
    ;;
  run) ;;
  *)
    echo "usage: $0 [build|run]" >&2
    exit 2
    ;;
esac

build
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"
found=0
printf '%-10s %8s %14s %10s  %s\n' target seconds executions exec/s result
for t in $targets; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t"
  log="$work/$t.log"
  mkdir -p "$corpus" "$artifacts" "fuzz/regressions/$t"
  marker=$(mktemp)
  start=$(date +%s)
  status=0
  # Several workers only when asked: -jobs makes libFuzzer run child processes.
  parallel=()
  if [ "$jobs" -gt 1 ]; then parallel=(-jobs="$jobs" -workers="$jobs"); fi
  # The first corpus folder is where libFuzzer writes what it finds; the seeds
  # are read from the second. -timeout: an input that runs over 10 s is a finding.
  "$bin_dir/$t" "$corpus" "fuzz/corpus/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "${parallel[@]}" \
    >"$log" 2>&1 || status=$?
  ran=$(($(date +%s) - start))
  # With several workers, their stats are in fuzz-<n>.log.
  execs=$( (cat "$log" fuzz-*.log 2>/dev/null || true) | awk '/stat::number_of_executed_units/ {s+=$2} END {print s+0}')
  rate=$(( ran > 0 ? execs / ran : execs ))
  result="nothing found"
  new=$(find "$artifacts" -type f -newer "$marker" \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)
  rm -f "$marker" fuzz-*.log
  if [ -n "$new" ] || [ "$status" -ne 0 ]; then
    found=1
    result="FOUND (exit $status), log: $log"
    for f in $new; do
      cp "$f" "fuzz/regressions/$t/"
      result="$result; kept fuzz/regressions/$t/$(basename "$f")"
    done
  fi
  printf '%-10s %8s %14s %10s  %s\n' "$t" "$ran" "$execs" "$rate" "$result"
done
exit "$found"
