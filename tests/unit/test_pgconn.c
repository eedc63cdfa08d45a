/* Unit tests of app/pgconn.c: the failure classification table, parameter
 * handling, and connect deadlines against tiny local fake servers (no
 * PostgreSQL needed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cabundle.h"
#include "clock.h"
#include "log.h"
#include "pgconn.h"
#include "pool.h"

bool log_enabled(enum log_level level)
{
	(void)level;
	return false;
}

void log_write(enum log_level level, int errnum, const char *fmt, ...)
{
	(void)level;
	(void)errnum;
	(void)fmt;
}

/* libpq hands its parse-error text to PQfreemem; this stand-in notes
 * whether the text still held the password when it was freed. */
static int pqfreemem_unwiped;

void PQfreemem(void *ptr)
{
	if (ptr != NULL && strstr(ptr, "hunter2") != NULL)
		pqfreemem_unwiped++;
	free(ptr);
}

/* ---- classification ---- */

struct case_ {
	const char *msg;
	enum db_category cat;
	bool transient;
	const char *sqlstate;
};

/* Real libpq 15 texts (verbose and default), with names that must not leak:
 * every name below contains "secret". */
static const struct case_ cases[] = {
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
	{ "connection to server at \"secret-host\" (10.0.0.5), port 5432 failed: ERROR:  XX000: "
	  "Endpoint ID is not specified\n",
	  DB_REJECTED, true, "XX000" },
	{ "something nobody anticipated\n", DB_UNREACHABLE, true, "" },
	{ "", DB_UNREACHABLE, true, "" },
};

static void classifies_connect_failures(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct db_error err;
		memset(&err, 0x55, sizeof err);
		pgconn_classify_connect_error(cases[i].msg, &err);
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

static void classify_handles_null(void **state)
{
	(void)state;
	struct db_error err;
	pgconn_classify_connect_error(NULL, &err);
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
		assert_true(pgconn_sqlstate_transient(transient[i]));
	for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++)
		assert_false(pgconn_sqlstate_transient(permanent[i]));
	assert_false(pgconn_sqlstate_transient(NULL));
	assert_false(pgconn_sqlstate_transient(""));
	assert_false(pgconn_sqlstate_transient("08"));
}

static void category_names(void **state)
{
	(void)state;
	static const char *const want[DB_CATEGORY_COUNT] = {
		"ok",       "timeout",      "unreachable",  "tls",          "auth",
		"rejected", "query_failed", "pool_timeout", "circuit_open",
	};
	for (int c = 0; c < DB_CATEGORY_COUNT; c++)
		assert_string_equal(db_category_name((enum db_category)c), want[c]);
	assert_string_equal(db_category_name(DB_CATEGORY_COUNT), "unknown");
}

static void which_errors_discard_the_connection(void **state)
{
	(void)state;
	struct db_error err = { .category = DB_QUERY_FAILED };
	assert_false(pgconn_error_discards(&err));
	err.category = DB_OK;
	assert_false(pgconn_error_discards(&err));
	err.category = DB_TIMEOUT;
	assert_true(pgconn_error_discards(&err));
	err.category = DB_UNREACHABLE;
	assert_true(pgconn_error_discards(&err));
}

/* ---- parameters ---- */

static struct pgconn_params *params(const char *url)
{
	char err[256] = "";
	struct pgconn_params *p = pgconn_params_new(url, err, sizeof err);
	if (!p)
		fail_msg("params: %s", err);
	return p;
}

static int setup_env(void **state)
{
	(void)state;
	unsetenv("PGSSLMODE");
	unsetenv("PGSSLROOTCERT");
	unsetenv("SSL_CERT_FILE");
	return 0;
}

/* The system bundle as cabundle finds it in this process. */
static const char *system_bundle(void)
{
	enum cabundle_source source;
	const char *found = cabundle_find(&source);

	assert_non_null(found); /* ca-certificates is installed (scripts/deps.sh) */
	return found;
}

static void verify_full_gets_system_ca(void **state)
{
	char bundle[] = "/tmp/test_pgconn_ca_XXXXXX";
	int fd = mkstemp(bundle);

	(void)state;
	struct pgconn_params *p = params(
	    "postgresql://u:pw@ep-x.neon.tech/db?sslmode=verify-full&channel_binding=require");
	assert_string_equal(pgconn_params_get(p, "sslrootcert"), system_bundle());
	assert_string_equal(pgconn_params_get(p, "channel_binding"), "require");
	assert_string_equal(pgconn_params_get(p, "password"), "pw");
	pgconn_params_free(p);
	p = params("host=h dbname=d user=u sslmode=verify-ca");
	assert_string_equal(pgconn_params_get(p, "sslrootcert"), system_bundle());
	pgconn_params_free(p);
	/* SSL_CERT_FILE first (DESIGN.md §5) */
	assert_true(fd >= 0);
	close(fd);
	setenv("SSL_CERT_FILE", bundle, 1);
	p = params("host=h dbname=d user=u sslmode=verify-full");
	assert_string_equal(pgconn_params_get(p, "sslrootcert"), bundle);
	pgconn_params_free(p);
	unsetenv("SSL_CERT_FILE");
	unlink(bundle);
}

/* libpq < 16 reads sslrootcert=system as a file named "system" (in the
 * working directory): on every version, the system bundle is named, and
 * verify-full is the default sslmode, as in libpq 16. */
static void sslrootcert_system_is_the_bundle(void **state)
{
	(void)state;
	struct pgconn_params *p = params("postgresql://u:pw@h/db?sslrootcert=system");
	assert_string_equal(pgconn_params_get(p, "sslrootcert"), system_bundle());
	assert_string_equal(pgconn_params_get(p, "sslmode"), "verify-full");
	pgconn_params_free(p);
	p = params("host=h dbname=d user=u sslrootcert=system sslmode=verify-full");
	assert_string_equal(pgconn_params_get(p, "sslrootcert"), system_bundle());
	assert_string_equal(pgconn_params_get(p, "sslmode"), "verify-full");
	pgconn_params_free(p);
	/* check-config refuses this; should it get here, "system" is never a file */
	p = params("host=h dbname=d user=u sslrootcert=system sslmode=require");
	assert_null(pgconn_params_get(p, "sslrootcert"));
	assert_string_equal(pgconn_params_get(p, "sslmode"), "require");
	pgconn_params_free(p);
	setenv("PGSSLROOTCERT", "system", 1);
	p = params("host=h dbname=d user=u sslmode=verify-full");
	assert_string_equal(pgconn_params_get(p, "sslrootcert"), system_bundle());
	pgconn_params_free(p);
	unsetenv("PGSSLROOTCERT");
}

static void explicit_root_cert_is_kept(void **state)
{
	(void)state;
	struct pgconn_params *p =
	    params("postgresql://u@h/db?sslmode=verify-full&sslrootcert=/etc/my/ca.pem");
	assert_string_equal(pgconn_params_get(p, "sslrootcert"), "/etc/my/ca.pem");
	pgconn_params_free(p);
	setenv("PGSSLROOTCERT", "/etc/env/ca.pem", 1);
	p = params("postgresql://u@h/db?sslmode=verify-full");
	assert_null(pgconn_params_get(p, "sslrootcert")); /* libpq reads the env itself */
	pgconn_params_free(p);
	unsetenv("PGSSLROOTCERT");
}

static void require_gets_no_root_cert(void **state)
{
	(void)state;
	struct pgconn_params *p = params("postgresql://u@h/db?sslmode=require");
	assert_null(pgconn_params_get(p, "sslrootcert"));
	pgconn_params_free(p);
}

static void connect_timeout_is_dropped(void **state)
{
	(void)state;
	struct pgconn_params *p =
	    params("postgresql://u@h:6543/db?sslmode=require&connect_timeout=10");
	assert_null(pgconn_params_get(p, "connect_timeout"));
	assert_string_equal(pgconn_params_get(p, "port"), "6543");
	assert_string_equal(pgconn_params_get(p, "host"), "h");
	pgconn_params_free(p);
}

static void invalid_url_reports_without_secrets(void **state)
{
	(void)state;
	char err[256] = "";
	struct pgconn_params *p =
	    pgconn_params_new("postgresql://u:hunter2@h/db?hunter2x=1", err, sizeof err);
	assert_null(p);
	assert_non_null(strstr(err, "DATABASE_URL"));
	assert_null(strstr(err, "hunter2"));
	p = pgconn_params_new("host=h password=hunter2 oops", err, sizeof err);
	assert_null(p);
	assert_null(strstr(err, "hunter2"));
}

/* Regression: the parse-error text was freed unwiped, and libpq quotes the
 * offending token in it, here the password itself. */
static void parse_error_text_is_wiped(void **state)
{
	(void)state;
	char err[256] = "";
	pqfreemem_unwiped = 0;
	assert_null(pgconn_params_new("postgresql://u@h/db?password=hunter2%zz", err, sizeof err));
	assert_null(strstr(err, "hunter2"));
	assert_int_equal(pqfreemem_unwiped, 0);
}

/* ---- connecting, against fake servers on loopback ---- */

static int loopback_socket(int *port, bool listening)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	if (listening)
		assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static PGconn *connect_to(int port, const char *extra, int64_t ms, struct db_error *err)
{
	char url[256];
	snprintf(url, sizeof url, "host=127.0.0.1 port=%d user=u dbname=d password=pw %s", port,
		 extra);
	struct pgconn_params *p = params(url);
	struct pgconn_info info;
	PGconn *c = pgconn_connect(p, clock_now_ms() + ms, &info, err);
	pgconn_params_free(p);
	return c;
}

static void refused_is_unreachable_and_transient(void **state)
{
	(void)state;
	int port;
	int fd = loopback_socket(&port, false); /* bound, not listening: RST */
	struct db_error err;
	assert_null(connect_to(port, "sslmode=disable", 2000, &err));
	assert_int_equal(err.category, DB_UNREACHABLE);
	assert_true(err.transient);
	close(fd);
}

/* DESIGN.md §4: the answer comes in time even when the database host
 * silently drops packets. The listener never answers the startup. */
static void silent_server_times_out_at_deadline(void **state)
{
	(void)state;
	int port;
	int fd = loopback_socket(&port, true);
	struct db_error err;
	int64_t t0 = clock_now_ms();
	assert_null(connect_to(port, "sslmode=require connect_timeout=30", 150, &err));
	int64_t took = clock_now_ms() - t0;
	assert_int_equal(err.category, DB_TIMEOUT);
	assert_true(err.transient);
	assert_true(took >= 145 && took < 1000);
	close(fd);
}

struct fake_server {
	int fd;
	const char *reply;
	size_t reply_len;
};

static bool read_some(int fd)
{
	char buf[512];
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	return poll(&pfd, 1, 5000) == 1 && read(fd, buf, sizeof buf) > 0;
}

/* Accepts one client, reads its first packet, answers with reply, closes. */
static void *fake_server_main(void *arg)
{
	struct fake_server *s = arg;
	struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
	if (poll(&pfd, 1, 5000) != 1)
		return NULL;
	int c = accept(s->fd, NULL, NULL);
	if (c < 0)
		return NULL;
	if (read_some(c) && write(c, s->reply, s->reply_len) < 0)
		perror("fake server write");
	read_some(c); /* until the client hangs up */
	close(c);
	return NULL;
}

static PGconn *connect_fake(const char *reply, size_t len, const char *extra, struct db_error *err)
{
	int port;
	pthread_t t;
	struct fake_server s = { loopback_socket(&port, true), reply, len };
	pthread_create(&t, NULL, fake_server_main, &s);
	PGconn *c = connect_to(port, extra, 3000, err);
	pthread_join(t, NULL);
	close(s.fd);
	return c;
}

static void server_without_tls_is_a_tls_failure(void **state)
{
	(void)state;
	struct db_error err;
	assert_null(connect_fake("N", 1, "sslmode=require", &err));
	assert_int_equal(err.category, DB_TLS);
	assert_false(err.transient);
}

/* The SQLSTATE of a startup error reaches us through the verbose message. */
static void startup_fatal_sqlstate_is_classified(void **state)
{
	(void)state;
	static const char body[] = "SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0";
	char msg[128];
	size_t n = sizeof body; /* fields plus the terminating NUL */
	uint32_t len = htonl((uint32_t)(4 + n));
	msg[0] = 'E';
	memcpy(msg + 1, &len, 4);
	memcpy(msg + 5, body, n);
	struct db_error err;
	assert_null(connect_fake(msg, 5 + n, "sslmode=disable", &err));
	assert_int_equal(err.category, DB_REJECTED);
	assert_true(err.transient);
	assert_string_equal(err.sqlstate, "53300");
}

static void null_connection_is_not_alive(void **state)
{
	(void)state;
	assert_false(pgconn_looks_alive(NULL));
	pgconn_close(NULL);
}

static void connector_is_complete(void **state)
{
	(void)state;
	const struct pool_connector *c = pgconn_connector();
	assert_non_null(c);
	assert_non_null(c->connect);
	assert_non_null(c->close);
	assert_non_null(c->looks_alive);
	assert_non_null(c->ping);
	assert_non_null(c->is_idle_txn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(classifies_connect_failures),
		cmocka_unit_test(classify_handles_null),
		cmocka_unit_test(sqlstate_transience),
		cmocka_unit_test(category_names),
		cmocka_unit_test(which_errors_discard_the_connection),
		cmocka_unit_test_setup(verify_full_gets_system_ca, setup_env),
		cmocka_unit_test_setup(explicit_root_cert_is_kept, setup_env),
		cmocka_unit_test_setup(sslrootcert_system_is_the_bundle, setup_env),
		cmocka_unit_test_setup(require_gets_no_root_cert, setup_env),
		cmocka_unit_test_setup(connect_timeout_is_dropped, setup_env),
		cmocka_unit_test(invalid_url_reports_without_secrets),
		cmocka_unit_test(parse_error_text_is_wiped),
		cmocka_unit_test(refused_is_unreachable_and_transient),
		cmocka_unit_test(silent_server_times_out_at_deadline),
		cmocka_unit_test(server_without_tls_is_a_tls_failure),
		cmocka_unit_test(startup_fatal_sqlstate_is_classified),
		cmocka_unit_test(null_connection_is_not_alive),
		cmocka_unit_test(connector_is_complete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
