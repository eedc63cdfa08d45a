"""A database behind a network we control: two network namespaces of our own
joined by a veth pair on a /30, a second PostgreSQL (TLS, SCRAM, role and
database `app`) listening inside the db namespace, and the application meant
to run inside the app namespace (`wrap=ns.app_exec()` for neonfcgi.start).

    from netns import NetnsPostgres
    with NetnsPostgres(password=dev_db.password, cert=..., key=...) as ns:
        ns.check_route()                  # before any packet to ns.db_addr
        srv = neonfcgi.start(wrap=ns.app_exec(), DATABASE_URL=ns.url())
        ns.blackhole()                    # iptables DROP in the db namespace

Nothing outside the namespaces routes to their addresses (10.251.0.0/30 by
default): the root namespace has a default route off the machine, so nothing
here ever sends a packet to them from the root namespace; the application
reaches its API socket through the file system (unix sockets cross network
namespaces), the superuser reaches PostgreSQL through its unix socket.

The app role gets the password given (pass the run's dev-db password, so the
run's password_never_leaked check covers this server too); it travels on
psql's stdin, never on a command line. stop() stops PostgreSQL, deletes both
namespaces (and with them the veth pair and the firewall rules), records the
server log and removes the directory; it is safe to call more than once.

Both build on Namespaces (and the `netns` fixture, test scope): network
namespaces of one test, joined by veth pairs whose two ends both live in them,
each route checked before the first packet, all deleted (and checked gone)
at the end.
"""

import functools
import os
import pwd
import re
import shutil
import signal
import tempfile
from pathlib import Path
from urllib.parse import quote

import harness
from harness import (CLEAN_PATH, DEV_DB_SH, RECORD, TMP_PREFIX, fail, pid_alive, read_text,
                     tail, wait_until)

PG_OS_USER = "postgres"


def _run(args, check=True, timeout=30.0, input=None):
    """A command to completion (output recorded); check: fail unless it exits 0."""
    return harness.run_command(args, {"PATH": CLEAN_PATH}, "/", timeout, input=input,
                               check=check)


@functools.cache
def pgbin():
    """The server's bin directory, found as the dev database's (the newest
    major version installed)."""
    r = _run([DEV_DB_SH, "bindir"], check=False, timeout=10)
    if r.rc != 0:
        harness.skip(r.stderr.strip() or "no PostgreSQL server installed")
    return Path(r.stdout.strip())


def netns_list():
    """Names of the network namespaces that exist now."""
    out = _run([harness.need("ip")[0], "netns", "list"], timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


class Namespaces:
    """Network namespaces named <prefix>-<tag> (prefix: nfdp-<our pid> unless
    given), joined by veth pairs whose two ends both live in them. close()
    deletes them and asserts that none with the prefix is left."""

    def __init__(self, prefix=None):
        if os.geteuid() != 0:
            harness.skip("network namespaces need root")
        self.ip_bin = harness.need("ip")[0]
        self.prefix = prefix or f"nfdp-{os.getpid()}"
        self.names = []

    def ip(self, *args, check=True, timeout=15.0):
        return _run([self.ip_bin, *args], check=check, timeout=timeout).stdout

    def add(self, tag):
        name = f"{self.prefix}-{tag}"
        if name in netns_list():
            fail(f"network namespace {name} already exists (left by a crashed run?)")
        self.ip("netns", "add", name)
        self.names.append(name)
        self.ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, ns1, dev1, addrs1, ns2, dev2, addrs2):
        """A veth pair created straight into ns1 and ns2 (never in ours)."""
        self.ip("link", "add", "name", dev1, "netns", ns1, "type", "veth",
                "peer", "name", dev2, "netns", ns2)
        for ns, dev, addrs in ((ns1, dev1, addrs1), (ns2, dev2, addrs2)):
            for a in addrs:
                self.ip("-n", ns, "addr", "add", a, "dev", dev)
            self.ip("-n", ns, "link", "set", dev, "up")

    def check_route(self, ns, addr, dev):
        """Before any packet to addr from ns: it must leave by our veth,
        never by a route off the machine."""
        out = self.ip("netns", "exec", ns, self.ip_bin, "route", "get", addr)
        if not re.search(rf"^{re.escape(addr)} dev {re.escape(dev)} ", out):
            fail(f"in {ns}, {addr} is not routed over {dev}: {out.strip()!r}")

    def exec_prefix(self, ns):
        """`ip netns exec NS`: it execs the program, the pid stays the program's."""
        return [self.ip_bin, "netns", "exec", ns]

    def close(self):
        for ns in reversed(self.names):
            self.ip("netns", "delete", ns, check=False)
        left = [n for n in netns_list() if n.startswith(self.prefix + "-")]
        self.names = []
        assert not left, f"network namespaces left behind: {left}"


@harness.fixture()
def netns():
    """Namespaces of this test, deleted (and checked gone) after it."""
    ns = Namespaces()
    try:
        yield ns
    finally:
        ns.close()


class NetnsPostgres:
    """Attributes: app_ns, db_ns, app_dev, db_dev, app_addr, db_addr, port,
    dir, log_path, sockdir."""

    def __init__(self, password, cert, key, tag=None, app_addr="10.251.0.1",
                 db_addr="10.251.0.2", port=5432):
        self.password = password
        self.tag = tag or str(os.getpid())
        self.ns = Namespaces(prefix=f"nfdb-{self.tag}")
        self.app_ns, self.db_ns = f"{self.ns.prefix}-app", f"{self.ns.prefix}-db"
        # Interface names have at most 15 characters.
        self.app_dev, self.db_dev = f"nfa{self.tag}"[:15], f"nfd{self.tag}"[:15]
        self.app_addr, self.db_addr, self.port = app_addr, db_addr, port
        self.dir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "netns-"))
        self.data = self.dir / "data"
        self.sockdir = self.dir / "sock"
        self.ssldir = self.dir / "ssl"
        self.log_path = self.dir / "postgres.log"
        self._cert, self._key = Path(cert), Path(key)
        self.iptables = None
        self._stopped = False

    # -- running commands
    def _as_pg(self, *args):
        return ["runuser", "-u", PG_OS_USER, "--", *map(str, args)]

    def app_exec(self):
        """Command prefix that runs a program inside the app namespace (it
        execs it: the pid stays the program's)."""
        return self.ns.exec_prefix(self.app_ns)

    def db_exec(self):
        return self.ns.exec_prefix(self.db_ns)

    # -- set-up
    def start(self):
        try:
            self._make_network()
            self.check_route()
            self._initdb()
            self._start_postgres()
            self._create_app_role()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_network(self):
        self.ns.add("app")
        self.ns.add("db")
        self.ns.link(self.app_ns, self.app_dev, [f"{self.app_addr}/30"],
                     self.db_ns, self.db_dev, [f"{self.db_addr}/30"])

    def check_route(self):
        """Assert that, seen from the app namespace, the database address is
        on our veth device (and the reverse from the db namespace): never a
        route off the machine."""
        self.ns.check_route(self.app_ns, self.db_addr, self.app_dev)
        self.ns.check_route(self.db_ns, self.app_addr, self.db_dev)
        return True

    def _initdb(self):
        pg = pwd.getpwnam(PG_OS_USER)
        os.chmod(self.dir, 0o755)  # postgres must traverse it
        for d in (self.data, self.sockdir, self.ssldir):
            d.mkdir(mode=0o700)
            os.chown(d, pg.pw_uid, pg.pw_gid)
        for src, name in ((self._cert, "server.crt"), (self._key, "server.key")):
            dst = self.ssldir / name
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
            os.chown(dst, pg.pw_uid, pg.pw_gid)
        self.log_path.touch()
        os.chown(self.log_path, pg.pw_uid, pg.pw_gid)
        _run(self._as_pg(pgbin() / "initdb", "-D", self.data, "-U", PG_OS_USER,
                         "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8",
                         "--no-locale", "--no-sync"), timeout=60)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"""
# --- neonfcgi integration test: PostgreSQL in network namespace {self.db_ns}
listen_addresses = '{self.db_addr}'
port = {self.port}
unix_socket_directories = '{self.sockdir}'
ssl = on
ssl_cert_file = '{self.ssldir}/server.crt'
ssl_key_file = '{self.ssldir}/server.key'
password_encryption = 'scram-sha-256'
max_connections = 20
shared_buffers = 16MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_connections = on
log_line_prefix = '%m [%p] %q%u@%d '
""")
        (self.data / "pg_hba.conf").write_text(
            f"local   all  {PG_OS_USER}  peer\n"
            f"hostssl all  all       {self.app_addr}/32  scram-sha-256\n")

    def _start_postgres(self):
        # pg_ctl -w waits on the pid file, so readiness costs no packet.
        _run([*self.db_exec(), *self._as_pg(pgbin() / "pg_ctl", "start", "-w", "-t", "30",
                                             "-D", self.data, "-l", self.log_path)],
             timeout=45)

    def psql(self, sql, stdin=None, timeout=30.0):
        """SQL as the superuser over the unix socket (from the root
        namespace: no packet crosses the veth); rows a line, columns |."""
        args = self._as_pg(pgbin() / "psql", "-X", "-Atq", "-v", "ON_ERROR_STOP=1",
                           "-h", self.sockdir, "-p", self.port, "-U", PG_OS_USER,
                           "-d", "postgres")
        if stdin is None:
            args += ["-c", sql]
        return _run(args, timeout=timeout, input=stdin).stdout

    def _create_app_role(self):
        pw = self.password.replace("'", "''")
        self.psql(None, stdin="SET log_statement = 'none';\n"
                              f"CREATE ROLE app LOGIN PASSWORD '{pw}';\n"
                              "CREATE DATABASE app OWNER app;\n")

    def url(self, **query):
        q = {"sslmode": "require", **query}
        qs = "&".join(f"{k}={v}" for k, v in q.items())
        return (f"postgresql://app:{quote(self.password, safe='')}@{self.db_addr}:{self.port}"
                f"/app?{qs}")

    def app_backends(self):
        return int(self.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                             "AND backend_type = 'client backend'").strip())

    # -- the network misbehaving
    def _iptables(self, *args, check=True):
        return _run([*self.db_exec(), self.iptables, *args], check=check)

    def blackhole(self):
        """Silently drop every packet to the database port (no RST, no ICMP):
        a host that vanished, a security group that changed."""
        rule = ["INPUT", "-p", "tcp", "--dport", str(self.port), "-j", "DROP"]
        errors = []
        # iptables-nft needs nf_tables in the kernel; legacy needs ip_tables.
        for name in ("iptables", "iptables-nft", "iptables-legacy"):
            path = shutil.which(name, path=CLEAN_PATH)
            if not path:
                continue
            self.iptables = path
            p = self._iptables("-A", *rule, check=False)
            if p.rc == 0 and "DROP" in self._iptables("-S", "INPUT").stdout:
                return
            errors.append(f"{name}: {p.stderr.strip()}")
        self.iptables = None
        harness.skip("no working iptables in a network namespace: " + "; ".join(errors))

    def unblock(self):
        self._iptables("-D", "INPUT", "-p", "tcp", "--dport", str(self.port), "-j", "DROP")

    # -- teardown
    def postmaster_pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def _stop_postgres(self):
        pid = self.postmaster_pid()
        if pid is None or not pid_alive(pid):
            return
        # A SIGSTOPped server would never finish a fast shutdown.
        for p in [pid, *harness.children_of(pid)]:
            harness.kill_quietly(p, signal.SIGCONT)
        _run(self._as_pg(pgbin() / "pg_ctl", "stop", "-w", "-t", "20", "-m", "fast",
                         "-D", self.data), check=False, timeout=30)
        if pid_alive(pid):
            for p in [pid, *harness.descendants_of(pid)]:
                harness.kill_quietly(p)
            wait_until(lambda: not pid_alive(pid), 5.0, what="postmaster to die")

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        try:
            self._stop_postgres()
        finally:
            try:
                self.ns.close()  # deletes both, then asserts that none is left
            finally:
                RECORD.add_file(f"netns postgres log {self.db_ns}", self.log_path)
                shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        return read_text(self.log_path)

    def describe(self):
        return f"--- postgres log ({self.db_ns})\n{tail(self.log_path)}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
