"""Acceptance tests of observability (issue 4): /metrics in Prometheus text
0.0.4 summed over every worker through the shared scoreboard, counters that
survive a killed worker, pool gauges that agree with what PostgreSQL itself
sees (pg_stat_activity), and the JSON / access / slow-request logs.

/metrics is read through nginx, so any worker may answer a scrape: the numbers
must be the whole instance's whichever one does. Parsing uses Debian's
python3-prometheus-client (the real parser), plus checks on the raw text."""

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from harness import (RECORD, behind_nginx, fail, halt, json_log, pid_alive, spawn, tail,
                     wait_until)

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # run with /usr/bin/python3 (python3-prometheus-client)
    text_string_to_metric_families = None

CONTENT_TYPE = "text/plain; version=0.0.4"
ROUTES = ("health", "health_db", "metrics", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


# --------------------------------------------------------------------------
# Scraping


class Scrape:
    """One /metrics answer: .text, .families (parsed), .samples
    {(name, ((label, value), ...)): value}."""

    def __init__(self, text):
        if text_string_to_metric_families is None:
            fail("prometheus_client is not importable: run with /usr/bin/python3 "
                 "(Debian's python3-prometheus-client)")
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = {}
        for fam in self.families:
            for s in fam.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        if key not in self.samples:
            fail(f"no sample {name}{labels} in /metrics\n{self.text[:3000]}")
        return self.samples[key]

    def total(self, name, **labels):
        """Sum of the samples of name whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, lab), v in self.samples.items() if n == name and want <= set(lab))

    def requests(self, route):
        return self.total("neonfcgi_requests_total", route=route)

    def pool(self, state):
        return self.get("neonfcgi_db_pool_connections", state=state)

    def pool_total(self):
        return sum(self.pool(s) for s in ("idle", "in_use", "opening"))

    def closes(self):
        return self.total("neonfcgi_db_connection_closes_total")

    def connects(self):
        return self.total("neonfcgi_db_connects_total")

    def counters(self):
        """Every sample that must never go backwards: counters, and histogram
        buckets, sums and counts."""
        out = {}
        for fam in self.families:
            if fam.type in ("counter", "histogram"):
                for s in fam.samples:
                    if not s.name.endswith("_created"):
                        out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out


def scrape(web, timeout=5.0):
    r = web.get("/metrics", timeout=timeout)
    assert r.status == 200, f"/metrics: {r}"
    ctype = r.header("Content-Type", "")
    assert ctype.replace(" ", "").startswith(CONTENT_TYPE.replace(" ", "")), \
        f"/metrics Content-Type {ctype!r}, expected {CONTENT_TYPE!r}"
    return Scrape(r.body.decode())


def check_raw_text(text):
    """The exposition itself: each `# TYPE` right after its `# HELP`, each
    family announced once, before its samples, with at least one sample, and
    every sample inside the block of the family it belongs to."""
    lines = text.splitlines()
    assert lines and text.endswith("\n"), "empty body or no final newline"
    announced, current, types, with_samples = set(), None, {}, set()
    for i, ln in enumerate(lines):
        if ln.startswith("# HELP "):
            name, _, help_text = ln[7:].partition(" ")
            assert help_text.strip(), f"line {i + 1}: empty HELP for {name}"
            assert name not in announced, f"line {i + 1}: {name} announced twice"
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            m = re.fullmatch(r"# TYPE (\S+) (counter|gauge|histogram|summary)", nxt)
            assert m and m.group(1) == name, \
                f"line {i + 2}: HELP of {name} not followed by its TYPE: {nxt!r}"
            announced.add(name)
            types[name] = m.group(2)
            current = name
        elif ln.startswith("# TYPE "):
            name = ln.split()[2]
            assert name == current and lines[i - 1].startswith(f"# HELP {name} "), \
                f"line {i + 1}: TYPE of {name} without its HELP right before"
        elif ln.startswith("#") or not ln.strip():
            fail(f"line {i + 1}: unexpected line {ln!r}")
        else:
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", ln)
            assert m, f"line {i + 1}: not a sample line: {ln!r}"
            name = m.group(1)
            assert current, f"line {i + 1}: sample {name} before any family"
            suffixes = ("_bucket", "_sum", "_count") if types[current] == "histogram" else ("",)
            assert any(name == current + s for s in suffixes), \
                f"line {i + 1}: sample {name} inside the block of family {current}"
            assert name.startswith("neonfcgi_"), f"line {i + 1}: {name} lacks neonfcgi_"
            float(m.group(3))
            with_samples.add(current)
    empty = announced - with_samples
    assert not empty, f"families without samples: {sorted(empty)}"
    return types


# --------------------------------------------------------------------------
# Servers


def get_many(web, path, n, concurrency=8):
    """n GETs of path through nginx from `concurrency` clients; the responses."""
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: web.get(path), range(n)))


def served_pids(responses):
    pids = []
    for r in responses:
        assert r.status == 200, str(r)
        pids.append(r.json()["pid"])
    return pids


class PgActivity:
    """One superuser psql session kept open (a new psql per sample costs most
    of a second on a loaded machine): .backends() counts the app's backends
    in pg_stat_activity."""

    def __init__(self, dev_db, app_name):
        self.app_name = app_name
        self.proc = dev_db.psql_process("-X", "-Atq", "-v", "ON_ERROR_STOP=1",
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)

    def backends(self):
        self.proc.stdin.write("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                              f"AND application_name = '{self.app_name}';\n")
        self.proc.stdin.flush()
        if not select.select([self.proc.stdout], [], [], 10.0)[0]:
            fail("psql did not answer within 10 s")
        line = self.proc.stdout.readline()
        RECORD.add("pg_stat_activity count", line)
        if not line.strip().isdigit():
            fail(f"psql: {line!r}")
        return int(line)

    def close(self):
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # psql ends at end of input
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        halt(self.proc)


# --------------------------------------------------------------------------
# 1. The exposition parses, and every family has HELP and TYPE


def test_metrics_parse_with_prometheus_parser(neonfcgi, nginx):
    workers, size, overflow = 2, 3, 1
    with behind_nginx(neonfcgi, nginx, WORKERS=workers, DB_POOL_SIZE=size,
                      DB_MAX_OVERFLOW=overflow) as (srv, web):
        for path in ("/health", "/health/db", "/nope", "/metrics"):
            web.get(path)
        sc = scrape(web)
    types = check_raw_text(sc.text)
    assert sc.families, "the parser found no family"
    for fam in sc.families:
        assert fam.documentation.strip(), f"{fam.name}: no HELP"
        assert fam.type in ("counter", "gauge", "histogram"), f"{fam.name}: type {fam.type}"
        assert fam.samples, f"{fam.name}: no samples"
    # The parser and the raw text agree on the families.
    parsed = {f.name + ("_total" if f.type == "counter" and f.name + "_total" in types else "")
              for f in sc.families}
    assert parsed == set(types), f"parser {sorted(parsed)} vs text {sorted(types)}"
    info = sc.families[[f.name for f in sc.families].index("neonfcgi_build_info")].samples[0]
    assert info.value == 1 and info.labels.get("version") and \
        re.fullmatch(r"\d+\.\d+", info.labels.get("libpq", "")), f"build_info {info}"
    assert sc.get("neonfcgi_db_pool_max_connections") == workers * (size + overflow)
    assert sc.get("neonfcgi_workers") == workers
    for route in ROUTES:
        for cls in STATUS_CLASSES:
            sc.get("neonfcgi_requests_total", route=route, status=cls)
    assert sc.get("neonfcgi_requests_total", route="other", status="4xx") >= 1
    assert sc.get("neonfcgi_requests_total", route="health_db", status="2xx") >= 1
    assert sc.get("neonfcgi_db_connects_total", result="ok") >= 1
    # Histograms: cumulative buckets ending in +Inf == _count.
    for fam in sc.families:
        if fam.type != "histogram":
            continue
        series = {}
        for s in fam.samples:
            if s.name.endswith("_bucket"):
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                series.setdefault(key, []).append((float(s.labels["le"]), s.value))
        for key, buckets in series.items():
            values = [v for _, v in sorted(buckets)]
            assert values == sorted(values), f"{fam.name}{key}: buckets not cumulative"
            assert sorted(buckets)[-1][0] == float("inf"), f"{fam.name}{key}: no +Inf"
            count = sc.get(fam.name + "_count", **dict(key))
            assert values[-1] == count, f"{fam.name}{key}: +Inf {values[-1]} != _count {count}"


# --------------------------------------------------------------------------
# 2. Requests spread over 4 workers add up exactly


def test_metrics_requests_total_exact_across_workers(neonfcgi, nginx):
    n = 240
    with behind_nginx(neonfcgi, nginx, WORKERS=4) as (srv, web):
        srv.wait_workers(4)
        before = scrape(web)
        pids = served_pids(get_many(web, "/health", n))
        after = scrape(web)
        workers = srv.workers()
    served = set(pids)
    assert len(served) > 1, f"all {n} requests were served by one worker {served}"
    assert served <= set(workers), f"pids {served} are not the workers {workers}"
    got = after.requests("health") - before.requests("health")
    assert got == n, (f"neonfcgi_requests_total{{route=health}} grew by {got}, expected {n} "
                      f"(served by {len(served)} workers)")
    ok = (after.get("neonfcgi_requests_total", route="health", status="2xx")
          - before.get("neonfcgi_requests_total", route="health", status="2xx"))
    assert ok == n, f"2xx grew by {ok}, expected {n}"
    for sc in (before, after):
        count = sc.get("neonfcgi_request_duration_seconds_count", route="health")
        assert count == sc.requests("health"), \
            f"histogram _count {count} != requests_total {sc.requests('health')}"
    # The scrapes are counted under their own route, never as health.
    assert after.requests("metrics") >= 1


# --------------------------------------------------------------------------
# 3. A killed worker takes nothing with it


def test_metrics_counters_survive_killed_worker(neonfcgi, nginx):
    with behind_nginx(neonfcgi, nginx, WORKERS=4) as (srv, web):
        srv.wait_workers(4)
        pids = served_pids(get_many(web, "/health", 80))
        db = get_many(web, "/health/db", 20, concurrency=4)
        assert all(r.status == 200 for r in db), [str(r) for r in db if r.status != 200][:2]
        before = scrape(web)
        # The victim served requests, so its slot holds counts that must stay.
        victim = max(set(pids), key=pids.count)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not pid_alive(victim), 3.0, what=f"worker {victim} to die")
        srv.wait_workers(4, timeout=5.0, exclude=[victim])
        restarts = before.get("neonfcgi_worker_restarts_total")

        def respawn_counted():
            sc = scrape(web)
            return sc if sc.get("neonfcgi_worker_restarts_total") > restarts else None
        after = wait_until(respawn_counted, 5.0, what="worker_restarts_total to grow")
        served_pids(get_many(web, "/health", 20))
        later = scrape(web)
    assert after.get("neonfcgi_worker_restarts_total") == restarts + 1, \
        f"restarts {restarts} -> {after.get('neonfcgi_worker_restarts_total')}"
    assert (after.get("neonfcgi_worker_exits_total", cause="signal")
            == before.get("neonfcgi_worker_exits_total", cause="signal") + 1)
    assert after.get("neonfcgi_workers") == 4
    for a, b, what in ((before, after, "across the kill"), (after, later, "after the respawn")):
        old, new = a.counters(), b.counters()
        back = {k: (old[k], new.get(k)) for k in old if new.get(k, -1) < old[k]}
        assert not back, f"counters went backwards {what}: {back}"
    assert later.requests("health") >= before.requests("health") + 20
    assert after.requests("health") == before.requests("health"), \
        "health requests changed although none was sent"


# --------------------------------------------------------------------------
# 4. Pool gauges under load: bounded, and what PostgreSQL sees


def test_metrics_pool_matches_pg_stat_activity_under_load(neonfcgi, nginx, dev_db):
    workers, size, overflow = 4, 2, 2
    bound = workers * (size + overflow)
    app_name = f"neonfcgi_obs_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    # Nothing closes on a timer during the test (overflow, idle, lifetime), so
    # the pool changes only by opening connections or by a discard, and both
    # show in the counters: that is what the tolerance below is made of.
    # 8 threads a worker share one check at a time (DESIGN.md §5a).
    vars = dict(WORKERS=workers, WORKER_THREADS=8, DB_POOL_SIZE=size, DB_MAX_OVERFLOW=overflow,
                DB_OVERFLOW_IDLE_MS=600000, DB_IDLE_TIMEOUT_S=0, DB_MAX_LIFETIME_S=0,
                DATABASE_URL=dev_db.app_url(app_name))
    activity = PgActivity(dev_db, app_name)
    with contextlib.ExitStack() as stack:
        stack.callback(activity.close)
        srv, web = stack.enter_context(behind_nginx(neonfcgi, nginx, **vars))
        run_load_and_compare(web, activity, bound, workers)
        srv.stop()
        wait_until(lambda: activity.backends() == 0, 5.0,
                   what="every backend to be gone after the stop")


def run_load_and_compare(web, activity, bound, workers):
    """wrk on /health/db with scrapes and pg_stat_activity samples, then the
    settled pool compared exactly."""
    samples, problems = [], []
    assert activity.backends() == 0, "backends before any /health/db"
    wrk = spawn(["wrk", "-t2", "-c100", "-d6s", "--timeout", "5s", f"{web.url}/health/db"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        prev = scrape(web)
        while wrk.poll() is None:
            a = scrape(web)
            pg = activity.backends()
            b = scrape(web)
            samples.append((a, pg, b))
            problems += check_load_sample(prev, a, pg, b, bound)
            prev = a
            time.sleep(0.1)  # the sampling period, not a synchronization
        out = wrk.communicate(timeout=10)[0].decode(errors="replace")
    finally:
        if wrk.poll() is None:
            halt(wrk)
    RECORD.add("wrk output", out)
    assert wrk.returncode == 0, f"wrk failed:\n{out}"
    m = re.search(r"(\d+) requests in", out)
    assert m and int(m.group(1)) > 100, f"wrk made too few requests:\n{out}"
    assert len(samples) >= 5, f"only {len(samples)} samples during the load\n{out}"
    assert not problems, "\n".join(problems[:10]) + f"\n--- wrk\n{out}"
    # /health/db checks are a single flight per worker (DESIGN.md §5a): the
    # load keeps exactly one connection a worker busy, never more.
    peak = max(b.pool_total() for _, _, b in samples)
    assert peak == workers, f"peak pool {peak}, want one connection a worker ({workers})"

    # After the load: the pool settles; PostgreSQL sees exactly its connections.
    def settled():
        sc = scrape(web)
        busy = sc.pool("in_use") + sc.pool("opening") + sc.get("neonfcgi_db_pool_waiting")
        if busy:
            return None
        pg = activity.backends()
        again = scrape(web)
        if pg == sc.pool("idle") == again.pool("idle"):
            return sc, pg
        return None
    try:
        sc, pg = wait_until(settled, 10.0, what="pool and pg_stat_activity to agree")
    except AssertionError as exc:
        last = scrape(web)
        fail(f"{exc}: pool idle={last.pool('idle')} in_use={last.pool('in_use')} "
             f"opening={last.pool('opening')}, pg_stat_activity "
             f"{activity.backends()}")
    assert 0 < sc.pool("idle") <= bound, f"idle {sc.pool('idle')}, bound {bound}"
    # /health/db shows the same instance-wide picture and the bound.
    r = web.get("/health/db")
    assert r.status == 200, str(r)
    conns = r.json()["checks"]["postgres:connections"][0]
    pg = activity.backends()
    assert conns["max"] == bound, conns
    assert conns["idle"] + conns["in_use"] == conns["observedValue"] == pg, \
        f"/health/db {conns}, pg_stat_activity {pg}"


def check_load_sample(prev, a, pg, b, bound):
    """Problems in one sample: scrape a, pg_stat_activity count pg, scrape b
    (prev: the sample before, for closes whose backends may still be exiting).

    Tolerance: a connection established (idle or in use) at a and not closed
    before the query is a backend; so is one alive at the query, unless it
    was still being opened (pool says "opening"; its backend may not exist or
    not be authenticated yet) — and a closed connection's backend may take a
    moment to exit. So with X = closes and F = failed connects counted from
    prev to b:  established(a) - X  <=  pg  <=  total(b) + X + F.
    In a steady pool (no opening, nothing closed) that is exact equality."""
    out = []
    for sc, name in ((a, "a"), (b, "b")):
        if sc.pool_total() > bound:
            out.append(f"scrape {name}: idle+in_use+opening={sc.pool_total()} > bound {bound}")
    closed = b.closes() - prev.closes()
    failed = b.total("neonfcgi_db_connects_total") - b.get("neonfcgi_db_connects_total",
                                                            result="ok")
    failed -= (prev.total("neonfcgi_db_connects_total")
               - prev.get("neonfcgi_db_connects_total", result="ok"))
    low = a.pool("idle") + a.pool("in_use") - closed
    high = b.pool_total() + closed + failed
    if not low <= pg <= high:
        out.append(f"pg_stat_activity {pg} outside [{low}, {high}]: "
                   f"a idle={a.pool('idle')} in_use={a.pool('in_use')} "
                   f"opening={a.pool('opening')}; b total={b.pool_total()} "
                   f"closes={closed} failed={failed}")
    if pg > bound + closed:
        out.append(f"pg_stat_activity {pg} above the bound {bound}")
    return out


# --------------------------------------------------------------------------
# 5. Logs: JSON lines, access log, slow requests


def parse_json_log(srv, password):
    """The checked JSON log (harness.json_log), which must not hold the password."""
    log = srv.log()
    assert password not in log, "the database password is in a log line"
    return json_log(log)


def _exercise(srv):
    """Requests of three routes over FastCGI: the first /health/db opens a TLS
    connection, which takes well over 1 ms."""
    assert srv.get("/health").status == 200
    r = srv.get("/health/db")
    assert r.status == 200, str(r)
    assert srv.get("/nope").status == 404


def test_log_json_access_and_slow_request_lines(neonfcgi, dev_db):
    with neonfcgi.start(WORKERS=1, LOG_FORMAT="json", ACCESS_LOG="true",
                        SLOW_REQUEST_MS=1) as srv:
        _exercise(srv)
        srv.stop()
    objs = parse_json_log(srv, dev_db.password)
    access = [o for o in objs if o["msg"] == "request"]
    got = {(o.get("route"), o.get("status")) for o in access}
    for want in (("health", 200), ("health_db", 200), ("other", 404)):
        assert want in got, f"no access line for {want}: {access}"
    for o in access:
        assert o["level"] == "info" and isinstance(o.get("us"), int) and o["us"] >= 0, o
        assert isinstance(o["status"], int), f"status is not a JSON number: {o}"
    slow = [o for o in objs if o["msg"] == "slow request"]
    assert any(o.get("route") == "health_db" and o["level"] == "warn"
               and isinstance(o.get("us"), int) and o["us"] > 1000 for o in slow), \
        f"no slow-request warning for /health/db with SLOW_REQUEST_MS=1: {slow}\n" \
        + tail(srv.log())


def test_log_access_and_slow_request_off_by_default(neonfcgi, dev_db):
    with neonfcgi.start(WORKERS=1, LOG_FORMAT="json") as srv:
        _exercise(srv)
        srv.stop()
    objs = parse_json_log(srv, dev_db.password)
    noisy = [o for o in objs if o["msg"] in ("request", "slow request") or "route" in o]
    assert not noisy, f"access or slow-request lines without ACCESS_LOG/SLOW_REQUEST_MS: {noisy}"


def test_log_access_text_without_slow_warning(neonfcgi, dev_db):
    with neonfcgi.start(WORKERS=1, ACCESS_LOG="yes", SLOW_REQUEST_MS=600000) as srv:
        _exercise(srv)
        srv.stop()
    log = srv.log()
    assert dev_db.password not in log, "the database password is in the log"
    for route, status in (("health", 200), ("health_db", 200), ("other", 404)):
        assert re.search(rf" info request route={route} status={status} us=\d+ pid=\d+$",
                         log, re.M), f"no text access line for {route}\n{tail(log)}"
    assert "slow request" not in log, f"slow-request warning below the threshold\n{tail(log)}"
