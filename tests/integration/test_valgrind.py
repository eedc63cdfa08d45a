"""Leaks across a whole server life (issue 7): neonfcgi started under valgrind
(the master and every forked worker are checked; valgrind follows fork), a few
requests including /health/db (a pooled TLS connection) and a hostile one, a
graceful SIGTERM; each process must report no error and nothing definitely or
indirectly lost. Workers leave with _exit(), where LeakSanitizer does not look,
so this is what checks that a worker's shutdown path frees what it owns."""

import os
import re
import shutil
import signal
import socket

from harness import fail, fcgi_record, skip, slow

FCGI_GET_VALUES = 9


def summary(text, what):
    m = re.search(rf"{what}: ([\d,]+) bytes", text)
    return int(m.group(1).replace(",", "")) if m else 0


@slow
def test_valgrind_server_life_leaks_nothing(neonfcgi, tmp_path):
    if os.environ.get("SAN"):
        skip("a sanitizer build cannot run under valgrind")
    if not shutil.which("valgrind"):
        skip("valgrind is not installed")
    logs = tmp_path / "vg"
    logs.mkdir()
    wrap = ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect", "--error-exitcode=99",
            "--child-silent-after-fork=no", "--trace-children=yes",
            f"--log-file={logs}/vg.%p.log"]
    with neonfcgi.start(wrap=wrap, ready_timeout=60, WORKERS=2, WORKER_THREADS=2,
                        SHUTDOWN_TIMEOUT_MS=30000, HEALTH_TIMEOUT_MS=30000,
                        DB_CONNECT_TIMEOUT_MS=30000) as srv:
        srv.wait_workers(2, timeout=30)
        for path in ("/health", "/health/db", "/metrics", "/nope", "/health/db"):
            r = srv.get(path, timeout=30)
            assert r.status in (200, 404), f"{path}: {r}"
        srv.get("/health", method="POST", timeout=30)
        # a management record answered by us, then a request on the connection
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(30)
            s.connect(srv.socket)
            s.sendall(fcgi_record(FCGI_GET_VALUES, b"\x0e\x00FCGI_MAX_CONNS", 0))
            s.recv(100)
        rc = srv.stop(signal.SIGTERM, timeout=60)
        assert rc == 0, f"exit {rc}"
    reports = sorted(logs.glob("vg.*.log"))
    assert len(reports) >= 3, f"expected master + 2 workers, got {reports}"
    problems = []
    for f in reports:
        text = f.read_text(errors="replace")
        errors = re.search(r"ERROR SUMMARY: ([\d,]+) errors", text)
        lost = {k: summary(text, k) for k in ("definitely lost", "indirectly lost")}
        if errors is None:
            problems.append(f"{f.name}: no ERROR SUMMARY (process did not finish?)")
        elif errors.group(1) != "0" or any(lost.values()):
            problems.append(f"{f.name}: {errors.group(0)}, {lost}\n{text[-4000:]}")
    if problems:
        fail("valgrind found problems:\n" + "\n".join(problems))
