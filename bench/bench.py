#!/usr/bin/python3
"""`make bench`: neonfcgi against its floors, all through one nginx, against a
throwaway PostgreSQL with TLS and scram (scripts/dev-db.sh), load from wrk.

Rows (one nginx server block each, access_log off):
  nginx-return      nginx answering `return 200` itself: the ceiling
  fcgi-floor        bare libfcgi responder, WORKERS processes: FastCGI's floor;
                    once more with libfcgi's close-time poll disabled
                    (LIBFCGI_OS_CLOSE_POLL_TIMEOUT=0, "poll=0")
  fcgi-db-floor     the same plus one libpq connection per process and SELECT 1
                    per request, with as many processes as the product may hold
                    database connections (and once with WORKERS processes, for
                    the memory comparison)
  ... SCHED_BATCH   both floors once more at c=128 under `chrt --batch`, the
                    policy the product's request threads take: how much of the
                    product's lead is that policy
  pgbench-select1   pgbench -f select1.sql over TLS, one client per product
                    connection: the database's own ceiling
  neonfcgi ...      /health and /health/db with the defaults, and with nginx's
                    fastcgi_keep_conn + upstream keepalive, in two rows: keepalive
                    = the product's threads / 2 (BENCH_KEEPALIVE, the row earlier
                    runs had) and keepalive 32, the value nginx tuning guides
                    give (BENCH_KEEPALIVE_GUIDE, a second row, not a new default)
Then a WORKERS x WORKER_THREADS sweep on /health/db at c=128, and /health/db
through bench/delay-relay (2 ms each way) against the bound connections / RTT,
with the defaults and with WORKER_THREADS=1. Then what probes cost (issue 18,
phase "probes"): /health/db through the relay at 10 ms each way with
WORKER_THREADS=16, a flood at c=1000 and a cell at c=256, counting the SELECT 1s
(the app database's xact_commit delta in pg_stat_database) and the checks in
flight (round trips at the relay, 'active' backends in pg_stat_activity every
10 ms), against WORKERS and 0.5 x WORKERS x WORKER_THREADS / RTT. Last, the
scoreboard's cost on
/health: the product against build/bench/neonfcgi-nosb (the same objects with
the scoreboard's per-request and per-accept work linked out: the request
counters, the busy-thread gauge and the listen-queue sampling, see
bench/scoreboard-off.c), in interleaved pairs at c=128, and the share of the
request threads' instructions spent in that work under callgrind.

Prints Markdown tables and writes them to bench/results/bench-<time>.md and
bench/results/latest.md. Every server it starts is stopped at the end, also on
Ctrl-C or failure; its temporary directory is removed.

Environment (all optional):
  BENCH_DURATION=4  BENCH_WARMUP=2   seconds per cell, measured and warm-up
  BENCH_ROUNDS=2                     rounds of the floor/product comparisons
  BENCH_NGINX_WORKERS=1              nginx worker_processes
  BENCH_KEEPALIVE=N                  upstream keepalive of the keep-conn rows
                                     (default: the product's threads / 2 per
                                     nginx worker)
  BENCH_KEEPALIVE_GUIDE=32           upstream keepalive of the second keep-conn
                                     rows
  BENCH_RELAY_DELAY_US=2000          one-way delay of the relay
  BENCH_PROBES_DELAY_US=10000        one-way delay of the relay, probes phase
  BENCH_PROBES_THREADS=16            WORKER_THREADS of the probes phase
  BENCH_FLOOD_C=1000                 concurrency of the probes phase's flood
  BENCH_BASELINE=FILE                an earlier run's .md to compare /health
                                     with (default: the newest bench-*.md in
                                     bench/results with /health rows)
  BENCH_BASELINE_NOISE=5             the noise allowed in that comparison, %
  BENCH_MAX_NOISE=15 BENCH_MAX_ATTEMPTS=3 BENCH_RETRY_BUDGET=90
                                     re-measure a cell while other processes
                                     used more than 15 % of the CPUs during it
  BENCH_SB_ROUNDS=10                 pairs in the scoreboard A/B
  BENCH_CALLGRIND_REQUESTS=2000      /health requests counted under callgrind
  BENCH_PHASES=main,sweep,relay,probes,scoreboard
                                     which parts to run
  NEONFCGI_BIN, BENCH_BIN_DIR        binaries (the Makefile sets them)
"""
import http.client
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEONFCGI = Path(os.environ.get("NEONFCGI_BIN", ROOT / "build/neonfcgi"))
BINDIR = Path(os.environ.get("BENCH_BIN_DIR", ROOT / "build/bench"))
NOSB = BINDIR / "neonfcgi-nosb"
DEVDB = ROOT / "scripts/dev-db.sh"
RESULTS = ROOT / "bench/results"

DURATION = float(os.environ.get("BENCH_DURATION", "4"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "2"))
NGINX_WORKERS = int(os.environ.get("BENCH_NGINX_WORKERS", "1"))
RELAY_DELAY_US = int(os.environ.get("BENCH_RELAY_DELAY_US", "2000"))
# The second keep-conn row: the upstream keepalive nginx tuning guides give.
KEEPALIVE_GUIDE = int(os.environ.get("BENCH_KEEPALIVE_GUIDE", "32"))
# Issue 18, "what probes cost": /health/db through the relay at a longer
# delay, more threads than connections, and a flood.
PROBES_DELAY_US = int(os.environ.get("BENCH_PROBES_DELAY_US", "10000"))
PROBES_THREADS = int(os.environ.get("BENCH_PROBES_THREADS", "16"))
PROBES_C = 256
FLOOD_C = int(os.environ.get("BENCH_FLOOD_C", "1000"))
PROBES_SAMPLE_S = 0.01  # pg_stat_activity sampling during the probes phase
SELECTS_PER_REQ_MAX = 0.15  # issue 18: SELECT 1s ≤ 0.15 × requests answered
KC_P99_MAX = 1.5     # issue 18: keep-conn p99 ≤ 1.5× the p99 without
DB_LEAD = 1.2        # issue 18: /health/db ≥ 1.2× fcgi-db-floor req/s
# "/health no worse than before": the ratios against the floor, compared with
# the last full run's within this many percent (README: the noise is ±5 %).
BASELINE = os.environ.get("BENCH_BASELINE")
BASELINE_NOISE_PCT = float(os.environ.get("BENCH_BASELINE_NOISE", "5"))
# A cell during which processes outside the bench used more than MAX_NOISE % of
# the machine is measured again (at most MAX_ATTEMPTS times, RETRY_BUDGET_S in
# all, so `make bench` stays within about 10 minutes); the quietest attempt is
# kept and a cell still above the limit is marked.
MAX_NOISE = float(os.environ.get("BENCH_MAX_NOISE", "15"))
MAX_ATTEMPTS = int(os.environ.get("BENCH_MAX_ATTEMPTS", "3"))
RETRY_BUDGET_S = float(os.environ.get("BENCH_RETRY_BUDGET", "90"))
# The floor/product comparisons are measured ROUNDS times, interleaved, and
# each cell reported as the median: one 5 s cell on a shared 2-CPU machine
# varies by ±10 %, the size of the margins the targets ask about.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
PHASES = set(os.environ.get("BENCH_PHASES", "main,sweep,relay,probes,scoreboard").split(","))
SB_ROUNDS = int(os.environ.get("BENCH_SB_ROUNDS", "10"))
SB_C = 128
SB_TARGET = 0.97  # issues 4 and 14: /health with the scoreboard within 3 % of without
CG_REQUESTS = int(os.environ.get("BENCH_CALLGRIND_REQUESTS", "2000"))
CONCS = (16, 128, 256)
MAX_C = 1024  # product rows only
SWEEP_C = 128
SWEEP_WORKERS = (1, 2, 4)
SWEEP_THREADS = (1, 4, 16)
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
SAMPLE_S = 0.1
# The contract's defaults, used to size the floors when the product cannot
# tell us its own (not built yet).
CONTRACT_DEFAULTS = {"WORKERS": str(NCPU), "WORKER_THREADS": "4", "DB_POOL_SIZE": "2",
                     "DB_MAX_OVERFLOW": "2"}

T_START = time.monotonic()
STARTED = []  # servers to stop, most recent last


def say(msg):
    print(f"bench: [{time.monotonic() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


class Fatal(Exception):
    pass


# ---------------------------------------------------------------- processes

class Server:
    """A server the bench started, in its own session: a Ctrl-C on the terminal
    reaches only the bench, which then stops its servers in order."""

    def __init__(self, name, argv, log, env=None, cwd=None, stdout=None):
        self.name = name
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=stdout or self.log, stderr=self.log,
                                     env=env, cwd=cwd, start_new_session=True)
        STARTED.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.alive():
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                say(f"{self.name} (pid {self.pid}) still running after {timeout} s: killing it")
                os.killpg(self.pid, signal.SIGKILL)  # its own session: only what it forked
                self.proc.wait()
        self.log.close()
        if self in STARTED:
            STARTED.remove(self)


def stop_all():
    for srv in reversed(list(STARTED)):
        try:
            srv.stop()
        except Exception as e:  # keep stopping the others
            say(f"stopping {srv.name}: {e}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def wait_http(url, server, deadline_s=15.0):
    """Bounded wait until url answers anything; the status, or None."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not server.alive():
            return None
        st = http_status(url)
        if st is not None and st != 502:
            return st
        time.sleep(0.1)
    return None


# ---------------------------------------------------------- /proc accounting

def proc_table():
    """pid -> (ppid, utime+stime+cutime+cstime ticks) for every process."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        table[int(d)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    return table


def tree_pids(root, table):
    kids = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in table:
            out.append(p)
            todo.extend(kids.get(p, []))
    return out


def tree_cpu_us(root, table):
    """CPU of a process tree, exited children included: the root's cutime holds
    what it reaped, live descendants count themselves (no double counting)."""
    if root is None:
        return None
    return sum(table[p][1] for p in tree_pids(root, table)) * 1e6 / CLK_TCK


def tree_mem_kb(root):
    rss = pss = 0
    for pid in tree_pids(root, proc_table()):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / CLK_TCK


def own_children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    s = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime + s.ru_utime + s.ru_stime


# --------------------------------------------------------------- PostgreSQL

class Database:
    def __init__(self, tmp):
        self.env = dict(os.environ, DEV_DB_DIR=str(tmp / "db"),
                        DEV_DB_EXTRA_CONF="log_connections=on\nmax_connections=200")
        self.started = False

    def start(self):
        self.started = True
        out = subprocess.run([str(DEVDB), "start"], env=self.env, capture_output=True,
                             text=True, timeout=90)
        if out.returncode != 0:
            raise Fatal(f"scripts/dev-db.sh start failed:\n{out.stderr}")
        self.url = out.stdout.strip().splitlines()[-1]
        self.port = int(self._devdb("port"))
        self.pid = int(self._devdb("pid"))
        self.log = Path(self._devdb("dir")) / "postgres.log"

    def _devdb(self, cmd):
        return subprocess.run([str(DEVDB), cmd], env=self.env, capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    def url_for(self, appname, port=None):
        """The URL with application_name set (so the sampler and the log can
        tell servers apart) and optionally another port (the relay)."""
        url = self.url.replace(f"127.0.0.1:{self.port}/", f"127.0.0.1:{port or self.port}/")
        return f"{url}&application_name={appname}"

    def log_offset(self):
        return self.log.stat().st_size

    def new_connections(self, start, end, appname):
        """`log_connections` lines of one application written between two offsets."""
        with open(self.log, "rb") as f:
            f.seek(start)
            chunk = f.read(end - start)
        return chunk.count(f"user=app database=app application_name={appname} ".encode())

    def stop(self):
        if self.started:
            subprocess.run([str(DEVDB), "stop"], env=self.env, timeout=60)
            self.started = False


class BackendSampler(threading.Thread):
    """Counts the app role's backends in pg_stat_activity every `interval`
    seconds (100 ms; 10 ms in the probes phase), per application_name (each
    server the bench starts has its own), and how many of them are 'active'
    (executing a statement), over one persistent psql session: a connection
    per sample would be churn itself. The session is the superuser's on the
    database `postgres`, so its own transactions never count in the app
    database's pg_stat_database, and it leaves itself out of the counts."""
    QUERY = ("SELECT application_name, count(*), count(*) FILTER (WHERE state = 'active') "
             "FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend' "
             "AND pid <> pg_backend_pid() GROUP BY 1;")

    def __init__(self, db):
        super().__init__(daemon=True)
        self.psql = subprocess.Popen([str(DEVDB), "psql", "-A", "-t", "-q"], env=db.env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.samples = []  # (time, {application_name: (backends, active)})
        self.lock = threading.Lock()
        self.io = threading.Lock()  # one statement at a time on the session
        self.stopping = threading.Event()
        self.interval = SAMPLE_S

    def _lines(self, sql):
        with self.io:
            self.psql.stdin.write(sql + "\n\\echo __end__\n")
            self.psql.stdin.flush()
            out = []
            for line in self.psql.stdout:
                line = line.strip()
                if line == "__end__":
                    return out
                out.append(line)
        raise OSError("psql went away")

    def _sample(self):
        counts = {}
        for line in self._lines(self.QUERY):
            if "|" in line:
                name, n, active = line.rsplit("|", 2)
                counts[name] = (int(n), int(active))
        return counts

    def scalar(self, sql):
        """One value from the sampler's session (on the database postgres)."""
        lines = [x for x in self._lines(sql) if x]
        return int(lines[0]) if lines and lines[0].lstrip("-").isdigit() else None

    def xact_commit(self, datname="app"):
        """Committed transactions of one database, as far as its backends have
        flushed them: PostgreSQL 15 does so at most once a second while busy,
        and at once when a backend exits; the product's idle backends were seen
        to keep theirs pending for 13 s and more, so only an exit is a sure
        edge."""
        return self.scalar("SELECT xact_commit FROM pg_stat_database "
                           f"WHERE datname = '{datname}';")

    def run(self):
        while not self.stopping.is_set():
            try:
                counts = self._sample()
            except (OSError, ValueError):
                return
            with self.lock:
                self.samples.append((time.monotonic(), counts))
            self.stopping.wait(self.interval)

    def max_between(self, t0, t1, appname, active=False):
        """The most backends (or active ones) sampled between t0 and t1."""
        with self.lock:
            vals = [c.get(appname, (0, 0))[int(active)] for t, c in self.samples
                    if t0 <= t <= t1]
        return max(vals) if vals else None

    def samples_between(self, t0, t1):
        with self.lock:
            return sum(1 for t, _ in self.samples if t0 <= t <= t1)

    def stop(self):
        self.stopping.set()
        try:
            self.psql.stdin.close()
            self.psql.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.psql.kill()


# -------------------------------------------------------------------- nginx

FASTCGI_PARAMS = """
        fastcgi_param GATEWAY_INTERFACE CGI/1.1;
        fastcgi_param SERVER_SOFTWARE   nginx/$nginx_version;
        fastcgi_param REQUEST_METHOD    $request_method;
        fastcgi_param REQUEST_URI       $request_uri;
        fastcgi_param DOCUMENT_URI      $document_uri;
        fastcgi_param SCRIPT_NAME       $fastcgi_script_name;
        fastcgi_param PATH_INFO         $fastcgi_path_info;
        fastcgi_param QUERY_STRING      $query_string;
        fastcgi_param CONTENT_TYPE      $content_type;
        fastcgi_param CONTENT_LENGTH    $content_length;
        fastcgi_param SERVER_PROTOCOL   $server_protocol;
        fastcgi_param REQUEST_SCHEME    $scheme;
        fastcgi_param REMOTE_ADDR       $remote_addr;
        fastcgi_param REMOTE_PORT       $remote_port;
        fastcgi_param SERVER_ADDR       $server_addr;
        fastcgi_param SERVER_PORT       $server_port;
        fastcgi_param SERVER_NAME       $server_name;"""


class Nginx:
    """One nginx, one server block per row, sized for c=1024 (a client and an
    upstream connection per request, per worker). Every FastCGI server of the
    bench has its own unix socket and block, so several can be up at once and
    their cells interleaved; only app_kc and app_kcg keep upstream connections
    alive. keepalive: {block: upstream keepalive} for those two."""
    FCGI = ("floor", "floor_p0", "floor_b", "dbfloor", "dbfloor_b", "app", "app_kc", "app_kcg",
            "sb_on", "sb_off")

    def __init__(self, tmp, keepalive):
        self.dir = tmp / "nginx"
        self.dir.mkdir()
        self.socks = {b: tmp / f"{b}.sock" for b in self.FCGI}
        self.ports = {b: free_port() for b in ("return",) + self.FCGI}
        self.keepalive = keepalive
        (self.dir / "nginx.conf").write_text(self._conf())
        self.server = Server("nginx", ["nginx", "-p", str(self.dir), "-e",
                                       str(self.dir / "error.log"), "-c",
                                       str(self.dir / "nginx.conf")], self.dir / "stderr.log")
        deadline = time.monotonic() + 10
        while http_status(self.url("return", "/")) != 200:
            if not self.server.alive() or time.monotonic() > deadline:
                raise Fatal("nginx did not start: " + (self.dir / "error.log").read_text()[-500:])
            time.sleep(0.05)

    def url(self, block, path):
        return f"http://127.0.0.1:{self.ports[block]}{path}"

    def _server(self, block, body):
        return f"""
    server {{
        listen 127.0.0.1:{self.ports[block]} backlog=4096;
        access_log off;
        location / {{{body}
        }}
    }}"""

    def _upstream(self, block):
        keep = f"""
        keepalive {self.keepalive[block]};
        keepalive_requests 100000;""" if block in self.keepalive else ""
        return f"""
    upstream {block} {{
        server unix:{self.socks[block]};{keep}
    }}"""

    def _fcgi(self, block):
        return f"""
            fastcgi_pass {block};
            fastcgi_keep_conn {"on" if block in self.keepalive else "off"};
            fastcgi_connect_timeout 2s;
            fastcgi_read_timeout 10s;
            fastcgi_next_upstream off;{FASTCGI_PARAMS}"""

    def _conf(self):
        d = self.dir
        user = "user root;\n" if os.geteuid() == 0 else ""
        upstreams = "".join(self._upstream(b) for b in self.FCGI)
        servers = self._server("return", """
            default_type application/health+json;
            return 200 '{"status":"pass","serviceId":"nginx"}';""")
        servers += "".join(self._server(b, self._fcgi(b)) for b in self.FCGI)
        return f"""{user}daemon off;
worker_processes {NGINX_WORKERS};
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path {d}/client_body;
    fastcgi_temp_path {d}/fastcgi;
    proxy_temp_path {d}/proxy;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;{upstreams}{servers}
}}
"""


# ---------------------------------------------------------------------- wrk

def to_ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    if not m:
        return None
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def parse_wrk(out):
    def grab(pattern, conv=float):
        m = re.search(pattern, out, re.M)
        return conv(m.group(1)) if m else None
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": grab(r"^\s*(\d+) requests in", int),
        "rps": grab(r"^Requests/sec:\s+([\d.]+)"),
        "p50": grab(r"^\s+50%\s+(\S+)", to_ms),
        "p99": grab(r"^\s+99%\s+(\S+)", to_ms),
        "non2xx": grab(r"Non-2xx or 3xx responses: (\d+)", int) or 0,
        "sockerr": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def wrk(url, c, duration):
    argv = ["wrk", "-t", str(min(c, NCPU)), "-c", str(c), "-d", f"{max(1, round(duration))}s",
            "--latency", "--timeout", "5s", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0 or "Requests/sec" not in out.stdout:
        raise Fatal(f"wrk failed on {url}: {out.stderr.strip() or out.stdout.strip()}")
    return parse_wrk(out.stdout)


# -------------------------------------------------------------------- cells

class Bench:
    def __init__(self, tmp, db, sampler, nginx):
        self.tmp, self.db, self.sampler, self.nginx = tmp, db, sampler, nginx
        self.rows = []      # main table
        self.sweep = []     # sweep table
        self.relay = []     # relay table
        self.probes = []    # probes table (issue 18)
        self.sb = []        # scoreboard A/B cells, in the order measured
        self.cg = {}        # route: callgrind counts (phase_callgrind)
        self.notes = []
        self.retry_budget = RETRY_BUDGET_S
        self.warmed = set()
        # Bench helpers (relay, sampler's psql): their CPU is ours, not noise.
        self.helper_pids = [sampler.psql.pid] if sampler else []

    def _snapshot(self, app):
        table = proc_table()
        return {"app": tree_cpu_us(app.pid if app else None, table),
                "nginx": tree_cpu_us(self.nginx.server.pid, table),
                "pg": tree_cpu_us(self.db.pid, table),
                "helpers": sum(tree_cpu_us(p, table) for p in self.helper_pids),
                "log": self.db.log_offset(), "t": time.monotonic(),
                "busy": machine_busy_s(), "ours": own_children_cpu_s()}

    def measure(self, run, app, appname, alone=False, warm=True):
        """Warm-up, then measured runs of `run(duration)` until one is quiet
        enough (see MAX_NOISE); the quietest attempt's numbers."""
        # Later rounds warm up briefly too: between a server's cells the others
        # run for longer than DB_OVERFLOW_IDLE_MS, so its pool shrank (by design).
        run(WARMUP if warm else min(1.0, WARMUP))
        best, attempts = None, 0
        while True:
            t0 = time.monotonic()
            r = self._measure_once(run, app, appname, alone)
            attempts += 1
            if best is None or r["other_pct"] < best["other_pct"]:
                best = r
            if best["other_pct"] <= MAX_NOISE or attempts >= MAX_ATTEMPTS:
                break
            if self.retry_budget <= 0:
                break
            self.retry_budget -= time.monotonic() - t0
            say(f"  {r['other_pct']:.0f}% of the CPUs used by others: measuring again")
        best["attempts"] = attempts
        return best

    def _measure_once(self, run, app, appname, alone):
        """PSS splits shared pages among all processes mapping them, so it is
        only recorded when the server runs alone (alone=True)."""
        a = self._snapshot(app)
        r = run(DURATION)
        time.sleep(SAMPLE_S * 1.5)  # let the sampler see the end of the cell
        b = self._snapshot(app)
        n = r["requests"] or 0
        per_req = lambda k: (b[k] - a[k]) / n if n and a[k] is not None else None  # noqa: E731
        ours = sum((b[k] - a[k]) for k in ("app", "nginx", "pg", "helpers")
                   if a[k] is not None) / 1e6
        ours += b["ours"] - a["ours"]
        wall = b["t"] - a["t"]
        r.update(app_us=per_req("app"), nginx_us=per_req("nginx"), pg_us=per_req("pg"),
                 backends=self.sampler.max_between(a["t"], b["t"], appname),
                 active=self.sampler.max_between(a["t"], b["t"], appname, active=True),
                 samples=self.sampler.samples_between(a["t"], b["t"]),
                 new_conns=self.db.new_connections(a["log"], b["log"], appname),
                 other_pct=max(0.0, (b["busy"] - a["busy"] - ours) / (NCPU * wall) * 100))
        if app:
            rss, pss = tree_mem_kb(app.pid)
            r["rss_kb"], r["pss_kb"] = rss, pss if alone else None
        return r

    def cell(self, table, row, block, path, c, app, alone=False, **extra):
        """One cell; fully warmed up the first time this server sees this load."""
        say(f"{row} c={c}")
        url = self.nginx.url(block, path)
        key = (block, path, c, app.pid if app else None)
        warm = key not in self.warmed
        self.warmed.add(key)
        r = self.measure(lambda d: wrk(url, c, d), app, app.appname if app else None, alone,
                         warm)
        r.update(row=row, c=c, **extra)
        table.append(r)
        return r


# ------------------------------------------------------------------ servers

def start_floor(bench, block, processes, db_port=None, extra=None, wrap=()):
    """fcgi-floor, or fcgi-db-floor connecting to db_port, on block's socket;
    wrap: a command prefix that execs it."""
    binary = BINDIR / ("fcgi-db-floor" if db_port else "fcgi-floor")
    appname = f"{binary.name}-{block}"
    env = dict(os.environ, **(extra or {}))
    if db_port:
        env["DATABASE_URL"] = bench.db.url_for(appname, db_port)
    srv = Server(f"{binary.name} x{processes}", [*wrap, str(binary),
                                                 str(bench.nginx.socks[block]), str(processes)],
                 bench.tmp / f"{block}.log", env=env)
    srv.appname = appname
    if wait_http(bench.nginx.url(block, "/health"), srv) != 200:
        srv.stop()
        raise Fatal(f"{binary.name} did not answer; see its log")
    return srv


def product_env(bench, block, db_url, extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": db_url,
           "API_SOCKET": str(bench.nginx.socks[block] if bench.nginx else bench.tmp / "probe.sock"),
           "API_SOCKET_MODE": "0660",
           "LOG_LEVEL": "warn", "SHUTDOWN_TIMEOUT_MS": "3000"}
    env.update(extra)
    return env


def product_config(bench):
    """The product's effective defaults (check-config), or None if it cannot run."""
    if not os.access(NEONFCGI, os.X_OK):
        return None
    out = subprocess.run([str(NEONFCGI), "check-config"],
                         env=product_env(bench, "app", bench.db.url, {}),
                         cwd=bench.tmp / "app", capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        bench.notes.append(f"`neonfcgi check-config` exited {out.returncode}: "
                           f"{(out.stderr or out.stdout).strip().splitlines()[-1:]}")
        return None
    cfg = dict(re.findall(r"^([A-Z_0-9]+)=(.*)$", out.stdout, re.M))
    return cfg if "WORKERS" in cfg else None


def start_product(bench, block, extra=None, db_port=None, argv=None, deadline_s=15.0):
    """neonfcgi on block's socket; (server, None) or (None, what /health said).
    argv: another command line (a variant binary, or under valgrind)."""
    appname = f"neonfcgi-{block}"
    url = bench.db.url_for(appname, db_port)
    srv = Server(f"neonfcgi ({block})", argv or [str(NEONFCGI), "serve"],
                 bench.tmp / f"{block}.log",
                 env=product_env(bench, block, url, extra or {}), cwd=bench.tmp / "app")
    srv.appname = appname
    st = wait_http(bench.nginx.url(block, "/health"), srv, deadline_s)
    if st != 200:
        srv.stop()
        return None, st
    return srv, None


def route_ok(bench, block, path, row):
    st = http_status(bench.nginx.url(block, path), timeout=5)
    if st == 404:
        bench.notes.append(f"{row}: skipped, `{path}` answers 404 (route not implemented yet)")
        return False
    return True


def stop(*servers):
    for srv in servers:
        if srv:
            srv.stop()


# ------------------------------------------------------------------- phases

POLL0 = {"LIBFCGI_OS_CLOSE_POLL_TIMEOUT": "0"}
BATCH = ("chrt", "--batch", "0")
BATCH_C = 128  # the one concurrency the SCHED_BATCH floors run at


def phase_main(bench, sizing, product):
    """Each floor and the product rows compared with it run back to back at
    every c, all servers up at once, so a ratio never spans minutes of
    changing background load."""
    w, conns = sizing["workers"], sizing["bound"]
    floor = start_floor(bench, "floor", w)
    floor_p0 = start_floor(bench, "floor_p0", w, extra=POLL0)
    dbfloor = start_floor(bench, "dbfloor", conns, db_port=bench.db.port)
    batch = None
    if BATCH_C in CONCS and shutil.which(BATCH[0]):
        batch = (start_floor(bench, "floor_b", w, wrap=BATCH),
                 start_floor(bench, "dbfloor_b", conns, db_port=bench.db.port, wrap=BATCH))
    app, kcs = None, []
    if product:
        app, st = start_product(bench, "app")
        if not app:
            bench.notes.append(f"neonfcgi rows skipped: /health answered {st} through nginx")
    if app:
        # (block, server, keepalive): the threads/2 row, and the guides' value
        for block in ("app_kc", "app_kcg"):
            ka = bench.nginx.keepalive
            if block == "app_kcg" and ka["app_kcg"] == ka["app_kc"]:
                continue  # BENCH_KEEPALIVE is the guides' value already: one row
            srv, st = start_product(bench, block)
            if srv:
                kcs.append((block, srv, bench.nginx.keepalive[block]))
            else:
                bench.notes.append(f"{block} rows skipped: /health answered {st}")
    db_ok = bool(app) and route_ok(bench, "app", "/health/db", "neonfcgi /health/db rows")
    start = len(bench.rows)
    for rnd in range(ROUNDS):
        say(f"round {rnd + 1} of {ROUNDS}")
        for c in CONCS:
            main_cells(bench, w, conns, c, floor, floor_p0, dbfloor, app, kcs, db_ok,
                       batch if c == BATCH_C else None)
    bench.rows[start:] = merge_rounds(bench.rows[start:])
    stop(floor, floor_p0, dbfloor, *(srv for _, srv, _ in kcs), *(batch or ()))
    phase_alone(bench, sizing, app, db_ok)


def merge_rounds(rows):
    """One row per (row, c): medians of the measurements, sums of the
    failures and new connections, the max of the backends."""
    merged = {}
    for r in rows:
        merged.setdefault((r["row"], r["c"]), []).append(r)
    out = []
    for group in merged.values():
        m = dict(group[0])
        for k, v in group[0].items():
            vals = [g[k] for g in group if g.get(k) is not None]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or k == "c" or not vals:
                continue
            if k in ("non2xx", "sockerr", "new_conns", "requests", "attempts"):
                m[k] = sum(vals)
            elif k == "backends":
                m[k] = max(vals)
            else:
                m[k] = statistics.median(vals)
        m["rounds"] = len(group)
        out.append(m)
    return out


def main_cells(bench, w, conns, c, floor, floor_p0, dbfloor, app, kcs, db_ok, batch):
    """One round at one c: each floor, then the product rows compared with it;
    kcs: the keep-conn servers, (block, server, keepalive); batch: the
    (fcgi-floor, fcgi-db-floor) pair under SCHED_BATCH, or None."""
    bench.cell(bench.rows, "nginx-return", "return", "/", c, None)
    bench.cell(bench.rows, f"fcgi-floor ({w} proc)", "floor", "/", c, floor, kind="floor")
    if app:
        bench.cell(bench.rows, "neonfcgi /health", "app", "/health", c, app,
                   kind="health", ref="floor")
        for block, srv, k in kcs:
            bench.cell(bench.rows, f"neonfcgi /health keep-conn (keepalive {k})", block,
                       "/health", c, srv, kind="health-kc", ref="floor", ka=k)
    bench.cell(bench.rows, f"fcgi-floor ({w} proc) poll=0", "floor_p0", "/", c, floor_p0,
               kind="floor-poll0", ref="floor")
    if batch:
        bench.cell(bench.rows, f"fcgi-floor ({w} proc) SCHED_BATCH", "floor_b", "/", c,
                   batch[0], kind="floor-batch", ref="floor")
    bench.cell(bench.rows, f"fcgi-db-floor ({conns} proc)", "dbfloor", "/", c, dbfloor,
               kind="dbfloor")
    if db_ok:
        bench.cell(bench.rows, "neonfcgi /health/db", "app", "/health/db", c, app,
                   kind="db", ref="dbfloor")
        for block, srv, k in kcs:
            bench.cell(bench.rows, f"neonfcgi /health/db keep-conn (keepalive {k})", block,
                       "/health/db", c, srv, kind="db-kc", ref="dbfloor", ka=k)
    if batch:
        bench.cell(bench.rows, f"fcgi-db-floor ({conns} proc) SCHED_BATCH", "dbfloor_b", "/", c,
                   batch[1], kind="dbfloor-batch", ref="dbfloor")


def phase_alone(bench, sizing, app, db_ok):
    """c=1024 and memory: each server alone (PSS depends on who else maps the
    same libraries)."""
    w = sizing["workers"]
    if app:
        bench.cell(bench.rows, "neonfcgi /health", "app", "/health", MAX_C, app, alone=True,
                   kind="health", ref="floor")
        if db_ok:
            bench.cell(bench.rows, "neonfcgi /health/db", "app", "/health/db", MAX_C, app,
                       alone=True, kind="db", ref="dbfloor")
        stop(app)
    floor = start_floor(bench, "dbfloor", w, db_port=bench.db.port)
    bench.cell(bench.rows, f"fcgi-db-floor ({w} proc)", "dbfloor", "/", 256, floor, alone=True,
               kind="dbfloor-w")
    stop(floor)
    phase_pgbench(bench, sizing["bound"])


def phase_pgbench(bench, clients):
    # pgbench's per-transaction log (-l) is no use for percentiles here: it
    # reads the clock once per loop over its clients, so sub-millisecond
    # transactions log 0 µs. Its own average is reported instead.
    script = ROOT / "bench/select1.sql"
    url = bench.db.url_for("pgbench")

    def run(duration):
        argv = ["pgbench", "-n", "-f", str(script), "-c", str(clients), "-j", str(NCPU),
                "-T", str(max(1, round(duration))), url]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                             cwd=bench.tmp)
        m = re.search(r"tps = ([\d.]+) \(without initial", out.stdout)
        avg = re.search(r"latency average = ([\d.]+) ms", out.stdout)
        done = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
        if out.returncode != 0 or not m:
            raise Fatal(f"pgbench failed: {out.stderr.strip()}")
        return {"requests": int(done.group(1)), "rps": float(m.group(1)), "p50": None,
                "p99": None, "avg_ms": float(avg.group(1)) if avg else None,
                "non2xx": int(failed.group(1)) if failed else 0, "sockerr": None}

    say(f"pgbench-select1 clients={clients}")
    r = bench.measure(run, None, "pgbench")
    r.update(row=f"pgbench-select1 ({clients} clients, latency avg {fmt(r['avg_ms'], '{:.2f}')} "
                 f"ms)", c=clients, kind="pgbench", nginx_us=None)
    bench.rows.append(r)


def phase_sweep(bench, sizing):
    path = "/health/db"
    for w in SWEEP_WORKERS:
        for t in SWEEP_THREADS:
            srv, st = start_product(bench, "app", {"WORKERS": str(w), "WORKER_THREADS": str(t)})
            if not srv:
                bench.notes.append(f"sweep W={w} T={t}: /health answered {st}; skipped")
                continue
            if path == "/health/db" and not route_ok(bench, "app", path, "sweep on /health/db"):
                path = "/health"
                bench.notes.append("the sweep ran on /health instead")
            bench.cell(bench.sweep, f"W={w} T={t}", "app", path, SWEEP_C, srv, alone=True,
                       workers=w, threads=t, bound=w * sizing["per_worker"], route=path)
            stop(srv)


def start_relay(bench, delay_us=RELAY_DELAY_US):
    """delay-relay to the database; (server, port). Its stdout (the port, then
    one line per relay_report) goes to server.out."""
    port_file = bench.tmp / f"relay-{delay_us}.out"
    with open(port_file, "wb") as out:
        relay = Server("delay-relay", [str(BINDIR / "delay-relay"), "127.0.0.1",
                                       str(bench.db.port), str(delay_us)],
                       bench.tmp / f"relay-{delay_us}.log", stdout=out)
    relay.out = port_file
    deadline = time.monotonic() + 5
    while not port_file.read_text().strip():
        if time.monotonic() > deadline or not relay.alive():
            raise Fatal("delay-relay did not start")
        time.sleep(0.05)
    return relay, int(port_file.read_text().split()[0])


def relay_report(relay):
    """The relay's round trips since its previous report (see delay-relay.c):
    {"max": most in flight at once, "flights": client flights begun}."""
    seen = relay.out.read_text().count("inflight ")
    relay.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [x for x in relay.out.read_text().splitlines() if x.startswith("inflight ")]
        if len(lines) > seen:
            kv = dict(f.split("=") for f in lines[-1].split()[1:])
            return {"max": int(kv["max"]), "flights": int(kv["flights"])}
        time.sleep(0.02)
    raise Fatal("delay-relay did not report its round trips in flight")


def phase_relay(bench, sizing):
    """/health/db at a Neon-like round trip: throughput is bounded by the
    connections in use / RTT, whatever the CPU. The WORKER_THREADS=1 row shows
    what fewer connections cost there (on the local database they cost
    nothing, see the sweep)."""
    relay, port = start_relay(bench)
    bench.helper_pids.append(relay.pid)
    rtt_ms = 2 * RELAY_DELAY_US / 1000
    w, conns = sizing["workers"], sizing["bound"]

    def info(n):
        return {"conns": n, "bound": n / rtt_ms * 1000, "rtt_ms": rtt_ms}

    floor = start_floor(bench, "dbfloor", conns, db_port=port)
    app, _ = start_product(bench, "app", db_port=port)
    db_ok = bool(app) and route_ok(bench, "app", "/health/db", "relay rows")
    for c in (16, SWEEP_C):
        bench.cell(bench.relay, f"fcgi-db-floor ({conns} proc)", "dbfloor", "/", c, floor,
                   **info(conns))
        if db_ok:
            bench.cell(bench.relay, "neonfcgi /health/db", "app", "/health/db", c, app,
                       **info(conns))
    stop(app, floor)
    if db_ok:
        app, _ = start_product(bench, "app", {"WORKER_THREADS": "1"}, db_port=port)
        if app:
            bench.cell(bench.relay, "neonfcgi /health/db WORKER_THREADS=1", "app",
                       "/health/db", SWEEP_C, app, **info(w))
        stop(app)
    stop(relay)


def phase_probes(bench, sizing):
    """Issue 18, what probes cost: /health/db through the relay at
    PROBES_DELAY_US each way with WORKER_THREADS=PROBES_THREADS, so requests
    outnumber connections and each worker's shared check is what they wait
    for. First a flood at c=FLOOD_C, then c=PROBES_C on a second instance,
    whose SELECT 1s are counted as the app database's committed transactions
    (pg_stat_database) over its whole life: from after the first instance's
    backends exited to after its own did (a backend flushes its statistics
    when it exits, see BackendSampler.xact_commit), against the answers to
    its warm-up and its cell (its connections' start-up transactions are in
    the count too, which errs against the product). Checks in flight are counted two ways: by the
    relay (round trips begun and not yet answered), and as 'active' app
    backends in pg_stat_activity sampled every 10 ms; the latter rarely sees a
    SELECT 1, which the server executes in microseconds however long the
    round trip."""
    relay, port = start_relay(bench, PROBES_DELAY_US)
    bench.helper_pids.append(relay.pid)
    w, t = sizing["workers"], PROBES_THREADS
    rtt_ms = 2 * PROBES_DELAY_US / 1000
    info = {"workers": w, "threads": t, "rtt_ms": rtt_ms,
            "target": 0.5 * w * t / rtt_ms * 1000, "old_cap": sizing["bound"] / rtt_ms * 1000}
    env = {"WORKER_THREADS": str(t)}
    app, st = start_product(bench, "app", env, db_port=port)
    if not app or not route_ok(bench, "app", "/health/db", "probes phase"):
        bench.notes.append(f"probes phase skipped: /health answered {st}")
        stop(app, relay)
        return
    url = bench.nginx.url("app", "/health/db")
    bench.sampler.interval = PROBES_SAMPLE_S
    try:
        probes_cell(bench, relay, app, url, FLOOD_C, "flood", WARMUP, info)
        stop(app)
        gone = wait_no_backends(bench, app.appname, 10.0)
        c0 = bench.sampler.xact_commit()
        app, st = start_product(bench, "app", env, db_port=port)
        if not app:
            bench.notes.append(f"probes c={PROBES_C} skipped: /health answered {st}")
            return
        warm = wrk(url, PROBES_C, WARMUP)
        r = probes_cell(bench, relay, app, url, PROBES_C, "probes", 0, info)
        stop(app)
        gone = gone and wait_no_backends(bench, app.appname, 10.0)
        c1 = bench.sampler.xact_commit()
        if gone and c0 is not None and c1 is not None:
            r.update(commits=c1 - c0, warm_answers=warm["requests"] - warm["non2xx"])
        else:
            bench.notes.append("probes: the product's backends outlived it by 10 s; "
                               "SELECT 1s not counted")
    finally:
        bench.sampler.interval = SAMPLE_S
        stop(app, relay)


def probes_cell(bench, relay, app, url, c, kind, warm, info):
    say(f"probes: /health/db c={c} through the relay ({PROBES_DELAY_US / 1000:g} ms each way)")
    if warm:
        wrk(url, c, warm)
    relay_report(relay)  # a new interval begins
    r = bench._measure_once(lambda d: wrk(url, c, d), app, app.appname, False)
    rr = relay_report(relay)
    r.update(row=f"neonfcgi /health/db WORKER_THREADS={info['threads']}", c=c, kind=kind,
             inflight=rr["max"], flights=rr["flights"], commits=None, **info)
    bench.probes.append(r)
    return r


def wait_no_backends(bench, appname, deadline_s):
    """Bounded wait until a sample taken after now shows none of appname's backends."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        with bench.sampler.lock:
            last = bench.sampler.samples[-1] if bench.sampler.samples else None
        if last and last[0] > t0 and last[1].get(appname, (0, 0))[0] == 0:
            return True
        time.sleep(0.05)
    return False


def phase_scoreboard(bench):
    """What the scoreboard costs on /health (issue 4): the product against
    neonfcgi-nosb, SB_ROUNDS pairs at c=SB_C, each pair's order alternating so
    that neither side always runs first. Halfway, both restart on each other's
    nginx block and socket: two identical servers differed by up to 5-10 %
    between blocks in an A/A trial, more than the 3 % asked about."""
    if not os.access(NOSB, os.X_OK):
        bench.notes.append(f"scoreboard A/B skipped: {NOSB} not built (make bench-bins)")
        return
    half = SB_ROUNDS // 2
    for swap, rounds in ((False, range(half)), (True, range(half, SB_ROUNDS))):
        blocks = ("sb_off", "sb_on") if swap else ("sb_on", "sb_off")
        on, st = start_product(bench, blocks[0])
        off, st2 = start_product(bench, blocks[1], argv=[str(NOSB), "serve"])
        if not (on and off):
            bench.notes.append(f"scoreboard A/B skipped: /health answered {st} / {st2}")
            stop(on, off)
            break
        sides = [("neonfcgi /health", blocks[0], on, "sb_on"),
                 ("neonfcgi-nosb /health", blocks[1], off, "sb_off")]
        for rnd in rounds:
            say(f"scoreboard A/B pair {rnd + 1} of {SB_ROUNDS}")
            for row, block, srv, side in (sides if rnd % 2 == 0 else sides[::-1]):
                bench.cell(bench.sb, row, block, "/health", SB_C, srv, pair=rnd, side=side)
        stop(on, off)
    phase_callgrind(bench)


CG_FUNCS = {"sb_req": "scoreboard.c:scoreboard_request",
            "sb_busy": "scoreboard.c:scoreboard_thread_busy",
            "sb_lq": "scoreboard.c:scoreboard_listen_queue", "lq": "listenq.c:listenq_sample",
            "connect": "pgconn.c:pgconn_connect", "query": "pgconn.c:pgconn_exec",
            "body": "health.c:health_"}
# What neonfcgi-nosb removes (Makefile NOSB_WRAPS): the scoreboard's per-request
# and per-accept work, the listen queue's netlink round trip included.
CG_SB = ("sb_req", "sb_busy", "sb_lq", "lq")


def phase_callgrind(bench):
    """One worker, one request thread under callgrind, collecting only inside
    the request thread (accept to close, libfcgi, libpq and libc included):
    instructions per request for /health and /health/db, without the pool's
    one-time TLS connect, and how many of them are the scoreboard's, the
    query's and the body's. Deterministic, unlike the timings: the
    before/after measure for code changes."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        bench.notes.append("callgrind count skipped: valgrind not installed")
        return
    for path in ("/health", "/health/db"):
        out = bench.tmp / f"callgrind{path.replace('/', '-')}"
        out.mkdir()
        argv = ["valgrind", "--tool=callgrind", "--toggle-collect=request_thread_main",
                f"--callgrind-out-file={out}/cg.%p", str(NEONFCGI), "serve"]
        srv, st = start_product(bench, "sb_on", {"WORKERS": "1", "WORKER_THREADS": "1",
                                                 "HEALTH_TIMEOUT_MS": "5000"},
                                argv=argv, deadline_s=120)
        if not srv:
            bench.notes.append(f"callgrind count skipped: /health answered {st}")
            return
        say(f"callgrind: {CG_REQUESTS} {path} requests")
        conn = http.client.HTTPConnection("127.0.0.1", bench.nginx.ports["sb_on"], timeout=30)
        ok = 0
        for _ in range(CG_REQUESTS):
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            ok += resp.status == 200
        conn.close()
        stop(srv)
        for f in out.glob("cg.*"):
            counts = callgrind_counts(f)
            if counts.get("total"):
                # wait_http's start-up probes (one or two) are in the totals too.
                bench.cg[path] = dict(counts, requests=ok)
        if path not in bench.cg:
            bench.notes.append(f"callgrind count of {path}: no worker output found")


def callgrind_counts(f):
    ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(f)],
                         capture_output=True, text=True, timeout=120).stdout
    num = lambda m: int(m.replace(",", ""))  # noqa: E731
    total = re.search(r"^\s*([\d,]+)\s.*PROGRAM TOTALS", ann, re.M)
    counts = {"total": num(total.group(1)) if total else 0}
    for key, fn in CG_FUNCS.items():
        # Inclusive, so the largest line naming the function is its total.
        counts[key] = max((num(m) for m in re.findall(
            rf"^\s*([\d,]+)\s.*{re.escape(fn)}\w*", ann, re.M)), default=0)
    counts["sb"] = sum(counts[k] for k in CG_SB)
    return counts


# ------------------------------------------------------------------- output

def fmt(v, spec="{:.0f}"):
    return "—" if v is None else spec.format(v)


def noise(r):
    """Other processes' CPU during the cell, starred when above MAX_NOISE."""
    return fmt(r["other_pct"], "{:.0f}") + (" *" if r["other_pct"] > MAX_NOISE else "")


def ratio(a, b, key):
    if not a or not b or a.get(key) is None or not b.get(key):
        return None
    return a[key] / b[key]


def floor_for(bench, r):
    """The floor row r is compared with: same c, kind named by r's ref."""
    for f in bench.rows:
        if r.get("ref") and f.get("kind") == r["ref"] and f["c"] == r["c"]:
            return f
    return None


def md_table(head, rows):
    """A Markdown table: head names the columns, each row is a list of cells."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main_table(bench):
    head = ["row", "c", "req/s", "p50 ms", "p99 ms", "non-2xx", "sock err", "max app backends",
            "new server conns", "RSS MB", "PSS MB", "app µs/req", "nginx µs/req", "pg µs/req",
            "× floor req/s", "× floor app CPU", "× floor p99", "other CPU %"]
    rows = []
    for r in bench.rows:
        f = floor_for(bench, r)
        mb = lambda k: fmt(r.get(k) and r[k] / 1024, "{:.1f}")  # noqa: E731
        rows.append([
            r["row"], str(r["c"]), fmt(r["rps"]), fmt(r["p50"], "{:.2f}"),
            fmt(r["p99"], "{:.2f}"), fmt(r["non2xx"]), fmt(r["sockerr"]),
            fmt(r["backends"]), fmt(r["new_conns"]), mb("rss_kb"), mb("pss_kb"),
            fmt(r["app_us"], "{:.1f}"), fmt(r["nginx_us"], "{:.1f}"), fmt(r["pg_us"], "{:.1f}"),
            fmt(ratio(r, f, "rps"), "{:.2f}"), fmt(ratio(r, f, "app_us"), "{:.2f}"),
            fmt(ratio(r, f, "p99"), "{:.2f}"), noise(r)])
    return md_table(head, rows)


def sweep_table(bench):
    head = ["WORKERS", "WORKER_THREADS", "route", "req/s", "p50 ms", "p99 ms", "non-2xx",
            "sock err", "max app backends", "bound", "new server conns", "PSS MB", "app µs/req",
            "pg µs/req", "other CPU %"]
    return md_table(head, [[
        str(r["workers"]), str(r["threads"]), r["route"], fmt(r["rps"]),
        fmt(r["p50"], "{:.2f}"), fmt(r["p99"], "{:.2f}"), fmt(r["non2xx"]),
        fmt(r["sockerr"]), fmt(r["backends"]), str(r["bound"]), fmt(r["new_conns"]),
        fmt(r.get("pss_kb") and r["pss_kb"] / 1024, "{:.1f}"), fmt(r["app_us"], "{:.1f}"),
        fmt(r["pg_us"], "{:.1f}"), noise(r)] for r in bench.sweep])


def relay_table(bench):
    head = ["row", "c", "RTT ms", "connections", "bound conns/RTT req/s", "req/s", "× bound",
            "p50 ms", "p99 ms", "non-2xx", "sock err", "max app backends", "new server conns",
            "other CPU %"]
    return md_table(head, [[
        r["row"], str(r["c"]), fmt(r["rtt_ms"], "{:.1f}"), str(r["conns"]),
        fmt(r["bound"]), fmt(r["rps"]), fmt(r["rps"] / r["bound"], "{:.2f}"),
        fmt(r["p50"], "{:.2f}"), fmt(r["p99"], "{:.2f}"), fmt(r["non2xx"]),
        fmt(r["sockerr"]), fmt(r["backends"]), fmt(r["new_conns"]), noise(r)]
        for r in bench.relay])


def probes_table(bench):
    head = ["row", "c", "RTT ms", "req/s", "0.5 × W × T ÷ RTT", "× that",
            "old cap W × conns ÷ RTT", "p50 ms", "p99 ms", "non-2xx", "sock err",
            "SELECT 1s (xact_commit Δ)", "per request", "relay flights",
            "max in flight (relay)", "max active (pg_stat_activity)", "samples",
            "max app backends", "new server conns", "other CPU %"]
    return md_table(head, [[
        r["row"] + (" flood" if r["kind"] == "flood" else ""), str(r["c"]),
        fmt(r["rtt_ms"], "{:.1f}"), fmt(r["rps"]), fmt(r["target"]),
        fmt(r["rps"] / r["target"], "{:.2f}"), fmt(r["old_cap"]), fmt(r["p50"], "{:.2f}"),
        fmt(r["p99"], "{:.2f}"), fmt(r["non2xx"]), fmt(r["sockerr"]), fmt(r["commits"]),
        fmt(selects_per_request(r), "{:.3f}"), fmt(r["flights"]), fmt(r["inflight"]),
        fmt(r["active"]), fmt(r["samples"]), fmt(r["backends"]), fmt(r["new_conns"]),
        noise(r)] for r in bench.probes])


def answered(r):
    """2xx answers of the cell, and of its warm-up when the count spans it."""
    return (r["requests"] or 0) - r["non2xx"] + r.get("warm_answers", 0)


def selects_per_request(r):
    n = answered(r)
    return r["commits"] / n if r.get("commits") is not None and n > 0 else None


def probes_verdicts(bench, sizing, check):
    w = sizing["workers"]
    for r in bench.probes:
        inflight = (f"max {fmt(r['inflight'])} round trips in flight at the relay, max "
                    f"{fmt(r['active'])} active backends in {fmt(r['samples'])} samples of "
                    f"pg_stat_activity")
        ok_inflight = (r["inflight"] is not None and r["inflight"] <= w
                       and (r["active"] or 0) <= w)
        where = (f"c={r['c']}, WORKER_THREADS={r['threads']}, {r['rtt_ms']:g} ms RTT through "
                 f"the relay")
        if r["kind"] == "flood":
            check(f"/health/db flood ({where}): never more than WORKERS ({w}) queries in "
                  f"flight, zero non-2xx (issue 18)", ok_inflight and r["non2xx"] == 0,
                  f"{inflight}; non-2xx {r['non2xx']}, socket errors {r['sockerr']}, "
                  f"{fmt(r['rps'])} req/s, p99 {fmt(r['p99'], '{:.1f}')} ms", [r])
            continue
        x = selects_per_request(r)
        check(f"/health/db ({where}): SELECT 1s ≤ {SELECTS_PER_REQ_MAX:g} × requests "
              f"answered (issue 18)", x is not None and x <= SELECTS_PER_REQ_MAX,
              f"{fmt(r['commits'])} committed transactions in the app database for "
              f"{answered(r)} answers (warm-up and cell, the instance's whole life) = "
              f"{fmt(x, '{:.3f}')} per request; in the cell alone the relay saw "
              f"{fmt(r['flights'])} client round trips (handshakes included) for "
              f"{(r['requests'] or 0) - r['non2xx']} answers", [r])
        check(f"/health/db ({where}): at most one check in flight per worker, ≤ {w} "
              f"(issue 18)", ok_inflight, inflight, [r])
        check(f"/health/db ({where}): req/s ≥ 0.5 × WORKERS × WORKER_THREADS ÷ RTT "
              f"(issue 18)", r["rps"] >= r["target"],
              f"{fmt(r['rps'])} req/s vs 0.5 × {w} × {r['threads']} ÷ {r['rtt_ms']:g} ms = "
              f"{fmt(r['target'])} ({r['rps'] / r['target']:.2f}×); the old cap WORKERS × "
              f"(DB_POOL_SIZE + DB_MAX_OVERFLOW) ÷ RTT = {fmt(r['old_cap'])}; non-2xx "
              f"{r['non2xx']}", [r])


def kc_verdicts(bench, rows, with_floors, check):
    """Issue 18 item 4: per keepalive value, /health ≥ 1.3× the floor and both
    routes' p99 against the same route's p99 without keep-conn."""
    for k in sorted({r["ka"] for r in rows("health-kc") + rows("db-kc")}):
        rs = [r for r in rows("health-kc") if r["ka"] == k and r["c"] in CONCS
              and floor_for(bench, r)]
        got = [(r["c"], ratio(r, floor_for(bench, r), "rps")) for r in rs]
        if got:
            check(f"/health keep-conn (keepalive {k}) ≥ 1.3× fcgi-floor req/s",
                  all(x >= 1.3 for _, x in got),
                  ", ".join(f"c={c}: {x:.2f}×" for c, x in got), with_floors(rs))
        for kind, base, route in (("health-kc", "health", "/health"),
                                  ("db-kc", "db", "/health/db")):
            pairs = [(r, next((b for b in rows(base) if b["c"] == r["c"]), None))
                     for r in rows(kind) if r["ka"] == k and r["c"] in CONCS]
            got = [(r["c"], ratio(r, b, "p99"), r, b) for r, b in pairs if b]
            if got:
                check(f"{route} keep-conn (keepalive {k}) p99 ≤ {KC_P99_MAX:g}× the p99 "
                      "without keep-conn (issue 18)",
                      all(x is not None and x <= KC_P99_MAX for _, x, _, _ in got),
                      ", ".join(f"c={c}: {fmt(r['p99'], '{:.1f}')} vs "
                                f"{fmt(b['p99'], '{:.1f}')} ms = {fmt(x, '{:.2f}')}×"
                                for c, x, r, b in got),
                      [x for _, _, r, b in got for x in (r, b)])


def baseline_rows():
    """(path, {c: (× floor req/s, × floor app CPU)}) of /health in a run
    that has them: BENCH_BASELINE, else the run quoted in bench/results/README.md
    (the committed reference), else the newest bench-*.md there (this run's own
    file is written after the verdicts)."""
    files = ([Path(BASELINE)] if BASELINE else
             [RESULTS / "README.md"] + sorted(RESULTS.glob("bench-*.md"), reverse=True))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        got = {}
        for line in text.splitlines():
            cells = [x.strip() for x in line.strip().strip("|").split("|")]
            if len(cells) == 18 and cells[0] == "neonfcgi /health" and cells[1].isdigit() \
                    and int(cells[1]) in CONCS:
                try:
                    got[int(cells[1])] = (float(cells[14]), float(cells[15]))
                except ValueError:
                    pass
        if len(got) == len(CONCS):
            return f, got
    return None, None


def baseline_verdict(bench, rows, with_floors, check):
    """Issue 18 item 5: /health's throughput and CPU per request, each as a
    ratio to fcgi-floor's in the same run (which takes out most of the
    machine's drift), no worse than the baseline run's beyond the noise."""
    rs = [r for r in rows("health") if r["c"] in CONCS and floor_for(bench, r)]
    if not rs:
        return
    path, base = baseline_rows()
    if not base:
        bench.notes.append("no earlier run with /health rows to compare with "
                           "(BENCH_BASELINE names one)")
        return
    tol = BASELINE_NOISE_PCT / 100
    got = [(r["c"], ratio(r, floor_for(bench, r), "rps"),
            ratio(r, floor_for(bench, r), "app_us")) for r in rs]
    ok = all(x is not None and y is not None and x >= base[c][0] * (1 - tol)
             and y <= base[c][1] * (1 + tol) for c, x, y in got)
    check(f"/health req/s and CPU per request no worse than {path.name} within "
          f"{BASELINE_NOISE_PCT:g} % (ratios to fcgi-floor; issue 18)", ok,
          ", ".join(f"c={c}: {fmt(x, '{:.2f}')}× req/s (was {base[c][0]:.2f}×), "
                    f"{fmt(y, '{:.2f}')}× CPU (was {base[c][1]:.2f}×)" for c, x, y in got),
          with_floors(rs))


def verdicts(bench, sizing):
    out = []

    def check(name, ok, detail, cells=()):
        loud = [r for r in cells if r and r["other_pct"] > MAX_NOISE]
        flag = (f" (noisy: {len(loud)} of these cells above {MAX_NOISE:g}% other CPU)"
                if loud else "")
        out.append(f"- **{'met' if ok else 'MISSED'}** — {name}: {detail}{flag}")

    def with_floors(rs):
        return [x for r in rs for x in (r, floor_for(bench, r))]

    def rows(kind):
        return [r for r in bench.rows if r.get("kind") == kind]

    for kind, target, label in (("health", 1.0, "/health ≥ 1.0× fcgi-floor req/s"),
                                ("db", 1.0, "/health/db ≥ 1.0× fcgi-db-floor req/s"),
                                ("db", DB_LEAD, f"/health/db keeps its lead: ≥ {DB_LEAD:g}× "
                                                "fcgi-db-floor req/s (issue 18)")):
        rs = [r for r in rows(kind) if r["c"] in CONCS and floor_for(bench, r)]
        got = [(r["c"], ratio(r, floor_for(bench, r), "rps")) for r in rs]
        if got:
            check(label, all(x >= target for _, x in got),
                  ", ".join(f"c={c}: {x:.2f}×" for c, x in got), with_floors(rs))
    rs = [r for r in rows("health") if r["c"] in CONCS and floor_for(bench, r)]
    got = [(r["c"], ratio(r, floor_for(bench, r), "app_us")) for r in rs]
    if got:
        check("/health app CPU µs/req ≤ 1.10× fcgi-floor's", all(x <= 1.10 for _, x in got),
              ", ".join(f"c={c}: {x:.2f}×" for c, x in got), with_floors(rs))
    rs = [r for r in rows("db") if r["c"] in CONCS and floor_for(bench, r)]
    got = [(r["c"], r["p99"], floor_for(bench, r)["p99"]) for r in rs]
    if got:
        check("/health/db p99 ≤ fcgi-db-floor's (issue 18)",
              all(a is not None and b is not None and a <= b for _, a, b in got),
              ", ".join(f"c={c}: {fmt(a, '{:.2f}')} vs {fmt(b, '{:.2f}')} ms" for c, a, b in got),
              with_floors(rs))
    kc_verdicts(bench, rows, with_floors, check)
    p = [r for r in rows("db") if r["c"] == 256]
    if p and floor_for(bench, p[0]):
        x = ratio(p[0], floor_for(bench, p[0]), "p99")
        check("/health/db p99 at c=256 ≤ 1.2× fcgi-db-floor's", x is not None and x <= 1.2,
              f"{fmt(p[0]['p99'], '{:.2f}')} ms vs {fmt(floor_for(bench, p[0])['p99'], '{:.2f}')}"
              f" ms = {fmt(x, '{:.2f}')}×", with_floors(p))
    db = rows("db") + rows("db-kc")
    if db:
        label = lambda r: f"c={r['c']}" + (f" kc{r['ka']}" if r["kind"] == "db-kc" else "")  # noqa: E731
        check("/health/db zero non-2xx (issues 1, 18)", all(r["non2xx"] == 0 for r in db),
              ", ".join(f"{label(r)}: {r['non2xx']}" for r in db))
        check("/health/db zero new server connections after warm-up (issues 1, 18)",
              all(r["new_conns"] == 0 for r in db),
              ", ".join(f"{label(r)}: {r['new_conns']}" for r in db))
    prod = [r for r in bench.rows if r.get("ref") and "floor" not in r["kind"]]
    if prod:
        worst = max((r["backends"] or 0) for r in prod)
        check(f"app backends never above the bound ({sizing['bound']})",
              worst <= sizing["bound"], f"max sampled {worst}")
    if bench.sweep:
        over = [r["row"] for r in bench.sweep if (r["backends"] or 0) > r["bound"]]
        check("sweep: app backends never above WORKERS × (DB_POOL_SIZE + DB_MAX_OVERFLOW)",
              not over, ", ".join(over) or "none above")
    big = [r for r in bench.rows if r["c"] == MAX_C]
    if big:
        check("c=1024: zero non-2xx and zero socket errors",
              all(r["non2xx"] == 0 and r["sockerr"] == 0 for r in big),
              "; ".join(f"{r['row']}: non-2xx {r['non2xx']}, socket errors {r['sockerr']}, "
                        f"p99 {fmt(r['p99'], '{:.1f}')} ms" for r in big))
    mem = [r for r in rows("db") + rows("health") if r.get("pss_kb")]
    floor_w = rows("dbfloor-w")
    if mem and floor_w and mem[-1].get("pss_kb") and floor_w[0].get("pss_kb"):
        x = mem[0]["pss_kb"] / floor_w[0]["pss_kb"]
        check(f"PSS of the instance ≤ 1.5× fcgi-db-floor's at {sizing['workers']} processes",
              x <= 1.5, f"{mem[0]['row']} c={mem[0]['c']}: {mem[0]['pss_kb'] / 1024:.1f} MB vs "
                        f"{floor_w[0]['pss_kb'] / 1024:.1f} MB = {x:.2f}× (each alone, after "
                        f"its cell)", [mem[0], floor_w[0]])
    baseline_verdict(bench, rows, with_floors, check)
    probes_verdicts(bench, sizing, check)
    scoreboard_verdict(bench, check)
    return "\n".join(out) if out else "- (no product rows: nothing to judge)"


def findings(bench):
    """Variants of the floors against the floors: libfcgi's close-time poll
    disabled, and the scheduling policy the product's threads take."""
    out = []
    pairs = (("floor-poll0", "floor", "fcgi-floor", "LIBFCGI_OS_CLOSE_POLL_TIMEOUT=0"),
             ("floor-batch", "floor", "fcgi-floor", "SCHED_BATCH"),
             ("dbfloor-batch", "dbfloor", "fcgi-db-floor", "SCHED_BATCH"))
    for kind, base, label, what in pairs:
        for r in bench.rows:
            if r.get("kind") != kind:
                continue
            b = next((x for x in bench.rows if x.get("kind") == base and x["c"] == r["c"]), None)
            if b:
                out.append(f"- {label} c={r['c']}: {what} gives "
                           f"{fmt(ratio(r, b, 'rps'), '{:.2f}')}× req/s, "
                           f"{fmt(ratio(r, b, 'app_us'), '{:.2f}')}× app CPU/req, "
                           f"{fmt(ratio(r, b, 'p99'), '{:.2f}')}× p99")
    return "\n".join(out)


def sb_pairs(bench):
    """(on, off) cells of each scoreboard A/B pair."""
    pairs = {}
    for r in bench.sb:
        pairs.setdefault(r["pair"], {})[r["side"]] = r
    return [(p["sb_on"], p["sb_off"]) for _, p in sorted(pairs.items())
            if "sb_on" in p and "sb_off" in p]


def scoreboard_section(bench):
    lines = []
    pairs = sb_pairs(bench)
    if pairs:
        head = ["pair", "with req/s", "without req/s", "× req/s", "with app µs/req",
                "without app µs/req", "× app CPU", "with p99 ms", "without p99 ms", "non-2xx",
                "other CPU %"]
        lines.append(md_table(head, [[
            str(i + 1), fmt(a["rps"]), fmt(b["rps"]), fmt(ratio(a, b, "rps"), "{:.3f}"),
            fmt(a["app_us"], "{:.1f}"), fmt(b["app_us"], "{:.1f}"),
            fmt(ratio(a, b, "app_us"), "{:.3f}"), fmt(a["p99"], "{:.2f}"),
            fmt(b["p99"], "{:.2f}"), fmt(a["non2xx"] + b["non2xx"]),
            f"{noise(a)} / {noise(b)}"] for i, (a, b) in enumerate(pairs)]))
        rps = [ratio(a, b, "rps") for a, b in pairs]
        cpu = [ratio(a, b, "app_us") for a, b in pairs if ratio(a, b, "app_us")]
        lines += ["", f"Median of the {len(pairs)} pairs' ratios (with ÷ without): req/s "
                  f"{statistics.median(rps):.3f}× (range {min(rps):.3f}–{max(rps):.3f}), "
                  f"app CPU µs/req {fmt(cpu and statistics.median(cpu), '{:.3f}')}×; "
                  f"medians of the cells: {statistics.median(a['rps'] for a, _ in pairs):.0f} "
                  f"vs {statistics.median(b['rps'] for _, b in pairs):.0f} req/s."]
    if bench.cg:
        lines += ["", "callgrind, 1 worker × 1 thread, requests one after another through "
                  "nginx; instructions per request in the request thread (user space: libfcgi, "
                  "libpq, OpenSSL, libc and ours; the kernel's work is not counted), without "
                  "the pool's one-time connect:", ""]
        rows = []
        for path, cg in bench.cg.items():
            n = cg["requests"] or 1
            steady = cg["total"] - cg["connect"]
            rows.append([path, str(cg["requests"]), f"{steady / n:,.0f}",
                         f"{cg['sb'] / n:,.1f} ({cg['sb'] / steady * 100:.3f} %)",
                         f"{cg['sb_req'] / n:,.1f}", f"{cg['sb_busy'] / n:,.1f}",
                         f"{(cg['sb_lq'] + cg['lq']) / n:,.1f}",
                         f"{cg['query'] / n:,.0f}", f"{cg['body'] / n:,.0f}"])
        lines.append(md_table(["route", "requests", "instructions/request",
                               "scoreboard, all", "scoreboard_request()",
                               "scoreboard_thread_busy()", "listen queue (listenq_sample + "
                               "scoreboard_listen_queue)", "query (pgconn_exec)",
                               "body (health_*)"], rows))
    return "\n".join(lines)


def scoreboard_verdict(bench, check):
    pairs = sb_pairs(bench)
    if not pairs:
        return
    x = statistics.median(ratio(a, b, "rps") for a, b in pairs)
    cpu = [ratio(a, b, "app_us") for a, b in pairs if ratio(a, b, "app_us")]
    detail = (f"median of {len(pairs)} interleaved pairs at c={SB_C}: {x:.3f}× "
              f"neonfcgi-nosb's req/s (≥ {SB_TARGET:g}×), app CPU per request "
              f"{fmt(cpu and statistics.median(cpu), '{:.3f}')}× (reported)")
    cg = bench.cg.get("/health")
    if cg:
        detail += (f"; the scoreboard's per-request and per-accept work is "
                   f"{cg['sb'] / cg['total'] * 100:.3f} % of the request thread's instructions")
    check(f"/health with the scoreboard within {round((1 - SB_TARGET) * 100):g} % of without "
          "(issues 4, 14)", x >= SB_TARGET, detail, [r for p in pairs for r in p])


def report(bench, sizing, header):
    parts = [header]
    if bench.rows:
        parts += ["", "### Rows", "", main_table(bench)]
    if bench.sweep:
        parts += ["", f"### Sweep: WORKERS × WORKER_THREADS on /health/db at c={SWEEP_C}", "",
                  sweep_table(bench)]
    if bench.relay:
        parts += ["", f"### Through delay-relay ({RELAY_DELAY_US / 1000:g} ms each way)", "",
                  relay_table(bench)]
    if bench.probes:
        parts += ["", f"### What probes cost: /health/db through delay-relay "
                  f"({PROBES_DELAY_US / 1000:g} ms each way, issue 18)", "", probes_table(bench),
                  "", "SELECT 1s = the app database's `xact_commit` delta in `pg_stat_database` "
                  "over the c=256 instance's whole life, warm-up included, its connections' "
                  "start-up transactions too, and `per request` divides by the answers of "
                  "its warm-up and cell (the bench's own queries run on the database "
                  "`postgres`); relay flights = round trips the app began through the relay "
                  "during the cell (handshakes included); in "
                  "flight = round trips begun and not yet answered, at the relay, and 'active' "
                  "app backends in pg_stat_activity sampled every "
                  f"{PROBES_SAMPLE_S * 1000:g} ms, which seldom catches a SELECT 1 (the server "
                  "executes it in microseconds; the round trip is in the relay)."]
    if bench.sb or bench.cg:
        parts += ["", f"### The scoreboard's cost on /health (c={SB_C}), and instruction counts", "",
                  scoreboard_section(bench)]
    parts += ["", "### Targets", "", verdicts(bench, sizing)]
    if findings(bench):
        parts += ["", "### Floor variants: libfcgi's close-time poll (OS_Close), "
                  "SCHED_BATCH", "", findings(bench)]
    if bench.notes:
        parts += ["", "### Notes", ""] + [f"- {n}" for n in bench.notes]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------- main

def sizing_from(cfg):
    workers = int(cfg["WORKERS"])
    per_worker = int(cfg["DB_POOL_SIZE"]) + int(cfg["DB_MAX_OVERFLOW"])
    threads = int(cfg["WORKER_THREADS"])
    return {"workers": workers, "threads": threads, "per_worker": per_worker,
            "bound": workers * per_worker}


def header_text(sizing, cfg_source, keepalive):
    load = open("/proc/loadavg").read().split()[:3]
    ver = subprocess.run([str(NEONFCGI), "--version"], capture_output=True,
                         text=True).stdout.strip() if os.access(NEONFCGI, os.X_OK) else "not built"
    return (f"## neonfcgi bench, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n\n"
            f"{ver}; {NCPU} CPUs, kernel {os.uname().release}, load average at start "
            f"{' '.join(load)}; wrk {DURATION:g} s per cell after a {WARMUP:g} s warm-up at the "
            f"same concurrency; the floor/product comparisons (the Rows table down to c=256) ran "
            f"in {ROUNDS} interleaved rounds, each cell shown as the median (failures and new "
            f"connections summed); nginx {NGINX_WORKERS} worker(s); keep-conn rows use upstream "
            f"keepalive {keepalive}. Product defaults ({cfg_source}): WORKERS="
            f"{sizing['workers']}, WORKER_THREADS={sizing['threads']}, "
            f"DB_POOL_SIZE+DB_MAX_OVERFLOW={sizing['per_worker']} per worker, so at most "
            f"{sizing['bound']} database connections; fcgi-floor runs WORKERS processes, "
            f"fcgi-db-floor one process per product connection.\n\n"
            f"CPU µs/req = utime+stime of each process tree (exited children included) over "
            f"the cell / requests; `app` is the product or the floor. `other CPU %` is the "
            f"machine's CPU used by processes outside the bench during the cell, in % of all "
            f"cores: the noise. Ratios compare with the floor row at the same c "
            f"(fcgi-floor for /health, fcgi-db-floor for /health/db). \"poll=0\" runs set "
            f"LIBFCGI_OS_CLOSE_POLL_TIMEOUT=0; \"SCHED_BATCH\" rows run the floor under "
            f"`chrt --batch`, the policy of the product's request threads. A cell with "
            f"`other CPU %` above {MAX_NOISE:g} was measured again (up to {MAX_ATTEMPTS} "
            f"times, {RETRY_BUDGET_S:g} s in all) and the quietest attempt kept; a star marks "
            f"one still above.")


def on_signal(sig, _frame):
    raise KeyboardInterrupt(f"signal {sig}")


def run(tmp):
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    for tool in ("wrk", "nginx", "pgbench"):
        if not shutil.which(tool):
            raise Fatal(f"{tool} not found (scripts/deps.sh bench installs it)")
    (tmp / "app").mkdir()  # the product's cwd: no ./.env of the developer's is read
    db = Database(tmp)
    try:
        say("starting PostgreSQL (scripts/dev-db.sh, TLS + scram, log_connections=on)")
        db.start()
        sampler = BackendSampler(db)
        sampler.start()
        try:
            return run_phases(tmp, db, sampler)
        finally:
            sampler.stop()
    finally:
        stop_all()
        db.stop()


def run_phases(tmp, db, sampler):
    probe = Bench(tmp, db, sampler, None)
    cfg = product_config(probe)
    sizing = sizing_from(cfg or CONTRACT_DEFAULTS)
    cfg_source = "from `neonfcgi check-config`" if cfg else "DESIGN.md's, product not runnable"
    threads_total = sizing["workers"] * sizing["threads"]
    keepalive = int(os.environ.get("BENCH_KEEPALIVE", max(1, threads_total // 2 // NGINX_WORKERS)))
    bench = Bench(tmp, db, sampler, Nginx(tmp, {"app_kc": keepalive,
                                                "app_kcg": KEEPALIVE_GUIDE}))
    bench.notes = probe.notes
    if not cfg:
        bench.notes.append(f"neonfcgi rows skipped: {NEONFCGI} not built or check-config failed")
    header = header_text(sizing, cfg_source, f"{keepalive} (threads / 2) and {KEEPALIVE_GUIDE} "
                         "(nginx tuning guides' value)")
    if "main" in PHASES:
        phase_main(bench, sizing, cfg is not None)
    if cfg and "sweep" in PHASES:
        phase_sweep(bench, sizing)
    if cfg and "relay" in PHASES:
        phase_relay(bench, sizing)
    if cfg and "probes" in PHASES:
        phase_probes(bench, sizing)
    if cfg and "scoreboard" in PHASES:
        phase_scoreboard(bench)
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    return report(bench, sizing, header + f" Load average at the end {load}; "
                  f"total {time.monotonic() - T_START:.0f} s.")


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="neonfcgi-bench.", dir="/tmp"))
    tmp.chmod(0o711)  # postgres (another user when we are root) traverses it
    try:
        text = run(tmp)
    except Fatal as e:
        say(f"failed: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted: servers stopped")
        return 130
    finally:
        if not os.environ.get("BENCH_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / time.strftime("bench-%Y%m%d-%H%M%S.md")
    out.write_text(text)
    (RESULTS / "latest.md").write_text(text)
    print(text)
    say(f"written to {out.relative_to(ROOT)} and bench/results/latest.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
