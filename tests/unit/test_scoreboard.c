/* Unit tests of the scoreboard: bucket choice, request accounting, worker
 * lifecycle (counters stay, gauges reset) and the pool sum over slots. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "sb_fixture.h"
#include "scoreboard.h"

static void test_bucket_bounds(void **state)
{
	(void)state;
	assert_int_equal(scoreboard_bucket(0), 0);
	assert_int_equal(scoreboard_bucket(500), 0); /* le=0.0005 is inclusive */
	assert_int_equal(scoreboard_bucket(501), 1);
	assert_int_equal(scoreboard_bucket(1000), 1);
	assert_int_equal(scoreboard_bucket(2500000), SB_DURATION_BUCKETS - 1);
	assert_int_equal(scoreboard_bucket(2500001), SB_DURATION_BUCKETS);
}

static void test_request_accounting(void **state)
{
	struct scoreboard *sb = *state;
	struct sb_slot *s = &sb->slots[3];

	scoreboard_request(s, ROUTE_HEALTH, 200, 100);
	scoreboard_request(s, ROUTE_HEALTH, 200, 3000000);
	scoreboard_request(s, ROUTE_HEALTH_DB, 503, 700);
	scoreboard_request(s, ROUTE_NOT_FOUND, 404, 10);
	scoreboard_request(s, ROUTE_NOT_FOUND, 999, 10); /* odd status: counted as 5xx */
	assert_int_equal(sb_get(&s->requests[ROUTE_HEALTH][1]), 2);
	assert_int_equal(sb_get(&s->requests[ROUTE_HEALTH_DB][4]), 1);
	assert_int_equal(sb_get(&s->requests[ROUTE_NOT_FOUND][3]), 1);
	assert_int_equal(sb_get(&s->requests[ROUTE_NOT_FOUND][4]), 1);
	assert_int_equal(sb_get(&s->duration_buckets[ROUTE_HEALTH][0]), 1);
	assert_int_equal(sb_get(&s->duration_us[ROUTE_HEALTH]), 3000100);
}

static void test_restart_keeps_counters_resets_gauges(void **state)
{
	struct scoreboard *sb = *state;
	struct sb_slot *s = &sb->slots[7];

	scoreboard_worker_started(sb, 7, 1234, false);
	sb_add(&s->pool.acquires, 5);
	atomic_fetch_add(&s->pool.idle, 2);
	atomic_fetch_add(&s->pool.in_use, 1);
	scoreboard_worker_exited(sb, 7, 9); /* killed by SIGKILL (wait status 9) */
	assert_int_equal(sb_gauge_get(&s->pid), 0);
	assert_int_equal(sb_gauge_get(&s->pool.idle), 0);
	assert_int_equal(sb_gauge_get(&s->pool.in_use), 0);
	assert_int_equal(sb_get(&s->pool.acquires), 5);
	assert_int_equal(sb_get(&sb->master.worker_exits[SB_EXIT_SIGNAL]), 1);
	scoreboard_worker_started(sb, 7, 1235, true);
	assert_int_equal(sb_get(&sb->master.worker_starts), 2);
	assert_int_equal(sb_get(&sb->master.worker_restarts), 1);
	assert_int_equal(sb_gauge_get(&s->pid), 1235);
}

static void test_exit_causes(void **state)
{
	struct scoreboard *sb = *state;

	scoreboard_worker_exited(sb, 1, 0);      /* exit 0 */
	scoreboard_worker_exited(sb, 1, 1 << 8); /* exit 1 */
	assert_int_equal(sb_get(&sb->master.worker_exits[SB_EXIT_NORMAL]), 1);
	assert_int_equal(sb_get(&sb->master.worker_exits[SB_EXIT_ERROR]), 1);
}

static void test_sum_pool_over_slots(void **state)
{
	struct scoreboard *sb = *state;
	struct sb_pool sum;

	atomic_fetch_add(&sb->slots[0].pool.idle, 2);
	atomic_fetch_add(&sb->slots[SB_SLOTS - 1].pool.idle, 1);
	atomic_fetch_add(&sb->slots[5].pool.waiting, 4);
	sb_add(&sb->slots[0].pool.connects_failed[DB_TIMEOUT], 3);
	sb_add(&sb->slots[9].pool.connects_failed[DB_TIMEOUT], 1);
	sb_add(&sb->slots[9].pool.breaker_opens, 6); /* the last counter of the struct */
	scoreboard_sum_pool(sb, &sum);
	assert_int_equal(sb_gauge_get(&sum.idle), 3);
	assert_int_equal(sb_gauge_get(&sum.waiting), 4);
	assert_int_equal(sb_get(&sum.connects_failed[DB_TIMEOUT]), 4);
	assert_int_equal(sb_get(&sum.breaker_opens), 6);
}

static void test_slots_used_is_a_high_water_mark(void **state)
{
	struct scoreboard *sb = *state;

	atomic_store(&sb->master.slots_used, 0);
	assert_int_equal(scoreboard_slots_used(sb), 0);
	scoreboard_worker_started(sb, 3, 100, false);
	scoreboard_worker_started(sb, 1, 101, false);
	assert_int_equal(scoreboard_slots_used(sb), 4);
	scoreboard_worker_exited(sb, 3, 0);
	assert_int_equal(scoreboard_slots_used(sb), 4);
}

/* The labels of neonfcgi_db_connection_closes_total and of the pool's log. */
static void test_close_reason_names(void **state)
{
	(void)state;
	assert_string_equal(scoreboard_close_reason_name(SB_CLOSE_IDLE), "idle");
	assert_string_equal(scoreboard_close_reason_name(SB_CLOSE_LIFETIME), "lifetime");
	assert_string_equal(scoreboard_close_reason_name(SB_CLOSE_OVERFLOW), "overflow");
	assert_string_equal(scoreboard_close_reason_name(SB_CLOSE_DEAD), "dead");
	assert_string_equal(scoreboard_close_reason_name(SB_CLOSE_BROKEN), "broken");
	assert_string_equal(scoreboard_close_reason_name(SB_CLOSE_SHUTDOWN), "shutdown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SB_FIXTURE_TEST(test_bucket_bounds),
		SB_FIXTURE_TEST(test_request_accounting),
		SB_FIXTURE_TEST(test_restart_keeps_counters_resets_gauges),
		SB_FIXTURE_TEST(test_exit_causes),
		SB_FIXTURE_TEST(test_sum_pool_over_slots),
		SB_FIXTURE_TEST(test_slots_used_is_a_high_water_mark),
		cmocka_unit_test(test_close_reason_names),
	};
	return cmocka_run_group_tests_name("scoreboard", tests, NULL, NULL);
}
