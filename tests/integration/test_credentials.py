"""Acceptance tests of issue 15: the password in no process's environment,
DATABASE_URL_FILE, and systemd credentials (DESIGN.md §2, §5).

- /proc/PID/environ (the block the kernel set up at exec, which unsetenv()
  alone leaves intact) and /proc/PID/cmdline of the master and of every
  worker hold no password: with DATABASE_URL, with PGPASSWORD, after a SIGHUP
  whose env file sets another DATABASE_URL (the environment still wins), and
  after one that reloads the URL from the env file;
- DATABASE_URL_FILE and $CREDENTIALS_DIRECTORY/database-url serve /health/db,
  and are read again on SIGHUP;
- every unusable file or combination is a configuration error (exit 78)
  that names the variable and the path, and shows neither the password nor
  the file's content;
- check-config says where DATABASE_URL came from.

Every environment block read here is also recorded, so the run's final
password_never_leaked check covers it. Backends are counted by
application_name, as in test_deploy.py.
"""

import os
import signal
import stat
import urllib.parse
from pathlib import Path

from harness import RECORD, fail, need, run_command, tail, wait_until

EX_CONFIG = 78


# --------------------------------------------------------------------------
# Helpers


def proc_bytes(pid, name):
    data = Path(f"/proc/{pid}/{name}").read_bytes()
    RECORD.add(f"/proc/{pid}/{name}", data)
    return data


def forms_of(password):
    """The password as it may appear: raw, and percent-encoded as in a URI."""
    return {password, urllib.parse.quote(password, safe="")}


def assert_no_password_in_processes(srv, password, what):
    """Neither the environment block nor the command line of the master or
    of any worker holds the password; the blocks are read (a variable that
    is not secret is still there)."""
    pids = [srv.pid, *srv.workers()]
    assert len(pids) >= 2, f"{what}: no worker to look at ({pids})"
    for pid in pids:
        env = proc_bytes(pid, "environ")
        cmdline = proc_bytes(pid, "cmdline")
        assert b"PATH=" in env, f"{what}: /proc/{pid}/environ not read: {env[:200]!r}"
        for form in forms_of(password):
            if form.encode() in env:
                fail(f"{what}: the password is in /proc/{pid}/environ "
                     f"({'master' if pid == srv.pid else 'worker'})")
            if form.encode() in cmdline:
                fail(f"{what}: the password is in /proc/{pid}/cmdline")
        # The entry itself is gone from the environment (its name may stay
        # in the block, its value does not).
        assert b"DATABASE_URL=postgres" not in env, f"{what}: DATABASE_URL in /proc/{pid}"
        assert b"PGPASSWORD=" + password.encode() not in env, what
    return pids


def backends(dev_db, label):
    return int(dev_db.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                           f"AND application_name = '{label}'").strip() or 0)


def health_db_passes(srv, what):
    r = srv.get("/health/db", timeout=10.0)
    assert r.status == 200, f"{what}: /health/db {r}\n{tail(srv.log())}"
    assert r.json().get("status") == "pass", r.text


def url_without_password(url):
    u = urllib.parse.urlsplit(url)
    netloc = f"{u.username}@{u.hostname}" + (f":{u.port}" if u.port else "")
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, ""))


def secret_file(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


def credentials_dir(tmp_path, url):
    """What systemd's LoadCredential=database-url:... leaves for the
    service: a directory with the file database-url, mode 0400."""
    d = tmp_path / "credentials"
    d.mkdir()
    secret_file(d / "database-url", url + "\n", 0o400)
    d.chmod(0o500)
    return d


def reload_to(srv, workers_before, n, what):
    """SIGHUP, then wait until n new workers replaced workers_before."""
    srv.send_signal(signal.SIGHUP)
    try:
        wait_until(lambda: len(srv.workers()) == n
                   and not set(srv.workers()) & set(workers_before), 10.0,
                   what=f"{n} new workers after SIGHUP ({what})")
    except AssertionError as exc:
        fail(f"{exc}; workers {workers_before} -> {srv.workers()}\n{tail(srv.log())}")
    srv.wait_log(r"reloaded workers=", 5.0)


# --------------------------------------------------------------------------
# No password in any process's environment


def test_environ_no_password_with_database_url(neonfcgi, dev_db):
    label = "it-secrets-environ"
    with neonfcgi.start(WORKERS=2, DATABASE_URL=dev_db.app_url(label)) as srv:
        srv.wait_workers(2)
        health_db_passes(srv, "DATABASE_URL in the environment")
        assert backends(dev_db, label) >= 1, "the worker did not use DATABASE_URL"
        assert_no_password_in_processes(srv, dev_db.password, "DATABASE_URL")


def test_environ_no_password_with_pgpassword(neonfcgi, dev_db):
    """libpq reads PGPASSWORD from the environment; neonfcgi takes it into
    the connection string instead, so it can leave the environment."""
    label = "it-secrets-pgpassword"
    url = url_without_password(dev_db.app_url(label))
    assert dev_db.password not in url
    with neonfcgi.start(WORKERS=2, DATABASE_URL=url, PGPASSWORD=dev_db.password) as srv:
        srv.wait_workers(2)
        health_db_passes(srv, "PGPASSWORD")
        assert backends(dev_db, label) >= 1
        assert_no_password_in_processes(srv, dev_db.password, "PGPASSWORD")
    res = neonfcgi.run("check-config", DATABASE_URL=url, PGPASSWORD=dev_db.password)
    res.expect(0, dev_db.password)
    assert "# DATABASE_URL from the environment; password from PGPASSWORD\n" in res.stdout, \
        res.describe(secret=dev_db.password)


def test_environ_no_password_after_sighup_env_file_sets_url(neonfcgi, dev_db, tmp_path):
    """The env file gains another DATABASE_URL (same password): after the
    reload the environment's still wins, and no process shows the password."""
    env_label, file_label = "it-secrets-env-wins", "it-secrets-file-loses"
    envf = secret_file(tmp_path / "reload.env", "WORKERS=2\n")
    with neonfcgi.start(ENV_FILE=envf, DATABASE_URL=dev_db.app_url(env_label)) as srv:
        before = srv.wait_workers(2)
        health_db_passes(srv, "before the reload")
        assert_no_password_in_processes(srv, dev_db.password, "before SIGHUP")
        secret_file(envf, f"WORKERS=3\nDATABASE_URL={dev_db.app_url(file_label)}\n")
        reload_to(srv, before, 3, "env file with DATABASE_URL")
        for _ in range(3):  # answered by new workers: the old ones are gone
            health_db_passes(srv, "after the reload")
        wait_until(lambda: backends(dev_db, env_label) >= 1, 5.0,
                   what="a backend of the environment's DATABASE_URL")
        assert backends(dev_db, file_label) == 0, "the env file won over the environment"
        assert_no_password_in_processes(srv, dev_db.password, "after SIGHUP")


def test_environ_no_password_after_sighup_url_in_env_file(neonfcgi, dev_db, tmp_path):
    first, second = "it-secrets-envfile-1", "it-secrets-envfile-2"
    envf = secret_file(tmp_path / "reload.env",
                       f"WORKERS=2\nDATABASE_URL={dev_db.app_url(first)}\n")
    with neonfcgi.start(ENV_FILE=envf, DATABASE_URL=None) as srv:
        before = srv.wait_workers(2)
        health_db_passes(srv, "URL from the env file")
        assert backends(dev_db, first) >= 1
        assert_no_password_in_processes(srv, dev_db.password, "URL in the env file")
        secret_file(envf, f"WORKERS=3\nDATABASE_URL={dev_db.app_url(second)}\n")
        reload_to(srv, before, 3, "env file with a new DATABASE_URL")
        for _ in range(3):
            health_db_passes(srv, "after the reload")
        wait_until(lambda: backends(dev_db, second) >= 1, 5.0,
                   what="a backend of the reloaded DATABASE_URL")
        assert_no_password_in_processes(srv, dev_db.password, "after SIGHUP")


# --------------------------------------------------------------------------
# DATABASE_URL_FILE and the systemd credential


def test_database_url_file_serves_health_db(neonfcgi, dev_db, tmp_path):
    label = "it-secrets-url-file"
    f = secret_file(tmp_path / "database-url", dev_db.app_url(label) + "\r\n")
    with neonfcgi.start(WORKERS=2, DATABASE_URL=None, DATABASE_URL_FILE=f) as srv:
        srv.wait_workers(2)
        health_db_passes(srv, "DATABASE_URL_FILE")
        assert backends(dev_db, label) >= 1
        assert_no_password_in_processes(srv, dev_db.password, "DATABASE_URL_FILE")
        assert "readable by group or others" not in srv.log(), srv.log()


def test_database_url_file_readable_by_others_is_warned_about(neonfcgi, dev_db, tmp_path):
    f = secret_file(tmp_path / "database-url", dev_db.url + "\n", 0o644)
    with neonfcgi.start(WORKERS=1, DATABASE_URL=None, DATABASE_URL_FILE=f) as srv:
        srv.wait_log(r"warn .*DATABASE_URL_FILE is readable by group or others.*chmod 600",
                     5.0)
        assert str(f) in srv.log()


def test_database_url_file_reread_on_sighup(neonfcgi, dev_db, tmp_path):
    first, second = "it-secrets-url-file-1", "it-secrets-url-file-2"
    f = secret_file(tmp_path / "database-url", dev_db.app_url(first) + "\n")
    envf = secret_file(tmp_path / "reload.env", "WORKERS=2\n")
    with neonfcgi.start(ENV_FILE=envf, DATABASE_URL=None, DATABASE_URL_FILE=f) as srv:
        before = srv.wait_workers(2)
        health_db_passes(srv, "first URL")
        secret_file(f, dev_db.app_url(second) + "\n")
        reload_to(srv, before, 2, "DATABASE_URL_FILE changed")
        for _ in range(2):
            health_db_passes(srv, "after the reload")
        wait_until(lambda: backends(dev_db, second) >= 1, 5.0,
                   what="a backend of the URL read on SIGHUP")
        assert_no_password_in_processes(srv, dev_db.password, "after SIGHUP")
        # An unusable file refuses the reload; the running workers stay.
        current = srv.workers()
        mark = srv.log_mark()
        secret_file(f, "\n")
        srv.send_signal(signal.SIGHUP)
        srv.wait_log(r'reload refused: DATABASE_URL_FILE=".*database-url": the file is empty',
                     5.0, since=mark)
        srv.wait_log(r"keeping the running configuration", 5.0, since=mark)
        assert srv.workers() == current, f"workers replaced: {current} -> {srv.workers()}"
        health_db_passes(srv, "after a refused reload")


def test_credential_directory_serves_health_db(neonfcgi, dev_db, tmp_path):
    label = "it-secrets-credential"
    creds = credentials_dir(tmp_path, dev_db.app_url(label))
    with neonfcgi.start(WORKERS=2, DATABASE_URL=None, CREDENTIALS_DIRECTORY=creds) as srv:
        srv.wait_workers(2)
        health_db_passes(srv, "credential")
        assert backends(dev_db, label) >= 1
        assert_no_password_in_processes(srv, dev_db.password, "credential")


# --------------------------------------------------------------------------
# check-config: where DATABASE_URL came from


def test_check_config_shows_database_url_source(neonfcgi, dev_db, tmp_path):
    pw = dev_db.password
    f = secret_file(tmp_path / "database-url", dev_db.url + "\n")
    creds = credentials_dir(tmp_path, dev_db.url)
    envf = secret_file(tmp_path / "app.env", f"DATABASE_URL={dev_db.url}\n")
    cases = [
        ({}, "the environment"),
        ({"DATABASE_URL": None, "ENV_FILE": envf}, f"the env file {envf}"),
        ({"DATABASE_URL": None, "DATABASE_URL_FILE": f}, f"the file DATABASE_URL_FILE={f}"),
        ({"DATABASE_URL": None, "CREDENTIALS_DIRECTORY": creds},
         f"the systemd credential {creds}/database-url"),
    ]
    for env, source in cases:
        res = neonfcgi.run("check-config", **env).expect(0, pw)
        shown = res.describe(secret=pw)
        lines = res.stdout.splitlines()
        url_lines = [i for i, line in enumerate(lines) if line.startswith("DATABASE_URL=")]
        assert len(url_lines) == 1, shown
        i = url_lines[0]
        assert ":****@" in lines[i], f"DATABASE_URL not shown redacted\n{shown}"
        assert lines[i + 1] == f"# DATABASE_URL from {source}", \
            f"expected the source line '# DATABASE_URL from {source}'\n{shown}"


# --------------------------------------------------------------------------
# Configuration errors: exit 78, the variable and the path named, neither the
# password nor the file's content shown.


def _bare_password(tmp_path, db):
    """A file holding only the password, a likely mistake."""
    return {"DATABASE_URL": None,
            "DATABASE_URL_FILE": secret_file(tmp_path / "pw", db.password + "\n")}


def _missing(tmp_path, db):
    return {"DATABASE_URL": None, "DATABASE_URL_FILE": tmp_path / "no-such-file"}


def _empty(tmp_path, db):
    return {"DATABASE_URL": None, "DATABASE_URL_FILE": secret_file(tmp_path / "empty", "")}


def _first_line_empty(tmp_path, db):
    return {"DATABASE_URL": None,
            "DATABASE_URL_FILE": secret_file(tmp_path / "blank", "\n" + db.url + "\n")}


def _directory(tmp_path, db):
    d = tmp_path / "a-directory"
    d.mkdir()
    return {"DATABASE_URL": None, "DATABASE_URL_FILE": d}


def _both_set(tmp_path, db):
    return {"DATABASE_URL_FILE": secret_file(tmp_path / "url", db.url + "\n")}


def _both_set_file_in_env_file(tmp_path, db):
    url_file = secret_file(tmp_path / "url", db.url + "\n")
    return {"ENV_FILE": secret_file(tmp_path / "app.env", f"DATABASE_URL_FILE={url_file}\n")}


def _insecure_url_in_file(tmp_path, db):
    return {"DATABASE_URL": None, "DATABASE_URL_FILE": secret_file(
        tmp_path / "url", db.url_variant(query={"sslmode": "disable"}) + "\n")}


def _credential_empty(tmp_path, db):
    d = tmp_path / "credentials"
    d.mkdir()
    secret_file(d / "database-url", "", 0o400)
    return {"DATABASE_URL": None, "CREDENTIALS_DIRECTORY": d}


def _credential_absent(tmp_path, db):
    d = tmp_path / "credentials"
    d.mkdir()
    secret_file(d / "other-credential", db.url + "\n", 0o400)
    return {"DATABASE_URL": None, "CREDENTIALS_DIRECTORY": d}


# case: (variables, names the output must contain (besides the path), the
# path's key in the variables, what the line says)
FILE_ERRORS = {
    "missing": (_missing, ["DATABASE_URL_FILE"], "DATABASE_URL_FILE",
                "cannot be opened: No such file or directory"),
    "empty": (_empty, ["DATABASE_URL_FILE"], "DATABASE_URL_FILE", "the file is empty"),
    "first_line_empty": (_first_line_empty, ["DATABASE_URL_FILE"], "DATABASE_URL_FILE",
                         "the file is empty"),
    "directory": (_directory, ["DATABASE_URL_FILE"], "DATABASE_URL_FILE",
                  "is not a regular file"),
    "bare_password": (_bare_password, ["DATABASE_URL", "DATABASE_URL_FILE"],
                      "DATABASE_URL_FILE", "cannot be parsed"),
    "insecure_url": (_insecure_url_in_file, ["DATABASE_URL", "DATABASE_URL_FILE"],
                     "DATABASE_URL_FILE", "sslmode"),
    "both_set": (_both_set, ["DATABASE_URL", "DATABASE_URL_FILE"], None,
                 "are both set (DATABASE_URL in the environment, DATABASE_URL_FILE in the "
                 "environment): set only one"),
    "both_set_file_in_env_file": (_both_set_file_in_env_file,
                                  ["DATABASE_URL", "DATABASE_URL_FILE"], None,
                                  "DATABASE_URL_FILE in ENV_FILE"),
    "credential_empty": (_credential_empty, ["CREDENTIALS_DIRECTORY", "database-url"],
                         "CREDENTIALS_DIRECTORY", "is empty"),
    "credential_absent": (_credential_absent, ["DATABASE_URL: required",
                                               "CREDENTIALS_DIRECTORY"],
                          "CREDENTIALS_DIRECTORY", "holds no database-url"),
}


def assert_file_error(res, db, names, path, says):
    res.expect(EX_CONFIG, db.password)
    shown = res.describe(secret=db.password)
    for form in forms_of(db.password):
        assert form not in res.output, f"the password was printed\n{shown}"
    u = urllib.parse.urlsplit(db.url)
    assert f"{u.hostname}:{u.port}" not in res.output, f"the file's content was shown\n{shown}"
    missing = [n for n in names if n not in res.output]
    assert not missing, f"output does not name {missing}\n{shown}"
    if path is not None:
        assert str(path) in res.output, f"output does not name the path {path}\n{shown}"
    assert says in res.output, f"output does not say {says!r}\n{shown}"
    assert "configuration problem" in res.stderr, shown


def _file_error_test(case, argv):
    make_vars, names, path_key, says = FILE_ERRORS[case]

    def test(neonfcgi, dev_db, tmp_path):
        vars = {k: str(v) if v is not None else None
                for k, v in make_vars(tmp_path, dev_db).items()}
        res = neonfcgi.run(*argv, timeout=10, API_SOCKET=str(tmp_path / "never.sock"), **vars)
        assert_file_error(res, dev_db, names, vars.get(path_key) if path_key else None, says)
        assert not (tmp_path / "never.sock").exists(), "it listened despite the error"
    test.__doc__ = f"neonfcgi {' '.join(argv)} with {case}: exit 78"
    return test


for _case in FILE_ERRORS:
    globals()[f"test_database_url_file_error_{_case}"] = _file_error_test(_case,
                                                                         ("check-config",))
for _case in ("missing", "both_set", "credential_empty"):
    globals()[f"test_database_url_file_error_{_case}_serve"] = _file_error_test(_case,
                                                                               ("serve",))


def test_database_url_file_error_unreadable(neonfcgi, dev_db, tmp_path):
    """Unreadable for the user neonfcgi runs as (nobody here: root reads
    everything): the file's 0700 directory keeps it out."""
    need("setpriv")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    f = secret_file(private / "database-url", dev_db.url + "\n")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
    env = neonfcgi.env(DATABASE_URL=None, DATABASE_URL_FILE=f, ENV_FILE="")
    res = run_command(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                       neonfcgi.binary, "check-config"], env, "/", timeout=10,
                      label="neonfcgi check-config as nobody")
    assert_file_error(res, dev_db, ["DATABASE_URL_FILE"], f,
                      "cannot be opened: Permission denied")
