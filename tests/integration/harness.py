"""A tiny integration-test framework for neonfcgi (standard library only).

Tests are functions named test_* in tests/integration/test_*.py. Each argument
of a test names a fixture (see FIXTURES below and README.md); the harness builds
it, and tears it down after the test, whatever happened. Every wait is bounded;
every process a fixture starts is stopped by it.

Everything the servers wrote (stderr, stdout, nginx logs) and every response
body seen is kept in RECORD, so the run can check at the end that the database
password never appeared anywhere.
"""

import contextlib
import http.client
import inspect
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEV_DB_SH = REPO / "scripts" / "dev-db.sh"
NGINX_CONF = REPO / "deploy" / "nginx" / "neonfcgi.conf"
NGINX_SOCKET_PLACEHOLDER = "/run/neonfcgi/neonfcgi.sock"
NGINX_LISTEN_PLACEHOLDER = "127.0.0.1:8080"
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
# Passed through to the server's otherwise clean environment (SAN=... builds).
PASSTHROUGH_ENV = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS")
TMP_PREFIX = "neonfcgi-it-"


# --------------------------------------------------------------------------
# Failures, skips, bounded waiting


class Skip(Exception):
    """Raised by skip(): the test is reported as skipped."""


class TestTimeout(BaseException):
    """The per-test deadline passed. BaseException so that `except Exception`
    in a test cannot swallow it; finally blocks still run."""


def fail(msg):
    raise AssertionError(msg)


def skip(msg):
    raise Skip(msg)


def need(*tools):
    """Skip the test unless every tool is installed (on CLEAN_PATH); returns
    their paths."""
    paths = []
    for t in tools:
        path = shutil.which(t, path=CLEAN_PATH)
        if not path:
            skip(f"{t} not installed (scripts/deps.sh test)")
        paths.append(path)
    return paths


def slow(fn):
    """Decorator: a slow test, skipped when INTEGRATION_SKIP_SLOW=1 (the
    sanitizer pass of `make check` sets it to stay within CI's budget)."""
    fn.slow = True
    return fn


def wait_until(predicate, timeout=5.0, what=None, interval=0.01):
    """Poll predicate() until it returns a truthy value, which is returned.
    Raises AssertionError after `timeout` seconds. Exceptions raised by the
    predicate count as "not yet" (the last one is quoted in the failure)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, AssertionError, ValueError, KeyError) as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            desc = what or getattr(predicate, "__name__", "condition")
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            fail(f"timed out after {timeout:g}s waiting for {desc}{extra}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)


def free_port(host="127.0.0.1"):
    """A TCP port nothing listens on right now (bind port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# Everything seen during the run, for the password leak check


class Recorder:
    def __init__(self):
        self.items = []  # (label, bytes)

    def add(self, label, data):
        if data is None:
            return
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.items.append((label, bytes(data)))

    def add_file(self, label, path):
        try:
            self.add(label, Path(path).read_bytes())
        except FileNotFoundError:
            pass

    def containing(self, secret):
        needle = secret.encode() if isinstance(secret, str) else secret
        return [label for label, data in self.items if needle in data]


RECORD = Recorder()


# --------------------------------------------------------------------------
# Processes


def proc_stat(pid):
    """(state, ppid, pgid) of a process from /proc/<pid>/stat, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2])


def thread_stats(pid):
    """{tid: fields of /proc/<pid>/task/<tid>/stat from the state on} for each
    thread of a process ({} when it is gone): fields[0] is the state,
    fields[38] the scheduling policy."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return out
    for tid in tids:
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        out[int(tid)] = raw[raw.rindex(")") + 2:].split()
    return out


def pid_alive(pid):
    """True until every thread of the process has exited. The main thread can
    be a zombie while the others are still on their way out, holding the
    process's descriptors: a thread woken by SIGKILL that has not run yet
    still takes a connection queued on a listening socket, and the
    connection dies with it."""
    return any(f[0] not in ("Z", "X") for f in thread_stats(pid).values())


def _live_pids(field, value):
    """Live (non-zombie) pids whose /proc/<pid>/stat `field` (1 = ppid,
    2 = pgid) equals value, sorted."""
    out = []
    for d in os.listdir("/proc"):
        st = proc_stat(d) if d.isdigit() else None
        if st and st[field] == value and st[0] not in ("Z", "X"):
            out.append(int(d))
    return sorted(out)


def children_of(pid):
    """Live (non-zombie) child pids of pid, sorted. Scans /proc/*/stat because
    /proc/<pid>/task/*/children needs CONFIG_PROC_CHILDREN."""
    return _live_pids(1, pid)


def descendants_of(pid):
    result, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        result.extend(kids)
        todo.extend(kids)
    return sorted(result)


def process_group_members(pgid):
    return _live_pids(2, pgid)


def kill_quietly(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# Every signal a child gets back at its default disposition. An ignored
# signal stays ignored across exec and a blocked one stays blocked, so a
# runner started as a background job of a script (`(make check &)`: SIGINT
# and SIGQUIT ignored) would hand that on: scripts/run.sh then cannot even
# trap SIGINT, and Ctrl-C never stops `make run`.
_CHILD_DEFAULT_SIGNALS = tuple(s for s in signal.valid_signals()
                               if s not in (signal.SIGKILL, signal.SIGSTOP))


def _default_signals():
    """preexec_fn of every child (see spawn)."""
    for sig in _CHILD_DEFAULT_SIGNALS:
        with contextlib.suppress(OSError, ValueError):  # glibc keeps 32 and 33
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def spawn(args, new_session=True, **popen_kwargs):
    """The one way the tests start a process: subprocess.Popen of args, in a
    session (and process group) of its own unless new_session=False, with
    every signal at its default disposition and none blocked, whatever the
    runner inherited."""
    return subprocess.Popen([str(a) for a in args], preexec_fn=_default_signals,
                            start_new_session=new_session, **popen_kwargs)


@contextlib.contextmanager
def as_background_job(blocked=(signal.SIGUSR1,)):
    """The runner's signal state, for a while, as a script's `(make check &)`
    leaves it: SIGINT and SIGQUIT ignored (a non-interactive shell's
    background job), SIGHUP ignored (nohup), and `blocked` blocked; restored
    afterwards. What spawn() must not hand on."""
    ignored = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in ignored}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def halt(proc, *steps):
    """Stop a process from spawn() and what is left of its process group:
    for each (signal, seconds) step while it runs, send the signal and wait
    that long; then SIGKILL the group and reap the process. Returns its exit
    status."""
    for sig, seconds in steps:
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=seconds)
    _kill_group(proc.pid)
    if proc.poll() is None:
        proc.kill()
    return proc.wait()


@dataclass
class Result:
    """Outcome of a one-shot command."""
    args: list
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self):
        return self.stdout + self.stderr

    def describe(self, limit=None, secret=None):
        """The command, its exit code and its output (the last `limit`
        characters of each stream when limit is given), secret hidden."""
        cut = slice(-limit if limit else None, None)
        return hide(f"{' '.join(map(str, self.args))} -> exit {self.rc}\n"
                    f"--- stdout\n{self.stdout[cut]}--- stderr\n{self.stderr[cut]}", secret)

    def expect(self, rc, secret=None):
        """Fail unless the command printed no secret (the database password)
        and exited rc; returns self."""
        if secret and secret in self.output:
            fail(f"the database password was printed\n{self.describe(secret=secret)}")
        if self.rc != rc:
            fail(f"exit code {self.rc}, expected {rc}\n{self.describe(secret=secret)}")
        return self


def run_command(args, env, cwd, timeout=15.0, label=None, stdin=subprocess.DEVNULL,
                input=None, record=True, check=False):
    """Run a command to completion within timeout (else kill it and fail);
    input (str or bytes) is written to its stdin; check=True fails unless it
    exits 0. stdout/stderr are recorded for the leak check unless
    record=False (output that legitimately holds the password, such as
    dev-db.sh's URL)."""
    if input is not None:
        stdin = subprocess.PIPE
        input = input.encode() if isinstance(input, str) else input
    proc = spawn(args, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    label = label or str(args[0])
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        if record:
            RECORD.add(f"{label} stdout", out)
            RECORD.add(f"{label} stderr", err)
        fail(f"{' '.join(map(str, args))} did not exit within {timeout:g}s\n"
             f"--- stderr\n{err.decode(errors='replace')[-2000:]}")
    except BaseException:
        halt(proc)
        raise
    if record:
        RECORD.add(f"{label} stdout", out)
        RECORD.add(f"{label} stderr", err)
    res = Result(list(args), proc.returncode, out.decode(errors="replace"),
                 err.decode(errors="replace"))
    if check and res.rc != 0:
        fail(res.describe(limit=1500))
    return res


def hide(text, secret):
    """text with every occurrence of secret replaced by <PASSWORD>, for a
    failure message that quotes output."""
    return text.replace(secret, "<PASSWORD>") if secret else text


def read_text(path):
    """The text of a file (undecodable bytes replaced), "" when it is missing."""
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def tail(path_or_text, lines=25):
    if isinstance(path_or_text, Path):
        try:
            path_or_text = path_or_text.read_text(errors="replace")
        except FileNotFoundError:
            return "(no file)"
    return "\n".join(path_or_text.splitlines()[-lines:])


LOG_LEVELS = ("debug", "info", "warn", "error")
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def json_log(text):
    """The objects of a LOG_FORMAT=json log, each line checked: a JSON
    object with ts (RFC 3339, UTC), level (one of LOG_LEVELS), pid (a
    positive integer: the writer's) and msg (a string). Fails at the first
    line that is not, and when there is no line at all."""
    objs = []
    for ln in text.splitlines():
        try:
            obj = json.loads(ln)
        except ValueError:
            fail(f"log line is not JSON: {ln!r}")
        assert isinstance(obj, dict), f"log line is not a JSON object: {ln}"
        missing = [k for k in ("ts", "level", "pid", "msg") if k not in obj]
        assert not missing, f"missing {missing}: {ln}"
        pid = obj["pid"]
        assert type(pid) is int and pid > 0, f"pid is not a number: {ln}"
        assert isinstance(obj["msg"], str), f"msg is not a string: {ln}"
        assert obj["level"] in LOG_LEVELS, f"unknown level: {ln}"
        assert isinstance(obj["ts"], str) and RFC3339_UTC.fullmatch(obj["ts"]), \
            f"ts is not RFC 3339 UTC: {ln}"
        objs.append(obj)
    assert objs, "no log lines at all"
    return objs


# --------------------------------------------------------------------------
# HTTP


@dataclass
class Response:
    status: int
    headers: list  # [(name, value)] in order received
    body: bytes
    reason: str = ""
    stderr: bytes = b""  # FastCGI only: the FCGI_STDERR stream
    app_status: int = 0  # FastCGI only: appStatus of END_REQUEST

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as exc:
            fail(f"response body is not JSON ({exc}): {self.body[:300]!r}")

    def __str__(self):
        hdrs = "".join(f"{k}: {v}\n" for k, v in self.headers)
        return f"{self.status} {self.reason}\n{hdrs}\n{self.text[:1000]}"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self):
        self.sock = _connect(self.unix_path, self.timeout)


def http_request(port, method="GET", path="/", headers=None, body=None,
                 host="127.0.0.1", timeout=5.0, unix=None):
    """One HTTP/1.1 request on a fresh connection to host:port, or to the
    unix socket path `unix` (port is then ignored); returns a Response."""
    if unix is not None:
        conn = _UnixHTTPConnection(unix, timeout)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        r = Response(resp.status, list(resp.getheaders()), data, resp.reason)
    finally:
        conn.close()
    RECORD.add(f"http {method} {path} body", r.body)
    return r


def wait_listening(proc, address, what, logs, timeout=10.0):
    """Until address (a unix socket path or (host, port)) accepts a
    connection. Fails, quoting logs(), when proc exits first or after
    timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            fail(f"{what} exited with {proc.returncode} at start-up\n{logs()}")
        with contextlib.suppress(OSError):
            _connect(address, 0.5).close()
            return
        if time.monotonic() > deadline:
            fail(f"{what} not listening on {address} after {timeout:g}s\n{logs()}")
        time.sleep(0.02)


# --------------------------------------------------------------------------
# FastCGI client (spec: https://fastcgi-archives.github.io/FastCGI_Specification.html)

FCGI_VERSION_1 = 1
FCGI_BEGIN_REQUEST, FCGI_ABORT_REQUEST, FCGI_END_REQUEST = 1, 2, 3
FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR = 4, 5, 6, 7
FCGI_GET_VALUES, FCGI_GET_VALUES_RESULT = 9, 10
FCGI_RESPONDER = 1
FCGI_KEEP_CONN = 1


def fcgi_record(rtype, content=b"", request_id=1):
    if len(content) > 65535:
        raise ValueError("record content too long")
    pad = -len(content) % 8
    return (struct.pack("!BBHHBx", FCGI_VERSION_1, rtype, request_id, len(content), pad)
            + content + b"\0" * pad)


def _fcgi_len(n):
    return struct.pack("!B", n) if n < 128 else struct.pack("!I", n | 0x80000000)


def fcgi_encode_params(params):
    out = bytearray()
    for k, v in params.items():
        k = k.encode() if isinstance(k, str) else k
        v = v.encode() if isinstance(v, str) else v
        out += _fcgi_len(len(k)) + _fcgi_len(len(v)) + k + v
    return bytes(out)


def _stream_records(rtype, data, request_id):
    out = b""
    for i in range(0, len(data), 65528):
        out += fcgi_record(rtype, data[i:i + 65528], request_id)
    return out + fcgi_record(rtype, b"", request_id)


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"FastCGI peer closed the connection "
                                  f"({len(buf)} of {n} bytes read)")
        buf += chunk
    return buf


def _connect(address, timeout):
    if isinstance(address, (str, Path)):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = str(address)
    else:
        s = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET,
                          socket.SOCK_STREAM)
        target = tuple(address)
    s.settimeout(timeout)
    try:
        s.connect(target)
    except BaseException:
        s.close()
        raise
    return s


def parse_cgi_response(stdout):
    """Split CGI-style output into (status, reason, headers, body)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = stdout.find(sep)
        if idx >= 0:
            head, body = stdout[:idx], stdout[idx + len(sep):]
            break
    else:
        fail(f"FastCGI response has no header/body separator: {stdout[:300]!r}")
    headers = []
    for line in head.decode("latin-1").splitlines():
        if not line.strip():
            continue
        if ":" not in line:
            fail(f"malformed CGI header line {line!r}")
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    status, reason = 200, "OK"
    for k, v in headers:
        if k.lower() == "status":
            code, _, reason = v.partition(" ")
            status = int(code)
    return status, reason, headers, body


def fcgi_request(address, params, stdin=b"", timeout=5.0, request_id=1):
    """One FastCGI RESPONDER request over a fresh connection to a unix socket
    path or a (host, port) pair. Returns a Response (status from `Status:`,
    200 when absent) with .stderr and .app_status filled in."""
    msg = (fcgi_record(FCGI_BEGIN_REQUEST,
                       struct.pack("!HB5x", FCGI_RESPONDER, 0), request_id)
           + _stream_records(FCGI_PARAMS, fcgi_encode_params(params), request_id)
           + _stream_records(FCGI_STDIN, stdin, request_id))
    out, err = bytearray(), bytearray()
    with _connect(address, timeout) as s:
        s.sendall(msg)
        while True:
            version, rtype, rid, clen, plen = struct.unpack("!BBHHBx", _recv_exact(s, 8))
            content = _recv_exact(s, clen + plen)[:clen]
            if rid != request_id and rtype != FCGI_GET_VALUES_RESULT:
                continue
            if rtype == FCGI_STDOUT:
                out += content
            elif rtype == FCGI_STDERR:
                err += content
            elif rtype == FCGI_END_REQUEST:
                app_status, proto_status = struct.unpack("!IB3x", content)
                break
    RECORD.add(f"fcgi {params.get('REQUEST_URI', '?')} stdout", out)
    RECORD.add(f"fcgi {params.get('REQUEST_URI', '?')} stderr", err)
    if proto_status != 0:
        fail(f"FastCGI END_REQUEST protocolStatus={proto_status}")
    status, reason, headers, body = parse_cgi_response(bytes(out))
    return Response(status, headers, body, reason, bytes(err), app_status)


def fcgi_params(path, method="GET", query=None, script_name=None, path_info="",
                **extra):
    """CGI parameters as nginx (deploy/nginx/neonfcgi.conf) sends them for
    `path` (which may carry ?query). Keyword arguments add or override."""
    base, _, qs = path.partition("?")
    if query is not None:
        qs = query
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "REQUEST_URI": base + ("?" + qs if qs else ""),
        "SCRIPT_NAME": base if script_name is None else script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": qs,
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "HTTP_HOST": "localhost",
    }
    params.update({k: str(v) for k, v in extra.items()})
    return params


def fcgi_get(address, path, method="GET", timeout=5.0, **extra):
    """Shorthand: fcgi_request(address, fcgi_params(path, method, **extra))."""
    return fcgi_request(address, fcgi_params(path, method, **extra), timeout=timeout)


# --------------------------------------------------------------------------
# The dev database (scripts/dev-db.sh with a private DEV_DB_DIR)


class DevDB:
    """A throwaway TLS PostgreSQL. Attributes: url (sslmode=require),
    url_verify_full, password, port, ca, sockdir, dir."""

    def __init__(self, extra_conf=None):
        self.dir = tempfile.mkdtemp(prefix=TMP_PREFIX + "db-")
        self.extra_conf = extra_conf
        self.url = None

    def _env(self, extra_conf=None):
        env = {"PATH": CLEAN_PATH, "DEV_DB_DIR": self.dir}
        conf = extra_conf if extra_conf is not None else self.extra_conf
        if conf is not None:
            env["DEV_DB_EXTRA_CONF"] = conf
        return env

    def sh(self, *args, timeout=90.0, extra_conf=None, check=True):
        """Run scripts/dev-db.sh ARGS; returns a Result (output not recorded:
        it holds the URL). Its own process group: a Ctrl-C meant for the
        runner does not cut it short, and an interrupted call is killed with
        all its children."""
        res = run_command([DEV_DB_SH, *args], self._env(extra_conf), "/", timeout,
                          label="dev-db.sh", record=False)
        if check and res.rc != 0:
            fail(f"dev-db.sh {' '.join(args)} failed ({res.rc}): "
                 f"{res.stderr.strip()[-1500:]}")
        return res

    def psql_process(self, *args, **popen_kwargs):
        """A long-lived `dev-db.sh psql ARGS` as the superuser (spawn()ed:
        stop it with halt())."""
        return spawn([DEV_DB_SH, "psql", *args], env=self._env(), cwd="/", **popen_kwargs)

    def start(self, extra_conf=None):
        """Start (or resume after halt()); returns the URL."""
        self.url = self.sh("start", extra_conf=extra_conf).stdout.strip()
        self.url_verify_full = self.sh("url", "--verify-full").stdout.strip()
        self.ca = self.sh("ca").stdout.strip()
        self.sockdir = self.sh("sockdir").stdout.strip()
        self.port = int(self.sh("port").stdout.strip())
        self.password = urllib.parse.unquote(urllib.parse.urlsplit(self.url).password)
        return self.url

    def halt(self):
        """Stop the server, keep data/port/password (start() resumes)."""
        self.sh("halt")

    def restart(self, extra_conf=None):
        self.sh("restart", extra_conf=extra_conf)

    def stop(self):
        """Stop and remove everything (session teardown)."""
        try:
            self.sh("stop", timeout=60)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def running(self):
        return self.sh("status", check=False).rc == 0

    def pid(self):
        return int(self.sh("pid").stdout.strip())

    def psql(self, sql, *args, timeout=30.0):
        """Run SQL as the superuser over the unix socket; returns stdout
        (unaligned, tuples only: one row a line, columns separated by |)."""
        return self.sh("psql", "-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql, *args,
                       timeout=timeout).stdout

    def app_url(self, application_name):
        """The URL with application_name set, so that pg_stat_activity tells
        a test's backends from any other client's."""
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query))
        return self.url_variant(query={**query, "application_name": application_name})

    def url_variant(self, scheme=None, user=None, password=None, host=None, port=None,
                    dbname=None, query=None):
        """The URL with parts replaced; query is a dict replacing the whole
        query string ({} removes it)."""
        u = urllib.parse.urlsplit(self.url)
        user = u.username if user is None else user
        password = self.password if password is None else password
        host = u.hostname if host is None else host
        port = u.port if port is None else port
        netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{host}" + (
            f":{port}" if port else "")
        q = u.query if query is None else urllib.parse.urlencode(query, safe="/")
        path = u.path if dbname is None else "/" + dbname
        return urllib.parse.urlunsplit((scheme or u.scheme, netloc, path, q, ""))


# --------------------------------------------------------------------------
# neonfcgi


class Server:
    """A running neonfcgi (or a wrapper that execs it, like spawn-fcgi -n).
    Use as a context manager; __exit__ stops it and, when the test body did not
    fail already, asserts a clean exit (see stop())."""

    def __init__(self, args, env, cwd, workdir, address, owns_socket, label):
        self.args = [str(a) for a in args]
        self.env = env
        self.cwd = cwd
        self.dir = Path(workdir)
        self.address = address          # unix socket path or (host, port)
        self.socket = address if isinstance(address, str) else None
        self.owns_socket = owns_socket  # neonfcgi created it, so must remove it
        self.label = label
        self.stderr_path = self.dir / "stderr.log"
        self.stdout_path = self.dir / "stdout.log"
        self.seen_workers = set()
        self.returncode = None
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.proc = spawn(self.args, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=self._out, stderr=self._err)
        self.pid = self.proc.pid
        self._recorded = False

    # -- observing
    def log(self):
        """Everything written to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def json_log(self):
        """The log (LOG_FORMAT=json) as objects, every line checked: json_log()."""
        return json_log(self.log())

    def running(self):
        return self.proc.poll() is None

    def log_mark(self):
        """Current length of the log, for wait_log(since=...)."""
        return len(self.log())

    def wait_log(self, pattern, timeout=5.0, flags=re.M, since=0):
        """Wait until the log (from offset `since`, see log_mark()) matches
        regex `pattern`; returns the match."""
        rx = re.compile(pattern, flags)
        try:
            return wait_until(lambda: rx.search(self.log()[since:]), timeout,
                              what=f"log line matching {pattern!r}")
        except AssertionError as exc:
            fail(f"{exc}\n--- log tail\n{tail(self.log())}")

    def workers(self):
        """Live child pids of the master, sorted."""
        kids = children_of(self.pid)
        self.seen_workers.update(kids)
        return kids

    def wait_workers(self, n, timeout=5.0, exclude=()):
        """Wait until exactly n workers run and none of `exclude` is among them."""
        exclude = set(exclude)

        def ok():
            w = self.workers()
            return w if len(w) == n and not exclude & set(w) else None
        try:
            return wait_until(ok, timeout, what=f"{n} workers (not {sorted(exclude)})")
        except AssertionError as exc:
            fail(f"{exc}; now {self.workers()}\n--- log tail\n{tail(self.log())}")

    def get(self, path, method="GET", timeout=5.0, **extra):
        """FastCGI request straight to the server's socket."""
        return fcgi_get(self.address, path, method, timeout=timeout, **extra)

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    # -- lifecycle
    def wait_ready(self, timeout=10.0):
        """Until GET /health over FastCGI answers 200 (fails early if the
        process exits)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                self._finish()
                fail(f"{self.label} exited with {self.proc.returncode} during start-up\n"
                     f"--- log tail\n{tail(self.stderr_path)}")
            try:
                r = self.get("/health", timeout=max(0.2, deadline - time.monotonic()))
                if r.status == 200:
                    self.workers()
                    return self
                last = f"status {r.status}"
            except (OSError, ConnectionError, AssertionError) as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                fail(f"{self.label} not ready after {timeout:g}s ({last})\n"
                     f"--- log tail\n{tail(self.stderr_path)}")
            time.sleep(0.02)

    def wait_exit(self, timeout):
        """Wait for the master to exit; returns its exit code (negative
        signal number if killed) or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=15.0, expect_rc=0, check=True):
        """Send sig, wait up to timeout, then check: exit code expect_rc, the
        socket file gone (when neonfcgi created it), no worker left. SIGKILLs
        the whole process group on timeout. Returns the exit code."""
        if self.proc.poll() is None:
            self.workers()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
        rc = self.wait_exit(timeout)
        problems = []
        if rc is None:
            problems.append(f"did not exit within {timeout:g}s of signal {sig}")
        leftovers = self._reap_leftovers()
        if leftovers:
            problems.append(f"processes left behind: {leftovers}")
        rc = self.proc.returncode
        if check:
            if rc is not None and expect_rc is not None and rc != expect_rc:
                problems.append(f"exit code {rc}, expected {expect_rc}")
            if self.owns_socket and self.socket and os.path.lexists(self.socket):
                problems.append(f"socket file {self.socket} not removed")
        self._finish()
        if problems and check:
            fail(f"{self.label}: " + "; ".join(problems)
                 + f"\n--- log tail\n{tail(self.stderr_path)}")
        return rc

    def _reap_leftovers(self):
        """Workers that outlived the master (bounded wait, then SIGKILL)."""
        live = lambda: [p for p in self.seen_workers | set(process_group_members(self.pid))
                        if pid_alive(p) and p != self.pid]
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not live(), 2.0)
        left = sorted(live())
        halt(self.proc)
        for p in left:
            kill_quietly(p)
        return left

    def _finish(self):
        if self._recorded:
            return
        self._recorded = True
        for f in (self._err, self._out):
            f.close()
        RECORD.add_file(f"{self.label} stderr", self.stderr_path)
        RECORD.add_file(f"{self.label} stdout", self.stdout_path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.returncode is None and self.proc.returncode is None:
            # After a failure, just clean up; the first error is the one to report.
            self.stop(check=exc_type is None, timeout=15.0 if exc_type is None else 5.0)
        else:
            self._reap_leftovers()
            self._finish()
        return False


class NeonfcgiFactory:
    """The `neonfcgi` fixture: runs the binary with a clean environment
    (PATH, DATABASE_URL, and the variables given; a value of None removes one)
    in a private directory, so no .env from the repository is read."""

    def __init__(self, binary, database_url, tmp_path):
        self.binary = str(binary)
        self.database_url = database_url
        self.tmp = Path(tmp_path)
        self._n = 0

    def workdir(self, name="srv"):
        self._n += 1
        d = self.tmp / f"{name}{self._n}"
        d.mkdir()
        return d

    def env(self, env=None, **vars):
        e = {"PATH": CLEAN_PATH}
        if self.database_url:
            e["DATABASE_URL"] = self.database_url
        for k in PASSTHROUGH_ENV:
            if k in os.environ:
                e[k] = os.environ[k]
        for k, v in {**(env or {}), **vars}.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = str(v)
        return e

    def run(self, *args, env=None, cwd=None, timeout=15.0, **vars):
        """Run `neonfcgi ARGS` to completion (e.g. check-config); returns a
        Result(rc, stdout, stderr, output)."""
        cwd = cwd or self.workdir("run")
        return run_command([self.binary, *args], self.env(env, **vars), cwd, timeout,
                           label="neonfcgi " + " ".join(args))

    def start(self, *args, env=None, cwd=None, listen="unix", address=None, wrap=(),
              ready=True, ready_timeout=10.0, owns_socket=None, **vars):
        """Start a server; returns a Server (a context manager).
        listen="unix": API_SOCKET=<private dir>/neonfcgi.sock;
        listen="tcp": API_HOST=127.0.0.1, API_PORT=<free port>;
        listen=None: set nothing, pass address= (socket path or (host, port)).
        wrap: a command prefix that execs neonfcgi (e.g. spawn-fcgi -n ...).
        ready: wait until GET /health answers 200 over FastCGI."""
        d = self.workdir()
        vars = dict(vars)
        if listen == "unix":
            address = address or str(d / "neonfcgi.sock")
            vars.setdefault("API_SOCKET", address)
        elif listen == "tcp":
            port = free_port()
            vars.setdefault("API_HOST", "127.0.0.1")
            vars.setdefault("API_PORT", port)
            address = address or ("127.0.0.1", int(vars["API_PORT"]))
        if owns_socket is None:
            owns_socket = listen == "unix"
        argv = [*wrap, self.binary, *args]
        srv = Server(argv, self.env(env, **vars), cwd or d, d, address, owns_socket,
                     label=f"neonfcgi[{d.name}]")
        if ready:
            try:
                srv.wait_ready(ready_timeout)
            except BaseException:
                srv.stop(check=False, timeout=5.0)
                raise
        return srv

    def start_spawned(self, *args, env=None, ready=True, **vars):
        """Started by `spawn-fcgi -n -s SOCK --` (listen socket on fd 0);
        spawn-fcgi execs neonfcgi, so the Server's pid is neonfcgi's."""
        d = self.workdir("spawnsock")
        sock = str(d / "spawned.sock")
        return self.start(*args, env=env, listen=None, address=sock,
                          wrap=["spawn-fcgi", "-n", "-s", sock, "--"], ready=ready,
                          owns_socket=False, **vars)


# --------------------------------------------------------------------------
# nginx


def nginx_site(conf_template, upstream, listen):
    """The text of an nginx site template (deploy/nginx/neonfcgi.conf) with
    its placeholders replaced: upstream is a unix socket path, "host:port" or
    (host, port); listen is what nginx listens on ("127.0.0.1:8080")."""
    text = Path(conf_template).read_text()
    if isinstance(upstream, str) and upstream.startswith("/"):
        text = text.replace(NGINX_SOCKET_PLACEHOLDER, upstream)
    else:  # "host:port" or (host, port): TCP upstream
        hp = upstream if isinstance(upstream, str) else f"{upstream[0]}:{upstream[1]}"
        text = text.replace("unix:" + NGINX_SOCKET_PLACEHOLDER, hp)
    return text.replace(NGINX_LISTEN_PLACEHOLDER, listen)


class Nginx:
    """A private nginx (own prefix, temp paths, logs) serving site_text,
    which listens on 127.0.0.1:<port> or, with unix=PATH, on that unix
    socket. wrap: a command prefix that execs nginx (`ip netns exec NS`).
    user: the user its workers run as (default: root when run as root)."""

    def __init__(self, workdir, site_text, port=None, unix=None, wrap=(), extra_http="",
                 user=None):
        self.dir = Path(workdir)
        self.port = port
        self.unix = unix
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.error_log = self.dir / "logs" / "error.log"
        self.access_log = self.dir / "logs" / "access.log"
        (self.dir / "site.conf").write_text(site_text)
        d = self.dir
        user = f"user {user or 'root'};\n" if os.geteuid() == 0 else ""
        (d / "nginx.conf").write_text(f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
worker_rlimit_nofile 8192;
error_log {self.error_log} info;
# Each client connection also holds a FastCGI connection: room for wrk -c1024.
events {{ worker_connections 4096; }}
http {{
    access_log {self.access_log};
    client_body_temp_path {d}/client_body;
    fastcgi_temp_path {d}/fastcgi;
    proxy_temp_path {d}/proxy;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{extra_http}
    include {d}/site.conf;
}}
""")
        self._err = open(d / "stderr.log", "wb")
        self.proc = spawn([*wrap, "nginx", "-p", d, "-e", self.error_log, "-c", d / "nginx.conf"],
                          stdin=subprocess.DEVNULL, stdout=self._err, stderr=self._err,
                          env={"PATH": CLEAN_PATH})
        self._done = False

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout=10.0):
        try:
            wait_listening(self.proc, self.unix or ("127.0.0.1", self.port), "nginx",
                           lambda: f"{tail(self.error_log)}\n{tail(self.dir / 'stderr.log')}",
                           timeout)
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def request(self, method, path, headers=None, body=None, timeout=5.0):
        return http_request(self.port, method, path, headers, body, timeout=timeout,
                            unix=self.unix)

    def get(self, path, headers=None, timeout=5.0):
        return self.request("GET", path, headers, timeout=timeout)

    def stop(self, check=True):
        if self._done:
            return
        self._done = True
        try:
            halt(self.proc, (signal.SIGQUIT, 5.0), (signal.SIGTERM, 3.0))  # graceful first
        finally:
            self._err.close()
            RECORD.add_file("nginx error.log", self.error_log)
            RECORD.add_file("nginx access.log", self.access_log)
            RECORD.add_file("nginx stderr", self.dir / "stderr.log")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class NginxFactory:
    """The `nginx` fixture: start(upstream) -> Nginx (context manager, ready).
    upstream: a unix socket path, "host:port" or (host, port)."""

    def __init__(self, tmp_path):
        self.tmp = Path(tmp_path)
        self._n = 0

    def _new(self, site_text, **kwargs):
        self._n += 1
        return Nginx(self.tmp / f"nginx{self._n}", site_text, **kwargs)

    def start(self, upstream, conf_template=NGINX_CONF, extra_http="", attempts=3, user=None):
        # A port picked by binding port 0 can be taken before nginx binds it:
        # retry with a fresh one when that is why nginx failed.
        for attempt in range(attempts):
            port = free_port()
            ng = self._new(nginx_site(conf_template, upstream, f"127.0.0.1:{port}"),
                           port=port, extra_http=extra_http, user=user)
            try:
                return ng.wait_ready()
            except AssertionError:
                if "Address already in use" in tail(ng.error_log) and attempt + 1 < attempts:
                    continue
                raise
        raise AssertionError("unreachable")

    def start_unix(self, site_text, sock, wrap=()):
        """nginx serving site_text, whose only listener is the unix socket
        sock (reachable across network namespaces through the file
        system); wrap: e.g. `ip netns exec NS`."""
        return self._new(site_text, unix=str(sock), wrap=wrap).wait_ready()


@contextlib.contextmanager
def behind_nginx(neonfcgi, nginx, **vars):
    """neonfcgi.start(**vars) with nginx in front of its socket; yields
    (server, nginx) and stops both."""
    with neonfcgi.start(**vars) as srv, nginx.start(srv.socket) as web:
        yield srv, web


# --------------------------------------------------------------------------
# Fixtures

FIXTURES = {}


def fixture(scope="test", name=None):
    """Register a fixture. scope "session": built once per run, torn down at
    the end; "test": per test. The function's own arguments are fixtures too;
    a generator function yields the value and cleans up after the yield."""
    def deco(fn):
        FIXTURES[name or fn.__name__] = (scope, fn)
        return fn
    return deco


class FixtureScope:
    def __init__(self, parent=None):
        self.values = {}
        self.errors = {}
        self.stack = contextlib.ExitStack()
        self.parent = parent

    def close(self):
        self.stack.close()


def resolve(name, test_scope, session_scope, resolving=()):
    if name not in FIXTURES:
        raise LookupError(f"unknown fixture {name!r}")
    if name in resolving:
        raise LookupError(f"fixture cycle: {' -> '.join(resolving + (name,))}")
    scope_name, fn = FIXTURES[name]
    scope = session_scope if scope_name == "session" else test_scope
    if name in scope.values:
        return scope.values[name]
    if name in scope.errors:  # a session fixture that failed is not retried
        raise scope.errors[name]
    try:
        return _build(name, fn, scope, test_scope, session_scope, resolving)
    except Exception as exc:
        if scope is session_scope:
            scope.errors[name] = exc
        raise


def _build(name, fn, scope, test_scope, session_scope, resolving):
    kwargs = {}
    for p in inspect.signature(fn).parameters:
        if scope is session_scope and FIXTURES.get(p, ("session",))[0] != "session":
            raise LookupError(f"session fixture {name!r} cannot use test fixture {p!r}")
        kwargs[p] = resolve(p, test_scope, session_scope, resolving + (name,))
    if inspect.isgeneratorfunction(fn):
        gen = fn(**kwargs)
        value = next(gen)

        def finish(gen=gen):
            with contextlib.suppress(StopIteration):
                next(gen)
        scope.stack.callback(finish)
    else:
        value = fn(**kwargs)
    scope.values[name] = value
    return value


@fixture(scope="session")
def neonfcgi_bin():
    """Absolute path of the binary under test (NEONFCGI_BIN, else build/neonfcgi)."""
    b = os.environ.get("NEONFCGI_BIN") or str(REPO / "build" / "neonfcgi")
    if not os.access(b, os.X_OK):
        skip(f"no executable neonfcgi at {b} (set NEONFCGI_BIN or run make)")
    return os.path.abspath(b)


@fixture(scope="session")
def dev_db():
    """The run's throwaway PostgreSQL (DevDB), started on first use."""
    db = DevDB()
    try:
        db.start()
    except BaseException:
        db.stop()
        raise
    SESSION_STATE["dev_db"] = db
    yield db
    db.stop()


@fixture(scope="session")
def database_url(dev_db):
    """dev_db.url: postgresql://app:<pw>@127.0.0.1:<port>/app?sslmode=require"""
    return dev_db.url


@fixture()
def tmp_path():
    """A fresh directory under /tmp, removed after the test."""
    d = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@fixture()
def neonfcgi(neonfcgi_bin, database_url, tmp_path):
    """NeonfcgiFactory: .run(*args, **vars), .start(*args, **vars),
    .start_spawned(**vars), .env(**vars), .workdir()."""
    return NeonfcgiFactory(neonfcgi_bin, database_url, tmp_path)


@fixture()
def nginx(tmp_path):
    """NginxFactory: .start(upstream) -> Nginx (context manager)."""
    return NginxFactory(tmp_path)


# Session-wide objects the runner inspects at the end (e.g. the password).
SESSION_STATE = {}
