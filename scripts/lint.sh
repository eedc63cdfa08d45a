#!/usr/bin/env bash
# make lint: cppcheck, clang-tidy and clang's compiler warnings over app/*.c,
# and the pinned clang-format style over every C file; fails on any finding.
# Usage: scripts/lint.sh [EXTRA_CFLAGS...]   (the Makefile passes its warning
# flags with -Werror, and pkg-config's)
# cppcheck: warning, performance and portability checks; a false alarm is
# silenced inline (// cppcheck-suppress ID) with the reason beside it.
# clang-tidy: the checks in .clang-tidy, where each exclusion is explained.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
cppcheck=${CPPCHECK:-cppcheck}
tidy=${CLANG_TIDY:-clang-tidy}
clang=${CLANG:-clang}
format=${CLANG_FORMAT:-clang-format}
flags=(-std=gnu11 -D_GNU_SOURCE -DNEONFCGI_VERSION='"lint"' -Iinclude "$@")
srcs=(app/*.c)
status=0

if ! "$cppcheck" --quiet --error-exitcode=1 --inline-suppr --std=c11 \
    --enable=warning,performance,portability -D_GNU_SOURCE -DNEONFCGI_VERSION='"lint"' \
    -Iinclude "${srcs[@]}"; then
  echo "lint: cppcheck found problems" >&2
  status=1
fi
# clang-tidy prints "N warnings generated." for system headers it filtered out.
if ! "$tidy" --quiet --header-filter="^$PWD/include/" "${srcs[@]}" -- "${flags[@]}" 2> >(grep -v 'warnings\? generated\.$' >&2); then
  echo "lint: clang-tidy found problems" >&2
  status=1
fi
# The build's warning flags under the other compiler: clang-tidy's checks
# leave compiler warnings out (Checks: -*), and gcc builds the binary.
if ! "$clang" -fsyntax-only -pthread "${flags[@]}" "${srcs[@]}"; then
  echo "lint: clang reports compiler warnings" >&2
  status=1
fi
# Formatting is applied, not just configured (.clang-format, clang-format 14):
# `clang-format -i FILE` fixes what this reports.
c_files=(app/*.c include/*.h tests/unit/*.[ch] tests/fuzz/*.c bench/*.c)
if ! "$format" --dry-run --Werror "${c_files[@]}"; then
  echo "lint: clang-format differs; run: clang-format -i ${c_files[*]}" >&2
  status=1
fi
[ $status -eq 0 ] && echo "lint: cppcheck, clang-tidy, clang warnings and clang-format clean (${#srcs[@]} files)"
exit $status
