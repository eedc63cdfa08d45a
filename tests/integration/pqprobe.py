#!/usr/bin/python3
"""A libpq client that reports what libpq saw, as JSON (standard library only).

    PGPASSWORD=... /usr/bin/python3 pqprobe.py CONNINFO [STEP ...]

Runs in its own process (a test can bound it with a timeout and kill it) and
calls the system's libpq (libpq.so.5) through ctypes: the same library psql
uses. psql cannot show the SQLSTATE of an error received while connecting (it
sets the error verbosity only once connected); this probe sets
PQERRORS_VERBOSE on the connection object before the handshake runs
(PQconnectStart, PQsetErrorVerbosity, then PQconnectPoll), so libpq's own
message carries the SQLSTATE ("ERROR:  XX000: ...").

Prints one JSON object a line:
  {"event": "connect", "ok": bool, "error": libpq's message, "severity": ...,
   "sqlstate": ..., "message": ..., "seconds": ...}
then, when connected, one line per STEP:
  SQL            PQexec (simple query protocol)
  +SQL           PQexecParams (extended protocol: Parse/Bind/Execute)
  cancel:S:SQL   PQsendQuery, PQcancel after S seconds, then the result
  -              wait for a line on stdin first (lets a test act in between)
  ?              PQconsumeInput: read what the server sent meanwhile, e.g. the
                 FATAL of a terminated session, which libpq hands to the notice
                 receiver as psql shows it; prints {"event": "input",
                 "connection_ok": bool}
Every line after "connect" carries "notices": the notices and asynchronous
errors received since the previous line, each {"severity" (nonlocalized),
"sqlstate", "message"}.
  {"event": "query", "sql": ..., "ok": bool, "rows": [[...]], "severity":
   (nonlocalized), "sqlstate": ..., "message": ..., "error": ..., "seconds": ...}
Exit status 0 when every step ran (whatever its outcome), 2 on a usage error.
"""

import ctypes
import ctypes.util
import json
import re
import select
import sys
import time

PGRES_COMMAND_OK, PGRES_TUPLES_OK = 1, 2
CONNECTION_OK = 0
POLLING_FAILED, POLLING_READING, POLLING_WRITING, POLLING_OK = 0, 1, 2, 3
PQERRORS_VERBOSE = 2
PG_DIAG = {"severity": ord("V"), "sqlstate": ord("C"), "message": ord("M")}
CONNECT_TIMEOUT_S = 30.0

NOTICE_RECEIVER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
NOTICES = []

_ERR_LINE = re.compile(r"^(?:.*: )?(ERROR|FATAL|PANIC):  ([0-9A-Z]{5}): (.*)$", re.M)


def load_libpq():
    name = ctypes.util.find_library("pq") or "libpq.so.5"
    lib = ctypes.CDLL(name)
    vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    sigs = {
        "PQconnectStart": ([cp], vp), "PQconnectPoll": ([vp], ci),
        "PQsocket": ([vp], ci), "PQstatus": ([vp], ci),
        "PQsetErrorVerbosity": ([vp, ci], ci), "PQerrorMessage": ([vp], cp),
        "PQexec": ([vp, cp], vp),
        "PQexecParams": ([vp, cp, ci, vp, vp, vp, vp, ci], vp),
        "PQresultStatus": ([vp], ci), "PQresultErrorField": ([vp, ci], cp),
        "PQresultErrorMessage": ([vp], cp), "PQntuples": ([vp], ci),
        "PQnfields": ([vp], ci), "PQgetvalue": ([vp, ci, ci], cp),
        "PQgetisnull": ([vp, ci, ci], ci), "PQclear": ([vp], None),
        "PQfinish": ([vp], None), "PQlibVersion": ([], ci),
        "PQconsumeInput": ([vp], ci),
        "PQsendQuery": ([vp, cp], ci), "PQgetResult": ([vp], vp),
        "PQgetCancel": ([vp], vp), "PQfreeCancel": ([vp], None),
        "PQcancel": ([vp, cp, ci], ci),
        "PQsetNoticeReceiver": ([vp, NOTICE_RECEIVER, vp], vp),
    }
    for fn, (args, res) in sigs.items():
        f = getattr(lib, fn)
        f.argtypes, f.restype = args, res
    return lib


def _s(b):
    return None if b is None else b.decode("utf-8", "replace")


def connect(lib, conninfo):
    """PQconnectStart + verbose errors + PQconnectPoll loop, bounded."""
    start = time.monotonic()
    conn = lib.PQconnectStart(conninfo.encode())
    if not conn:
        return None, {"event": "connect", "ok": False, "error": "out of memory"}
    lib.PQsetErrorVerbosity(conn, PQERRORS_VERBOSE)
    state = POLLING_WRITING
    deadline = start + CONNECT_TIMEOUT_S
    while lib.PQstatus(conn) != CONNECTION_OK or state != POLLING_OK:
        if state in (POLLING_READING, POLLING_WRITING):
            fd = lib.PQsocket(conn)
            if fd < 0:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                out = {"event": "connect", "ok": False, "error": "probe: connect timed out"}
                lib.PQfinish(conn)
                return None, out
            r, w = ([fd], []) if state == POLLING_READING else ([], [fd])
            select.select(r, w, [], left)
        elif state == POLLING_FAILED:
            break
        state = lib.PQconnectPoll(conn)
        if state == POLLING_OK:
            break
    out = {"event": "connect", "seconds": round(time.monotonic() - start, 3)}
    if lib.PQstatus(conn) == CONNECTION_OK:
        out["ok"] = True
        return conn, out
    err = _s(lib.PQerrorMessage(conn)) or ""
    out.update(ok=False, error=err)
    m = _ERR_LINE.search(err)
    if m:
        out.update(severity=m.group(1), sqlstate=m.group(2), message=m.group(3))
    lib.PQfinish(conn)
    return None, out


def _cancelled_query(lib, conn, after, sql):
    """Send sql, cancel it after `after` seconds; returns its first result."""
    if not lib.PQsendQuery(conn, sql.encode()):
        return None
    time.sleep(after)  # the query must be running when the cancel arrives
    cancel = lib.PQgetCancel(conn)
    errbuf = ctypes.create_string_buffer(256)
    lib.PQcancel(cancel, errbuf, 256)
    lib.PQfreeCancel(cancel)
    res = lib.PQgetResult(conn)
    while True:  # drain to the end of the query
        extra = lib.PQgetResult(conn)
        if not extra:
            break
        lib.PQclear(extra)
    return res


def run_step(lib, conn, sql):
    start = time.monotonic()
    if sql.startswith("cancel:"):
        _, after, query = sql.split(":", 2)
        res = _cancelled_query(lib, conn, float(after), query)
    elif sql.startswith("+"):
        res = lib.PQexecParams(conn, sql[1:].encode(), 0, None, None, None, None, 0)
    else:
        res = lib.PQexec(conn, sql.encode())
    out = {"event": "query", "sql": sql}
    status = lib.PQresultStatus(res) if res else -1
    out["ok"] = status in (PGRES_COMMAND_OK, PGRES_TUPLES_OK)
    if out["ok"]:
        out["rows"] = [[None if lib.PQgetisnull(res, r, c) else _s(lib.PQgetvalue(res, r, c))
                        for c in range(lib.PQnfields(res))]
                       for r in range(lib.PQntuples(res))]
    else:
        for key, code in PG_DIAG.items():
            out[key] = _s(lib.PQresultErrorField(res, code)) if res else None
        out["error"] = _s(lib.PQresultErrorMessage(res)) if res else _s(
            lib.PQerrorMessage(conn))
    out["connection_ok"] = lib.PQstatus(conn) == CONNECTION_OK
    out["seconds"] = round(time.monotonic() - start, 3)
    if res:
        lib.PQclear(res)
    return out


def _notice(lib):
    @NOTICE_RECEIVER
    def receive(arg, res):
        NOTICES.append({k: _s(lib.PQresultErrorField(res, code)) for k, code in PG_DIAG.items()})
    return receive


def _emit(out):
    out["notices"] = NOTICES[:]
    NOTICES.clear()
    print(json.dumps(out), flush=True)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    lib = load_libpq()
    conn, out = connect(lib, argv[1])
    print(json.dumps(out), flush=True)
    if conn is None:
        return 0
    receiver = _notice(lib)  # kept referenced while the connection lives
    lib.PQsetNoticeReceiver(conn, receiver, None)
    try:
        for step in argv[2:]:
            if step == "-":
                sys.stdin.readline()
            elif step == "?":
                lib.PQconsumeInput(conn)
                _emit({"event": "input", "connection_ok": lib.PQstatus(conn) == CONNECTION_OK})
            else:
                _emit(run_step(lib, conn, step))
    finally:
        lib.PQfinish(conn)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
