/* Unit tests of doctor's findings: one line each, `ok|warn|fail topic: …`,
 * the exit status, and the numbers an operator acts on. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "doctor.h"

static struct doctor_facts healthy(void)
{
	struct doctor_facts f = { .libpq_version = 170002,
				  .sslmode = "verify-full",
				  .host = "db.example.test",
				  .verify = true,
				  .ca_file = "/etc/ssl/certs/ca-certificates.crt",
				  .ca_source = "openssl default",
				  .connected = true,
				  .cold_ms = 812.5,
				  .warm_ms = 20.25,
				  .server_version = 160004,
				  .tls_protocol = "TLSv1.3",
				  .tls_cipher = "TLS_AES_256_GCM_SHA384",
				  .max_connections = 100,
				  .reserved = 3,
				  .bound = 16,
				  .budget = -1,
				  .idle_timeout_s = 240 };
	return f;
}

/* The report for f in a malloc'd string; *rc its status. */
static char *report(const struct doctor_facts *f, int *rc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	*rc = doctor_report(f, out);
	fclose(out);
	return buf;
}

/* The line of topic, or fail. */
static const char *line_of(const char *text, const char *level, const char *topic)
{
	char want[64];

	snprintf(want, sizeof(want), "%-4s %s: ", level, topic);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, want, strlen(want)) == 0)
			return p;
	fail_msg("no \"%s\" line in:\n%s", want, text);
	return NULL;
}

static void test_every_line_is_a_finding(void **state)
{
	struct doctor_facts f = healthy();
	int rc;
	char *text = report(&f, &rc);
	int lines = 0;

	(void)state;
	assert_int_equal(rc, 0);
	for (char *save = NULL, *ln = strtok_r(text, "\n", &save); ln;
	     ln = strtok_r(NULL, "\n", &save), lines++)
		assert_true(strncmp(ln, "ok   ", 5) == 0 || strncmp(ln, "warn ", 5) == 0 ||
			    strncmp(ln, "fail ", 5) == 0);
	assert_int_equal(lines, 9);
	free(text);
}

static void test_healthy_set_up(void **state)
{
	struct doctor_facts f = healthy();
	int rc;
	char *text = report(&f, &rc);

	(void)state;
	assert_non_null(strstr(line_of(text, "ok", "libpq"), "17.2 linked"));
	assert_non_null(strstr(line_of(text, "ok", "server"), "PostgreSQL 16.4"));
	assert_non_null(strstr(line_of(text, "ok", "ca"), "/etc/ssl/certs/ca-certificates.crt"));
	assert_non_null(strstr(line_of(text, "ok", "connect"), "cold 812.5 ms, warm 20.2 ms"));
	assert_non_null(strstr(line_of(text, "ok", "capacity"), "bound 16 <= 97 usable"));
	line_of(text, "ok", "pooler");
	free(text);
}

static void test_bound_above_server_fails_naming_both(void **state)
{
	struct doctor_facts f = healthy();
	int rc;

	(void)state;
	f.bound = 400;
	char *text = report(&f, &rc);
	const char *ln = line_of(text, "fail", "capacity");
	assert_int_equal(rc, 1);
	assert_non_null(strstr(ln, "may open 400 connections"));
	assert_non_null(strstr(ln, "max_connections 100"));
	free(text);
	/* Behind a pooler the server's figure is the pooler's concern. */
	f.pid_differs = true;
	text = report(&f, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(line_of(text, "ok", "pooler"), "PgBouncer"));
	line_of(text, "ok", "capacity");
	free(text);
}

static void test_warnings_do_not_fail(void **state)
{
	struct doctor_facts f = healthy();
	int rc;

	(void)state;
	strcpy(f.sslmode, "require");
	f.verify = false;
	f.idle_timeout_s = 300;
	strcpy(f.host, "ep-cool-darkness-123456.us-east-2.aws.neon.tech");
	f.bound = 90;
	f.max_connections = 901;
	char *text = report(&f, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(line_of(text, "warn", "ca"), "sslmode=verify-full"));
	assert_non_null(strstr(line_of(text, "warn", "idle_timeout"), "DB_IDLE_TIMEOUT_S=300"));
	assert_non_null(strstr(line_of(text, "ok", "pooler"), "direct Neon host"));
	free(text);
	f.bound = 101;
	text = report(&f, &rc);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(line_of(text, "warn", "pooler"), "101 connections"));
	free(text);
}

static void test_unreachable_fails(void **state)
{
	struct doctor_facts f = healthy();
	int rc;

	(void)state;
	f.connected = false;
	strcpy(f.error, "cannot connect: unreachable (connection refused)");
	char *text = report(&f, &rc);
	assert_int_equal(rc, 1);
	assert_non_null(strstr(line_of(text, "fail", "connect"), "unreachable"));
	assert_null(strstr(text, "capacity"));
	free(text);
}

static void test_neon_host_names(void **state)
{
	bool pooler;

	(void)state;
	assert_true(doctor_neon_host("ep-a-b-123.us-east-2.aws.neon.tech", &pooler) && !pooler);
	assert_true(doctor_neon_host("ep-a-b-123-pooler.eu-central-1.aws.neon.tech", &pooler) &&
		    pooler);
	assert_true(doctor_neon_host("ep-quiet-lake-123456.neon.test", &pooler) && !pooler);
	assert_false(doctor_neon_host("db.example.com", &pooler));
	assert_false(doctor_neon_host("ep-", &pooler));
	assert_false(doctor_neon_host("neon.tech", &pooler));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_line_is_a_finding),
		cmocka_unit_test(test_healthy_set_up),
		cmocka_unit_test(test_bound_above_server_fails_naming_both),
		cmocka_unit_test(test_warnings_do_not_fail),
		cmocka_unit_test(test_unreachable_fails),
		cmocka_unit_test(test_neon_host_names),
	};
	return cmocka_run_group_tests_name("doctor", tests, NULL, NULL);
}
