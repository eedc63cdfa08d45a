/* pgconn: one PostgreSQL connection with deadlines: the name resolved by us,
 * then libpq's non-blocking connect and queries under poll(). */
#include "pgconn.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "conninfo.h"
#include "log.h"
#include "resolve.h"
#include "xalloc.h"

struct pgconn_params {
	char **keywords; /* NULL-terminated, for PQconnectStartParams */
	char **values;
	size_t n;
};

/* Set by the notice receiver when the server sent a FATAL outside a query:
 * the receiver runs in the thread that makes libpq parse input. */
static __thread bool notice_fatal;

/* ---- parameters ---- */

static void params_add(struct pgconn_params *p, const char *kw, const char *val)
{
	p->keywords[p->n] = xstrdup(kw);
	p->values[p->n] = xstrdup(val);
	p->n++;
}

const char *pgconn_params_get(const struct pgconn_params *p, const char *kw)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->keywords[i], kw) == 0)
			return p->values[i];
	return NULL;
}

/* Options given to libpq as they are, but these: connect_timeout (our
 * deadlines bound every connect; libpq's has a 2 s minimum and would only
 * get in the way), and sslrootcert where the system bundle stands in
 * (params_add_ca names the file). */
static bool passed_through(const PQconninfoOption *o, const struct conninfo_ca *ca)
{
	if (o->val == NULL || strcmp(o->keyword, "connect_timeout") == 0)
		return false;
	return !(ca->system && strcmp(o->keyword, "sslrootcert") == 0);
}

/* DESIGN.md §5: verify-ca/verify-full without a root certificate would make
 * libpq look for ~/.postgresql/root.crt, which a service account does not
 * have, and libpq before 16 reads sslrootcert=system as a file named
 * "system"; on every version, the system bundle is named explicitly. With
 * none found (check-config refuses that over TCP; a unix socket ignores
 * sslmode), libpq keeps its default, ~/.postgresql/root.crt. */
static void params_add_ca(struct pgconn_params *p, const struct conninfo_ca *ca)
{
	if (ca->implied_verify_full)
		params_add(p, "sslmode", "verify-full");
	if (ca->system && ca->verify && ca->file[0] != '\0')
		params_add(p, "sslrootcert", ca->file);
}

struct pgconn_params *pgconn_params_new(const char *database_url, char *err, size_t errlen)
{
	PQconninfoOption *opts = conninfo_parse(database_url);
	struct conninfo_ca ca;
	if (!opts) {
		/* libpq's parse errors quote pieces of the string, which may be
		 * the password: report only that it is invalid. */
		snprintf(err, errlen, "DATABASE_URL: not a valid connection string");
		return NULL;
	}
	size_t count = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		count++;
	struct pgconn_params *p = xcalloc(1, sizeof *p);
	p->keywords = xcalloc(count + 3, sizeof *p->keywords);
	p->values = xcalloc(count + 3, sizeof *p->values);
	conninfo_ca_of(opts, &ca);
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (passed_through(o, &ca))
			params_add(p, o->keyword, o->val);
	conninfo_free(opts);
	params_add_ca(p, &ca);
	return p;
}

void pgconn_params_free(struct pgconn_params *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		xfree_wiped(p->values[i]); /* the password, and names we owe no one */
		free(p->keywords[i]);
	}
	free(p->values);
	free(p->keywords);
	free(p);
}

/* ---- waiting on the socket ---- */

/* 1 when fd is ready for events (or has an error libpq should see), 0 when
 * deadline_ms passed first, -1 when there is no socket or poll failed. */
static int wait_socket(int fd, short events, int64_t deadline_ms)
{
	if (fd < 0)
		return -1;
	for (;;) {
		int64_t left = deadline_ms - clock_now_ms();
		if (left < 0)
			left = 0;
		struct pollfd pfd = { .fd = fd, .events = events };
		int r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r > 0)
			return 1;
		if (r == 0 && left == 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/* ---- connecting ---- */

static void notice_receiver(void *arg, const PGresult *res)
{
	(void)arg;
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0))
		notice_fatal = true;
	/* libpq's default prints to stderr, which would break json logs; the
	 * text may name objects, so it stays at debug level. */
	log_debug("db notice severity=%s sqlstate=%s", sev ? sev : "", state ? state : "");
}

static int connect_poll(PGconn *c, int64_t deadline_ms, struct db_error *err)
{
	/* Right after PQconnectStart, libpq says to act as if PQconnectPoll had
	 * returned PGRES_POLLING_WRITING. */
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED)
			return -1;
		short ev = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
		/* PQconnectPoll may move to another socket (next address, SSL or
		 * GSS fallback), so PQsocket is read again on every round. */
		int r = wait_socket(PQsocket(c), ev, deadline_ms);
		if (r == 0) {
			dberror_set(err, DB_TIMEOUT, true, "", "connect timed out");
			return -1;
		}
		if (r < 0)
			return -1;
		st = PQconnectPoll(c);
	}
	return 0;
}

static void fill_info(PGconn *c, int64_t start_us, struct pgconn_info *info)
{
	const char *proto = PQsslInUse(c) ? PQsslAttribute(c, "protocol") : NULL;
	const char *cipher = PQsslInUse(c) ? PQsslAttribute(c, "cipher") : NULL;
	info->server_version = PQserverVersion(c);
	snprintf(info->tls_protocol, sizeof info->tls_protocol, "%s", proto ? proto : "none");
	snprintf(info->tls_cipher, sizeof info->tls_cipher, "%s", cipher ? cipher : "none");
	info->connect_ms = (double)(clock_now_us() - start_us) / 1000.0;
}

/* Set keyword k to v in an attempt's arrays (n entries, room for one more). */
static void set_param(const char **kw, const char **val, size_t *n, const char *k, const char *v)
{
	for (size_t i = 0; i < *n; i++) {
		if (strcmp(kw[i], k) == 0) {
			val[i] = v;
			return;
		}
	}
	kw[*n] = k;
	val[(*n)++] = v;
}

/* libpq 15 resolves host names inside PQconnectStartParams, blocking and
 * unbounded: resolve them here within the attempt's deadline and hand libpq
 * hostaddr next to host (SNI and verify-full still see the name). */
static int resolve_hosts(const struct pgconn_params *p, int64_t deadline_ms,
			 struct resolve_params *r, struct db_error *err)
{
	char why[128];
	enum resolve_status st =
	    resolve_params(pgconn_params_get(p, "host"), pgconn_params_get(p, "hostaddr"),
			   pgconn_params_get(p, "port"), deadline_ms, r, why, sizeof why);

	if (st == RESOLVE_OK)
		return 0;
	dberror_set(err, st == RESOLVE_TIMEOUT ? DB_TIMEOUT : DB_UNREACHABLE, true, "", why);
	return -1;
}

/* PQconnectStartParams with p's parameters and r's resolved addresses. */
static PGconn *start_connect(const struct pgconn_params *p, const struct resolve_params *r)
{
	size_t n = p->n;
	const char **kw = xcalloc(n + 4, sizeof *kw);
	const char **val = xcalloc(n + 4, sizeof *val);

	memcpy(kw, p->keywords, n * sizeof *kw);
	memcpy(val, p->values, n * sizeof *val);
	if (r->host) {
		set_param(kw, val, &n, "host", r->host);
		set_param(kw, val, &n, "hostaddr", r->hostaddr);
		if (r->port)
			set_param(kw, val, &n, "port", r->port);
	}
	PGconn *c = PQconnectStartParams(kw, val, 0); /* copies what it keeps */
	free(kw);
	free(val);
	if (!c)
		abort(); /* libpq returns NULL only when out of memory */
	return c;
}

PGconn *pgconn_connect(const struct pgconn_params *p, int64_t deadline_ms, struct pgconn_info *info,
		       struct db_error *err)
{
	int64_t start_us = clock_now_us();
	struct resolve_params r = { 0 };

	dberror_clear(err);
	if (resolve_hosts(p, deadline_ms, &r, err) < 0)
		return NULL;
	PGconn *c = start_connect(p, &r);
	resolve_params_free(&r);
	/* Verbose errors carry the server's SQLSTATE in the text, the only
	 * place libpq 15 exposes it for a failed connection attempt. */
	PQsetErrorVerbosity(c, PQERRORS_VERBOSE);
	PQsetNoticeReceiver(c, notice_receiver, NULL);
	log_debug("db connecting host=%s", PQhost(c) ? PQhost(c) : "");
	if (PQstatus(c) == CONNECTION_BAD || connect_poll(c, deadline_ms, err) < 0)
		goto fail;
	if (PQsetnonblocking(c, 1) != 0)
		goto fail;
	fill_info(c, start_us, info);
	return c;
fail:
	if (err->category == DB_OK)
		dberror_classify_connect(PQerrorMessage(c), err);
	PQfinish(c);
	return NULL;
}

/* ---- queries ---- */

static int lost(PGconn *c, struct db_error *err)
{
	(void)c;
	/* Keep a SQLSTATE already seen (57P01 arrives just before the EOF). */
	char state[6];
	snprintf(state, sizeof state, "%s", err->sqlstate);
	dberror_set(err, DB_UNREACHABLE, true, state, "connection to the server was lost");
	return -1;
}

static int timed_out(struct db_error *err)
{
	dberror_set(err, DB_TIMEOUT, true, "", "query timed out");
	return -1;
}

/* Non-blocking mode: PQsend* may leave data queued; push it out, reading
 * whatever the server sends meanwhile so neither side deadlocks. */
static int flush_out(PGconn *c, int64_t deadline_ms, struct db_error *err)
{
	int f;
	while ((f = PQflush(c)) == 1) {
		int r = wait_socket(PQsocket(c), POLLIN | POLLOUT, deadline_ms);
		if (r == 0)
			return timed_out(err);
		if (r < 0 || !PQconsumeInput(c))
			return lost(c, err);
	}
	return f == 0 ? 0 : lost(c, err);
}

static int await_result(PGconn *c, int64_t deadline_ms, struct db_error *err)
{
	while (PQisBusy(c)) {
		int r = wait_socket(PQsocket(c), POLLIN, deadline_ms);
		if (r == 0)
			return timed_out(err);
		if (r < 0 || !PQconsumeInput(c))
			return lost(c, err);
	}
	return 0;
}

/* Records the first failed result in err; false when res is a success. */
static bool result_failed(const PGresult *res, struct db_error *err)
{
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY ||
	    st == PGRES_SINGLE_TUPLE)
		return false;
	if (err->category != DB_OK)
		return true;
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
		primary = "COPY is not supported";
	dberror_set(err, DB_QUERY_FAILED, dberror_sqlstate_transient(state), state,
		    primary ? primary : PQresStatus(st));
	return true;
}

static bool is_copy(const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	return st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
}

static int collect_results(PGconn *c, int64_t deadline_ms, PGresult **last, struct db_error *err)
{
	for (;;) {
		if (await_result(c, deadline_ms, err) < 0)
			return -1;
		PGresult *res = PQgetResult(c);
		if (!res)
			return 0;
		bool failed = result_failed(res, err);
		PQclear(*last);
		*last = res;
		/* In COPY state PQgetResult returns the same status forever; the
		 * connection is mid-COPY and its transaction state says discard. */
		if (failed && is_copy(res))
			return 0;
	}
}

static int exec_finish(PGconn *c, int64_t deadline_ms, PGresult **res_out, struct db_error *err)
{
	PGresult *last = NULL;
	if (flush_out(c, deadline_ms, err) < 0 || collect_results(c, deadline_ms, &last, err) < 0)
		goto fail;
	if (PQstatus(c) == CONNECTION_BAD) {
		lost(c, err);
		goto fail;
	}
	if (err->category != DB_OK)
		goto fail;
	if (res_out)
		*res_out = last;
	else
		PQclear(last);
	return 0;
fail:
	PQclear(last);
	return -1;
}

static int send_failed(PGconn *c, struct db_error *err)
{
	if (PQstatus(c) == CONNECTION_BAD)
		return lost(c, err);
	/* A command already in progress: the caller broke the protocol. */
	dberror_set(err, DB_QUERY_FAILED, false, "", "could not send the query");
	return -1;
}

int pgconn_exec(PGconn *c, const char *sql, int64_t deadline_ms, PGresult **res_out,
		struct db_error *err)
{
	dberror_clear(err);
	if (res_out)
		*res_out = NULL;
	if (!PQsendQuery(c, sql))
		return send_failed(c, err);
	return exec_finish(c, deadline_ms, res_out, err);
}

int pgconn_exec_params(PGconn *c, const char *sql, int nparams, const char *const *values,
		       int64_t deadline_ms, PGresult **res_out, struct db_error *err)
{
	dberror_clear(err);
	if (res_out)
		*res_out = NULL;
	if (!PQsendQueryParams(c, sql, nparams, NULL, values, NULL, NULL, 0))
		return send_failed(c, err);
	return exec_finish(c, deadline_ms, res_out, err);
}

/* ---- liveness ---- */

/* One look at the socket without waiting: 1 nothing pending, 0 dead,
 * -1 something arrived and was consumed (look again). */
static int look_once(PGconn *c)
{
	struct pollfd pfd = { .fd = PQsocket(c), .events = POLLIN };
	if (pfd.fd < 0)
		return 0;
	int r = poll(&pfd, 1, 0);
	if (r == 0)
		return 1;
	if (r < 0)
		return errno == EINTR ? -1 : 0;
	if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))
		return 0;
	notice_fatal = false;
	if (!PQconsumeInput(c))
		return 0;  /* EOF: the server or a middlebox closed it */
	(void)PQisBusy(c); /* parses the input: a FATAL reaches notice_receiver */
	if (notice_fatal || PQstatus(c) != CONNECTION_OK)
		return 0;
	return -1;
}

bool pgconn_looks_alive(PGconn *c)
{
	if (!c || PQstatus(c) != CONNECTION_OK)
		return false;
	/* An idle server sends nothing unasked. A server shutting down sends
	 * FATAL 57P01 and then closes, and the EOF may trail the FATAL, so look
	 * a few times; a TLS record with no payload is consumed and forgotten. */
	for (int i = 0; i < 4; i++) {
		int r = look_once(c);
		if (r >= 0)
			return r == 1;
	}
	return PQtransactionStatus(c) == PQTRANS_IDLE;
}

/* After Terminate, how long we wait for the server's backend to exit. */
#define CLOSE_EOF_WAIT_MS 100

/* Read and drop what the server still sends on fd (a TLS close_notify) until
 * it closes the connection, bounded. */
static void wait_server_close(int fd)
{
	int64_t until = clock_now_ms() + CLOSE_EOF_WAIT_MS;
	char buf[512];

	for (int64_t left; (left = until - clock_now_ms()) > 0;) {
		struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
		if (poll(&p, 1, (int)left) <= 0)
			return;
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return;
	}
}

/* The backend logs its disconnection and exits before it closes its end:
 * waiting for that close (a copy of the socket outlives PQfinish) means that
 * a connection we count as closed is closed on the server too, so a slot of
 * the instance's bound (dbslots.c) is never given to a new connection while
 * the old backend still runs. A connection already broken is not waited on. */
void pgconn_close(PGconn *c)
{
	if (!c)
		return;
	int fd = PQstatus(c) == CONNECTION_OK ? PQsocket(c) : -1;
	int copy = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	PQfinish(c);
	if (copy >= 0) {
		wait_server_close(copy);
		close(copy);
	}
}
