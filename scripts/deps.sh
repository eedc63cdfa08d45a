#!/usr/bin/env bash
# Installs, with apt-get, the build and test dependencies that are missing.
# Idempotent: when everything is present it only runs dpkg-query and exits.
# Usage: scripts/deps.sh [build|test|bench|all]   (default: all)
set -euo pipefail

build_pkgs=(gcc make pkg-config libfcgi-dev libpq-dev libjansson-dev libcmocka-dev libssl-dev)
test_pkgs=(postgresql-15 postgresql-client-15 nginx lighttpd pgbouncer curl spawn-fcgi
           openssl ca-certificates iproute2 iptables procps wrk python3 python3-prometheus-client jq
           valgrind cppcheck clang clang-tidy apache2 libapache2-mod-fcgid systemd
           man-db groff-base)
bench_pkgs=(wrk postgresql-contrib)

what=${1:-all}
case "$what" in
  build) want=("${build_pkgs[@]}") ;;
  test)  want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  all)   want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|bench|all]" >&2; exit 64 ;;
esac

missing=()
for p in "${want[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

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
