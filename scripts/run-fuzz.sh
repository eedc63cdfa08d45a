#!/usr/bin/env bash
# Runs each libFuzzer binary given for SECONDS seconds (make fuzz, make check).
# Usage: scripts/run-fuzz.sh SECONDS build/fuzz/fuzz_NAME...
# Seeds: tests/fuzz/corpus/NAME/ (committed, read only). New inputs go to
# build/fuzz/corpus/NAME/, crashes to build/fuzz/artifacts/. A dictionary
# tests/fuzz/NAME.dict is used when present; FUZZ_SEED=N fixes the seed. Prints one summary line per
# target (executions per second, corpus size) and fails on the first finding.
set -u
seconds=${1:?usage: run-fuzz.sh SECONDS BINARY...}; shift
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$seconds" -le 0 ]; then # libFuzzer reads 0 as "no limit"
  echo "fuzz: skipped (0 seconds)"; exit 0
fi
status=0
for bin in "$@"; do
  name=$(basename "$bin"); name=${name#fuzz_}
  work="$root/build/fuzz/corpus/$name"; art="$root/build/fuzz/artifacts/$name-"
  mkdir -p "$work" "$root/build/fuzz/artifacts"
  dict=(); [ -f "$root/tests/fuzz/$name.dict" ] && dict=(-dict="$root/tests/fuzz/$name.dict")
  # FUZZ_SEED fixes libFuzzer's mutation sequence (make check sets it, so a
  # short CI run explores the same inputs each time instead of new ones).
  [ -n "${FUZZ_SEED:-}" ] && dict+=(-seed="$FUZZ_SEED")
  log="$root/build/fuzz/$name.log"
  # -rss_limit_mb: the targets allocate little; a runaway is a finding.
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=1024 \
    -timeout=10 -artifact_prefix="$art" "${dict[@]}" \
    "$work" "$root/tests/fuzz/corpus/$name" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  units=$(ls "$work" | wc -l)
  if [ $rc -eq 0 ]; then
    echo "fuzz $name: ok ${seconds}s, ${execs:-?} runs, ${eps:-?} exec/s, corpus $units files"
  else
    echo "fuzz $name: FAILED (exit $rc), see $log"
    grep -E "ERROR|SUMMARY|leaked|Test unit written" "$log" | head -20 | sed 's/^/    /'
    status=1
  fi
done
exit $status
