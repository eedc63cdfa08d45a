"""The Neon-proxy fixture (neonproxy.py) is faithful: checked with real libpq
clients only (psql, and pqprobe.py, which calls the system libpq through
ctypes to read SQLSTATEs of start-up errors that psql cannot show)."""

import json
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import harness
import neonproxy  # noqa: F401  (registers the `neon_proxy` fixture)
from harness import CLEAN_PATH, RECORD, fail, run_command, wait_until
from neonproxy import (ADMIN_SHUTDOWN_SQLSTATE, ADMIN_SHUTDOWN_TEXT, ERR_INCONSISTENT,
                       ERR_INSECURE, ERR_MISSING_ENDPOINT, ERR_PASSWORD_FAILED,
                       ERROR_MODES, NeonProxy)

HERE = Path(__file__).resolve().parent
PROBE = HERE / "pqprobe.py"
EP = "ep-quiet-lake-123456"


def _env(password):
    return {"PATH": CLEAN_PATH, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "20"}


def psql(conninfo, password, *args, timeout=30):
    """psql -X -At CONNINFO ARGS; returns a harness Result."""
    return run_command(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", conninfo, *args],
                       _env(password), "/", timeout, label="psql")


def probe(conninfo, password, *steps, timeout=40):
    """pqprobe.py: list of JSON events (connect first)."""
    res = run_command(["/usr/bin/python3", PROBE, conninfo, *steps], _env(password), "/",
                      timeout, label="pqprobe")
    assert res.rc == 0, res.describe()
    return [json.loads(line) for line in res.stdout.splitlines()]


def connect_error(conninfo, password):
    """The start-up error of a connection attempt that must fail."""
    ev = probe(conninfo, password)[0]
    assert ev["event"] == "connect" and not ev["ok"], f"connection did not fail: {ev}"
    return ev


def assert_neon_error(ev, text):
    """Neon's own error: severity ERROR, SQLSTATE XX000, exactly this text."""
    assert ev.get("sqlstate") == "XX000", f"SQLSTATE is not XX000: {ev}"
    assert ev.get("severity") == "ERROR", f"severity is not ERROR: {ev}"
    assert ev.get("message") == text, (f"message differs\n got: {ev.get('message')!r}"
                                       f"\nwant: {text!r}")


class InteractiveProbe:
    """pqprobe.py with steps that wait on stdin ('-'), bounded reads."""

    def __init__(self, conninfo, password, *steps):
        self.proc = harness.spawn(["/usr/bin/python3", str(PROBE), conninfo, *steps],
                                  env=_env(password), cwd="/", stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            RECORD.add("pqprobe stdout", raw)
            with self._cv:
                self.lines.append(json.loads(raw))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def next_event(self, n, timeout=20.0):
        """The n-th event (0 = connect), waiting up to timeout."""
        with self._cv:
            if not self._cv.wait_for(lambda: len(self.lines) > n or self.proc.poll() is not None,
                                     timeout):
                fail(f"pqprobe gave no event #{n} within {timeout:g}s: {self.lines}")
            if len(self.lines) <= n:
                fail(f"pqprobe exited after {self.lines}: {self.proc.stderr.read()!r}")
            return self.lines[n]

    def go(self):
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        RECORD.add("pqprobe stderr", self.proc.stderr.read())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --------------------------------------------------------------------------
# Routing: SNI, options, password hack


def test_neonproxy_sni_verify_full(neon_proxy, dev_db):
    p = neon_proxy
    r = psql(p.conninfo(EP, sslmode="verify-full"), dev_db.password,
             "-c", "select current_user, current_database()")
    assert r.rc == 0 and r.stdout.strip() == "app|app", r.describe()
    c = p.counters()
    assert c["endpoints"] == {EP: 1} and c["sessions"] == 1, c
    # -pooler names the same endpoint (normalized) and is routed too
    r = psql(p.conninfo(EP, pooler=True), dev_db.password, "-c", "select 1")
    assert r.rc == 0, r.describe()
    assert p.counters()["endpoints"] == {EP: 2}
    # verify-full really verifies: a name outside the certificate is refused
    r = psql(p.conninfo(EP, sslmode="verify-full").replace(
        f"host='{p.host_for(EP)}'", f"host='{EP}.elsewhere.test'"), dev_db.password,
        "-c", "select 1")
    assert r.rc != 0 and "does not match host name" in r.stderr, r.describe()
    # and the libpq URI form carries host + hostaddr
    r = psql(p.url(EP, password=False), dev_db.password, "-c", "select 1")
    assert r.rc == 0 and r.stdout.strip() == "1", r.describe()


def test_neonproxy_channel_binding_require(neon_proxy, dev_db):
    p = neon_proxy
    r = psql(p.conninfo(EP, channel_binding="require"), dev_db.password, "-c", "select 1")
    assert r.rc == 0, r.describe()
    assert p.counters()["auth_methods"] == {"SCRAM-SHA-256-PLUS": 1}
    r = psql(p.conninfo(EP, channel_binding="disable"), dev_db.password, "-c", "select 1")
    assert r.rc == 0, r.describe()
    assert p.counters()["auth_methods"] == {"SCRAM-SHA-256-PLUS": 1, "SCRAM-SHA-256": 1}


def test_neonproxy_endpoint_from_options(neon_proxy, dev_db):
    p = neon_proxy
    # no SNI (host is an IP address): the ID comes from options
    r = psql(p.conninfo(None, sslmode="require", options="endpoint=ep-opt-1"),
             dev_db.password, "-c", "select 1")
    assert r.rc == 0, r.describe()
    # URI form, as Neon documents it: ?options=endpoint%3DID
    url = p.url(None, password=False, sslmode="require", options="endpoint=ep-opt-2")
    assert "options=endpoint%3Dep-opt-2" in url, url
    r = psql(url, dev_db.password, "-c", "select 1")
    assert r.rc == 0, r.describe()
    # the legacy name, next to a setting the compute must receive
    r = psql(p.conninfo(None, sslmode="require", options="project=ep-opt-3 -c search_path=xyz"),
             dev_db.password, "-c", "show search_path")
    assert r.rc == 0 and r.stdout.strip() == "xyz", r.describe()
    assert p.counters()["endpoints"] == {"ep-opt-1": 1, "ep-opt-2": 1, "ep-opt-3": 1}
    # sslsni=0 with a name: no SNI either
    r = psql(p.conninfo(EP, sslmode="require", sslsni=0, options="endpoint=ep-opt-4"),
             dev_db.password, "-c", "select 1")
    assert r.rc == 0, r.describe()
    # SNI and options that disagree
    ev = connect_error(p.conninfo(EP, options="endpoint=ep-other-1"), dev_db.password)
    assert_neon_error(ev, ERR_INCONSISTENT.format(domain=EP, option="ep-other-1"))


def test_neonproxy_missing_endpoint(neon_proxy, dev_db):
    p = neon_proxy
    ev = connect_error(p.conninfo(None, sslmode="require"), dev_db.password)
    assert_neon_error(ev, ERR_MISSING_ENDPOINT)
    ev = connect_error(p.conninfo(EP, sslmode="require", sslsni=0), dev_db.password)
    assert_neon_error(ev, ERR_MISSING_ENDPOINT)
    assert p.counters()["errors"] == {"missing_endpoint": 2}
    # psql shows the same text
    r = psql(p.conninfo(None, sslmode="require"), dev_db.password, "-c", "select 1")
    assert r.rc != 0 and f"ERROR:  {ERR_MISSING_ENDPOINT}" in r.stderr, r.describe()
    # the documented work-around: endpoint=ID;password (or $)
    for sep in (";", "$"):
        r = psql(p.conninfo(None, sslmode="require"), f"endpoint=ep-hack-1{sep}{dev_db.password}",
                 "-c", "select 1")
        assert r.rc == 0, r.describe()
    assert p.counters()["auth_methods"] == {"cleartext (password hack)": 2}
    ev = connect_error(p.conninfo(None, sslmode="require"), "endpoint=ep-hack-1;wrong")
    assert_neon_error(ev, ERR_PASSWORD_FAILED.format(user="app"))
    # a client that requires channel binding refuses the cleartext request itself
    r = psql(p.conninfo(None, sslmode="require", channel_binding="require"), dev_db.password,
             "-c", "select 1")
    assert r.rc != 0 and "channel binding required" in r.stderr, r.describe()
    assert "XX000" not in r.stderr and "Endpoint ID" not in r.stderr, r.describe()


def test_neonproxy_insecure_connection(neon_proxy, dev_db):
    ev = connect_error(neon_proxy.conninfo(EP, sslmode="disable"), dev_db.password)
    assert_neon_error(ev, ERR_INSECURE)


# --------------------------------------------------------------------------
# Errors


def test_neonproxy_wrong_password(neon_proxy, dev_db):
    p = neon_proxy
    ev = connect_error(p.conninfo(EP), "not-" + dev_db.password)
    assert_neon_error(ev, "password authentication failed for user 'app'")
    # an unknown role fails the same way (the proxy mocks its secret)
    ev = connect_error(p.conninfo(EP, user="nobody"), dev_db.password)
    assert_neon_error(ev, "password authentication failed for user 'nobody'")
    c = p.counters()
    assert c["auth_failures"] == 2 and c["errors"] == {"password_failed": 2}, c
    assert c["sessions"] == 0, c


def test_neonproxy_error_modes(neon_proxy, dev_db):
    p = neon_proxy
    for kind, (stage, text, _source) in sorted(ERROR_MODES.items()):
        p.set_error(kind)
        ev = connect_error(p.conninfo(EP), dev_db.password)
        assert_neon_error(ev, text.format(ip="127.0.0.1", user="app"))
        assert p.counters()["errors"].get(kind) == 1, (kind, p.counters())
    p.set_error(None)
    r = psql(p.conninfo(EP), dev_db.password, "-c", "select 1")
    assert r.rc == 0, r.describe()
    assert p.counters()["sessions"] == 1


def test_neonproxy_error_stage_order(neon_proxy, dev_db):
    """Access errors come before the password check, wake errors after it."""
    p = neon_proxy
    wrong = "not-" + dev_db.password
    p.set_error("endpoint_disabled")
    assert_neon_error(connect_error(p.conninfo(EP), wrong), ERROR_MODES["endpoint_disabled"][1])
    p.set_error("compute_time_quota")
    assert_neon_error(connect_error(p.conninfo(EP), wrong),
                      ERR_PASSWORD_FAILED.format(user="app"))
    assert_neon_error(connect_error(p.conninfo(EP), dev_db.password),
                      ERROR_MODES["compute_time_quota"][1])
    # times=N: N connections fail, then it clears itself
    p.set_error("could_not_connect", times=1)
    assert_neon_error(connect_error(p.conninfo(EP), dev_db.password),
                      "Couldn't connect to compute node")
    assert probe(p.conninfo(EP), dev_db.password)[0]["ok"]


def test_neonproxy_compute_errors_relayed(neon_proxy, dev_db):
    """The compute's own start-up refusals reach the client as XX000 with
    PostgreSQL's text; an unreachable compute as Neon's text."""
    p = neon_proxy
    ev = connect_error(p.conninfo(EP, dbname="no_such_db"), dev_db.password)
    assert_neon_error(ev, 'database "no_such_db" does not exist')
    down = NeonProxy("127.0.0.1", _closed_port(), dev_db.password, backend_ca=dev_db.ca)
    with down:
        ev = connect_error(down.conninfo(EP), dev_db.password)
        assert_neon_error(ev, "Couldn't connect to compute node")


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# Compute life cycle


def test_neonproxy_suspend_after_quiet_time(neon_proxy, dev_db):
    p = neon_proxy
    p.set_suspend_after(1.0)
    with InteractiveProbe(p.conninfo(EP), dev_db.password,
                          "select 1", "-", "?", "select 2") as pr:
        assert pr.next_event(0)["ok"], pr.lines
        assert pr.next_event(1)["rows"] == [["1"]], pr.lines
        quiet_from = time.monotonic()
        wait_until(lambda: p.state == "suspended", 15, what="the compute to suspend")
        quiet = time.monotonic() - quiet_from
        assert quiet >= 0.9, f"suspended after {quiet:.2f}s of quiet, configured 1s"
        pr.go()
        pr.next_event(2)
        last = pr.next_event(3)
        notices = [n for ev in pr.lines[1:] for n in ev["notices"]]
        assert not last["ok"], pr.lines
        assert {"severity": "FATAL", "sqlstate": ADMIN_SHUTDOWN_SQLSTATE,
                "message": ADMIN_SHUTDOWN_TEXT} in notices, pr.lines
    c = p.counters()
    assert c["suspends"] == 1 and c["terminated_by_server"] == 1, c
    assert c["terminated_by_proxy"] == 0, c
    # a new connection wakes it again
    r = psql(p.conninfo(EP), dev_db.password, "-c", "select 1")
    assert r.rc == 0, r.describe()
    assert p.counters()["wakeups"] == 1


def test_neonproxy_suspend_ended_by_proxy(dev_db):
    """terminate='proxy': the proxy sends the same FATAL 57P01 itself."""
    with NeonProxy("127.0.0.1", dev_db.port, dev_db.password, backend_ca=dev_db.ca,
                   terminate="proxy") as p:
        with InteractiveProbe(p.conninfo(EP), dev_db.password,
                              "select 1", "-", "?", "select 2") as pr:
            assert pr.next_event(1)["rows"] == [["1"]], pr.lines
            p.suspend()
            assert p.state == "suspended"
            pr.go()
            last = pr.next_event(3)
            notices = [n for ev in pr.lines[1:] for n in ev["notices"]]
            assert not last["ok"], pr.lines
            assert {"severity": "FATAL", "sqlstate": ADMIN_SHUTDOWN_SQLSTATE,
                    "message": ADMIN_SHUTDOWN_TEXT} in notices, pr.lines
        assert p.counters()["terminated_by_proxy"] == 1


def test_neonproxy_wake_delay_one_wakeup(neon_proxy, dev_db):
    p = neon_proxy
    p.suspend()
    assert p.state == "suspended"
    p.set_wake_delay(1.5)
    n = 4
    results = [None] * n

    def one(i):
        t0 = time.monotonic()
        r = psql(p.conninfo(EP), dev_db.password, "-c", "select 1")
        results[i] = (r, time.monotonic() - t0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for r, dt in results:
        assert r.rc == 0, r.describe()
        assert dt >= 1.5, f"connected in {dt:.2f}s through a 1.5s wake-up"
    c = p.counters()
    assert c["wakeups"] == 1 and c["sessions"] == n and p.state == "active", c
    p.wake()  # already active: no second wake-up
    assert p.counters()["wakeups"] == 1


def test_neonproxy_explicit_suspend_and_wake(neon_proxy, dev_db):
    p = neon_proxy
    p.set_wake_delay(0.3)
    p.suspend()
    assert p.state == "suspended"
    t0 = time.monotonic()
    p.wake()
    assert time.monotonic() - t0 >= 0.3 and p.state == "active"
    assert p.counters()["wakeups"] == 1
    r = psql(p.conninfo(EP), dev_db.password, "-c", "select 1")
    assert r.rc == 0, r.describe()
    assert p.counters()["wakeups"] == 1


# --------------------------------------------------------------------------
# Relay


def test_neonproxy_queries_counted(neon_proxy, dev_db):
    p = neon_proxy
    r = psql(p.conninfo(EP), dev_db.password, "-c", "select 1", "-c", "select 2")
    assert r.rc == 0 and r.stdout.split() == ["1", "2"], r.describe()
    c = p.counters()
    assert c["queries"] == 2 and c["simple_queries"] == 2, c
    evs = probe(p.conninfo(EP), dev_db.password, "+select 'x'", "select 3")
    assert [e.get("rows") for e in evs[1:]] == [[["x"]], [["3"]]], evs
    c = p.counters()
    assert c["queries"] == 4 and c["extended_executes"] == 1 and c["simple_queries"] == 3, c


def test_neonproxy_parameters_and_cancel(neon_proxy, dev_db):
    p = neon_proxy
    # the compute's settings come through (ParameterStatus) and the proxy
    # forwards a CancelRequest sent with its own key to the compute
    r = psql(p.conninfo(EP, application_name="probe-app"), dev_db.password, "-c",
             "select current_setting('application_name'), current_setting('server_version_num')")
    assert r.rc == 0 and r.stdout.startswith("probe-app|15"), r.describe()
    evs = probe(p.conninfo(EP), dev_db.password, "cancel:0.5:select pg_sleep(20)")
    assert evs[1]["sqlstate"] == "57014", evs
    assert evs[1]["seconds"] < 15, evs
    assert p.counters()["cancel_requests"] == 1


def test_neonproxy_many_clients_and_stop(dev_db):
    """Hundreds of connections, many of them vanishing at every stage; real
    clients still get through; stop() ends idle sessions and joins all."""
    p = NeonProxy("127.0.0.1", dev_db.port, dev_db.password, backend_ca=dev_db.ca)
    p.start()
    try:
        ctx = ssl.create_default_context(cafile=p.ca_file)
        socks = []

        def rude(i):
            s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
            if i % 3 == 1:
                s.sendall(b"\0\0\0\x08\x04\xd2\x16\x2f")  # SSLRequest
                s.recv(1)
            elif i % 3 == 2:
                s.sendall(b"\0\0\0\x08\x04\xd2\x16\x2f")
                s.recv(1)
                s = ctx.wrap_socket(s, server_hostname=p.host_for(f"ep-rude-{i}"))
            socks.append(s)

        threads = [threading.Thread(target=rude, args=(i,)) for i in range(300)]
        for t in threads:
            t.start()
        r = psql(p.conninfo(EP), dev_db.password, "-c", "select 1")
        assert r.rc == 0, r.describe()
        for t in threads:
            t.join(30)
        assert p.counters()["accepted"] >= 301
        for s in socks:  # vanish
            s.close()
        wait_until(lambda: p.counters()["open_connections"] == 0, 20,
                   what="the vanished clients' connections to close")
        # an idle session is open when the proxy stops
        with InteractiveProbe(p.conninfo(EP), dev_db.password, "select 1", "-", "select 2") as pr:
            assert pr.next_event(1)["rows"] == [["1"]], pr.lines
            t0 = time.monotonic()
            p.stop()
            assert time.monotonic() - t0 < 10
            pr.go()
            assert not pr.next_event(2)["ok"], pr.lines
    finally:
        p.stop()


# --------------------------------------------------------------------------
# Standalone


def test_neonproxy_standalone_control(dev_db, tmp_path):
    pwfile = tmp_path / "pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(dev_db.password + "\n")
    ctl = tmp_path / "ctl.sock"
    proc = harness.spawn(
        ["/usr/bin/python3", str(HERE / "neonproxy.py"), "--backend-port", str(dev_db.port),
         "--password-file", str(pwfile), "--backend-ca", dev_db.ca, "--control", str(ctl)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd="/", env={"PATH": CLEAN_PATH})
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
        assert info["control"] == str(ctl) and os.path.exists(info["ca_file"]), info
        wait_until(lambda: ctl.exists(), 10, what="the control socket")

        def command(**cmd):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(ctl))
                s.sendall(json.dumps(cmd).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
            return json.loads(buf)

        ci = (f"host={EP}.{info['domain']} hostaddr=127.0.0.1 port={info['port']} user=app "
              f"dbname=app sslmode=verify-full sslrootcert={info['ca_file']}")
        r = psql(ci, dev_db.password, "-c", "select 1")
        assert r.rc == 0, r.describe()
        assert command(cmd="set_error", kind="endpoint_disabled")["ok"]
        assert_neon_error(connect_error(ci, dev_db.password),
                          ERROR_MODES["endpoint_disabled"][1])
        assert command(cmd="set_error", kind=None)["ok"]
        assert command(cmd="suspend") == {"ok": True, "state": "suspended"}
        c = command(cmd="counters")["counters"]
        assert c["sessions"] == 1 and c["errors"] == {"endpoint_disabled": 1}, c
        assert command(cmd="bogus")["ok"] is False
        assert command(cmd="stop")["ok"]
        assert proc.wait(15) == 0
        assert not ctl.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=10)
        RECORD.add("neonproxy standalone stdout", out)
        RECORD.add("neonproxy standalone stderr", err)
