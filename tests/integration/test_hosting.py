"""Acceptance tests of issue 16's shared-hosting items (DESIGN.md §1, §2):

- RUN_USER/RUN_GROUP: started as root, master and workers run as the user
  (real, effective, saved and filesystem ids) before any worker or database
  connection exists, migrations included; unknown names exit 78 naming the
  variable and value; not root, naming another user exits 78; root without
  RUN_USER warns once;
- API_SOCKET_OWNER/API_SOCKET_GROUP with API_SOCKET_MODE decide who may
  connect: nginx with workers as www-data, through the group with 0660, or
  refused without it; the dropped user removes the socket on stop;
- CIDR blocks in FCGI_WEB_SERVER_ADDRS on loopback only (IPv4, IPv4-mapped
  IPv6 on a socket bound to ::ffff:127.0.0.1, IPv6 ::1): a block holding
  127.0.0.1 lets it in, one that does not refuses it; no namespace, no
  address outside the machine;
- one process per spawn: spawn-fcgi and lighttpd bin-path with WORKERS=1 run
  exactly one neonfcgi process, which stops gracefully on SIGTERM, SIGINT,
  SIGQUIT and SIGHUP (exit 0), finishes an in-flight request, obeys a second
  signal and SHUTDOWN_TIMEOUT_MS, and exits after MAX_REQUESTS, after which
  lighttpd starts a new one.

Database backends are counted by application_name, as in test_deploy.py.
"""

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import struct
from pathlib import Path

import harness
import test_migrate  # noqa: F401  (registers the migdb fixture)
from harness import (FCGI_BEGIN_REQUEST, FCGI_PARAMS, FCGI_RESPONDER, FCGI_STDIN, fail,
                     fcgi_encode_params, fcgi_params, fcgi_record, need, pid_alive,
                     run_command, skip, wait_until)
from test_deploy import (DEPLOY, assert_routes, assert_stops_clean, backends, kill_tagged,
                         render, tagged_neonfcgi, write_env_file)
from test_migrate import USERS, write_dir
from webservers import WEB_USER, Lighttpd, start_web

EX_CONFIG = 78
RUN_AS = "nobody"          # exists on every Debian system


def need_root():
    if os.geteuid() != 0:
        skip("needs root (switching users, chown)")


def ids(pid):
    """{"Uid": [real, effective, saved, fs], "Gid": [...], "Groups": [...]}
    of a live process."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            out[key] = [int(x) for x in rest.split()]
    return out


def assert_runs_as(pid, uid, gid, what):
    got = ids(pid)
    assert got["Uid"] == [uid] * 4, f"{what} {pid}: Uid {got['Uid']}, expected {uid}"
    assert got["Gid"] == [gid] * 4, f"{what} {pid}: Gid {got['Gid']}, expected {gid}"
    user = pwd.getpwuid(uid).pw_name
    want = {gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    assert set(got["Groups"]) <= want and 0 not in got["Groups"], \
        f"{what} {pid}: supplementary groups {got['Groups']}, expected within {sorted(want)}"


def owned_dir(path, user, mode=0o755):
    """A directory belonging to user (where it may create and remove names)."""
    path.mkdir(parents=True, exist_ok=True)
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    path.chmod(mode)
    return path


def socket_facts(path):
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode), f"{path} is not a socket"
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


# --------------------------------------------------------------------------
# RUN_USER / RUN_GROUP


def test_run_user_drops_root_before_workers_and_database(neonfcgi, nginx, dev_db, tmp_path):
    need_root()
    need("nginx")
    label = "it-hosting-run-user"
    tmp_path.chmod(0o711)
    pw = pwd.getpwnam(RUN_AS)
    web_gid = grp.getgrnam(WEB_USER).gr_gid
    sock = owned_dir(tmp_path / "run", RUN_AS) / "neonfcgi.sock"
    with neonfcgi.start(listen=None, address=str(sock), API_SOCKET=sock, RUN_USER=RUN_AS,
                        API_SOCKET_GROUP=WEB_USER, API_SOCKET_MODE="0660", WORKERS=2,
                        DATABASE_URL=dev_db.app_url(label)) as srv:
        workers = srv.wait_workers(2)
        assert_runs_as(srv.pid, pw.pw_uid, pw.pw_gid, "master")
        for w in workers:
            assert_runs_as(w, pw.pw_uid, pw.pw_gid, "worker")
        # The socket: RUN_USER's by default (PHP-FPM's listen.owner), the
        # web server's group, 0660.
        assert socket_facts(sock) == (pw.pw_uid, web_gid, 0o660), socket_facts(sock)
        # nginx's workers are www-data: they connect through the group.
        with nginx.start(str(sock), user=WEB_USER) as web:
            assert_routes(web.get)
        assert backends(dev_db, label) >= 1, "/health/db left no pooled connection"
        log = srv.log()
        assert re.search(rf'switched to RUN_USER user="{RUN_AS}" uid={pw.pw_uid} '
                         rf'gid={pw.pw_gid}', log), log
        assert log.index("switched to RUN_USER") < log.index("worker started"), log
        assert "serving as root" not in log and "cannot remove" not in log, log
        srv.stop()  # exit 0, socket file removed by the unprivileged master
    assert not os.path.lexists(sock)


def test_run_user_migrations_run_after_the_drop(neonfcgi, migdb, tmp_path):
    """MIGRATE_ON_START connects as RUN_USER: a migrations directory only
    root may read stops the start (and leaves no socket file); the same
    directory given to the user works."""
    need_root()
    tmp_path.chmod(0o711)
    mdir = write_dir(tmp_path / "m", {"0001_users.sql": USERS})
    mdir.chmod(0o700)
    sockdir = owned_dir(tmp_path / "run", RUN_AS)
    env = dict(RUN_USER=RUN_AS, MIGRATE_ON_START="yes", MIGRATIONS_DIR=mdir,
               DATABASE_URL=migdb.url, WORKERS=1)
    srv = neonfcgi.start(listen=None, address=str(sockdir / "a.sock"),
                         API_SOCKET=sockdir / "a.sock", ready=False, **env)
    with srv:
        rc = srv.wait_exit(20)
        log = srv.log()
        assert rc == 1, f"exit {rc}\n{log}"
        assert re.search(r'MIGRATIONS_DIR=".*": cannot open: Permission denied', log), log
        assert "neonfcgi starting" not in log, log
        assert not os.path.lexists(sockdir / "a.sock"), "socket file left behind"
    assert migdb.recorded() == []
    owned_dir(mdir, RUN_AS, 0o700)
    with neonfcgi.start(listen=None, address=str(sockdir / "b.sock"),
                        API_SOCKET=sockdir / "b.sock", **env) as srv:
        log = srv.log()
        assert log.index("switched to RUN_USER") < log.index("migrate: applied 0001_users"), log
        srv.stop()
    assert [r[0] for r in migdb.recorded()] == [1]


def test_run_user_reload_reads_env_file_as_the_user(neonfcgi, tmp_path):
    """SIGHUP after the switch: the env file is read as RUN_USER (so it must
    be able to), workers are replaced and stay RUN_USER's, and a changed
    RUN_USER is reported as taking effect on restart, not applied."""
    need_root()
    tmp_path.chmod(0o711)
    pw = pwd.getpwnam(RUN_AS)
    run = owned_dir(tmp_path / "run", RUN_AS)
    envf = run / "reload.env"
    envf.write_text(f"RUN_USER={RUN_AS}\nWORKERS=1\n")
    os.chown(envf, pw.pw_uid, pw.pw_gid)
    envf.chmod(0o600)
    with neonfcgi.start(listen=None, address=str(run / "s.sock"), API_SOCKET=run / "s.sock",
                        ENV_FILE=envf) as srv:
        before = srv.wait_workers(1)
        envf.write_text("RUN_USER=daemon\nWORKERS=2\n")
        mark = srv.log_mark()
        srv.send_signal(signal.SIGHUP)
        srv.wait_log(r"reloaded workers=2", 10.0, since=mark)
        after = srv.wait_workers(2, exclude=before, timeout=10.0)
        for p in [srv.pid, *after]:
            assert_runs_as(p, pw.pw_uid, pw.pw_gid, "process")
        assert "RUN_USER, RUN_GROUP or the socket's API_SOCKET_OWNER, API_SOCKET_GROUP, " \
            "API_SOCKET_MODE changed: they take effect on restart" in srv.log()[mark:]
        # An env file the user cannot read: the reload is refused, serving goes on.
        envf.chmod(0o000)
        os.chown(envf, 0, 0)
        mark = srv.log_mark()
        srv.send_signal(signal.SIGHUP)
        srv.wait_log(r"reload refused: keeping the running configuration", 10.0, since=mark)
        assert srv.get("/health").status == 200
        srv.stop()


UNKNOWN = {
    "RUN_USER": ("no-such-user-nfc", "no such user"),
    "RUN_GROUP": ("no-such-group-nfc", "no such group"),
    "API_SOCKET_OWNER": ("no-such-user-nfc", "no such user"),
    "API_SOCKET_GROUP": ("no-such-group-nfc", "no such group"),
}


def test_run_user_unknown_user_or_group_exits_78(neonfcgi, dev_db):
    for name, (value, why) in UNKNOWN.items():
        extra = {"RUN_USER": RUN_AS} if name == "RUN_GROUP" else {}
        for cmd in ((), ("check-config",)):
            res = neonfcgi.run(*cmd, **{name: value}, **extra, API_SOCKET="/tmp/x.sock")
            res.expect(EX_CONFIG, dev_db.password)
            line = f'{name}="{value}": {why}'
            assert line in res.stderr, f"{name} {cmd}: no line {line!r}\n{res.describe()}"
    # A group to switch to needs a user to switch to.
    res = neonfcgi.run(RUN_GROUP="daemon").expect(EX_CONFIG, dev_db.password)
    assert 'RUN_GROUP="daemon": needs RUN_USER' in res.stderr, res.describe()


def test_run_user_set_when_not_root_exits_78(neonfcgi, dev_db, tmp_path):
    """Started as nobody: RUN_USER naming someone else is refused (serving
    as another account than the one configured would go unnoticed);
    naming nobody itself is fine, and no root warning is given."""
    need_root()
    need("setpriv")
    tmp_path.chmod(0o711)
    bindir = tmp_path / "bin"
    bindir.mkdir(mode=0o755)
    binary = bindir / "neonfcgi"  # the clone may be where nobody cannot reach
    shutil.copy2(neonfcgi.binary, binary)
    binary.chmod(0o755)
    work = owned_dir(tmp_path / "work", RUN_AS)
    as_nobody = ["setpriv", f"--reuid={RUN_AS}", f"--regid={pwd.getpwnam(RUN_AS).pw_gid}",
                 "--clear-groups"]
    env = neonfcgi.env(RUN_USER="daemon", API_SOCKET=work / "x.sock")
    res = run_command([*as_nobody, binary], env, work, timeout=15)
    assert res.rc == EX_CONFIG, res.describe(secret=dev_db.password)
    assert re.search(r'RUN_USER="daemon": cannot switch to it: not started as root '
                     rf'\(running as {RUN_AS}, uid \d+\)', res.stderr), res.describe()
    assert not os.path.lexists(work / "x.sock"), "refused, yet it created the socket"
    (tmp_path / "copy").mkdir()
    copy = harness.NeonfcgiFactory(binary, neonfcgi.database_url, tmp_path / "copy")
    with copy.start(wrap=as_nobody, listen=None, address=str(work / "y.sock"),
                    API_SOCKET=work / "y.sock", RUN_USER=RUN_AS, WORKERS=1, cwd=work) as srv:
        assert srv.get("/health").status == 200
        assert ids(srv.pid)["Uid"][0] == pwd.getpwnam(RUN_AS).pw_uid
        log = srv.log()
        assert "serving as root" not in log and "switched to RUN_USER" not in log, log
        srv.stop()


def test_run_user_unset_as_root_warns_once(neonfcgi):
    need_root()
    with neonfcgi.start(WORKERS=2) as srv:
        srv.wait_workers(2)
        srv.stop()
    warnings = re.findall(r"warn serving as root: set RUN_USER", srv.log())
    assert len(warnings) == 1, f"{len(warnings)} root warnings\n{srv.log()}"
    # RUN_USER=root says it on purpose: no warning.
    with neonfcgi.start(WORKERS=1, RUN_USER="root") as srv:
        srv.stop()
    assert "serving as root" not in srv.log(), srv.log()


# --------------------------------------------------------------------------
# API_SOCKET_OWNER / API_SOCKET_GROUP / API_SOCKET_MODE


def test_socket_owner_group_and_mode_decide_who_connects(neonfcgi, nginx, dev_db, tmp_path):
    """nginx's workers run as www-data: they get in through the socket's
    group (0660), or its owner (0600), and not at all without either."""
    need_root()
    need("nginx")
    tmp_path.chmod(0o711)
    web = pwd.getpwnam(WEB_USER)
    cases = [
        # (variables, expected owner, group, mode, nginx answers 200)
        ({"API_SOCKET_GROUP": WEB_USER, "API_SOCKET_MODE": "0660"}, 0, web.pw_gid, 0o660, True),
        ({"API_SOCKET_OWNER": WEB_USER, "API_SOCKET_MODE": "0600"}, web.pw_uid, 0, 0o600, True),
        ({"API_SOCKET_OWNER": str(web.pw_uid), "API_SOCKET_GROUP": str(web.pw_gid),
          "API_SOCKET_MODE": "0640"}, web.pw_uid, web.pw_gid, 0o640, True),
        ({"API_SOCKET_MODE": "0660"}, 0, 0, 0o660, False),
    ]
    for env, uid, gid, mode, ok in cases:
        with neonfcgi.start(WORKERS=1, **env) as srv:
            assert socket_facts(srv.socket) == (uid, gid, mode), \
                f"{env}: socket {socket_facts(srv.socket)}, expected {(uid, gid, mode)}"
            with nginx.start(srv.socket, user=WEB_USER) as ng:
                r = ng.get("/health")
                if ok:
                    assert r.status == 200, f"{env}: {r}"
                else:
                    assert r.status == 502, f"{env}: www-data got in: {r}"
                    errors = Path(ng.error_log).read_text()
                    assert "Permission denied" in errors, errors[-2000:]
            srv.stop()


# --------------------------------------------------------------------------
# CIDR allow-lists, on loopback


def _refused(address, path="/health"):
    try:
        r = harness.fcgi_get(address, path, timeout=5.0)
    except (OSError, ConnectionError):
        return True
    fail(f"an unlisted peer got an answer: {r}")


def _cidr_case(neonfcgi, host, connect_host, allowed, refused_by):
    """One listener on host (loopback), first with a list holding the
    client, then with one that does not."""
    port = harness.free_port()
    address = (connect_host, port)
    with neonfcgi.start(listen=None, address=address, API_HOST=host, API_PORT=port,
                        FCGI_WEB_SERVER_ADDRS=allowed, WORKERS=1) as srv:
        assert srv.get("/health").status == 200, f"{allowed} refused {connect_host}"
        srv.stop()
    port = harness.free_port()
    address = (connect_host, port)
    with neonfcgi.start(listen=None, address=address, API_HOST=host, API_PORT=port,
                        FCGI_WEB_SERVER_ADDRS=refused_by, WORKERS=1, ready=False) as srv:
        srv.wait_log(r"worker started", 10.0)  # listen() came before the fork
        mark = srv.log_mark()
        assert _refused(address)
        srv.wait_log(rf"peer refused: not in FCGI_WEB_SERVER_ADDRS "
                     rf"peer={re.escape(connect_host)}( |$)", 5.0, since=mark)
        assert srv.running(), "the server died refusing a peer"
        srv.stop()
    return srv


def test_cidr_allow_list_on_loopback(neonfcgi):
    _cidr_case(neonfcgi, "127.0.0.1", "127.0.0.1", "10.0.0.0/8,127.0.0.0/8",
               "10.0.0.0/8,fd00::/8,127.0.0.2")
    # A socket bound to ::ffff:127.0.0.1 is an IPv6 one whose IPv4 peers
    # arrive as ::ffff:127.0.0.1: IPv4 blocks apply to them.
    srv = _cidr_case(neonfcgi, "::ffff:127.0.0.1", "127.0.0.1", "fd00::/8,127.0.0.0/30",
                     "10.0.0.0/8,::1")
    assert "listen=\"[::ffff:127.0.0.1]:" in srv.log(), srv.log()[-1500:]
    if not socket.has_ipv6 or not _ipv6_loopback():
        return
    _cidr_case(neonfcgi, "::1", "::1", "10.0.0.0/8,::1/128", "127.0.0.0/8,fd00::/8")


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_cidr_bad_blocks_exit_78(neonfcgi, dev_db):
    cases = {
        "127.0.0.1/8": '"127.0.0.1/8" has address bits set past its prefix: write '
                       '127.0.0.0/8 for the block',
        "10.0.0.0/33": '"10.0.0.0/33" has a bad prefix length: must be /0 to /32',
        "fd00::1/8": '"fd00::1/8" has address bits set past its prefix: write fd00::/8',
        "web.internal/24": '"web.internal/24" is not an IP address or CIDR block',
    }
    for value, why in cases.items():
        res = neonfcgi.run(FCGI_WEB_SERVER_ADDRS=value, API_HOST="0.0.0.0")
        res.expect(EX_CONFIG, dev_db.password)
        assert f'FCGI_WEB_SERVER_ADDRS="{value}": {why}' in res.stderr, res.describe()


# --------------------------------------------------------------------------
# One process per spawn


def partial_request(address, path="/health"):
    """A connected socket that has sent the start of a request (its head is
    not complete: the request waits for the rest), and the bytes that
    complete it."""
    params = fcgi_encode_params(fcgi_params(path))
    head = (fcgi_record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", FCGI_RESPONDER, 0))
            + fcgi_record(FCGI_PARAMS, params))
    s = harness._connect(address, 5.0)
    s.sendall(head)
    return s, fcgi_record(FCGI_PARAMS, b"") + fcgi_record(FCGI_STDIN, b"")


def read_status(s):
    """Read a whole FastCGI response from s; its HTTP status."""
    out = b""
    while True:
        hdr = harness._recv_exact(s, 8)
        _, rtype, _, clen, plen = struct.unpack("!BBHHBx", hdr)
        content = harness._recv_exact(s, clen + plen)[:clen]
        if rtype == harness.FCGI_STDOUT:
            out += content
        elif rtype == harness.FCGI_END_REQUEST:
            return harness.parse_cgi_response(out)[0]


def test_single_process_spawn_fcgi_serves_and_stops(neonfcgi, nginx, dev_db):
    need("spawn-fcgi", "nginx")
    label = "it-hosting-single"
    with neonfcgi.start_spawned(DATABASE_URL=dev_db.app_url(label), SHUTDOWN_TIMEOUT_MS=5000) \
            as srv, nginx.start(srv.socket) as web:
        assert_routes(web.get)
        assert harness.descendants_of(srv.pid) == [], "the spawned process forked"
        r = web.get("/health")
        assert r.json()["pid"] == srv.pid, f"answered by {r.json()['pid']}, not {srv.pid}"
        assert "serving in this process: spawned with WORKERS=1, no master" in srv.log()
        # The scoreboard works with one process: its own section is counted.
        metrics = web.get("/metrics").text
        m = re.search(r'^neonfcgi_requests_total\{route="health_db",status="2xx"\} (\d+)$',
                      metrics, re.M)
        assert m and int(m.group(1)) >= 1, metrics[:3000]
        m = re.search(r'^neonfcgi_db_connects_total\{result="ok"\} (\d+)$', metrics, re.M)
        assert m and int(m.group(1)) >= 1, metrics[:3000]
        assert backends(dev_db, label) >= 1
        # A request in flight when SIGTERM comes is finished, then exit 0.
        s, rest = partial_request(srv.socket)
        with s:
            mark = srv.log_mark()
            srv.send_signal(signal.SIGTERM)
            srv.wait_log(r"stopping gracefully signal=15", 5.0, since=mark)
            s.sendall(rest)
            assert read_status(s) == 200
        # It exits by itself (a second SIGTERM from stop() would mean "now",
        # exit 1, while it is still closing its pool after the answer).
        rc = srv.wait_exit(10.0)
        assert rc == 0, f"exit code {rc} after SIGTERM with a request in flight"
        srv.stop()  # checks the socket file and the processes left
    wait_until(lambda: backends(dev_db, label) == 0, 5.0,
               what="the backends to go away after SIGTERM (PQfinish)")


def test_single_process_spawn_fcgi_signals_and_max_requests(neonfcgi):
    need("spawn-fcgi")
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        with neonfcgi.start_spawned() as srv:
            srv.stop(sig)  # exit 0
        if sig == signal.SIGHUP:
            assert "SIGHUP: stopping gracefully so that the spawner starts a new process" \
                in srv.log(), srv.log()
    # MAX_REQUESTS: exits 0 after that many (the spawner starts another).
    with neonfcgi.start_spawned(MAX_REQUESTS=3, WORKER_THREADS=1) as srv:
        # wait_ready sent one request already
        assert srv.get("/health").status == 200
        assert srv.get("/health").status == 200
        assert srv.wait_exit(5.0) == 0, f"still running after 3 requests\n{srv.log()}"
        assert "worker recycling requests=3" in srv.log(), srv.log()


def test_single_process_second_signal_and_timeout_stop_now(neonfcgi):
    """A request that never completes holds a graceful stop: a second
    signal, or SHUTDOWN_TIMEOUT_MS, ends it (exit 1: requests were cut)."""
    need("spawn-fcgi")
    with neonfcgi.start_spawned(SHUTDOWN_TIMEOUT_MS=60000) as srv:
        s, _ = partial_request(srv.socket)
        with s:
            srv.send_signal(signal.SIGTERM)
            srv.wait_log(r"stopping gracefully signal=15", 5.0)
            assert srv.wait_exit(0.5) is None, "did not wait for the request in flight"
            srv.send_signal(signal.SIGTERM)
            assert srv.wait_exit(3.0) == 1, srv.log()
        assert "second stop signal: stopping now signal=15" in srv.log(), srv.log()
    with neonfcgi.start_spawned(SHUTDOWN_TIMEOUT_MS=300) as srv:
        s, _ = partial_request(srv.socket)
        with s:
            srv.send_signal(signal.SIGTERM)
            assert srv.wait_exit(3.0) == 1, srv.log()
        assert "requests still running after SHUTDOWN_TIMEOUT_MS: stopping now" in srv.log()


def test_single_process_lighttpd_respawns_after_max_requests(neonfcgi_bin, dev_db, tmp_path):
    need("lighttpd")
    label = "it-hosting-lighttpd-single"
    envf = write_env_file(tmp_path / "neonfcgi.env", DATABASE_URL=dev_db.app_url(label),
                          MAX_REQUESTS=5, SHUTDOWN_TIMEOUT_MS=3000)
    sockdir = tmp_path / "lighttpd-sock"
    sockdir.mkdir()
    site = render(DEPLOY / "lighttpd" / "neonfcgi-spawn.conf",
                  {"/usr/local/bin/neonfcgi": neonfcgi_bin,
                   "/etc/lighttpd/neonfcgi.env": envf,
                   "/run/lighttpd/neonfcgi.sock": sockdir / "neonfcgi.sock",
                   '"PHP_FCGI_CHILDREN" => "2"': '"PHP_FCGI_CHILDREN" => "1"'})
    try:
        with start_web(Lighttpd, tmp_path, site) as web:
            assert_routes(web.get)  # 4 requests
            procs = tagged_neonfcgi(neonfcgi_bin, str(envf))
            assert len(procs) == 1, f"expected one neonfcgi process, found {procs}"
            first = procs[0]
            assert harness.children_of(first) == [], "the spawned process forked"
            assert first in harness.children_of(web.proc.pid), "not lighttpd's child"
            r = web.get("/health")  # the 5th: it exits after answering
            assert r.status == 200 and r.json()["pid"] == first, str(r)
            wait_until(lambda: not pid_alive(first), 5.0, what="the recycled process to exit")
            # lighttpd starts a new one for the next requests.
            def served_by_new():
                r = web.get("/health")
                return r.status == 200 and r.json()["pid"] != first and r.json()["pid"]
            second = wait_until(served_by_new, 10.0, what="a new process to serve")
            assert tagged_neonfcgi(neonfcgi_bin, str(envf)) == [second]
            assert web.get("/health/db").status == 200
            out = web.out_path.read_text(errors="replace")
            assert "worker recycling requests=5" in out, web.logs()
            web.stop()
            assert_stops_clean(neonfcgi_bin, str(envf), dev_db, label, "lighttpd")
            out = web.out_path.read_text(errors="replace")
            assert re.search(r"stopping gracefully signal=15", out), web.logs()
    finally:
        kill_tagged(neonfcgi_bin, str(envf))
