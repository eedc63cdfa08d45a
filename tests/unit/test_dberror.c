/* Unit tests of app/dberror.c: every row of the classification tables
 * (PostgreSQL's texts, libpq's, and Neon's proxy's XX000 ones), names,
 * retryability, the hold and Retry-After. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "dberror.h"

struct case_ {
	const char *msg;
	enum db_category cat;
	bool transient;
	const char *sqlstate;
};

/* Real libpq 15 texts (verbose and default), with names that must not leak:
 * every name below contains "secret". */
static const struct case_ pg_cases[] = {
	{ "connection to server at \"secret-host\" (10.0.0.5), port 5432 failed: FATAL:  28P01: "
	  "password authentication failed for user \"secret_user\"\nLOCATION:  auth_failed, "
	  "auth.c:334\n",
	  DB_AUTH, false, "28P01" },
	{ "connection to server at \"secret-host\" (10.0.0.5), port 5432 failed: FATAL:  password "
	  "authentication failed for user \"secret_user\"\n",
	  DB_AUTH, false, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  28000: no "
	  "pg_hba.conf "
	  "entry for host \"10.0.0.9\", user \"secret_user\", database \"secret_db\", SSL off\n",
	  DB_AUTH, false, "28000" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  no pg_hba.conf entry "
	  "for host \"10.0.0.9\", user \"secret_user\", database \"secret_db\", no encryption\n",
	  DB_AUTH, false, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  role \"secret_user\" "
	  "does not exist\n",
	  DB_AUTH, false, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: fe_sendauth: no password "
	  "supplied\n",
	  DB_AUTH, false, "" },
	{ "channel binding required, but server authenticated client without channel binding\n",
	  DB_AUTH, false, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: error received from server "
	  "in "
	  "SCRAM exchange: Invalid nonce\n",
	  DB_AUTH, false, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  3D000: database "
	  "\"secret_db\" does not exist\nLOCATION:  InitPostgres, postinit.c:948\n",
	  DB_REJECTED, false, "3D000" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  database "
	  "\"secret_db\" "
	  "does not exist\n",
	  DB_REJECTED, false, "" },
	{ "connection to server at \"secret-host\" (10.0.0.5), port 5432 failed: server does not "
	  "support SSL, but SSL was required\n",
	  DB_TLS, false, "" },
	{ "connection to server at \"secret-host\" (127.0.0.1), port 5432 failed: SSL error: "
	  "certificate verify failed\n",
	  DB_TLS, false, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: root certificate file "
	  "\"/home/secret/.postgresql/root.crt\" does not exist\nEither provide the file or change "
	  "sslmode to disable server certificate verification.\n",
	  DB_TLS, false, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: server certificate for "
	  "\"secret-host\" does not match host name \"secret-other\"\n",
	  DB_TLS, false, "" },
	{ "connection to server at \"secret-host\" (10.0.0.5), port 5432 failed: SSL SYSCALL "
	  "error: "
	  "EOF detected\n",
	  DB_UNREACHABLE, true, "" },
	/* OpenSSL 3 wording when the server goes away mid-handshake. */
	{ "connection to server at \"secret-host\" (10.0.0.5), port 5432 failed: SSL error: "
	  "unexpected eof while reading\n",
	  DB_UNREACHABLE, true, "" },
	{ "server closed the connection unexpectedly\n\tThis probably means the server terminated "
	  "abnormally\n\tbefore or while processing the request.\n",
	  DB_UNREACHABLE, true, "" },
	{ "connection to server at \"secret-host\" (127.0.0.1), port 5432 failed: Connection "
	  "refused\n\tIs the server running on that host and accepting TCP/IP connections?\n",
	  DB_UNREACHABLE, true, "" },
	/* A host name that says "ssl" is not a TLS problem. */
	{ "connection to server at \"ssl.secret-host\" (10.0.0.5), port 5432 failed: Connection "
	  "refused\n",
	  DB_UNREACHABLE, true, "" },
	{ "connection to server at \"secret-host\" (10.0.0.5), port 5432 failed: No route to "
	  "host\n",
	  DB_UNREACHABLE, true, "" },
	{ "connection to server at \"secret-host\" (10.0.0.5), port 5432 failed: Network is "
	  "unreachable\n",
	  DB_UNREACHABLE, true, "" },
	{ "could not translate host name \"secret-host\" to address: Name or service not known\n",
	  DB_UNREACHABLE, true, "" },
	{ "could not translate host name \"secret-host\" to address: Temporary failure in name "
	  "resolution\n",
	  DB_UNREACHABLE, true, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  53300: sorry, too "
	  "many "
	  "clients already\n",
	  DB_REJECTED, true, "53300" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  sorry, too many "
	  "clients "
	  "already\n",
	  DB_REJECTED, true, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  remaining connection "
	  "slots are reserved for non-replication superuser connections\n",
	  DB_REJECTED, true, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  57P03: the database "
	  "system is starting up\n",
	  DB_REJECTED, true, "57P03" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  the database system "
	  "is "
	  "shutting down\n",
	  DB_REJECTED, true, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  the database system "
	  "is "
	  "in recovery mode\n",
	  DB_REJECTED, true, "" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  57P01: terminating "
	  "connection due to administrator command\n",
	  DB_REJECTED, true, "57P01" },
	{ "connection to server at \"secret-host\", port 5432 failed: FATAL:  08P01: invalid "
	  "startup "
	  "packet layout: expected terminator as last byte\n",
	  DB_UNREACHABLE, true, "08P01" },
	{ "connection to server at \"secret-host\", port 5432 failed: timeout expired\n",
	  DB_TIMEOUT, true, "" },
	/* Neon's proxy. */
	{ "connection to server at \"secret-host\" (10.0.0.5), port 5432 failed: ERROR:  Couldn't "
	  "connect to compute node\n",
	  DB_UNREACHABLE, true, "" },
	{ "something nobody anticipated\n", DB_UNREACHABLE, true, "" },
	{ "", DB_UNREACHABLE, true, "" },
};

/* Neon's proxy: every error of its own is XX000 with the meaning in the
 * text (proxy/src/stream.rs); the texts below are Neon's, from
 * proxy/src/auth/mod.rs, proxy/src/control_plane/{messages,errors}.rs and
 * proxy/src/compute/mod.rs. Each row of DESIGN.md §5's table appears. */
#define NEON_PREFIX                                                                                \
	"connection to server at \"ep-secret-123.example\" (10.0.0.5), port 5432 failed: "
static const struct case_ xx000_cases[] = {
	/* PostgreSQL's transient states relayed by the proxy: retried. */
	{ NEON_PREFIX "FATAL:  XX000:  sorry, too many clients already\n", DB_REJECTED, true,
	  "XX000" },
	{ NEON_PREFIX "FATAL:  XX000:  the database system is starting up\n", DB_UNREACHABLE, true,
	  "XX000" },
	{ NEON_PREFIX "FATAL:  XX000:  the database system is shutting down\n", DB_UNREACHABLE,
	  true, "XX000" },
	{ NEON_PREFIX "FATAL:  XX000:  terminating connection due to administrator command\n",
	  DB_UNREACHABLE, true, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  Couldn't connect to compute node\n", DB_UNREACHABLE, true,
	  "XX000" },
	/* Endpoint: not retried. */
	{ NEON_PREFIX "ERROR:  XX000:  Control plane request failed: endpoint cannot be found\n",
	  DB_ENDPOINT, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  Control plane request failed: endpoint is disabled\n",
	  DB_ENDPOINT, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  Endpoint ID is not specified. Either please upgrade the "
		      "postgres client library (libpq) for SNI support or pass the endpoint ID "
		      "(first part of the domain name) as a parameter: "
		      "'?options=endpoint%3D<endpoint-id>'. See more at https://neon.tech/sni\n",
	  DB_ENDPOINT, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  endpoint not found\n", DB_ENDPOINT, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  The requested endpoint could not be found, or you don't "
		      "have access to it. Please check the provided ID and try again.\n",
	  DB_ENDPOINT, false, "XX000" },
	/* Quota: not retried. */
	{ NEON_PREFIX "ERROR:  XX000:  Control plane request failed: endpoint is temporarily "
		      "unavailable. Check your quotas and/or contact our support.\n",
	  DB_QUOTA, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  Your project has exceeded the compute time quota. Upgrade "
		      "your plan to increase limits.\n",
	  DB_QUOTA, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  active endpoints limit exceeded\n", DB_QUOTA, false,
	  "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  You have exceeded the limit of concurrently active "
		      "endpoints. Please suspend some endpoints and try again.\n",
	  DB_QUOTA, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  You've exceeded the compute time for this branch. Upgrade "
		      "your plan to increase limits or connect to another branch.\n",
	  DB_QUOTA, false, "XX000" },
	/* Rate limits: not retried (the pool waits instead). */
	{ NEON_PREFIX "ERROR:  XX000:  Too many connections attempts\n", DB_RATE_LIMITED, false,
	  "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  Failed to acquire permit to connect to the database. Too "
		      "many database connection attempts are currently ongoing.\n",
	  DB_RATE_LIMITED, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  Too many connections to this endpoint. Please try again "
		      "later.\n",
	  DB_RATE_LIMITED, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  rate limit exceeded\n", DB_RATE_LIMITED, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  You've exceeded the rate limit. Please wait a moment and "
		      "try again.\n",
	  DB_RATE_LIMITED, false, "XX000" },
	/* Authentication: not retried. */
	{ NEON_PREFIX "ERROR:  XX000:  password authentication failed for user 'secret_user'\n",
	  DB_AUTH, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  authentication failed\n", DB_AUTH, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  authentication protocol violation\n", DB_AUTH, false,
	  "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  SCRAM-PLUS not used\n", DB_AUTH, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  insecure connection: secure channel data mismatch\n",
	  DB_AUTH, false, "XX000" },
	/* The control plane's bare text is a transport failure: retried. */
	{ NEON_PREFIX "ERROR:  XX000:  Control plane request failed\n", DB_UNREACHABLE, true,
	  "XX000" },
	/* Anything else: rejected, not retried. */
	{ NEON_PREFIX "ERROR:  XX000:  Control plane request failed: something new\n", DB_REJECTED,
	  false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  internal error\n", DB_REJECTED, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  This IP address 127.0.0.1 is not allowed to connect to this "
		      "endpoint. Please add it to the allowed list in the Neon console.\n",
	  DB_REJECTED, false, "XX000" },
	{ NEON_PREFIX "ERROR:  XX000:  connection is insecure (try using `sslmode=require`)\n",
	  DB_REJECTED, false, "XX000" },
	/* Without verbose errors (no SQLSTATE), Neon's own wording still decides. */
	{ NEON_PREFIX "ERROR:  Endpoint ID is not specified. Either please upgrade the postgres "
		      "client library\n",
	  DB_ENDPOINT, false, "" },
	{ NEON_PREFIX "ERROR:  Too many connections attempts\n", DB_RATE_LIMITED, false, "" },
	/* libpq itself refusing a cleartext password under channel_binding=require
	 * (Neon's proxy asks for one when it gets no endpoint ID). */
	{ NEON_PREFIX "channel binding required, but server authenticated client without channel "
		      "binding\n",
	  DB_AUTH, false, "" },
};

static void check_cases(const struct case_ *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct db_error err;

		memset(&err, 0x55, sizeof err);
		dberror_classify_connect(cases[i].msg, &err);
		if (err.category != cases[i].cat || err.transient != cases[i].transient ||
		    strcmp(err.sqlstate, cases[i].sqlstate) != 0)
			fail_msg("case %zu: got %s/%d/%s for: %s", i,
				 db_category_name(err.category), err.transient, err.sqlstate,
				 cases[i].msg);
		assert_true(err.message[0] != '\0');
		assert_null(strstr(err.message, "secret"));
		assert_null(strstr(err.message, "10.0.0"));
	}
}

static void classifies_postgres_and_libpq_failures(void **state)
{
	(void)state;
	check_cases(pg_cases, sizeof pg_cases / sizeof *pg_cases);
}

static void classifies_neon_proxy_xx000_by_text(void **state)
{
	(void)state;
	check_cases(xx000_cases, sizeof xx000_cases / sizeof *xx000_cases);
}

static void classify_handles_null(void **state)
{
	(void)state;
	struct db_error err;

	dberror_classify_connect(NULL, &err);
	assert_int_equal(err.category, DB_UNREACHABLE);
	assert_true(err.transient);
}

static void sqlstate_transience(void **state)
{
	(void)state;
	static const char *const transient[] = { "57P01", "57P02", "57P03", "53300",
						 "53200", "08006", "08P01" };
	static const char *const permanent[] = { "28P01", "28000", "3D000",
						 "42P01", "23505", "XX000" };

	for (size_t i = 0; i < sizeof transient / sizeof *transient; i++)
		assert_true(dberror_sqlstate_transient(transient[i]));
	for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++)
		assert_false(dberror_sqlstate_transient(permanent[i]));
	assert_false(dberror_sqlstate_transient(NULL));
	assert_false(dberror_sqlstate_transient(""));
	assert_false(dberror_sqlstate_transient("08"));
}

static void category_names(void **state)
{
	(void)state;
	static const char *const want[DB_CATEGORY_COUNT] = {
		"ok",           "timeout",      "unreachable",  "tls",      "auth",  "rejected",
		"query_failed", "pool_timeout", "circuit_open", "endpoint", "quota", "rate_limited",
	};

	for (int c = 0; c < DB_CATEGORY_COUNT; c++)
		assert_string_equal(db_category_name((enum db_category)c), want[c]);
	assert_string_equal(db_category_name(DB_CATEGORY_COUNT), "unknown");
}

static void which_errors_discard_the_connection(void **state)
{
	(void)state;
	struct db_error err = { .category = DB_QUERY_FAILED };

	assert_false(dberror_discards(&err));
	err.category = DB_OK;
	assert_false(dberror_discards(&err));
	err.category = DB_TIMEOUT;
	assert_true(dberror_discards(&err));
	err.category = DB_UNREACHABLE;
	assert_true(dberror_discards(&err));
}

/* DESIGN.md §5: auth, tls, endpoint and quota are held; nothing else. */
static void which_failures_are_held(void **state)
{
	(void)state;
	static const enum db_category held[] = { DB_AUTH, DB_TLS, DB_ENDPOINT, DB_QUOTA };
	int n = 0;

	for (size_t i = 0; i < sizeof held / sizeof *held; i++)
		assert_true(dberror_is_held(held[i]));
	for (int c = 0; c < DB_CATEGORY_COUNT; c++)
		n += dberror_is_held((enum db_category)c);
	assert_int_equal(n, 4);
}

/* DESIGN.md §4: at least 30 s for endpoint, quota and auth, at least 5 for
 * rate_limited; short for what clears by itself. */
static void retry_after_by_category(void **state)
{
	(void)state;
	assert_true(dberror_retry_after_s(DB_ENDPOINT) >= 30);
	assert_true(dberror_retry_after_s(DB_QUOTA) >= 30);
	assert_true(dberror_retry_after_s(DB_AUTH) >= 30);
	assert_true(dberror_retry_after_s(DB_RATE_LIMITED) >= 5);
	assert_int_equal(dberror_retry_after_s(DB_CIRCUIT_OPEN), 2);
	assert_int_equal(dberror_retry_after_s(DB_TIMEOUT), 1);
	assert_int_equal(dberror_retry_after_s(DB_UNREACHABLE), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(classifies_postgres_and_libpq_failures),
		cmocka_unit_test(classifies_neon_proxy_xx000_by_text),
		cmocka_unit_test(classify_handles_null),
		cmocka_unit_test(sqlstate_transience),
		cmocka_unit_test(category_names),
		cmocka_unit_test(which_errors_discard_the_connection),
		cmocka_unit_test(which_failures_are_held),
		cmocka_unit_test(retry_after_by_category),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
