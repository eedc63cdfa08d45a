"""lighttpd and Apache in the foreground, each in a private directory with a
minimal main configuration that includes the site text a test renders from
deploy/ (nginx, which most tests use, is harness.Nginx):

    from webservers import Apache, Lighttpd, start_web
    with start_web(Lighttpd, tmp_path, site_text) as web:      # ready
        r = web.get("/health")
        web.stop()            # SIGTERM to the server alone, bounded wait

Each runs in a session of its own, with the clean PATH; close() (the context
manager's exit) kills what is left of its process group and records its
output and logs for the run's password check.
"""

import signal
import subprocess
from pathlib import Path

from harness import (CLEAN_PATH, RECORD, fail, free_port, halt, http_request, spawn, tail,
                     wait_listening)

APACHE_MODULES = Path("/usr/lib/apache2/modules")
WEB_USER = "www-data"   # Debian's user for lighttpd/Apache children


class WebServer:
    """A web server in the foreground, in a session of its own. stop() signals
    its main process and waits (bounded) for it alone, so that a test can see
    what the server itself leaves behind; close() then kills whatever of its
    process group is left. A context manager."""

    name = "web"

    def __init__(self, workdir, port):
        self.dir = Path(workdir)
        self.port = port
        self.out_path = self.dir / f"{self.name}.out"
        self.proc = None

    def _spawn(self, args):
        with open(self.out_path, "wb") as out:
            self.proc = spawn(args, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, cwd=self.dir, env={"PATH": CLEAN_PATH})

    def logs(self):
        return tail(self.out_path, 40)

    def wait_ready(self, timeout=15.0):
        wait_listening(self.proc, ("127.0.0.1", self.port), self.name, self.logs, timeout)
        return self

    def get(self, path, timeout=5.0):
        return http_request(self.port, "GET", path, timeout=timeout)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            fail(f"{self.name} still running {timeout:g}s after signal {sig}\n{self.logs()}")

    def close(self):
        if self.proc is None:
            return
        halt(self.proc)
        self.record()

    def record(self):
        RECORD.add_file(f"{self.name} output", self.out_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def start_web(cls, workdir, *args, attempts=3):
    """Start cls(workdir/N, port, *args) on a free port; retry with another
    port when the one picked was taken in the meantime."""
    for n in range(attempts):
        d = Path(workdir) / f"{cls.name}{n}"
        d.mkdir(parents=True)
        srv = cls(d, free_port(), *args)
        try:
            return srv.wait_ready()
        except AssertionError:
            busy = "Address already in use" in srv.logs()
            srv.close()
            if busy and n + 1 < attempts:
                continue
            raise
    raise AssertionError("unreachable")


class Lighttpd(WebServer):
    """lighttpd -D with a minimal lighttpd.conf that includes site_text."""

    name = "lighttpd"

    def __init__(self, workdir, port, site_text):
        super().__init__(workdir, port)
        (self.dir / "htdocs").mkdir()
        (self.dir / "site.conf").write_text(site_text)
        (self.dir / "lighttpd.conf").write_text(f"""\
server.document-root = "{self.dir}/htdocs"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{self.dir}/error.log"
server.upload-dirs = ( "{self.dir}" )
include "{self.dir}/site.conf"
""")
        self._spawn(["lighttpd", "-D", "-f", self.dir / "lighttpd.conf"])

    def logs(self):
        return tail(self.dir / "error.log", 20) + "\n" + tail(self.out_path, 30)

    def record(self):
        super().record()
        RECORD.add_file("lighttpd error.log", self.dir / "error.log")


class Apache(WebServer):
    """Debian's apache2 in the foreground with its own ServerRoot (this
    directory), pid file, mutexes, runtime dir and error log; modules loaded
    from /usr/lib/apache2/modules; never /etc/apache2. Run as root, it drops
    its children to www-data (Apache refuses to serve as root)."""

    name = "apache"

    def __init__(self, workdir, port, site_text, modules, extra=""):
        super().__init__(workdir, port)
        d = self.dir
        for sub in ("run", "logs", "htdocs"):
            (d / sub).mkdir()
        (d / "site.conf").write_text(site_text)
        loads = "".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so\n"
                        for m in ("mpm_event", "authz_core", *modules))
        (d / "httpd.conf").write_text(f"""\
ServerRoot "{d}"
DefaultRuntimeDir "{d}/run"
PidFile "{d}/run/httpd.pid"
Mutex file:{d}/run default
ErrorLog "{d}/logs/error.log"
LogLevel info
Listen 127.0.0.1:{port}
ServerName 127.0.0.1
User {WEB_USER}
Group {WEB_USER}
{loads}
StartServers 1
ServerLimit 1
ThreadsPerChild 8
MaxRequestWorkers 8
MinSpareThreads 1
MaxSpareThreads 8
DocumentRoot "{d}/htdocs"
{extra}
Include "{d}/site.conf"
""")
        self._spawn(["apache2", "-d", d, "-f", d / "httpd.conf", "-DFOREGROUND"])

    def logs(self):
        return tail(self.dir / "logs" / "error.log", 30) + "\n" + tail(self.out_path, 10)

    def record(self):
        super().record()
        RECORD.add_file("apache error.log", self.dir / "logs" / "error.log")
