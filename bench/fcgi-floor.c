/* fcgi-floor: the floor cost of FastCGI itself, for `make bench` (bench/bench.py).
 *
 * A bare libfcgi responder: PROCESSES pre-forked processes, each running one
 * FCGX_Accept_r loop on a shared unix socket and answering a fixed small JSON
 * with the same headers as neonfcgi's /health. Built a second time with
 * FLOOR_DB=1 as fcgi-db-floor: each process then holds one persistent libpq
 * connection (opened after fork, from DATABASE_URL) and runs PQexec("SELECT 1")
 * per request, the naive C lower bound for a database check.
 *
 * Usage: fcgi-floor SOCKET_PATH PROCESSES
 * SIGTERM/SIGINT stop the children and remove the socket. If a child dies the
 * whole floor stops: a benchmark must not silently run with fewer processes. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcgiapp.h>
#include <libpq-fe.h>

#ifndef FLOOR_DB
#define FLOOR_DB 0
#endif

/* Large enough for the harness's c=256 bursts; the kernel caps it at somaxconn. */
#define FLOOR_BACKLOG 4096
#define MAX_PROCESSES 256

static char reply_ok[512];
static int reply_ok_len;
static const char reply_fail[] =
    "Status: 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    "Content-Length: 17\r\nCache-Control: no-store\r\n\r\n{\"status\":\"fail\"}";

/* Precomputed once per process: the floor does no per-request formatting. */
static void build_reply(void)
{
	char body[160];
	int n = snprintf(body, sizeof(body),
			 "{\"status\":\"pass\",\"serviceId\":\"fcgi-floor\",\"version\":\"0.1.0\","
			 "\"uptime_s\":0,\"pid\":%d}",
			 (int)getpid());

	reply_ok_len = snprintf(reply_ok, sizeof(reply_ok),
				"Status: 200 OK\r\nContent-Type: application/health+json\r\n"
				"Content-Length: %d\r\nCache-Control: no-store\r\n\r\n%s",
				n, body);
}

static PGconn *db_connect(void)
{
	const char *url = getenv("DATABASE_URL");
	PGconn *c;

	if (!url) {
		fprintf(stderr, "fcgi-db-floor: DATABASE_URL is not set\n");
		exit(1);
	}
	c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "fcgi-db-floor: connect failed: %s", PQerrorMessage(c));
		exit(1);
	}
	return c;
}

/* One round trip; a broken connection is reset for the next request. */
static int db_check(PGconn *c)
{
	PGresult *r = PQexec(c, "SELECT 1");
	int ok = PQresultStatus(r) == PGRES_TUPLES_OK;

	PQclear(r);
	if (!ok && PQstatus(c) != CONNECTION_OK)
		PQreset(c);
	return ok ? 0 : -1;
}

static void serve(int listen_fd)
{
	FCGX_Request req;
	PGconn *db = FLOOR_DB ? db_connect() : NULL;

	build_reply();
	if (FCGX_Init() != 0)
		exit(1);
	/* libfcgi's SIGTERM handler only flags a pending shutdown; the floor
	 * just dies, so the parent's stop is immediate. */
	signal(SIGTERM, SIG_DFL);
	FCGX_InitRequest(&req, listen_fd, 0);
	while (FCGX_Accept_r(&req) >= 0) {
		if (FLOOR_DB && db_check(db) < 0)
			FCGX_PutStr(reply_fail, (int)sizeof(reply_fail) - 1, req.out);
		else
			FCGX_PutStr(reply_ok, reply_ok_len, req.out);
		FCGX_Finish_r(&req);
	}
	if (db)
		PQfinish(db);
	exit(0);
}

static void stop_children(const pid_t *pids, int n)
{
	for (int i = 0; i < n; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGTERM);
	while (wait(NULL) > 0 || errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	pid_t pids[MAX_PROCESSES] = { 0 };
	sigset_t set;
	int sig, n, fd;

	if (argc != 3 || (n = atoi(argv[2])) < 1 || n > MAX_PROCESSES) {
		fprintf(stderr, "usage: %s SOCKET_PATH PROCESSES(1-%d)\n", argv[0], MAX_PROCESSES);
		return 64;
	}
	fd = FCGX_OpenSocket(argv[1], FLOOR_BACKLOG);
	if (fd < 0) {
		fprintf(stderr, "%s: cannot listen on %s\n", argv[0], argv[1]);
		return 1;
	}
	/* Taken synchronously below; children get the default dispositions back. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			sigprocmask(SIG_UNBLOCK, &set, NULL);
			serve(fd);
		}
	}
	do {
		sig = sigwaitinfo(&set, NULL);
	} while (sig < 0 && errno == EINTR);
	if (sig == SIGCHLD)
		fprintf(stderr, "%s: a child exited; stopping\n", argv[0]);
	stop_children(pids, n);
	unlink(argv[1]);
	return sig == SIGCHLD ? 1 : 0;
}
