/* Unit tests of app/conninfo.c: the DATABASE_URL rules (one table), the
 * banner's target, quoting for problem lines, and that everything libpq
 * hands back (options, error text) is wiped before it is freed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conninfo.h"
#include "problems.h"

#define SECRET     "s3cr3t-P@ss:w0rd"
#define SECRET_ENC "s3cr3t-P%40ss%3Aw0rd"
#define DB_URL     "postgres://app:" SECRET_ENC "@db.example.com/app?sslmode=verify-full"

/* libpq hands its parse-error text to PQfreemem; this stand-in notes
 * whether the text still held the password when it was freed. */
static int pqfreemem_calls, pqfreemem_unwiped;

void PQfreemem(void *ptr)
{
	if (ptr != NULL) {
		pqfreemem_calls++;
		if (strstr(ptr, "hunter2") != NULL)
			pqfreemem_unwiped++;
	}
	free(ptr);
}

static bool has(const struct problems *p, const char *text, bool whole_line)
{
	for (size_t i = 0; i < p->n; i++)
		if (whole_line ? strcmp(p->lines[i], text) == 0 : strstr(p->lines[i], text) != NULL)
			return true;
	for (size_t i = 0; i < p->n; i++)
		print_message("  problem: %s\n", p->lines[i]);
	return false;
}

struct url_case {
	const char *url;
	const char *problem; /* exact line or substring; NULL: valid */
	bool require;        /* *sslmode_require expected */
};

static const struct url_case url_cases[] = {
	{ DB_URL, NULL, false },
	{ "postgresql://app:" SECRET_ENC "@db.example.com:5432/app?sslmode=verify-ca", NULL,
	  false },
	{ "postgres://app:" SECRET_ENC "@db.example.com/app?sslmode=require", NULL, true },
	{ "postgres://app:" SECRET_ENC "@ep-x-pooler.neon.tech/app?sslmode=verify-full"
	  "&channel_binding=require",
	  NULL, false },
	{ "host=db.example.com dbname=app user=app password='" SECRET "' sslmode=verify-full", NULL,
	  false },
	{ "hostaddr=10.0.0.5 dbname=app user=app sslmode=require", NULL, true },
	{ "postgres://app:" SECRET_ENC "@[2001:db8::1]:5432/app?sslmode=verify-full", NULL, false },
	{ "postgres://app@h1,h2:5433/app?sslmode=verify-full&target_session_attrs=read-write", NULL,
	  false },
	/* a unix-socket host is exempt from sslmode */
	{ "host=/var/run/postgresql dbname=app user=app", NULL, false },
	{ "postgresql://app@%2Fvar%2Frun%2Fpostgresql/app", NULL, false },
	{ "postgres:///app?host=/tmp&user=app&sslmode=disable", NULL, false },
	{ "host=/tmp dbname=app user=app sslmode=require", NULL, false },
	/* the examples */
	{ "mysql://u:p@h/d",
	  "DATABASE_URL=\"mysql://u:****@h/d\": scheme \"mysql\" is not supported; use a "
	  "postgres:// "
	  "or postgresql:// URI, or libpq key=value string",
	  false },
	{ "postgres://app:" SECRET_ENC "@db.example.com/app?sslmode=disable",
	  "DATABASE_URL=\"postgres://app:****@db.example.com/app?sslmode=disable\": "
	  "sslmode=disable "
	  "does not guarantee TLS over TCP; use sslmode=verify-full (require and verify-ca are "
	  "also "
	  "accepted)",
	  false },
	{ "postgres://app:" SECRET_ENC "@db.example.com/app",
	  "DATABASE_URL=\"postgres://app:****@db.example.com/app\": sslmode is not set, so TLS is "
	  "not "
	  "guaranteed over TCP; add sslmode=verify-full (require and verify-ca are also accepted)",
	  false },
	{ "host=db dbname=app user=app password=" SECRET " sslmode=prefer",
	  "sslmode=prefer does not", false },
	{ "host=db dbname=app user=app sslmode=allow", "sslmode=allow does not", false },
	{ "host=db dbname=app user=app sslmode=VERIFY-FULL",
	  "sslmode=\"VERIFY-FULL\" is not a libpq", false },
	{ "host=db,/tmp dbname=app user=app", "sslmode is not set", false },
	/* what must be named */
	{ "postgres://db.example.com?sslmode=verify-full",
	  "DATABASE_URL=\"postgres://db.example.com?sslmode=verify-full\": must name a host, a "
	  "database and a user; missing: dbname, user",
	  false },
	{ "dbname=app sslmode=require", "missing: host, user", false },
	{ "postgres://:" SECRET_ENC "@/?sslmode=require", "missing: host, dbname, user", false },
	{ "user=app sslmode=require",
	  "DATABASE_URL=\"user=app sslmode=require\": must name a host, a database and a user; "
	  "missing: host, dbname",
	  false },
	{ "postgres://app:" SECRET_ENC "@db:99999/app?sslmode=require",
	  "port must be an integer between 1 and 65535", false },
	/* unparsable: a generic message, never libpq's (it may quote the password) */
	{ "host=db password=" SECRET " dbname",
	  "DATABASE_URL=\"host=db password=**** ****\": cannot be parsed as a URI or key=value "
	  "string "
	  "(postgres:// or postgresql:// URI, or libpq key=value string)",
	  false },
	{ "postgres://app:" SECRET_ENC "@db/app?passwd=" SECRET_ENC, "cannot be parsed", false },
	{ "POSTGRES://app:" SECRET "@db/app", "scheme \"POSTGRES\" is not supported", false },
	{ "localhost:5432", "cannot be parsed", false },
};

/* Each case once: an exact line when it starts with DATABASE_URL=, else a
 * substring; every line names DATABASE_URL and none shows the password. */
static void test_check_rules(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof url_cases / sizeof url_cases[0]; i++) {
		const struct url_case *c = &url_cases[i];
		struct problems p = { NULL, 0 };
		bool require = !c->require; /* must be set either way */
		int rc = conninfo_check(c->url, &p, &require);

		print_message("case %zu: %s\n", i, c->url);
		if (c->problem == NULL) {
			if (rc != 0 || p.n != 0)
				fail_msg("expected valid, rc=%d first=%s", rc,
					 p.n ? p.lines[0] : "");
			assert_int_equal(require, c->require);
		} else {
			assert_int_equal(rc, -1);
			assert_true(
			    has(&p, c->problem, strncmp(c->problem, "DATABASE_URL=", 13) == 0));
		}
		for (size_t j = 0; j < p.n; j++) {
			assert_non_null(strstr(p.lines[j], "DATABASE_URL"));
			assert_null(strstr(p.lines[j], "s3cr3t"));
			assert_null(strstr(p.lines[j], "w0rd"));
		}
		problems_free(&p);
	}
}

static void test_target(void **state)
{
	static const struct {
		const char *url;
		const char *target;
	} cases[] = {
		{ DB_URL, "db.example.com:5432/app" },
		{ "postgres://u:" SECRET_ENC "@db:6543/appdb?sslmode=require", "db:6543/appdb" },
		{ "host=db.example.com port=5433 dbname=x user=u password=" SECRET,
		  "db.example.com:5433/x" },
		{ "postgres://u@[::1]/app", "[::1]:5432/app" },
		{ "host=/var/run/postgresql dbname=app user=app", "/var/run/postgresql:5432/app" },
		{ "hostaddr=10.0.0.5 dbname=app user=app", "10.0.0.5:5432/app" },
		{ "not a conninfo " SECRET, "(invalid)" },
	};
	char out[128];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		conninfo_target(cases[i].url, out, sizeof out);
		assert_string_equal(out, cases[i].target);
		assert_null(strstr(out, "s3cr3t"));
	}
	conninfo_target(NULL, out, sizeof out);
	assert_string_equal(out, "(invalid)");
	conninfo_target(DB_URL, out, 8);
	assert_string_equal(out, "db.exam");
	out[0] = 'Z';
	conninfo_target(DB_URL, out, 0);
	assert_int_equal(out[0], 'Z');
}

/* Port lists as libpq takes them: each entry empty or 1..65535, digits only
 * (leading zeros allowed, as strtol reads them). */
static void test_check_ports(void **state)
{
	static const struct {
		const char *port;
		bool ok;
	} cases[] = {
		{ "5432", true },
		{ "1", true },
		{ "65535", true },
		{ "000007", true },
		{ "5432,", true },
		{ ",5433", true },
		{ "1,2,3", true },
		{ "0", false },
		{ "65536", false },
		{ "-1", false },
		{ "+5", false },
		{ " 5", false },
		{ "5x", false },
		{ "1,0", false },
		{ "000000000000001", true },
		{ "0000000000000001", false }, /* 16 digits: refused unread */
	};
	char url[128];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct problems p = { NULL, 0 };
		bool require;

		snprintf(url, sizeof url, "host=db dbname=d user=u sslmode=require port='%s'",
			 cases[i].port);
		print_message("port [%s]\n", cases[i].port);
		assert_int_equal(conninfo_check(url, &p, &require), cases[i].ok ? 0 : -1);
		if (!cases[i].ok)
			assert_true(has(&p, "port must be an integer between 1 and 65535", false));
		problems_free(&p);
	}
}

/* Regression: pgconn freed libpq's parse-error text unwiped, and libpq
 * quotes the offending token, here the password itself. */
static void test_parse_error_text_is_wiped(void **state)
{
	/* libpq's texts: invalid percent-encoded token: "hunter2%zz", and
	 * invalid URI query parameter: "hunter2". */
	static const char *const bad[] = {
		"postgresql://u@h/db?password=hunter2%zz",
		"postgresql://u@h/db?hunter2=x",
	};

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		pqfreemem_calls = pqfreemem_unwiped = 0;
		assert_null(conninfo_parse(bad[i]));
		assert_int_equal(pqfreemem_calls, 1);
		assert_int_equal(pqfreemem_unwiped, 0);
	}
}

static void test_parse_and_free(void **state)
{
	PQconninfoOption *opts;
	const char *pw = NULL;

	(void)state;
	opts = conninfo_parse("host=h dbname=d user=u password=hunter2");
	assert_non_null(opts);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0)
			pw = o->val;
	assert_string_equal(pw, "hunter2");
	conninfo_free(opts);
	conninfo_free(NULL);
}

/* What a problem line shows: the password hidden, control bytes escaped,
 * the length bounded. */
static void test_quote(void **state)
{
	char buf[PROBLEMS_QUOTE_BUF], big[2048];

	(void)state;
	conninfo_quote(DB_URL, buf, sizeof buf);
	assert_string_equal(buf, "postgres://app:****@db.example.com/app?sslmode=verify-full");
	conninfo_quote("host=\"db\"\n password=" SECRET, buf, sizeof buf);
	assert_string_equal(buf, "host=\\\"db\\\"\\x0a password=****");
	snprintf(big, sizeof big, "host=db password=%s dbname=%01500d", SECRET, 7);
	conninfo_quote(big, buf, sizeof buf);
	assert_int_equal(strlen(buf), PROBLEMS_QUOTE_MAX + 3);
	assert_null(strstr(buf, "s3cr3t"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_rules),
		cmocka_unit_test(test_check_ports),
		cmocka_unit_test(test_target),
		cmocka_unit_test(test_parse_error_text_is_wiped),
		cmocka_unit_test(test_parse_and_free),
		cmocka_unit_test(test_quote),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
