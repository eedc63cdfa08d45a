#!/usr/bin/python3
"""Run neonfcgi's integration tests.

    NEONFCGI_BIN=/abs/path/to/neonfcgi /usr/bin/python3 tests/integration/run.py [FILTER...]

A FILTER selects the tests whose name (or module.name) contains it. Prints one
line per test (`ok NAME (0.4s)`, `FAIL NAME: reason`, `skip NAME: reason`) and
finally `N passed, N failed[, N skipped]`; exits 0 only if nothing failed.
Environment: NEONFCGI_BIN (default build/neonfcgi), INTEGRATION_TIMEOUT_S (per
test, default 60), INTEGRATION_VERBOSE=1 (print details of passing tests too),
INTEGRATION_SKIP_SLOW=1 (skip tests marked @harness.slow).
"""

import argparse
import importlib
import inspect
import os
import signal
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

TIMEOUT_S = float(os.environ.get("INTEGRATION_TIMEOUT_S", "60"))
SETUP_TIMEOUT_S = 180.0
TEARDOWN_TIMEOUT_S = 60.0


class Test:
    def __init__(self, module, name, func):
        self.module, self.name, self.func = module, name, func

    def matches(self, filters):
        full = f"{self.module}.{self.name}"
        return not filters or any(f in self.name or f in full for f in filters)


def discover():
    tests, seen = [], {}
    for path in sorted(HERE.glob("test_*.py")):
        mod = importlib.import_module(path.stem)
        for attr, obj in vars(mod).items():
            if attr.startswith("test_") and inspect.isfunction(obj):
                name = attr[len("test_"):]
                if name in seen:
                    raise SystemExit(f"duplicate test name {name} in {path.stem} "
                                     f"and {seen[name]}")
                seen[name] = path.stem
                tests.append(Test(path.stem, name, obj))
    return tests


def _on_alarm(signum, frame):
    raise harness.TestTimeout()


def _on_term(signum, frame):
    raise KeyboardInterrupt()


def _where(exc):
    """The innermost frame in a test module, else in the harness."""
    frames = traceback.extract_tb(exc.__traceback__)
    for pick in (lambda p: p.name.startswith("test_"), lambda p: p.name == "harness.py"):
        for fr in reversed(frames):
            p = Path(fr.filename)
            if p.parent == HERE and pick(p):
                return fr
    return None


def describe(exc, phase):
    """(one-line reason, detail lines) for a test failure."""
    if isinstance(exc, harness.TestTimeout):
        limit = {"setup": SETUP_TIMEOUT_S, "teardown": TEARDOWN_TIMEOUT_S}.get(phase, TIMEOUT_S)
        msg = f"timed out after {limit:g}s" + (f" in {phase}" if phase != "test" else "")
    elif isinstance(exc, AssertionError):
        msg = str(exc)
        if not msg:
            fr = _where(exc)
            msg = f"assert failed: {fr.line}" if fr else "assertion failed"
    else:
        msg = f"{type(exc).__name__}: {exc}"
    first, _, rest = msg.partition("\n")
    details = rest.splitlines()
    fr = _where(exc)
    if fr:
        details.append(f"at {Path(fr.filename).name}:{fr.lineno}: {fr.line}")
    if not isinstance(exc, (AssertionError, harness.TestTimeout)):
        details += "".join(traceback.format_exception(exc)).splitlines()[-12:]
    return first, details


def run_one(test, session):
    """Returns (exception or None, seconds, phase the exception came from)."""
    scope = harness.FixtureScope()
    err = None
    start = time.monotonic()
    # Fixture set-up (the first test pays for starting the database) has its
    # own, longer deadline; the test body gets TIMEOUT_S.
    phase = "setup"
    signal.setitimer(signal.ITIMER_REAL, SETUP_TIMEOUT_S)
    try:
        kwargs = {p: harness.resolve(p, scope, session)
                  for p in inspect.signature(test.func).parameters}
        phase = "test"
        signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S)
        test.func(**kwargs)
    except BaseException as exc:  # noqa: B902 - everything is reported
        err = exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    # Teardown gets its own deadline; its failure fails an otherwise passing test.
    signal.setitimer(signal.ITIMER_REAL, TEARDOWN_TIMEOUT_S)
    try:
        scope.close()
    except BaseException as exc:  # noqa: B902
        if err is None or isinstance(exc, KeyboardInterrupt):
            err, phase = exc, "teardown"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return err, time.monotonic() - start, phase


def print_details(lines, limit=60):
    for line in lines[:limit]:
        print(f"    {line}")
    if len(lines) > limit:
        print(f"    ... {len(lines) - limit} more lines")


def check_password(counts):
    """The dev-db password must appear in no captured log or response body."""
    name = "password_never_leaked"
    db = harness.SESSION_STATE.get("dev_db")
    if db is None or not getattr(db, "password", None):
        print(f"skip {name}: no database was started")
        counts["skipped"] += 1
        return
    hits = harness.RECORD.containing(db.password)
    if hits:
        print(f"FAIL {name}: the password appears in {len(hits)} capture(s)")
        print_details(sorted(set(hits)))
        counts["failed"] += 1
    else:
        print(f"ok {name} ({len(harness.RECORD.items)} captures checked)")
        counts["passed"] += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("filters", nargs="*", help="substrings of test names to run")
    ap.add_argument("-l", "--list", action="store_true", help="list tests and exit")
    opts = ap.parse_args()

    tests = [t for t in discover() if t.matches(opts.filters)]
    if opts.list:
        for t in tests:
            print(f"{t.module}.{t.name}")
        return 0
    verbose = os.environ.get("INTEGRATION_VERBOSE") == "1"
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)
    os.umask(0o022)

    counts = {"passed": 0, "failed": 0, "skipped": 0}
    session = harness.FixtureScope()
    interrupted = False
    sys.stdout.reconfigure(line_buffering=True)
    print(f"# neonfcgi integration tests: {len(tests)} selected, "
          f"binary {os.environ.get('NEONFCGI_BIN') or harness.REPO / 'build/neonfcgi'}")
    skip_slow = os.environ.get("INTEGRATION_SKIP_SLOW") == "1"
    try:
        for t in tests:
            if skip_slow and getattr(t.func, "slow", False):
                print(f"skip {t.name}: slow (INTEGRATION_SKIP_SLOW=1)")
                counts["skipped"] += 1
                continue
            err, dt, phase = run_one(t, session)
            if isinstance(err, KeyboardInterrupt):
                print(f"FAIL {t.name}: interrupted")
                counts["failed"] += 1
                interrupted = True
                break
            if err is None:
                print(f"ok {t.name} ({dt:.1f}s)")
                counts["passed"] += 1
            elif isinstance(err, harness.Skip):
                print(f"skip {t.name}: {err}")
                counts["skipped"] += 1
            else:
                first, details = describe(err, phase)
                print(f"FAIL {t.name}: {first}")
                print_details(details)
                counts["failed"] += 1
            if verbose and err is None:
                print(f"    ({t.module}.{t.name})")
        if not interrupted:
            check_password(counts)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Session teardown (the dev database) happens whatever went wrong above.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            session.close()
        except BaseException as exc:  # noqa: B902
            print(f"FAIL session_teardown: {type(exc).__name__}: {exc}")
            counts["failed"] += 1
    line = f"{counts['passed']} passed, {counts['failed']} failed"
    if counts["skipped"]:
        line += f", {counts['skipped']} skipped"
    if interrupted:
        print("# interrupted")
    print(line)
    if interrupted:
        return 130
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
