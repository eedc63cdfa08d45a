/* Unit tests of app/dbslots.c: the instance-wide bound on connections. A
 * reservation past the bound waits (bounded by its deadline), a release lets
 * a waiter in, the master reclaims a dead worker's slots, a lowered bound
 * holds new reservations back, and a worker killed while holding the lock
 * does not wedge the others. Workers are forked processes sharing the map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "dbslots.h"
#include "sb_fixture.h"
#include "scoreboard.h"

#define SLACK_MS 2000

static int setup(void **state)
{
	if (sb_fixture_setup(state) < 0)
		return -1;
	return dbslots_init_master(*state, 4);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, sb_fixture_teardown)

static void reserve_up_to_the_bound(void **state)
{
	struct scoreboard *sb = *state;

	for (int i = 0; i < 4; i++)
		assert_int_equal(dbslots_reserve(sb, i % 2, clock_now_ms()), 0);
	assert_int_equal(dbslots_held(sb), 4);
	int64_t t0 = clock_now_ms();
	assert_int_equal(dbslots_reserve(sb, 2, t0 + 60), -1); /* waits, then gives up */
	int64_t waited = clock_now_ms() - t0;
	assert_true(waited >= 60 && waited < 60 + SLACK_MS);
	assert_int_equal(dbslots_held(sb), 4);
	dbslots_release(sb, 0);
	assert_int_equal(dbslots_reserve(sb, 2, clock_now_ms()), 0);
	assert_int_equal(dbslots_held(sb), 4);
}

/* A worker (a child process) holds slots and is killed: nobody gets them
 * until the master reclaims them, exactly as many as it held. */
static void reclaim_after_a_worker_dies(void **state)
{
	struct scoreboard *sb = *state;
	int pipefd[2];
	char c;

	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int ok = dbslots_reserve(sb, 5, clock_now_ms()) == 0 &&
			 dbslots_reserve(sb, 5, clock_now_ms()) == 0 &&
			 dbslots_reserve(sb, 5, clock_now_ms()) == 0;
		(void)!write(pipefd[1], ok ? "y" : "n", 1);
		pause();
		_exit(0);
	}
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	assert_int_equal(dbslots_reserve(sb, 1, clock_now_ms()), 0);
	assert_int_equal(dbslots_reserve(sb, 1, clock_now_ms() + 20), -1);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_int_equal(dbslots_held(sb), 4); /* dead, not yet reaped: still counted */
	assert_int_equal(dbslots_reclaim(sb, 5), 3);
	assert_int_equal(dbslots_held(sb), 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(dbslots_reserve(sb, 1, clock_now_ms()), 0);
	close(pipefd[0]);
	close(pipefd[1]);
}

/* A reload lowers the bound: the old generation keeps what it holds, and
 * the new one waits until enough of it is released. */
static void lowered_bound_holds_new_reservations_back(void **state)
{
	struct scoreboard *sb = *state;

	for (int i = 0; i < 4; i++)
		assert_int_equal(dbslots_reserve(sb, 0, clock_now_ms()), 0);
	dbslots_set_bound(sb, 2);
	assert_int_equal(dbslots_reserve(sb, 1, clock_now_ms() + 10), -1);
	dbslots_release(sb, 0);
	dbslots_release(sb, 0);
	assert_int_equal(dbslots_reserve(sb, 1, clock_now_ms() + 10), -1); /* 2 held, bound 2 */
	dbslots_release(sb, 0);
	assert_int_equal(dbslots_reserve(sb, 1, clock_now_ms()), 0);
	assert_int_equal(dbslots_held(sb), 2);
}

/* A worker killed while it holds the lock: the robust mutex lets the next
 * locker on. */
static void worker_killed_holding_the_lock(void **state)
{
	struct scoreboard *sb = *state;
	int pipefd[2];
	char c;

	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pthread_mutex_lock(&sb->inst.db_slots_mu);
		(void)!write(pipefd[1], "y", 1);
		pause();
		_exit(0);
	}
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_int_equal(dbslots_reserve(sb, 0, clock_now_ms()), 0);
	assert_int_equal(dbslots_held(sb), 1);
	dbslots_release(sb, 0);
	assert_int_equal(dbslots_held(sb), 0);
	close(pipefd[0]);
	close(pipefd[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(reserve_up_to_the_bound),
		TEST(reclaim_after_a_worker_dies),
		TEST(lowered_bound_holds_new_reservations_back),
		TEST(worker_killed_holding_the_lock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
