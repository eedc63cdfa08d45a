"""The secrets gate (scripts/check-secrets.sh, run first by `make check`) and the
env-file permission warning. The credentials planted here are built from
pieces, so that this file itself passes the gate."""

import os
import shutil
import stat

from harness import CLEAN_PATH, REPO, run_command

GATE = REPO / "scripts" / "check-secrets.sh"
ALLOW = REPO / "scripts" / "check-secrets.allow"
REAL_URI = "postgresql://u:" + "realpass" + "@ep-x.neon.tech/db"
NEON_TOKEN = "npg_" + "a1B2c3D4e5F6g7"
PRIVATE_KEY = "-----BEGIN " + "PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"


def gate(cwd, *files):
    return run_command(["bash", str(cwd / "scripts" / "check-secrets.sh"), *files],
                       {"PATH": CLEAN_PATH}, cwd, timeout=60, label="check-secrets")


def git(cwd, *args):
    run_command(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                {"PATH": CLEAN_PATH, "HOME": str(cwd)}, cwd, timeout=30, check=True)


def repo_copy(tmp_path):
    """A fresh git repository holding the gate, its allow list and a README
    with our usual placeholders."""
    d = tmp_path / "repo"
    (d / "scripts").mkdir(parents=True)
    shutil.copy(GATE, d / "scripts")
    shutil.copy(ALLOW, d / "scripts")
    (d / "README.md").write_text(
        "DATABASE_URL='postgresql://user:password@host/db?sslmode=verify-full'\n"
        "psql postgres://app:${PGPASSWORD}@localhost/app\n"
        "postgres://me:$PGPASSWORD@h/d postgresql://a:<password>@h/d postgres://a:****@h/d\n")
    (d / ".gitignore").write_text(".env\nignored/\n")
    git(d, "init", "-q")
    git(d, "add", "-A")
    git(d, "commit", "-qm", "base")
    return d


def test_secrets_gate_clean_tree_passes():
    res = gate(REPO)
    assert res.rc == 0, res.describe()


def test_secrets_gate_committed_password_fails(tmp_path):
    d = repo_copy(tmp_path)
    assert gate(d).rc == 0, gate(d).describe()
    (d / "deploy.conf").write_text(f"DATABASE_URL={REAL_URI}?sslmode=require\n")
    git(d, "add", "deploy.conf")
    git(d, "commit", "-qm", "oops")
    res = gate(d)
    assert res.rc != 0, f"a committed password passed the gate\n{res.describe()}"
    assert "deploy.conf:1" in res.output, res.describe()
    assert "realpass" not in res.output, "the gate printed the password it found"


def test_secrets_gate_untracked_and_ignored_files(tmp_path):
    d = repo_copy(tmp_path)
    (d / "ignored").mkdir()
    (d / "ignored" / "local.conf").write_text(REAL_URI + "\n")
    (d / ".env").write_text(f"DATABASE_URL={REAL_URI}\n")
    res = gate(d)
    assert res.rc == 0, f"ignored files must not count\n{res.describe()}"
    (d / "notes.txt").write_text(f"token {NEON_TOKEN}\n")  # untracked, not ignored
    res = gate(d)
    assert res.rc != 0 and "notes.txt:1" in res.output, res.describe()


def test_secrets_gate_each_kind(tmp_path):
    d = repo_copy(tmp_path)
    cases = {
        "uri.txt": f"x {REAL_URI} y\n",
        "token.py": f'PASSWORD = "{NEON_TOKEN}"\n',
        "key.pem": PRIVATE_KEY,
        "app/.env.production": "X=1\n",
        "uri_percent.md": "postgres://app:p%40ss" + "w0rd@db/app\n",
    }
    for name, text in cases.items():
        f = d / name
        f.parent.mkdir(exist_ok=True)
        f.write_text(text)
        res = gate(d, name)
        assert res.rc != 0, f"{name} passed the gate\n{res.describe()}"
        f.unlink()
    # placeholders, a template and fixtures are fine
    fine = {
        "doc.md": "postgresql://user:password@host/db postgres://u:secret@h/d "
                  "postgres://u:%s@h/d postgresql://u:{password}@h/d\n",
        ".env.example": "DATABASE_URL=postgresql://user:password@host/db\n",
        "tests/fixtures/leaky.env": REAL_URI + "\n",
    }
    for name, text in fine.items():
        f = d / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        res = gate(d, name)
        assert res.rc == 0, f"{name} was flagged\n{res.describe()}"


def test_env_file_readable_by_others_is_warned_about(neonfcgi, tmp_path):
    envf = tmp_path / "neonfcgi.env"
    envf.write_text("WORKER_THREADS=2\n")
    envf.chmod(0o644)
    with neonfcgi.start(ENV_FILE=envf, WORKERS=1) as srv:
        srv.wait_log(r"warn .*env file is readable by group or others.*chmod 600", 5.0)
        assert str(envf) in srv.log()
    envf.chmod(0o600)
    with neonfcgi.start(ENV_FILE=envf, WORKERS=1) as srv:
        srv.get("/health")
        assert "readable by group or others" not in srv.log(), srv.log()
    assert stat.S_IMODE(os.stat(envf).st_mode) == 0o600
