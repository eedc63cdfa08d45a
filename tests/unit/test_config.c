/* Unit tests of app/config.c: defaults and bounds of every variable (table
 * driven), booleans, enums, the env file and its precedence, the WORKERS
 * default when spawned, DATABASE_URL rules, listen rules, the connection
 * budget, and that a password never reaches a problem line or config_print.
 * Runs in a temporary directory (no stray ./.env). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "cwd_fixture.h"

#define SECRET     "s3cr3t-P@ss:w0rd"
#define SECRET_ENC "s3cr3t-P%40ss%3Aw0rd"
#define DB_URL     "postgres://app:" SECRET_ENC "@db.example.com/app?sslmode=verify-full"
#define MAX_ENV    64

struct run {
	struct config *cfg;
	struct problems p;
	int rc;
};

/* ---- helpers ---- */

/* Load from a NULL-terminated list of "KEY=value"; DATABASE_URL=DB_URL is
 * added first unless with_db is false (later entries do not override it:
 * env_get takes the first match, so tests that need another URL pass
 * with_db = false). */
static void load_list(struct run *r, bool spawned, long cpus, bool with_db, const char *const *vars)
{
	char *env[MAX_ENV];
	size_t n = 0;
	struct config_source src;

	if (with_db)
		env[n++] = (char *)"DATABASE_URL=" DB_URL;
	for (; vars != NULL && *vars != NULL; vars++) {
		assert_true(n < MAX_ENV - 1);
		env[n++] = (char *)*vars;
	}
	env[n] = NULL;
	src.environ = env;
	src.spawned = spawned;
	src.online_cpus = cpus;
	r->p.lines = NULL;
	r->p.n = 0;
	r->cfg = config_new();
	r->rc = config_load(r->cfg, &src, &r->p);
}

#define LOAD(r, ...)                                                                               \
	do {                                                                                       \
		const char *const list_[] = { __VA_ARGS__, NULL };                                 \
		load_list((r), false, 4, true, list_);                                             \
	} while (0)
#define LOAD_NODB(r, ...)                                                                          \
	do {                                                                                       \
		const char *const list_[] = { __VA_ARGS__, NULL };                                 \
		load_list((r), false, 4, false, list_);                                            \
	} while (0)

static void done(struct run *r)
{
	config_destroy(r->cfg);
	problems_free(&r->p);
}

static void dump(const struct run *r)
{
	for (size_t i = 0; i < r->p.n; i++)
		print_message("  problem: %s\n", r->p.lines[i]);
}

static bool has_line(const struct run *r, const char *line)
{
	for (size_t i = 0; i < r->p.n; i++)
		if (strcmp(r->p.lines[i], line) == 0)
			return true;
	return false;
}

static bool has_text(const struct run *r, const char *text)
{
	for (size_t i = 0; i < r->p.n; i++)
		if (strstr(r->p.lines[i], text) != NULL)
			return true;
	return false;
}

static void expect_ok(const struct run *r)
{
	if (r->rc != 0 || r->p.n != 0) {
		print_message("expected a valid configuration, rc=%d\n", r->rc);
		dump(r);
		fail();
	}
}

static void expect_line(const struct run *r, const char *line)
{
	if (r->rc != -1 || !has_line(r, line)) {
		print_message("expected problem: %s\n", line);
		dump(r);
		fail();
	}
}

static void expect_text(const struct run *r, const char *text)
{
	if (r->rc != -1 || !has_text(r, text)) {
		print_message("expected a problem containing: %s\n", text);
		dump(r);
		fail();
	}
}

static void expect_no_secret(const struct run *r, const char *secret)
{
	for (size_t i = 0; i < r->p.n; i++) {
		if (strstr(r->p.lines[i], secret) != NULL) {
			print_message("secret leaked: %s\n", r->p.lines[i]);
			fail();
		}
	}
}

static char *print_to_string(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	config_print(cfg, f);
	fclose(f);
	return buf;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static long long_at(const struct config *cfg, size_t off)
{
	return *(const long *)((const char *)cfg + off);
}

static bool bool_at(const struct config *cfg, size_t off)
{
	return *(const bool *)((const char *)cfg + off);
}

/* ---- integer variables: default and bounds, one table ---- */

struct int_case {
	const char *name;
	size_t off;
	long min, max, def;
	const char *extra[4]; /* other variables the case needs to stay valid */
};

#define OFF(f) offsetof(struct config, f)

static const struct int_case int_cases[] = {
	{ "API_PORT", OFF(api_port), 1024, 65535, 9009, { NULL } },
	{ "WORKERS", OFF(workers), 1, 256, 4, { NULL } },
	{ "WORKER_THREADS", OFF(worker_threads), 1, 64, 4, { NULL } },
	{ "DB_POOL_SIZE", OFF(db_pool_size), 1, 100, 2, { NULL } },
	{ "DB_MAX_OVERFLOW", OFF(db_max_overflow), 0, 100, 2, { NULL } },
	{ "DB_OVERFLOW_IDLE_MS", OFF(db_overflow_idle_ms), 0, 600000, 5000, { NULL } },
	{ "DB_POOL_TIMEOUT_MS", OFF(db_pool_timeout_ms), 1, 60000, 1000, { NULL } },
	{ "DB_IDLE_TIMEOUT_S", OFF(db_idle_timeout_s), 0, 86400, 240, { NULL } },
	{ "DB_MAX_LIFETIME_S", OFF(db_max_lifetime_s), 0, 86400, 1800, { NULL } },
	{ "DB_CONNECT_TIMEOUT_MS", OFF(db_connect_timeout_ms), 100, 60000, 5000, { NULL } },
	{ "DB_RETRY_ATTEMPTS", OFF(db_retry_attempts), 0, 10, 3, { NULL } },
	{ "DB_RETRY_BACKOFF_MS", OFF(db_retry_backoff_ms), 1, 10000, 100, { NULL } },
	{ "DB_CONNECTION_BUDGET",
	  OFF(db_connection_budget),
	  1,
	  1000000,
	  -1,
	  { "WORKERS=1", "DB_POOL_SIZE=1", "DB_MAX_OVERFLOW=0", NULL } },
	{ "DB_FAILURE_HOLD_MS", OFF(db_failure_hold_ms), 0, 600000, 5000, { NULL } },
	{ "HEALTH_TIMEOUT_MS", OFF(health_timeout_ms), 100, 30000, 1500, { NULL } },
	{ "MAX_REQUESTS", OFF(max_requests), 0, 1000000000, 0, { NULL } },
	{ "SHUTDOWN_TIMEOUT_MS", OFF(shutdown_timeout_ms), 0, 600000, 10000, { NULL } },
	{ "SLOW_REQUEST_MS", OFF(slow_request_ms), 1, 600000, 1000, { NULL } },
	{ "DB_START_TIMEOUT_MS", OFF(db_start_timeout_ms), 0, 600000, 30000, { NULL } },
};

/* Load with NAME=value (NULL: unset) plus the case's extras. */
static void load_int(struct run *r, const struct int_case *c, const char *value)
{
	const char *list[8];
	char setting[128];
	size_t n = 0;

	for (size_t i = 0; c->extra[i] != NULL; i++)
		list[n++] = c->extra[i];
	if (value != NULL) {
		snprintf(setting, sizeof setting, "%s=%s", c->name, value);
		list[n++] = setting;
	}
	list[n] = NULL;
	load_list(r, false, 4, true, list);
}

static void expect_int_ok(const struct int_case *c, long value)
{
	struct run r;
	char text[32];

	snprintf(text, sizeof text, "%ld", value);
	load_int(&r, c, text);
	expect_ok(&r);
	assert_int_equal(long_at(r.cfg, c->off), value);
	done(&r);
}

static void expect_int_bad(const struct int_case *c, const char *value)
{
	struct run r;
	char line[256];

	load_int(&r, c, value);
	snprintf(line, sizeof line, "%s=\"%s\": must be an integer between %ld and %ld", c->name,
		 value, c->min, c->max);
	expect_line(&r, line);
	assert_int_equal(r.p.n, 1);
	done(&r);
}

static void test_int_defaults_and_bounds(void **state)
{
	static const char *const junk[] = { "abc", "",     "12abc", " 5",
					    "5 ",  "0x10", "1e3",   "99999999999999999999999",
					    "+",   "-" };
	char text[32];

	(void)state;
	for (size_t i = 0; i < sizeof int_cases / sizeof int_cases[0]; i++) {
		const struct int_case *c = &int_cases[i];
		struct run r;

		print_message("%s\n", c->name);
		load_int(&r, c, NULL);
		expect_ok(&r);
		assert_int_equal(long_at(r.cfg, c->off), c->def);
		done(&r);
		expect_int_ok(c, c->min);
		expect_int_ok(c, c->max);
		snprintf(text, sizeof text, "%ld", c->min - 1);
		expect_int_bad(c, text);
		snprintf(text, sizeof text, "%ld", c->max + 1);
		expect_int_bad(c, text);
		for (size_t j = 0; j < sizeof junk / sizeof junk[0]; j++)
			expect_int_bad(c, junk[j]);
	}
}

/* The exact lines of the issue. */
static void test_issue_int_examples(void **state)
{
	struct run r;

	(void)state;
	LOAD(&r, "API_PORT=80");
	expect_line(&r, "API_PORT=\"80\": must be an integer between 1024 and 65535");
	done(&r);
	LOAD(&r, "API_PORT=abc");
	expect_line(&r, "API_PORT=\"abc\": must be an integer between 1024 and 65535");
	done(&r);
	LOAD(&r, "API_PORT=70000");
	expect_line(&r, "API_PORT=\"70000\": must be an integer between 1024 and 65535");
	done(&r);
	LOAD(&r, "WORKERS=0");
	expect_line(&r, "WORKERS=\"0\": must be an integer between 1 and 256");
	done(&r);
	LOAD(&r, "DB_POOL_SIZE=-1");
	expect_line(&r, "DB_POOL_SIZE=\"-1\": must be an integer between 1 and 100");
	done(&r);
}

static void test_two_bad_variables_both_named(void **state)
{
	struct run r;

	(void)state;
	LOAD(&r, "API_PORT=80", "LOG_LEVEL=verbose");
	assert_int_equal(r.p.n, 2);
	expect_text(&r, "API_PORT=\"80\"");
	expect_text(&r, "LOG_LEVEL=\"verbose\"");
	done(&r);
}

static void test_every_problem_at_once(void **state)
{
	struct run r;

	(void)state;
	LOAD_NODB(&r, "API_PORT=1", "API_SOCKET_MODE=9", "WORKERS=x", "DB_POOL_PRE_PING=perhaps",
		  "HEALTH_DETAILS=all", "LOG_FORMAT=xml", "MAX_REQUESTS=-5", "API_SOCKET=rel.sock",
		  "MIGRATIONS_DIR=");
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.p.n, 10);
	expect_text(&r, "DATABASE_URL: required");
	done(&r);
}

/* ---- octal, booleans, enums ---- */

static void test_socket_mode_octal(void **state)
{
	static const struct {
		const char *text;
		long mode;
	} ok[] = { { "0660", 0660 }, { "660", 0660 },  { "0", 0 },
		   { "0777", 0777 }, { "0600", 0600 }, { "00660", 0660 } };
	static const char *const bad[] = { "0999", "8",     "01000", "-1",  "",
					   "rw",   "0o660", "0x1b0", " 660" };
	struct run r;
	char line[128];

	(void)state;
	LOAD(&r, "LOG_LEVEL=info");
	expect_ok(&r);
	assert_int_equal(r.cfg->api_socket_mode, 0660);
	done(&r);
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		snprintf(line, sizeof line, "API_SOCKET_MODE=%s", ok[i].text);
		LOAD(&r, line);
		expect_ok(&r);
		assert_int_equal(r.cfg->api_socket_mode, ok[i].mode);
		done(&r);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char setting[64];

		snprintf(setting, sizeof setting, "API_SOCKET_MODE=%s", bad[i]);
		LOAD(&r, setting);
		snprintf(
		    line, sizeof line,
		    "API_SOCKET_MODE=\"%s\": must be octal permission bits between 0000 and 0777",
		    bad[i]);
		expect_line(&r, line);
		assert_int_equal(r.cfg->api_socket_mode, 0660);
		done(&r);
	}
}

struct bool_case {
	const char *name;
	size_t off;
	bool def;
};

static const struct bool_case bool_cases[] = {
	{ "DB_POOL_PRE_PING", OFF(db_pool_pre_ping), true },
	{ "ACCESS_LOG", OFF(access_log), false },
	{ "MIGRATE_ON_START", OFF(migrate_on_start), false },
};

static void check_bool(const struct bool_case *c, const char *word, int want)
{
	char setting[64], line[160];
	const char *const list[] = { setting, NULL };
	struct run r;

	snprintf(setting, sizeof setting, "%s=%s", c->name, word);
	load_list(&r, false, 4, true, list);
	if (want < 0) {
		snprintf(line, sizeof line,
			 "%s=\"%s\": must be a boolean (1/0, true/false, yes/no, on/off)", c->name,
			 word);
		expect_line(&r, line);
		assert_int_equal(bool_at(r.cfg, c->off), c->def);
	} else {
		expect_ok(&r);
		assert_int_equal(bool_at(r.cfg, c->off), want);
	}
	done(&r);
}

static void test_booleans(void **state)
{
	static const char *const yes[] = { "1",   "true", "TRUE", "True", "tRuE", "yes",
					   "YES", "Yes",  "on",   "ON",   "On" };
	static const char *const no[] = { "0",  "false", "FALSE", "False", "no",
					  "NO", "No",    "off",   "OFF",   "oFf" };
	static const char *const bad[] = { "maybe", "",  "2", "tru",    "yes ",
					   " on",   "y", "n", "enabled" };

	(void)state;
	for (size_t i = 0; i < sizeof bool_cases / sizeof bool_cases[0]; i++) {
		const struct bool_case *c = &bool_cases[i];
		struct run r;

		LOAD(&r, "LOG_LEVEL=info");
		expect_ok(&r);
		assert_int_equal(bool_at(r.cfg, c->off), c->def);
		done(&r);
		for (size_t j = 0; j < sizeof yes / sizeof yes[0]; j++)
			check_bool(c, yes[j], 1);
		for (size_t j = 0; j < sizeof no / sizeof no[0]; j++)
			check_bool(c, no[j], 0);
		for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++)
			check_bool(c, bad[j], -1);
	}
}

static void test_unknown_boolean_word_names_variable(void **state)
{
	struct run r;

	(void)state;
	LOAD(&r, "ACCESS_LOG=maybe");
	expect_line(&r,
		    "ACCESS_LOG=\"maybe\": must be a boolean (1/0, true/false, yes/no, on/off)");
	assert_int_equal(r.p.n, 1);
	done(&r);
}

static void test_enums(void **state)
{
	static const struct {
		const char *setting;
		size_t off;
		int want; /* -1: rejected */
		const char *line;
	} cases[] = {
		{ "LOG_LEVEL=debug", OFF(log_level), LOG_LEVEL_DEBUG, NULL },
		{ "LOG_LEVEL=INFO", OFF(log_level), LOG_LEVEL_INFO, NULL },
		{ "LOG_LEVEL=Warn", OFF(log_level), LOG_LEVEL_WARN, NULL },
		{ "LOG_LEVEL=error", OFF(log_level), LOG_LEVEL_ERROR, NULL },
		{ "LOG_LEVEL=verbose", OFF(log_level), -1,
		  "LOG_LEVEL=\"verbose\": must be one of debug, info, warn, error" },
		{ "LOG_LEVEL=", OFF(log_level), -1,
		  "LOG_LEVEL=\"\": must be one of debug, info, warn, error" },
		{ "LOG_FORMAT=text", OFF(log_format), LOG_FORMAT_TEXT, NULL },
		{ "LOG_FORMAT=JSON", OFF(log_format), LOG_FORMAT_JSON, NULL },
		{ "LOG_FORMAT=xml", OFF(log_format), -1,
		  "LOG_FORMAT=\"xml\": must be one of text, json" },
		{ "HEALTH_DETAILS=full", OFF(health_details), HEALTH_DETAILS_FULL, NULL },
		{ "HEALTH_DETAILS=Minimal", OFF(health_details), HEALTH_DETAILS_MINIMAL, NULL },
		{ "HEALTH_DETAILS=none", OFF(health_details), -1,
		  "HEALTH_DETAILS=\"none\": must be one of full, minimal" },
	};
	struct run r;

	(void)state;
	LOAD(&r, "ACCESS_LOG=0");
	expect_ok(&r);
	assert_int_equal(r.cfg->log_level, LOG_LEVEL_INFO);
	assert_int_equal(r.cfg->log_format, LOG_FORMAT_TEXT);
	assert_int_equal(r.cfg->health_details, HEALTH_DETAILS_FULL);
	done(&r);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		LOAD(&r, cases[i].setting);
		if (cases[i].want < 0) {
			expect_line(&r, cases[i].line);
		} else {
			expect_ok(&r);
			assert_int_equal(*(const int *)((const char *)r.cfg + cases[i].off),
					 cases[i].want);
		}
		done(&r);
	}
}

static void test_string_defaults(void **state)
{
	struct run r;

	(void)state;
	LOAD(&r, "ACCESS_LOG=0");
	expect_ok(&r);
	assert_string_equal(r.cfg->database_url, DB_URL);
	assert_string_equal(r.cfg->api_host, "127.0.0.1");
	assert_null(r.cfg->api_socket);
	assert_null(r.cfg->fcgi_web_server_addrs);
	assert_string_equal(r.cfg->migrations_dir, "./migrations");
	assert_null(r.cfg->env_file);
	assert_false(r.cfg->db_sslmode_require);
	done(&r);
	/* empty optional strings mean unset */
	LOAD(&r, "API_SOCKET=", "FCGI_WEB_SERVER_ADDRS=");
	expect_ok(&r);
	assert_null(r.cfg->api_socket);
	assert_null(r.cfg->fcgi_web_server_addrs);
	done(&r);
	LOAD(&r, "MIGRATIONS_DIR=");
	expect_text(&r, "MIGRATIONS_DIR=\"\": must not be empty");
	done(&r);
	LOAD(&r, "MIGRATIONS_DIR=/srv/app/migrations");
	expect_ok(&r);
	assert_string_equal(r.cfg->migrations_dir, "/srv/app/migrations");
	done(&r);
}

/* ---- WORKERS default: standalone and spawned ---- */

static long workers_for(bool spawned, long cpus, const char *const *vars)
{
	struct run r;
	long n;

	load_list(&r, spawned, cpus, true, vars);
	expect_ok(&r);
	n = r.cfg->workers;
	done(&r);
	return n;
}

static void test_workers_default(void **state)
{
	static const char *const none[] = { NULL };
	static const char *const children5[] = { "PHP_FCGI_CHILDREN=5", NULL };
	static const char *const children_bad[] = { "PHP_FCGI_CHILDREN=abc", NULL };
	static const char *const children0[] = { "PHP_FCGI_CHILDREN=0", NULL };
	static const char *const children_big[] = { "PHP_FCGI_CHILDREN=1000", NULL };
	static const char *const explicit3[] = { "PHP_FCGI_CHILDREN=5", "WORKERS=3", NULL };

	(void)state;
	assert_int_equal(workers_for(false, 4, none), 4);
	assert_int_equal(workers_for(false, 1, none), 1);
	assert_int_equal(workers_for(false, 0, none), 1);
	assert_int_equal(workers_for(false, -1, none), 1);
	assert_int_equal(workers_for(false, 1000, none), 256);
	assert_int_equal(workers_for(false, 4, children5), 4); /* only read when spawned */
	assert_int_equal(workers_for(true, 8, none), 1);
	assert_int_equal(workers_for(true, 8, children5), 5);
	assert_int_equal(workers_for(true, 8, children_bad), 1);
	assert_int_equal(workers_for(true, 8, children0), 1);
	assert_int_equal(workers_for(true, 8, children_big), 1);
	assert_int_equal(workers_for(true, 8, explicit3), 3);
	assert_int_equal(workers_for(false, 8, explicit3), 3);
}

/* ---- env file and precedence ---- */

static void test_env_file_default_missing_is_fine(void **state)
{
	struct run r;

	(void)state;
	assert_int_equal(access("./.env", F_OK), -1);
	LOAD(&r, "ACCESS_LOG=0");
	expect_ok(&r);
	assert_null(r.cfg->env_file);
	done(&r);
}

static void test_env_file_default_is_read(void **state)
{
	struct run r;

	(void)state;
	write_file("./.env", "# local settings\nexport API_PORT=9100\nWORKERS='7'\n");
	LOAD(&r, "ACCESS_LOG=0");
	expect_ok(&r);
	assert_int_equal(r.cfg->api_port, 9100);
	assert_int_equal(r.cfg->workers, 7);
	assert_string_equal(r.cfg->env_file, "./.env");
	done(&r);
	unlink("./.env");
}

static void test_environment_wins_over_file(void **state)
{
	struct run r;

	(void)state;
	write_file("precedence.env", "API_PORT=9100\nWORKERS=7\nLOG_LEVEL=debug\n"
				     "DATABASE_URL=postgres://file@h/d?sslmode=require\n");
	LOAD(&r, "ENV_FILE=precedence.env", "API_PORT=9200", "LOG_LEVEL=error");
	expect_ok(&r);
	assert_int_equal(r.cfg->api_port, 9200);
	assert_int_equal(r.cfg->workers, 7);
	assert_int_equal(r.cfg->log_level, LOG_LEVEL_ERROR);
	assert_string_equal(r.cfg->database_url, DB_URL);
	assert_string_equal(r.cfg->env_file, "precedence.env");
	done(&r);
	/* DATABASE_URL only in the file is used */
	LOAD_NODB(&r, "ENV_FILE=precedence.env");
	expect_ok(&r);
	assert_string_equal(r.cfg->database_url, "postgres://file@h/d?sslmode=require");
	assert_true(r.cfg->db_sslmode_require);
	done(&r);
	/* set-but-empty in the environment still wins (python-decouple) */
	LOAD(&r, "ENV_FILE=precedence.env", "API_PORT=");
	expect_line(&r, "API_PORT=\"\": must be an integer between 1024 and 65535");
	done(&r);
	unlink("precedence.env");
}

static void test_env_file_bad_values_and_syntax(void **state)
{
	struct run r;

	(void)state;
	write_file("bad.env", "API_PORT=80\nnot a line\nPASSWORD='" SECRET "\n");
	LOAD(&r, "ENV_FILE=bad.env");
	expect_line(&r, "API_PORT=\"80\": must be an integer between 1024 and 65535");
	expect_line(&r, "ENV_FILE bad.env line 2: missing '=' (expected KEY=value)");
	expect_line(&r, "ENV_FILE bad.env line 3: unterminated single quote");
	expect_no_secret(&r, "s3cr3t");
	done(&r);
	unlink("bad.env");
}

static void test_env_file_explicit_missing_is_a_problem(void **state)
{
	struct run r;

	(void)state;
	LOAD(&r, "ENV_FILE=/nonexistent/neonfcgi.env");
	expect_line(&r, "ENV_FILE=\"/nonexistent/neonfcgi.env\": cannot open: No such file or "
			"directory");
	done(&r);
	LOAD(&r, "ENV_FILE=missing.env");
	expect_text(&r, "ENV_FILE=\"missing.env\"");
	done(&r);
}

static void test_env_file_only_from_environment(void **state)
{
	struct run r;

	(void)state;
	/* ENV_FILE and PHP_FCGI_CHILDREN inside the file are ignored */
	write_file("./.env", "ENV_FILE=/nonexistent/other.env\nPHP_FCGI_CHILDREN=9\n");
	load_list(&r, true, 4, true, NULL);
	expect_ok(&r);
	assert_string_equal(r.cfg->env_file, "./.env");
	assert_int_equal(r.cfg->workers, 1);
	done(&r);
	/* ENV_FILE= (empty) reads no file, not even ./.env */
	write_file("./.env", "API_PORT=9100\n");
	LOAD(&r, "ENV_FILE=");
	expect_ok(&r);
	assert_int_equal(r.cfg->api_port, 9009);
	assert_null(r.cfg->env_file);
	done(&r);
	unlink("./.env");
}

/* ---- DATABASE_URL ---- */

static void test_database_url_required(void **state)
{
	struct run r;

	(void)state;
	LOAD_NODB(&r, "API_PORT=9009");
	expect_line(&r, "DATABASE_URL: required (postgres:// or postgresql:// URI, or libpq "
			"key=value string)");
	assert_int_equal(r.p.n, 1);
	assert_null(r.cfg->database_url);
	done(&r);
	LOAD_NODB(&r, "DATABASE_URL=");
	expect_text(&r, "DATABASE_URL: required");
	done(&r);
}

/* The DATABASE_URL row goes through conninfo_check (its rules are in
 * test_conninfo.c): problems land in the list, sslmode=require is kept. */
static void test_database_url_checked(void **state)
{
	struct run r;

	(void)state;
	LOAD_NODB(&r, "DATABASE_URL=mysql://u:" SECRET "@h/d");
	expect_line(&r, "DATABASE_URL=\"mysql://u:****@h/d\": scheme \"mysql\" is not supported; "
			"use a postgres:// or postgresql:// URI, or libpq key=value string");
	assert_int_equal(r.p.n, 1);
	expect_no_secret(&r, "s3cr3t");
	done(&r);
	LOAD_NODB(&r,
		  "DATABASE_URL=postgres://app:" SECRET_ENC "@db.example.com/app?sslmode=require");
	expect_ok(&r);
	assert_true(r.cfg->db_sslmode_require);
	done(&r);
	LOAD(&r, "ACCESS_LOG=0");
	expect_ok(&r);
	assert_false(r.cfg->db_sslmode_require);
	done(&r);
}

/* ---- listen variables ---- */

static void test_api_host(void **state)
{
	static const struct {
		const char *vars[4];
		const char *problem;
	} cases[] = {
		{ { "API_HOST=127.0.0.1" }, NULL },
		{ { "API_HOST=127.1.2.3" }, NULL },
		{ { "API_HOST=::1" }, NULL },
		{ { "API_HOST=localhost" }, NULL },
		{ { "API_HOST=0.0.0.0", "FCGI_WEB_SERVER_ADDRS=10.0.0.1" }, NULL },
		{ { "API_HOST=::", "FCGI_WEB_SERVER_ADDRS=10.0.0.1,2001:db8::2" }, NULL },
		{ { "API_HOST=10.0.0.5", "API_SOCKET=/run/neonfcgi/fcgi.sock" }, NULL },
		{ { "API_HOST=0.0.0.0" },
		  "API_HOST=\"0.0.0.0\": a non-loopback address requires FCGI_WEB_SERVER_ADDRS "
		  "(comma-separated IPs of the web servers allowed to connect): FastCGI has no "
		  "authentication" },
		{ { "API_HOST=::" }, "requires FCGI_WEB_SERVER_ADDRS" },
		{ { "API_HOST=192.168.1.10" }, "FastCGI has no authentication" },
		{ { "API_HOST=[::1]" },
		  "API_HOST=\"[::1]\": must be an IP address (IPv6 without brackets) or a "
		  "resolvable "
		  "host name" },
		{ { "API_HOST=bad host" }, "API_HOST=\"bad host\": must be an IP address" },
		{ { "API_HOST=" }, "API_HOST=\"\": must be an IP address" },
		{ { "API_HOST=a..b" }, "API_HOST=\"a..b\"" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct run r;

		print_message("case %zu: %s\n", i, cases[i].vars[0]);
		load_list(&r, false, 4, true, cases[i].vars);
		if (cases[i].problem == NULL)
			expect_ok(&r);
		else if (strncmp(cases[i].problem, "API_HOST=", 9) == 0 &&
			 strstr(cases[i].problem, "authentication") != NULL)
			expect_line(&r, cases[i].problem);
		else
			expect_text(&r, cases[i].problem);
		done(&r);
	}
}

static void test_non_loopback_allowed_when_spawned(void **state)
{
	static const char *const vars[] = { "API_HOST=0.0.0.0", NULL };
	struct run r;

	(void)state;
	load_list(&r, true, 4, true, vars);
	expect_ok(&r);
	done(&r);
}

static void test_web_server_addrs(void **state)
{
	struct run r;

	(void)state;
	LOAD(&r, "FCGI_WEB_SERVER_ADDRS=10.0.0.1,10.0.0.2,::1");
	expect_ok(&r);
	assert_string_equal(r.cfg->fcgi_web_server_addrs, "10.0.0.1,10.0.0.2,::1");
	done(&r);
	LOAD(&r, "FCGI_WEB_SERVER_ADDRS=10.0.0.1, 10.0.0.2");
	expect_line(&r, "FCGI_WEB_SERVER_ADDRS=\"10.0.0.1, 10.0.0.2\": \" 10.0.0.2\" is not an IP "
			"address or CIDR block; must be comma-separated IPv4 or IPv6 addresses or "
			"CIDR blocks (10.0.0.0/8, fd00::/8) without spaces");
	done(&r);
	LOAD(&r, "FCGI_WEB_SERVER_ADDRS=10.0.0.1,,10.0.0.2");
	expect_text(&r, "\"\" is not an IP address");
	done(&r);
	LOAD(&r, "FCGI_WEB_SERVER_ADDRS=web1.internal");
	expect_text(&r, "\"web1.internal\" is not an IP address");
	done(&r);
	LOAD(&r, "FCGI_WEB_SERVER_ADDRS=10.0.0.1,");
	expect_text(&r, "FCGI_WEB_SERVER_ADDRS=\"10.0.0.1,\"");
	done(&r);
	/* CIDR blocks (peer's own tests have the whole table) */
	LOAD(&r, "FCGI_WEB_SERVER_ADDRS=10.0.0.0/8,fd00::/8,127.0.0.1");
	expect_ok(&r);
	done(&r);
	LOAD(&r, "FCGI_WEB_SERVER_ADDRS=127.0.0.1,10.0.0.1/8");
	expect_line(&r,
		    "FCGI_WEB_SERVER_ADDRS=\"127.0.0.1,10.0.0.1/8\": \"10.0.0.1/8\" has address "
		    "bits set past its prefix: write 10.0.0.0/8 for the block, or the address "
		    "alone for one host; must be comma-separated IPv4 or IPv6 addresses or CIDR "
		    "blocks (10.0.0.0/8, fd00::/8) without spaces");
	done(&r);
	LOAD(&r, "FCGI_WEB_SERVER_ADDRS=fd00::/129");
	expect_text(&r, "\"fd00::/129\" has a bad prefix length: must be /0 to /128 for an IPv6 "
			"block");
	done(&r);
	LOAD(&r, "API_HOST=0.0.0.0", "FCGI_WEB_SERVER_ADDRS=10.0.0.0/33");
	expect_text(&r, "\"10.0.0.0/33\" has a bad prefix length: must be /0 to /32 for an IPv4");
	done(&r);
}

/* ---- accounts: RUN_USER, RUN_GROUP, API_SOCKET_OWNER, API_SOCKET_GROUP ---- */

#define NO_UID ((uid_t)-1)
#define NO_GID ((gid_t)-1)

/* nobody, nogroup and daemon exist on every Debian system; the expected ids
 * come from the same databases. */
static void expect_ids(const struct run *r, uid_t run_uid, gid_t run_gid, uid_t sock_uid,
		       gid_t sock_gid)
{
	expect_ok(r);
	assert_int_equal(r->cfg->run_uid, run_uid);
	assert_int_equal(r->cfg->run_gid, run_gid);
	assert_int_equal(r->cfg->socket_uid, sock_uid);
	assert_int_equal(r->cfg->socket_gid, sock_gid);
}

static void test_accounts(void **state)
{
	struct passwd *nobody = getpwnam("nobody");
	struct group *daemon_gr = getgrnam("daemon");
	struct run r;

	(void)state;
	assert_non_null(nobody);
	assert_non_null(daemon_gr);
	uid_t nb_uid = nobody->pw_uid;
	gid_t nb_gid = nobody->pw_gid, dm_gid = daemon_gr->gr_gid;

	LOAD(&r, "API_PORT=9200");
	expect_ids(&r, NO_UID, NO_GID, NO_UID, NO_GID);
	done(&r);
	/* the socket follows RUN_USER unless told otherwise (PHP-FPM's listen.owner) */
	LOAD(&r, "RUN_USER=nobody");
	expect_ids(&r, nb_uid, nb_gid, nb_uid, nb_gid);
	done(&r);
	LOAD(&r, "RUN_USER=nobody", "RUN_GROUP=daemon");
	expect_ids(&r, nb_uid, dm_gid, nb_uid, dm_gid);
	done(&r);
	LOAD(&r, "RUN_USER=nobody", "API_SOCKET_GROUP=daemon");
	expect_ids(&r, nb_uid, nb_gid, nb_uid, dm_gid);
	done(&r);
	LOAD(&r, "API_SOCKET_GROUP=daemon");
	expect_ids(&r, NO_UID, NO_GID, NO_UID, dm_gid);
	done(&r);
	LOAD(&r, "API_SOCKET_OWNER=0", "API_SOCKET_GROUP=0");
	expect_ids(&r, NO_UID, NO_GID, 0, 0);
	done(&r);
	/* numbers are taken as they are; one without a user needs RUN_GROUP */
	LOAD(&r, "RUN_USER=4000000", "RUN_GROUP=4000001", "API_SOCKET_OWNER=4000002");
	expect_ids(&r, 4000000, 4000001, 4000002, 4000001);
	done(&r);
	LOAD(&r, "RUN_USER=4000000");
	expect_line(&r, "RUN_USER=\"4000000\": no user has this uid, so there is no primary group "
			"to switch to: set RUN_GROUP as well");
	done(&r);
	/* unknown names and numbers out of range: named with the value */
	LOAD(&r, "RUN_USER=no-such-user-nfc");
	expect_line(&r, "RUN_USER=\"no-such-user-nfc\": no such user (a name from the password "
			"database, or a number)");
	assert_int_equal(r.p.n, 1);
	done(&r);
	LOAD(&r, "RUN_USER=nobody", "RUN_GROUP=no-such-group-nfc");
	expect_line(&r, "RUN_GROUP=\"no-such-group-nfc\": no such group (a name from the group "
			"database, or a number)");
	assert_int_equal(r.p.n, 1);
	done(&r);
	LOAD(&r, "API_SOCKET_OWNER=no-such-user-nfc", "API_SOCKET_GROUP=no-such-group-nfc");
	expect_text(&r, "API_SOCKET_OWNER=\"no-such-user-nfc\": no such user");
	expect_text(&r, "API_SOCKET_GROUP=\"no-such-group-nfc\": no such group");
	assert_int_equal(r.p.n, 2);
	done(&r);
	LOAD(&r, "RUN_USER=4294967295");
	expect_line(&r, "RUN_USER=\"4294967295\": is out of range: a uid is 0 to 4294967294");
	done(&r);
	LOAD(&r, "RUN_USER=nobody", "API_SOCKET_GROUP=99999999999999999999");
	expect_text(&r,
		    "API_SOCKET_GROUP=\"99999999999999999999\": is out of range: a gid is 0 to");
	done(&r);
	LOAD(&r, "RUN_USER=nobody\n");
	expect_text(&r, "RUN_USER=\"nobody\\x0a\": no such user");
	done(&r);
	/* a group to switch to without a user to switch to */
	LOAD(&r, "RUN_GROUP=daemon");
	expect_line(&r, "RUN_GROUP=\"daemon\": needs RUN_USER, the user to switch to when started "
			"as root");
	done(&r);
	/* empty means unset, as for every optional string */
	LOAD(&r, "RUN_USER=", "RUN_GROUP=", "API_SOCKET_OWNER=", "API_SOCKET_GROUP=");
	expect_ids(&r, NO_UID, NO_GID, NO_UID, NO_GID);
	done(&r);
}

static void test_api_socket(void **state)
{
	char path107[128], path108[128], setting[160];
	struct run r;

	(void)state;
	memset(path107, 'a', sizeof path107);
	path107[0] = '/';
	path107[107] = '\0';
	memcpy(path108, path107, 108);
	path108[107] = 'b';
	path108[108] = '\0';
	snprintf(setting, sizeof setting, "API_SOCKET=%s", path107);
	LOAD(&r, setting);
	expect_ok(&r);
	assert_string_equal(r.cfg->api_socket, path107);
	done(&r);
	snprintf(setting, sizeof setting, "API_SOCKET=%s", path108);
	LOAD(&r, setting);
	expect_text(&r, "must be an absolute path shorter than 108 bytes");
	done(&r);
	LOAD(&r, "API_SOCKET=run/neonfcgi.sock");
	expect_line(&r, "API_SOCKET=\"run/neonfcgi.sock\": must be an absolute path shorter than "
			"108 bytes");
	done(&r);
}

/* ---- DB_CONNECTION_BUDGET ---- */

static void test_connection_budget(void **state)
{
	struct run r;

	(void)state;
	LOAD(&r, "WORKERS=4", "DB_POOL_SIZE=2", "DB_MAX_OVERFLOW=2", "DB_CONNECTION_BUDGET=16");
	expect_ok(&r);
	assert_int_equal(r.cfg->db_connection_budget, 16);
	done(&r);
	LOAD(&r, "WORKERS=4", "DB_POOL_SIZE=2", "DB_MAX_OVERFLOW=2", "DB_CONNECTION_BUDGET=15");
	expect_line(&r, "DB_CONNECTION_BUDGET=\"15\": WORKERS * (DB_POOL_SIZE + DB_MAX_OVERFLOW) = "
			"4 * (2 + 2) = 16 connections exceeds the budget of 15; lower WORKERS, "
			"DB_POOL_SIZE or DB_MAX_OVERFLOW, or raise the budget");
	assert_int_equal(r.p.n, 1);
	done(&r);
	/* defaults count too: 4 CPUs x (2 + 2) */
	LOAD(&r, "DB_CONNECTION_BUDGET=10");
	expect_text(&r, "= 16 connections exceeds the budget of 10");
	done(&r);
	/* an invalid input is reported once, not again as a budget problem */
	LOAD(&r, "WORKERS=0", "DB_CONNECTION_BUDGET=1");
	assert_int_equal(r.p.n, 1);
	expect_text(&r, "WORKERS=\"0\"");
	done(&r);
}

/* DATABASE_URL_FILE, the credential and PGPASSWORD (dbsource has the
 * details): the source is recorded, and a problem about a string read from
 * a file names the file and shows nothing of it. */
static void test_database_url_file(void **state)
{
	struct run r;

	(void)state;
	write_file("db.url", DB_URL "\r\n");
	LOAD_NODB(&r, "DATABASE_URL_FILE=db.url");
	expect_ok(&r);
	assert_string_equal(r.cfg->database_url, DB_URL);
	assert_string_equal(r.cfg->database_url_file, "db.url");
	assert_int_equal(r.cfg->db_source.origin, DBSOURCE_FILE);
	assert_string_equal(r.cfg->db_source.path, "db.url");
	done(&r);
	/* from the env file, too */
	write_file("f.env", "DATABASE_URL_FILE=db.url\n");
	LOAD_NODB(&r, "ENV_FILE=f.env");
	expect_ok(&r);
	assert_string_equal(r.cfg->database_url, DB_URL);
	done(&r);
	/* with DATABASE_URL (here from the env file): one problem, no value */
	write_file("f.env", "DATABASE_URL=" DB_URL "\n");
	LOAD_NODB(&r, "ENV_FILE=f.env", "DATABASE_URL_FILE=db.url");
	expect_line(&r, "DATABASE_URL and DATABASE_URL_FILE are both set (DATABASE_URL in ENV_FILE "
			"\"f.env\", DATABASE_URL_FILE in the environment): set only one");
	assert_int_equal(r.p.n, 1);
	assert_null(r.cfg->database_url);
	done(&r);
	write_file("db.url", "postgres://app:" SECRET_ENC "@db.example.com/app\n");
	LOAD_NODB(&r, "DATABASE_URL_FILE=db.url", "API_PORT=80");
	expect_text(&r, "DATABASE_URL from DATABASE_URL_FILE=\"db.url\": sslmode is not set");
	expect_text(&r, "API_PORT=\"80\"");
	assert_int_equal(r.p.n, 2);
	expect_no_secret(&r, "s3cr3t");
	expect_no_secret(&r, "db.example.com");
	done(&r);
	LOAD_NODB(&r, "DATABASE_URL_FILE=missing.url");
	expect_line(&r, "DATABASE_URL_FILE=\"missing.url\": the file cannot be opened: No such "
			"file or directory");
	done(&r);
	unlink("db.url");
	unlink("f.env");
}

static void test_database_url_credential(void **state)
{
	struct run r;

	(void)state;
	assert_int_equal(mkdir("creds", 0700), 0);
	write_file("creds/database-url", DB_URL "\n");
	LOAD_NODB(&r, "CREDENTIALS_DIRECTORY=creds");
	expect_ok(&r);
	assert_string_equal(r.cfg->database_url, DB_URL);
	assert_string_equal(r.cfg->credentials_directory, "creds");
	assert_int_equal(r.cfg->db_source.origin, DBSOURCE_CREDENTIAL);
	done(&r);
	/* CREDENTIALS_DIRECTORY is systemd's: never taken from the env file */
	write_file("f.env", "CREDENTIALS_DIRECTORY=creds\n");
	LOAD_NODB(&r, "ENV_FILE=f.env");
	expect_line(&r, "DATABASE_URL: required (postgres:// or postgresql:// URI, or libpq "
			"key=value string)");
	done(&r);
	unlink("f.env");
	unlink("creds/database-url");
	LOAD_NODB(&r, "CREDENTIALS_DIRECTORY=creds");
	expect_text(&r, "CREDENTIALS_DIRECTORY=\"creds\" holds no database-url");
	assert_int_equal(r.p.n, 1);
	done(&r);
	rmdir("creds");
}

static void test_pgpassword_in_connection_string(void **state)
{
	struct run r;
	char *out;

	(void)state;
	LOAD_NODB(&r, "DATABASE_URL=host=db dbname=app user=app sslmode=verify-full",
		  "PGPASSWORD=" SECRET);
	expect_ok(&r);
	assert_string_equal(r.cfg->database_url, "host=db dbname=app user=app sslmode=verify-full "
						 "password='" SECRET "'");
	assert_true(r.cfg->db_source.pgpassword);
	out = print_to_string(r.cfg);
	assert_non_null(strstr(out, "\n# DATABASE_URL from the environment; password from "
				    "PGPASSWORD\n"));
	assert_null(strstr(out, "s3cr3t"));
	free(out);
	done(&r);
	/* libpq reads PGPASSWORD from its environment only, and so do we */
	write_file("f.env", "PGPASSWORD=" SECRET "\n");
	LOAD(&r, "ENV_FILE=f.env");
	expect_ok(&r);
	assert_string_equal(r.cfg->database_url, DB_URL);
	assert_false(r.cfg->db_source.pgpassword);
	done(&r);
	unlink("f.env");
}

/* check-config: the DATABASE_URL= line as before, then where it came from. */
static void test_print_database_url_source(void **state)
{
	struct run r;
	char *out;

	(void)state;
	LOAD(&r, "API_PORT=9200");
	expect_ok(&r);
	out = print_to_string(r.cfg);
	assert_non_null(strstr(out, "\nDATABASE_URL=postgres://app:****@db.example.com/app?"
				    "sslmode=verify-full\n# DATABASE_URL from the environment\n"
				    "DATABASE_URL_FILE=\nCREDENTIALS_DIRECTORY=\n"));
	free(out);
	done(&r);
	write_file("db.url", DB_URL "\n");
	LOAD_NODB(&r, "DATABASE_URL_FILE=db.url");
	expect_ok(&r);
	out = print_to_string(r.cfg);
	assert_non_null(strstr(out, "\n# DATABASE_URL from the file DATABASE_URL_FILE=db.url\n"
				    "DATABASE_URL_FILE=db.url\n"));
	assert_null(strstr(out, "s3cr3t"));
	free(out);
	done(&r);
	unlink("db.url");
	write_file("./.env", "DATABASE_URL=" DB_URL "\n");
	LOAD_NODB(&r, "API_PORT=9200");
	expect_ok(&r);
	out = print_to_string(r.cfg);
	assert_non_null(strstr(out, "\n# DATABASE_URL from the env file ./.env\n"));
	free(out);
	done(&r);
	unlink("./.env");
}

/* ---- printing ---- */

static const char *const all_names[] = {
	"ENV_FILE",
	"DATABASE_URL",
	"API_HOST",
	"API_PORT",
	"API_SOCKET",
	"API_SOCKET_MODE",
	"API_SOCKET_OWNER",
	"API_SOCKET_GROUP",
	"RUN_USER",
	"RUN_GROUP",
	"FCGI_WEB_SERVER_ADDRS",
	"WORKERS",
	"WORKER_THREADS",
	"DB_POOL_SIZE",
	"DB_MAX_OVERFLOW",
	"DB_OVERFLOW_IDLE_MS",
	"DB_POOL_TIMEOUT_MS",
	"DB_POOL_PRE_PING",
	"DB_IDLE_TIMEOUT_S",
	"DB_MAX_LIFETIME_S",
	"DB_CONNECT_TIMEOUT_MS",
	"DB_RETRY_ATTEMPTS",
	"DB_RETRY_BACKOFF_MS",
	"DB_CONNECTION_BUDGET",
	"DB_FAILURE_HOLD_MS",
	"HEALTH_TIMEOUT_MS",
	"HEALTH_DETAILS",
	"LOG_LEVEL",
	"LOG_FORMAT",
	"MAX_REQUESTS",
	"SHUTDOWN_TIMEOUT_MS",
	"ACCESS_LOG",
	"SLOW_REQUEST_MS",
	"MIGRATE_ON_START",
	"DB_START_TIMEOUT_MS",
	"MIGRATIONS_DIR",
};

static void test_print_effective_redacted(void **state)
{
	static const char *const lines[] = {
		"DATABASE_URL=postgres://app:****@db.example.com/app?sslmode=verify-full\n",
		"API_HOST=127.0.0.1\n",
		"API_PORT=9200\n",
		"API_SOCKET=\n",
		"API_SOCKET_MODE=0660\n",
		"FCGI_WEB_SERVER_ADDRS=\n",
		"WORKERS=4\n",
		"DB_POOL_PRE_PING=true\n",
		"DB_CONNECTION_BUDGET=\n",
		"LOG_LEVEL=warn\n",
		"LOG_FORMAT=text\n",
		"HEALTH_DETAILS=full\n",
		"ACCESS_LOG=false\n",
		"MIGRATIONS_DIR=./migrations\n",
		"ENV_FILE=\n",
		"MAX_REQUESTS=0\n",
	};
	struct run r;
	char *out, key[64];

	(void)state;
	LOAD(&r, "API_PORT=9200", "LOG_LEVEL=WARN");
	expect_ok(&r);
	out = print_to_string(r.cfg);
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
		if (strstr(out, lines[i]) == NULL) {
			print_message("missing %s in:\n%s", lines[i], out);
			fail();
		}
	}
	for (size_t i = 0; i < sizeof all_names / sizeof all_names[0]; i++) {
		snprintf(key, sizeof key, "\n%s=", all_names[i]);
		assert_true(strstr(out, key) != NULL ||
			    strncmp(out, key + 1, strlen(key + 1)) == 0);
	}
	assert_null(strstr(out, "s3cr3t"));
	assert_null(strstr(out, "w0rd"));
	free(out);
	done(&r);
}

static void test_print_key_value_password_redacted(void **state)
{
	struct run r;
	char *out;

	(void)state;
	LOAD_NODB(&r,
		  "DATABASE_URL=host=db dbname=app user=app password='" SECRET
		  " with space' sslmode=verify-full",
		  "DB_CONNECTION_BUDGET=100", "API_SOCKET_MODE=600");
	expect_ok(&r);
	out = print_to_string(r.cfg);
	assert_non_null(strstr(out, "DATABASE_URL=host=db dbname=app user=app password=**** "
				    "sslmode=verify-full\n"));
	assert_non_null(strstr(out, "DB_CONNECTION_BUDGET=100\n"));
	assert_non_null(strstr(out, "API_SOCKET_MODE=0600\n"));
	assert_null(strstr(out, "s3cr3t"));
	assert_null(strstr(out, "with space"));
	free(out);
	done(&r);
}

static void test_print_help(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(f);
	config_print_help(f);
	fclose(f);
	for (size_t i = 0; i < sizeof all_names / sizeof all_names[0]; i++) {
		char key[64];

		snprintf(key, sizeof key, "  %s ", all_names[i]);
		assert_non_null(strstr(buf, key));
	}
	assert_non_null(strstr(buf, "9009"));
	assert_non_null(strstr(buf, "an integer between 1024 and 65535"));
	assert_non_null(strstr(buf, "one of debug, info, warn, error"));
	assert_non_null(strstr(buf, "required"));
	free(buf);
}

static void test_db_target(void **state)
{
	struct run r;
	char out[128];

	(void)state;
	LOAD(&r, "ACCESS_LOG=0");
	expect_ok(&r);
	config_db_target(r.cfg, out, sizeof out);
	assert_string_equal(out, "db.example.com:5432/app");
	done(&r);
}

/* Problems and config_print never show the password, whatever is wrong. */
static void test_password_never_in_problems(void **state)
{
	static const char *const urls[] = {
		"DATABASE_URL=mysql://app:" SECRET "@db/app",
		"DATABASE_URL=postgres://app:" SECRET_ENC "@db/app?sslmode=disable",
		"DATABASE_URL=postgres://app:" SECRET "@db/app?sslmode=require",
		"DATABASE_URL=postgres://:" SECRET_ENC "@db?sslmode=require",
		"DATABASE_URL=host=db password='" SECRET "' sslmode=bogus",
		"DATABASE_URL=host=db password='" SECRET,
		"DATABASE_URL=host=db password=" SECRET " junk",
		"DATABASE_URL=postgres://app@db/app?password=" SECRET_ENC "&bogus=1",
		"DATABASE_URL=postgres://app@db:x/app?password=" SECRET_ENC,
	};

	(void)state;
	for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
		const char *const list[] = { urls[i], NULL };
		struct run r;
		char *out;

		load_list(&r, false, 4, false, list);
		print_message("case %zu: %s\n", i, urls[i]);
		assert_int_equal(r.rc, -1);
		expect_text(&r, "DATABASE_URL");
		expect_no_secret(&r, "s3cr3t");
		expect_no_secret(&r, "w0rd");
		out = print_to_string(r.cfg);
		assert_null(strstr(out, "s3cr3t"));
		free(out);
		done(&r);
	}
}

/* A hostile value (quotes, newlines, very long) stays one quoted line. */
static void test_problem_value_escaped_and_bounded(void **state)
{
	char big[2048], setting[2100];
	struct run r;

	(void)state;
	LOAD(&r, "LOG_LEVEL=x\"y\nz");
	expect_line(&r, "LOG_LEVEL=\"x\\\"y\\x0az\": must be one of debug, info, warn, error");
	done(&r);
	memset(big, '9', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	snprintf(setting, sizeof setting, "API_PORT=%s", big);
	LOAD(&r, setting);
	assert_int_equal(r.p.n, 1);
	assert_true(strlen(r.p.lines[0]) < 300);
	assert_non_null(strstr(r.p.lines[0], "...\": must be an integer between 1024 and 65535"));
	done(&r);
}

/* config_destroy takes NULL and a config never loaded; a config loaded twice
 * keeps only the second load and leaks nothing (ASan and valgrind runs). */
static void test_destroy_and_reload(void **state)
{
	static const char *const first[] = { "API_SOCKET=/run/x.sock", "ENV_FILE=reload.env",
					     NULL };
	static const char *const second[] = { "API_PORT=9100", NULL };
	struct config_source src = { NULL, false, 4 };
	struct problems p = { NULL, 0 };
	struct run r;
	char *env[4];

	(void)state;
	config_destroy(NULL);
	config_destroy(config_new());
	write_file("reload.env", "WORKERS=3\n");
	load_list(&r, false, 4, true, first);
	expect_ok(&r);
	assert_string_equal(r.cfg->api_socket, "/run/x.sock");
	assert_string_equal(r.cfg->env_file, "reload.env");
	assert_int_equal(r.cfg->workers, 3);
	env[0] = (char *)"DATABASE_URL=" DB_URL;
	env[1] = (char *)second[0];
	env[2] = NULL;
	src.environ = env;
	assert_int_equal(config_load(r.cfg, &src, &p), 0);
	assert_null(r.cfg->api_socket);
	assert_null(r.cfg->env_file);
	assert_int_equal(r.cfg->workers, 4);
	assert_int_equal(r.cfg->api_port, 9100);
	problems_free(&p);
	done(&r);
	unlink("reload.env");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_int_defaults_and_bounds),
		cmocka_unit_test(test_issue_int_examples),
		cmocka_unit_test(test_two_bad_variables_both_named),
		cmocka_unit_test(test_every_problem_at_once),
		cmocka_unit_test(test_socket_mode_octal),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_unknown_boolean_word_names_variable),
		cmocka_unit_test(test_enums),
		cmocka_unit_test(test_string_defaults),
		cmocka_unit_test(test_workers_default),
		cmocka_unit_test(test_env_file_default_missing_is_fine),
		cmocka_unit_test(test_env_file_default_is_read),
		cmocka_unit_test(test_environment_wins_over_file),
		cmocka_unit_test(test_env_file_bad_values_and_syntax),
		cmocka_unit_test(test_env_file_explicit_missing_is_a_problem),
		cmocka_unit_test(test_env_file_only_from_environment),
		cmocka_unit_test(test_database_url_required),
		cmocka_unit_test(test_database_url_checked),
		cmocka_unit_test(test_database_url_file),
		cmocka_unit_test(test_database_url_credential),
		cmocka_unit_test(test_pgpassword_in_connection_string),
		cmocka_unit_test(test_print_database_url_source),
		cmocka_unit_test(test_api_host),
		cmocka_unit_test(test_non_loopback_allowed_when_spawned),
		cmocka_unit_test(test_web_server_addrs),
		cmocka_unit_test(test_accounts),
		cmocka_unit_test(test_api_socket),
		cmocka_unit_test(test_connection_budget),
		cmocka_unit_test(test_print_effective_redacted),
		cmocka_unit_test(test_print_key_value_password_redacted),
		cmocka_unit_test(test_print_help),
		cmocka_unit_test(test_db_target),
		cmocka_unit_test(test_password_never_in_problems),
		cmocka_unit_test(test_problem_value_escaped_and_bounded),
		cmocka_unit_test(test_destroy_and_reload),
	};

	return cmocka_run_group_tests(tests, cwd_fixture_setup, cwd_fixture_teardown);
}
