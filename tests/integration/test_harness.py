"""The harness itself: every process it starts gets every signal at its
default disposition and none blocked, whatever the runner inherited (a runner
started as `(make check &)` from a script ignores SIGINT and SIGQUIT), and
no module starts a process any other way than harness.spawn()."""

import ast
import signal
import subprocess
from pathlib import Path

from harness import CLEAN_PATH, as_background_job, halt, run_command, spawn, wait_until

HERE = Path(__file__).resolve().parent


def signal_masks(status_text):
    """{"SigIgn": int, "SigBlk": int, "SigCgt": int} from /proc/<pid>/status."""
    out = {}
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key in ("SigIgn", "SigBlk", "SigCgt"):
            out[key] = int(value.strip(), 16)
    assert len(out) == 3, f"no signal masks in:\n{status_text}"
    return out


def bit(sig):
    return 1 << (sig - 1)


# Signals 32 and 33 belong to glibc's threads (cancellation, setxid): a
# program cannot change their disposition, and a runner may start with them
# ignored (seen in a debootstrapped root). Nothing we start relies on them.
GLIBC_RESERVED = bit(32) | bit(33)


def test_harness_child_signals_default_when_runner_ignores_them(tmp_path):
    with as_background_job(blocked=(signal.SIGUSR1, signal.SIGTERM)):
        mine = signal_masks(Path("/proc/self/status").read_text())
        assert mine["SigIgn"] & bit(signal.SIGINT) and mine["SigBlk"] & bit(signal.SIGTERM), \
            f"the runner's state was not set up: {mine}"
        res = run_command(["cat", "/proc/self/status"], {"PATH": CLEAN_PATH}, tmp_path)
    assert res.rc == 0, res.describe()
    child = signal_masks(res.stdout)
    ignored = child["SigIgn"] & ~GLIBC_RESERVED
    assert ignored == 0, f"the child starts with signals ignored: {ignored:#x}"
    assert child["SigBlk"] == 0, f"the child starts with signals blocked: {child['SigBlk']:#x}"


def test_harness_spawned_script_traps_sigint_when_runner_ignores_it(tmp_path):
    # What broke `make run` under `(make check &)`: a shell cannot trap a
    # signal that was ignored when it started, so its trap never ran.
    script = 'trap "exit 3" INT; sleep 30 & wait'
    with as_background_job():
        proc = spawn(["bash", "-c", script], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     env={"PATH": CLEAN_PATH}, cwd=tmp_path)
    try:
        status = Path(f"/proc/{proc.pid}/status")
        wait_until(lambda: signal_masks(status.read_text())["SigCgt"] & bit(signal.SIGINT),
                   5.0, what="bash to trap SIGINT")
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        assert rc == 3, f"bash did not run its SIGINT trap (exit {rc})"
    finally:
        halt(proc)


# Calls that start a process; only harness.spawn() may make them.
PROCESS_STARTERS = {
    "subprocess": {"Popen", "run", "call", "check_call", "check_output", "getoutput",
                   "getstatusoutput"},
    "os": {"system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "spawnl",
           "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
           "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe"},
}


def process_starts(path):
    """[(line, "module.function", enclosing function)] of the calls in path
    that start a process (and of imports of such a function by name, which
    would hide the calls)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef,
                                                     ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.ImportFrom):
                found.extend((child.lineno, f"{child.module}.{a.name}", func)
                             for a in child.names
                             if a.name in PROCESS_STARTERS.get(child.module, ()))
            f = getattr(child, "func", None) if isinstance(child, ast.Call) else None
            if (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                    and f.attr in PROCESS_STARTERS.get(f.value.id, ())):
                found.append((child.lineno, f"{f.value.id}.{f.attr}", func))
            visit(child, inner)
    visit(tree, None)
    return found


def test_harness_every_process_starts_through_spawn():
    sources = sorted(HERE.glob("*.py"))
    assert len(sources) > 5, f"no sources found in {HERE}"
    starts = {p.name: process_starts(p) for p in sources}
    assert [f for _, f, fn in starts["harness.py"] if fn == "spawn"] == ["subprocess.Popen"], \
        f"harness.spawn no longer starts the process: {starts['harness.py']}"
    other = [f"{name}:{line}: {f} in {fn or 'the module'}"
             for name, found in starts.items() for line, f, fn in found
             if not (name == "harness.py" and fn == "spawn")]
    assert not other, "processes started without harness.spawn():\n" + "\n".join(other)
