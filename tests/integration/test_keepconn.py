"""Kept connections (nginx's fastcgi_keep_conn) take their turn: a request on
a kept connection that arrives after a new connection is served after it,
instead of overtaking everything in the accept queue (DESIGN.md §5a; issue:
kept connections without a tail).

One worker with one request thread and a slow database (bench/delay-relay in
front of the test PostgreSQL), so the order in which the thread serves is the
order in which the answers come back."""
import contextlib
import socket
import threading
import time

from harness import FCGI_END_REQUEST, fcgi_get, wait_until
from test_hostile import records_prefix, request_bytes, response_of
from test_saturation import SLOW, kernel_queue, slow_db  # noqa: F401 (fixture)


def read_answer(s, request_id):
    data = b""
    while not any(t == FCGI_END_REQUEST and rid == request_id
                  for t, rid, _ in records_prefix(data)):
        chunk = s.recv(65536)
        assert chunk, f"connection closed before the answer to request {request_id}"
        data += chunk
    return response_of(data, request_id)[0]


def open_to(address):
    if isinstance(address, tuple):
        s = socket.create_connection(address, timeout=30.0)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30.0)
        s.connect(address)
    return s


def kept_requests_wait_their_turn(srv, address):
    # The pool's connection is open before anything is timed.
    assert fcgi_get(address, "/health/db", timeout=30.0).status == 200
    done = {}
    with contextlib.closing(open_to(address)) as kept:
        kept.sendall(request_bytes("/health/db", flags=1, request_id=1))
        # A new connection arrives while the kept one's first request runs.
        newcomer = threading.Thread(
            target=lambda: done.setdefault("new", (fcgi_get(address, "/health/db", timeout=30.0),
                                                   time.monotonic())))
        newcomer.start()
        wait_until(lambda: kernel_queue(address) >= 1 or "new" in done, 10.0,
                   "the new connection waits in the accept queue")
        assert "new" not in done, "the new connection was answered before the first request"
        # The kept connection asks again as soon as it has its answer, as
        # nginx does under load: three more requests, one after another.
        for rid in range(1, 5):
            assert read_answer(kept, rid) == 200
            done[rid] = time.monotonic()
            if rid < 4:
                kept.sendall(request_bytes("/health/db", flags=1, request_id=rid + 1))
        newcomer.join(30)
    r, at = done["new"]
    assert r.status == 200, str(r)
    # Each answer takes a database round trip (about 80 ms): the newcomer,
    # queued since the first request, comes before the kept connection's second.
    order = sorted(done, key=lambda k: done[k] if k != "new" else at)
    assert at < done[2], f"the new connection was served after kept requests: {order}"


def test_keepconn_kept_requests_wait_their_turn_unix(neonfcgi, slow_db):  # noqa: F811
    with neonfcgi.start(DATABASE_URL=slow_db, **SLOW) as srv:
        kept_requests_wait_their_turn(srv, srv.address)


def test_keepconn_kept_requests_wait_their_turn_tcp(neonfcgi, slow_db):  # noqa: F811
    with neonfcgi.start(listen="tcp", DATABASE_URL=slow_db, **SLOW) as srv:
        kept_requests_wait_their_turn(srv, srv.address)
