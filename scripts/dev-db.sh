#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for development and integration tests:
# loopback only, TLS with a CA generated for this run, SCRAM passwords, a role
# and database `app` with a random password. Nothing here is meant to persist.
#
# Usage: scripts/dev-db.sh COMMAND
#   start            create (first time) and start the cluster; print DATABASE_URL.
#                    Idempotent: when it is already running it only prints the URL.
#   stop             stop the server (pg_ctl -m fast) and remove the state directory
#   halt             stop the server but keep the state (a later `start` resumes it
#                    with the same port, password and data): for database-down tests
#   restart          halt + start
#   status           exit 0 if the server is running, 3 if not
#   url [--verify-full]
#                    DATABASE_URL with sslmode=require, or verify-full + sslrootcert
#   ca               path of the CA certificate that signed the server certificate
#   port | pid | sockdir | dir
#                    TCP port, postmaster pid, unix socket directory, state directory
#   psql [ARGS...]   psql as the superuser over the unix socket, ARGS passed through
#   bindir           the PostgreSQL server's bin directory in use (see PGBIN)
#
# Environment:
#   DEV_DB_DIR         state directory (default ${TMPDIR:-/tmp}/neonfcgi-dev-db-$UID)
#   DEV_DB_PORT        TCP port for a new cluster (default: a free loopback port)
#   DEV_DB_EXTRA_CONF  postgresql.conf lines (newline separated), e.g.
#                      $'log_connections=on\nmax_connections=20', applied by the
#                      start/restart that launches the server; when unset, the
#                      lines given last time stay in effect
#   DEV_DB_START_TIMEOUT_S  readiness deadline of `start` (default 30)
#   PGBIN              the server's bin directory (default: the newest
#                      /usr/lib/postgresql/VERSION/bin that has initdb)
#
# As root, initdb and postgres run as the `postgres` user; otherwise as the caller.
set -euo pipefail

# The newest server installed (Debian's postgresql package pulls in the
# distribution's current major version; several may be installed side by side).
find_pgbin() {
	local d best=
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] || continue
		if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n 1)" = "$d" ]; then
			best=$d
		fi
	done
	[ -n "$best" ] || { echo "dev-db: no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql, or scripts/deps.sh run)" >&2; return 1; }
	printf '%s\n' "$best"
}
PGBIN=${PGBIN:-$(find_pgbin)} || exit 1
DIR=${DEV_DB_DIR:-${TMPDIR:-/tmp}/neonfcgi-dev-db-$(id -u)}
MARKER=$DIR/.neonfcgi-dev-db
DATA=$DIR/data
SOCKDIR=$DIR/sock
SSLDIR=$DIR/ssl
LOG=$DIR/postgres.log

die() { echo "dev-db: $*" >&2; exit 1; }
note() { echo "dev-db: $*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
	PGUSER_OS=postgres
	as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
	PGUSER_OS=$(id -un)
	as_pg() { (cd / && "$@"); }
fi
SUPERUSER=$PGUSER_OS

initialized() { [ -f "$MARKER" ] && [ -f "$DIR/port" ] && [ -f "$DIR/password" ]; }
port() { cat "$DIR/port"; }
password() { cat "$DIR/password"; }

is_running() {
	initialized || return 3
	as_pg "$PGBIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

postmaster_pid() {
	[ -f "$DATA/postmaster.pid" ] && head -n 1 "$DATA/postmaster.pid"
}

free_port() {
	if [ -x /usr/bin/python3 ]; then
		/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
		return
	fi
	# Fallback: first port in a high range that nothing listens on.
	local p
	for p in $(seq 20000 20999); do
		if ! ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return; fi
	done
	die "no free port found"
}

# A random password from the kernel, alphanumeric so it needs no URL escaping.
random_password() {
	local pw
	pw=$(head -c 48 /dev/urandom | base64 -w 0 | tr -dc 'A-Za-z0-9')
	printf '%s' "${pw:0:32}"
}

# postgres must be able to reach its data directory: every directory above it
# has to be traversable by that user (a DEV_DB_DIR under /root would not be).
check_traversable() {
	if ! as_pg test -x "$DIR"; then
		die "user $PGUSER_OS cannot reach $DIR (a parent directory is not searchable); use a DEV_DB_DIR under /tmp"
	fi
}

make_certs() {
	local cn=localhost
	mkdir -p "$SSLDIR"
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "$SSLDIR/ca.key" -out "$SSLDIR/ca.crt" -days 30 \
		-subj "/CN=neonfcgi dev-db CA $(date +%s)" \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "$SSLDIR/server.key" -out "$SSLDIR/server.csr" -subj "/CN=$cn" 2>/dev/null
	printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
		'basicConstraints=critical,CA:FALSE' \
		'keyUsage=critical,digitalSignature,keyEncipherment' \
		'extendedKeyUsage=serverAuth' >"$SSLDIR/server.ext"
	openssl x509 -req -in "$SSLDIR/server.csr" -CA "$SSLDIR/ca.crt" -CAkey "$SSLDIR/ca.key" \
		-CAcreateserial -out "$SSLDIR/server.crt" -days 30 \
		-extfile "$SSLDIR/server.ext" 2>/dev/null
	rm -f "$SSLDIR/server.csr" "$SSLDIR/server.ext"
	# The server refuses a key readable by others; clients only need ca.crt.
	chmod 0755 "$SSLDIR"
	chmod 0644 "$SSLDIR/ca.crt" "$SSLDIR/server.crt"
	chmod 0600 "$SSLDIR/ca.key" "$SSLDIR/server.key"
	chown "$PGUSER_OS" "$SSLDIR/server.key" "$SSLDIR/server.crt"
}

write_conf() {
	local p=$1
	cat >>"$DATA/postgresql.conf" <<EOF

# --- neonfcgi dev-db ---
listen_addresses = '127.0.0.1'
port = $p
unix_socket_directories = '$SOCKDIR'
ssl = on
ssl_cert_file = '$SSLDIR/server.crt'
ssl_key_file = '$SSLDIR/server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
# Throwaway data: durability is not worth the time here.
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
log_line_prefix = '%m [%p] %q%u@%d '
include_if_exists = '$DIR/extra.conf'
EOF
	cat >"$DATA/pg_hba.conf" <<EOF
# TYPE  DATABASE  USER          ADDRESS        METHOD
local   all       $SUPERUSER    peer
hostssl all       all           127.0.0.1/32   scram-sha-256
EOF
}

# Set (even empty) replaces the extra settings; unset keeps the previous ones,
# so a halt/start cycle in a test does not silently drop them.
write_extra_conf() {
	if [ -n "${DEV_DB_EXTRA_CONF+set}" ] || [ ! -f "$DIR/extra.conf" ]; then
		printf '%s\n' "${DEV_DB_EXTRA_CONF:-}" >"$DIR/extra.conf"
		chmod 0644 "$DIR/extra.conf"
	fi
}

init_cluster() {
	local p pw
	if [ -e "$DIR" ] && [ ! -f "$MARKER" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
		die "$DIR exists, is not empty and is not a dev-db directory; refusing to use it"
	fi
	# A previous half-finished init (marker but no password) is started over.
	if [ -f "$MARKER" ]; then remove_dir; fi
	mkdir -p "$DIR"
	chmod 0711 "$DIR"
	: >"$MARKER"
	check_traversable
	p=${DEV_DB_PORT:-$(free_port)}
	mkdir -p "$DATA" "$SOCKDIR"
	chown "$PGUSER_OS" "$DATA" "$SOCKDIR"
	chmod 0700 "$DATA" "$SOCKDIR"
	make_certs
	as_pg "$PGBIN/initdb" -D "$DATA" -U "$SUPERUSER" --auth-local=peer \
		--auth-host=scram-sha-256 -E UTF8 --no-locale --no-sync >"$DIR/initdb.log" 2>&1 ||
		{ cat "$DIR/initdb.log" >&2; die "initdb failed"; }
	write_conf "$p"
	echo "$p" >"$DIR/port"
	: >"$LOG"
	chown "$PGUSER_OS" "$LOG"
	write_extra_conf
	launch
	pw=$(random_password)
	# The password goes through stdin, never argv; statement logging is off
	# for this session even if DEV_DB_EXTRA_CONF turned it on.
	as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$p" -U "$SUPERUSER" \
		-d postgres >/dev/null <<EOF
SET log_statement = 'none';
SET log_min_duration_statement = -1;
CREATE ROLE app LOGIN PASSWORD '$pw';
CREATE DATABASE app OWNER app;
EOF
	(umask 077 && printf '%s\n' "$pw" >"$DIR/password.tmp")
	mv "$DIR/password.tmp" "$DIR/password"
}

# Start postgres without pg_ctl's own wait, then poll pg_isready until a deadline.
launch() {
	local p deadline pid started
	p=$(cat "$DIR/port" 2>/dev/null || echo)
	[ -n "$p" ] || p=$(sed -n "s/^port = //p" "$DATA/postgresql.conf" | tail -n 1)
	if ss -Htln "sport = :$p" | grep -q .; then
		die "port $p on 127.0.0.1 is already in use by another process"
	fi
	as_pg "$PGBIN/pg_ctl" start -W -D "$DATA" -l "$LOG" >/dev/null
	started=$(date +%s%N)
	deadline=$(( started + ${DEV_DB_START_TIMEOUT_S:-30} * 1000000000 ))
	while :; do
		if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$p" -d postgres -t 1; then return 0; fi
		pid=$(postmaster_pid || true)
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$LOG" >&2; die "postgres exited during start-up (log: $LOG)"
		fi
		# The pid file appears within milliseconds; still none after 3 s
		# means the postmaster died before writing it (or removed it).
		if [ -z "$pid" ] && [ $(( $(date +%s%N) - started )) -gt 3000000000 ]; then
			tail -n 20 "$LOG" >&2; die "postgres did not start (log: $LOG)"
		fi
		if [ "$(date +%s%N)" -gt "$deadline" ]; then
			tail -n 20 "$LOG" >&2; die "postgres not ready after ${DEV_DB_START_TIMEOUT_S:-30} s"
		fi
		sleep 0.1
	done
}

url() {
	initialized || die "not initialized ($DIR); run: $0 start"
	local q="sslmode=require"
	if [ "${1:-}" = --verify-full ]; then
		q="sslmode=verify-full&sslrootcert=$SSLDIR/ca.crt"
	fi
	printf 'postgresql://app:%s@127.0.0.1:%s/app?%s\n' "$(password)" "$(port)" "$q"
}

# Also stops a server whose `start` was interrupted before the state was complete.
halt_server() {
	[ -f "$MARKER" ] || return 0
	if [ -f "$DATA/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1; then
		as_pg "$PGBIN/pg_ctl" stop -D "$DATA" -m fast -t 30 >/dev/null
	fi
}

remove_dir() {
	# Only ever delete a directory this script created.
	[ -f "$MARKER" ] || return 0
	rm -rf "$DIR"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
start)
	if is_running; then
		note "already running in $DIR"
	elif initialized; then
		check_traversable
		write_extra_conf
		launch
	else
		init_cluster
	fi
	url
	;;
stop)
	halt_server
	remove_dir
	;;
halt) halt_server ;;
restart)
	initialized || die "not initialized; run: $0 start"
	halt_server
	write_extra_conf
	launch
	;;
status)
	if is_running; then echo "running on 127.0.0.1:$(port) ($DIR)"; else echo "not running"; exit 3; fi
	;;
url) url "$@" ;;
ca) initialized || die "not initialized"; echo "$SSLDIR/ca.crt" ;;
port) initialized || die "not initialized"; port ;;
pid) is_running || die "not running"; postmaster_pid ;;
sockdir) initialized || die "not initialized"; echo "$SOCKDIR" ;;
dir) echo "$DIR" ;;
bindir) echo "$PGBIN" ;;
psql)
	is_running || die "not running; run: $0 start"
	as=()
	if [ "$(id -u)" -eq 0 ]; then
		as=(runuser -u postgres --)
		# psql as postgres starts in our directory; one that user cannot
		# enter (a clone under /root, mode 0700) makes psql complain, so
		# leave it (relative paths in ARGS then resolve from /).
		as_pg test -x "$PWD" || cd /
	fi
	exec env -u PGSSLMODE -u PGPASSWORD -u PGSERVICE -u PGOPTIONS -u PGHOST -u PGPORT \
		"${as[@]}" "$PGBIN/psql" -X -h "$SOCKDIR" -p "$(port)" -U "$SUPERUSER" -d postgres "$@"
	;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 64
	;;
esac
