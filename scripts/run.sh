#!/usr/bin/env bash
# `make run`: neonfcgi behind a private nginx on 127.0.0.1:8080, for trying it out.
# Usage: scripts/run.sh /abs/path/to/neonfcgi
#
# DATABASE_URL comes from the environment or the env file (ENV_FILE, else ./.env);
# when neither has one, a throwaway cluster is started with scripts/dev-db.sh and
# stopped again on exit (unless it was already running). NGINX_LISTEN changes the
# address nginx listens on. Ctrl-C (or SIGTERM) stops everything and cleans up.
# shellcheck disable=SC2317  # cleanup and wait_gone are called from traps
set -euo pipefail

bin=${1:?usage: scripts/run.sh /path/to/neonfcgi}
[ -x "$bin" ] || { echo "run: $bin is not executable" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
listen=${NGINX_LISTEN:-127.0.0.1:8080}
case "$listen" in *:*) ;; *) listen=127.0.0.1:$listen ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/neonfcgi-run.XXXXXX")
sock=$tmp/neonfcgi.sock
app_pid=
nginx_pid=
db_started=0
stopping=0

log() { echo "run: $*" >&2; }

# Bounded wait for a process of ours to exit; SIGKILL after the deadline.
wait_gone() {
	local pid=$1 tenths=$2 i
	for ((i = 0; i < tenths; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid still running after $((tenths / 10)) s, killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null
}

cleanup() {
	local rc=$? st
	trap - EXIT INT TERM
	if [ -n "$nginx_pid" ]; then
		kill -QUIT "$nginx_pid" 2>/dev/null || true
		wait_gone "$nginx_pid" 50 || true
	fi
	if [ -n "$app_pid" ]; then
		kill -TERM "$app_pid" 2>/dev/null || true
		# SHUTDOWN_TIMEOUT_MS is 10 s by default; give it that plus a margin.
		st=0; wait_gone "$app_pid" 150 || st=$?
		[ "$st" -eq 0 ] || log "neonfcgi exited with status $st"
		if [ -S "$sock" ]; then log "warning: neonfcgi left its socket $sock behind"; fi
	fi
	if [ "$db_started" = 1 ]; then
		"$here/dev-db.sh" stop || log "dev-db stop failed"
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'stopping=1' INT TERM

# Does the env file neonfcgi will read define DATABASE_URL?
env_file_has_url() {
	local f=${ENV_FILE:-$root/.env}
	[ -f "$f" ] && grep -Eq '^[[:space:]]*(export[[:space:]]+)?DATABASE_URL=' "$f"
}

if [ -z "${DATABASE_URL:-}" ] && ! env_file_has_url; then
	if ! "$here/dev-db.sh" status >/dev/null 2>&1; then db_started=1; fi
	log "DATABASE_URL not set: using a throwaway PostgreSQL (scripts/dev-db.sh)"
	DATABASE_URL=$("$here/dev-db.sh" start)
	export DATABASE_URL
fi

# Children get their own session so a Ctrl-C on the terminal reaches only this
# script, which then stops them in order (a second SIGINT would make neonfcgi
# skip its graceful shutdown).
cd "$root"
API_SOCKET=$sock API_SOCKET_MODE=${API_SOCKET_MODE:-0660} setsid "$bin" serve </dev/null &
app_pid=$!

# nginx with its own prefix: nothing is read from or written to /etc/nginx or
# /var/lib/nginx. Workers run as root when we are root, so they can open the
# 0660 socket; otherwise they run as us, the socket's owner.
mkdir -p "$tmp/nginx/logs"
sed -e "s#/run/neonfcgi/neonfcgi.sock#$sock#g" -e "s#127.0.0.1:8080#$listen#g" \
	"$root/deploy/nginx/neonfcgi.conf" >"$tmp/nginx/neonfcgi.conf"
{
	[ "$(id -u)" -eq 0 ] && echo "user root;"
	cat <<EOF
daemon off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log $tmp/nginx/logs/access.log;
    client_body_temp_path $tmp/nginx/client_body;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    proxy_temp_path $tmp/nginx/proxy;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    include $tmp/nginx/neonfcgi.conf;
}
EOF
} >"$tmp/nginx/nginx.conf"
setsid nginx -p "$tmp/nginx" -e "$tmp/nginx/logs/error.log" -c "$tmp/nginx/nginx.conf" </dev/null &
nginx_pid=$!

# Bounded wait until /health answers through nginx.
url=http://$listen
for ((i = 0; ; i++)); do
	if curl -fsS -o /dev/null --max-time 1 "$url/health" 2>/dev/null; then break; fi
	if ! kill -0 "$app_pid" 2>/dev/null; then
		st=0; wait "$app_pid" || st=$?; app_pid=
		log "neonfcgi exited with status $st during start-up"; exit 1
	fi
	if ! kill -0 "$nginx_pid" 2>/dev/null; then
		nginx_pid=
		log "nginx failed to start:"; tail -n 5 "$tmp/nginx/logs/error.log" >&2 || true
		log "(is $listen in use? set NGINX_LISTEN=127.0.0.1:8081)"; exit 1
	fi
	if [ "$i" -ge 150 ] || [ "$stopping" = 1 ]; then
		log "no answer from $url/health after 15 s"; exit 1
	fi
	sleep 0.1
done

cat <<EOF

neonfcgi is serving behind nginx on $url (socket $sock). Try:

    curl -i $url/health
    curl -i $url/health/db
    curl -s $url/metrics

Ctrl-C stops nginx, neonfcgi$([ "$db_started" = 1 ] && echo " and the dev database").
EOF

# Sleep until a signal arrives or one of the servers dies.
status=0
while [ "$stopping" = 0 ]; do
	gone=
	st=0; wait -n -p gone "$app_pid" "$nginx_pid" || st=$?
	gone=${gone:-}  # unset when a signal interrupted the wait
	if [ "$gone" = "$app_pid" ]; then
		app_pid=; status=1; log "neonfcgi exited unexpectedly with status $st"; break
	elif [ "$gone" = "$nginx_pid" ]; then
		nginx_pid=; status=1; log "nginx exited unexpectedly with status $st"; break
	fi
done
echo >&2
log "stopping"
exit "$status"
