"""PgBouncer in front of the dev database, as Neon's `-pooler` hosts put it in
front of a compute: transaction pooling by default, TLS on both sides, SCRAM.

    from pgbouncer import PgBouncer
    with PgBouncer(dev_db) as bouncer:           # started and ready
        url = bouncer.url(dbname="app")           # sslmode=require, via the pooler

or ask for the `pgbouncer` fixture (test scope): a started PgBouncer in front of
`dev_db`, stopped after the test. Every database name is forwarded (`* =`), so
a test may create its own database and reach it through the same pooler.
`users` (default just "app") are the roles the auth file lets in, all with
the dev database's password; restart() stops it at once and starts it again
on the same port.

Its ini and auth file live in a private directory (mode 0700, owned by the
user pgbouncer runs as) that is removed on stop; the auth file holds the app's
password and is never recorded or committed. The client side reuses the dev
database's server certificate (CN localhost, SAN 127.0.0.1, signed by
`dev_db.ca`), so `sslmode=verify-full&sslrootcert=<dev_db.ca>` works too.
As root, pgbouncer runs with `-u postgres` (it refuses to run as root).
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import harness
from harness import (CLEAN_PATH, RECORD, TMP_PREFIX, free_port, halt, read_text, spawn, tail,
                     wait_listening)

PGBOUNCER = "/usr/sbin/pgbouncer"


class PgBouncer:
    """Attributes: port, dir, log_path, pool_mode, pool_size."""

    def __init__(self, db, pool_mode="transaction", pool_size=20, extra_ini="", start=True,
                 users=("app",), port=None):
        if not os.access(PGBOUNCER, os.X_OK):
            harness.skip(f"{PGBOUNCER} not installed (scripts/deps.sh test)")
        self.db = db
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.extra_ini = extra_ini
        self.users = tuple(users)
        # A port given (or the first one picked) is kept across restarts, so
        # clients keep their URL when PgBouncer is stopped and started again.
        self.port = port
        self._fixed_port = port is not None
        self.proc = None
        self._err = None
        self.dir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "pgbouncer-"))
        self.log_path = self.dir / "pgbouncer.log"
        self.user = "postgres" if os.geteuid() == 0 else None
        ssl = Path(db.ca).parent
        self.cert, self.key = ssl / "server.crt", ssl / "server.key"
        if start:
            try:
                self.start()
            except BaseException:
                self.stop()
                raise

    def _write_config(self):
        d = self.dir
        (d / "pgbouncer.ini").write_text(f"""[databases]
* = host=127.0.0.1 port={self.db.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
logfile = {self.log_path}
pidfile = {d}/pgbouncer.pid
auth_type = scram-sha-256
auth_file = {d}/userlist.txt
pool_mode = {self.pool_mode}
default_pool_size = {self.pool_size}
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
client_tls_sslmode = require
client_tls_cert_file = {self.cert}
client_tls_key_file = {self.key}
server_tls_sslmode = require
log_connections = 1
log_disconnections = 1
{self.extra_ini}
""")
        # The password is written through a 0600 file and never leaves it.
        pw = self.db.password.replace('"', '""')
        auth = d / "userlist.txt"
        fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            for user in self.users:
                f.write(f'"{user}" "{pw}"\n')
        if self.user:
            pw_ent = pwd.getpwnam(self.user)
            for p in (d, d / "pgbouncer.ini", auth):
                os.chown(p, pw_ent.pw_uid, pw_ent.pw_gid)

    def _launch(self):
        if self.port is None:
            self.port = free_port()
        self._write_config()
        args = [PGBOUNCER]
        if self.user:
            args += ["-u", self.user]
        args.append(str(self.dir / "pgbouncer.ini"))
        self._err = open(self.dir / "stderr.log", "wb")
        self.proc = spawn(args, stdin=subprocess.DEVNULL, stdout=self._err, stderr=self._err,
                          cwd=self.dir, env={"PATH": CLEAN_PATH})

    def _output(self):
        return tail(self.log_path) + "\n" + tail(self.dir / "stderr.log")

    def start(self, timeout=10.0, attempts=3):
        """Start and wait until it accepts connections. A free port picked by
        binding port 0 can be taken before pgbouncer binds it: then retry."""
        for attempt in range(attempts):
            self._launch()
            try:
                wait_listening(self.proc, ("127.0.0.1", self.port), "pgbouncer", self._output,
                               timeout)
                self._fixed_port = True
                return self
            except AssertionError:
                busy = "Address already in use" in self._output()
                self._halt()
                if busy and self._fixed_port:
                    raise
                self.port = None
                if not busy or attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")

    def restart(self, timeout=10.0):
        """Stop it at once (SIGTERM: clients are cut off) and start it again
        on the same port."""
        if self.proc is not None:
            halt(self.proc, (signal.SIGTERM, 5.0))
            self.proc = None
        if self._err:
            self._err.close()
            self._err = None
        return self.start(timeout=timeout)

    def url(self, dbname=None, verify_full=False):
        """DATABASE_URL through the pooler (the dev database's user/password)."""
        query = {"sslmode": "require"}
        if verify_full:
            query = {"sslmode": "verify-full", "sslrootcert": self.db.ca}
        return self.db.url_variant(port=self.port, dbname=dbname, query=query)

    def log(self):
        return read_text(self.log_path)

    def _halt(self):
        if self.proc is None:
            return
        halt(self.proc, (signal.SIGINT, 5.0))  # safe shutdown: clients are gone
        if self._err:
            self._err.close()
            self._err = None

    def stop(self):
        """Stop it, record its logs for the password check, remove its files."""
        try:
            self._halt()
        finally:
            RECORD.add_file("pgbouncer log", self.log_path)
            RECORD.add_file("pgbouncer stderr", self.dir / "stderr.log")
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


@harness.fixture()
def pgbouncer(dev_db):
    """A PgBouncer (transaction mode, TLS, SCRAM) in front of dev_db."""
    b = PgBouncer(dev_db)
    yield b
    b.stop()
