/* Unit tests of app/migrate.c: file names, ordering, gaps and duplicates,
 * checksums, SQL splitting, plans from (files, applied rows), and the
 * statement sequence against a fake database standing in for pgconn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "migrate.h"
#include "pgconn.h"

/* ---- fakes of the neighbours: problems, log, config, pgconn ---- */

void problems_add(struct problems *p, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	p->lines = realloc(p->lines, (p->n + 1) * sizeof(*p->lines));
	p->lines[p->n++] = strdup(buf);
}

void problems_free(struct problems *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->lines[i]);
	free(p->lines);
	p->lines = NULL;
	p->n = 0;
}

static char last_log[2048];
static int log_errors;

void log_write(enum log_level level, int errnum, const char *fmt, ...)
{
	va_list ap;

	(void)errnum;
	va_start(ap, fmt);
	vsnprintf(last_log, sizeof(last_log), fmt, ap);
	va_end(ap);
	if (level == LOG_LEVEL_ERROR)
		log_errors++;
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
	char checksum[MIGRATE_SHA256_HEX];
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
	char sneak_checksum[MIGRATE_SHA256_HEX];
} db;

/* The first connection of a run is the main one, a second is the claim's. */
static char fake_conn_token, fake_claim_token, fake_params_token;

static void fake_reset(void)
{
	memset(&db, 0, sizeof(db));
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

/* ---- temporary migration directories ---- */

static char tmpdir[64];

static void dir_make(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_migrate.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
}

static void dir_write(const char *name, const char *content)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void dir_remove(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *de;
	char path[512];

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
		if (unlink(path) < 0)
			assert_int_equal(rmdir(path), 0);
	}
	closedir(d);
	assert_int_equal(rmdir(tmpdir), 0);
}

static struct config test_config(void)
{
	struct config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.database_url = (char *)"postgresql://app@db.example/app?sslmode=require";
	cfg.migrations_dir = tmpdir;
	cfg.db_connect_timeout_ms = 1000;
	cfg.db_retry_attempts = 0;
	cfg.db_retry_backoff_ms = 1;
	cfg.db_start_timeout_ms = 300;
	return cfg;
}

/* ---- names ---- */

struct name_case {
	const char *name;
	bool valid;
	int version;
};

static const struct name_case names[] = {
	{ "0001_init.sql", true, 1 },       { "0002_add_users.sql", true, 2 },
	{ "0010_x.sql", true, 10 },         { "9999_last_one_2.sql", true, 9999 },
	{ "0003_v2.sql", true, 3 },         { "1_init.sql", false, 0 },
	{ "001_init.sql", false, 0 },       { "00001_init.sql", false, 0 },
	{ "0001-init.sql", false, 0 },      { "0001_.sql", false, 0 },
	{ "0001.sql", false, 0 },           { "abcd_x.sql", false, 0 },
	{ "0001_init.SQL", false, 0 },      { "0001_Init.sql", false, 0 },
	{ "0001_add-users.sql", false, 0 }, { "0001_init.sql~", false, 0 },
	{ "0001_init.sql.bak", false, 0 },  { "0001_init", false, 0 },
	{ "0001_in it.sql", false, 0 },     { "0000_zero.sql", false, 0 },
	{ "README.md", false, 0 },          { "", false, 0 },
};

static void name_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int v = -1;
		print_message("name \"%s\"\n", names[i].name);
		assert_int_equal(migrate_parse_name(names[i].name, &v), names[i].valid);
		if (names[i].valid)
			assert_int_equal(v, names[i].version);
	}
}

/* ---- checksums and the marker ---- */

static void sha256_matches_sha256sum(void **state)
{
	char hex[MIGRATE_SHA256_HEX];
	const char *idx = "-- neonfcgi:no-transaction\n"
			  "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (x);\n";

	(void)state;
	/* Expected values from `printf ... | sha256sum`. */
	migrate_sha256_hex("SELECT 1;\n", 10, hex);
	assert_string_equal(hex,
			    "b4e0497804e46e0a0b0b8c31975b062152d551bac49c3c2e80932567b4085dcd");
	migrate_sha256_hex("", 0, hex);
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	migrate_sha256_hex(idx, strlen(idx), hex);
	assert_string_equal(hex,
			    "723c22369fddabdf1f915e96ba0a93ff40ddc1cea66c988046eda42539ed2579");
}

static void no_tx_marker(void **state)
{
	static const struct {
		const char *sql;
		bool marked;
	} cases[] = {
		{ "-- neonfcgi:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);", true },
		{ "-- neonfcgi:no-transaction", true },
		{ "-- neonfcgi:no-transaction  \r\nSELECT 1;", true },
		{ "-- neonfcgi:no-transaction please\nSELECT 1;", false },
		{ "\n-- neonfcgi:no-transaction\nSELECT 1;", false },
		{ " -- neonfcgi:no-transaction\n", false },
		{ "-- NEONFCGI:NO-TRANSACTION\n", false },
		{ "SELECT 1; -- neonfcgi:no-transaction\n", false },
		{ "", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(migrate_has_no_tx_marker(cases[i].sql, strlen(cases[i].sql)),
				 cases[i].marked);
}

/* ---- splitting ---- */

struct split_case {
	const char *sql;
	size_t n;
	const char *keywords; /* first word of each statement, space separated */
	int last_line;        /* line of the last statement */
};

static const struct split_case splits[] = {
	{ "", 0, "", 0 },
	{ "  -- only a comment\n/* and /* nested */ one */\n", 0, "", 0 },
	{ ";;\n;", 0, "", 0 },
	{ "SELECT 1", 1, "select", 1 },
	{ "SELECT 1; SELECT 2;", 2, "select select", 1 },
	{ "CREATE TABLE t (a int);\n\nINSERT INTO t VALUES (1);\n", 2, "create insert", 3 },
	{ "SELECT ';' ; SELECT 'it''s;'; SELECT \"a;b\" FROM x;", 3, "select select select", 1 },
	{ "SELECT E'\\';' ; SELECT 2", 2, "select select", 1 },
	{ "SELECT '\\'; SELECT 2", 2, "select select", 1 },
	{ "-- a; b\nSELECT 1; /* c; d */ SELECT 2", 2, "select select", 2 },
	{ "DO $$ BEGIN PERFORM 1; END $$; SELECT 2", 2, "do select", 1 },
	{ "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $x$ $body$ LANGUAGE sql;\nSELECT 2;",
	  2, "create select", 2 },
	{ "SELECT $1; SELECT a$b FROM t", 2, "select select", 1 },
	{ "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n"
	  "SELECT 3;",
	  2, "create select", 2 },
	{ "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC\n"
	  "  SELECT CASE WHEN true THEN 1 END; INSERT INTO t VALUES (1);\nEND;\nCOMMIT;",
	  2, "create commit", 4 },
	{ "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); "
	  "INSERT INTO v VALUES (2)); SELECT 1",
	  2, "create select", 1 },
	{ "BEGIN; CREATE TABLE t (); COMMIT;", 3, "begin create commit", 1 },
	{ "SELECT 'unterminated; SELECT 2", 1, "select", 1 },
	{ "SELECT 1e5; \"Quoted\"; 42;", 3, "select  ", 1 },
};

static void split_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
		const struct split_case *c = &splits[i];
		struct migrate_stmt *st = NULL;
		char kws[256] = "";
		print_message("split case %zu: %s\n", i, c->sql);
		size_t n = migrate_split_sql(c->sql, &st);
		assert_int_equal(n, c->n);
		for (size_t k = 0; k < n; k++) {
			if (k)
				strcat(kws, " ");
			strcat(kws, st[k].keyword);
			assert_true(st[k].end > st[k].start);
			assert_true(st[k].end <= strlen(c->sql));
		}
		assert_string_equal(kws, c->keywords);
		if (n)
			assert_int_equal(st[n - 1].line, c->last_line);
		free(st);
	}
}

static void split_statement_text(void **state)
{
	const char *sql = "-- neonfcgi:no-transaction\n"
			  "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);\n"
			  "  CREATE INDEX CONCURRENTLY IF NOT EXISTS b ON t (y) -- trailing\n;\n";
	struct migrate_stmt *st = NULL;

	(void)state;
	assert_int_equal(migrate_split_sql(sql, &st), 2);
	assert_int_equal(st[0].line, 2);
	assert_int_equal(st[1].line, 3);
	assert_memory_equal(sql + st[0].start, "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x)",
			    st[0].end - st[0].start);
	assert_int_equal(st[1].end - st[1].start,
			 strlen("CREATE INDEX CONCURRENTLY IF NOT EXISTS b ON t (y)"));
	assert_string_equal(st[1].keyword2, "index");
	free(st);
}

/* ---- files: ordering, gaps, duplicates, transaction control ---- */

static void add_all(struct migrate_files *fs, struct problems *p, const char *const *list)
{
	for (; *list; list++)
		assert_int_equal(migrate_files_add(fs, *list, "SELECT 1;\n", 10, p), 0);
}

static void files_sorted_by_version(void **state)
{
	const char *const list[] = { "0003_c.sql", "0001_a.sql", "0004_d.sql", "0002_b.sql", NULL };
	struct migrate_files fs = { 0 };
	struct problems p = { 0 };

	(void)state;
	add_all(&fs, &p, list);
	assert_int_equal(migrate_files_check(&fs, &p), 0);
	assert_int_equal(p.n, 0);
	assert_int_equal(fs.n, 4);
	for (size_t i = 0; i < fs.n; i++)
		assert_int_equal(fs.v[i].version, (int)i + 1);
	assert_string_equal(fs.v[0].name, "0001_a.sql");
	assert_string_equal(fs.v[0].checksum,
			    "b4e0497804e46e0a0b0b8c31975b062152d551bac49c3c2e80932567b4085dcd");
	migrate_files_free(&fs);
}

static void gap_is_refused(void **state)
{
	const char *const list[] = { "0001_a.sql", "0003_c.sql", NULL };
	struct migrate_files fs = { 0 };
	struct problems p = { 0 };

	(void)state;
	add_all(&fs, &p, list);
	assert_int_equal(migrate_files_check(&fs, &p), -1);
	assert_int_equal(p.n, 1);
	assert_non_null(strstr(p.lines[0], "0003_c.sql"));
	assert_non_null(strstr(p.lines[0], "version 0002 is missing"));
	problems_free(&p);
	migrate_files_free(&fs);
}

static void first_version_must_be_0001(void **state)
{
	const char *const list[] = { "0004_d.sql", "0005_e.sql", NULL };
	struct migrate_files fs = { 0 };
	struct problems p = { 0 };

	(void)state;
	add_all(&fs, &p, list);
	assert_int_equal(migrate_files_check(&fs, &p), -1);
	assert_int_equal(p.n, 1);
	assert_non_null(strstr(p.lines[0], "versions 0001-0003 are missing"));
	problems_free(&p);
	migrate_files_free(&fs);
}

static void duplicate_is_refused(void **state)
{
	const char *const list[] = { "0001_a.sql", "0002_b.sql", "0002_a.sql", "0003_c.sql", NULL };
	struct migrate_files fs = { 0 };
	struct problems p = { 0 };

	(void)state;
	add_all(&fs, &p, list);
	assert_int_equal(migrate_files_check(&fs, &p), -1);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.lines[0], "0002_a.sql and 0002_b.sql: duplicate version 0002");
	problems_free(&p);
	migrate_files_free(&fs);
}

static void bad_name_and_nul_are_refused(void **state)
{
	struct migrate_files fs = { 0 };
	struct problems p = { 0 };

	(void)state;
	assert_int_equal(migrate_files_add(&fs, "0001-init.sql", "SELECT 1;", 9, &p), -1);
	assert_int_equal(migrate_files_add(&fs, "0001_init.sql", "SELECT\0 1;", 10, &p), -1);
	assert_int_equal(fs.n, 0);
	assert_int_equal(p.n, 2);
	assert_non_null(strstr(p.lines[0], "0001-init.sql: not a migration file name"));
	assert_non_null(strstr(p.lines[1], "NUL byte"));
	problems_free(&p);
}

struct txc_case {
	const char *sql;
	bool refused;
};

static void transaction_control_table(void **state)
{
	static const struct txc_case cases[] = {
		{ "CREATE TABLE t (a int);", false },
		{ "BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;", true },
		{ "CREATE TABLE t (a int); COMMIT;", true },
		{ "START TRANSACTION; SELECT 1;", true },
		{ "SELECT 1; END;", true },
		{ "SELECT 1; ROLLBACK;", true },
		{ "SAVEPOINT s; SELECT 1; ROLLBACK TO SAVEPOINT s; RELEASE s;", false },
		{ "PREPARE TRANSACTION 'x';", true },
		{ "PREPARE q AS SELECT 1;", false },
		{ "DO $$ BEGIN PERFORM 1; END $$;", false },
		{ "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;",
		  false },
		{ "-- neonfcgi:no-transaction\nBEGIN; SELECT 1; COMMIT;", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct migrate_files fs = { 0 };
		struct problems p = { 0 };
		print_message("tx control case %zu\n", i);
		assert_int_equal(
		    migrate_files_add(&fs, "0001_a.sql", cases[i].sql, strlen(cases[i].sql), &p),
		    0);
		assert_int_equal(migrate_files_check(&fs, &p), cases[i].refused ? -1 : 0);
		if (cases[i].refused)
			assert_non_null(strstr(p.lines[0], "0001_a.sql line "));
		problems_free(&p);
		migrate_files_free(&fs);
	}
}

static void scan_dir_reads_and_refuses(void **state)
{
	struct migrate_files fs = { 0 };
	struct problems p = { 0 };
	char sub[128];

	(void)state;
	dir_make();
	dir_write("0002_b.sql", "SELECT 2;\n");
	dir_write("0001_a.sql", "SELECT 1;\n");
	dir_write(".gitkeep", "");
	dir_write(".0003_c.sql.swp", "junk");
	assert_int_equal(migrate_scan_dir(tmpdir, &fs, &p), 0);
	assert_int_equal(fs.n, 2);
	assert_string_equal(fs.v[0].name, "0001_a.sql");
	assert_string_equal(fs.v[1].sql, "SELECT 2;\n");
	migrate_files_free(&fs);

	dir_write("README.md", "notes");
	snprintf(sub, sizeof(sub), "%s/0003_dir.sql", tmpdir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(migrate_scan_dir(tmpdir, &fs, &p), -1);
	assert_int_equal(p.n, 2);
	bool readme = false, notreg = false;
	for (size_t i = 0; i < p.n; i++) {
		readme |= strstr(p.lines[i], "README.md: not a migration file name") != NULL;
		notreg |= strstr(p.lines[i], "0003_dir.sql: not a regular file") != NULL;
	}
	assert_true(readme && notreg);
	problems_free(&p);
	migrate_files_free(&fs);
	dir_remove();

	assert_int_equal(migrate_scan_dir("/nonexistent/neonfcgi-migrations", &fs, &p), -1);
	assert_non_null(strstr(p.lines[0], "MIGRATIONS_DIR=\"/nonexistent/neonfcgi-migrations\""));
	problems_free(&p);
}

/* ---- plans ---- */

static void make_files(struct migrate_files *fs, int n)
{
	struct problems p = { 0 };
	char name[32], sql[32];

	for (int v = 1; v <= n; v++) {
		snprintf(name, sizeof(name), "%04d_m%d.sql", v, v);
		snprintf(sql, sizeof(sql), "SELECT %d;\n", v);
		assert_int_equal(migrate_files_add(fs, name, sql, strlen(sql), &p), 0);
	}
	assert_int_equal(migrate_files_check(fs, &p), 0);
}

static void applied_from(struct migrate_applied_list *al, const struct migrate_files *fs,
			 const int *versions, size_t n)
{
	al->v = calloc(n, sizeof(*al->v));
	al->n = n;
	for (size_t i = 0; i < n; i++) {
		struct migrate_applied *a = &al->v[i];
		a->version = versions[i];
		a->applied_at = strdup("2026-01-02 03:04:05Z");
		const struct migrate_file *f = NULL;
		for (size_t k = 0; k < fs->n; k++)
			if (fs->v[k].version == versions[i])
				f = &fs->v[k];
		a->name = strdup(f ? f->name : "0099_gone.sql");
		snprintf(a->checksum, sizeof(a->checksum), "%s", f ? f->checksum : "00");
	}
}

struct plan_case {
	int nfiles;
	int applied[8];
	size_t napplied;
	const char *states; /* one letter a step: P A C R M O */
	size_t refusals;
	/* mutations of the applied rows */
	int changed_version, renamed_version;
};

static char state_letter(enum migrate_state s)
{
	return "PACRMO"[s];
}

static const struct plan_case plans[] = {
	{ 3, { 0 }, 0, "PPP", 0, 0, 0 },       /* fresh database */
	{ 3, { 1, 2, 3 }, 3, "AAA", 0, 0, 0 }, /* up to date */
	{ 3, { 1 }, 1, "APP", 0, 0, 0 },       /* two pending */
	{ 3, { 1, 2 }, 2, "ACP", 1, 2, 0 },    /* 0002 edited after applying */
	{ 3, { 1, 2 }, 2, "ARP", 1, 0, 2 },    /* 0002 renamed */
	{ 2, { 1, 2, 3 }, 3, "AAM", 0, 0, 0 }, /* older release, newer database */
	{ 3, { 1, 3 }, 2, "AOA", 1, 0, 0 },    /* 0002 came after 0003 */
	{ 0, { 1, 2 }, 2, "MM", 0, 0, 0 },     /* empty directory */
	{ 0, { 0 }, 0, "", 0, 0, 0 },
};

static void plan_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(plans) / sizeof(plans[0]); i++) {
		const struct plan_case *c = &plans[i];
		struct migrate_files fs = { 0 };
		struct migrate_applied_list al = { 0 };
		struct migrate_plan plan = { 0 };
		struct problems p = { 0 };
		char got[16] = "";
		print_message("plan case %zu\n", i);
		make_files(&fs, c->nfiles);
		applied_from(&al, &fs, c->applied, c->napplied);
		for (size_t k = 0; k < al.n; k++) {
			if (al.v[k].version == c->changed_version)
				al.v[k].checksum[0] = al.v[k].checksum[0] == '0' ? '1' : '0';
			if (al.v[k].version == c->renamed_version) {
				free(al.v[k].name);
				al.v[k].name = strdup("0002_old_name.sql");
			}
		}
		migrate_plan_build(&fs, &al, &plan);
		for (size_t k = 0; k < plan.n; k++)
			got[k] = state_letter(plan.v[k].state);
		assert_string_equal(got, c->states);
		assert_int_equal(migrate_plan_refusals(&plan, &p), c->refusals);
		assert_int_equal(p.n, c->refusals);
		if (c->changed_version)
			assert_non_null(
			    strstr(p.lines[0], "0002_m2.sql: changed after it was applied"));
		if (c->renamed_version)
			assert_non_null(strstr(p.lines[0], "was applied as 0002_old_name.sql"));
		problems_free(&p);
		migrate_plan_free(&plan);
		migrate_applied_free(&al);
		migrate_files_free(&fs);
	}
}

static void status_table_shows_every_state(void **state)
{
	struct migrate_files fs = { 0 };
	struct migrate_applied_list al = { 0 };
	struct migrate_plan plan = { 0 };
	const int applied[] = { 1, 2, 5 };
	char buf[2048];

	(void)state;
	make_files(&fs, 3);
	applied_from(&al, &fs, applied, 3);
	al.v[1].checksum[0] = al.v[1].checksum[0] == '0' ? '1' : '0';
	migrate_plan_build(&fs, &al, &plan);
	FILE *out = fmemopen(buf, sizeof(buf), "w");
	migrate_print_status(&plan, out);
	fclose(out);
	print_message("%s", buf);
	assert_non_null(strstr(buf, "version  name           applied_at            checksum\n"));
	assert_non_null(strstr(buf, "0001     0001_m1.sql    2026-01-02 03:04:05Z  ok\n"));
	assert_non_null(strstr(buf, "0002     0002_m2.sql    2026-01-02 03:04:05Z  changed\n"));
	assert_non_null(
	    strstr(buf, "0003     0003_m3.sql    pending               out of order\n"));
	assert_non_null(
	    strstr(buf, "0005     0099_gone.sql  2026-01-02 03:04:05Z  file missing\n"));
	assert_non_null(
	    strstr(buf, "3 applied, 1 pending, 1 changed, 1 file missing, 1 out of order"));
	migrate_plan_free(&plan);
	migrate_applied_free(&al);
	migrate_files_free(&fs);
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
	struct config cfg;
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

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	dir_write("0002_b.sql", "CREATE TABLE b (x int);\n");
	cfg = test_config();
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	assert_int_equal(db.nlog, (int)(sizeof(want) / sizeof(want[0])));
	for (int i = 0; i < db.nlog; i++)
		assert_int_equal(strncmp(db.log[i], want[i], strlen(want[i])), 0);
	assert_int_equal(db.nrows, 2);
	assert_true(effect_committed("CREATE TABLE a") && effect_committed("CREATE TABLE b"));
	assert_int_equal(db.connects, db.closes);

	/* Re-running is a no-op: read, plan, nothing to do. */
	db.nlog = 0;
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	assert_int_equal(db.nlog, 2);
	assert_true(log_has("SELECT version, name, checksum"));
	assert_int_equal(db.nrows, 2);
	dir_remove();
}

static void failing_file_rolls_back_and_stops(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	dir_write("0002_bad.sql", "CREATE TABLE b_part (x int);\nCREAT TABLE oops;\n");
	dir_write("0003_c.sql", "CREATE TABLE c (x int);\n");
	db.fail_on = "CREAT TABLE oops";
	cfg = test_config();
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 1);
	assert_int_equal(db.nrows, 1);
	assert_int_equal(db.rows[0].version, 1);
	assert_false(effect_committed("b_part"));
	assert_false(log_has("CREATE TABLE c"));
	assert_string_equal(db.log[db.nlog - 1], "ROLLBACK");
	assert_false(db.in_tx);

	/* Fixed, the next run applies it and the one after. */
	db.fail_on = NULL;
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	assert_int_equal(db.nrows, 3);
	assert_true(effect_committed("b_part") && effect_committed("CREATE TABLE c"));
	dir_remove();
}

static void changed_file_refuses_before_anything_runs(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	cfg = test_config();
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	dir_write("0001_a.sql", "CREATE TABLE a (x bigint);\n");
	dir_write("0002_b.sql", "CREATE TABLE b (x int);\n");
	db.nlog = 0;
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 1);
	assert_int_equal(count_log("BEGIN"), 0);
	assert_false(log_has("CREATE TABLE b"));
	assert_int_equal(db.nrows, 1);
	/* status still answers, with exit 0. */
	assert_int_equal(migrate_command(&cfg, MIGRATE_STATUS), 0);
	dir_remove();
}

static void recheck_under_lock_skips_what_another_runner_applied(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	dir_write("0002_b.sql", "CREATE TABLE b (x int);\n");
	db.table = true;
	db.sneak_version = 1; /* recorded by "another host" after our read */
	migrate_sha256_hex("CREATE TABLE a (x int);\n", 24, db.sneak_checksum);
	cfg = test_config();
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	assert_false(effect_committed("CREATE TABLE a"));
	assert_true(effect_committed("CREATE TABLE b"));
	assert_int_equal(db.nrows, 2);
	dir_remove();
}

static void recheck_refuses_a_different_file_applied_elsewhere(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	db.table = true;
	db.sneak_version = 1;
	snprintf(db.sneak_checksum, sizeof(db.sneak_checksum), "%064d", 0);
	cfg = test_config();
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 1);
	assert_false(effect_committed("CREATE TABLE a"));
	assert_string_equal(db.log[db.nlog - 1], "ROLLBACK");
	dir_remove();
}

static void no_transaction_file_runs_statement_by_statement(void **state)
{
	struct config cfg;
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

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	cfg = test_config();
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	dir_write("0002_idx.sql", "-- neonfcgi:no-transaction\n"
				  "CREATE INDEX CONCURRENTLY IF NOT EXISTS i1 ON a (x);\n"
				  "CREATE INDEX CONCURRENTLY IF NOT EXISTS i2 ON a (x);\n");
	db.nlog = 0;
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	assert_int_equal(db.nlog, 2 + (int)(sizeof(want) / sizeof(want[0])));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_int_equal(strncmp(db.log[i + 2], want[i], strlen(want[i])), 0);
	assert_string_equal(db.log[6], "CREATE INDEX CONCURRENTLY IF NOT EXISTS i1 ON a (x)");
	assert_int_equal(db.nrows, 2);
	assert_int_equal(db.open_conns, 0);
	dir_remove();
}

static const char idx_sql[] = "-- neonfcgi:no-transaction\n"
			      "CREATE INDEX CONCURRENTLY IF NOT EXISTS i1 ON a (x);\n";

static void no_transaction_file_waits_for_the_claim(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	cfg = test_config();
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	dir_write("0002_a.sql", idx_sql);
	db.claim_busy = 2; /* another runner holds it for two looks */
	db.nlog = 0;
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	assert_int_equal(count_log("claim: BEGIN"), 3);
	assert_int_equal(count_log("claim: ROLLBACK"), 3); /* no claim transaction stays open */
	assert_int_equal(count_log("CREATE INDEX"), 1);
	assert_int_equal(db.nrows, 2);
	dir_remove();
}

static void no_transaction_file_recorded_by_the_claim_holder_is_skipped(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	cfg = test_config();
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	dir_write("0002_a.sql", idx_sql);
	db.claim_busy = 1000;
	db.sneak_version = 2; /* the holder records it while we look */
	migrate_sha256_hex(idx_sql, strlen(idx_sql), db.sneak_checksum);
	db.nlog = 0;
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 0);
	assert_int_equal(count_log("CREATE INDEX"), 0);
	assert_int_equal(db.nrows, 2);
	dir_remove();
}

static void dry_run_and_status_change_nothing(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	cfg = test_config();
	assert_int_equal(migrate_command(&cfg, MIGRATE_DRY_RUN), 0);
	assert_int_equal(migrate_command(&cfg, MIGRATE_STATUS), 0);
	assert_false(db.table);
	assert_int_equal(count_log("BEGIN"), 0);
	assert_int_equal(count_log("SELECT to_regclass"), 2);
	assert_int_equal(db.nlog, 2);
	dir_remove();
}

static void bad_directory_refuses_before_connecting(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	dir_write("0003_c.sql", "CREATE TABLE c (x int);\n");
	cfg = test_config();
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 1);
	assert_int_equal(db.connects, 0);
	assert_int_equal(migrate_command(&cfg, MIGRATE_STATUS), 1);
	dir_remove();
}

static void command_unreachable_exits_1(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	db.connect_failures = 100;
	cfg = test_config();
	cfg.db_retry_attempts = 2;
	assert_int_equal(migrate_command(&cfg, MIGRATE_RUN), 1);
	assert_int_equal(db.connect_failures, 97); /* one attempt and two retries */
	dir_remove();
}

static void on_start_waits_for_the_database(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_a.sql", "CREATE TABLE a (x int);\n");
	db.connect_failures = 3;
	cfg = test_config();
	cfg.db_start_timeout_ms = 5000;
	assert_int_equal(migrate_on_start(&cfg), 0);
	assert_int_equal(db.nrows, 1);
	dir_remove();
}

static void on_start_gives_up_with_69(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	db.connect_failures = 1000000;
	cfg = test_config();
	cfg.db_start_timeout_ms = 100;
	log_errors = 0;
	assert_int_equal(migrate_on_start(&cfg), MIGRATE_EX_UNAVAILABLE);
	assert_int_equal(log_errors, 1);
	assert_non_null(strstr(last_log, "database unavailable for migrations"));
	assert_non_null(strstr(last_log, "db=\"db.example:5432/app\""));
	dir_remove();
}

static void on_start_bad_sql_exits_1_naming_the_file(void **state)
{
	struct config cfg;

	(void)state;
	fake_reset();
	dir_make();
	dir_write("0001_bad.sql", "CREAT TABLE oops;\n");
	db.fail_on = "CREAT TABLE";
	cfg = test_config();
	assert_int_equal(migrate_on_start(&cfg), 1);
	assert_non_null(strstr(last_log, "migration failed"));
	assert_non_null(strstr(last_log, "file=0001_bad.sql"));
	assert_non_null(strstr(last_log, "sqlstate=42601"));
	assert_non_null(strstr(last_log, "error=\"syntax error at or near \\\"CREAT\\\"\""));
	dir_remove();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(name_table),
		cmocka_unit_test(sha256_matches_sha256sum),
		cmocka_unit_test(no_tx_marker),
		cmocka_unit_test(split_table),
		cmocka_unit_test(split_statement_text),
		cmocka_unit_test(files_sorted_by_version),
		cmocka_unit_test(gap_is_refused),
		cmocka_unit_test(first_version_must_be_0001),
		cmocka_unit_test(duplicate_is_refused),
		cmocka_unit_test(bad_name_and_nul_are_refused),
		cmocka_unit_test(transaction_control_table),
		cmocka_unit_test(scan_dir_reads_and_refuses),
		cmocka_unit_test(plan_table),
		cmocka_unit_test(status_table_shows_every_state),
		cmocka_unit_test(run_applies_each_file_in_its_locked_transaction),
		cmocka_unit_test(failing_file_rolls_back_and_stops),
		cmocka_unit_test(changed_file_refuses_before_anything_runs),
		cmocka_unit_test(recheck_under_lock_skips_what_another_runner_applied),
		cmocka_unit_test(recheck_refuses_a_different_file_applied_elsewhere),
		cmocka_unit_test(no_transaction_file_runs_statement_by_statement),
		cmocka_unit_test(no_transaction_file_waits_for_the_claim),
		cmocka_unit_test(no_transaction_file_recorded_by_the_claim_holder_is_skipped),
		cmocka_unit_test(dry_run_and_status_change_nothing),
		cmocka_unit_test(bad_directory_refuses_before_connecting),
		cmocka_unit_test(command_unreachable_exits_1),
		cmocka_unit_test(on_start_waits_for_the_database),
		cmocka_unit_test(on_start_gives_up_with_69),
		cmocka_unit_test(on_start_bad_sql_exits_1_naming_the_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
