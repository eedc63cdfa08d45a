"""Issue 13's acceptance: neonfcgi against Neon's proxy (the neonproxy.py
fixture in front of the run's real PostgreSQL), DNS inside the deadline (a
resolver that never answers, in a network namespace) and TLS set-up.

What the product costs the proxy is read from the fixture's counters
(`accepted` = TCP connections, `sessions` = connections that reached the
compute, `wakeups`, `errors`, `auth_methods`, `endpoints`). WORKERS=1 wherever
connections are counted: one pool, one worker.

Every /health/db body is checked for leaks (probe()): no endpoint or host name,
no Neon or libpq message text; the run's password_never_leaked covers the
password."""

import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import harness
import neonproxy  # noqa: F401  (registers the `neon_proxy` fixture)
import netns as _netns  # noqa: F401  (registers the `netns` fixture)
from harness import RECORD, fail, tail, wait_until
from neonproxy import ERROR_MODES, ERR_MISSING_ENDPOINT, ERR_PASSWORD_FAILED

EP = "ep-neonfcgi-test-271828"

# DESIGN.md §5's XX000 table applied to each error mode of the fixture:
# kind -> (category, retried). Texts that the table's substrings do not reach
# but that say the same thing in the control plane's own words (dberror.c
# matches them too) are marked; everything unmatched is `rejected`.
EXPECTED = {
    # endpoint
    "endpoint_not_found": ("endpoint", False),        # "endpoint cannot be found"
    "endpoint_disabled": ("endpoint", False),         # "endpoint is disabled"
    "endpoint_not_found_cplane": ("endpoint", False),  # "endpoint could not be found" (cplane)
    # quota
    "temporarily_unavailable": ("quota", False),      # "temporarily unavailable" / "quota"
    "compute_time_quota": ("quota", False),
    "active_time_quota": ("quota", False),
    "written_data_quota": ("quota", False),
    "data_transfer_quota": ("quota", False),
    "logical_size_quota": ("quota", False),
    "active_endpoints_limit_short": ("quota", False),  # "limit exceeded"
    "active_endpoints_limit": ("quota", False),       # "exceeded the limit of concurrently
    #                                                    active endpoints" (cplane)
    "branch_compute_time": ("quota", False),          # "exceeded the compute time" (cplane)
    # rate_limited
    "too_many_connections": ("rate_limited", False),  # "Too many connections to this endpoint"
    "wake_rate_limit": ("rate_limited", False),       # "Too many connections attempts"
    "permit": ("rate_limited", False),                # "Too many database connection attempts"
    "cplane_rate_limit": ("rate_limited", False),     # "rate limit"
    # auth
    "password_failed": ("auth", False),               # "password authentication failed"
    # unreachable (PostgreSQL's transient states through the proxy; retried)
    "control_plane_failed": ("unreachable", True),    # bare "Control plane request failed"
    "could_not_connect": ("unreachable", True),       # "Couldn't connect to compute node"
    "compute_starting_up": ("unreachable", True),     # "the database system is starting up"
    "compute_shutting_down": ("unreachable", True),   # "shutting down"
    # rejected
    "compute_too_many_clients": ("rejected", True),   # "too many clients"
    "ip_not_allowed": ("rejected", False),            # anything else
    "running_operations": ("rejected", False),        # anything else
}

# DESIGN.md §4: Retry-After at least this much per category (others: present, >= 1).
MIN_RETRY_AFTER = {"endpoint": 30, "quota": 30, "auth": 30, "rate_limited": 5}

# Texts that must never appear in a response body.
LEAKY_TEXTS = [t.format(ip="127.0.0.1", user="app") for _, t, _ in ERROR_MODES.values()] + [
    ERR_MISSING_ENDPOINT, ERR_PASSWORD_FAILED.format(user="app"), "XX000", "FATAL",
    "ERROR:", "neon.test", "compute node", "Control plane",
]


def test_neon_expected_covers_every_error_mode():
    """Every error mode of the fixture has an expected category here (a mode
    added to the fixture must be added to these tests)."""
    assert set(EXPECTED) == set(ERROR_MODES), (
        f"missing: {sorted(set(ERROR_MODES) - set(EXPECTED))}, "
        f"unknown: {sorted(set(EXPECTED) - set(ERROR_MODES))}")


# --------------------------------------------------------------------------
# Helpers


def check_no_leak(r, *extra):
    """A /health/db body names no host, endpoint or server message."""
    body = r.text
    for t in [*LEAKY_TEXTS, EP, *extra]:
        if t and t.lower() in body.lower():
            fail(f"/health/db body leaks {t!r}: {body[:500]}")


def probe(srv, *extra_secrets, timeout=10.0):
    """GET /health/db over FastCGI; returns (response, seconds). Checks the
    body for leaks and that a 503 carries a numeric Retry-After."""
    t0 = time.monotonic()
    r = srv.get("/health/db", timeout=timeout)
    dt = time.monotonic() - t0
    check_no_leak(r, *extra_secrets)
    if r.status == 503:
        ra = r.header("Retry-After")
        assert ra is not None and ra.isdigit() and int(ra) >= 1, \
            f"503 without a usable Retry-After ({ra!r}): {r}"
    return r, dt


def output_of(r):
    return r.json().get("output")


def retry_after(r):
    return int(r.header("Retry-After"))


def assert_category(r, category, srv=None):
    """503 with output == category and Retry-After per DESIGN.md §4."""
    why = f"{r.status} {r.text[:300]}" + (f"\n--- log tail\n{tail(srv.log())}" if srv else "")
    assert r.status == 503, f"expected 503 {category}, got {why}"
    assert output_of(r) == category, f"expected output {category!r}, got {why}"
    want = MIN_RETRY_AFTER.get(category, 1)
    assert retry_after(r) >= want, \
        f"Retry-After {retry_after(r)} for {category}, DESIGN.md §4 wants >= {want}"


def assert_pass(r, srv=None):
    why = f"{r.status} {r.text[:300]}" + (f"\n--- log tail\n{tail(srv.log())}" if srv else "")
    assert r.status == 200 and r.json().get("status") == "pass", f"expected a pass, got {why}"


def probe_until_pass(srv, p, t0, timeout):
    """Probe every 50 ms until a pass (bounded); returns every answer as
    (seconds since t0 when the probe was sent, status, output, connections
    the proxy had accepted by then)."""
    answers = []
    deadline = time.monotonic() + timeout
    while True:
        t = time.monotonic()
        r, _dt = probe(srv)
        answers.append((round(t - t0, 3), r.status, output_of(r) if r.status != 200 else None,
                        p.counters()["accepted"]))
        if r.status == 200:
            return answers
        if time.monotonic() > deadline:
            fail(f"/health/db did not pass within {timeout:g}s: {answers}\n{tail(srv.log())}")
        time.sleep(0.05)


def start(neonfcgi, url, **vars):
    vars.setdefault("WORKERS", 1)
    return neonfcgi.start(DATABASE_URL=url, **vars)


def without_param(url, name):
    """url with query parameter `name` removed."""
    parts = urllib.parse.urlsplit(url)
    q = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != name]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q, safe="/")))


# --------------------------------------------------------------------------
# 1. SNI and channel binding with verify-full


def test_neon_sni_channel_binding_verify_full(neonfcgi, neon_proxy, dev_db):
    p = neon_proxy
    url = p.url(EP, channel_binding="require")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert q["sslmode"] == "verify-full" and q["sslrootcert"] == p.ca_file \
        and q["channel_binding"] == "require", q
    with start(neonfcgi, url) as srv:
        for _ in range(3):
            r, _dt = probe(srv)
            assert_pass(r, srv)
        c = p.counters()
        # one pooled connection served the three probes
        assert c["accepted"] == 1 and c["sessions"] == 1, c
        # the endpoint came from SNI (the URL has no options and libpq sent
        # no password hack) and SCRAM was bound to the TLS channel
        assert c["endpoints"] == {EP: 1}, c
        assert c["auth_methods"] == {"SCRAM-SHA-256-PLUS": 1}, c
        assert c["errors"] == {}, c
    # the -pooler host names the same endpoint
    with start(neonfcgi, p.url(EP, pooler=True, channel_binding="require")) as srv:
        r, _dt = probe(srv)
        assert_pass(r, srv)
        c = p.counters()
        assert c["endpoints"] == {EP: 2}, c
        assert c["auth_methods"] == {"SCRAM-SHA-256-PLUS": 2}, c
    # verify-full verifies: the dev database's CA did not sign the proxy's
    # certificate, so the proxy is refused before any start-up message
    with start(neonfcgi, p.url(EP, channel_binding="require", sslrootcert=dev_db.ca)) as srv:
        r, _dt = probe(srv)
        assert_category(r, "tls", srv)
        c = p.counters()
        assert c["endpoints"] == {EP: 2} and c["sessions"] == 2, c


# --------------------------------------------------------------------------
# 2. Each error category through the fixture


def check_modes(neonfcgi, p, kinds):
    """For each error mode: a fresh server (WORKERS=1), one probe: 503 with
    the expected category and Retry-After; a mode that is not retried costs
    exactly one connection, a retried one more than one."""
    for kind in kinds:
        category, retried = EXPECTED[kind]
        p.set_error(kind)
        try:
            with start(neonfcgi, p.url(EP)) as srv:
                before = p.counters()
                r, dt = probe(srv)
                after = p.counters()
                assert dt < 2.0, f"{kind}: answered in {dt:.2f}s (HEALTH_TIMEOUT_MS=1500)"
                try:
                    assert_category(r, category, srv)
                except AssertionError as exc:
                    fail(f"error mode {kind!r}: {exc}")
                conns = after["accepted"] - before["accepted"]
                seen = after["errors"].get(kind, 0) - before["errors"].get(kind, 0)
                if retried:
                    assert conns >= 2 and seen == conns, \
                        f"{kind} is transient (retried), but the probe made {conns} " \
                        f"connection(s), {seen} got the error"
                else:
                    assert conns == 1 and seen == 1, \
                        f"{kind} ({category}) is not retried, but the probe made " \
                        f"{conns} connection(s), {seen} got the error"
        finally:
            p.set_error(None)


def test_neon_errors_endpoint(neonfcgi, neon_proxy):
    check_modes(neonfcgi, neon_proxy,
                [k for k, (c, _) in sorted(EXPECTED.items()) if c == "endpoint"])
    # no endpoint ID at all (host is an address: no SNI, no options): the
    # proxy asks for a password of the form endpoint=ID;password, libpq sends
    # the plain one and gets "Endpoint ID is not specified"
    p = neon_proxy
    with start(neonfcgi, p.url(None, sslmode="require")) as srv:
        before = p.counters()["accepted"]
        r, _dt = probe(srv)
        assert_category(r, "endpoint", srv)
        c = p.counters()
        assert c["accepted"] - before == 1 and c["errors"].get("missing_endpoint") == 1, c


def test_neon_errors_quota(neonfcgi, neon_proxy):
    check_modes(neonfcgi, neon_proxy,
                [k for k, (c, _) in sorted(EXPECTED.items()) if c == "quota"])


def test_neon_errors_rate_limited(neonfcgi, neon_proxy):
    check_modes(neonfcgi, neon_proxy,
                [k for k, (c, _) in sorted(EXPECTED.items()) if c == "rate_limited"])


def test_neon_errors_auth(neonfcgi, nginx, neon_proxy, dev_db):
    p = neon_proxy
    check_modes(neonfcgi, p, ["password_failed"])
    # a really wrong password (SCRAM proof fails at the proxy)
    wrong = "wrong-" + dev_db.password[::-1]
    with start(neonfcgi, p.url(EP, password=wrong)) as srv, nginx.start(srv.socket) as web:
        before = p.counters()
        r, _dt = probe(srv, wrong)
        assert_category(r, "auth", srv)
        c = p.counters()
        assert c["accepted"] - before["accepted"] == 1, c
        assert c["auth_failures"] - before["auth_failures"] == 1, c
        # through nginx: the HTTP client sees the 503, category and Retry-After
        r = web.get("/health/db")
        check_no_leak(r, wrong)
        assert_category(r, "auth", srv)
    # channel_binding=require and no endpoint ID: the proxy asks for a
    # cleartext password and libpq itself refuses (DESIGN.md §5: auth)
    with start(neonfcgi, p.url(None, sslmode="require", channel_binding="require")) as srv:
        before = p.counters()["accepted"]
        r, _dt = probe(srv)
        assert_category(r, "auth", srv)
        assert p.counters()["accepted"] - before == 1, p.counters()


def test_neon_errors_unreachable(neonfcgi, neon_proxy):
    check_modes(neonfcgi, neon_proxy,
                [k for k, (c, _) in sorted(EXPECTED.items()) if c == "unreachable"])


def test_neon_errors_rejected(neonfcgi, neon_proxy, dev_db):
    p = neon_proxy
    check_modes(neonfcgi, p, [k for k, (c, _) in sorted(EXPECTED.items()) if c == "rejected"])
    # the compute's own refusal, relayed as XX000 with PostgreSQL's text
    # ('database "x" does not exist': permanent)
    with start(neonfcgi, p.url(EP, dbname="no_such_db_neonfcgi")) as srv:
        before = p.counters()
        r, _dt = probe(srv, "no_such_db_neonfcgi")
        assert_category(r, "rejected", srv)
        c = p.counters()
        assert c["accepted"] - before["accepted"] == 1, c


def test_neon_rate_limited_pool_waits(neonfcgi, neon_proxy):
    """rate_limited: the pool waits at least 1 s before its next attempt and
    answers from memory meanwhile; then it passes without a restart."""
    p = neon_proxy
    with start(neonfcgi, p.url(EP)) as srv:
        workers = srv.wait_workers(1)
        p.set_error("wake_rate_limit")
        t0 = time.monotonic()
        r, _dt = probe(srv)
        assert_category(r, "rate_limited", srv)
        assert p.counters()["accepted"] == 1, p.counters()
        p.set_error(None)
        answers = probe_until_pass(srv, p, t0, 5.0)
        early = [a for a in answers if a[0] < 1.0]
        for at, status, out, accepted in early:
            assert status == 503 and out == "rate_limited" and accepted == 1, \
                f"within 1 s of a rate limit: {answers}"
        first_pass = answers[-1][0]
        assert first_pass >= 1.0, f"passed {first_pass:.2f}s after a rate limit: {answers}"
        assert p.counters()["accepted"] == 2, (answers, p.counters())
        assert srv.workers() == workers, "workers were replaced"


# --------------------------------------------------------------------------
# 3. The hold (and recovery without a restart)


def six_probes(srv, p, category, *secrets):
    """Six probes within 2 s: all answer category; returns the connections
    they cost the proxy."""
    before = p.counters()["accepted"]
    t0 = time.monotonic()
    for i in range(6):
        r, _dt = probe(srv, *secrets)
        assert_category(r, category, srv)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, f"six probes took {elapsed:.2f}s"
    return p.counters()["accepted"] - before


def test_neon_hold_permanent_failures(neonfcgi, neon_proxy, dev_db):
    p = neon_proxy
    # a wrong password must not hit the proxy once per probe
    wrong = "wrong-" + dev_db.password[::-1]
    with start(neonfcgi, p.url(EP, password=wrong), DB_FAILURE_HOLD_MS=5000) as srv:
        conns = six_probes(srv, p, "auth", wrong)
        assert conns <= 1, f"six probes with a wrong password cost {conns} connections"
        assert p.counters()["auth_failures"] == conns, p.counters()
    # a disabled endpoint: held; cleared at the proxy, still held until the
    # hold passes or SIGHUP
    base = p.counters()["accepted"]
    p.set_error("endpoint_disabled")
    with start(neonfcgi, p.url(EP), DB_FAILURE_HOLD_MS=5000) as srv:
        before = srv.wait_workers(1)
        t0 = time.monotonic()
        conns = six_probes(srv, p, "endpoint")
        assert conns <= 1, f"six probes of a disabled endpoint cost {conns} connections"
        p.set_error(None)
        r, _dt = probe(srv)
        held_for = time.monotonic() - t0
        assert held_for < 4.5, f"too slow to test the 5 s hold ({held_for:.2f}s)"
        assert_category(r, "endpoint", srv)
        assert p.counters()["accepted"] - base == conns, "a held failure contacted the proxy"
        # SIGHUP clears the hold: new workers, and the next probe connects
        srv.send_signal(signal.SIGHUP)
        srv.wait_workers(1, timeout=10.0, exclude=before)
        r, _dt = probe(srv)
        assert_pass(r, srv)
        assert time.monotonic() - t0 < 5.0, \
            "the hold may have expired by itself before SIGHUP was tested"
        assert p.counters()["sessions"] == 1, p.counters()


def test_neon_hold_expires_without_restart(neonfcgi, neon_proxy):
    """DB_FAILURE_HOLD_MS=1000: a quota error is answered from memory for
    1 s, then the next probe asks again and passes once the error is gone."""
    p = neon_proxy
    with start(neonfcgi, p.url(EP), DB_FAILURE_HOLD_MS=1000) as srv:
        workers = srv.wait_workers(1)
        p.set_error("compute_time_quota")
        t0 = time.monotonic()
        r, _dt = probe(srv)
        assert_category(r, "quota", srv)
        assert p.counters()["accepted"] == 1, p.counters()
        p.set_error(None)
        answers = probe_until_pass(srv, p, t0, 5.0)
        for at, status, out, accepted in answers:
            if at < 1.0:
                assert status == 503 and out == "quota" and accepted == 1, \
                    f"a probe within the 1 s hold: {answers}"
        assert answers[-1][0] >= 1.0, f"passed before the hold ended: {answers}"
        assert answers[-1][0] < 3.0, f"passed only {answers[-1][0]}s after a 1 s hold"
        assert p.counters()["accepted"] == 2, (answers, p.counters())
        assert srv.workers() == workers, "workers were replaced"


# --------------------------------------------------------------------------
# 4. Cold start


def test_neon_cold_start_one_wakeup(neonfcgi, neon_proxy):
    p = neon_proxy
    p.suspend()
    p.set_wake_delay(2.5)
    assert p.state == "suspended"
    with start(neonfcgi, p.url(EP), HEALTH_TIMEOUT_MS=1500, DB_CONNECT_TIMEOUT_MS=5000) as srv:
        t0 = time.monotonic()
        r, dt = probe(srv)
        assert dt < 2.0, f"first probe took {dt:.2f}s (HEALTH_TIMEOUT_MS=1500)"
        assert_category(r, "timeout", srv)
        # the probe 3 s after the first (this test is about elapsed time)
        time.sleep(max(0.0, t0 + 3.0 - time.monotonic()))
        r, dt = probe(srv)
        assert_pass(r, srv)
        c = p.counters()
        assert c["wakeups"] == 1, f"the wake-up was paid {c['wakeups']} times: {c}"
        assert c["accepted"] == 1 and c["sessions"] == 1, \
            f"a cold start cost {c['accepted']} connections ({c['sessions']} sessions): {c}"
        assert p.state == "active"


def test_neon_cold_start_probes_wait_for_the_opening(neonfcgi, neon_proxy):
    """Probes back to back while the compute wakes: each one waits for the
    connection being opened instead of starting another (no connect storm),
    and the first pass comes once the compute is up."""
    p = neon_proxy
    p.suspend()
    p.set_wake_delay(2.5)
    with start(neonfcgi, p.url(EP), HEALTH_TIMEOUT_MS=1500, DB_CONNECT_TIMEOUT_MS=5000) as srv:
        t0 = time.monotonic()
        answers = probe_until_pass(srv, p, t0, 8.0)
        for at, status, out, accepted in answers[:-1]:
            assert status == 503 and out in ("timeout", "pool_timeout") and accepted == 1, \
                f"while the compute wakes: {answers}"
        # the passing probe was sent while the compute still woke, or soon after
        assert answers[-1][0] < 4.0, \
            f"first pass at {answers[-1][0]}s through a 2.5 s wake-up: {answers}"
        assert len(answers) >= 2, f"passed through a 2.5 s wake-up at once: {answers}"
        c = p.counters()
        assert c["wakeups"] == 1 and c["accepted"] == 1 and c["sessions"] == 1, (answers, c)


# --------------------------------------------------------------------------
# 5. Suspension under idle pooled connections


def test_neon_suspend_costs_at_most_one_error(neonfcgi, neon_proxy):
    p = neon_proxy
    p.set_wake_delay(0.5)
    with start(neonfcgi, p.url(EP)) as srv:
        workers = srv.wait_workers(1)
        for cycle in range(2):
            r, _dt = probe(srv)
            assert_pass(r, srv)
            before = p.counters()
            assert before["active_sessions"] >= 1, before
            # quiet: the compute suspends and ends the pooled session (57P01)
            p.set_suspend_after(0.5)
            wait_until(lambda: p.counters()["suspends"] == before["suspends"] + 1, 10.0,
                       what="the compute to suspend")
            wait_until(lambda: p.state == "suspended", 10.0, what="the suspension to finish")
            p.set_suspend_after(0)
            c = p.counters()
            ended = c["terminated_by_server"] - before["terminated_by_server"]
            assert ended >= 1 and c["terminated_by_proxy"] == 0, \
                f"no pooled session was ended by the server's 57P01: {c}"
            statuses = []
            for i in range(8):
                r, _dt = probe(srv)
                statuses.append(r.status if r.status == 200 else (r.status, output_of(r)))
            assert all(s == 200 for s in statuses[1:]), \
                f"cycle {cycle}: after a suspension more than the first probe failed: {statuses}"
            c = p.counters()
            assert c["wakeups"] == cycle + 1, c
        assert srv.workers() == workers, "workers were replaced"


# --------------------------------------------------------------------------
# 6. DNS inside the deadline

DNS_HOST = "ep-dns-test.proxy.neon.test"

UDP_SINK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(4096)
    print("query", len(data), flush=True)
"""


class UdpSink:
    """A UDP socket on 127.0.0.1:53 inside a namespace that reads every query
    and never answers (counts them)."""

    def __init__(self, prefix):
        self.proc = harness.spawn([*prefix, "/usr/bin/python3", "-u", "-c", UDP_SINK],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, cwd="/",
                                  env={"PATH": harness.CLEAN_PATH})
        self.lines = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        wait_until(lambda: "ready" in self.lines or self.proc.poll() is not None, 10.0,
                   what="the UDP sink")
        if "ready" not in self.lines:
            fail(f"UDP sink did not start: {self.proc.stderr.read()!r}")

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode().strip())

    def queries(self):
        return sum(1 for line in self.lines if line.startswith("query"))

    def close(self):
        harness.halt(self.proc)
        self._t.join(5)
        RECORD.add("udp sink stderr", self.proc.stderr.read())


def test_neon_dns_resolver_never_answers(neonfcgi, netns, dev_db):
    with open("/etc/hosts") as f:
        assert DNS_HOST not in f.read(), f"{DNS_HOST} is in /etc/hosts"
    ns = netns.add("dns")
    # the namespace has only lo: no packet can leave it
    links = netns.ip("-n", ns, "-o", "link", "show")
    assert [ln.split(":")[1].strip() for ln in links.splitlines()] == ["lo"], links
    route = netns.ip("netns", "exec", ns, netns.ip_bin, "route", "get", "127.0.0.1")
    assert route.startswith("local 127.0.0.1 dev lo "), route
    etc = Path("/etc/netns")
    made_etc = not etc.exists()
    conf_dir = etc / ns
    conf_dir.mkdir(parents=True)
    try:
        (conf_dir / "resolv.conf").write_text(
            "nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
        sink = UdpSink(netns.exec_prefix(ns))
        try:
            url = (f"postgresql://app:{urllib.parse.quote(dev_db.password, safe='')}"
                   f"@{DNS_HOST}:5432/app?sslmode=verify-full&sslrootcert={dev_db.ca}")
            with start(neonfcgi, url, wrap=netns.exec_prefix(ns), HEALTH_TIMEOUT_MS=1500,
                       DB_CONNECT_TIMEOUT_MS=5000) as srv:
                results = []
                for _ in range(3):
                    r, dt = probe(srv, DNS_HOST, "ep-dns-test")
                    results.append((r.status, output_of(r), round(dt, 2)))
                for status, out, dt in results:
                    assert status == 503 and out in ("timeout", "unreachable") and dt < 2.0, \
                        f"a resolver that never answers: {results}\n{tail(srv.log())}"
                assert sink.queries() >= 1, \
                    f"the resolver in the namespace was never asked: {sink.lines}"
        finally:
            sink.close()
    finally:
        for f in conf_dir.glob("*"):
            f.unlink()
        conf_dir.rmdir()
        if made_etc:
            try:
                etc.rmdir()
            except OSError:
                pass  # another test made a namespace file meanwhile


# --------------------------------------------------------------------------
# 7. sslrootcert=system and the system CA bundle (SSL_CERT_FILE)


def test_neon_sslrootcert_system_with_ssl_cert_file(neonfcgi, neon_proxy, dev_db):
    p = neon_proxy
    url = p.url(EP, sslrootcert="system")
    assert "sslrootcert=system" in url and "sslmode=verify-full" in url, url
    with start(neonfcgi, url, SSL_CERT_FILE=p.ca_file) as srv:
        r, _dt = probe(srv)
        assert_pass(r, srv)
    # verify-full without sslrootcert uses the same bundle
    plain = without_param(url, "sslrootcert")
    assert "sslrootcert" not in plain and "sslmode=verify-full" in plain, plain
    with start(neonfcgi, plain, SSL_CERT_FILE=p.ca_file) as srv:
        r, _dt = probe(srv)
        assert_pass(r, srv)
    # and it is SSL_CERT_FILE that verified: another CA there is refused
    with start(neonfcgi, url, SSL_CERT_FILE=dev_db.ca) as srv:
        r, _dt = probe(srv)
        assert_category(r, "tls", srv)
    assert p.counters()["sessions"] == 2, p.counters()
