#!/usr/bin/python3
"""Soak under chaos: neonfcgi serves steady mixed load for as long as asked
while faults are injected at random times, and every invariant is checked
as it goes (docs/soak.md says what and why).

    /usr/bin/python3 tests/soak/soak.py --seconds 600 [--seed N]
    make soak SOAK_SECONDS=600 [SOAK_SEED=N] [SAN=address,undefined]

Topology (everything started here, through harness.spawn, and stopped at
the end whatever happens):

    load ─► nginx A ─unix─► neonfcgi A ───────────────► PostgreSQL (dev db,
    load ─► nginx B ─unix─► neonfcgi B ─► PgBouncer ──►  TLS, SCRAM, roles
    load ─► nginx C ─unix─► neonfcgi C ─► Neon proxy ─►  soak_a/b/c)
    load ─► nginx D ─unix─► neonfcgi D ═veth═► PostgreSQL in a network
                            (app netns)        namespace (role app)

Each instance has its own role, so its backends are counted alone against
its bound WORKERS × (DB_POOL_SIZE + DB_MAX_OVERFLOW). The seed decides the
fault schedule (which fault, when, for how long, on which instance): the
same seed replays the same schedule. Exit 0 when every invariant held, 1 on
the first broken one (which, when, and the faults in force), 2 on a set-up
error.

Standard library only; run as root (network namespaces, postgres user).
"""

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import harness  # noqa: E402
import neonproxy  # noqa: E402
import netns  # noqa: E402
import pgbouncer  # noqa: E402
import test_hostile as hostile  # noqa: E402
from harness import (CLEAN_PATH, DEV_DB_SH, RECORD, DevDB, NeonfcgiFactory,  # noqa: E402
                     NginxFactory, wait_until)
from pglog import replay  # noqa: E402

# -- invariants' numbers
HEALTH_LIMIT_S = 1.0            # every /health answer within this
HEALTH_TIMEOUT_MS = 1500        # /health/db deadline of every instance
HEALTH_DB_SLACK_S = 0.5         # ... answered within HEALTH_TIMEOUT_MS + this
GRACE_S = 7.0                   # a fault's 503s may follow it this long (below)
KILL_502_WINDOW_S = 2.0         # nginx's 502s of a killed worker: this soon after
RECOVERY_S = 10.0               # /health/db passes within this after the last fault
RSS_GROWTH = 0.02               # per 10 minutes
ZOMBIE_S = 5.0                  # a zombie reaped later than this is one
WARMUP_S = 5.0
LOAD_THREADS = 2                # per instance
LOAD_PERIOD_S = 0.1             # per thread: about 10 requests/s each
# Why GRACE_S: a connect begun during a fault is not abandoned when the
# request gives up (DB_CONNECT_TIMEOUT_MS, 5 s by default, DESIGN.md §5) and
# requests wait for it; the breaker cools down for 2 s; a permanent failure
# is held DB_FAILURE_HOLD_MS (1 s here). 7 s covers the longest of these.

ROUTES = [  # (method, path, expected status when all is well), weighted
    ("GET", "/health", 200), ("GET", "/health", 200), ("HEAD", "/health", 200),
    ("GET", "/health/db", 200), ("GET", "/health/db", 200), ("GET", "/health/db", 200),
    ("GET", "/metrics", 200), ("GET", "/soak-no-such-route", 404),
]

# /health/db categories (DESIGN.md §4) a fault may legitimately produce.
SLOW = {"timeout", "pool_timeout", "circuit_open"}
DOWN = SLOW | {"unreachable", "rejected", "query_failed"}
NEON_ERRORS = {  # neonproxy error mode -> its category (app/dberror.c's table)
    "endpoint_disabled": "endpoint",
    "endpoint_not_found": "endpoint",
    "too_many_connections": "rate_limited",
    "password_failed": "auth",
    "temporarily_unavailable": "quota",
    "compute_time_quota": "quota",
    "active_endpoints_limit": "quota",
    "control_plane_failed": "unreachable",
    "wake_rate_limit": "rate_limited",
    "permit": "rate_limited",
    "could_not_connect": "unreachable",
    "compute_too_many_clients": "rejected",
    "compute_shutting_down": "unreachable",
}

INSTANCES = {  # name -> WORKERS, DB_POOL_SIZE, DB_MAX_OVERFLOW, MAX_REQUESTS
    "A": (3, 1, 1, 500),   # direct to PostgreSQL
    "B": (2, 1, 1, 400),   # through PgBouncer (transaction mode)
    "C": (2, 1, 1, 400),   # through the Neon-like proxy
    "D": (2, 1, 1, 400),   # in a network namespace, PostgreSQL across a veth
}
SAN = os.environ.get("SAN", "")  # the sanitizers of the build under test (make soak SAN=…)
ROLES = {"A": "soak_a", "B": "soak_b", "C": "soak_c", "D": "app"}


class Broken(Exception):
    """An invariant broke (the soak fails)."""


def now():
    return time.monotonic()


# --------------------------------------------------------------------------
# /proc


def proc_table():
    """{pid: (state, ppid)} of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = harness.proc_stat(d)
            if st:
                out[int(d)] = (st[0], st[1])
    return out


def children(table, pid):
    return [p for p, (st, pp) in table.items() if pp == pid and st not in ("Z", "X")]


def read_cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except OSError:
        return ""


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def rss_kb(pid):
    try:
        m = re.search(r"^VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def tcp_table(pid):
    """The TCP sockets of the network namespace pid lives in:
    ({inode: (local, remote, state)}, {(local, remote): state}), addresses as
    /proc/net/tcp spells them."""
    by_inode, by_addr = {}, {}
    if pid is None:
        return by_inode, by_addr
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9:
                by_inode[f[9]] = (f[1], f[2], f[3])
                by_addr[(f[1], f[2])] = f[3]
    return by_inode, by_addr


def socket_inodes(pid):
    out = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    out.append(link[8:-1])
    except OSError:
        pass
    return out


ESTABLISHED = "01"


def backends(table, postmaster, roles, peer_ns_pid):
    """({role: [pids]}, [orphan pids]) of the postmaster's backends whose
    title names one of `roles`. A backend counts while its client holds the
    connection: its TCP socket and the client's (looked up in the namespace
    of peer_ns_pid) both established. One whose client has gone is an
    orphan: the server has not noticed yet (it is stopped, or the client's
    FIN was dropped by a blackhole) but the client holds nothing."""
    live, orphans = {r: [] for r in roles}, []
    if postmaster is None:
        return live, orphans
    tables = None
    for pid in children(table, postmaster):
        parts = read_cmdline(pid).split()
        if len(parts) < 2 or parts[0] != "postgres:" or parts[1] not in roles:
            continue
        if tables is None:
            tables = tcp_table(postmaster), tcp_table(peer_ns_pid)
        (db_inodes, _), (_, peer_addrs) = tables
        socks = [db_inodes[i] for i in socket_inodes(pid) if i in db_inodes]
        if any(st == ESTABLISHED and peer_addrs.get((remote, local)) == ESTABLISHED
               for local, remote, st in socks):
            live[parts[1]].append(pid)
        elif socks:
            orphans.append(pid)
    return live, orphans


# --------------------------------------------------------------------------
# HTTP without the integration harness's recording (millions of bodies)


class _UnixConn(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def http_get(port, method, path, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


# --------------------------------------------------------------------------
# The run


class Fault:
    def __init__(self, kind, group, instances, allowed, detail=""):
        self.kind, self.group, self.instances = kind, group, set(instances)
        self.allowed = set(allowed)
        self.detail = detail
        self.start, self.end = None, None

    def label(self, t0):
        end = f"{self.end - t0:.1f}" if self.end else "…"
        where = ",".join(sorted(self.instances))
        return f"{self.kind}{'(' + self.detail + ')' if self.detail else ''}@{where} " \
               f"[{self.start - t0:.1f}s–{end}s]"


class Soak:
    def __init__(self, seconds, seed, binary):
        self.seconds, self.seed, self.binary = seconds, seed, binary
        self.t0 = None
        self.lock = threading.Lock()
        self.failure = None
        self.stop_load = threading.Event()
        self.stop_faults = threading.Event()
        self.faults = []                 # every Fault, in order of start
        self.kills = {n: [] for n in INSTANCES}   # instance -> [(t, pid)]
        self.killed_pids = set()
        self.requests = {}               # (route, status) -> count
        self.slowest = {}                # route -> seconds
        self.peak = {n: 0 for n in INSTANCES}
        self.peak_at = {n: None for n in INSTANCES}
        self.stats = {"hostile": 0, "burst_clients": 0, "silent": 0}
        self.stack = contextlib.ExitStack()
        self.tmp = Path(tempfile.mkdtemp(prefix="neonfcgi-soak-"))
        self.srv, self.web, self.envfiles = {}, {}, {}
        self.log_offsets = {}
        self.zombies = {}
        self.orphans = {}                # backend pid -> first seen orphaned (epoch)
        self.baseline = {}
        self.final = {}
        self.last_clear = None

    # -- failing
    def t(self, when=None):
        return (when if when is not None else now()) - self.t0 if self.t0 else 0.0

    def in_force(self, when=None):
        when = when if when is not None else now()
        with self.lock:
            return [f for f in self.faults if f.start <= when and (f.end is None or f.end >= when)]

    def broken(self, invariant, detail, when=None, instance=None):
        """Record the first broken invariant (later ones are consequences)."""
        when = when if when is not None else now()
        faults = "; ".join(f.label(self.t0) for f in self.in_force(when)) or "none"
        with self.lock:
            recent = [f for f in self.faults if f.end and when - 30 <= f.end < when]
        recent = "; ".join(f.label(self.t0) for f in recent) or "none"
        msg = (f"INVARIANT BROKEN at t={self.t(when):.1f}s: {invariant}\n  {detail}\n"
               f"  faults in force: {faults}\n  faults ended in the 30 s before: {recent}")
        if instance and instance in self.srv:
            with contextlib.suppress(OSError):
                log = harness.hide(harness.tail(self.srv[instance].log(), 40), self.password)
                msg += f"\n  --- instance {instance}'s log (last lines)\n{log}"
            if instance == "B":
                with contextlib.suppress(OSError):
                    msg += "\n  --- pgbouncer log\n" + harness.tail(self.bouncer.log(), 30)
        with self.lock:
            if self.failure is None:
                self.failure = msg
        self.stop_load.set()
        self.stop_faults.set()

    def check(self):
        if self.failure:
            raise Broken(self.failure)

    def thread(self, target, *args, name):
        """A daemon thread whose uncaught exception fails the run (a load
        client that dies silently would leave the service unchecked)."""
        def body():
            try:
                target(*args)
            except Exception:  # noqa: BLE001
                self.broken("the soak's own threads keep running",
                            f"{name} raised:\n{traceback.format_exc()}")
        return threading.Thread(target=body, name=name, daemon=True)

    def sleep(self, seconds, event=None):
        """Sleep, waking early when the run fails (or event is set)."""
        event = event or self.stop_faults
        event.wait(max(0.0, seconds))
        return not event.is_set() and not self.failure

    # -- set-up
    def setup(self):
        pw_db = DevDB(extra_conf="log_connections=on\nlog_disconnections=on\n"
                                 "max_connections=100")
        self.stack.callback(pw_db.stop)
        pw_db.start()
        self.db = pw_db
        self.password = pw_db.password
        harness.SESSION_STATE["dev_db"] = pw_db
        pw = self.password.replace("'", "''")
        sql = "SET log_statement = 'none';\n" + "".join(
            f"CREATE ROLE {r} LOGIN PASSWORD '{pw}';\n" for n, r in ROLES.items() if n != "D")
        r = harness.run_command([DEV_DB_SH, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                {"PATH": CLEAN_PATH, "DEV_DB_DIR": pw_db.dir}, "/", 30,
                                input=sql, record=False)
        if r.rc != 0:
            raise RuntimeError(f"creating the roles failed: {r.stderr[-500:]}")
        self.db_log = Path(pw_db.dir) / "postgres.log"
        self.db_data = Path(pw_db.dir) / "data"

        # server_login_retry: after a failed login to the server (PostgreSQL
        # restarting) PgBouncer waits this long before the next, its clients
        # with it; its default, 15 s, is longer than the grace a fault gets.
        self.bouncer = pgbouncer.PgBouncer(pw_db, users=(ROLES["B"],), pool_size=20,
                                           extra_ini="server_login_retry = 1\n")
        self.stack.callback(self.bouncer.stop)

        self.proxy = neonproxy.NeonProxy("127.0.0.1", pw_db.port, self.password,
                                         user=ROLES["C"], database="app",
                                         backend_ca=pw_db.ca, wake_delay=0.5,
                                         terminate="proxy")
        self.stack.callback(self.proxy.stop)
        self.proxy.start()

        ssl = Path(pw_db.ca).parent
        self.ns = netns.NetnsPostgres(self.password, ssl / "server.crt", ssl / "server.key",
                                      tag=f"s{os.getpid() % 100000}", app_addr="10.253.0.1",
                                      db_addr="10.253.0.2")
        self.stack.callback(self.ns.stop)
        self.ns.start()
        self.ns.check_route()
        # Its own configuration logs connections, not disconnections: the
        # replay needs both (a superuser-settable parameter: reload is enough).
        self.ns.psql("ALTER SYSTEM SET log_disconnections = on")
        self.ns.psql("SELECT pg_reload_conf()")

        urls = {
            "A": pw_db.url_variant(user=ROLES["A"], query={"sslmode": "require",
                                                            "application_name": "soak_a"}),
            "B": pw_db.url_variant(user=ROLES["B"], port=self.bouncer.port,
                                   query={"sslmode": "require"}),
            "C": self.proxy.url("ep-soak-chaos-123456", user=ROLES["C"], dbname="app"),
            "D": self.ns.url(),
        }
        factory = NeonfcgiFactory(self.binary, None, self.tmp)
        nginx = NginxFactory(self.tmp)
        for name, (workers, size, overflow, maxreq) in INSTANCES.items():
            env = self.tmp / f"{name}.env"
            env.write_text("SLOW_REQUEST_MS=1000\n")
            self.envfiles[name] = env
            wrap = self.ns.app_exec() if name == "D" else ()
            if name == "D":
                self.ns.check_route()  # right before its first packet
            srv = factory.start(wrap=wrap, WORKERS=workers, WORKER_THREADS=4,
                                DB_POOL_SIZE=size, DB_MAX_OVERFLOW=overflow,
                                MAX_REQUESTS=maxreq, HEALTH_TIMEOUT_MS=HEALTH_TIMEOUT_MS,
                                DB_FAILURE_HOLD_MS=1000, LOG_LEVEL="info",
                                ENV_FILE=str(env), DATABASE_URL=urls[name])
            self.stack.callback(srv.stop, check=False, timeout=10.0)
            self.srv[name] = srv
            web = nginx.start(srv.socket)
            self.stack.callback(web.stop)
            self.web[name] = web
            self.log_offsets[name] = 0
        self.bounds = {n: w * (s + o) for n, (w, s, o, _) in INSTANCES.items()}

    def postmasters(self):
        """(dev db postmaster, netns postmaster), either None when down."""
        def pm(path):
            try:
                pid = int(Path(path).read_text().split()[0])
            except (OSError, IndexError, ValueError):
                return None
            return pid if harness.pid_alive(pid) else None
        return pm(self.db_data / "postmaster.pid"), self.ns.postmaster_pid()

    def long_lived(self):
        """{label: pid} of the processes that live through the run."""
        out = {}
        for n in INSTANCES:
            out[f"neonfcgi {n} master"] = self.srv[n].pid
            ng = self.web[n].proc.pid
            out[f"nginx {n} master"] = ng
            for i, w in enumerate(harness.children_of(ng)):
                out[f"nginx {n} worker{i}"] = w
        out["pgbouncer"] = self.bouncer.proc.pid
        out["netns postgres"] = self.ns.postmaster_pid()
        return out

    # -- load
    def record(self, route, status, seconds):
        with self.lock:
            key = (route, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            if seconds > self.slowest.get(route, (0,))[0]:
                self.slowest[route] = (seconds, self.t())

    def allowed_categories(self, name, start, end):
        out = set()
        with self.lock:
            for f in self.faults:
                if name in f.instances and f.start <= end and (
                        f.end is None or f.end + GRACE_S >= start):
                    out |= f.allowed
        return out

    def killed_during(self, name, start, end):
        with self.lock:
            return any(start <= k + 0.2 and end >= k for k, _ in self.kills[name])

    def check_answer(self, name, method, path, expect, start, end, status, headers, body,
                     burst=False):
        route = f"{method} {path}" + (" (burst)" if burst else "")
        took = end - start
        self.record(route, status, took)
        if self.password.encode() in body:
            self.broken("no password in any body", f"{name} {route} answered the password",
                        end, instance=name)
            return
        if status in (502, 504):
            if status == 502 and self.killed_during(name, start, end):
                return
            self.broken("no 502/504 from nginx except from a killed worker's queue",
                        f"instance {name}: {route} -> {status} after {took:.2f}s", end, instance=name)
            return
        if path == "/health":
            # A burst client's time is the time of the 1,000 queued at once,
            # measured by one Python process reading 1,000 sockets: it must
            # be answered 200 (nginx gives up after 3 s), while the steady
            # clients, still running, hold /health to HEALTH_LIMIT_S.
            if status != 200 or (took > HEALTH_LIMIT_S and not burst):
                self.broken(f"every /health answer is 200 within {HEALTH_LIMIT_S:g} s",
                            f"instance {name}: {route} -> {status} after {took:.2f}s", end, instance=name)
            elif method == "HEAD" and body:
                self.broken("HEAD has no body", f"instance {name}: {len(body)} bytes", end, instance=name)
            return
        if path == "/health/db":
            limit = HEALTH_TIMEOUT_MS / 1000 + HEALTH_DB_SLACK_S
            if took > limit:
                self.broken(f"every /health/db answer within {limit:g} s",
                            f"instance {name}: {status} after {took:.2f}s", end, instance=name)
                return
            if status == 200:
                return
            cat = self.well_formed_503(name, status, headers, body, end)
            if cat is None:
                return
            allowed = self.allowed_categories(name, start, end)
            if cat not in allowed:
                self.broken("a /health/db 503's category matches a fault in force",
                            f"instance {name}: 503 {cat!r} after {took:.2f}s; the faults "
                            f"in force (or within {GRACE_S:g} s) allow {sorted(allowed)}",
                            end, instance=name)
            return
        if status != expect:
            self.broken(f"{route} answers {expect}",
                        f"instance {name}: {status} after {took:.2f}s: {body[:200]!r}", end, instance=name)

    def well_formed_503(self, name, status, headers, body, when):
        if status != 503:
            self.broken("/health/db answers 200 or 503",
                        f"instance {name}: {status}: {body[:200]!r}", when, instance=name)
            return None
        try:
            doc = json.loads(body)
            cat = doc["output"]
            assert doc["status"] == "fail" and isinstance(cat, str)
            assert int(headers.get("retry-after", "x")) >= 1
        except (ValueError, KeyError, AssertionError, TypeError) as exc:
            self.broken("a /health/db 503 is well formed (status fail, output, "
                        "Retry-After)", f"instance {name}: {exc!r}: {headers} {body[:300]!r}",
                        when, instance=name)
            return None
        return cat

    def load_thread(self, name, rng):
        web = self.web[name]
        nxt = now()
        while not self.stop_load.is_set():
            method, path, expect = rng.choice(ROUTES)
            start = now()
            try:
                status, headers, body = http_get(web.port, method, path, timeout=10.0)
            except (OSError, http.client.HTTPException) as exc:
                self.broken("every request is answered", instance=name, detail=
                            f"instance {name}: {method} {path}: {exc!r} after "
                            f"{now() - start:.2f}s")
                return
            self.check_answer(name, method, path, expect, start, now(), status, headers,
                              body)
            nxt += LOAD_PERIOD_S
            self.stop_load.wait(max(0.0, nxt - now()))
            if nxt < now() - 1.0:
                nxt = now()

    # -- hostile FastCGI input, straight to the app's socket
    def hostile_cases(self):
        huge_name = hostile.struct.pack("!IB", 0x7fffffff | 0x80000000, 1) + b"AAAA"
        bad_version = bytearray(hostile.request_bytes())
        bad_version[0] = 2
        return [
            ("random bytes", lambda r: bytes([r.choice(range(2, 256))])
             + r.randbytes(r.randrange(1, 4096)), None),
            ("unknown version", lambda r: bytes(bad_version), None),
            ("name length 0x7fffffff", lambda r: hostile.begin()
             + hostile.params_records(huge_name)
             + hostile.fcgi_record(hostile.FCGI_STDIN, b""), 431),
            ("10000 params", lambda r: hostile.request_bytes(
                **{f"HTTP_X_P{i}": "v" for i in range(10000)}), 431),
            ("1 MiB URI", lambda r: hostile.request_bytes("/health?" + "a" * (1 << 20)), 414),
            ("truncated request", lambda r: hostile.request_bytes()[:20], None),
        ]

    def hostile_thread(self, rng):
        cases = self.hostile_cases()
        while self.sleep(rng.uniform(0.5, 2.0), self.stop_load):
            name = rng.choice(sorted(INSTANCES))
            label, make, want = rng.choice(cases)
            data = make(rng)
            start = now()
            try:
                got, how, took = hostile.exchange(self.srv[name].socket, data, timeout=15.0,
                                                  shut=label == "truncated request")
            except OSError as exc:
                self.broken("hostile input is refused and the connection closed",
                            f"instance {name}, {label}: {exc!r}", start)
                return
            self.stats["hostile"] += 1
            if how == "timeout":
                self.broken("hostile input is refused and the connection closed",
                            f"instance {name}, {label}: still open after {took:.1f}s")
                return
            if want is not None:
                try:
                    status, _, _ = hostile.response_of(got)
                except AssertionError as exc:
                    self.broken("hostile input gets a well-formed refusal",
                                f"instance {name}, {label}: {exc}")
                    return
                if status != want:
                    self.broken("hostile input gets its refusal",
                                f"instance {name}, {label}: {status}, expected {want}")
                    return

    # -- samplers
    def sampler_thread(self):
        roles = [ROLES[n] for n in "ABC"]
        while not self.stop_load.is_set():
            t = now()
            table = proc_table()
            pm, pm_ns = self.postmasters()
            counts, orphans = backends(table, pm, roles, pm)
            counts_ns, orphans_ns = backends(table, pm_ns, ["app"], self.srv["D"].pid)
            counts.update(counts_ns)
            wall = time.time()
            for p in orphans + orphans_ns:
                self.orphans.setdefault(p, wall)
            for n in INSTANCES:
                c = len(counts.get(ROLES[n], []))
                if c > self.peak[n]:
                    self.peak[n], self.peak_at[n] = c, self.t(t)
                if c > self.bounds[n]:
                    self.broken("backends of an instance's role ≤ its bound at every sample",
                                f"instance {n}: {c} backends of {ROLES[n]} "
                                f"{counts[ROLES[n]]}, bound {self.bounds[n]}", t)
                    return
            self.check_zombies(table, t)
            self.check_worker_deaths()
            self.stop_load.wait(0.2)

    def watched_parents(self):
        pids = [self.srv[n].pid for n in INSTANCES] + [self.web[n].proc.pid for n in INSTANCES]
        if self.bouncer.proc:
            pids.append(self.bouncer.proc.pid)
        return set(pids)

    def check_zombies(self, table, t):
        parents = self.watched_parents()
        seen = set()
        for pid, (st, ppid) in table.items():
            if st == "Z" and ppid in parents:
                seen.add(pid)
                first = self.zombies.setdefault(pid, t)
                if t - first > ZOMBIE_S:
                    self.broken("no zombie", f"pid {pid} (child of {ppid}) a zombie for "
                                f"{t - first:.1f}s", t)
        for pid in list(self.zombies):
            if pid not in seen:
                del self.zombies[pid]

    def check_worker_deaths(self):
        for n in INSTANCES:
            with open(self.srv[n].stderr_path, "rb") as f:
                f.seek(self.log_offsets[n])
                new = f.read().decode(errors="replace")
            cut = new.rfind("\n") + 1
            self.log_offsets[n] += len(new[:cut].encode())
            for m in re.finditer(r"worker died worker_pid=(\d+) .*?(signal=\d+|exit_status=\d+)",
                                 new[:cut]):
                pid = int(m.group(1))
                if pid in self.killed_pids and m.group(2) == "signal=9":
                    continue
                self.broken("no worker dies unless the soak killed it",
                            f"instance {n}: {m.group(0)}")

    # -- faults
    def begin_fault(self, kind, group, instances, allowed, detail=""):
        f = Fault(kind, group, instances, allowed, detail)
        f.start = now()
        with self.lock:
            self.faults.append(f)
        return f

    def end_fault(self, f):
        f.end = now()
        self.last_clear = f.end

    def psql(self, sql):
        return self.db.psql(sql, timeout=30)

    def run_group(self, group, kinds, fire):
        rng = random.Random(f"{self.seed}:{group}")
        order = []
        while not self.stop_faults.is_set():
            if not order:
                order = list(kinds)
                rng.shuffle(order)
            kind = order.pop()
            gap, duration = rng.uniform(3.0, 12.0), rng.uniform(1.5, 5.0)
            pick = rng.random()
            if not self.sleep(gap) or now() + duration + 3 > self.fault_deadline:
                return
            try:
                fire(kind, duration, pick)
            except Exception as exc:  # noqa: BLE001 - a fault that cannot be injected
                self.broken("faults can be injected and cleared",
                            f"{group}/{kind}: {exc!r}\n{traceback.format_exc()}")
                return

    def fire_pg(self, kind, duration, pick):
        inst = ("A", "B", "C")
        if kind == "pg_restart_fast":
            f = self.begin_fault(kind, "pg", inst, DOWN)
            try:
                self.db.restart()
            finally:
                self.end_fault(f)
        elif kind == "pg_restart_immediate":
            f = self.begin_fault(kind, "pg", inst, DOWN)
            try:
                r = harness.run_command(
                    ["runuser", "-u", "postgres", "--", netns.pgbin() / "pg_ctl", "stop",
                     "-m", "immediate", "-w", "-t", "30", "-D", self.db_data],
                    {"PATH": CLEAN_PATH}, "/", 40)
                if r.rc != 0:
                    raise RuntimeError(r.describe(limit=500))
                self.sleep(min(duration, 2.0), threading.Event())
                self.db.start()
            finally:
                self.end_fault(f)
        elif kind == "pg_sigstop":
            pm, _ = self.postmasters()
            if pm is None:
                return
            pids = [pm, *harness.children_of(pm)]
            f = self.begin_fault(kind, "pg", inst, SLOW, f"{len(pids)} processes")
            try:
                for p in pids:
                    harness.kill_quietly(p, signal.SIGSTOP)
                self.sleep(duration, threading.Event())
            finally:
                for p in reversed(pids):
                    harness.kill_quietly(p, signal.SIGCONT)
                self.end_fault(f)
        elif kind == "pg_terminate":
            f = self.begin_fault(kind, "pg", inst, DOWN)
            try:
                roles = ",".join(f"'{ROLES[n]}'" for n in inst)
                n = self.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              f"WHERE usename IN ({roles})").strip()
                f.detail = f"{n} backends"
                self.sleep(0.5, threading.Event())
            finally:
                self.end_fault(f)

    def fire_bouncer(self, kind, duration, pick):
        f = self.begin_fault(kind, "bouncer", ("B",), DOWN)
        try:
            self.bouncer.restart()
        finally:
            self.end_fault(f)

    def fire_neon(self, kind, duration, pick):
        if kind == "neon_suspend":
            f = self.begin_fault(kind, "neon", ("C",), DOWN)
            try:
                self.proxy.suspend()
                self.sleep(duration, threading.Event())
                self.proxy.wake()
            finally:
                self.end_fault(f)
        else:
            modes = sorted(NEON_ERRORS)
            mode = modes[int(pick * len(modes))]
            f = self.begin_fault(kind, "neon", ("C",), SLOW | {NEON_ERRORS[mode]}, mode)
            try:
                self.proxy.set_error(mode)
                self.sleep(duration, threading.Event())
            finally:
                self.proxy.set_error(None)
                self.end_fault(f)

    def fire_net(self, kind, duration, pick):
        self.ns.check_route()
        f = self.begin_fault(kind, "net", ("D",), SLOW)
        try:
            self.ns.blackhole()
            self.sleep(duration, threading.Event())
        finally:
            self.ns.unblock()
            self.end_fault(f)

    def fire_app(self, kind, duration, pick):
        names = sorted(INSTANCES)
        name = names[int(pick * len(names))]
        srv = self.srv[name]
        if kind == "kill_worker":
            workers = srv.workers()
            if not workers:
                return
            victim = workers[int(pick * 1000) % len(workers)]
            f = self.begin_fault(kind, "app", (name,), (), f"pid {victim}")
            with self.lock:
                self.kills[name].append((now(), victim))
                self.killed_pids.add(victim)
            os.kill(victim, signal.SIGKILL)
            try:
                wait_until(lambda: len(srv.workers()) == INSTANCES[name][0]
                           and victim not in srv.workers(), 15.0,
                           what=f"instance {name}'s killed worker respawned")
            except AssertionError as exc:
                self.broken("a killed worker is respawned", str(exc))
            self.end_fault(f)
        elif kind in ("sighup_valid", "sighup_invalid"):
            env = self.envfiles[name]
            mark = srv.log_mark()
            f = self.begin_fault(kind, "app", (name,), ())
            try:
                if kind == "sighup_valid":
                    value = 1000 + int(pick * 1000)
                    env.write_text(f"SLOW_REQUEST_MS={value}\n")
                    srv.send_signal(signal.SIGHUP)
                    pat = r"reloaded workers="
                else:
                    env.write_text("SLOW_REQUEST_MS=banana\n")
                    srv.send_signal(signal.SIGHUP)
                    pat = r"reload refused: keeping the running configuration"
                rx = re.compile(pat)
                try:
                    wait_until(lambda: rx.search(srv.log()[mark:]), 15.0, what=pat)
                except AssertionError:
                    self.broken("SIGHUP reloads a valid env file and refuses an invalid one",
                                f"instance {name}, {kind}: no {pat!r} in its log")
                    return
                if not srv.running():
                    self.broken("the master survives SIGHUP", f"instance {name} exited")
            finally:
                if kind == "sighup_invalid":
                    env.write_text("SLOW_REQUEST_MS=1000\n")
                self.end_fault(f)
        elif kind == "silent_burst":
            f = self.begin_fault(kind, "app", (name,), (), "50 connections")
            socks = []
            try:
                for _ in range(50):
                    socks.append(hostile.connect(srv.socket))
                self.stats["silent"] += len(socks)
                deadline = f.start + hostile.FIRST_RECORD_TIMEOUT_S + 3.0
                for s in socks:
                    s.settimeout(max(0.1, deadline - now()))
                    try:
                        data = s.recv(1)
                    except ConnectionResetError:
                        data = b""
                    except socket.timeout:
                        self.broken("a silent connection is closed by the server",
                                    f"instance {name}: open {now() - f.start:.1f}s")
                        return
                    if data:
                        self.broken("a silent connection gets no answer",
                                    f"instance {name}: {data!r}")
                        return
            finally:
                for s in socks:
                    s.close()
                self.end_fault(f)
        elif kind == "burst_1000":
            f = self.begin_fault(kind, "app", (name,), ())
            try:
                self.burst(name, 1000)
            finally:
                self.end_fault(f)

    def burst(self, name, clients):
        port = self.web[name].port
        req = b"GET /health HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"

        async def one():
            start = now()
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
                w.write(req)
                await w.drain()
                start = now()  # the answer's time, not this process's turn to send
                data = await asyncio.wait_for(r.read(), 10)
                w.close()
            except (OSError, asyncio.TimeoutError) as exc:
                return start, now(), None, repr(exc)
            m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
            return start, now(), int(m.group(1)) if m else None, data[:100]

        async def all_of():
            return await asyncio.gather(*(one() for _ in range(clients)))

        results = asyncio.run(all_of())
        self.stats["burst_clients"] += len(results)
        for start, end, status, info in results:
            if status is None:
                self.broken("every client of a burst is answered",
                            f"instance {name}: {info}", end)
                return
            self.check_answer(name, "GET", "/health", 200, start, end, status, {}, b"",
                              burst=True)

    # -- measuring processes
    def measure(self):
        out = {}
        for label, pid in self.long_lived().items():
            if pid:
                out[label] = (pid, fd_count(pid), rss_kb(pid))
        return out

    def slots(self, name):
        srv = self.srv[name]
        body = srv.get("/metrics", timeout=10).body.decode()

        def val(metric):
            m = re.search(r"^" + re.escape(metric) + r" (\S+)$", body, re.M)
            return float(m.group(1)) if m else None
        reserved = val("neonfcgi_db_slots_reserved")
        conns = sum(val(f'neonfcgi_db_pool_connections{{state="{s}"}}') or 0
                    for s in ("idle", "in_use", "opening"))
        return reserved, conns

    # -- the run
    def run(self):
        self.t0 = now()
        end_at = self.t0 + self.seconds
        self.fault_deadline = end_at - (RECOVERY_S + 5.0)
        threads = []
        rng = random.Random(f"{self.seed}:load")
        for n in INSTANCES:
            for i in range(LOAD_THREADS):
                threads.append(self.thread(self.load_thread, n, random.Random(rng.random()),
                                           name=f"load-{n}{i}"))
        threads.append(self.thread(self.hostile_thread, random.Random(f"{self.seed}:hostile"),
                                   name="hostile"))
        threads.append(self.thread(self.sampler_thread, name="sampler"))
        for th in threads:
            th.start()
        self.stop_load.wait(WARMUP_S)
        # Warm-up ends with a burst to every instance: nginx (and the app)
        # reach the high-water mark of their connection pools before the
        # baseline of fds and RSS is taken.
        for n in INSTANCES:
            self.burst(n, 1000)
        self.check()
        self.baseline = self.measure()
        print(f"soak: warmed up at t={self.t():.1f}s; injecting faults until "
              f"t={self.fault_deadline - self.t0:.0f}s", flush=True)
        groups = [
            ("pg", ["pg_restart_fast", "pg_restart_immediate", "pg_sigstop", "pg_terminate"],
             self.fire_pg),
            ("bouncer", ["pgbouncer_restart"], self.fire_bouncer),
            ("neon", ["neon_suspend", "neon_error"], self.fire_neon),
            ("net", ["blackhole"], self.fire_net),
            ("app", ["kill_worker", "sighup_valid", "sighup_invalid", "silent_burst",
                     "burst_1000"], self.fire_app),
        ]
        fault_threads = [self.thread(self.run_group, *g, name=f"fault-{g[0]}") for g in groups]
        for th in fault_threads:
            th.start()
        next_report = now() + 60
        while now() < self.fault_deadline and not self.failure:
            time.sleep(0.2)
            if now() >= next_report:
                next_report += 60
                print(f"soak: t={self.t():.0f}s, {sum(self.requests.values())} requests, "
                      f"{len(self.faults)} faults", flush=True)
        self.stop_faults.set()
        for th in fault_threads:
            th.join(90)
            if th.is_alive():
                self.broken("faults clear", f"{th.name} still running 90 s after the end")
        self.check()
        # After the last fault: /health/db passes within RECOVERY_S, and stays so.
        cleared = self.last_clear or self.fault_deadline
        for n in INSTANCES:
            def ok(n=n):
                try:
                    return http_get(self.web[n].port, "GET", "/health/db", 5.0)[0] == 200
                except OSError:
                    return False
            deadline = cleared + RECOVERY_S
            while not ok():
                if now() > deadline:
                    self.broken(f"/health/db passes within {RECOVERY_S:g} s of the last fault",
                                f"instance {n} still failing {now() - cleared:.1f}s after")
                    break
                self.check()
                time.sleep(0.1)
        while now() < end_at and not self.failure:
            time.sleep(0.2)
        self.stop_load.set()
        for th in threads:
            th.join(30)
        self.check()
        self.after_run()

    def after_run(self):
        # Nothing in flight: every slot reserved is a connection open.
        for n in INSTANCES:
            def settled(n=n):
                reserved, conns = self.slots(n)
                return reserved is not None and reserved == conns and reserved <= self.bounds[n]
            try:
                wait_until(settled, 10.0, what="slots to match connections")
            except AssertionError:
                reserved, conns = self.slots(n)
                self.broken("no leaked shared-memory slot",
                            f"instance {n}: {reserved} slots reserved, {conns} connections, "
                            f"bound {self.bounds[n]}")
        self.check()
        # fds back to their warm-up level (connections wind down: wait a bit).
        def fds_back():
            now_m = self.measure()
            return all(lbl not in now_m or now_m[lbl][0] != pid or now_m[lbl][1] <= fd
                       for lbl, (pid, fd, _) in self.baseline.items())
        with contextlib.suppress(AssertionError):
            wait_until(fds_back, 10.0)
        self.final = self.measure()
        minutes = max(self.seconds, 600) / 600
        for lbl, (pid, fd, rss) in self.baseline.items():
            if lbl not in self.final or self.final[lbl][0] != pid:
                continue  # a different process now (only workers get replaced)
            _, fd2, rss2 = self.final[lbl]
            if fd2 > fd:
                self.broken("open fds back to their warm-up level",
                            f"{lbl} (pid {pid}): {fd} fds after warm-up, {fd2} now")
            # nginx's worker keeps what a 1,000-client burst made it allocate
            # (connections, buffers, malloc arenas): its RSS is a high-water
            # mark that each burst may raise, not a leak signal; reported only.
            # Under AddressSanitizer freed memory waits in its quarantine (up
            # to 256 MiB) before reuse, so RSS grows without a leak; there
            # LeakSanitizer checks the master when it exits (the clean stop
            # wants exit 0) instead.
            if SAN and lbl.startswith("neonfcgi"):
                continue
            if (not lbl.startswith("nginx") and rss and rss2
                    and rss2 > rss * (1 + RSS_GROWTH * minutes)):
                self.broken(f"RSS grows under {RSS_GROWTH:.0%} per 10 minutes",
                            f"{lbl} (pid {pid}): {rss} KiB after warm-up, {rss2} KiB now")
        table = proc_table()
        zombies = [(p, pp) for p, (st, pp) in table.items()
                   if st == "Z" and pp in self.watched_parents()]
        if zombies:
            self.broken("no zombie at the end", f"{zombies}")
        self.check()

    def replay_logs(self):
        """PostgreSQL's connection logs, replayed: peak backends per role."""
        out = {}
        texts = {"dev": self.db_log.read_text(errors="replace")}
        RECORD.add("soak dev db log", texts["dev"])
        texts["ns"] = self.ns.log()
        for n in INSTANCES:
            text = texts["ns" if n == "D" else "dev"]
            steps, opened = replay(text, user=ROLES[n], gone=self.orphans)
            peak = max((live for _, live in steps), default=0)
            out[n] = (peak, opened)
            if peak > self.bounds[n]:
                line = next(i for i, live in steps if live == peak)
                lines = text.splitlines()
                excerpt = "\n    ".join(lines[max(0, line - 15):line])
                self.broken("backends of an instance's role ≤ its bound in the replay of "
                            "PostgreSQL's connection log",
                            f"instance {n}: {peak} at log line {line}, bound "
                            f"{self.bounds[n]}:\n    {excerpt}")
        return out

    def stop_servers(self):
        for n in INSTANCES:
            srv = self.srv[n]
            sock = srv.socket
            try:
                srv.stop(timeout=20.0)
            except AssertionError as exc:
                self.broken("a clean stop (exit 0, unix socket removed, no worker left)",
                            f"instance {n}: {exc}")
            if os.path.lexists(sock):
                self.broken("the unix socket is removed on stop", f"instance {n}: {sock}")

    # -- summary
    def summary(self, replayed):
        lines = ["", f"== soak summary: seed {self.seed}, {self.seconds:g} s "
                     f"({'PASSED' if not self.failure else 'FAILED'})", "", "faults injected:"]
        kinds = {}
        for f in self.faults:
            k = f.kind + (f"({f.detail})" if f.kind == "neon_error" else "")
            kinds[k] = kinds.get(k, 0) + 1
        for k in sorted(kinds):
            lines.append(f"  {k:<42} {kinds[k]:>5}")
        lines.append(f"  {'total':<42} {len(self.faults):>5}")
        lines += ["", "requests (route, status):"]
        for (route, status), c in sorted(self.requests.items()):
            lines.append(f"  {route:<30} {status:>4} {c:>8}")
        lines.append(f"  hostile FastCGI exchanges {self.stats['hostile']}, silent connections "
                     f"{self.stats['silent']}, burst clients {self.stats['burst_clients']}")
        lines += ["", "slowest answer per route:"]
        for route, (s, at) in sorted(self.slowest.items()):
            lines.append(f"  {route:<30} {s * 1000:8.1f} ms at t={at:.1f}s")
        lines += ["", "backends vs bound (peak sampled / peak in log replay / connections "
                      "opened):"]
        for n in INSTANCES:
            rp, op = replayed.get(n, ("?", "?"))
            lines.append(f"  {n} {ROLES[n]:<7} sampled {self.peak[n]:>3}  replay {rp!s:>3}  "
                         f"bound {self.bounds[n]:>3}  opened {op}")
        recycled = self.recycled
        lines.append(f"  workers recycled by MAX_REQUESTS: {recycled}")
        lines += ["", "fds and RSS (after warm-up -> end):"]
        for lbl, (pid, fd, rss) in sorted(self.baseline.items()):
            f2 = self.final.get(lbl)
            if f2 and f2[0] == pid:
                lines.append(f"  {lbl:<24} pid {pid:>7}  fds {fd:>4} -> {f2[1]:<4} "
                             f"RSS {rss} -> {f2[2]} KiB")
        return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float,
                    default=float(os.environ.get("SOAK_SECONDS") or 600))
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed
    if seed is None and os.environ.get("SOAK_SEED"):
        seed = int(os.environ["SOAK_SEED"])
    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    if args.seconds < 45:
        print("soak: --seconds must be at least 45", file=sys.stderr)
        return 64
    if os.geteuid() != 0:
        print("soak: run as root (network namespaces, the postgres user)", file=sys.stderr)
        return 2
    binary = os.environ.get("NEONFCGI_BIN") or str(REPO / "build" / "neonfcgi")
    if not os.access(binary, os.X_OK):
        print(f"soak: no executable neonfcgi at {binary}", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    print(f"soak: seed {seed} (SOAK_SEED={seed} replays this schedule), {args.seconds:g} s, "
          f"binary {binary}", flush=True)
    soak = Soak(args.seconds, seed, binary)

    def interrupted(sig, frame):
        soak.broken("not interrupted", f"signal {sig}")
        raise KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)

    replayed, rc = {}, 0
    try:
        try:
            soak.setup()
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
            print(f"soak: set-up failed: {exc!r}\n{traceback.format_exc()}", file=sys.stderr)
            return 2
        try:
            soak.run()
        except (Broken, KeyboardInterrupt):
            pass
        finally:
            soak.stop_load.set()
            soak.stop_faults.set()
            # Whatever happened: no stopped server, no blackhole, no error mode.
            pm, _ = soak.postmasters()
            if pm:
                for p in [pm, *harness.children_of(pm)]:
                    harness.kill_quietly(p, signal.SIGCONT)
            with contextlib.suppress(Exception):
                soak.proxy.set_error(None)
            with contextlib.suppress(Exception):
                soak.ns.unblock()
        if not soak.failure:
            soak.stop_servers()
        if not soak.failure:
            replayed = soak.replay_logs()
    finally:
        soak.recycled = {}
        for n, srv in soak.srv.items():
            with contextlib.suppress(OSError):
                soak.recycled[n] = srv.log().count("worker recycling")
        with contextlib.suppress(Exception):
            soak.stack.close()
        shutil.rmtree(soak.tmp, ignore_errors=True)
    leaks = RECORD.containing(soak.password) if getattr(soak, "password", None) else []
    if leaks and not soak.failure:
        soak.broken("no password in any captured log or body", f"found in: {leaks}")
    print(soak.summary(replayed), flush=True)
    if soak.failure:
        print("\n" + soak.failure, flush=True)
        rc = 1
    else:
        print("\nsoak: every invariant held", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
