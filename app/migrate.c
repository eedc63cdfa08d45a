/* migrate: the runner of schema migrations; migplan decides what to run,
 * this file runs it against the database through pgconn and says what it did.
 *
 * Concurrency: every check-and-apply happens inside one transaction that
 * first takes pg_advisory_xact_lock, so runners on many hosts serialize and
 * re-check, and the lock dies with the transaction — a transaction-mode
 * pooler (PgBouncer, Neon's -pooler hosts) keeps a transaction on one server
 * connection, but not a session, so a session lock would not hold there.
 * Files marked no-transaction are run by the one runner holding a claim
 * (see claim()); the others wait for its record. */
#include "migrate.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "migplan.h"
#include "migsplit.h"
#include "pgconn.h"
#include "retry.h"
#include "xalloc.h"

#define TABLE "neonfcgi_schema_migrations"
/* The advisory lock key is "neonfcgi" in ASCII (0x6e656f6e66636769):
 * recognisable in pg_locks and unlikely to collide with an application's. */
#define LOCK_KEY "7954886836774725481"
#define LOCK_SQL "BEGIN; SELECT pg_advisory_xact_lock(" LOCK_KEY ")"
/* The claim on no-transaction files (see claim()): the next key. */
#define CLAIM_KEY "7954886836774725482"
#define CLAIM_SQL                                                                                  \
	"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_try_advisory_xact_lock(" CLAIM_KEY ")"
#define CLAIM_POLL_MS 250
#define CREATE_SQL                                                                                 \
	LOCK_SQL "; CREATE TABLE IF NOT EXISTS " TABLE " (version integer PRIMARY KEY, "           \
		 "name text NOT NULL, checksum text NOT NULL, "                                    \
		 "applied_at timestamptz NOT NULL DEFAULT now(), duration_ms bigint NOT NULL); "   \
		 "COMMIT"
#define SELECT_APPLIED                                                                             \
	"SELECT version, name, checksum, "                                                         \
	"to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"') FROM " TABLE         \
	" ORDER BY version"
/* DDL may legitimately take minutes (a table rewrite, an index build, a lock
 * wait behind a long query, or the advisory lock while another host migrates);
 * the deadline only catches a server that stopped answering. */
#define STATEMENT_DEADLINE_MS (10 * 60 * 1000)
#define ROLLBACK_DEADLINE_MS  5000
/* The cap of the MIGRATE_ON_START wait, below RETRY_BACKOFF_CAP_MS: the
 * whole service waits on it, so it looks at a waking compute once a second. */
#define START_BACKOFF_CAP_MS 1000

/* ---- the database ---- */

enum run_result { RUN_OK, RUN_FAILED, RUN_TRANSIENT };

struct runner {
	const struct config *cfg;
	enum migrate_mode mode;
	bool on_start;       /* say() to the log (master start-up), not stdout/stderr */
	int connect_retries; /* transient connect failures retried in place */
	struct pgconn_params *params;
	PGconn *conn;
	PGconn *claim_conn; /* opened for the first no-transaction file */
	/* Set when a run fails on the database; category DB_OK means the failure
	 * (bad files, refusals) was already reported. */
	struct db_error err;
	const char *stage; /* what failed when no file did */
	/* The file being applied, copied: the file list is gone when a caller
	 * reports the failure. */
	char failed[256];
	bool failed_no_tx;
	int failed_line;   /* its failing statement (no-transaction files) */
	bool table_exists; /* neonfcgi_schema_migrations, as last read */
	size_t applied, skipped;
	struct retry_rng rng; /* connect backoffs */
};

static void set_error(struct runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(struct runner *r, const char *fmt, ...)
{
	va_list ap;

	r->err.category = DB_QUERY_FAILED;
	r->err.transient = false;
	r->err.sqlstate[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(r->err.message, sizeof(r->err.message), fmt, ap);
	va_end(ap);
}

static enum run_result failure(const struct runner *r)
{
	return r->err.transient ? RUN_TRANSIENT : RUN_FAILED;
}

/* ---- what a run says: one message per event, for both audiences ---- */

/* Where a message goes. `neonfcgi migrate` prints results on stdout and the
 * rest on stderr after "neonfcgi: migrate: "; MIGRATE_ON_START sends the same
 * text to the log after "migrate: " at the level of its kind (as OpenBSD's
 * log.c sends one log_warnx to syslog, or to stderr in the foreground). */
enum say_kind {
	SAY_DEBUG,   /* the log only, in both cases */
	SAY_RESULT,  /* stdout | info */
	SAY_NOTE,    /* stderr | info */
	SAY_WARNING, /* stderr, "warning: " | warn */
	SAY_ERROR,   /* stderr | error */
};

static void say(const struct runner *r, enum say_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(const struct runner *r, enum say_kind kind, const char *fmt, ...)
{
	static const enum log_level levels[] = {
		[SAY_DEBUG] = LOG_LEVEL_DEBUG, [SAY_RESULT] = LOG_LEVEL_INFO,
		[SAY_NOTE] = LOG_LEVEL_INFO,   [SAY_WARNING] = LOG_LEVEL_WARN,
		[SAY_ERROR] = LOG_LEVEL_ERROR,
	};
	char text[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (r->on_start || kind == SAY_DEBUG) {
		/* One event, one log line, whatever a server message holds. */
		for (char *c = text; *c; c++)
			if (*c == '\n' || *c == '\r')
				*c = ' ';
		log_write(levels[kind], 0, "migrate: %s", text);
	} else if (kind == SAY_RESULT) {
		printf("%s\n", text);
		fflush(stdout);
	} else {
		fprintf(stderr, "neonfcgi: migrate: %s%s\n", kind == SAY_WARNING ? "warning: " : "",
			text);
	}
}

/* A key="value" log field: the log parser takes \" and \\ escapes. */
static void quote_for_log(const char *in, char *out, size_t outlen)
{
	size_t n = 0;

	for (; *in && n + 2 < outlen; in++) {
		if (*in == '"' || *in == '\\')
			out[n++] = '\\';
		out[n++] = (*in == '\n' || *in == '\r') ? ' ' : *in;
	}
	out[n] = '\0';
}

/* "SQLSTATE 42601: syntax error at or near …" or "timeout: query timed out". */
static void describe(const struct db_error *e, char *out, size_t outlen)
{
	if (e->sqlstate[0])
		snprintf(out, outlen, "SQLSTATE %s: %s", e->sqlstate, e->message);
	else
		snprintf(out, outlen, "%s: %s", db_category_name(e->category), e->message);
}

static void say_problems(const struct runner *r, const struct problems *p)
{
	for (size_t i = 0; i < p->n; i++)
		say(r, SAY_ERROR, "%s", p->lines[i]);
}

static void say_nothing_applied(const struct runner *r)
{
	if (r->mode == MIGRATE_RUN)
		say(r, SAY_ERROR, "nothing was applied");
}

static void say_applied(struct runner *r, const struct migplan_file *f, int64_t ms)
{
	r->applied++;
	say(r, SAY_RESULT, "applied %s in %lld ms", f->name, (long long)ms);
}

static void say_skipped(struct runner *r, const struct migplan_file *f)
{
	r->skipped++;
	say(r, SAY_RESULT, "skipped %s: applied meanwhile by another runner", f->name);
}

static void say_missing(const struct runner *r, const struct migplan *plan)
{
	for (size_t i = 0; i < plan->n; i++) {
		const struct migplan_step *s = &plan->v[i];
		if (s->state == MIGPLAN_MISSING)
			say(r, SAY_WARNING,
			    "version %04d (%s) is applied but its file is not in MIGRATIONS_DIR",
			    s->version, s->applied->name);
	}
}

static void say_done(const struct runner *r, const struct migplan *plan)
{
	size_t already = migplan_count(plan, MIGPLAN_APPLIED) + r->skipped;
	int version = plan->n ? plan->v[plan->n - 1].version : 0;

	say(r, SAY_RESULT, "%zu applied, %zu already applied; database at version %04d", r->applied,
	    already, version);
}

static void say_dry_run(const struct runner *r, const struct migplan *plan)
{
	size_t n = 0;

	for (size_t i = 0; i < plan->n; i++) {
		const struct migplan_file *f = plan->v[i].file;
		if (plan->v[i].state != MIGPLAN_PENDING)
			continue;
		say(r, SAY_RESULT, "would apply %s%s", f->name,
		    f->no_transaction ? " (no transaction)" : "");
		n++;
	}
	say(r, SAY_RESULT, "dry run: %zu to apply, %zu already applied; nothing was changed", n,
	    migplan_count(plan, MIGPLAN_APPLIED));
}

static void say_file_failure(const struct runner *r)
{
	char where[300], detail[400];

	if (r->failed_line)
		snprintf(where, sizeof(where), "%s line %d", r->failed, r->failed_line);
	else
		snprintf(where, sizeof(where), "%s", r->failed);
	describe(&r->err, detail, sizeof(detail));
	say(r, SAY_ERROR, "%s failed: %s", where, detail);
	if (!r->failed_no_tx)
		say(r, SAY_NOTE, "%s was rolled back; later migrations were not attempted",
		    r->failed);
	else
		say(r, SAY_NOTE,
		    "%s runs without a transaction: statements before the failing one stay "
		    "applied and the file is not recorded (keep it safe to re-run); later "
		    "migrations were not attempted",
		    r->failed);
	if (!strcmp(r->err.sqlstate, "25001"))
		say(r, SAY_NOTE,
		    "hint: a statement that cannot run in a transaction block needs \"%s\" as "
		    "the file's first line",
		    MIGPLAN_NO_TX_MARKER);
}

static void say_failure(const struct runner *r)
{
	char target[256], detail[400];

	if (r->failed[0]) {
		say_file_failure(r);
		return;
	}
	config_db_target(r->cfg, target, sizeof(target));
	describe(&r->err, detail, sizeof(detail));
	say(r, SAY_ERROR, "cannot %s %s: %s", r->stage, target, detail);
}

static int db_exec(struct runner *r, const char *sql)
{
	return pgconn_exec(r->conn, sql, clock_now_ms() + STATEMENT_DEADLINE_MS, NULL, &r->err);
}

static int db_query(struct runner *r, const char *sql, int n, const char *const *values,
		    PGresult **res)
{
	return pgconn_exec_params(r->conn, sql, n, values, clock_now_ms() + STATEMENT_DEADLINE_MS,
				  res, &r->err);
}

/* Leave no transaction open: ROLLBACK, or close a connection that a deadline
 * or a network failure made unusable (the server rolls back when it goes). */
static void rollback(struct runner *r)
{
	struct db_error ignored;

	if (!r->conn)
		return;
	if (dberror_discards(&r->err) ||
	    pgconn_exec(r->conn, "ROLLBACK", clock_now_ms() + ROLLBACK_DEADLINE_MS, NULL,
			&ignored) < 0) {
		pgconn_close(r->conn);
		r->conn = NULL;
	}
}

struct connect_try {
	struct runner *r;
	int64_t first_deadline_ms;
};

/* One connect: by the caller's deadline, each retry by a fresh
 * DB_CONNECT_TIMEOUT_MS. */
static enum retry_step connect_once(void *arg, int attempt)
{
	const struct connect_try *t = arg;
	struct runner *r = t->r;
	struct pgconn_info info;
	int64_t deadline =
	    attempt == 0 ? t->first_deadline_ms : clock_now_ms() + r->cfg->db_connect_timeout_ms;

	r->conn = pgconn_connect(r->params, deadline, &info, &r->err);
	if (r->conn == NULL)
		return r->err.transient ? RETRY_AGAIN : RETRY_DONE;
	say(r, SAY_DEBUG, "connected server_version=%d tls=%s connect_ms=%.1f", info.server_version,
	    info.tls_protocol, info.connect_ms);
	return RETRY_DONE;
}

static int connect_db(struct runner *r, int64_t deadline_ms)
{
	char perr[256];
	struct connect_try t = { .r = r, .first_deadline_ms = deadline_ms };
	struct retry_policy pol =
	    retry_connect_policy(r->connect_retries, r->cfg->db_retry_backoff_ms);

	r->stage = "connect to";
	r->params = pgconn_params_new(r->cfg->database_url, perr, sizeof(perr));
	if (!r->params) {
		set_error(r, "%s", perr);
		return -1;
	}
	(void)retry_run(&pol, &r->rng, INT64_MAX, connect_once, NULL, &t);
	return r->conn != NULL ? 0 : -1;
}

/* The recorded rows; none when the table does not exist yet (status and
 * --dry-run must not create it). */
static int load_applied(struct runner *r, struct migplan_applied_list *al)
{
	PGresult *res = NULL;

	r->stage = "read the applied migrations from";
	if (db_query(r, "SELECT to_regclass('" TABLE "') IS NOT NULL", 0, NULL, &res) < 0)
		return -1;
	r->table_exists = PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t");
	PQclear(res);
	if (!r->table_exists)
		return 0;
	if (db_query(r, SELECT_APPLIED, 0, NULL, &res) < 0)
		return -1;
	for (int i = 0; i < PQntuples(res); i++)
		migplan_applied_add(al, atoi(PQgetvalue(res, i, 0)), PQgetvalue(res, i, 1),
				    PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
	PQclear(res);
	return 0;
}

/* Created under the lock too: concurrent CREATE TABLE IF NOT EXISTS can
 * still fail on the catalog's unique index when two commit at once. */
static int ensure_table(struct runner *r)
{
	if (r->table_exists)
		return 0;
	r->stage = "create " TABLE " in";
	if (db_exec(r, CREATE_SQL) < 0) {
		rollback(r);
		return -1;
	}
	return 0;
}

/* Inside a locked transaction: 1 when f is recorded (same checksum and
 * name), 0 when it is not, -1 on error or when it was recorded differently
 * (another host ran another version of the file). */
static int recorded(struct runner *r, const struct migplan_file *f)
{
	char version[16];
	const char *values[] = { version };
	PGresult *res = NULL;
	int rc = 0;

	snprintf(version, sizeof(version), "%d", f->version);
	if (db_query(r, "SELECT name, checksum FROM " TABLE " WHERE version = $1", 1, values,
		     &res) < 0)
		return -1;
	if (PQntuples(res) > 0) {
		rc = 1;
		if (strcmp(PQgetvalue(res, 0, 1), f->checksum) != 0) {
			set_error(r,
				  "another runner applied a different version of this file "
				  "(checksum %.12s...)",
				  PQgetvalue(res, 0, 1));
			rc = -1;
		} else if (strcmp(PQgetvalue(res, 0, 0), f->name) != 0) {
			set_error(r, "another runner applied version %04d as %.100s", f->version,
				  PQgetvalue(res, 0, 0));
			rc = -1;
		}
	}
	PQclear(res);
	return rc;
}

static int record(struct runner *r, const struct migplan_file *f, int64_t ms)
{
	char version[16], duration[24];
	const char *values[] = { version, f->name, f->checksum, duration };

	snprintf(version, sizeof(version), "%d", f->version);
	snprintf(duration, sizeof(duration), "%lld", (long long)ms);
	return db_query(r,
			"INSERT INTO " TABLE " (version, name, checksum, duration_ms) "
			"VALUES ($1, $2, $3, $4)",
			4, values, NULL);
}

/* BEGIN; lock; re-check; the file; record; COMMIT — all or nothing. */
static int apply_in_transaction(struct runner *r, const struct migplan_file *f)
{
	if (db_exec(r, LOCK_SQL) < 0)
		goto fail;
	int rec = recorded(r, f);
	if (rec < 0)
		goto fail;
	if (rec == 1) {
		if (db_exec(r, "COMMIT") < 0)
			goto fail;
		say_skipped(r, f);
		return 0;
	}
	int64_t t0 = clock_now_ms();
	if (db_exec(r, f->sql) < 0)
		goto fail;
	int64_t ms = clock_now_ms() - t0;
	if (record(r, f, ms) < 0 || db_exec(r, "COMMIT") < 0)
		goto fail;
	say_applied(r, f, ms);
	return 0;
fail:
	rollback(r);
	return -1;
}

/* Check under the lock in a short transaction of its own; 1, 0 or -1 as
 * recorded(). */
static int recorded_locked(struct runner *r, const struct migplan_file *f)
{
	if (db_exec(r, LOCK_SQL) < 0)
		return -1;
	int rec = recorded(r, f);
	if (rec < 0 || db_exec(r, "COMMIT") < 0)
		return -1;
	return rec;
}

/* One statement per round trip: a multi-statement query string is one
 * implicit transaction, where CREATE INDEX CONCURRENTLY refuses to run. */
static int run_statements(struct runner *r, const struct migplan_file *f)
{
	struct migsplit_stmt *st = NULL;
	size_t n = migsplit_sql(f->sql, &st);
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		char *sql = xstrndup(f->sql + st[i].start, st[i].end - st[i].start);
		rc = db_exec(r, sql);
		if (rc < 0)
			r->failed_line = st[i].line;
		free(sql);
	}
	free(st);
	return rc;
}

static void release_claim(struct runner *r)
{
	struct db_error ignored;

	if (r->claim_conn &&
	    pgconn_exec(r->claim_conn, "ROLLBACK", clock_now_ms() + ROLLBACK_DEADLINE_MS, NULL,
			&ignored) < 0) {
		pgconn_close(r->claim_conn); /* closing releases the lock too */
		r->claim_conn = NULL;
	}
}

/* The claim: one runner at a time may run no-transaction files. It is a
 * second connection holding pg_try_advisory_xact_lock(CLAIM_KEY) in an open
 * READ COMMITTED transaction, which survives a transaction pooler (the open
 * transaction pins its server connection) and, idle with no snapshot, is not
 * among the transactions CREATE INDEX CONCURRENTLY waits for. Others poll
 * with pg_try_: a blocked waiter would hold a snapshot, the index build
 * would wait for it, and it for us — a deadlock PostgreSQL cannot see.
 * 1 claimed (the transaction stays open), 0 held by another runner, -1 error. */
static int claim(struct runner *r)
{
	struct pgconn_info info;
	PGresult *res = NULL;

	if (!r->claim_conn) {
		r->claim_conn = pgconn_connect(
		    r->params, clock_now_ms() + r->cfg->db_connect_timeout_ms, &info, &r->err);
		if (!r->claim_conn)
			return -1;
	}
	if (pgconn_exec(r->claim_conn, CLAIM_SQL, clock_now_ms() + STATEMENT_DEADLINE_MS, &res,
			&r->err) < 0)
		return -1;
	int got = PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t");
	PQclear(res);
	/* Not granted: end the transaction now, or it would pin a pooler's
	 * server connection while we poll. */
	if (!got)
		release_claim(r);
	return got;
}

/* Holding the claim, and checked unrecorded: the statements, then the record
 * in a locked transaction of its own. */
static int run_claimed(struct runner *r, const struct migplan_file *f)
{
	int64_t t0 = clock_now_ms();

	if (run_statements(r, f) < 0)
		return -1;
	int64_t ms = clock_now_ms() - t0;
	if (db_exec(r, LOCK_SQL) < 0 || record(r, f, ms) < 0 || db_exec(r, "COMMIT") < 0)
		return -1;
	say_applied(r, f, ms);
	return 0;
}

static void say_waiting(const struct runner *r, const struct migplan_file *f)
{
	say(r, SAY_NOTE, "%s is being applied by another runner; waiting", f->name);
}

/* One look: 1 done (applied now, or recorded by another runner), 0 another
 * runner holds the claim and has not recorded the file yet, -1 failed. */
static int try_claimed(struct runner *r, const struct migplan_file *f)
{
	int got = claim(r), rc;

	if (got < 0)
		return -1;
	int rec = recorded_locked(r, f);
	if (rec < 0) {
		rc = -1;
	} else if (rec == 1) {
		say_skipped(r, f);
		rc = 1;
	} else {
		rc = got ? (run_claimed(r, f) < 0 ? -1 : 1) : 0;
	}
	if (got)
		release_claim(r);
	return rc;
}

/* Statements that each commit on their own (CREATE INDEX CONCURRENTLY):
 * under the claim, check, run, record; without it, wait until the holder
 * records the file, or fails and the claim comes to us. */
static int apply_without_transaction(struct runner *r, const struct migplan_file *f)
{
	int64_t give_up = clock_now_ms() + STATEMENT_DEADLINE_MS;

	for (int round = 0;; round++) {
		int rc = try_claimed(r, f);
		if (rc > 0)
			return 0;
		if (rc == 0 && clock_now_ms() >= give_up) {
			set_error(r, "another runner kept applying it for 10 minutes");
			rc = -1;
		}
		if (rc < 0) {
			rollback(r);
			return -1;
		}
		if (round == 0)
			say_waiting(r, f);
		clock_sleep_ms(CLAIM_POLL_MS);
	}
}

static enum run_result apply_pending(struct runner *r, const struct migplan *plan)
{
	for (size_t i = 0; i < plan->n; i++) {
		const struct migplan_step *s = &plan->v[i];
		if (s->state != MIGPLAN_PENDING)
			continue;
		snprintf(r->failed, sizeof(r->failed), "%s", s->file->name);
		r->failed_no_tx = s->file->no_transaction;
		int rc = s->file->no_transaction ? apply_without_transaction(r, s->file)
						 : apply_in_transaction(r, s->file);
		if (rc < 0)
			return failure(r);
	}
	r->failed[0] = '\0';
	say_done(r, plan);
	return RUN_OK;
}

/* Decide from the plan: print it (status), refuse, show (dry run) or apply. */
static enum run_result act(struct runner *r, const struct migplan *plan)
{
	struct problems p = { 0 };
	size_t refused = migplan_refusals(plan, &p);

	if (r->mode == MIGRATE_STATUS) {
		migplan_print_status(plan, stdout);
		fflush(stdout);
		say_problems(r, &p);
		problems_free(&p);
		return RUN_OK;
	}
	say_missing(r, plan);
	say_problems(r, &p);
	problems_free(&p);
	if (refused) {
		say_nothing_applied(r);
		return RUN_FAILED;
	}
	if (r->mode == MIGRATE_DRY_RUN) {
		say_dry_run(r, plan);
		return RUN_OK;
	}
	if (migplan_count(plan, MIGPLAN_PENDING) > 0 && ensure_table(r) < 0)
		return failure(r);
	return apply_pending(r, plan);
}

static int scan(const struct runner *r, struct migplan_files *fs)
{
	struct problems p = { 0 };
	int rc = migplan_scan_dir(r->cfg->migrations_dir, fs, &p);

	if (rc < 0) {
		say_problems(r, &p);
		say_nothing_applied(r);
	}
	problems_free(&p);
	return rc;
}

/* One complete attempt: files first (bad ones refuse before any connect),
 * then the database. Leaves no connection open. */
static enum run_result run(struct runner *r, int64_t connect_deadline_ms)
{
	struct migplan_files fs = { 0 };
	struct migplan_applied_list al = { 0 };
	struct migplan plan = { 0 };
	enum run_result rc = RUN_FAILED;

	memset(&r->err, 0, sizeof(r->err));
	r->failed[0] = '\0';
	r->failed_line = 0;
	r->applied = r->skipped = 0;
	if (scan(r, &fs) < 0)
		goto out;
	if (connect_db(r, connect_deadline_ms) < 0 || load_applied(r, &al) < 0) {
		rc = failure(r);
		goto out;
	}
	migplan_build(&fs, &al, &plan);
	rc = act(r, &plan);
out:
	migplan_free(&plan);
	migplan_applied_free(&al);
	migplan_files_free(&fs);
	pgconn_close(r->claim_conn);
	r->claim_conn = NULL;
	pgconn_close(r->conn);
	r->conn = NULL;
	pgconn_params_free(r->params);
	r->params = NULL;
	return rc;
}

static void runner_init(struct runner *r, const struct config *cfg, enum migrate_mode mode,
			bool on_start)
{
	memset(r, 0, sizeof(*r));
	r->cfg = cfg;
	r->mode = mode;
	r->on_start = on_start;
	/* MIGRATE_ON_START retries whole runs instead (migrate_on_start). */
	r->connect_retries = on_start ? 0 : (int)cfg->db_retry_attempts;
	retry_rng_seed(&r->rng, (uint64_t)getpid() ^ (uint64_t)clock_now_us());
}

int migrate_command(const struct config *cfg, enum migrate_mode mode)
{
	struct runner r;

	runner_init(&r, cfg, mode, false);
	enum run_result rc = run(&r, clock_now_ms() + cfg->db_connect_timeout_ms);
	if (rc != RUN_OK && r.err.category != DB_OK)
		say_failure(&r);
	return rc == RUN_OK ? 0 : 1;
}

static void say_retry(const struct runner *r, int attempt, int64_t wait_ms, int64_t waited_ms)
{
	char quoted[600];

	quote_for_log(r->err.message, quoted, sizeof(quoted));
	/* Every attempt at debug; at warn only now and then (attempts 1, 2, 4,
	 * 8, …) so a 30 s wait for a waking compute is a few lines, not sixty. */
	say(r, (attempt & (attempt + 1)) == 0 ? SAY_WARNING : SAY_DEBUG,
	    "database not ready for migrations; retrying attempt=%d retry_in_ms=%lld "
	    "waited_ms=%lld category=%s error=\"%s\"",
	    attempt + 1, (long long)wait_ms, (long long)waited_ms,
	    db_category_name(r->err.category), quoted);
}

static void say_unavailable(const struct runner *r, int64_t waited_ms)
{
	char target[256], quoted[600];

	config_db_target(r->cfg, target, sizeof(target));
	quote_for_log(r->err.message, quoted, sizeof(quoted));
	say(r, SAY_ERROR,
	    "database unavailable for migrations; not starting waited_ms=%lld "
	    "DB_START_TIMEOUT_MS=%ld db=\"%s\" category=%s error=\"%s\"",
	    (long long)waited_ms, r->cfg->db_start_timeout_ms, target,
	    db_category_name(r->err.category), quoted);
}

struct start_try {
	struct runner *r;
	int64_t started_ms, give_up_ms;
	enum run_result rc;
};

/* One whole run; only a database that is down or waking is worth another. */
static enum retry_step start_once(void *arg, int attempt)
{
	struct start_try *t = arg;
	/* Every attempt but the first stops at the start deadline. */
	int64_t deadline = clock_now_ms() + t->r->cfg->db_connect_timeout_ms;

	if (attempt > 0 && deadline > t->give_up_ms)
		deadline = t->give_up_ms;
	t->rc = run(t->r, deadline);
	return t->rc == RUN_TRANSIENT ? RETRY_AGAIN : RETRY_DONE;
}

static void start_failed(void *arg, int attempt, int64_t wait_ms)
{
	const struct start_try *t = arg;
	int64_t waited = clock_now_ms() - t->started_ms;

	if (wait_ms < 0)
		say_unavailable(t->r, waited);
	else
		say_retry(t->r, attempt, wait_ms, waited);
}

int migrate_on_start(const struct config *cfg)
{
	struct runner r;
	struct start_try t = { .r = &r, .started_ms = clock_now_ms() };
	/* As often as it takes until DB_START_TIMEOUT_MS (the deadline). */
	struct retry_policy pol = { .retries = INT_MAX,
				    .base_ms = cfg->db_retry_backoff_ms,
				    .cap_ms = START_BACKOFF_CAP_MS };

	runner_init(&r, cfg, MIGRATE_RUN, true);
	t.give_up_ms = t.started_ms + cfg->db_start_timeout_ms;
	say(&r, SAY_NOTE, "applying pending migrations before starting dir=\"%s\"",
	    cfg->migrations_dir);
	if (retry_run(&pol, &r.rng, t.give_up_ms, start_once, start_failed, &t) == RETRY_AGAIN)
		return EX_UNAVAILABLE;
	if (t.rc == RUN_OK)
		return 0;
	if (r.err.category != DB_OK)
		say_failure(&r);
	say(&r, SAY_ERROR, "not starting: the pending migrations were not all applied");
	return 1;
}
