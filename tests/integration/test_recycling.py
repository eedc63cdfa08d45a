"""MAX_REQUESTS recycling leaves no gap (found by `make soak`): a worker that
retires has its replacement started before it stops accepting, so a retiring
worker that waits for a database connect in flight (up to
DB_CONNECT_TIMEOUT_MS) keeps no request waiting."""

import contextlib
import socket
import time

from harness import wait_until


@contextlib.contextmanager
def silent_database():
    """A TCP port that takes connections (the kernel's backlog) and never
    answers: a connect to it lasts until the client's connect timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]
    finally:
        s.close()


def test_recycling_worker_waiting_for_a_connect_leaves_no_gap(neonfcgi):
    with silent_database() as port:
        url = f"postgresql://app@127.0.0.1:{port}/app?sslmode=require"
        with neonfcgi.start(WORKERS=1, WORKER_THREADS=2, MAX_REQUESTS=10,
                            DB_CONNECT_TIMEOUT_MS=8000, HEALTH_TIMEOUT_MS=300,
                            DATABASE_URL=url) as srv:
            first = srv.workers()
            assert len(first) == 1, first
            # The connect begun here outlives the request (DESIGN.md §5):
            # the worker's exit waits for it.
            r = srv.get("/health/db")
            assert r.status == 503 and r.json()["output"] == "timeout", str(r)
            slowest, n = 0.0, 0
            while "worker recycling" not in srv.log() or n < 15:
                t = time.monotonic()
                r = srv.get("/health", timeout=10.0)
                took = time.monotonic() - t
                assert r.status == 200, str(r)
                slowest = max(slowest, took)
                n += 1
                assert n < 40, "the worker never recycled"
            assert slowest < 1.0, f"a /health took {slowest:.2f}s around the recycling"
            srv.wait_log(r"worker retiring: replacement started worker_pid=%d " % first[0],
                         5.0)
            wait_until(lambda: first[0] not in srv.workers() and len(srv.workers()) == 1,
                       15.0, what="the retired worker to exit")
