/* Unit tests of the router: a table of (method, PATH_INFO, REQUEST_URI) →
 * (route, status, head) per DESIGN.md §4. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "router.h"

struct route_case {
	const char *method, *path_info, *request_uri;
	enum route route;
	int status;
	bool head;
};

static const struct route_case cases[] = {
	{ "GET", NULL, "/health", ROUTE_HEALTH, 0, false },
	{ "HEAD", NULL, "/health", ROUTE_HEALTH, 0, true },
	{ "GET", "", "/health?verbose=1", ROUTE_HEALTH, 0, false },
	{ "GET", "", "/health#frag", ROUTE_HEALTH, 0, false },
	{ "POST", NULL, "/health", ROUTE_HEALTH, 405, false },
	{ "PUT", NULL, "/health", ROUTE_HEALTH, 405, false },
	{ "get", NULL, "/health", ROUTE_HEALTH, 405, false },
	{ NULL, NULL, "/health", ROUTE_HEALTH, 405, false },
	{ "GET", NULL, "/nope", ROUTE_NOT_FOUND, 404, false },
	{ "POST", NULL, "/nope", ROUTE_NOT_FOUND, 404, false },
	{ "GET", NULL, "/health/", ROUTE_NOT_FOUND, 404, false },
	{ "GET", NULL, "/healthz", ROUTE_NOT_FOUND, 404, false },
	{ "GET", NULL, "/HEALTH", ROUTE_NOT_FOUND, 404, false },
	{ "GET", NULL, "", ROUTE_NOT_FOUND, 404, false },
	{ "GET", NULL, NULL, ROUTE_NOT_FOUND, 404, false },
	{ "GET", NULL, "?/health", ROUTE_NOT_FOUND, 404, false },
	/* mounted under a prefix (shared hosting): PATH_INFO wins */
	{ "GET", "/health", "/cgi-bin/neonfcgi.fcgi/health", ROUTE_HEALTH, 0, false },
	{ "GET", "/nope", "/health", ROUTE_NOT_FOUND, 404, false },
	{ "GET", NULL, "/cgi-bin/neonfcgi.fcgi/health", ROUTE_NOT_FOUND, 404, false },
	/* every route is served from the start */
	{ "GET", NULL, "/health/db", ROUTE_HEALTH_DB, 0, false },
	{ "GET", NULL, "/metrics?x", ROUTE_METRICS, 0, false },
	{ "DELETE", NULL, "/metrics", ROUTE_METRICS, 405, false },
};

static void test_route_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct route_case *c = &cases[i];
		struct route_match m;
		router_resolve(c->method, c->path_info, c->request_uri, &m);
		print_message("case %zu: %s %s %s\n", i, c->method ? c->method : "(null)",
			      c->path_info ? c->path_info : "(null)",
			      c->request_uri ? c->request_uri : "(null)");
		assert_int_equal(m.route, c->route);
		assert_int_equal(m.status, c->status);
		assert_int_equal(m.head, c->head);
	}
}

/* The Status: line of every answer, ours and fcgiguard's refusals. */
static void test_reason_phrases(void **state)
{
	(void)state;
	assert_string_equal(router_reason_phrase(200), "OK");
	assert_string_equal(router_reason_phrase(400), "Bad Request");
	assert_string_equal(router_reason_phrase(404), "Not Found");
	assert_string_equal(router_reason_phrase(405), "Method Not Allowed");
	assert_string_equal(router_reason_phrase(414), "URI Too Long");
	assert_string_equal(router_reason_phrase(431), "Request Header Fields Too Large");
	assert_string_equal(router_reason_phrase(500), "Internal Server Error");
	assert_string_equal(router_reason_phrase(503), "Service Unavailable");
	assert_string_equal(router_reason_phrase(299), "Unknown");
}

static void test_route_names(void **state)
{
	(void)state;
	assert_string_equal(router_name(ROUTE_HEALTH), "health");
	assert_string_equal(router_name(ROUTE_HEALTH_DB), "health_db");
	assert_string_equal(router_name(ROUTE_METRICS), "metrics");
	assert_string_equal(router_name(ROUTE_NOT_FOUND), "other");
	assert_string_equal(router_name(ROUTE_COUNT), "other");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_table),
		cmocka_unit_test(test_reason_phrases),
		cmocka_unit_test(test_route_names),
	};
	return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
