/* Unit tests of app/healthcache.c: a passing check is kept for max_age, a
 * failing one never, a newer one is not replaced by an older, and the text
 * of `time` comes back as the check wrote it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "healthcache.h"
#include "sb_fixture.h"
#include "scoreboard.h"

static struct health_db_check check(bool ok, double ms)
{
	struct health_db_check c = { .ok = ok,
				     .category = ok ? DB_OK : DB_UNREACHABLE,
				     .response_ms = ms };
	health_stamp(&c);
	return c;
}

static void pass_is_kept_until_max_age(void **state)
{
	struct scoreboard *sb = *state;
	struct health_db_check c = check(true, 1.5), got;

	assert_false(healthcache_get(sb, 1000, 5000, &got)); /* nothing kept yet */
	healthcache_publish(sb, &c, 5000);
	assert_true(healthcache_get(sb, 1000, 5000, &got));
	assert_true(got.ok);
	assert_string_equal(got.time, c.time);
	assert_true(got.response_ms > 1.49 && got.response_ms < 1.51);
	assert_true(healthcache_get(sb, 1000, 6000, &got));  /* exactly max_age old */
	assert_false(healthcache_get(sb, 1000, 6001, &got)); /* older */
	assert_false(healthcache_get(sb, 0, 5000, &got));    /* 0: never from the cache */
}

static void failure_is_never_kept(void **state)
{
	struct scoreboard *sb = *state;
	struct health_db_check ok = check(true, 1), bad = check(false, 2), got;

	healthcache_publish(sb, &bad, 5000);
	assert_false(healthcache_get(sb, 1000, 5000, &got));
	healthcache_publish(sb, &ok, 5000);
	healthcache_publish(sb, &bad, 5500); /* a later failure leaves the pass as it was */
	assert_true(healthcache_get(sb, 1000, 5500, &got));
	assert_true(got.response_ms > 0.99 && got.response_ms < 1.01);
}

static void older_does_not_replace_newer(void **state)
{
	struct scoreboard *sb = *state;
	struct health_db_check a = check(true, 1), b = check(true, 2), got;

	healthcache_publish(sb, &b, 7000);
	healthcache_publish(sb, &a, 6000); /* a slower worker finishing late */
	assert_true(healthcache_get(sb, 1000, 7900, &got));
	assert_true(got.response_ms > 1.99 && got.response_ms < 2.01);
}

static void clear_forgets(void **state)
{
	struct scoreboard *sb = *state;
	struct health_db_check a = check(true, 1), got;

	healthcache_publish(sb, &a, 7000);
	healthcache_clear(sb);
	assert_false(healthcache_get(sb, 1000, 7000, &got));
	healthcache_publish(sb, &a, 7001);
	assert_true(healthcache_get(sb, 1000, 7001, &got));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SB_FIXTURE_TEST(pass_is_kept_until_max_age),
		SB_FIXTURE_TEST(failure_is_never_kept),
		SB_FIXTURE_TEST(older_does_not_replace_newer),
		SB_FIXTURE_TEST(clear_forgets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
