/* Unit tests of the /metrics renderer: every family announced with HELP and
 * TYPE, sums over slots, histogram _count equal to the request counter. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "fcgiguard.h"
#include "metrics.h"
#include "sb_fixture.h"
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

/* The sample's metric name: up to its labels or its value. */
static void sample_name(const char *line, char *out, size_t len)
{
	size_t n = strcspn(line, "{ ");

	assert_true(n < len);
	memcpy(out, line, n);
	out[n] = '\0';
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Whether a sample named name belongs to a family of that name and type. */
static bool sample_fits(const char *name, const char *family, const char *type)
{
	static const char *const parts[] = { "_bucket", "_sum", "_count" };
	size_t n = strlen(family);

	if (strcmp(type, "histogram") != 0)
		return strcmp(name, family) == 0;
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		if (strncmp(name, family, n) == 0 && strcmp(name + n, parts[i]) == 0)
			return true;
	return false;
}

/* Every family: a HELP line, then at once its TYPE line (same name, a type we
 * use, _total for counters only), then only samples of that family and type;
 * no family twice. */
static void test_every_family_has_help_and_type(void **state)
{
	struct scoreboard *sb = *state;
	char *body = render(sb), *save = NULL;
	char family[128] = "", type[32] = "", name[128], seen[64][128];
	size_t families = 0;
	bool want_type = false;

	for (char *line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0) {
			assert_false(want_type); /* the previous HELP had its TYPE */
			assert_int_equal(sscanf(line + 7, "%127s", family), 1);
			assert_true(strncmp(family, "neonfcgi_", 9) == 0);
			for (size_t i = 0; i < families; i++)
				assert_string_not_equal(seen[i], family);
			assert_true(families < 64);
			strcpy(seen[families++], family);
			want_type = true;
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_true(want_type);
			assert_int_equal(sscanf(line + 7, "%127s %31s", name, type), 2);
			assert_string_equal(name, family);
			assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
				    strcmp(type, "histogram") == 0);
			/* _total names a counter, and only a counter. */
			assert_int_equal(ends_with(family, "_total"), strcmp(type, "counter") == 0);
			want_type = false;
			continue;
		}
		if (line[0] == '#')
			fail_msg("a comment that is neither HELP nor TYPE: %s", line);
		/* A sample belongs to the family last announced, and fits its type. */
		assert_false(want_type);
		assert_true(family[0] != '\0');
		sample_name(line, name, sizeof(name));
		if (!sample_fits(name, family, type))
			fail_msg("sample %s in family %s of type %s", name, family, type);
	}
	assert_false(want_type);
	assert_true(families >= 20);
	free(body);
}

static void test_requests_sum_over_slots(void **state)
{
	struct scoreboard *sb = *state;

	for (int i = 0; i < 10; i++)
		scoreboard_request(&sb->slots[i % 4], ROUTE_HEALTH, 200, 150 * i);
	scoreboard_request(&sb->slots[300], ROUTE_HEALTH, 503, 5000000);
	char *body = render(sb);
	assert_int_equal(sample(body, "neonfcgi_requests_total{route=\"health\",status=\"2xx\"}"),
			 10);
	assert_int_equal(sample(body, "neonfcgi_requests_total{route=\"health\",status=\"5xx\"}"),
			 1);
	assert_int_equal(sample(body, "neonfcgi_request_duration_seconds_count{route=\"health\"}"),
			 11);
	assert_int_equal(
	    sample(body, "neonfcgi_request_duration_seconds_bucket{route=\"health\",le=\"+Inf\"}"),
	    11);
	assert_int_equal(
	    sample(body,
		   "neonfcgi_request_duration_seconds_bucket{route=\"health\",le=\"0.0005\"}"),
	    4);
	free(body);
}

static void test_pool_and_bounds(void **state)
{
	struct scoreboard *sb = *state;

	atomic_fetch_add(&sb->slots[0].pool.in_use, 2);
	atomic_fetch_add(&sb->slots[1].pool.idle, 3);
	sb_add(&sb->slots[1].pool.connects_failed[DB_AUTH], 2);
	char *body = render(sb);
	assert_int_equal(sample(body, "neonfcgi_db_pool_connections{state=\"in_use\"}"), 2);
	assert_int_equal(sample(body, "neonfcgi_db_pool_connections{state=\"idle\"}"), 3);
	assert_int_equal(sample(body, "neonfcgi_db_pool_max_connections"), 16);
	assert_int_equal(sample(body, "neonfcgi_db_connects_total{result=\"auth\"}"), 2);
	assert_non_null(
	    strstr(body, "neonfcgi_build_info{version=\"" NEONFCGI_VERSION "\",libpq="));
	free(body);
}

/* Busy threads are the instance's; idle ones what is left of every started
 * thread; the peak stays after the threads go idle. */
static void test_request_threads_and_peak(void **state)
{
	struct scoreboard *sb = *state;

	atomic_store(&sb->slots[0].sat.threads, 4);
	atomic_store(&sb->slots[7].sat.threads, 4);
	for (int i = 0; i < 5; i++)
		scoreboard_thread_busy(sb, &sb->slots[i < 3 ? 0 : 7], 1);
	scoreboard_thread_busy(sb, &sb->slots[7], -1);
	char *body = render(sb);
	assert_int_equal(sample(body, "neonfcgi_request_threads{state=\"busy\"}"), 4);
	assert_int_equal(sample(body, "neonfcgi_request_threads{state=\"idle\"}"), 4);
	assert_int_equal(sample(body, "neonfcgi_request_threads_busy_max"), 5);
	free(body);
	/* A worker that dies busy gives its threads back. */
	scoreboard_worker_exited(sb, 0, 9 /* killed by SIGKILL */);
	body = render(sb);
	assert_int_equal(sample(body, "neonfcgi_request_threads{state=\"busy\"}"), 1);
	assert_int_equal(sample(body, "neonfcgi_request_threads{state=\"idle\"}"), 3);
	assert_int_equal(sample(body, "neonfcgi_request_threads_busy_max"), 5);
	free(body);
}

/* Not exported before a worker could sample it; then now, peak and limit. */
static void test_listen_queue(void **state)
{
	struct scoreboard *sb = *state;
	char *body = render(sb);

	assert_null(strstr(body, "neonfcgi_listen_queue"));
	free(body);
	scoreboard_listen_queue(sb, 7, 4096);
	scoreboard_listen_queue(sb, 2, 4096);
	body = render(sb);
	assert_int_equal(sample(body, "neonfcgi_listen_queue"), 2);
	assert_int_equal(sample(body, "neonfcgi_listen_queue_max"), 7);
	assert_int_equal(sample(body, "neonfcgi_listen_queue_limit"), 4096);
	assert_non_null(strstr(body, "# TYPE neonfcgi_listen_queue gauge\n"));
	free(body);
}

static void test_pool_wait_histogram(void **state)
{
	struct scoreboard *sb = *state;

	sb_add(&sb->slots[0].pool.acquire_waits, 3);
	sb_add(&sb->slots[0].pool.acquire_wait_us, 2500000);
	sb_add(&sb->slots[0].pool.wait_buckets[scoreboard_bucket(800)], 1);
	sb_add(&sb->slots[0].pool.wait_buckets[scoreboard_bucket(200000)], 1);
	/* the third waited past the last bound: +Inf only */
	char *body = render(sb);
	assert_int_equal(sample(body, "neonfcgi_pool_wait_seconds_bucket{le=\"0.001\"}"), 1);
	assert_int_equal(sample(body, "neonfcgi_pool_wait_seconds_bucket{le=\"0.25\"}"), 2);
	assert_int_equal(sample(body, "neonfcgi_pool_wait_seconds_bucket{le=\"2.5\"}"), 2);
	assert_int_equal(sample(body, "neonfcgi_pool_wait_seconds_bucket{le=\"+Inf\"}"), 3);
	assert_int_equal(sample(body, "neonfcgi_pool_wait_seconds_count{}"), 3);
	assert_float_equal(sample(body, "neonfcgi_pool_wait_seconds_sum{}"), 2.5, 1e-9);
	free(body);
}

/* Every reason and every category has its sample, zeros included. */
static void test_refusals_by_reason_and_category(void **state)
{
	struct scoreboard *sb = *state;
	char line[160];

	sb_add(&sb->slots[2].sat.rejected[fcgiguard_reason_index("role other than RESPONDER")], 2);
	sb_add(&sb->slots[3].sat.rejected[fcgiguard_reason_index("no such reason")], 1);
	sb_add(&sb->slots[3].sat.health_failures[DB_RATE_LIMITED], 4);
	sb_add(&sb->slots[1].sat.refused_peers, 5);
	sb_add(&sb->slots[1].sat.slow_requests, 6);
	char *body = render(sb);
	assert_int_equal(sample(body, "neonfcgi_rejected_requests_total{reason=\"bad_role\"}"), 2);
	assert_int_equal(sample(body, "neonfcgi_rejected_requests_total{reason=\"other\"}"), 1);
	assert_int_equal(sample(body, "neonfcgi_refused_peers_total"), 5);
	assert_int_equal(sample(body, "neonfcgi_slow_requests_total"), 6);
	for (int c = DB_OK + 1; c < DB_CATEGORY_COUNT; c++) {
		snprintf(line, sizeof(line), "neonfcgi_health_db_failures_total{category=\"%s\"}",
			 db_category_name((enum db_category)c));
		assert_int_equal(sample(body, line), c == DB_RATE_LIMITED ? 4 : 0);
	}
	for (int k = 0; k < FCGIGUARD_REASONS; k++) {
		snprintf(line, sizeof(line), "neonfcgi_rejected_requests_total{reason=\"%s\"}",
			 fcgiguard_reason_label(k));
		sample(body, line);
	}
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SB_FIXTURE_TEST(test_every_family_has_help_and_type),
		SB_FIXTURE_TEST(test_requests_sum_over_slots),
		SB_FIXTURE_TEST(test_pool_and_bounds),
		SB_FIXTURE_TEST(test_request_threads_and_peak),
		SB_FIXTURE_TEST(test_listen_queue),
		SB_FIXTURE_TEST(test_pool_wait_histogram),
		SB_FIXTURE_TEST(test_refusals_by_reason_and_category),
	};
	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
