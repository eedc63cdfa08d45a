"""Acceptance tests of schema migrations (issue 5, DESIGN.md §3 and §6):
`neonfcgi migrate [--dry-run]`, `migrate status` and MIGRATE_ON_START against
the real TLS dev database, directly and through PgBouncer in transaction mode.
Every test works in a database of its own (created and dropped here), so
runs do not see each other's tables."""

import hashlib
import re
import secrets
import socket
import subprocess
import time
from pathlib import Path

import harness
from harness import RECORD, REPO, DevDB, fail, free_port, tail
from pgbouncer import PgBouncer

EX_USAGE = 64
EX_UNAVAILABLE = 69
CONCURRENT = 8

USERS = "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);\n"
ORDERS = ("CREATE TABLE orders (id bigint PRIMARY KEY,\n"
          "    user_id bigint NOT NULL REFERENCES users (id));\n")
USERS_NAME_IDX = ("-- neonfcgi:no-transaction\n"
                  "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_name ON users (name);\n")
AUDIT = ("CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz DEFAULT now());\n"
         "INSERT INTO audit DEFAULT VALUES;\n")


class MigDB:
    """A fresh database owned by the app role: .name, .url, .sql(query)."""

    def __init__(self, dev_db):
        self.dev_db = dev_db
        self.name = "mig_" + secrets.token_hex(4)
        dev_db.psql(f"CREATE DATABASE {self.name} OWNER app")
        self.url = dev_db.url_variant(dbname=self.name)

    def sql(self, query):
        return self.dev_db.psql(query, "-d", self.name).strip()

    def table_exists(self, name):
        return self.sql(f"SELECT to_regclass('{name}') IS NOT NULL") == "t"

    def recorded(self):
        """[(version, name, checksum)] from neonfcgi_schema_migrations."""
        if not self.table_exists("neonfcgi_schema_migrations"):
            return []
        out = self.sql("SELECT version, name, checksum FROM neonfcgi_schema_migrations "
                       "ORDER BY version")
        return [(int(v), n, c) for v, n, c in (line.split("|") for line in out.splitlines())]

    def drop(self):
        self.dev_db.psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


@harness.fixture()
def migdb(dev_db):
    db = MigDB(dev_db)
    yield db
    db.drop()


def write_dir(path, files):
    """A migrations directory holding files {name: text}."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def migrate(neonfcgi, url, mdir, *args, timeout=30.0, **vars):
    return neonfcgi.run("migrate", *args, DATABASE_URL=url, MIGRATIONS_DIR=mdir,
                        timeout=timeout, **vars)


def status_rows(output):
    """{version: (name, applied_at, checksum state)} from `migrate status`."""
    rows = {}
    for line in output.splitlines():
        m = re.match(r"^(\d{4})\s+(\S+)\s+(pending|\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ)\s+(.+?)\s*$",
                     line)
        if m:
            rows[int(m.group(1))] = (m.group(2), m.group(3), m.group(4))
    return rows


# --------------------------------------------------------------------------
# Applying, status, dry run


def test_migrate_applies_in_order_and_rerun_is_noop(neonfcgi, migdb, dev_db, tmp_path):
    files = {"0001_users.sql": USERS, "0002_orders.sql": ORDERS}
    mdir = write_dir(tmp_path / "migrations", files)
    pw = dev_db.password

    st = migrate(neonfcgi, migdb.url, mdir, "status").expect(0, pw)
    assert status_rows(st.stdout) == {1: ("0001_users.sql", "pending", "new"),
                                      2: ("0002_orders.sql", "pending", "new")}, st.stdout
    dry = migrate(neonfcgi, migdb.url, mdir, "--dry-run").expect(0, pw)
    assert "would apply 0001_users.sql" in dry.stdout and \
        "would apply 0002_orders.sql" in dry.stdout, dry.stdout
    assert not migdb.table_exists("neonfcgi_schema_migrations"), "--dry-run changed the database"

    res = migrate(neonfcgi, migdb.url, mdir).expect(0, pw)
    lines = [l for l in res.stdout.splitlines() if l.startswith("applied ")]
    assert len(lines) == 2 and re.match(r"applied 0001_users\.sql in \d+ ms$", lines[0]) and \
        re.match(r"applied 0002_orders\.sql in \d+ ms$", lines[1]), res.stdout
    assert "2 applied" in res.stdout, res.stdout
    assert migdb.table_exists("users") and migdb.table_exists("orders")
    assert migdb.recorded() == [(1, "0001_users.sql", sha256(USERS)),
                                (2, "0002_orders.sql", sha256(ORDERS))]
    cols = migdb.sql("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM "
                     "information_schema.columns WHERE table_name = 'neonfcgi_schema_migrations'")
    assert cols == "version,name,checksum,applied_at,duration_ms", cols
    before = migdb.sql("SELECT string_agg(applied_at::text, ',') FROM neonfcgi_schema_migrations")

    st = migrate(neonfcgi, migdb.url, mdir, "status").expect(0, pw)
    rows = status_rows(st.stdout)
    assert sorted(rows) == [1, 2] and all(r[1] != "pending" and r[2] == "ok"
                                          for r in rows.values()), st.stdout

    again = migrate(neonfcgi, migdb.url, mdir).expect(0, pw)
    assert "applied 0" not in again.stdout and "0 applied, 2 already applied" in again.stdout, \
        again.stdout
    assert migdb.sql("SELECT string_agg(applied_at::text, ',') FROM "
                     "neonfcgi_schema_migrations") == before
    assert len(migdb.recorded()) == 2


def test_migrate_shipped_migrations_apply(neonfcgi, migdb, dev_db):
    """The repository's migrations/ applies cleanly, twice."""
    mdir = REPO / "migrations"
    shipped = sorted(p.name for p in mdir.glob("*.sql"))
    assert shipped and shipped[0].startswith("0001_"), shipped
    migrate(neonfcgi, migdb.url, mdir).expect(0, dev_db.password)
    migrate(neonfcgi, migdb.url, mdir).expect(0, dev_db.password)
    assert [r[1] for r in migdb.recorded()] == shipped


def test_migrate_verify_full(neonfcgi, migdb, dev_db, tmp_path):
    """sslmode=verify-full with the dev CA works the same."""
    mdir = write_dir(tmp_path / "m", {"0001_users.sql": USERS})
    url = dev_db.url_variant(dbname=migdb.name,
                             query={"sslmode": "verify-full", "sslrootcert": dev_db.ca})
    res = migrate(neonfcgi, url, mdir).expect(0, dev_db.password)
    assert "applied 0001_users.sql" in res.stdout, res.stdout


# --------------------------------------------------------------------------
# Concurrency: many hosts starting together


def run_concurrently(neonfcgi, url, mdir, n=CONCURRENT, timeout=60.0):
    """Start n `neonfcgi migrate` at once; returns [(rc, stdout, stderr)]."""
    env = neonfcgi.env(DATABASE_URL=url, MIGRATIONS_DIR=mdir)
    procs = [harness.spawn([neonfcgi.binary, "migrate"], env=env, cwd=neonfcgi.workdir("m"),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
             for _ in range(n)]
    results, deadline = [], time.monotonic() + timeout
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            RECORD.add("concurrent migrate stdout", out)
            RECORD.add("concurrent migrate stderr", err)
            results.append((p.returncode, out.decode(errors="replace"),
                            err.decode(errors="replace")))
    finally:
        for p in procs:
            if p.poll() is None:
                harness.halt(p)
    return results


def check_concurrent(results, migdb, files, password):
    report = "\n".join(f"--- exit {rc}\n{out}{err}" for rc, out, err in results)
    report = report.replace(password, "<PASSWORD>")
    if any(password in out + err for _, out, err in results):
        fail("the database password was printed\n" + report)
    if any(rc != 0 for rc, _, _ in results):
        fail(f"not every concurrent migrate exited 0\n{report}")
    counts = migdb.sql("SELECT string_agg(version || ':' || n, ',' ORDER BY version) FROM "
                       "(SELECT version, count(*) AS n FROM neonfcgi_schema_migrations "
                       "GROUP BY version) c")
    want = ",".join(f"{i + 1}:1" for i in range(len(files)))
    assert counts == want, f"recorded {counts}, expected {want}\n{report}"
    for name in files:
        applied = sum(f"applied {name} in " in out for _, out, _ in results)
        assert applied == 1, f"{name} applied by {applied} runners, expected 1\n{report}"
    assert migdb.sql("SELECT count(*) FROM audit") == "1", "0004 ran more than once"
    assert migdb.sql("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                     "'users_name'::regclass") == "t", "index users_name is not valid"


CONCURRENT_FILES = {"0001_users.sql": USERS, "0002_orders.sql": ORDERS,
                    "0003_users_name.sql": USERS_NAME_IDX, "0004_audit.sql": AUDIT}


def test_migrate_concurrent_runners_apply_once(neonfcgi, migdb, dev_db, tmp_path):
    mdir = write_dir(tmp_path / "m", CONCURRENT_FILES)
    results = run_concurrently(neonfcgi, migdb.url, mdir)
    check_concurrent(results, migdb, CONCURRENT_FILES, dev_db.password)


def test_migrate_concurrent_through_pgbouncer_transaction_mode(neonfcgi, migdb, dev_db,
                                                                tmp_path):
    """The same through PgBouncer in transaction mode with fewer server
    connections than runners: session state would not survive here, so only
    transaction-scoped locks can serialize the runners."""
    mdir = write_dir(tmp_path / "m", CONCURRENT_FILES)
    with PgBouncer(dev_db, pool_size=3) as bouncer:
        url = bouncer.url(dbname=migdb.name)
        results = run_concurrently(neonfcgi, url, mdir)
        check_concurrent(results, migdb, CONCURRENT_FILES, dev_db.password)
        st = migrate(neonfcgi, url, mdir, "status").expect(0, dev_db.password)
        assert [r[2] for r in status_rows(st.stdout).values()] == ["ok"] * 4, st.stdout
        assert f"db={migdb.name}" in bouncer.log(), "the runners did not go through pgbouncer"
        # Transaction pooling really is on: more clients than server connections.
        max_server = int(migdb.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND usename = 'app'"))
        assert max_server <= 3, f"{max_server} server connections for a pool of 3"


# --------------------------------------------------------------------------
# Failures lose nothing


def test_migrate_syntax_error_rolls_back_and_stops(neonfcgi, migdb, dev_db, tmp_path):
    bad = "CREATE TABLE part_one (x int);\nCREAT TABLE oops (y int);\n"
    files = {"0001_users.sql": USERS, "0002_bad.sql": bad, "0003_orders.sql": ORDERS}
    mdir = write_dir(tmp_path / "m", files)
    res = migrate(neonfcgi, migdb.url, mdir).expect(1, dev_db.password)
    assert "applied 0001_users.sql" in res.stdout, res.describe()
    assert re.search(r"0002_bad\.sql failed: SQLSTATE 42601: syntax error at or near \"CREAT\"",
                     res.stderr), res.describe()
    assert "rolled back" in res.stderr, res.stderr
    assert not migdb.table_exists("part_one"), "the failing file's first statement stayed"
    assert not migdb.table_exists("orders"), "a later file ran after a failure"
    assert [r[0] for r in migdb.recorded()] == [1]

    write_dir(mdir, {"0002_bad.sql": bad.replace("CREAT TABLE", "CREATE TABLE")})
    fixed = migrate(neonfcgi, migdb.url, mdir).expect(0, dev_db.password)
    assert "applied 0002_bad.sql" in fixed.stdout and "applied 0003_orders.sql" in fixed.stdout
    assert migdb.table_exists("part_one") and migdb.table_exists("oops") and \
        migdb.table_exists("orders")
    assert [r[0] for r in migdb.recorded()] == [1, 2, 3]


def test_migrate_changed_applied_file_is_refused(neonfcgi, migdb, dev_db, tmp_path):
    mdir = write_dir(tmp_path / "m", {"0001_users.sql": USERS})
    migrate(neonfcgi, migdb.url, mdir).expect(0, dev_db.password)
    write_dir(mdir, {"0001_users.sql": USERS.replace("name text", "name varchar(80)"),
                     "0002_orders.sql": ORDERS})
    res = migrate(neonfcgi, migdb.url, mdir).expect(1, dev_db.password)
    assert "0001_users.sql: changed after it was applied" in res.stderr, res.describe()
    assert "applied" not in res.stdout, res.describe()
    assert not migdb.table_exists("orders"), "a migration ran despite the changed file"
    assert [r[0] for r in migdb.recorded()] == [1]
    st = migrate(neonfcgi, migdb.url, mdir, "status").expect(0, dev_db.password)
    assert status_rows(st.stdout)[1][2] == "changed", st.stdout
    assert status_rows(st.stdout)[2][1] == "pending", st.stdout


BAD_DIRS = {
    "gap": ({"0001_a.sql": USERS, "0003_c.sql": ORDERS}, ["0003_c.sql", "0002"]),
    "duplicate": ({"0001_a.sql": USERS, "0002_b.sql": ORDERS, "0002_c.sql": AUDIT},
                  ["0002_b.sql", "0002_c.sql", "duplicate"]),
    "bad_name": ({"0001_a.sql": USERS, "2_orders.sql": ORDERS}, ["2_orders.sql"]),
    "upper_case_ext": ({"0001_a.sql": USERS, "0002_b.SQL": ORDERS}, ["0002_b.SQL"]),
    "commit_inside": ({"0001_a.sql": "BEGIN;\n" + USERS + "COMMIT;\n"}, ["0001_a.sql line 1"]),
}


def test_migrate_bad_directory_refused_before_anything_runs(neonfcgi, migdb, dev_db, tmp_path):
    for case, (files, names) in BAD_DIRS.items():
        mdir = write_dir(tmp_path / case, files)
        for args in ((), ("--dry-run",), ("status",)):
            res = migrate(neonfcgi, migdb.url, mdir, *args).expect(1, dev_db.password)
            missing = [n for n in names if n not in res.stderr]
            assert not missing, f"{case} {args}: {missing} not named\n{res.describe()}"
        assert not migdb.table_exists("neonfcgi_schema_migrations"), case
        assert not migdb.table_exists("users"), case


def test_migrate_status_reports_applied_file_missing(neonfcgi, migdb, dev_db, tmp_path):
    mdir = write_dir(tmp_path / "m", {"0001_users.sql": USERS, "0002_orders.sql": ORDERS})
    migrate(neonfcgi, migdb.url, mdir).expect(0, dev_db.password)
    (mdir / "0002_orders.sql").unlink()  # an older release against a newer database
    st = migrate(neonfcgi, migdb.url, mdir, "status").expect(0, dev_db.password)
    assert status_rows(st.stdout)[2][0] == "0002_orders.sql" and \
        status_rows(st.stdout)[2][2] == "file missing", st.stdout
    res = migrate(neonfcgi, migdb.url, mdir).expect(0, dev_db.password)
    assert "version 0002 (0002_orders.sql) is applied but its file is not in MIGRATIONS_DIR" \
        in res.stderr, res.describe()


def test_migrate_no_transaction_file_builds_index_concurrently(neonfcgi, migdb, dev_db,
                                                               tmp_path):
    files = {"0001_users.sql": USERS, "0002_users_name.sql": USERS_NAME_IDX}
    mdir = write_dir(tmp_path / "m", files)
    res = migrate(neonfcgi, migdb.url, mdir, "--dry-run").expect(0, dev_db.password)
    assert "would apply 0002_users_name.sql (no transaction)" in res.stdout, res.stdout
    migrate(neonfcgi, migdb.url, mdir).expect(0, dev_db.password)
    assert migdb.sql("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                     "'users_name'::regclass") == "t"
    # Without the marker the server refuses, and the hint says what to do.
    write_dir(mdir, {"0003_more.sql": USERS_NAME_IDX.split("\n", 1)[1].replace(
        "users_name", "users_name2")})
    res = migrate(neonfcgi, migdb.url, mdir).expect(1, dev_db.password)
    assert "0003_more.sql failed: SQLSTATE 25001" in res.stderr, res.describe()
    assert "-- neonfcgi:no-transaction" in res.stderr, res.describe()


def test_migrate_unreachable_database_exits_1(neonfcgi, dev_db, tmp_path):
    mdir = write_dir(tmp_path / "m", {"0001_users.sql": USERS})
    url = dev_db.url_variant(port=free_port())
    t0 = time.monotonic()
    res = migrate(neonfcgi, url, mdir, DB_RETRY_ATTEMPTS=1).expect(1, dev_db.password)
    assert time.monotonic() - t0 < 10
    assert "cannot connect to" in res.stderr and "unreachable" in res.stderr, res.describe()
    assert "app@" not in res.stderr and "postgresql://" not in res.stderr, res.stderr


def test_migrate_usage_errors_exit_64(neonfcgi, tmp_path):
    for args in (("bogus",), ("status", "--dry-run"), ("--dry-run", "extra"), ("--force",)):
        res = neonfcgi.run("migrate", *args, MIGRATIONS_DIR=tmp_path)
        assert res.rc == EX_USAGE, f"migrate {args}: {res.describe()}"
    assert "migrate" in neonfcgi.run("--help").stdout


# --------------------------------------------------------------------------
# MIGRATE_ON_START


def socket_refuses(path):
    """True when a connect() to the unix socket path is refused (nobody
    listens there), or there is no socket file at all."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2.0)
        s.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    finally:
        s.close()
    return False


def test_migrate_on_start_waits_for_a_waking_database(neonfcgi, tmp_path):
    """The database is down at start-up and comes back 3 s later: the master
    keeps retrying (within DB_START_TIMEOUT_MS), migrates, then serves. A
    private database, so halting it disturbs no other test."""
    db = DevDB()
    try:
        db.start()
        mdir = write_dir(tmp_path / "m", {"0001_users.sql": USERS})
        db.halt()
        srv = neonfcgi.start(ready=False, DATABASE_URL=db.url, MIGRATE_ON_START="true",
                             MIGRATIONS_DIR=mdir, DB_START_TIMEOUT_MS=30000, WORKERS=1)
        with srv:
            srv.wait_log(r"database not ready for migrations", timeout=10)
            time.sleep(3)  # the scenario: the database stays down for 3 s
            assert srv.running(), f"gave up while the database was down\n{tail(srv.log())}"
            # The socket exists (it is opened before the privilege drop, and
            # migrations run after it) but does not listen: refused at once.
            assert socket_refuses(srv.socket), "listening before migrations finished"
            db.start()
            srv.wait_ready(timeout=30)
            log = srv.log()
            assert "migrate: applied 0001_users.sql in " in log, log
            assert log.index("migrate: 1 applied, 0 already applied") < \
                log.index("neonfcgi starting"), log
            assert db.psql("SELECT to_regclass('users') IS NOT NULL", "-d", "app").strip() == "t"
            r = srv.get("/health")
            assert r.status == 200, str(r)
    finally:
        db.stop()


def test_migrate_on_start_bad_sql_exits_1_before_forking(neonfcgi, migdb, dev_db, tmp_path):
    mdir = write_dir(tmp_path / "m", {"0001_users.sql": USERS,
                                      "0002_bad.sql": "CREATE TABLE t2 (x int);\nCREAT x;\n"})
    srv = neonfcgi.start(ready=False, DATABASE_URL=migdb.url, MIGRATE_ON_START="yes",
                         MIGRATIONS_DIR=mdir, WORKERS=2)
    with srv:
        rc = srv.wait_exit(20)
        log = srv.log()
        assert rc == 1, f"exit {rc}\n{log}"
        assert re.search(r"error migrate: 0002_bad\.sql failed: SQLSTATE 42601", log), log
        assert "neonfcgi starting" not in log, "it started serving"
        assert not srv.seen_workers and not Path(srv.socket).exists(), log
        assert dev_db.password not in log
    assert not migdb.table_exists("t2")
    assert [r[0] for r in migdb.recorded()] == [1]


def test_migrate_on_start_gives_up_with_69(neonfcgi, dev_db, tmp_path):
    mdir = write_dir(tmp_path / "m", {"0001_users.sql": USERS})
    srv = neonfcgi.start(ready=False, DATABASE_URL=dev_db.url_variant(port=free_port()),
                         MIGRATE_ON_START="true", MIGRATIONS_DIR=mdir, DB_START_TIMEOUT_MS=1500)
    with srv:
        t0 = time.monotonic()
        rc = srv.wait_exit(15)
        log = srv.log()
        assert rc == EX_UNAVAILABLE, f"exit {rc}\n{log}"
        assert time.monotonic() - t0 < 10, "waited far past DB_START_TIMEOUT_MS"
        assert "database unavailable for migrations" in log, log
        assert not Path(srv.socket).exists()
