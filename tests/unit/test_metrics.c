/* Unit tests of the /metrics renderer: every family announced with HELP and
 * TYPE, sums over slots, histogram _count equal to the request counter. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "metrics.h"
#include "scoreboard.h"

static struct config cfg = { .workers = 4, .db_pool_size = 2, .db_max_overflow = 2 };

static char *render(struct scoreboard *sb)
{
	size_t len;
	char *body = metrics_render(sb, &cfg, &len);

	assert_int_equal(strlen(body), len);
	return body;
}

/* The value of the sample line that starts with `prefix` followed by ' '. */
static double sample(const char *body, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	fail_msg("no sample %s", prefix);
	return -1;
}

static void test_every_family_has_help_and_type(void **state)
{
	struct scoreboard *sb = *state;
	char *body = render(sb), *save = NULL, family[128] = "";

	for (char *line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0) {
			sscanf(line + 7, "%127s", family);
			continue;
		}
		if (line[0] == '#')
			continue;
		/* A sample belongs to the family last announced (histograms add suffixes). */
		assert_true(family[0] != '\0');
		assert_int_equal(strncmp(line, family, strlen(family)), 0);
		assert_true(strncmp(line, "neonfcgi_", 9) == 0);
	}
	free(body);
}

static void test_requests_sum_over_slots(void **state)
{
	struct scoreboard *sb = *state;

	for (int i = 0; i < 10; i++)
		scoreboard_request(&sb->slots[i % 4], ROUTE_HEALTH, 200, 150 * i);
	scoreboard_request(&sb->slots[300], ROUTE_HEALTH, 503, 5000000);
	char *body = render(sb);
	assert_int_equal(sample(body, "neonfcgi_requests_total{route=\"health\",status=\"2xx\"}"), 10);
	assert_int_equal(sample(body, "neonfcgi_requests_total{route=\"health\",status=\"5xx\"}"), 1);
	assert_int_equal(sample(body, "neonfcgi_request_duration_seconds_count{route=\"health\"}"), 11);
	assert_int_equal(
		sample(body, "neonfcgi_request_duration_seconds_bucket{route=\"health\",le=\"+Inf\"}"),
		11);
	assert_int_equal(
		sample(body, "neonfcgi_request_duration_seconds_bucket{route=\"health\",le=\"0.0005\"}"),
		4);
	free(body);
}

static void test_pool_and_bounds(void **state)
{
	struct scoreboard *sb = *state;

	sb_gauge_add(&sb->slots[0].pool.in_use, 2);
	sb_gauge_add(&sb->slots[1].pool.idle, 3);
	sb_add(&sb->slots[1].pool.connects_failed[DB_AUTH], 2);
	char *body = render(sb);
	assert_int_equal(sample(body, "neonfcgi_db_pool_connections{state=\"in_use\"}"), 2);
	assert_int_equal(sample(body, "neonfcgi_db_pool_connections{state=\"idle\"}"), 3);
	assert_int_equal(sample(body, "neonfcgi_db_pool_max_connections"), 16);
	assert_int_equal(sample(body, "neonfcgi_db_connects_total{result=\"auth\"}"), 2);
	assert_non_null(strstr(body, "neonfcgi_build_info{version=\"" NEONFCGI_VERSION "\",libpq="));
	free(body);
}

static int setup(void **state)
{
	struct scoreboard *sb = scoreboard_init_master();

	if (!sb)
		return -1;
	/* Readers visit only the slots a worker used; these tests use any. */
	atomic_store(&sb->master.slots_used, SB_SLOTS);
	*state = sb;
	return 0;
}

static int teardown(void **state)
{
	scoreboard_free(*state);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_every_family_has_help_and_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_requests_sum_over_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_and_bounds, setup, teardown),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
