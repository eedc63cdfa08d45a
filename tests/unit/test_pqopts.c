/* Unit tests of app/pqopts.c: the version table against the linked libpq
 * (PQconndefaults), every enumerated option against what the linked libpq
 * accepts when connecting, and that only a keyword-shaped name is taken
 * from libpq's parse errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pqopts.h"

/* The list, each with the release that introduced it. */
static const struct {
	const char *keyword;
	int since;
} since_cases[] = {
	{ "sslsni", 14 },
	{ "sslcrldir", 14 },
	{ "require_auth", 16 },
	{ "sslcertmode", 16 },
	{ "load_balance_hosts", 16 },
	{ "gssdelegation", 16 },
	{ "sslnegotiation", 17 },
	{ "sslkeylogfile", 18 },
	{ "min_protocol_version", 18 },
	{ "max_protocol_version", 18 },
	{ "scram_client_key", 18 },
	{ "scram_server_key", 18 },
	{ "oauth_issuer", 18 },
	{ "oauth_client_id", 18 },
	{ "oauth_client_secret", 18 },
	{ "oauth_scope", 18 },
	/* older than 14, or no option at all */
	{ "host", 0 },
	{ "channel_binding", 0 },
	{ "sslmode", 0 },
	{ "bogus", 0 },
	{ "", 0 },
};

static bool linked_knows(const char *keyword)
{
	PQconninfoOption *opts = PQconndefaults();
	bool known = false;

	assert_non_null(opts);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		known = known || strcmp(o->keyword, keyword) == 0;
	PQconninfoFree(opts);
	return known;
}

/* An option the table dates at or before the linked libpq is one it knows;
 * one dated later is one it does not. */
static void test_since_matches_linked_libpq(void **state)
{
	int major = PQlibVersion() / 10000;

	(void)state;
	for (size_t i = 0; i < sizeof since_cases / sizeof since_cases[0]; i++) {
		const char *k = since_cases[i].keyword;
		int since = pqopts_since(k);

		print_message("%s: since %d, libpq %d\n", k, since, major);
		assert_int_equal(since, since_cases[i].since);
		if (since > 0)
			assert_int_equal(linked_knows(k), since <= major);
	}
}

struct value_case {
	const char *keyword, *value;
	bool ok;
};

static const struct value_case value_cases[] = {
	{ "channel_binding", "disable", true },
	{ "channel_binding", "prefer", true },
	{ "channel_binding", "require", true },
	{ "channel_binding", "bogus", false },
	{ "channel_binding", "Require", false },
	{ "channel_binding", "", true },
	{ "gssencmode", "disable", true },
	{ "gssencmode", "prefer", true },
	{ "gssencmode", "require", true },
	{ "gssencmode", "allow", false },
	{ "target_session_attrs", "any", true },
	{ "target_session_attrs", "read-write", true },
	{ "target_session_attrs", "read-only", true },
	{ "target_session_attrs", "primary", true },
	{ "target_session_attrs", "standby", true },
	{ "target_session_attrs", "prefer-standby", true },
	{ "target_session_attrs", "Read-Write", false },
	{ "target_session_attrs", "master", false },
	{ "ssl_min_protocol_version", "TLSv1", true },
	{ "ssl_min_protocol_version", "TLSv1.1", true },
	{ "ssl_min_protocol_version", "TLSv1.2", true },
	{ "ssl_min_protocol_version", "tlsv1.3", true },
	{ "ssl_min_protocol_version", "TLSv1.4", false },
	{ "ssl_max_protocol_version", "TLSv1.3", true },
	{ "ssl_max_protocol_version", "SSLv3", false },
	{ "sslcertmode", "disable", true },
	{ "sslcertmode", "allow", true },
	{ "sslcertmode", "require", true },
	{ "sslcertmode", "prefer", false },
	{ "load_balance_hosts", "disable", true },
	{ "load_balance_hosts", "random", true },
	{ "load_balance_hosts", "round-robin", false },
	{ "sslnegotiation", "postgres", true },
	{ "sslnegotiation", "direct", true },
	{ "sslnegotiation", "requiredirect", false },
	{ "min_protocol_version", "3.0", true },
	{ "min_protocol_version", "3.2", true },
	{ "min_protocol_version", "latest", true },
	{ "min_protocol_version", "3.1", false },
	{ "max_protocol_version", "4.0", false },
	/* not enumerated: anything goes */
	{ "application_name", "anything at all", true },
	{ "host", "", true },
};

/* What the linked libpq says of keyword=value when connecting (options are
 * checked before any network I/O; the port is closed anyway). */
static bool linked_accepts(const char *keyword, const char *value)
{
	const char *const kw[] = { "hostaddr", "port", "dbname", "user", "sslmode", keyword, NULL };
	const char *const val[] = { "127.0.0.1", "1", "d", "u", "disable", value, NULL };
	char invalid[128];
	PGconn *c = PQconnectStartParams(kw, val, 0);
	bool accepted;

	assert_non_null(c);
	snprintf(invalid, sizeof invalid, "invalid %s value", keyword);
	accepted = PQstatus(c) != CONNECTION_BAD || strstr(PQerrorMessage(c), invalid) == NULL;
	PQfinish(c);
	return accepted;
}

static void test_values(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof value_cases / sizeof value_cases[0]; i++) {
		const struct value_case *c = &value_cases[i];
		const char *valid = "unset";
		bool ok = pqopts_value_ok(c->keyword, c->value, &valid);

		print_message("%s=%s\n", c->keyword, c->value);
		assert_int_equal(ok, c->ok);
		if (strcmp(c->keyword, "application_name") == 0 || strcmp(c->keyword, "host") == 0)
			assert_null(valid);
		else
			assert_non_null(valid);
		if (linked_knows(c->keyword))
			assert_int_equal(linked_accepts(c->keyword, c->value), c->ok);
	}
}

static void test_valid_lists(void **state)
{
	const char *valid;

	(void)state;
	assert_false(pqopts_value_ok("channel_binding", "x", &valid));
	assert_string_equal(valid, "disable, prefer or require");
	assert_false(pqopts_value_ok("sslnegotiation", "x", &valid));
	assert_string_equal(valid, "postgres or direct");
	assert_false(pqopts_value_ok("target_session_attrs", "x", &valid));
	assert_string_equal(valid,
			    "any, read-write, read-only, primary, standby or prefer-standby");
}

/* Only a keyword-shaped name between the quotes of the two refusals. */
static void test_refused_name(void **state)
{
	static const struct {
		const char *msg, *name; /* NULL: nothing taken */
	} cases[] = {
		{ "invalid connection option \"sslnegotiation\"\n", "sslnegotiation" },
		{ "invalid URI query parameter: \"sslnegotiation\"\n", "sslnegotiation" },
		{ "invalid connection option \"x_1\"\n", "x_1" },
		/* not keyword-shaped: may be a password */
		{ "invalid URI query parameter: \"hunter2%zz\"\n", NULL },
		{ "invalid connection option \"Hunter2\"\n", NULL },
		{ "invalid connection option \"1abc\"\n", NULL },
		{ "invalid connection option \"\"\n", NULL },
		{ "invalid connection option \"unterminated\n", NULL },
		{ "invalid connection option "
		  "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaa\"\n",
		  NULL },
		/* other parse errors */
		{ "missing \"=\" after \"hunter2\" in connection info string\n", NULL },
		{ "invalid percent-encoded token: \"hunter2%zz\"\n", NULL },
		{ "", NULL },
	};
	char name[64];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		strcpy(name, "untouched");
		print_message("%s", cases[i].msg);
		if (cases[i].name == NULL) {
			assert_false(pqopts_refused_name(cases[i].msg, name, sizeof name));
		} else {
			assert_true(pqopts_refused_name(cases[i].msg, name, sizeof name));
			assert_string_equal(name, cases[i].name);
		}
	}
	/* a buffer too small takes nothing */
	assert_false(pqopts_refused_name("invalid connection option \"sslnegotiation\"", name, 5));
}

/* What libpq 15 itself says, through the parser. */
static void test_refused_name_from_libpq(void **state)
{
	static const char *const urls[] = {
		"host=h sslnegotiation=direct",
		"postgresql://h/d?sslnegotiation=direct",
	};
	char name[64];

	(void)state;
	if (PQlibVersion() >= 170000)
		skip();
	for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
		char *err = NULL;

		assert_null(PQconninfoParse(urls[i], &err));
		assert_non_null(err);
		assert_true(pqopts_refused_name(err, name, sizeof name));
		assert_string_equal(name, "sslnegotiation");
		PQfreemem(err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_since_matches_linked_libpq),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_valid_lists),
		cmocka_unit_test(test_refused_name),
		cmocka_unit_test(test_refused_name_from_libpq),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
