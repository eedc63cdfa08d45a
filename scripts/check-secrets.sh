#!/usr/bin/env bash
# Secrets gate (run by `make check`, first thing after deps): fails when the
# tree holds something that looks like a real credential.
#
# Usage: scripts/check-secrets.sh            # git-tracked + untracked-but-not-ignored files
#        scripts/check-secrets.sh FILE...    # just these files (tests use this)
#
# What fails, outside tests/fixtures/ (test data that is fake on purpose):
#   1. a PostgreSQL URI with an inline password, postgres[ql]://USER:PASSWORD@...,
#      unless PASSWORD is an obvious placeholder (rule below);
#   2. a Neon-style token: npg_ followed by 12 or more letters/digits;
#   3. a private key block: -----BEGIN ... PRIVATE KEY-----;
#   4. an env file: a file named .env or .env.SOMETHING (except .env.example,
#      .env.sample, .env.template). `.env` is git-ignored; keep credentials
#      there or in the environment.
#
# Placeholder rule (1): the password is exactly one of the words password,
# PASSWORD, pass, pw, secret, or a mask (..., ***, ****, …), or a template that
# is filled in elsewhere: <anything>, ${ANYTHING}, $NAME (e.g. $PGPASSWORD),
# {name} (Python format), %s (printf). Anything else counts as real.
#
# Known fake passwords in test sources (redaction test vectors and the like)
# are listed, one "PATH<TAB>MATCH" a line with a comment saying why, in
# scripts/check-secrets.allow; an entry exempts that exact match in that file
# only. Keep it short: prefer a placeholder or tests/fixtures/.
set -euo pipefail
cd "$(dirname "$0")/.."
allow_file=scripts/check-secrets.allow

uri_re='postgres(ql)?://[^[:space:]/?#@:"'"'"'`]*:[^[:space:]/@"'"'"'`]+@'
token_re='npg_[A-Za-z0-9]{12,}'
key_re='-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----'

is_placeholder() {
  case "$1" in
    password|PASSWORD|pass|pw|secret|'...'|'***'|'****'|'…') return 0 ;;
    \<*\>|\$\{*\}|\{*\}|%s) return 0 ;;
  esac
  [[ "$1" =~ ^\$[A-Za-z_][A-Za-z0-9_]*$ ]]
}

allowed() { # PATH MATCH
  [ -f "$allow_file" ] || return 1
  grep -v '^#' "$allow_file" | grep -qxF -- "$1"$'\t'"$2"
}

if [ $# -gt 0 ]; then
  all=("$@")
else
  mapfile -d '' all < <(git ls-files -z --cached --others --exclude-standard)
fi
files=()
for f in "${all[@]}"; do
  case "$f" in tests/fixtures/*|./tests/fixtures/*) continue ;; esac
  [ -f "$f" ] && [ "$f" != "$allow_file" ] && files+=("$f") # skip deleted ones
done

found=0
report() { echo "check-secrets: $1" >&2; found=$((found + 1)); }

# grep over all files at once: FILE NUL LINE:MATCH per hit (-Z, -n, -o).
hits() {
  [ ${#files[@]} -gt 0 ] || return 0
  printf '%s\0' "${files[@]}" | xargs -0 grep -a -H -Z -n -o -E -- "$1" 2>/dev/null || true
}

for f in "${files[@]}"; do
  base=${f##*/}
  case "$base" in
    .env.example|.env.sample|.env.template) ;;
    .env|.env.*) report "$f: an env file in the tree (it may hold credentials; .env is git-ignored)" ;;
  esac
done
while IFS= read -r -d '' f && IFS= read -r hit; do
  line=${hit%%:*}; text=${hit#*:}
  pw=${text#*://}; pw=${pw#*:}; pw=${pw%@}
  if ! is_placeholder "$pw" && ! allowed "$f" "$text"; then
    report "$f:$line: PostgreSQL URI with an inline password: ${text%%:*}://…:<redacted>@"
  fi
done < <(hits "$uri_re")
while IFS= read -r -d '' f && IFS= read -r hit; do
  allowed "$f" "${hit#*:}" || report "$f:${hit%%:*}: Neon-style token (npg_…)"
done < <(hits "$token_re")
while IFS= read -r -d '' f && IFS= read -r hit; do
  report "$f:${hit%%:*}: private key"
done < <(hits "$key_re")

if [ "$found" -gt 0 ]; then
  echo "check-secrets: $found finding(s); remove the secret (rotate it if it was real)," \
    "use a placeholder, or move fake test data to tests/fixtures/" >&2
  exit 1
fi
echo "check-secrets: ${#files[@]} files clean"
