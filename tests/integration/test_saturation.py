"""Saturation metrics (issue 14): with WORKER_THREADS=1 and a slow database
(bench/delay-relay in front of the test PostgreSQL), concurrent /health/db
requests keep the one request thread busy and the rest wait in the kernel's
accept queue; /metrics must show both, on a unix socket and on TCP. Also:
refused peers, rejected FastCGI input, and the pool-wait histogram.

No test-only route: the slowness is the database's, seen through the relay."""

import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path

import harness
from harness import (FCGI_BEGIN_REQUEST, RECORD, fcgi_get, fcgi_record, halt, run_command,
                     spawn, wait_until)
from test_observability import Scrape, check_raw_text, scrape

REPO = Path(__file__).resolve().parents[2]
RELAY_DELAY_US = 40000  # each way: a SELECT 1 round trip costs about 80 ms


@harness.fixture(scope="session")
def delay_relay_bin():
    """bench/delay-relay built for this run (make's bench target is not a
    prerequisite of the integration tests)."""
    out = Path(tempfile.mkdtemp(prefix=harness.TMP_PREFIX + "relay-")) / "delay-relay"
    run_command(["cc", "-O2", "-o", str(out), str(REPO / "bench/delay-relay.c")], env=None,
                cwd=REPO, timeout=60, check=True)
    yield out
    out.unlink(missing_ok=True)
    out.parent.rmdir()


class Relay:
    def __init__(self, binary, port, delay_us, tmp):
        self.port_file = tmp / "relay.port"
        with open(self.port_file, "wb") as out:
            self.proc = spawn([binary, "127.0.0.1", port, delay_us], stdout=out,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.port_file.read_text().strip() or self.proc.poll() is not None,
                   5.0, "delay-relay prints its port")
        assert self.proc.poll() is None, "delay-relay exited"
        self.port = int(self.port_file.read_text())

    def stop(self):
        halt(self.proc, (15, 2.0))


@harness.fixture(scope="test")
def slow_db(dev_db, delay_relay_bin, tmp_path):
    """The dev database's URL through a relay that delays every byte."""
    relay = Relay(delay_relay_bin, dev_db.port, RELAY_DELAY_US, tmp_path)
    try:
        yield dev_db.url_variant(host="127.0.0.1", port=relay.port)
    finally:
        relay.stop()


def fire(address, path, n):
    """n concurrent GETs of path, each on its own connection; the threads
    (started, in order) and a list that receives the responses."""
    results, threads = [], []

    def one():
        results.append(fcgi_get(address, path, timeout=30.0))

    for _ in range(n):
        t = threading.Thread(target=one)
        t.start()
        threads.append(t)
    return threads, results


def join(threads, results, n):
    for t in threads:
        t.join(60)
    assert len(results) == n, f"{len(results)} of {n} requests answered"
    return results


def kernel_queue(address):
    """The accept queue as `ss` sees it (Recv-Q of the listening socket)."""
    if isinstance(address, tuple):
        args = ["ss", "-Hltn", f"sport = :{address[1]}"]
    else:
        args = ["ss", "-Hlx", f"src {address}"]
    r = run_command(args, env=None, cwd="/", check=True, record=False)
    lines = [ln.split() for ln in r.stdout.splitlines() if ln.strip()]
    if not lines:
        return 0
    # ss -x: Netid State Recv-Q ...; ss -t: State Recv-Q ...
    row = lines[0]
    return int(row[2] if row[0] == "u_str" else row[1])


def saturate(srv, address):
    n_before, n_after = 6, 3
    before = fire(address, "/health/db", n_before)
    wait_until(lambda: kernel_queue(address) >= 3, 20.0, "the accept queue fills (ss)", interval=0.05)
    holder = fire(address, "/metrics", 1)
    wait_until(lambda: kernel_queue(address) >= 3, 20.0, "the scrape waits in the queue", interval=0.05)
    after = fire(address, "/health/db", n_after)
    for r in join(*before, n_before) + join(*after, n_after):
        assert r.status == 200, str(r)
    (r,) = join(*holder, 1)
    assert r.status == 200, str(r)
    during = r.body.decode()
    check_raw_text(during)
    return scrape(srv), during


def check_saturated(sc, during_text):
    during = Scrape(during_text)
    # The thread that answers a scrape is busy itself: all of them (one).
    assert during.get("neonfcgi_request_threads", state="busy") == 1, during_text[:2000]
    assert during.get("neonfcgi_request_threads", state="idle") == 0
    # The requests fired after the scrape were queued behind it.
    assert during.get("neonfcgi_listen_queue") >= 3, \
        f"listen_queue {during.get('neonfcgi_listen_queue')} while 3 requests waited"
    assert sc.get("neonfcgi_request_threads_busy_max") == 1
    assert sc.get("neonfcgi_listen_queue_max") >= 5, \
        f"listen_queue_max {sc.get('neonfcgi_listen_queue_max')}, 6 requests queued at once"
    assert sc.get("neonfcgi_listen_queue_limit") >= 128
    assert sc.get("neonfcgi_request_threads", state="busy") + \
        sc.get("neonfcgi_request_threads", state="idle") == 1
    assert sc.get("neonfcgi_requests_total", route="health_db", status="2xx") == 10  # 1 + 6 + 3


SLOW = dict(WORKERS=1, WORKER_THREADS=1, HEALTH_TIMEOUT_MS=10000, DB_CONNECT_TIMEOUT_MS=10000,
            DB_POOL_TIMEOUT_MS=10000)


def test_saturation_unix_socket_threads_and_listen_queue(neonfcgi, slow_db):
    with neonfcgi.start(DATABASE_URL=slow_db, **SLOW) as srv:
        assert srv.get("/health/db", timeout=30).status == 200  # connected once
        sc, during = saturate(srv, srv.address)
    check_saturated(sc, during)


def test_saturation_tcp_threads_and_listen_queue(neonfcgi, slow_db):
    with neonfcgi.start(DATABASE_URL=slow_db, listen="tcp", **SLOW) as srv:
        assert srv.get("/health/db", timeout=30).status == 200
        sc, during = saturate(srv, srv.address)
    check_saturated(sc, during)


def test_saturation_pool_wait_histogram_under_shared_checks(neonfcgi, slow_db):
    """Four threads, one connection, eight concurrent probes through the relay
    (80 ms a check). Since /health/db checks are shared (DESIGN.md §5a: one
    check in flight per worker, the pool left to its other users), probes no
    longer queue at the pool: they share checks, and the pool-wait histogram,
    exported and consistent, records no wait from them. That the histogram
    follows real pool waits is tests/unit/test_pool.c
    (mirror_wait_histogram_follows_the_waits)."""
    with neonfcgi.start(DATABASE_URL=slow_db, WORKERS=1, WORKER_THREADS=4, DB_POOL_SIZE=1,
                        DB_MAX_OVERFLOW=0, HEALTH_TIMEOUT_MS=10000,
                        DB_CONNECT_TIMEOUT_MS=10000, DB_POOL_TIMEOUT_MS=10000) as srv:
        assert srv.get("/health/db", timeout=30).status == 200
        sc0 = scrape(srv)
        for r in join(*fire(srv.address, "/health/db", 8), 8):
            assert r.status == 200, str(r)
        sc = scrape(srv)
    count0 = sc0.get("neonfcgi_pool_wait_seconds_count")
    count = sc.get("neonfcgi_pool_wait_seconds_count")
    shared = sc.get("neonfcgi_health_db_answers_total", source="shared") - \
        sc0.get("neonfcgi_health_db_answers_total", source="shared")
    assert shared >= 1, "eight concurrent probes on four threads shared no check"
    assert count == count0, f"probes queued at the pool: waits {count0} -> {count}"
    assert sc.get("neonfcgi_pool_wait_seconds_bucket", le="+Inf") == count


def test_saturation_refused_peers_counted(neonfcgi):
    """Allowed: 127.0.0.1 only; a connection from 127.0.0.3 (loopback, another
    source address) is refused and counted."""
    with neonfcgi.start(listen="tcp", FCGI_WEB_SERVER_ADDRS="127.0.0.1") as srv:
        before = scrape(srv).get("neonfcgi_refused_peers_total")
        for _ in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            s.bind(("127.0.0.3", 0))
            s.connect(srv.address)
            try:
                s.sendall(b"\x01")
                assert s.recv(100) == b"", "a refused peer got an answer"
            except ConnectionResetError:
                pass  # closed with our byte unread: a reset
            s.close()
        wait_until(lambda: scrape(srv).get("neonfcgi_refused_peers_total") >= before + 3, 5.0,
                   "refused peers counted")
        assert srv.get("/health").status == 200


def raw(address, data):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(address)
    s.sendall(data)
    out = bytearray()
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    RECORD.add("raw fcgi answer", bytes(out))
    return bytes(out)


def test_saturation_rejected_requests_counted_by_reason(neonfcgi):
    with neonfcgi.start(WORKERS=1) as srv:
        sc0 = scrape(srv)
        raw(srv.address, b"\x02" + bytes(7))  # FastCGI version 2
        raw(srv.address, fcgi_record(FCGI_BEGIN_REQUEST, struct.pack("!HB5x", 2, 0), 1))
        raw(srv.address, fcgi_record(5, b"x", 1))  # FCGI_STDIN first
        sc = scrape(srv)
    for reason in ("bad_version", "bad_role", "no_begin_request"):
        d = sc.get("neonfcgi_rejected_requests_total", reason=reason) - \
            sc0.get("neonfcgi_rejected_requests_total", reason=reason)
        assert d == 1, f"rejected {reason}: +{d}, expected +1"
    assert sc.total("neonfcgi_rejected_requests_total") - \
        sc0.total("neonfcgi_rejected_requests_total") == 3


def test_saturation_slow_requests_and_health_failures_counted(neonfcgi, slow_db, dev_db):
    """SLOW_REQUEST_MS=1 with an 80 ms database: every /health/db is slow;
    a database that refuses connections counts failures by category."""
    with neonfcgi.start(DATABASE_URL=slow_db, SLOW_REQUEST_MS=1, HEALTH_TIMEOUT_MS=10000,
                        DB_CONNECT_TIMEOUT_MS=10000, WORKERS=1) as srv:
        for _ in range(2):
            assert srv.get("/health/db", timeout=30).status == 200
        assert scrape(srv).get("neonfcgi_slow_requests_total") >= 2
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with neonfcgi.start(DATABASE_URL=dev_db.url_variant(host="127.0.0.1", port=dead_port),
                        WORKERS=1, DB_RETRY_ATTEMPTS=0) as srv:
        assert srv.get("/health/db").status == 503
        sc = scrape(srv)
    assert sc.get("neonfcgi_health_db_failures_total", category="unreachable") == 1
    assert sc.total("neonfcgi_health_db_failures_total") == 1
