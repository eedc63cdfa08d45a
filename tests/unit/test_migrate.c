/* Unit tests of app/migrate.c: the statement sequence a run sends to a fake
 * database standing in for pgconn, what it says, and its exit status. The
 * files come from a temporary directory per test (migfixture), removed by
 * the teardown however the test ended. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "migfixture.h"
#include "migplan.h"
#include "migrate.h"
#include "pgconn.h"

/* ---- fakes of the neighbours: log, config, pgconn ---- */

/* Every line logged, with its level: MIGRATE_ON_START says it all there. */
#define MAXLINES 64
static struct logged {
	enum log_level level;
	char text[512];
} logged[MAXLINES];
static int nlogged;

void log_write(enum log_level level, int errnum, const char *fmt, ...)
{
	va_list ap;

	(void)errnum;
	if (nlogged == MAXLINES)
		return;
	logged[nlogged].level = level;
	va_start(ap, fmt);
	vsnprintf(logged[nlogged].text, sizeof(logged[0].text), fmt, ap);
	va_end(ap);
	nlogged++;
}

/* The first line logged at level that contains needle, or NULL. */
static const char *logged_line(enum log_level level, const char *needle)
{
	for (int i = 0; i < nlogged; i++)
		if (logged[i].level == level && strstr(logged[i].text, needle))
			return logged[i].text;
	return NULL;
}

static int logged_count(enum log_level level)
{
	int n = 0;

	for (int i = 0; i < nlogged; i++)
		n += logged[i].level == level;
	return n;
}

void config_db_target(const struct config *cfg, char *out, size_t outlen)
{
	(void)cfg;
	snprintf(out, outlen, "db.example:5432/app");
}

/* The fake database: a committed table, the rows and "user SQL" of the open
 * transaction, and a log of every statement it was sent. */
#define MAXLOG 128
struct fake_row {
	int version;
	char name[64];
	char checksum[MIGPLAN_SHA256_HEX];
};

static struct fake_db {
	bool table;
	struct fake_row rows[32];
	int nrows;
	struct fake_row tx_rows[32];
	int ntx_rows;
	char effects[32][128]; /* user SQL committed */
	int neffects;
	char tx_effects[32][128];
	int ntx_effects;
	bool in_tx;
	char log[MAXLOG][160];
	int nlog;
	int connect_failures; /* transient failures before connects succeed */
	int connects, closes, open_conns;
	int claim_busy;      /* claims refused before one is granted */
	const char *fail_on; /* user SQL containing this fails with 42601 */
	int sneak_version;   /* another runner records this at the first lock */
	char sneak_checksum[MIGPLAN_SHA256_HEX];
} db;

/* The first connection of a run is the main one, a second is the claim's. */
static char fake_conn_token, fake_claim_token, fake_params_token;

static void fake_reset(void)
{
	memset(&db, 0, sizeof(db));
	nlogged = 0;
}

static void db_log(const char *sql)
{
	if (db.nlog < MAXLOG)
		snprintf(db.log[db.nlog++], sizeof(db.log[0]), "%s", sql);
}

static bool log_has(const char *prefix)
{
	for (int i = 0; i < db.nlog; i++)
		if (!strncmp(db.log[i], prefix, strlen(prefix)))
			return true;
	return false;
}

static bool effect_committed(const char *needle)
{
	for (int i = 0; i < db.neffects; i++)
		if (strstr(db.effects[i], needle))
			return true;
	return false;
}

static void set_err(struct db_error *e, enum db_category c, bool transient, const char *state,
		    const char *msg)
{
	e->category = c;
	e->transient = transient;
	snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", state);
	snprintf(e->message, sizeof(e->message), "%s", msg);
}

const char *db_category_name(enum db_category c)
{
	return c == DB_OK ? "ok" : c == DB_UNREACHABLE ? "unreachable" : "query_failed";
}

struct pgconn_params *pgconn_params_new(const char *database_url, char *err, size_t errlen)
{
	(void)database_url;
	(void)err;
	(void)errlen;
	return (struct pgconn_params *)&fake_params_token;
}

void pgconn_params_free(struct pgconn_params *p)
{
	(void)p;
}

PGconn *pgconn_connect(const struct pgconn_params *p, int64_t deadline_ms, struct pgconn_info *info,
		       struct db_error *err)
{
	(void)p;
	(void)deadline_ms;
	memset(err, 0, sizeof(*err));
	if (db.connect_failures > 0) {
		db.connect_failures--;
		set_err(err, DB_UNREACHABLE, true, "", "connection refused");
		return NULL;
	}
	memset(info, 0, sizeof(*info));
	db.connects++;
	return (PGconn *)(db.open_conns++ ? &fake_claim_token : &fake_conn_token);
}

void pgconn_close(PGconn *c)
{
	if (!c)
		return;
	db.closes++;
	db.open_conns--;
}

bool dberror_discards(const struct db_error *err)
{
	return err->category != DB_OK && err->category != DB_QUERY_FAILED;
}

static void commit(void)
{
	memcpy(&db.rows[db.nrows], db.tx_rows, (size_t)db.ntx_rows * sizeof(db.tx_rows[0]));
	db.nrows += db.ntx_rows;
	memcpy(&db.effects[db.neffects], db.tx_effects,
	       (size_t)db.ntx_effects * sizeof(db.tx_effects[0]));
	db.neffects += db.ntx_effects;
	db.ntx_rows = db.ntx_effects = 0;
	db.in_tx = false;
}

static void sneak_in(void)
{
	struct fake_row *r = &db.rows[db.nrows++];

	r->version = db.sneak_version;
	snprintf(r->name, sizeof(r->name), "%04d_a.sql", db.sneak_version);
	snprintf(r->checksum, sizeof(r->checksum), "%s", db.sneak_checksum);
	db.sneak_version = 0;
}

static PGresult *make_result(int ncols, int nrows, const char *const *cells);

static int claim_exec(const char *sql, PGresult **res_out)
{
	char line[160];
	const char *cells[] = { db.claim_busy > 0 ? "f" : "t" };

	snprintf(line, sizeof(line), "claim: %s", sql);
	db_log(line);
	if (strstr(sql, "pg_try_advisory_xact_lock(7954886836774725482)")) {
		if (db.claim_busy > 0)
			db.claim_busy--;
		*res_out = make_result(1, 1, cells);
	} else {
		assert_string_equal(sql, "ROLLBACK");
	}
	return 0;
}

int pgconn_exec(PGconn *c, const char *sql, int64_t deadline_ms, PGresult **res_out,
		struct db_error *err)
{
	(void)deadline_ms;
	memset(err, 0, sizeof(*err));
	if (c == (PGconn *)&fake_claim_token)
		return claim_exec(sql, res_out);
	db_log(sql);
	if (!strncmp(sql, "BEGIN; SELECT pg_advisory_xact_lock(", 36)) {
		db.in_tx = true;
		if (db.sneak_version)
			sneak_in();
		if (strstr(sql, "CREATE TABLE IF NOT EXISTS neonfcgi_schema_migrations")) {
			db.table = true;
			commit();
		}
	} else if (!strcmp(sql, "COMMIT")) {
		commit();
	} else if (!strcmp(sql, "ROLLBACK")) {
		db.ntx_rows = db.ntx_effects = 0;
		db.in_tx = false;
	} else if (db.fail_on && strstr(sql, db.fail_on)) {
		set_err(err, DB_QUERY_FAILED, false, "42601", "syntax error at or near \"CREAT\"");
		return -1;
	} else if (db.in_tx) {
		snprintf(db.tx_effects[db.ntx_effects++], sizeof(db.effects[0]), "%s", sql);
	} else {
		snprintf(db.effects[db.neffects++], sizeof(db.effects[0]), "%s", sql);
	}
	return 0;
}

static PGresult *make_result(int ncols, int nrows, const char *const *cells)
{
	PGresAttDesc attrs[4];
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

	memset(attrs, 0, sizeof(attrs));
	for (int i = 0; i < ncols; i++) {
		attrs[i].name = (char *)"c";
		attrs[i].typid = 25;
		attrs[i].typlen = -1;
		attrs[i].atttypmod = -1;
	}
	assert_true(PQsetResultAttrs(res, ncols, attrs));
	for (int r = 0; r < nrows; r++)
		for (int col = 0; col < ncols; col++)
			assert_true(PQsetvalue(res, r, col, (char *)cells[r * ncols + col],
					       (int)strlen(cells[r * ncols + col])));
	return res;
}

static PGresult *select_applied(void)
{
	static char versions[32][8];
	const char *cells[32 * 4];

	for (int i = 0; i < db.nrows; i++) {
		snprintf(versions[i], sizeof(versions[i]), "%d", db.rows[i].version);
		cells[i * 4] = versions[i];
		cells[i * 4 + 1] = db.rows[i].name;
		cells[i * 4 + 2] = db.rows[i].checksum;
		cells[i * 4 + 3] = "2026-01-02 03:04:05Z";
	}
	return make_result(4, db.nrows, cells);
}

static PGresult *select_one(int version)
{
	for (int i = 0; i < db.nrows; i++) {
		if (db.rows[i].version != version)
			continue;
		const char *cells[] = { db.rows[i].name, db.rows[i].checksum };
		return make_result(2, 1, cells);
	}
	return make_result(2, 0, NULL);
}

static void insert_row(const char *const *values)
{
	struct fake_row *r = db.in_tx ? &db.tx_rows[db.ntx_rows++] : &db.rows[db.nrows++];

	r->version = atoi(values[0]);
	snprintf(r->name, sizeof(r->name), "%s", values[1]);
	snprintf(r->checksum, sizeof(r->checksum), "%s", values[2]);
}

int pgconn_exec_params(PGconn *c, const char *sql, int nparams, const char *const *values,
		       int64_t deadline_ms, PGresult **res_out, struct db_error *err)
{
	const char *cells[] = { db.table ? "t" : "f" };
	PGresult *res = NULL;

	(void)c;
	(void)nparams;
	(void)deadline_ms;
	memset(err, 0, sizeof(*err));
	db_log(sql);
	if (!strncmp(sql, "SELECT to_regclass", 18))
		res = make_result(1, 1, cells);
	else if (!strncmp(sql, "SELECT version, name, checksum", 30))
		res = select_applied();
	else if (!strncmp(sql, "SELECT name, checksum", 21))
		res = select_one(atoi(values[0]));
	else if (!strncmp(sql, "INSERT INTO neonfcgi_schema_migrations", 38))
		insert_row(values);
	else
		fail_msg("unexpected query: %s", sql);
	if (res_out)
		*res_out = res;
	else
		PQclear(res);
	return 0;
}

/* ---- the fixture: a directory of migrations and the configuration ---- */

struct fx {
	struct config cfg;
	char dir[64];
	int saved_out, saved_err; /* stdout, stderr while captured(); else -1 */
};

/* Put stdout and stderr back after captured(); teardown calls it too, so a
 * failed assertion does not leave cmocka writing into a deleted file. */
static void restore_stdio(struct fx *f)
{
	fflush(stdout);
	fflush(stderr);
	if (f->saved_out >= 0) {
		dup2(f->saved_out, 1);
		close(f->saved_out);
		f->saved_out = -1;
	}
	if (f->saved_err >= 0) {
		dup2(f->saved_err, 2);
		close(f->saved_err);
		f->saved_err = -1;
	}
}

static void read_file(const char *path, char *buf, size_t len)
{
	FILE *in = fopen(path, "r");

	assert_non_null(in);
	size_t n = fread(buf, 1, len - 1, in);
	buf[n] = '\0';
	fclose(in);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL || migfixture_dir_make(f->dir, sizeof(f->dir)) < 0) {
		free(f);
		return -1;
	}
	f->saved_out = f->saved_err = -1;
	fake_reset();
	f->cfg.database_url = (char *)"postgresql://app@db.example/app?sslmode=require";
	f->cfg.migrations_dir = f->dir;
	f->cfg.db_connect_timeout_ms = 1000;
	f->cfg.db_retry_attempts = 0;
	f->cfg.db_retry_backoff_ms = 1;
	f->cfg.db_start_timeout_ms = 300;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	restore_stdio(f);
	int rc = migfixture_dir_remove(f->dir);
	free(f);
	return rc;
}

static void dir_write(const struct fx *f, const char *name, const char *content)
{
	migfixture_dir_write(f->dir, name, content);
}

/* The checksum migplan records for a file holding sql. */
static void checksum_of(const char *sql, char out[MIGPLAN_SHA256_HEX])
{
	struct migplan_files fs = { 0 };
	struct problems p = { 0 };

	assert_int_equal(migplan_files_add(&fs, "0001_x.sql", sql, strlen(sql), &p), 0);
	snprintf(out, MIGPLAN_SHA256_HEX, "%s", fs.v[0].checksum);
	migplan_files_free(&fs);
}

/* ---- against the fake database ---- */

static int count_log(const char *prefix)
{
	int n = 0;

	for (int i = 0; i < db.nlog; i++)
		n += !strncmp(db.log[i], prefix, strlen(prefix));
	return n;
}

static void run_applies_each_file_in_its_locked_transaction(void **state)
{
	struct fx *f = *state;
	const char *const want[] = {
		"SELECT to_regclass",
		"BEGIN; SELECT pg_advisory_xact_lock(7954886836774725481); CREATE TABLE IF NOT "
		"EXISTS",
		"BEGIN; SELECT pg_advisory_xact_lock(7954886836774725481)",
		"SELECT name, checksum FROM neonfcgi_schema_migrations WHERE version = $1",
		"CREATE TABLE a (x int);",
		"INSERT INTO neonfcgi_schema_migrations",
		"COMMIT",
		"BEGIN; SELECT pg_advisory_xact_lock(",
		"SELECT name, checksum",
		"CREATE TABLE b (x int);",
		"INSERT INTO",
		"COMMIT",
	};

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	dir_write(f, "0002_b.sql", "CREATE TABLE b (x int);\n");
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	assert_int_equal(db.nlog, (int)(sizeof(want) / sizeof(want[0])));
	for (int i = 0; i < db.nlog; i++)
		assert_int_equal(strncmp(db.log[i], want[i], strlen(want[i])), 0);
	assert_int_equal(db.nrows, 2);
	assert_true(effect_committed("CREATE TABLE a") && effect_committed("CREATE TABLE b"));
	assert_int_equal(db.connects, db.closes);

	/* Re-running is a no-op: read, plan, nothing to do. */
	db.nlog = 0;
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	assert_int_equal(db.nlog, 2);
	assert_true(log_has("SELECT version, name, checksum"));
	assert_int_equal(db.nrows, 2);
}

static void failing_file_rolls_back_and_stops(void **state)
{
	struct fx *f = *state;

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	dir_write(f, "0002_bad.sql", "CREATE TABLE b_part (x int);\nCREAT TABLE oops;\n");
	dir_write(f, "0003_c.sql", "CREATE TABLE c (x int);\n");
	db.fail_on = "CREAT TABLE oops";
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 1);
	assert_int_equal(db.nrows, 1);
	assert_int_equal(db.rows[0].version, 1);
	assert_false(effect_committed("b_part"));
	assert_false(log_has("CREATE TABLE c"));
	assert_string_equal(db.log[db.nlog - 1], "ROLLBACK");
	assert_false(db.in_tx);

	/* Fixed, the next run applies it and the one after. */
	db.fail_on = NULL;
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	assert_int_equal(db.nrows, 3);
	assert_true(effect_committed("b_part") && effect_committed("CREATE TABLE c"));
}

static void changed_file_refuses_before_anything_runs(void **state)
{
	struct fx *f = *state;

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	dir_write(f, "0001_a.sql", "CREATE TABLE a (x bigint);\n");
	dir_write(f, "0002_b.sql", "CREATE TABLE b (x int);\n");
	db.nlog = 0;
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 1);
	assert_int_equal(count_log("BEGIN"), 0);
	assert_false(log_has("CREATE TABLE b"));
	assert_int_equal(db.nrows, 1);
	/* status still answers, with exit 0. */
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_STATUS), 0);
}

static void recheck_under_lock_skips_what_another_runner_applied(void **state)
{
	struct fx *f = *state;

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	dir_write(f, "0002_b.sql", "CREATE TABLE b (x int);\n");
	db.table = true;
	db.sneak_version = 1; /* recorded by "another host" after our read */
	checksum_of("CREATE TABLE a (x int);\n", db.sneak_checksum);
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	assert_false(effect_committed("CREATE TABLE a"));
	assert_true(effect_committed("CREATE TABLE b"));
	assert_int_equal(db.nrows, 2);
}

static void recheck_refuses_a_different_file_applied_elsewhere(void **state)
{
	struct fx *f = *state;

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	db.table = true;
	db.sneak_version = 1;
	snprintf(db.sneak_checksum, sizeof(db.sneak_checksum), "%064d", 0);
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 1);
	assert_false(effect_committed("CREATE TABLE a"));
	assert_string_equal(db.log[db.nlog - 1], "ROLLBACK");
}

static void no_transaction_file_runs_statement_by_statement(void **state)
{
	struct fx *f = *state;
	const char *const want[] = {
		"claim: BEGIN ISOLATION LEVEL READ COMMITTED; "
		"SELECT pg_try_advisory_xact_lock(7954886836774725482)",
		"BEGIN; SELECT pg_advisory_xact_lock(7954886836774725481)",
		"SELECT name, checksum",
		"COMMIT",
		"CREATE INDEX CONCURRENTLY IF NOT EXISTS i1 ON a (x)",
		"CREATE INDEX CONCURRENTLY IF NOT EXISTS i2 ON a (x)",
		"BEGIN; SELECT pg_advisory_xact_lock(7954886836774725481)",
		"INSERT INTO",
		"COMMIT",
		"claim: ROLLBACK",
	};

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	dir_write(f, "0002_idx.sql",
		  "-- neonfcgi:no-transaction\n"
		  "CREATE INDEX CONCURRENTLY IF NOT EXISTS i1 ON a (x);\n"
		  "CREATE INDEX CONCURRENTLY IF NOT EXISTS i2 ON a (x);\n");
	db.nlog = 0;
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	assert_int_equal(db.nlog, 2 + (int)(sizeof(want) / sizeof(want[0])));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_int_equal(strncmp(db.log[i + 2], want[i], strlen(want[i])), 0);
	assert_string_equal(db.log[6], "CREATE INDEX CONCURRENTLY IF NOT EXISTS i1 ON a (x)");
	assert_int_equal(db.nrows, 2);
	assert_int_equal(db.open_conns, 0);
}

static const char idx_sql[] = "-- neonfcgi:no-transaction\n"
			      "CREATE INDEX CONCURRENTLY IF NOT EXISTS i1 ON a (x);\n";

static void no_transaction_file_waits_for_the_claim(void **state)
{
	struct fx *f = *state;

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	dir_write(f, "0002_a.sql", idx_sql);
	db.claim_busy = 2; /* another runner holds it for two looks */
	db.nlog = 0;
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	assert_int_equal(count_log("claim: BEGIN"), 3);
	assert_int_equal(count_log("claim: ROLLBACK"), 3); /* no claim transaction stays open */
	assert_int_equal(count_log("CREATE INDEX"), 1);
	assert_int_equal(db.nrows, 2);
}

static void no_transaction_file_recorded_by_the_claim_holder_is_skipped(void **state)
{
	struct fx *f = *state;

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	dir_write(f, "0002_a.sql", idx_sql);
	db.claim_busy = 1000;
	db.sneak_version = 2; /* the holder records it while we look */
	checksum_of(idx_sql, db.sneak_checksum);
	db.nlog = 0;
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	assert_int_equal(count_log("CREATE INDEX"), 0);
	assert_int_equal(db.nrows, 2);
}

static void dry_run_and_status_change_nothing(void **state)
{
	struct fx *f = *state;

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_DRY_RUN), 0);
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_STATUS), 0);
	assert_false(db.table);
	assert_int_equal(count_log("BEGIN"), 0);
	assert_int_equal(count_log("SELECT to_regclass"), 2);
	assert_int_equal(db.nlog, 2);
}

static void bad_directory_refuses_before_connecting(void **state)
{
	struct fx *f = *state;

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	dir_write(f, "0003_c.sql", "CREATE TABLE c (x int);\n");
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 1);
	assert_int_equal(db.connects, 0);
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_STATUS), 1);
}

static void command_unreachable_exits_1(void **state)
{
	struct fx *f = *state;

	db.connect_failures = 100;
	f->cfg.db_retry_attempts = 2;
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 1);
	assert_int_equal(db.connect_failures, 97); /* one attempt and two retries */
}

static void on_start_waits_for_the_database(void **state)
{
	struct fx *f = *state;

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	db.connect_failures = 3;
	f->cfg.db_start_timeout_ms = 5000;
	assert_int_equal(migrate_on_start(&f->cfg), 0);
	assert_int_equal(db.nrows, 1);
}

static void on_start_gives_up_with_69(void **state)
{
	struct fx *f = *state;

	db.connect_failures = 1000000;
	f->cfg.db_start_timeout_ms = 100;
	assert_int_equal(migrate_on_start(&f->cfg), EX_UNAVAILABLE);
	assert_int_equal(logged_count(LOG_LEVEL_ERROR), 1);
	const char *line = logged_line(LOG_LEVEL_ERROR, "database unavailable for migrations");
	assert_non_null(line);
	assert_non_null(strstr(line, "db=\"db.example:5432/app\""));
}

static void on_start_bad_sql_exits_1_naming_the_file(void **state)
{
	struct fx *f = *state;

	dir_write(f, "0001_bad.sql", "CREAT TABLE oops;\n");
	db.fail_on = "CREAT TABLE";
	assert_int_equal(migrate_on_start(&f->cfg), 1);
	assert_non_null(logged_line(LOG_LEVEL_ERROR,
				    "migrate: 0001_bad.sql failed: SQLSTATE 42601: "
				    "syntax error at or near \"CREAT\""));
	assert_non_null(logged_line(LOG_LEVEL_INFO, "migrate: 0001_bad.sql was rolled back"));
	assert_non_null(logged_line(LOG_LEVEL_ERROR, "migrate: not starting"));
}

/* ---- one message for both audiences ---- */

/* Run fn with stdout and stderr going to dot files in the fixture's
 * directory (the scan skips dot files), then read them into out and err. */
static int captured(struct fx *f, int (*fn)(const struct config *), char *out, char *err,
		    size_t len)
{
	char opath[128], epath[128];

	snprintf(opath, sizeof(opath), "%s/.stdout", f->dir);
	snprintf(epath, sizeof(epath), "%s/.stderr", f->dir);
	fflush(stdout);
	fflush(stderr);
	f->saved_out = dup(1);
	f->saved_err = dup(2);
	assert_true(f->saved_out >= 0 && f->saved_err >= 0);
	assert_non_null(freopen(opath, "w", stdout));
	assert_non_null(freopen(epath, "w", stderr));
	int rc = fn(&f->cfg);
	restore_stdio(f);
	read_file(opath, out, len);
	read_file(epath, err, len);
	return rc;
}

static int run_command(const struct config *cfg)
{
	return migrate_command(cfg, MIGRATE_RUN);
}

/* A file that fails after one that applies: `neonfcgi migrate` prints each
 * line on stdout or stderr; MIGRATE_ON_START logs the very same text. */
static void command_and_on_start_say_the_same(void **state)
{
	static const char *const results[] = { "applied 0001_a.sql in " };
	static const char *const errors[] = {
		"0002_bad.sql failed: SQLSTATE 42601: syntax error at or near \"CREAT\"",
		"0002_bad.sql was rolled back; later migrations were not attempted",
	};
	struct fx *f = *state;
	char out[4096], err[4096], want[256];

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	dir_write(f, "0002_bad.sql", "CREAT TABLE oops;\n");
	db.fail_on = "CREAT TABLE";
	assert_int_equal(captured(f, run_command, out, err, sizeof(out)), 1);
	print_message("stdout:\n%sstderr:\n%s", out, err);
	assert_int_equal(strncmp(out, results[0], strlen(results[0])), 0);
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		snprintf(want, sizeof(want), "neonfcgi: migrate: %s\n", errors[i]);
		assert_non_null(strstr(err, want));
	}

	fake_reset(); /* a fresh database, the same files */
	db.fail_on = "CREAT TABLE";
	assert_int_equal(migrate_on_start(&f->cfg), 1);
	snprintf(want, sizeof(want), "migrate: %s", results[0]);
	assert_non_null(logged_line(LOG_LEVEL_INFO, want));
	snprintf(want, sizeof(want), "migrate: %s", errors[0]);
	assert_string_equal(logged_line(LOG_LEVEL_ERROR, want), want);
	snprintf(want, sizeof(want), "migrate: %s", errors[1]);
	assert_string_equal(logged_line(LOG_LEVEL_INFO, want), want);
}

static void missing_file_is_a_warning_in_both(void **state)
{
	static const char warning[] =
	    "version 0002 (0002_b.sql) is applied but its file is not in MIGRATIONS_DIR";
	struct fx *f = *state;
	char out[4096], err[4096], want[256];

	dir_write(f, "0001_a.sql", "CREATE TABLE a (x int);\n");
	dir_write(f, "0002_b.sql", "CREATE TABLE b (x int);\n");
	assert_int_equal(migrate_command(&f->cfg, MIGRATE_RUN), 0);
	snprintf(want, sizeof(want), "%s/0002_b.sql", f->dir);
	assert_int_equal(unlink(want), 0);
	assert_int_equal(captured(f, run_command, out, err, sizeof(out)), 0);
	snprintf(want, sizeof(want), "neonfcgi: migrate: warning: %s\n", warning);
	assert_string_equal(err, want);
	assert_string_equal(out, "0 applied, 1 already applied; database at version 0002\n");

	nlogged = 0;
	assert_int_equal(migrate_on_start(&f->cfg), 0);
	snprintf(want, sizeof(want), "migrate: %s", warning);
	assert_string_equal(logged_line(LOG_LEVEL_WARN, want), want);
	assert_non_null(logged_line(LOG_LEVEL_INFO, "migrate: 0 applied, 1 already applied; "
						    "database at version 0002"));
}

/* Every test gets a fresh fixture, removed however it ends. */
#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(run_applies_each_file_in_its_locked_transaction),
		TEST(failing_file_rolls_back_and_stops),
		TEST(changed_file_refuses_before_anything_runs),
		TEST(recheck_under_lock_skips_what_another_runner_applied),
		TEST(recheck_refuses_a_different_file_applied_elsewhere),
		TEST(no_transaction_file_runs_statement_by_statement),
		TEST(no_transaction_file_waits_for_the_claim),
		TEST(no_transaction_file_recorded_by_the_claim_holder_is_skipped),
		TEST(dry_run_and_status_change_nothing),
		TEST(bad_directory_refuses_before_connecting),
		TEST(command_unreachable_exits_1),
		TEST(on_start_waits_for_the_database),
		TEST(on_start_gives_up_with_69),
		TEST(on_start_bad_sql_exits_1_naming_the_file),
		TEST(command_and_on_start_say_the_same),
		TEST(missing_file_is_a_warning_in_both),
	};

	return cmocka_run_group_tests_name("migrate", tests, NULL, NULL);
}
