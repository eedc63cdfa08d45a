"""Acceptance tests of the deployment examples (issue 6): every file under
deploy/ runs here against the real server it is written for, templated only
by replacing the placeholder strings each file documents at its top.

- lighttpd connecting to neonfcgi's socket, and lighttpd spawning neonfcgi
  (bin-path): stopping lighttpd leaves no neonfcgi process and no database
  backend behind;
- Apache from Debian's packages with a private ServerRoot: mod_proxy_fcgi to
  the unix socket, and mod_fcgid spawning neonfcgi from the .fcgi wrapper
  under /cgi-bin/ (PATH_INFO routing), with the same clean-stop checks;
- systemd socket activation through systemd-socket-activate with the units'
  ListenStream=/ExecStart=/Environment*, plus sd_notify readiness;
- spawn-fcgi;
- the nginx upstream of two instances in two network namespaces, nginx in a
  third one reached through a unix-socket listener: one instance killed, 100
  requests still succeed;
- the FCGI_WEB_SERVER_ADDRS allow-list seen from a peer namespace, and the
  start-up refusal of a non-loopback API_HOST without it;
- `make install DESTDIR=... PREFIX=/usr` installs exactly the files
  docs/deployment.md lists, and the man page renders.

Network rules: the namespaces are ours (nfdp-<pid>-*), both ends of every
veth pair live in them, their 10.252.0.0/16 addresses exist nowhere else, and
before a packet goes to one of them `ip route get` inside the sending
namespace must show it leaving by our veth. Nothing is sent to them from the
root namespace; nginx in its namespace is reached through a unix socket.

Database backends are counted per test by application_name (set in the
DATABASE_URL each test gives its instances), so what another test left
behind cannot make a check pass or fail.
"""

import fnmatch
import json
import os
import pwd
import re
import shutil
import signal
import socket
from pathlib import Path

import harness
import netns as _netns  # noqa: F401  (registers the `netns` fixture)
from harness import (CLEAN_PATH, REPO, fail, need, pid_alive, read_text, run_command, skip,
                     tail, wait_until)
from webservers import APACHE_MODULES, WEB_USER, Apache, Lighttpd, start_web

DEPLOY = REPO / "deploy"
GONE_WITHIN_S = 5.0     # acceptance: processes, then backends, gone this fast


# --------------------------------------------------------------------------
# Helpers: templates, processes, database backends


def render(path, replacements):
    """The text of a deploy file with its documented placeholders replaced.
    A placeholder that is no longer in the file fails the test: the file and
    the test must not drift apart silently."""
    text = Path(path).read_text()
    for old, new in replacements.items():
        assert old in text, f"{Path(path).relative_to(REPO)} lost its placeholder {old!r}"
        text = text.replace(old, str(new))
    return text


def backends(dev_db, label):
    return int(dev_db.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                           f"AND application_name = '{label}'").strip() or 0)


def tagged_neonfcgi(binary, marker):
    """Live neonfcgi processes (masters and workers) whose environment
    contains marker (a path unique to the test, e.g. its env file)."""
    out, needle = [], marker.encode()
    real = os.path.realpath(binary)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{d}/exe") != real:
                continue
            if needle in Path(f"/proc/{d}/environ").read_bytes() and pid_alive(int(d)):
                out.append(int(d))
        except OSError:
            continue
    return sorted(out)


def uid_of(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return -1


def assert_stops_clean(binary, marker, dev_db, label, what):
    """After the web server stopped: no neonfcgi of this test within 5 s, then
    no database backend of it within 5 s more."""
    try:
        wait_until(lambda: not tagged_neonfcgi(binary, marker), GONE_WITHIN_S,
                   what=f"every neonfcgi process to exit after {what} stopped")
    except AssertionError as exc:
        fail(f"{exc}; left: {tagged_neonfcgi(binary, marker)}")
    try:
        wait_until(lambda: backends(dev_db, label) == 0, GONE_WITHIN_S,
                   what=f"the database backends of {label} to go away")
    except AssertionError as exc:
        fail(f"{exc}; still {backends(dev_db, label)}")


def kill_tagged(binary, marker):
    for p in tagged_neonfcgi(binary, marker):
        harness.kill_quietly(p)


def assert_routes(get, prefix=""):
    """/health and /health/db pass (200), /metrics answers, unknown is 404."""
    r = get(prefix + "/health")
    assert r.status == 200, f"GET {prefix}/health: {r}"
    assert r.json().get("status") == "pass", r.text
    r = get(prefix + "/health/db")
    assert r.status == 200, f"GET {prefix}/health/db: {r}"
    body = r.json()
    assert body.get("status") == "pass", r.text
    assert "postgres:responseTime" in body.get("checks", {}), r.text
    r = get(prefix + "/metrics")
    assert r.status == 200 and "neonfcgi_" in r.text, f"GET {prefix}/metrics: {r}"
    r = get(prefix + "/health/nope")
    assert r.status == 404, f"GET {prefix}/health/nope: {r}"


def write_env_file(path, **values):
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


def web_group_dir(path):
    """A directory the web server's children can use: group www-data, setgid
    (files created inside inherit the group), no access for others."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, pwd.getpwnam(WEB_USER).pw_gid)
    path.chmod(0o2750)
    return path


# --------------------------------------------------------------------------
# lighttpd


def test_lighttpd_socket_serves_health_and_db(neonfcgi, dev_db, tmp_path):
    need("lighttpd")
    label = "it-deploy-lighttpd-sock"
    with neonfcgi.start(WORKERS=1, DATABASE_URL=dev_db.app_url(label)) as srv:
        site = render(DEPLOY / "lighttpd" / "neonfcgi.conf",
                      {"/run/neonfcgi/neonfcgi.sock": srv.socket})
        with start_web(Lighttpd, tmp_path, site) as web:
            assert_routes(web.get)
            r = web.get("/health?probe=1")
            assert r.status == 200, f"query string: {r}"
            web.stop()
        assert srv.running(), "neonfcgi stopped with lighttpd (it runs on its own)"


def test_lighttpd_spawns_neonfcgi_and_leaves_nothing_on_stop(neonfcgi_bin, dev_db, tmp_path):
    need("lighttpd")
    label = "it-deploy-lighttpd-spawn"
    envf = write_env_file(tmp_path / "neonfcgi.env", DATABASE_URL=dev_db.app_url(label),
                          SHUTDOWN_TIMEOUT_MS=3000)
    sockdir = tmp_path / "lighttpd-sock"
    sockdir.mkdir()
    site = render(DEPLOY / "lighttpd" / "neonfcgi-spawn.conf",
                  {"/usr/local/bin/neonfcgi": neonfcgi_bin,
                   "/etc/lighttpd/neonfcgi.env": envf,
                   "/run/lighttpd/neonfcgi.sock": sockdir / "neonfcgi.sock"})
    try:
        with start_web(Lighttpd, tmp_path, site) as web:
            assert_routes(web.get)
            procs = tagged_neonfcgi(neonfcgi_bin, str(envf))
            # max-procs 1 master; PHP_FCGI_CHILDREN=2 from bin-environment = WORKERS.
            assert len(procs) == 3, f"expected 1 master + 2 workers, found {procs}\n{web.logs()}"
            out = web.out_path.read_text(errors="replace")
            assert re.search(r'listen="fd:0 \(spawned\)".*workers=2\b', out), \
                f"no start-up line with fd 0 and workers=2:\n{web.logs()}"
            assert (sockdir / "neonfcgi.sock-0").exists(), "lighttpd's socket is not -0"
            assert backends(dev_db, label) >= 1, "/health/db left no pooled connection"
            web.stop()
            assert_stops_clean(neonfcgi_bin, str(envf), dev_db, label, "lighttpd")
            assert re.search(r"stopping gracefully signal=15", web.out_path.read_text()), \
                f"neonfcgi did not get a graceful SIGTERM:\n{web.logs()}"
    finally:
        kill_tagged(neonfcgi_bin, str(envf))


# --------------------------------------------------------------------------
# Apache


def test_apache_proxy_fcgi_serves_health_and_db(neonfcgi, dev_db, tmp_path):
    need("apache2")
    label = "it-deploy-apache-proxy"
    tmp_path.chmod(0o711)  # Apache's children (www-data) must reach the socket
    sock = web_group_dir(tmp_path / "sock") / "neonfcgi.sock"
    with neonfcgi.start(address=str(sock), WORKERS=1, DATABASE_URL=dev_db.app_url(label)) as srv:
        assert os.stat(sock).st_gid == pwd.getpwnam(WEB_USER).pw_gid, "socket group"
        site = render(DEPLOY / "apache" / "neonfcgi-proxy-fcgi.conf",
                      {"/run/neonfcgi/neonfcgi.sock": srv.socket})
        with start_web(Apache, tmp_path, site, ("proxy", "proxy_fcgi")) as web:
            assert_routes(web.get)
            r = harness.http_request(web.port, "POST", "/health", body=b"x")
            assert r.status == 405, f"POST through Apache: {r}"
            web.stop()
        assert srv.running(), "neonfcgi stopped with Apache (it runs on its own)"


def test_apache_fcgid_mounted_under_prefix_leaves_nothing_on_stop(neonfcgi_bin, dev_db,
                                                                    tmp_path):
    need("apache2")
    if not (APACHE_MODULES / "mod_fcgid.so").exists():
        skip("libapache2-mod-fcgid not installed (scripts/deps.sh test)")
    label = "it-deploy-apache-fcgid"
    tmp_path.chmod(0o711)
    # mod_fcgid runs the wrapper as www-data, which cannot reach a binary in a
    # clone under /root (mode 0700): the site runs a copy, as a shared-hosting
    # user keeps one in their home directory.
    bindir = tmp_path / "bin"
    bindir.mkdir(mode=0o755)
    binary = bindir / "neonfcgi"
    shutil.copy2(neonfcgi_bin, binary)
    binary.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir(mode=0o711)
    envf = write_env_file(home / "neonfcgi.env", DATABASE_URL=dev_db.app_url(label))
    web = pwd.getpwnam(WEB_USER)
    os.chown(envf, web.pw_uid, web.pw_gid)  # the user the site runs as, mode 0600
    cgi = tmp_path / "site" / "cgi-bin"
    cgi.mkdir(parents=True)
    (tmp_path / "site").chmod(0o755)
    wrapper = cgi / "neonfcgi.fcgi"
    wrapper.write_text(render(DEPLOY / "apache" / "neonfcgi.fcgi",
                              {"/usr/local/bin/neonfcgi": binary,
                               "/home/example/neonfcgi.env": envf}))
    wrapper.chmod(0o755)
    (cgi / "notes.txt").write_text("not for the public\n")
    site = render(DEPLOY / "apache" / "neonfcgi-fcgid.conf", {"/var/www/example/cgi-bin": cgi})
    run = tmp_path / "fcgid"
    run.mkdir()
    extra = (f"FcgidIPCDir {run}/sock\n"
             f"FcgidProcessTableFile {run}/shm\n")
    try:
        with start_web(Apache, tmp_path, site, ("alias", "fcgid"), extra) as web:
            assert_routes(web.get, prefix="/cgi-bin/neonfcgi.fcgi")
            r = web.get("/cgi-bin/notes.txt")
            assert r.status == 403, f"a file next to the wrapper was served: {r}"
            procs = tagged_neonfcgi(binary, str(envf))
            assert procs, f"no neonfcgi process found\n{web.logs()}"
            # WORKERS=1 under mod_fcgid: one process per spawn, no master
            # (mod_fcgid may spawn more than one under load: none has a child)
            forked = [p for p in procs if harness.children_of(p)]
            assert not forked, f"spawned neonfcgi processes with children: {forked}"
            uids = {uid_of(p) for p in procs}
            assert uids == {pwd.getpwnam(WEB_USER).pw_uid}, f"neonfcgi runs as uids {uids}"
            log = (web.dir / "logs" / "error.log").read_text(errors="replace")
            assert re.search(r"workers=1 threads=1 pool_size=1 max_overflow=0", log), \
                f"FcgidInitialEnv values did not reach neonfcgi:\n{web.logs()}"
            assert "env file is readable" not in log, f"env file mode:\n{web.logs()}"
            assert backends(dev_db, label) >= 1, "/health/db left no pooled connection"
            web.stop()
            assert_stops_clean(binary, str(envf), dev_db, label, "Apache")
    finally:
        kill_tagged(binary, str(envf))


# --------------------------------------------------------------------------
# systemd socket activation and spawn-fcgi


def unit_values(text, key):
    return [m.group(1).strip() for m in re.finditer(rf"^{key}=(.*)$", text, re.M)]


def load_credentials(service, creds):
    """What LoadCredential=NAME:PATH does at service start: a private copy of
    each file, mode 0400, in the directory $CREDENTIALS_DIRECTORY names."""
    creds.mkdir()
    names = []
    for value in unit_values(service, "LoadCredential"):
        name, _, path = value.partition(":")
        (creds / name).write_bytes(Path(path).read_bytes())
        (creds / name).chmod(0o400)
        names.append(name)
    creds.chmod(0o500)
    return names


def test_systemd_socket_activation_serves_health_and_db(neonfcgi, nginx, dev_db, tmp_path):
    need("systemd-socket-activate")
    label = "it-deploy-systemd"
    sock = tmp_path / "neonfcgi.sock"
    envf = write_env_file(tmp_path / "neonfcgi.env", WORKERS=2)
    url_file = tmp_path / "database-url"
    url_file.write_text(dev_db.app_url(label) + "\n")
    url_file.chmod(0o600)
    workdir = tmp_path / "share"
    workdir.mkdir()
    units = tmp_path / "units"
    units.mkdir()
    socket_unit = render(DEPLOY / "systemd" / "neonfcgi.socket",
                         {"/run/neonfcgi/neonfcgi.sock": sock})
    service = render(DEPLOY / "systemd" / "neonfcgi.service",
                     {"/usr/local/bin/neonfcgi": neonfcgi.binary,
                      "/etc/neonfcgi/neonfcgi.env": envf,
                      "/etc/neonfcgi/database-url": url_file,
                      "/usr/local/share/neonfcgi": workdir})
    (units / "neonfcgi.socket").write_text(socket_unit)
    (units / "neonfcgi.service").write_text(service)
    if shutil.which("systemd-analyze", path=CLEAN_PATH):
        res = run_command(["systemd-analyze", "verify", "--man=no", "./neonfcgi.socket",
                           "./neonfcgi.service"], {"PATH": CLEAN_PATH}, units, timeout=30)
        assert res.rc == 0 and not res.stderr.strip(), f"unit files:\n{res.describe()}"

    # What systemd would do with these units, minus the service manager.
    assert unit_values(service, "Type") == ["notify"], "Type=notify expected"
    listen = unit_values(socket_unit, "ListenStream")
    assert listen == [str(sock)], listen
    exec_start = unit_values(service, "ExecStart")[0].split()
    assert exec_start[0] == neonfcgi.binary, exec_start
    env = {}
    for f in unit_values(service, "EnvironmentFile"):
        for line in Path(f.lstrip("-")).read_text().splitlines():
            k, _, v = line.partition("=")
            env[k] = v
    for assignment in unit_values(service, "Environment"):
        k, _, v = assignment.partition("=")
        env[k] = v
    assert env.get("ENV_FILE") == "", "the service reads its variables through systemd"
    # The connection string is a credential, never in the environment.
    assert "DATABASE_URL" not in env, "DATABASE_URL must come from LoadCredential="
    assert load_credentials(service, tmp_path / "credentials") == ["database-url"], \
        "LoadCredential=database-url:... expected"
    env["CREDENTIALS_DIRECTORY"] = str(tmp_path / "credentials")
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(5.0)
    env["NOTIFY_SOCKET"] = str(notify_path)
    # -E NAME takes the value from systemd-socket-activate's own environment:
    # no value appears on a command line.
    wrap = ["systemd-socket-activate", "-l", str(sock)]
    for k in env:
        wrap += ["-E", k]
    try:
        with neonfcgi.start(*exec_start[1:], listen=None, address=str(sock), wrap=wrap,
                            owns_socket=False, cwd=unit_values(service, "WorkingDirectory")[0],
                            env=env, DATABASE_URL=None) as srv:
            # The first connection (wait_ready's) made it exec neonfcgi.
            srv.wait_log(r'listen="fd:3 \(systemd\)".*workers=2\b', 5.0)
            msg = notify.recv(4096).decode()
            assert msg.startswith("READY=1\n") and "fd:3" in msg, f"sd_notify: {msg!r}"
            with nginx.start(str(sock)) as web:
                assert_routes(web.get)
            assert backends(dev_db, label) >= 1, "not connected with the credential's URL"
            for pid in [srv.pid, *srv.wait_workers(2)]:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                harness.RECORD.add(f"/proc/{pid}/environ", environ)
                assert b"CREDENTIALS_DIRECTORY=" in environ, f"/proc/{pid}/environ unread"
                assert dev_db.password.encode() not in environ, f"password in {pid}'s environ"
            srv.stop()  # exit 0, workers gone
        assert sock.exists(), "the socket belongs to the activator, it must stay"
        wait_until(lambda: backends(dev_db, label) == 0, GONE_WITHIN_S,
                   what="backends to go away after SIGTERM")
    finally:
        notify.close()


def test_spawn_fcgi_serves_health_and_db(neonfcgi, nginx, dev_db):
    need("spawn-fcgi")
    label = "it-deploy-spawn-fcgi"
    with neonfcgi.start_spawned(DATABASE_URL=dev_db.app_url(label)) as srv, \
            nginx.start(srv.socket) as web:
        assert_routes(web.get)
        # spawned, no PHP_FCGI_CHILDREN: WORKERS=1, served by the spawned process itself
        assert srv.workers() == [], "a process spawned with WORKERS=1 forked workers"
        assert web.get("/health").json().get("pid") == srv.pid
        assert backends(dev_db, label) >= 1
        srv.stop()
    wait_until(lambda: backends(dev_db, label) == 0, GONE_WITHIN_S,
               what="backends to go away after SIGTERM")


# --------------------------------------------------------------------------
# Network namespaces: scale-out upstream, allow-list


def start_in_netns(neonfcgi, ns_exec, host, port, peers, **vars):
    """neonfcgi listening on host:port inside a namespace. Readiness comes
    from its log, not from a request: the root namespace sends nothing there."""
    srv = neonfcgi.start(listen=None, address=(host, port), wrap=ns_exec, ready=False,
                         API_HOST=host, API_PORT=port, FCGI_WEB_SERVER_ADDRS=peers, **vars)
    try:
        srv.wait_log(r"worker started", 10.0)
        srv.wait_workers(int(vars.get("WORKERS", 1)))
    except BaseException:
        srv.stop(check=False, timeout=5.0)
        raise
    return srv


def test_nginx_upstream_survives_a_killed_instance(neonfcgi, nginx, netns, tmp_path):
    need("nginx")
    web, a, b = netns.add("web"), netns.add("a"), netns.add("b")
    netns.link(web, "nfw-a", ["10.252.1.1/30"], a, "nfa", ["10.252.1.2/30"])
    netns.link(web, "nfw-b", ["10.252.2.1/30"], b, "nfb", ["10.252.2.2/30"])
    netns.check_route(web, "10.252.1.2", "nfw-a")
    netns.check_route(web, "10.252.2.2", "nfw-b")
    netns.check_route(a, "10.252.1.1", "nfa")
    netns.check_route(b, "10.252.2.1", "nfb")
    ngsock = tmp_path / "nginx.sock"
    # nginx's only listener is a unix socket: the root namespace reaches it
    # through the file system and sends no packet into the namespaces.
    site = render(DEPLOY / "nginx" / "neonfcgi-upstream.conf",
                  {"192.0.2.11:9009": "10.252.1.2:9009", "192.0.2.12:9009": "10.252.2.2:9009",
                   "127.0.0.1:8080": f"unix:{ngsock}"})
    with start_in_netns(neonfcgi, netns.exec_prefix(a), "10.252.1.2", 9009, "10.252.1.1",
                        WORKERS=1) as inst_a, \
            start_in_netns(neonfcgi, netns.exec_prefix(b), "10.252.2.2", 9009, "10.252.2.1",
                           WORKERS=1) as inst_b, \
            nginx.start_unix(site, ngsock, wrap=netns.exec_prefix(web)) as ng:
        workers_a, workers_b = set(inst_a.workers()), set(inst_b.workers())
        served = set()
        for _ in range(20):
            r = ng.get("/health")
            assert r.status == 200, f"before the kill: {r}"
            served.add(r.json()["pid"])
        assert served & workers_a and served & workers_b, \
            f"requests did not reach both instances: {served}, a={workers_a}, b={workers_b}"
        # Instance A dies at once, master and workers (its host lost power),
        # and the requests follow straight away.
        os.killpg(inst_a.pid, signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(p) for p in workers_a | {inst_a.pid}), 2.0,
                   what="instance A's processes to die")
        statuses, pids = [], set()
        for _ in range(100):
            r = ng.get("/health")
            statuses.append(r.status)
            if r.status == 200:
                pids.add(r.json()["pid"])
        bad = [s for s in statuses if s != 200]
        assert not bad, f"{len(bad)} of 100 failed with A killed: {sorted(set(bad))}\n" \
                        f"{tail(ng.error_log)}"
        assert pids <= workers_b, f"answers from {pids}, instance B's workers are {workers_b}"
        assert inst_b.running()
        # They did go to A first and were passed on: nginx logged the failures.
        errors = read_text(ng.error_log)
        assert re.search(r"upstream: \"fastcgi://10\.252\.1\.2:9009\"", errors), \
            f"nginx never tried the killed instance:\n{tail(errors)}"
        inst_a.stop(signal.SIGKILL, timeout=5.0, expect_rc=-signal.SIGKILL)  # reap it


FCGI_CLIENT = r"""
import json, socket, sys
sys.path.insert(0, sys.argv[1])
import harness
src, host, port, path = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]

def connect(address, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(address)
    return s

harness._connect = connect
try:
    r = harness.fcgi_request((host, port), harness.fcgi_params(path), timeout=5.0)
    print(json.dumps({"status": r.status, "body": r.text}))
except (OSError, ConnectionError) as exc:
    print(json.dumps({"closed": repr(exc)}))
"""


def fcgi_from(netns, ns, src, host, port, path):
    """A FastCGI request sent from namespace ns with source address src."""
    res = run_command([*netns.exec_prefix(ns), "/usr/bin/python3", "-c", FCGI_CLIENT,
                       Path(harness.__file__).parent, src, host, port, path],
                      {"PATH": CLEAN_PATH}, "/", timeout=15)
    assert res.rc == 0, res.describe()
    return json.loads(res.stdout)


def test_allow_list_refuses_unlisted_peer_and_keeps_serving(neonfcgi, netns):
    srv_ns, peer = netns.add("srv"), netns.add("peer")
    # The peer namespace has two addresses; only .1 is on the list.
    netns.link(peer, "nfp", ["10.252.3.1/29", "10.252.3.3/29"], srv_ns, "nfs",
               ["10.252.3.2/29"])
    netns.check_route(peer, "10.252.3.2", "nfp")
    netns.check_route(srv_ns, "10.252.3.1", "nfs")
    netns.check_route(srv_ns, "10.252.3.3", "nfs")
    with start_in_netns(neonfcgi, netns.exec_prefix(srv_ns), "10.252.3.2", 9009,
                        "10.252.3.1", WORKERS=1) as srv:
        mark = srv.log_mark()
        refused = fcgi_from(netns, peer, "10.252.3.3", "10.252.3.2", 9009, "/health")
        assert "closed" in refused, f"an unlisted peer got an answer: {refused}"
        srv.wait_log(r"peer refused.*10\.252\.3\.3", 5.0, since=mark)
        assert srv.running(), "the server died refusing a peer"
        ok = fcgi_from(netns, peer, "10.252.3.1", "10.252.3.2", 9009, "/health")
        assert ok.get("status") == 200, f"the listed peer: {ok}"
        # Twice more, to be sure the refusal did not cost a request thread.
        for src in ("10.252.3.3", "10.252.3.1"):
            r = fcgi_from(netns, peer, src, "10.252.3.2", 9009, "/health")
            assert ("closed" in r) == (src == "10.252.3.3"), f"from {src}: {r}"
        srv.stop()


def test_non_loopback_api_host_without_allow_list_is_refused(neonfcgi):
    for host in ("10.252.9.2", "0.0.0.0", "::"):
        res = neonfcgi.run(API_HOST=host, API_PORT=9009, WORKERS=1, timeout=10)
        assert res.rc == 78, f"API_HOST={host}: exit {res.rc}\n{res.describe()}"
        assert "API_HOST" in res.stderr and "FCGI_WEB_SERVER_ADDRS" in res.stderr, \
            f"API_HOST={host}: message does not name both variables\n{res.describe()}"


# --------------------------------------------------------------------------
# make install, man page


def documented_install_list(prefix):
    """The files docs/deployment.md's "Installing" list names, under prefix; a `*`
    entry stands for every matching file of the same directory name in the
    repository (migrations/*.sql)."""
    text = (REPO / "docs" / "deployment.md").read_text()
    m = re.search(r"^### Installing\n(.*?)^```\n(.*?)^```", text, re.M | re.S)
    assert m, "docs/deployment.md has no '### Installing' section with a ``` file list"
    files = set()
    for line in m.group(2).splitlines():
        if not line.startswith("$(PREFIX)/"):
            continue
        entry = line.split()[0].replace("$(PREFIX)", prefix)
        if "*" in entry:
            d, pattern = entry.rsplit("/", 1)
            src = REPO / Path(d).name
            names = sorted(p.name for p in src.iterdir() if fnmatch.fnmatch(p.name, pattern))
            assert names, f"docs/deployment.md's {line.split()[0]} matches no file in {src}"
            files.update(f"{d}/{n}" for n in names)
        else:
            files.add(entry)
    return files


def test_make_install_installs_exactly_the_documented_files(neonfcgi_bin, tmp_path):
    need("make", "install")
    dest = tmp_path / "x"
    build = Path(neonfcgi_bin).parent
    # BUILD and -o: install the binary under test, never rebuild it here.
    res = run_command(["make", "--no-print-directory", f"BUILD={build}", "-o",
                       f"{build}/neonfcgi", "install", f"DESTDIR={dest}", "PREFIX=/usr"],
                      {"PATH": CLEAN_PATH}, REPO, timeout=60)
    assert res.rc == 0, res.describe()
    installed = {"/" + str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir()}
    documented = documented_install_list("/usr")
    assert installed == documented, (
        f"installed but not in docs/deployment.md: {sorted(installed - documented)}; "
        f"in docs/deployment.md but not installed: {sorted(documented - installed)}")
    for f in installed:
        mode = (dest / f.lstrip("/")).stat().st_mode & 0o777
        want = 0o755 if f in ("/usr/bin/neonfcgi",
                              "/usr/share/doc/neonfcgi/examples/apache/neonfcgi.fcgi") else 0o644
        assert mode == want, f"{f}: mode {mode:o}, expected {want:o}"
    for sub in ("nginx", "lighttpd", "apache", "systemd"):
        for src in (DEPLOY / sub).iterdir():
            copy = dest / "usr/share/doc/neonfcgi/examples" / sub / src.name
            assert copy.read_bytes() == src.read_bytes(), f"{copy} differs from {src}"
    res = run_command([dest / "usr/bin/neonfcgi", "--version"], {"PATH": CLEAN_PATH}, tmp_path)
    assert res.rc == 0 and res.stdout.startswith("neonfcgi "), res.describe()
    res = run_command(["make", "--no-print-directory", "uninstall", f"DESTDIR={dest}",
                       "PREFIX=/usr"], {"PATH": CLEAN_PATH}, REPO, timeout=30)
    assert res.rc == 0, res.describe()
    left = [str(p) for p in dest.rglob("*") if not p.is_dir()]
    assert not left, f"make uninstall left {left}"


def test_man_page_renders_without_warnings(neonfcgi_bin, tmp_path):
    page = REPO / "man" / "neonfcgi.8"
    env = {"PATH": CLEAN_PATH, "MANWIDTH": "80", "LANG": "C.UTF-8", "MANPAGER": "cat",
           "PAGER": "cat"}
    if shutil.which("man", path=CLEAN_PATH):
        cmd = ["man", "--warnings=w", "-l", page]
    elif shutil.which("groff", path=CLEAN_PATH):
        cmd = ["groff", "-man", "-Tutf8", "-ww", page]
    else:
        skip("neither man nor groff installed (scripts/deps.sh test: man-db, groff-base)")
    res = run_command(cmd, env, tmp_path, timeout=30)
    assert res.rc == 0, res.describe()
    assert not res.stderr.strip(), f"warnings:\n{res.stderr}"
    out = re.sub(r".\x08", "", res.stdout)  # drop overstrike bold/underline
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "LISTENING SOCKET", "CONFIGURATION",
                    "SIGNALS", "EXIT STATUS", "FILES", "SEE ALSO"):
        assert re.search(rf"^{heading}$", out, re.M), f"no {heading} section:\n{out[:800]}"
    assert re.search(r"^\s+neonfcgi \S FastCGI", out, re.M), out[:400]
    # Every variable of the configuration table is in the page.
    help_out = run_command([neonfcgi_bin, "--help"], {"PATH": CLEAN_PATH}, tmp_path, timeout=10)
    names = set(re.findall(r"^  ([A-Z][A-Z0-9_]+) ", help_out.stdout, re.M))
    assert names, help_out.stdout[:300]
    missing = sorted(n for n in names if n not in out)
    assert not missing, f"variables missing from the man page: {missing}"
