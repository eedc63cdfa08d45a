"""Acceptance tests of the Debian package (issue 16, DESIGN.md §7).

The .deb is built once per run by scripts/deb.sh (what `make deb` runs, minus
lintian; unit tests skipped: `make check` runs them) into a temporary
directory, then installed with `dpkg --root` into an empty scratch root per
test. dpkg runs the maintainer scripts outside that root
(--force-script-chrootless, as for DPKG_ROOT installs) with a PATH that holds
only what dpkg itself needs and stand-ins for the commands the scripts may
call (adduser, dpkg-statoverride, deb-systemd-helper, ...): each logs its
arguments and keeps its state in the test's directory, so the host's users,
statoverrides and systemd are never touched, and a script that calls anything
else fails the install.

Checked: the files and their modes (the env file a conffile, 0640, without a
DATABASE_URL), the systemd units (socket group www-data and mode 0660, the
service as the user neonfcgi with the example unit's sandbox), the man page,
the migrations and the examples; what postinst/postrm do on install,
reinstall and purge; and the installed binary's `check-config` and `migrate
--dry-run` against the installed migrations and the dev database.
"""

import gzip
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import harness
from harness import (CLEAN_PATH, REPO, TMP_PREFIX, NeonfcgiFactory, fail, fixture, run_command,
                     skip)

ENV_FILE = "etc/neonfcgi/neonfcgi.env"
UNIT_DIRS = ("lib/systemd/system", "usr/lib/systemd/system")
MIGRATIONS = "usr/share/neonfcgi/migrations"
EXAMPLES = "usr/share/doc/neonfcgi/examples"
# What dpkg needs on PATH to install (it checks for some of them at start-up).
DPKG_TOOLS = ("sh", "rm", "tar", "diff", "find", "dpkg", "dpkg-deb", "dpkg-query",
              "dpkg-split", "ldconfig", "start-stop-daemon")
# Stand-ins for what the maintainer scripts call: shell code run after the
# call is logged; state is a file per fact under $STATE.
STUBS = {
    "getent": '[ "$1" = passwd ] && [ -e "$STATE/user-$2" ]',
    "adduser": 'for a; do last=$a; done; : >"$STATE/user-$last"',
    "dpkg-statoverride": ('case "$1" in\n'
                          '--list) [ -e "$STATE/override" ] ;;\n'
                          '--update) : >"$STATE/override" ;;\n'
                          '--remove) rm "$STATE/override" ;;\n'
                          'esac'),
    "deb-systemd-helper": 'case "$1" in debian-installed|--quiet) exit 1 ;; esac',
    "deb-systemd-invoke": ":",
    "systemctl": ":",
}


@fixture(scope="session")
def deb_package():
    """Path of the .deb built from this tree (scripts/deb.sh)."""
    for tool in ("dpkg-buildpackage", "dh", "dpkg"):
        if not shutil.which(tool, path=CLEAN_PATH):
            skip(f"{tool} not installed (scripts/deps.sh test)")
    out = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "deb-"))
    try:
        res = run_command([REPO / "scripts" / "deb.sh", out],
                          {"PATH": CLEAN_PATH, "LC_ALL": "C.UTF-8",
                           "DEB_BUILD_OPTIONS": "nocheck parallel=2"}, REPO, timeout=170)
        if res.rc != 0:
            fail(f"scripts/deb.sh failed\n{res.describe()}\n{harness.tail(out / 'build.log', 40)}")
        deb = Path(res.stdout.strip().splitlines()[-1])
        assert deb.is_file(), res.describe()
        yield deb
    finally:
        shutil.rmtree(out, ignore_errors=True)


class Root:
    """An empty scratch root with a dpkg database, and the sandboxed PATH the
    maintainer scripts run with. calls() returns what they ran since the
    last call of it."""

    def __init__(self, base):
        self.dir = base / "root"
        self.bin = base / "bin"
        self.state = base / "state"
        self.log = base / "calls.log"
        for d in (self.dir / "var/lib/dpkg/info", self.dir / "var/lib/dpkg/updates",
                  self.dir / "var/log", self.bin, self.state):
            d.mkdir(parents=True)
        (self.dir / "var/lib/dpkg/status").write_text("")
        for tool in DPKG_TOOLS:
            path = shutil.which(tool, path=CLEAN_PATH)
            assert path, f"{tool} not found in {CLEAN_PATH}"
            (self.bin / tool).symlink_to(path)
        for name, body in STUBS.items():
            stub = self.bin / name
            stub.write_text(f'#!/bin/sh\necho "{name} $*" >>"$CALLS"\n{body}\n')
            stub.chmod(0o755)
        self.log.write_text("")

    def dpkg(self, *args):
        env = {"PATH": str(self.bin), "STATE": str(self.state), "CALLS": str(self.log),
               "LC_ALL": "C"}
        res = run_command(["dpkg", f"--root={self.dir}", "--force-script-chrootless",
                           "--force-depends", *args], env, self.dir, timeout=60)
        assert res.rc == 0, f"maintainer scripts ran:\n{self.log.read_text()}\n{res.describe()}"
        return res

    def calls(self):
        lines = self.log.read_text().splitlines()
        self.log.write_text("")
        return lines

    def status(self):
        res = run_command(["dpkg-query", f"--admindir={self.dir}/var/lib/dpkg", "-W",
                           "-f=${Status}|${Conffiles}", "neonfcgi"], {"PATH": CLEAN_PATH},
                          self.dir)
        return res.stdout if res.rc == 0 else ""

    def path(self, rel):
        return self.dir / rel

    def unit(self, name):
        for d in UNIT_DIRS:
            if (self.dir / d / name).is_file():
                return (self.dir / d / name).read_text()
        fail(f"{name} not installed in any of {UNIT_DIRS}")


def installed(deb_package, tmp_path):
    root = Root(tmp_path)
    root.dpkg("--install", deb_package)
    return root


def unit_entries(text):
    """{(section, key): [values]} of a unit file."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def deb_field(deb, name):
    res = run_command(["dpkg-deb", "-f", deb, name], {"PATH": CLEAN_PATH}, "/")
    assert res.rc == 0, res.describe()
    return res.stdout.strip()


# --------------------------------------------------------------------------


@harness.slow
def test_deb_installs_units_env_file_man_page_and_migrations(deb_package, tmp_path):
    root = installed(deb_package, tmp_path)
    assert root.status().startswith("install ok installed|"), root.status()
    assert f"/{ENV_FILE} " in root.status(), f"the env file is not a conffile: {root.status()}"

    depends = deb_field(deb_package, "Depends")
    for lib in ("libfcgi0ldbl", "libpq5", "libjansson4", "libssl3", "adduser"):
        assert re.search(rf"(^|, ){lib}\b", depends), f"Depends lacks {lib}: {depends}"

    # The env file: root-only in the package, no DATABASE_URL until the
    # operator writes one, MIGRATIONS_DIR pointing at the installed ones.
    env = root.path(ENV_FILE)
    st = env.stat()
    assert st.st_mode & 0o7777 == 0o640 and st.st_uid == 0, \
        f"{ENV_FILE}: mode {st.st_mode & 0o7777:o} uid {st.st_uid}, expected 0640 root"
    text = env.read_text()
    assert not re.search(r"^\s*(export\s+)?DATABASE_URL(_FILE)?\s*=", text, re.M), \
        f"{ENV_FILE} sets a database:\n{text}"
    assert re.search(r"^MIGRATIONS_DIR=/usr/share/neonfcgi/migrations$", text, re.M), text

    socket_unit = unit_entries(root.unit("neonfcgi.socket"))
    assert socket_unit[("Socket", "ListenStream")] == ["/run/neonfcgi/neonfcgi.sock"]
    assert socket_unit[("Socket", "SocketGroup")] == ["www-data"], socket_unit
    assert socket_unit[("Socket", "SocketMode")] == ["0660"], socket_unit
    example = unit_entries((REPO / "deploy/systemd/neonfcgi.socket").read_text())
    assert socket_unit == example, "the packaged socket unit differs from deploy/systemd's"

    service = unit_entries(root.unit("neonfcgi.service"))
    assert service[("Service", "User")] == ["neonfcgi"], service
    assert service[("Service", "Group")] == ["neonfcgi"], service
    exec_start = service[("Service", "ExecStart")][0].split()
    assert exec_start == ["/usr/bin/neonfcgi", "serve"], exec_start
    assert root.path("usr/bin/neonfcgi").stat().st_mode & 0o111, "binary not executable"
    assert service[("Service", "EnvironmentFile")] == [f"/{ENV_FILE}"], service
    assert "MIGRATIONS_DIR=/usr/share/neonfcgi/migrations" in service[("Service", "Environment")]
    assert "ENV_FILE=" in service[("Service", "Environment")], "neonfcgi must read no env file"
    assert root.path(service[("Service", "WorkingDirectory")][0].lstrip("/")).is_dir()
    # The sandbox and the rest of the example unit, with a static user
    # instead of DynamicUser= (and RemoveIPC=, which DynamicUser= implied).
    example = unit_entries((REPO / "deploy/systemd/neonfcgi.service").read_text())
    differ = {"ExecStart", "WorkingDirectory", "DynamicUser", "User", "Group", "Environment",
              "RemoveIPC"}
    for key in sorted(set(example) | set(service)):
        if key[1] in differ:
            continue
        assert service.get(key) == example.get(key), \
            f"{key[0]}/{key[1]}: package {service.get(key)}, example {example.get(key)}"
    assert service[("Service", "RemoveIPC")] == ["yes"], service

    page = root.path("usr/share/man/man8/neonfcgi.8.gz")
    assert page.is_file(), "no man page"
    assert gzip.decompress(page.read_bytes()) == (REPO / "man/neonfcgi.8").read_bytes()

    shipped = sorted(p.name for p in (REPO / "migrations").glob("*.sql"))
    got = sorted(p.name for p in root.path(MIGRATIONS).iterdir())
    assert got == shipped, f"migrations: installed {got}, shipped {shipped}"
    for name in shipped:
        assert root.path(f"{MIGRATIONS}/{name}").read_bytes() == \
            (REPO / "migrations" / name).read_bytes(), name

    for src in sorted((REPO / "deploy").glob("*/*")):
        copy = root.path(f"{EXAMPLES}/{src.parent.name}/{src.name}")
        assert copy.is_file(), f"example {src.relative_to(REPO)} not installed"
        assert "/usr/local/" not in copy.read_text(), f"{copy} points into /usr/local"


@harness.slow
def test_deb_maintainer_scripts_create_user_keep_env_file_private_and_purge(deb_package,
                                                                             tmp_path):
    root = installed(deb_package, tmp_path)
    calls = root.calls()
    adds = [c for c in calls if c.startswith("adduser ")]
    assert len(adds) == 1 and re.match(r"adduser --system\b.*\s--group\b.*\sneonfcgi$",
                                       adds[0]), f"no system user created: {calls}"
    assert "dpkg-statoverride --update --add root neonfcgi 0640 /etc/neonfcgi/neonfcgi.env" \
        in calls, f"the env file's group is not set: {calls}"
    assert not any(c.startswith(("deb-systemd-invoke", "systemctl")) for c in calls), \
        f"installing started something: {calls}"
    assert any(c.startswith("deb-systemd-helper update-state") for c in calls), calls

    # Reinstalling (an upgrade) neither recreates the user nor the override,
    # and keeps the operator's env file.
    env = root.path(ENV_FILE)
    env.write_text(env.read_text() + "DATABASE_URL=postgresql://u:PASSWORD@h/d\n")
    root.dpkg("--install", deb_package)
    calls = root.calls()
    assert not [c for c in calls if c.startswith("adduser") or "--add" in c], calls
    assert env.read_text().endswith("DATABASE_URL=postgresql://u:PASSWORD@h/d\n"), \
        "the reinstall replaced the operator's env file"
    assert not root.path(ENV_FILE + ".dpkg-new").exists()

    root.dpkg("--purge", "neonfcgi")
    calls = root.calls()
    assert "dpkg-statoverride --remove /etc/neonfcgi/neonfcgi.env" in calls, calls
    assert not (root.state / "override").exists()
    assert (root.state / "user-neonfcgi").exists(), "purge must keep the system user"
    assert root.status() == "", f"still known to dpkg: {root.status()}"
    left = [str(p.relative_to(root.dir)) for p in root.dir.rglob("*")
            if p.is_file() and not str(p.relative_to(root.dir)).startswith("var/")]
    assert not left, f"purge left {left}"


@harness.slow
def test_deb_installed_binary_checks_config_and_dry_runs_migrations(deb_package, dev_db,
                                                                    tmp_path):
    root = installed(deb_package, tmp_path)
    version = deb_field(deb_package, "Version")
    app = NeonfcgiFactory(root.path("usr/bin/neonfcgi"), None, tmp_path)
    res = app.run("--version")
    assert res.rc == 0 and res.stdout.split()[:2] == ["neonfcgi", version], res.describe()

    # The shipped env file as it is: valid, but no database yet.
    env = {"ENV_FILE": root.path(ENV_FILE), "MIGRATIONS_DIR": root.path(MIGRATIONS)}
    res = app.run("check-config", env=env)
    assert res.rc == 78 and "DATABASE_URL" in res.stderr, res.describe()

    name = "pkg_" + secrets.token_hex(4)
    dev_db.psql(f"CREATE DATABASE {name} OWNER app")
    try:
        url = dev_db.url_variant(dbname=name)
        res = app.run("check-config", env=env, DATABASE_URL=url)
        shown = res.describe().replace(dev_db.password, "<PASSWORD>")
        assert dev_db.password not in res.output, f"password printed\n{shown}"
        assert res.rc == 0, shown
        assert str(root.path(MIGRATIONS)) in res.stdout, shown

        res = app.run("migrate", "--dry-run", env=env, DATABASE_URL=url, timeout=30)
        shown = res.describe().replace(dev_db.password, "<PASSWORD>")
        assert dev_db.password not in res.output, f"password printed\n{shown}"
        assert res.rc == 0, shown
        for sql in sorted(root.path(MIGRATIONS).glob("*.sql")):
            assert f"would apply {sql.name}" in res.stdout, shown
        exists = dev_db.psql("SELECT to_regclass('neonfcgi_schema_migrations') IS NOT NULL",
                             "-d", name).strip()
        assert exists == "f", "--dry-run changed the database"
    finally:
        dev_db.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
