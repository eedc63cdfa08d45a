"""PostgreSQL's connection log, replayed (log_connections and
log_disconnections on, the dev databases' log_line_prefix '%m [%p] %q%u@%d ').

    peak, opened = replay_peak(text, application_name="neonfcgi_x")
    steps, opened = replay(text, user="soak_a", gone={backend_pid: epoch_s})

A backend counts from its `connection received` line to its `disconnection`
line, in log order, when its `connection authorized` line names the
application (or the user). A server that becomes ready again after a stop or
a crash has no backend left, whether or not each logged its disconnection (an
immediate shutdown kills them without a word): the replay forgets them there.

`gone` ends a backend earlier than its disconnection line: at the first line
logged at or after the time given (seconds since the epoch), for a backend
whose client was seen to have closed the connection while the server could
not notice yet (a stopped backend, a client's FIN dropped by a firewall).
"""

import datetime
import re

LOG_LINE = re.compile(r"^(\S+ \S+) (\S+) \[(\d+)\] .*?LOG:  (connection received|connection "
                      r"authorized|disconnection|database system is ready to accept "
                      r"connections)(.*)$")


def log_time(stamp, zone):
    """Seconds since the epoch of a %m stamp ("2026-01-02 03:04:05.678", "UTC")."""
    t = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
    if zone in ("UTC", "GMT"):
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.timestamp()


def replay(text, application_name=None, user=None, gone=None):
    """([(line number, live backends after it)] for every line that changed
    the count of the matching backends, how many were opened)."""
    if (application_name is None) == (user is None):
        raise ValueError("give exactly one of application_name and user")
    needle = (f"application_name={application_name}" if application_name is not None
              else f"user={user} ")
    gone = gone or {}
    events, ours = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        m = LOG_LINE.match(line)
        if not m:
            continue
        stamp, zone, pid, kind, rest = m.groups()
        events.append((n, stamp, zone, int(pid), kind))
        if kind == "connection authorized" and needle in rest + " ":
            ours.add(int(pid))
    live, out = set(), []
    for n, stamp, zone, pid, kind in events:
        if gone and live:
            t = log_time(stamp, zone)
            ended = {p for p in live if p in gone and gone[p] <= t}
            if ended:
                live -= ended
                out.append((n, len(live)))
        if kind.startswith("database system is ready"):
            if live:
                live.clear()
                out.append((n, 0))
            continue
        if pid not in ours:
            continue
        if kind == "connection received":
            live.add(pid)
        elif kind == "disconnection":
            live.discard(pid)
        else:
            continue
        out.append((n, len(live)))
    return out, len(ours)


def replay_peak(text, application_name=None, user=None):
    """(peak number of matching backends at once, how many were opened)."""
    steps, opened = replay(text, application_name=application_name, user=user)
    return max((live for _, live in steps), default=0), opened
