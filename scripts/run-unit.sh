#!/usr/bin/env bash
# Runs each cmocka unit test binary given; with VALGRIND=1 under valgrind.
# Prints cmocka's own summary per binary and a closing "N passed, N failed".
set -u
passed=0; failed=0
for bin in "$@"; do
  if [ "${VALGRIND:-}" = 1 ]; then
    valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
      --error-exitcode=1 "$bin"
  else
    "$bin"
  fi
  if [ $? -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $bin"; fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
