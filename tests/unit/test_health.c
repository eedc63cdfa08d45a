/* Unit tests of the /health and /health/db bodies: pass, warn (callers
 * waiting, a breaker open elsewhere), fail with a category and Retry-After,
 * the cause behind an open breaker, and HEALTH_DETAILS=minimal. Table-driven:
 * each case is a check result, a pool picture and what the body must say. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "health.h"
#include "pgconn.h"

struct db_case {
	const char *name;
	bool ok;
	enum db_category category;
	bool circuit_open;
	struct health_pool_view pool;
	enum health_details details;
	/* expected */
	const char *status;
	int http_status;
	const char *output; /* NULL: no "output" key anywhere */
	const char *pool_status;
	int min_retry_after; /* 0: no Retry-After */
};

/* One case a row, as the struct reads. */
/* clang-format off */
static const struct db_case cases[] = {
	{ "pass", true, DB_OK, false, { .idle = 2, .in_use = 1, .max = 16 }, HEALTH_DETAILS_FULL,
	  "pass", 200, NULL, "pass", 0 },
	{ "warn_waiting", true, DB_OK, false, { .idle = 0, .in_use = 16, .waiting = 3, .max = 16 },
	  HEALTH_DETAILS_FULL, "warn", 200, NULL, "warn", 0 },
	{ "warn_breaker_open_elsewhere", true, DB_OK, false,
	  { .idle = 1, .breakers_open = 1, .max = 8 }, HEALTH_DETAILS_FULL, "warn", 200, NULL,
	  "warn", 0 },
	{ "fail_timeout", false, DB_TIMEOUT, false, { .max = 8 }, HEALTH_DETAILS_FULL, "fail", 503,
	  "timeout", "pass", 1 },
	/* A failure is a fail, never a warn, whatever the pool looks like. */
	{ "fail_beats_warn", false, DB_POOL_TIMEOUT, false, { .in_use = 8, .waiting = 5, .max = 8 },
	  HEALTH_DETAILS_FULL, "fail", 503, "pool_timeout", "warn", 1 },
	/* Behind an open breaker the output is the cause that opened it, and the
	 * client is told to come back when the breaker half-opens (~2 s). */
	{ "circuit_open_reports_cause", false, DB_UNREACHABLE, true,
	  { .breakers_open = 1, .max = 8 }, HEALTH_DETAILS_FULL, "fail", 503, "unreachable", "warn",
	  2 },
	{ "circuit_open_cause_unknown", false, DB_CIRCUIT_OPEN, true,
	  { .breakers_open = 1, .max = 8 }, HEALTH_DETAILS_FULL, "fail", 503, "circuit_open", "warn",
	  2 },
	{ "minimal_pass", true, DB_OK, false, { .idle = 2, .max = 16 }, HEALTH_DETAILS_MINIMAL,
	  "pass", 200, NULL, NULL, 0 },
	{ "minimal_warn", true, DB_OK, false, { .waiting = 1, .max = 16 }, HEALTH_DETAILS_MINIMAL,
	  "warn", 200, NULL, NULL, 0 },
	{ "minimal_fail", false, DB_AUTH, false, { .max = 16 }, HEALTH_DETAILS_MINIMAL, "fail", 503,
	  "auth", NULL, 1 },
};
/* clang-format on */

static json_t *body_of(const struct db_case *c, int *http_status, int *retry_after)
{
	struct health_db_check chk = { .ok = c->ok,
				       .category = c->category,
				       .circuit_open = c->circuit_open,
				       .response_ms = 1.25 };
	size_t len;
	json_error_t err;

	health_stamp(&chk);
	char *body = health_db_body(&chk, &c->pool, c->details, http_status, retry_after, &len);
	assert_non_null(body);
	assert_int_equal(strlen(body), len);
	json_t *obj = json_loads(body, JSON_REJECT_DUPLICATES, &err);
	if (!obj)
		fail_msg("%s: body is not JSON (%s): %s", c->name, err.text, body);
	if (strncmp(body, "{\"status\":", 10) != 0) /* status first, for a human reading it */
		fail_msg("%s: status is not the first member: %s", c->name, body);
	free(body);
	return obj;
}

static const char *str(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static void check_minimal(const struct db_case *c, json_t *obj)
{
	/* Only status, plus output on failure. */
	assert_int_equal(json_object_size(obj), c->output ? 2 : 1);
}

/* UTC with milliseconds: 2026-12-05T09:53:55.123Z */
static void check_rfc3339(const char *t)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";

	assert_int_equal(strlen(t), strlen(shape));
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? t[i] < '0' || t[i] > '9' : t[i] != shape[i])
			fail_msg("time %s is not RFC 3339 UTC with milliseconds", t);
}

static void check_response_time(const struct db_case *c, json_t *rt)
{
	assert_true(json_is_array(rt) && json_array_size(rt) == 1);
	rt = json_array_get(rt, 0);
	assert_int_equal(json_object_size(rt), 5 + (c->output != NULL) + c->circuit_open);
	assert_true(json_is_real(json_object_get(rt, "observedValue")));
	assert_string_equal(str(rt, "componentType"), "datastore");
	assert_string_equal(str(rt, "observedUnit"), "ms");
	assert_true(json_number_value(json_object_get(rt, "observedValue")) == 1.25);
	assert_string_equal(str(rt, "status"), c->ok ? "pass" : "fail");
	assert_non_null(str(rt, "time"));
	check_rfc3339(str(rt, "time"));
	if (c->output)
		assert_string_equal(str(rt, "output"), c->output);
	else
		assert_null(json_object_get(rt, "output"));
	if (c->circuit_open)
		assert_string_equal(str(rt, "circuit"), "open");
	else
		assert_null(json_object_get(rt, "circuit"));
}

static json_int_t num(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v))
		fail_msg("%s is not an integer", key);
	return json_integer_value(v);
}

static void check_connections(const struct db_case *c, json_t *pc)
{
	assert_true(json_is_array(pc) && json_array_size(pc) == 1);
	pc = json_array_get(pc, 0);
	assert_int_equal(json_object_size(pc), 8);
	assert_string_equal(str(pc, "componentType"), "datastore");
	assert_string_equal(str(pc, "observedUnit"), "connections");
	assert_string_equal(str(pc, "status"), c->pool_status);
	assert_int_equal(num(pc, "observedValue"), c->pool.idle + c->pool.in_use);
	assert_int_equal(num(pc, "idle"), c->pool.idle);
	assert_int_equal(num(pc, "in_use"), c->pool.in_use);
	assert_int_equal(num(pc, "max"), c->pool.max);
	assert_int_equal(num(pc, "waiting"), c->pool.waiting);
}

static void run_case(const struct db_case *c)
{
	int http_status = -1, retry_after = -1;
	json_t *obj = body_of(c, &http_status, &retry_after);

	print_message("case %s\n", c->name);
	assert_string_equal(str(obj, "status"), c->status);
	assert_int_equal(http_status, c->http_status);
	if (c->min_retry_after)
		assert_true(retry_after >= c->min_retry_after);
	else
		assert_int_equal(retry_after, 0);
	if (c->output)
		assert_string_equal(str(obj, "output"), c->output);
	else
		assert_null(json_object_get(obj, "output"));
	if (c->details == HEALTH_DETAILS_MINIMAL) {
		check_minimal(c, obj);
	} else {
		assert_string_equal(str(obj, "serviceId"), "neonfcgi");
		assert_string_equal(str(obj, "version"), NEONFCGI_VERSION);
		assert_int_equal(json_object_size(obj), c->output ? 5 : 4);
		json_t *checks = json_object_get(obj, "checks");
		assert_int_equal(json_object_size(checks), 2);
		check_response_time(c, json_object_get(checks, "postgres:responseTime"));
		check_connections(c, json_object_get(checks, "postgres:connections"));
	}
	json_decref(obj);
}

static void test_health_db_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
}

/* The output of each failure category, as DESIGN.md §4 spells it. */
static const struct {
	enum db_category category;
	const char *output;
	int min_retry_after;
} category_outputs[] = {
	{ DB_TIMEOUT, "timeout", 1 },
	{ DB_UNREACHABLE, "unreachable", 1 },
	{ DB_TLS, "tls", 30 },
	{ DB_AUTH, "auth", 30 },
	{ DB_REJECTED, "rejected", 1 },
	{ DB_QUERY_FAILED, "query_failed", 1 },
	{ DB_POOL_TIMEOUT, "pool_timeout", 1 },
	{ DB_CIRCUIT_OPEN, "circuit_open", 2 },
	{ DB_ENDPOINT, "endpoint", 30 },
	{ DB_QUOTA, "quota", 30 },
	{ DB_RATE_LIMITED, "rate_limited", 5 },
};

/* Whatever the category, a failure body names only the category: never a
 * libpq message, user or host (there is nothing else in struct health_db_check
 * to leak, and the body has no field for it). */
static void test_every_category_has_a_name_in_output(void **state)
{
	size_t n = sizeof(category_outputs) / sizeof(category_outputs[0]);

	(void)state;
	assert_int_equal(n, DB_CATEGORY_COUNT - 1); /* every category but DB_OK */
	for (size_t i = 0; i < n; i++) {
		struct db_case c = { category_outputs[i].output,
				     false,
				     category_outputs[i].category,
				     false,
				     { .max = 4 },
				     HEALTH_DETAILS_FULL,
				     "fail",
				     503,
				     category_outputs[i].output,
				     "pass",
				     category_outputs[i].min_retry_after };
		run_case(&c);
	}
}

/* observedValue reads back as a real, with six significant digits, whatever
 * the duration (a whole number of ms included). */
static void test_response_ms_is_a_real(void **state)
{
	const double values[] = { 0, 3, 1.25, 1234.5678, 1e-7, 987654321.0 };
	struct health_pool_view pool = { .max = 4 };

	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		struct health_db_check chk = { .ok = true, .response_ms = values[i] };
		int st, ra;
		size_t len;

		health_stamp(&chk);
		char *body = health_db_body(&chk, &pool, HEALTH_DETAILS_FULL, &st, &ra, &len);
		json_t *obj = json_loads(body, 0, NULL);
		json_t *rt = json_array_get(
		    json_object_get(json_object_get(obj, "checks"), "postgres:responseTime"), 0);
		json_t *v = json_object_get(rt, "observedValue");

		assert_true(json_is_real(v));
		double got = json_real_value(v);
		assert_true(got == values[i] || fabs(got - values[i]) <= fabs(values[i]) * 1e-5);
		json_decref(obj);
		free(body);
	}
}

static void test_live_body(void **state)
{
	size_t len;
	char *body = health_live_body(42, 4242, &len);
	json_t *obj = json_loads(body, 0, NULL);

	(void)state;
	assert_non_null(obj);
	assert_int_equal(strlen(body), len);
	assert_string_equal(str(obj, "status"), "pass");
	assert_string_equal(str(obj, "serviceId"), "neonfcgi");
	assert_string_equal(str(obj, "version"), NEONFCGI_VERSION);
	assert_int_equal(num(obj, "uptime_s"), 42);
	assert_int_equal(num(obj, "pid"), 4242);
	assert_int_equal(json_object_size(obj), 5);
	json_decref(obj);
	free(body);
}

/* Formatted by hand: the widest numbers still give one valid object. */
static void test_live_body_extremes(void **state)
{
	long extremes[][2] = { { 0, 1 }, { LONG_MAX, LONG_MAX }, { LONG_MIN, LONG_MIN } };

	(void)state;
	for (size_t i = 0; i < sizeof(extremes) / sizeof(extremes[0]); i++) {
		size_t len;
		char *body = health_live_body(extremes[i][0], extremes[i][1], &len);
		json_t *obj = json_loads(body, JSON_REJECT_DUPLICATES, NULL);

		assert_non_null(obj);
		assert_int_equal(strlen(body), len);
		assert_true(num(obj, "uptime_s") == extremes[i][0]);
		assert_true(num(obj, "pid") == extremes[i][1]);
		json_decref(obj);
		free(body);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health_db_cases),
		cmocka_unit_test(test_every_category_has_a_name_in_output),
		cmocka_unit_test(test_response_ms_is_a_real),
		cmocka_unit_test(test_live_body),
		cmocka_unit_test(test_live_body_extremes),
	};
	return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
