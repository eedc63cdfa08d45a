#!/usr/bin/env bash
# Installs, with apt-get, the build and test dependencies that are missing.
# Idempotent: when everything is present it only runs dpkg-query and exits.
# Usage: scripts/deps.sh [build|run|test|bench|deb|all]   (default: all)
#   build  compile neonfcgi (make)
#   run    build + what `make run` starts (PostgreSQL, nginx, curl)
#   test   run + what `make check` needs: unit tests, fuzz targets, every
#          integration test (the package test builds the .deb: dpkg-dev,
#          debhelper and build-essential are here, lintian is not)
#   bench  test + what `make bench` adds
#   deb    build + what `make deb` needs (dpkg-buildpackage, debhelper, lintian)
#   all    all of the above
# PostgreSQL and clang come from Debian's version-less packages (postgresql,
# libclang-rt-dev, ...), so the distribution's current versions are used;
# scripts/dev-db.sh finds the server's version under /usr/lib/postgresql.
set -euo pipefail

# libc6-dev: the C library's headers, only a Recommends of gcc.
build_pkgs=(gcc libc6-dev make pkg-config libfcgi-dev libpq-dev libjansson-dev libssl-dev)
run_pkgs=(postgresql postgresql-client nginx curl openssl ca-certificates iproute2 procps)
# prometheus: promtool checks deploy/prometheus/neonfcgi-alerts.yml.
# libclang-rt-dev: the libFuzzer and sanitizer runtimes of clang, only a
# Recommends of clang (and we install without Recommends).
test_pkgs=(libcmocka-dev lighttpd pgbouncer spawn-fcgi iptables wrk python3
           python3-prometheus-client prometheus jq valgrind cppcheck clang libclang-rt-dev clang-tidy
           apache2 libapache2-mod-fcgid systemd man-db groff-base
           dpkg-dev debhelper build-essential)
bench_pkgs=(wrk postgresql-contrib)
# libcmocka-dev: the package build runs the unit tests (unless nocheck).
deb_pkgs=(dpkg-dev debhelper build-essential lintian libcmocka-dev)

what=${1:-all}
case "$what" in
  build) want=("${build_pkgs[@]}") ;;
  run)   want=("${build_pkgs[@]}" "${run_pkgs[@]}") ;;
  test)  want=("${build_pkgs[@]}" "${run_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) want=("${build_pkgs[@]}" "${run_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  deb)   want=("${build_pkgs[@]}" "${deb_pkgs[@]}") ;;
  all)   want=("${build_pkgs[@]}" "${run_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}"
               "${deb_pkgs[@]}") ;;
  *) echo "usage: $0 [build|run|test|bench|deb|all]" >&2; exit 64 ;;
esac

missing=()
for p in "${want[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
# Listed once even when two groups name it.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')

if [ "$(id -u)" -ne 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]}" >&2
  echo "deps.sh: run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists once if they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
  apt-get update -qq
fi
# Installing server packages must not start system services behind our back.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; created_policy=1
fi
trap '[ $created_policy -eq 1 ] && rm -f "$policy"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
