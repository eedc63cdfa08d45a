/* doctor: findings about the database set-up (DESIGN.md §3).
 *
 * Pooler detection: a Neon host says it by name ("-pooler" after the endpoint
 * ID). Elsewhere the connection's BackendKeyData pid is compared with
 * pg_backend_pid(): PgBouncer hands clients a key of its own, so the two
 * differ behind it (and behind any pooler or proxy that does the same);
 * PostgreSQL itself always reports its own pid. The capacity check runs
 * through a transaction-mode pooler too: current_setting() needs no session. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "clock.h"
#include "config.h"
#include "conninfo.h"
#include "doctor.h"
#include "pgconn.h"

/* Neon's smallest computes allow about this many connections (DESIGN.md §3). */
#define NEON_DIRECT_MAX 100
/* Neon suspends an idle compute after five minutes. */
#define NEON_SUSPEND_S 300

/* ---- findings (pure) ---- */

struct tally {
	FILE *out;
	int fails;
};

static void finding(struct tally *t, const char *level, const char *topic, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void finding(struct tally *t, const char *level, const char *topic, const char *fmt, ...)
{
	va_list ap;

	if (strcmp(level, "fail") == 0)
		t->fails++;
	fprintf(t->out, "%-4s %s: ", level, topic);
	va_start(ap, fmt);
	vfprintf(t->out, fmt, ap);
	va_end(ap);
	fputc('\n', t->out);
}

bool doctor_neon_host(const char *host, bool *pooler)
{
	size_t label = strcspn(host, ".");
	size_t n = strlen(host);
	static const char suffix[] = ".neon.tech";

	*pooler = label >= 7 && strncmp(host + label - 7, "-pooler", 7) == 0;
	if (strncmp(host, "ep-", 3) == 0 && host[label] == '.')
		return true;
	return n > sizeof(suffix) - 1 && strcmp(host + n - (sizeof(suffix) - 1), suffix) == 0;
}

static void report_versions(struct tally *t, const struct doctor_facts *f)
{
	finding(t, "ok", "libpq",
		"%d.%d linked; every option in DATABASE_URL is one it knows (check-config and "
		"start-up refuse the others)",
		f->libpq_version / 10000, f->libpq_version % 10000);
	if (f->connected)
		finding(t, "ok", "server", "PostgreSQL %d.%d", f->server_version / 10000,
			f->server_version % 10000);
}

static void report_tls(struct tally *t, const struct doctor_facts *f)
{
	if (!f->host[0]) {
		finding(t, "ok", "tls", "none needed: unix socket");
		return;
	}
	if (f->connected && f->tls_protocol[0])
		finding(t, "ok", "tls", "%s %s", f->tls_protocol, f->tls_cipher);
	if (f->verify && f->ca_file[0])
		finding(t, "ok", "ca", "sslmode=%s: the server is verified with %s (from %s)",
			f->sslmode, f->ca_file, f->ca_source);
	else if (!f->verify)
		finding(t, "warn", "ca",
			"sslmode=%s encrypts but does not verify the server: set "
			"sslmode=verify-full (the system CA bundle is used without sslrootcert)",
			f->sslmode);
	if (strcmp(f->channel_binding, "require") == 0)
		finding(t, "ok", "channel_binding", "required: SCRAM is bound to the TLS channel");
	else
		finding(t, "ok", "channel_binding",
			"not required (%s): add channel_binding=require to refuse a server that "
			"skips SCRAM",
			f->channel_binding[0] ? f->channel_binding : "libpq's default, prefer");
}

/* true when connections go through a pooler. */
static bool report_pooler(struct tally *t, const struct doctor_facts *f)
{
	bool pooler = false, neon = f->host[0] && doctor_neon_host(f->host, &pooler);

	if (neon && pooler) {
		finding(t, "ok", "pooler",
			"Neon pooled host (-pooler): PgBouncer in transaction mode");
	} else if (neon && f->bound > NEON_DIRECT_MAX) {
		finding(t, "warn", "pooler",
			"direct Neon host and this instance may open %ld connections; Neon's "
			"smallest computes allow about %d: use the -pooler host, or lower WORKERS, "
			"DB_POOL_SIZE or DB_MAX_OVERFLOW",
			f->bound, NEON_DIRECT_MAX);
	} else if (neon) {
		finding(t, "ok", "pooler", "direct Neon host (no pooler); bound %ld <= %d",
			f->bound, NEON_DIRECT_MAX);
	} else if (f->connected && f->pid_differs) {
		pooler = true;
		finding(
		    t, "ok", "pooler",
		    "a pooler (PgBouncer or similar) answers: its backend pid is not the server's");
	} else if (f->connected) {
		finding(t, "ok", "pooler", "none detected: connected to PostgreSQL directly");
	}
	return pooler;
}

static void report_connect_time(struct tally *t, const struct doctor_facts *f)
{
	if (f->warm_ms < 0)
		finding(t, "warn", "connect",
			"cold %.1f ms, but a second connect failed: see `neonfcgi ping`",
			f->cold_ms);
	else
		finding(t, "ok", "connect",
			"cold %.1f ms, warm %.1f ms (DB_CONNECT_TIMEOUT_MS "
			"must cover a cold one)",
			f->cold_ms, f->warm_ms);
}

static void report_capacity(struct tally *t, const struct doctor_facts *f, bool pooled)
{
	char budget[64] = "DB_CONNECTION_BUDGET unset";

	if (f->budget >= 0)
		snprintf(budget, sizeof(budget), "DB_CONNECTION_BUDGET %ld", f->budget);
	if (f->max_connections < 0) {
		finding(t, "warn", "capacity", "could not read max_connections; bound %ld, %s",
			f->bound, budget);
		return;
	}
	long avail = f->max_connections - f->reserved;
	if (pooled)
		finding(t, "ok", "capacity",
			"bound %ld, %s; behind the pooler the server's max_connections %ld (%ld "
			"usable) limits the pooler, not this instance",
			f->bound, budget, f->max_connections, avail);
	else if (f->bound > avail)
		finding(t, "fail", "capacity",
			"this instance may open %ld connections (WORKERS x (DB_POOL_SIZE + "
			"DB_MAX_OVERFLOW)) but the server allows %ld (max_connections %ld less %ld "
			"reserved): lower WORKERS, DB_POOL_SIZE or DB_MAX_OVERFLOW, raise "
			"max_connections, or use a pooler",
			f->bound, avail, f->max_connections, f->reserved);
	else
		finding(t, "ok", "capacity",
			"bound %ld <= %ld usable (max_connections %ld less %ld reserved), %s",
			f->bound, avail, f->max_connections, f->reserved, budget);
}

static void report_idle_timeout(struct tally *t, const struct doctor_facts *f)
{
	if (f->idle_timeout_s == 0 || f->idle_timeout_s >= NEON_SUSPEND_S)
		finding(t, "warn", "idle_timeout",
			"DB_IDLE_TIMEOUT_S=%ld: idle connections %s, so a Neon compute never "
			"suspends: set it below %d (default 240)",
			f->idle_timeout_s,
			f->idle_timeout_s ? "outlive Neon's 5-minute suspend" : "are never closed",
			NEON_SUSPEND_S);
	else
		finding(
		    t, "ok", "idle_timeout",
		    "DB_IDLE_TIMEOUT_S=%ld: idle connections close before Neon's 5-minute suspend",
		    f->idle_timeout_s);
}

int doctor_report(const struct doctor_facts *f, FILE *out)
{
	struct tally t = { .out = out };

	report_versions(&t, f);
	if (!f->connected)
		finding(&t, "fail", "connect",
			"%s: check DATABASE_URL, the network and the database (`neonfcgi ping` "
			"shows each attempt)",
			f->error);
	report_tls(&t, f);
	bool pooled = report_pooler(&t, f);
	if (f->connected) {
		report_connect_time(&t, f);
		report_capacity(&t, f, pooled);
	}
	report_idle_timeout(&t, f);
	return t.fails ? 1 : 0;
}

/* ---- probing ---- */

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static void facts_from_url(const struct config *cfg, struct doctor_facts *f)
{
	PQconninfoOption *opts = conninfo_parse(cfg->database_url);
	struct conninfo_ca ca;

	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (strcmp(o->keyword, "host") == 0 && o->val && o->val[0] != '/')
			snprintf(f->host, sizeof(f->host), "%.*s", (int)strcspn(o->val, ","),
				 o->val);
		else if (strcmp(o->keyword, "sslmode") == 0)
			copy(f->sslmode, sizeof(f->sslmode), o->val ? o->val : getenv("PGSSLMODE"));
		else if (strcmp(o->keyword, "channel_binding") == 0)
			copy(f->channel_binding, sizeof(f->channel_binding), o->val);
	}
	conninfo_free(opts);
	if (!f->sslmode[0])
		copy(f->sslmode, sizeof(f->sslmode), "prefer");
	if (conninfo_ca(cfg->database_url, &ca) == 0) {
		f->verify = ca.verify;
		copy(f->ca_file, sizeof(f->ca_file), ca.file);
		copy(f->ca_source, sizeof(f->ca_source), ca.source);
	}
}

#define CAPACITY_SQL                                                                               \
	"SELECT current_setting('max_connections')::int, "                                         \
	"current_setting('superuser_reserved_connections')::int + "                                \
	"coalesce(current_setting('reserved_connections', true)::int, 0), pg_backend_pid()"

static void facts_from_server(PGconn *c, int64_t deadline_ms, struct doctor_facts *f)
{
	PGresult *res = NULL;
	struct db_error err = { 0 };

	if (pgconn_exec(c, CAPACITY_SQL, deadline_ms, &res, &err) == 0 && res &&
	    PQntuples(res) == 1) {
		f->max_connections = atol(PQgetvalue(res, 0, 0));
		f->reserved = atol(PQgetvalue(res, 0, 1));
		f->pid_differs = atol(PQgetvalue(res, 0, 2)) != (long)PQbackendPID(c);
	}
	PQclear(res);
}

static PGconn *connect_timed(const struct config *cfg, const struct pgconn_params *p,
			     struct pgconn_info *info, struct db_error *err, double *ms)
{
	int64_t t0 = clock_now_us();
	PGconn *c = pgconn_connect(p, clock_now_ms() + cfg->db_connect_timeout_ms, info, err);

	*ms = (double)(clock_now_us() - t0) / 1000.0;
	return c;
}

static void facts_from_connections(const struct config *cfg, struct doctor_facts *f)
{
	char perr[256];
	struct pgconn_info info = { 0 };
	struct db_error err = { 0 };
	struct pgconn_params *p = pgconn_params_new(cfg->database_url, perr, sizeof(perr));

	if (!p) {
		copy(f->error, sizeof(f->error), perr);
		return;
	}
	PGconn *c = connect_timed(cfg, p, &info, &err, &f->cold_ms);
	if (!c) {
		snprintf(f->error, sizeof(f->error), "cannot connect: %s (%s)",
			 db_category_name(err.category), err.message);
		pgconn_params_free(p);
		return;
	}
	f->connected = true;
	f->server_version = info.server_version;
	copy(f->tls_protocol, sizeof(f->tls_protocol), info.tls_protocol);
	copy(f->tls_cipher, sizeof(f->tls_cipher), info.tls_cipher);
	pgconn_close(c);
	c = connect_timed(cfg, p, &info, &err, &f->warm_ms);
	if (c) {
		facts_from_server(c, clock_now_ms() + cfg->db_connect_timeout_ms, f);
		pgconn_close(c);
	} else {
		f->warm_ms = -1;
	}
	pgconn_params_free(p);
}

int doctor_run(const struct config *cfg, FILE *out)
{
	struct doctor_facts f = { .libpq_version = PQlibVersion(),
				  .max_connections = -1,
				  .reserved = -1,
				  .bound = config_db_bound(cfg),
				  .budget = cfg->db_connection_budget,
				  .idle_timeout_s = cfg->db_idle_timeout_s };

	facts_from_url(cfg, &f);
	facts_from_connections(cfg, &f);
	return doctor_report(&f, out);
}
