/* Unit tests of app/pgconn.c (classification is test_dberror.c): parameter
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

#include "clock.h"
#include "log.h"
#include "pgconn.h"

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
	return 0;
}

static void verify_full_gets_system_ca(void **state)
{
	(void)state;
	struct pgconn_params *p = params(
	    "postgresql://u:pw@ep-x.neon.tech/db?sslmode=verify-full&channel_binding=require");
	assert_string_equal(pgconn_params_get(p, "sslrootcert"),
			    "/etc/ssl/certs/ca-certificates.crt");
	assert_string_equal(pgconn_params_get(p, "channel_binding"), "require");
	assert_string_equal(pgconn_params_get(p, "password"), "pw");
	pgconn_params_free(p);
	p = params("host=h dbname=d user=u sslmode=verify-ca");
	assert_non_null(pgconn_params_get(p, "sslrootcert"));
	pgconn_params_free(p);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(verify_full_gets_system_ca, setup_env),
		cmocka_unit_test_setup(explicit_root_cert_is_kept, setup_env),
		cmocka_unit_test_setup(require_gets_no_root_cert, setup_env),
		cmocka_unit_test_setup(connect_timeout_is_dropped, setup_env),
		cmocka_unit_test(invalid_url_reports_without_secrets),
		cmocka_unit_test(parse_error_text_is_wiped),
		cmocka_unit_test(refused_is_unreachable_and_transient),
		cmocka_unit_test(silent_server_times_out_at_deadline),
		cmocka_unit_test(server_without_tls_is_a_tls_failure),
		cmocka_unit_test(startup_fatal_sqlstate_is_classified),
		cmocka_unit_test(null_connection_is_not_alive),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
