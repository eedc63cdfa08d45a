"""Acceptance tests of the serving skeleton (issue 2): configuration and the
command line, routes through nginx and over raw FastCGI, worker supervision,
signals, listen sockets, spawned mode and log formats. Written against
DESIGN.md; the database itself is not touched (/health never queries it), but
the URL is the real dev-db one, so the leak check covers it."""

import json
import os
import re
import signal
import socket
import stat
import subprocess
import time

from harness import (CLEAN_PATH, DEV_DB_SH, RECORD, REPO, as_background_job, behind_nginx,
                     descendants_of, fail, fcgi_params, fcgi_request, free_port,
                     http_request, kill_quietly, pid_alive, run_command, spawn, tail,
                     thread_stats, wait_until)

EX_USAGE = 64
EX_CONFIG = 78


def assert_config_error(res, names, password):
    """Exit 78, every variable in `names` mentioned, the password nowhere."""
    res.expect(EX_CONFIG, password)
    shown = res.describe(secret=password)
    missing = [n for n in names if n not in res.output]
    if missing:
        fail(f"output does not name {', '.join(missing)}\n{shown}")


def config_value(output, name):
    """Value of NAME in check-config output (`NAME=value`, quotes optional)."""
    m = re.search(rf"^\s*{re.escape(name)}\s*[=:]\s*\"?([^\"\n]*?)\"?\s*$", output, re.M)
    return m.group(1) if m else None


# --------------------------------------------------------------------------
# Configuration errors: exit 78, the variable named, the password never shown.
# Each case is a function of the dev database (URLs keep the real password so
# a leak would be caught).

CONFIG_ERRORS = {
    "missing_database_url": (lambda db: {"DATABASE_URL": None}, ["DATABASE_URL"]),
    "api_port_80": (lambda db: {"API_PORT": "80"}, ["API_PORT"]),
    "api_port_abc": (lambda db: {"API_PORT": "abc"}, ["API_PORT"]),
    "api_port_70000": (lambda db: {"API_PORT": "70000"}, ["API_PORT"]),
    "workers_0": (lambda db: {"WORKERS": "0"}, ["WORKERS"]),
    "db_pool_size_negative": (lambda db: {"DB_POOL_SIZE": "-1"}, ["DB_POOL_SIZE"]),
    "mysql_url": (lambda db: {"DATABASE_URL": db.url_variant(scheme="mysql")},
                  ["DATABASE_URL"]),
    "sslmode_disable": (lambda db: {"DATABASE_URL": db.url_variant(
        query={"sslmode": "disable"})}, ["DATABASE_URL"]),
    # postgresql://app:<pw>@127.0.0.1:5432/app: a TCP host without sslmode
    "sslmode_absent_on_tcp_host": (lambda db: {"DATABASE_URL": db.url_variant(
        port=5432, query={})}, ["DATABASE_URL"]),
    "log_level_unknown": (lambda db: {"LOG_LEVEL": "loud"}, ["LOG_LEVEL"]),
    "pre_ping_unknown_boolean": (lambda db: {"DB_POOL_PRE_PING": "maybe"},
                                 ["DB_POOL_PRE_PING"]),
    "two_bad_variables_both_named": (lambda db: {"WORKERS": "0", "API_PORT": "abc"},
                                     ["WORKERS", "API_PORT"]),
}

# The same through the server itself: plain `neonfcgi` (and once `serve`).
SERVE_CONFIG_ERRORS = {
    "missing_database_url": (),
    "workers_0": (),
    "mysql_url": ("serve",),
    "two_bad_variables_both_named": (),
}


def _config_error_test(case, argv):
    make_vars, names = CONFIG_ERRORS[case]

    def test(neonfcgi, dev_db):
        vars = make_vars(dev_db)
        if argv != ("check-config",) and "API_PORT" not in vars:
            # Should validation wrongly pass, the server must not take a shared port.
            vars["API_PORT"] = free_port()
        res = neonfcgi.run(*argv, timeout=10, **vars)
        assert_config_error(res, names, dev_db.password)
    test.__doc__ = f"neonfcgi {' '.join(argv) or '(serve)'} with {case}: exit 78"
    return test


for _case in CONFIG_ERRORS:
    globals()[f"test_config_error_{_case}"] = _config_error_test(_case, ("check-config",))
for _case, _argv in SERVE_CONFIG_ERRORS.items():
    globals()[f"test_serve_config_error_{_case}"] = _config_error_test(_case, _argv)


def test_check_config_prints_redacted_config(neonfcgi, dev_db):
    res = neonfcgi.run("check-config").expect(0, dev_db.password)
    shown = res.describe(secret=dev_db.password)
    assert "****" in res.stdout, f"no redacted password (****) in stdout\n{shown}"
    assert "DATABASE_URL" in res.stdout, shown


# --------------------------------------------------------------------------
# The env file


def test_dotenv_in_cwd_bad_value_is_reported(neonfcgi, dev_db, tmp_path):
    cwd = neonfcgi.workdir("cwd")
    (cwd / ".env").write_text("# from the working directory\nAPI_PORT=80\n")
    res = neonfcgi.run("check-config", cwd=cwd)
    assert_config_error(res, ["API_PORT"], dev_db.password)


def test_dotenv_in_cwd_value_is_used(neonfcgi, dev_db):
    cwd = neonfcgi.workdir("cwd")
    (cwd / ".env").write_text("export WORKER_THREADS='7'\n")
    res = neonfcgi.run("check-config", cwd=cwd).expect(0, dev_db.password)
    assert config_value(res.stdout, "WORKER_THREADS") == "7", res.stdout


def test_dotenv_supplies_database_url(neonfcgi, dev_db):
    cwd = neonfcgi.workdir("cwd")
    (cwd / ".env").write_text(f'# quoted, with export\nexport DATABASE_URL="{dev_db.url}"\n')
    neonfcgi.run("check-config", cwd=cwd, DATABASE_URL=None).expect(0, dev_db.password)


def test_env_file_variable_is_read(neonfcgi, dev_db, tmp_path):
    f = tmp_path / "custom.env"
    f.write_text("WORKER_THREADS=5\n")
    res = neonfcgi.run("check-config", ENV_FILE=f).expect(0, dev_db.password)
    assert config_value(res.stdout, "WORKER_THREADS") == "5", res.stdout


def test_environment_overrides_env_file(neonfcgi, dev_db, tmp_path):
    f = tmp_path / "custom.env"
    f.write_text("WORKER_THREADS=5\nAPI_PORT=80\n")
    res = neonfcgi.run("check-config", ENV_FILE=f, WORKER_THREADS=6, API_PORT=9123)
    res.expect(0, dev_db.password)
    assert config_value(res.stdout, "WORKER_THREADS") == "6", res.stdout


def test_env_file_nonexistent_is_config_error(neonfcgi, dev_db):
    res = neonfcgi.run("check-config", ENV_FILE="/nonexistent/neonfcgi.env")
    assert_config_error(res, [], dev_db.password)
    assert "ENV_FILE" in res.output or "/nonexistent/neonfcgi.env" in res.output, \
        res.describe()


# --------------------------------------------------------------------------
# Command line

DESIGN_VARIABLES = """DATABASE_URL API_HOST API_PORT API_SOCKET API_SOCKET_MODE
FCGI_WEB_SERVER_ADDRS WORKERS WORKER_THREADS DB_POOL_SIZE DB_MAX_OVERFLOW
DB_OVERFLOW_IDLE_MS DB_POOL_TIMEOUT_MS DB_POOL_PRE_PING DB_IDLE_TIMEOUT_S
DB_MAX_LIFETIME_S DB_CONNECT_TIMEOUT_MS DB_RETRY_ATTEMPTS DB_RETRY_BACKOFF_MS
DB_CONNECTION_BUDGET DB_FAILURE_HOLD_MS HEALTH_TIMEOUT_MS HEALTH_DETAILS LOG_LEVEL LOG_FORMAT
MAX_REQUESTS SHUTDOWN_TIMEOUT_MS ACCESS_LOG SLOW_REQUEST_MS MIGRATE_ON_START
DB_START_TIMEOUT_MS MIGRATIONS_DIR ENV_FILE API_SOCKET_OWNER API_SOCKET_GROUP
RUN_USER RUN_GROUP""".split()


def test_version_prints_library_versions(neonfcgi):
    res = neonfcgi.run("--version")
    assert res.rc == 0, res.describe()
    out = res.stdout
    assert re.search(r"\d+\.\d+\.\d+", out), f"no version number\n{res.describe()}"
    for lib in ("libpq", "fcgi", "jansson"):
        assert lib in out.lower(), f"{lib} not mentioned in --version\n{res.describe()}"


def test_help_lists_subcommands_and_variables(neonfcgi):
    res = neonfcgi.run("--help")
    assert res.rc == 0, res.describe()
    # ping and migrate (DESIGN.md section 3) join this list when they are implemented.
    missing = [w for w in ("serve", "check-config", "--version", "--help")
               + tuple(DESIGN_VARIABLES) if w not in res.stdout]
    assert not missing, f"--help does not mention {missing}\n{res.describe()}"


def test_unknown_subcommand_exits_64(neonfcgi):
    res = neonfcgi.run("frobnicate")
    assert res.rc == EX_USAGE, res.describe()
    assert res.stderr.strip(), "no message on stderr"


# --------------------------------------------------------------------------
# Through nginx (deploy/nginx/neonfcgi.conf)


def assert_common_headers(r):
    """Every response: JSON body, Cache-Control: no-store, correct Content-Length."""
    assert r.header("Cache-Control", "").lower().replace(" ", "") == "no-store", \
        f"Cache-Control: {r.header('Cache-Control')!r}\n{r}"
    cl = r.header("Content-Length")
    assert cl is not None and int(cl) == len(r.body), \
        f"Content-Length {cl!r} but body has {len(r.body)} bytes\n{r}"
    r.json()


def test_nginx_get_health(neonfcgi, nginx):
    with behind_nginx(neonfcgi, nginx, WORKERS=2) as (srv, web):
        r = web.get("/health")
        assert r.status == 200, str(r)
        ctype = r.header("Content-Type", "")
        assert ctype.split(";")[0].strip() == "application/health+json", ctype
        assert_common_headers(r)
        body = r.json()
        assert body.get("status") == "pass", body
        assert body.get("serviceId") == "neonfcgi", body
        assert isinstance(body.get("version"), str) and body["version"], body
        assert isinstance(body.get("uptime_s"), (int, float)) and body["uptime_s"] >= 0, body
        assert isinstance(body.get("pid"), int), body
        assert body["pid"] in srv.workers() + [srv.pid], \
            f"pid {body['pid']} is not the master or a worker {srv.workers()}"


def test_nginx_head_health(neonfcgi, nginx):
    # One worker, so the pid in the body (and so its length) is stable.
    with behind_nginx(neonfcgi, nginx, WORKERS=1) as (srv, web):
        g1 = web.get("/health")
        h = web.request("HEAD", "/health")
        g2 = web.get("/health")
        assert h.status == 200, str(h)
        assert h.body == b"", f"HEAD returned a body: {h.body[:200]!r}"
        assert h.header("Cache-Control", "").replace(" ", "") == "no-store", str(h)
        cl = h.header("Content-Length")
        assert cl is not None, f"HEAD has no Content-Length\n{h}"
        assert int(cl) in (len(g1.body), len(g2.body)), \
            f"HEAD Content-Length {cl}, GET bodies {len(g1.body)}/{len(g2.body)} bytes"


def test_nginx_post_health_405(neonfcgi, nginx):
    with behind_nginx(neonfcgi, nginx, WORKERS=1) as (srv, web):
        r = web.request("POST", "/health", body=b"x=1",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 405, str(r)
        allow = [m.strip() for m in r.header("Allow", "").split(",")]
        assert allow == ["GET", "HEAD"], f"Allow: {r.header('Allow')!r}"
        assert_common_headers(r)
        for method in ("PUT", "DELETE"):
            r = web.request(method, "/health")
            assert r.status == 405, f"{method}: {r}"
            assert_common_headers(r)


def test_nginx_unknown_path_404(neonfcgi, nginx):
    with behind_nginx(neonfcgi, nginx, WORKERS=1) as (srv, web):
        for path in ("/nope", "/", "/healthz", "/health/nope"):
            r = web.get(path)
            assert r.status == 404, f"{path}: {r}"
            assert_common_headers(r)


def test_nginx_query_string_routes_to_health(neonfcgi, nginx):
    with behind_nginx(neonfcgi, nginx, WORKERS=1) as (srv, web):
        r = web.get("/health?x=1")
        assert r.status == 200, str(r)
        assert r.json().get("status") == "pass", r.text
        assert_common_headers(r)


def test_tcp_listen_serves_through_nginx(neonfcgi, nginx):
    with neonfcgi.start(listen="tcp", WORKERS=1) as srv, \
            nginx.start(f"127.0.0.1:{srv.address[1]}") as web:
        r = web.get("/health")
        assert r.status == 200, str(r)


# --------------------------------------------------------------------------
# Routing over raw FastCGI (shared hosting mounts the app under a prefix)


def test_fastcgi_path_info_routing(neonfcgi):
    with neonfcgi.start(WORKERS=1) as srv:
        p = fcgi_params("/cgi-bin/neonfcgi.fcgi/health", script_name="/cgi-bin/neonfcgi.fcgi",
                        path_info="/health")
        r = fcgi_request(srv.socket, p)
        assert r.status == 200, str(r)
        assert r.json().get("status") == "pass", r.text
        # PATH_INFO wins over REQUEST_URI when non-empty.
        p = fcgi_params("/health", script_name="/cgi-bin/neonfcgi.fcgi", path_info="/nope")
        r = fcgi_request(srv.socket, p)
        assert r.status == 404, f"PATH_INFO=/nope with REQUEST_URI=/health: {r}"


def test_fastcgi_request_uri_routing(neonfcgi):
    with neonfcgi.start(WORKERS=1) as srv:
        r = fcgi_request(srv.socket, fcgi_params("/health?x", path_info=""))
        assert r.status == 200, str(r)
        r = fcgi_request(srv.socket, fcgi_params("/health?x", path_info="", script_name=""))
        assert r.status == 200, str(r)


# --------------------------------------------------------------------------
# Workers and signals


def _poll_health(web, statuses):
    r = web.get("/health", timeout=2.0)
    statuses.append(r.status)
    return r


def death_line(pid):
    """Regex (re.M | re.I) of a log line naming pid and signal 9."""
    return rf"^(?=.*\b{pid}\b)(?=.*(?:signal\W{{0,3}}9\b|SIGKILL|sig\w*=9\b)).*$"


def test_killed_worker_is_respawned(neonfcgi, nginx):
    with behind_nginx(neonfcgi, nginx, WORKERS=2) as (srv, web):
        before = srv.wait_workers(2)
        assert web.get("/health").status == 200
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        # kill() returns before the process is gone; a connection the victim
        # accepts in that instant dies with it (a 502 no server can avoid),
        # and that instant lasts until its last thread has exited, not just
        # its main one. From the moment it is dead, every request must succeed.
        wait_until(lambda: not pid_alive(victim), 2.0, what=f"worker {victim} to die")
        statuses = []

        def respawned():
            _poll_health(web, statuses)
            w = srv.workers()
            return len(w) == 2 and victim not in w and bool(set(w) - set(before))
        try:
            wait_until(respawned, 3.0, what=f"a new worker replacing {victim}")
        except AssertionError as exc:
            fail(f"{exc}; workers now {srv.workers()}, before {before}\n{tail(srv.log())}")
        for _ in range(10):
            _poll_health(web, statuses)
        bad = [s for s in statuses if s != 200]
        assert not bad, f"/health answered {bad} around the worker's death"
        # One log line names the dead worker and the signal.
        srv.wait_log(death_line(victim), 3.0, flags=re.M | re.I)


SCHED_OTHER, SCHED_BATCH, SCHED_IDLE = 0, 3, 5


def thread_policies(pid):
    """{tid: scheduling policy} of every thread of pid."""
    return {tid: int(f[38]) for tid, f in thread_stats(pid).items()}


def test_request_threads_run_under_sched_batch(neonfcgi):
    # Each worker's request threads, and only they, leave the normal policy;
    # the master, each worker's main thread and its waiting room keep it.
    with neonfcgi.start(WORKERS=2, WORKER_THREADS=3) as srv:
        for w in srv.wait_workers(2):
            wait_until(lambda: list(thread_policies(w).values()).count(SCHED_BATCH) == 3, 3.0,
                       what=f"three SCHED_BATCH threads in worker {w}: {thread_policies(w)}")
            pol = thread_policies(w)
            assert pol[w] == SCHED_OTHER, f"worker {w}'s main thread: {pol}"
            assert sorted(pol.values()) == [SCHED_OTHER] * (len(pol) - 3) + [SCHED_BATCH] * 3, \
                str(pol)
        assert set(thread_policies(srv.pid).values()) == {SCHED_OTHER}
        assert fcgi_request(srv.socket, fcgi_params("/health")).status == 200
    # A policy the operator chose is kept.
    with neonfcgi.start(WORKERS=1, WORKER_THREADS=3, wrap=["chrt", "--idle", "0"]) as srv:
        w = srv.wait_workers(1)[0]
        wait_until(lambda: len(thread_policies(w)) >= 5, 3.0, what=f"worker {w}'s threads")
        assert fcgi_request(srv.socket, fcgi_params("/health")).status == 200
        assert set(thread_policies(w).values()) == {SCHED_IDLE}, str(thread_policies(w))


def test_sigterm_stops_gracefully(neonfcgi):
    with neonfcgi.start(WORKERS=2, SHUTDOWN_TIMEOUT_MS=3000) as srv:
        workers = srv.wait_workers(2)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait_exit(3.0 + 2.0)
        elapsed = time.monotonic() - t0
        assert rc is not None, f"still running 5 s after SIGTERM\n{tail(srv.log())}"
        assert rc == 0, f"exit code {rc} after SIGTERM\n{tail(srv.log())}"
        assert elapsed < 3.0 + 1.0, f"took {elapsed:.1f}s (SHUTDOWN_TIMEOUT_MS=3000)"
        assert not os.path.lexists(srv.socket), "socket file left behind"
        wait_until(lambda: not any(pid_alive(p) for p in workers), 2.0,
                   what=f"workers {workers} to be gone")


def test_sigint_and_sigquit_stop_gracefully(neonfcgi):
    for sig in (signal.SIGINT, signal.SIGQUIT):
        with neonfcgi.start(WORKERS=1, SHUTDOWN_TIMEOUT_MS=3000) as srv:
            srv.wait_workers(1)
            rc = srv.stop(sig, timeout=5.0)  # asserts 0, socket gone, no workers left
            assert rc == 0


def test_sighup_invalid_env_file_keeps_old_config(neonfcgi, nginx, tmp_path):
    envf = tmp_path / "reload.env"
    envf.write_text("WORKERS=2\n")
    with neonfcgi.start(ENV_FILE=envf) as srv, nginx.start(srv.socket) as web:
        before = srv.wait_workers(2)
        mark = srv.log_mark()
        envf.write_text("WORKERS=2\nWORKER_THREADS=0\nLOG_LEVEL=bogus\n")
        srv.send_signal(signal.SIGHUP)
        srv.wait_log(r"WORKER_THREADS", 5.0, since=mark)
        srv.wait_log(r"LOG_LEVEL", 5.0, since=mark)
        assert srv.running(), "master exited after a bad reload"
        r = web.get("/health")
        assert r.status == 200, f"/health after a rejected reload: {r}"
        assert srv.workers() == before, \
            f"workers replaced although the reload was invalid: {before} -> {srv.workers()}"


def test_sighup_valid_env_file_replaces_workers(neonfcgi, nginx, tmp_path):
    envf = tmp_path / "reload.env"
    envf.write_text("WORKERS=2\n")
    with neonfcgi.start(ENV_FILE=envf) as srv, nginx.start(srv.socket) as web:
        before = srv.wait_workers(2)
        envf.write_text("WORKERS=3\n")
        srv.send_signal(signal.SIGHUP)
        statuses = []

        def replaced():
            _poll_health(web, statuses)
            w = srv.workers()
            return len(w) == 3 and not set(w) & set(before)
        try:
            wait_until(replaced, 10.0, what="3 new workers")
        except AssertionError as exc:
            fail(f"{exc}; workers {before} -> {srv.workers()}\n{tail(srv.log())}")
        assert web.get("/health").status == 200
        bad = [s for s in statuses if s != 200]
        assert not bad, f"/health answered {bad} during the reload"


# --------------------------------------------------------------------------
# Listen sockets


def test_second_instance_on_same_socket_is_refused(neonfcgi):
    with neonfcgi.start(WORKERS=1) as first:
        res = neonfcgi.run(API_SOCKET=first.socket, WORKERS=1, timeout=10)
        assert res.rc != 0, f"second instance exited 0\n{res.describe()}"
        assert (first.socket in res.output
                or re.search(r"already|another|in use|listening", res.output, re.I)), \
            f"message does not mention the socket or another server\n{res.describe()}"
        assert stat.S_ISSOCK(os.lstat(first.socket).st_mode), "first server's socket gone"
        r = first.get("/health")
        assert r.status == 200, f"first server after the refused start: {r}"


def test_stale_socket_file_is_replaced(neonfcgi):
    path = str(neonfcgi.workdir("stale") / "neonfcgi.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays, nobody listens: a crashed server's leftover
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with neonfcgi.start(address=path, WORKERS=1) as srv:
        assert srv.get("/health").status == 200


# --------------------------------------------------------------------------
# Spawned mode (socket on fd 0)


def test_spawned_by_spawn_fcgi_serves_through_nginx(neonfcgi, nginx):
    # Spawned without PHP_FCGI_CHILDREN, WORKERS is 1: one process, no
    # master (DESIGN.md §1), so the spawned pid itself answers.
    with neonfcgi.start_spawned() as srv, nginx.start(srv.socket) as web:
        r = web.get("/health")
        assert r.status == 200, str(r)
        assert r.json().get("status") == "pass"
        assert r.json().get("pid") == srv.pid, f"answered by {r.json().get('pid')}, not {srv.pid}"
        for _ in range(5):
            r = web.get("/health")
            assert r.status == 200 and r.json().get("pid") == srv.pid, str(r)
        assert srv.workers() == [], "a process spawned with WORKERS=1 forked workers"


def test_spawned_workers_default_to_php_fcgi_children(neonfcgi):
    with neonfcgi.start_spawned(PHP_FCGI_CHILDREN=2) as srv:
        srv.wait_workers(2)


# --------------------------------------------------------------------------
# Logging


def _exercise(srv):
    srv.get("/health")
    srv.get("/nope")
    srv.get("/health", method="POST")


def test_log_format_json_every_line_is_json(neonfcgi):
    with neonfcgi.start(LOG_FORMAT="json", WORKERS=2, ACCESS_LOG="on") as srv:
        _exercise(srv)
        victim = srv.wait_workers(2)[0]
        os.kill(victim, signal.SIGKILL)  # a warning from the master too
        srv.wait_workers(2, exclude=[victim])
        srv.stop()
    objs = srv.json_log()
    # The master reports the death; "pid" is the writer's, the dead worker's
    # pid must live in another field, not replace it.
    death = [o for o in objs if str(victim) in json.dumps(list(o.values()))
             and str(o["pid"]) != str(victim)]
    assert death, (f"no line from the master ({srv.pid}) names the killed worker {victim}: "
                   + "; ".join([ln for ln in srv.log().splitlines() if str(victim) in ln][-2:]))


def test_log_format_text_every_line_has_pid(neonfcgi):
    with neonfcgi.start(WORKERS=1, ACCESS_LOG="on") as srv:
        _exercise(srv)
        srv.stop()
    lines = [ln for ln in srv.log().splitlines() if ln.strip()]
    assert lines, "no log lines at all"
    bad = [ln for ln in lines if not re.search(r"\bpid=\d+\b", ln)]
    assert not bad, f"{len(bad)} line(s) without pid=: {bad[:3]}"


def test_log_text_pid_key_appears_once_per_line(neonfcgi):
    # A line about another process (a dead worker) names it in its own key;
    # two pid= fields make the line ambiguous for logfmt parsers.
    with neonfcgi.start(WORKERS=2) as srv:
        victim = srv.wait_workers(2)[0]
        os.kill(victim, signal.SIGKILL)
        srv.wait_workers(2, exclude=[victim])
        srv.wait_log(death_line(victim), 3.0, flags=re.M | re.I)
    lines = [ln for ln in srv.log().splitlines() if ln.strip()]
    dup = [ln for ln in lines if len(re.findall(r"(?:^|\s)pid=", ln)) > 1]
    assert not dup, f"{len(dup)} line(s) with more than one pid=: {dup[:3]}"


# --------------------------------------------------------------------------
# make run (scripts/run.sh)


def _make_run(neonfcgi_bin, tmp_path, extra_env):
    """Run scripts/run.sh until it prints the curl lines, check /health through
    its nginx, Ctrl-C it, and check that nothing it started is left."""
    port = free_port()
    env = {"PATH": CLEAN_PATH, "NGINX_LISTEN": f"127.0.0.1:{port}", "TMPDIR": str(tmp_path),
           "ENV_FILE": str(tmp_path / "none.env"), **extra_env}
    (tmp_path / "none.env").write_text("# empty: do not read the repository's .env\n")
    out_path = tmp_path / "run.out"
    with open(out_path, "wb") as out:
        proc = spawn([REPO / "scripts" / "run.sh", neonfcgi_bin], env=env, cwd=REPO,
                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    procs = []
    output = lambda: out_path.read_text(errors="replace")
    try:
        wait_until(lambda: "curl -i" in output() or proc.poll() is not None,
                   60.0, what="run.sh to print the curl lines")
        procs = descendants_of(proc.pid)
        assert proc.poll() is None, f"run.sh exited {proc.returncode}\n{output()}"
        r = http_request(port, "GET", "/health")
        assert r.status == 200, str(r)
        assert len(procs) >= 3, f"expected nginx + neonfcgi master and worker: {procs}"
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rc = proc.wait(timeout=40)
        assert rc == 0, f"run.sh exit {rc}\n{output()}"
        left = [p for p in procs if pid_alive(p)]
        assert not left, f"processes left after run.sh: {left}"
        stray = [p for p in tmp_path.iterdir() if p.name.startswith("neonfcgi-run.")]
        assert not stray, f"temp dir not removed: {stray}"
        return output()
    finally:
        # run.sh puts its children in their own sessions: kill them one by one.
        for p in [proc.pid] + procs:
            kill_quietly(p)
        proc.wait()
        RECORD.add_file("run.sh output", out_path)


def test_make_run_script_serves_and_cleans_up(neonfcgi_bin, database_url, tmp_path):
    _make_run(neonfcgi_bin, tmp_path, {"DATABASE_URL": database_url})


def test_make_run_stops_on_ctrl_c_when_runner_ignores_sigint(neonfcgi_bin, database_url,
                                                            tmp_path):
    # Regression: `make check` started as `(make check &)` from a script runs
    # with SIGINT ignored; run.sh inherited that, could not trap SIGINT, and
    # Ctrl-C never stopped it: both make_run tests timed out.
    with as_background_job():
        _make_run(neonfcgi_bin, tmp_path, {"DATABASE_URL": database_url})


def test_make_run_script_starts_and_stops_dev_db(neonfcgi_bin, tmp_path):
    db_dir = tmp_path / "db"
    tmp_path.chmod(0o711)  # postgres must be able to reach its data directory
    try:
        out = _make_run(neonfcgi_bin, tmp_path, {"DEV_DB_DIR": str(db_dir)})
        assert "dev-db" in out or "throwaway" in out, out
        assert not db_dir.exists(), f"run.sh left the dev database in {db_dir}"
    finally:
        if (db_dir / "data" / "postmaster.pid").exists():  # stop a leftover cluster
            run_command([DEV_DB_SH, "stop"], {"PATH": CLEAN_PATH, "DEV_DB_DIR": str(db_dir)}, "/",
                        timeout=60)
