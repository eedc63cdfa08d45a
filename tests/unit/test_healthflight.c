/* Unit tests of app/healthflight.c against a fake check that blocks on a
 * gate: requests that arrive while a check runs wait for the next one and
 * share it, never more than one check runs, and a waiter's own deadline ends
 * its wait. Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "healthflight.h"

/* How late a thread may wake on a loaded machine (valgrind, other runs). */
#define SLACK_MS 2000

static struct fake {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int running, max_running, started, finished;
	bool gated;
	int64_t begun_ms[64]; /* when check k (1-based) began */
} F;

static void fake_reset(void)
{
	memset(&F, 0, sizeof F);
	pthread_mutex_init(&F.mu, NULL);
	pthread_cond_init(&F.cv, NULL);
}

static void set_gate(bool closed)
{
	pthread_mutex_lock(&F.mu);
	F.gated = closed;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
}

/* The check: records its generation as response_ms, waits at the gate. */
static void fake_check(void *arg, int64_t deadline_ms, struct health_db_check *out)
{
	(void)arg;
	(void)deadline_ms;
	pthread_mutex_lock(&F.mu);
	int gen = ++F.started;
	if (gen < 64)
		F.begun_ms[gen] = clock_now_ms();
	if (++F.running > F.max_running)
		F.max_running = F.running;
	pthread_cond_broadcast(&F.cv);
	int64_t give_up = clock_now_ms() + 10 * SLACK_MS;
	while (F.gated && clock_now_ms() < give_up) {
		pthread_mutex_unlock(&F.mu);
		clock_sleep_ms(1);
		pthread_mutex_lock(&F.mu);
	}
	F.running--;
	F.finished++;
	pthread_mutex_unlock(&F.mu);
	*out = (struct health_db_check){ .ok = true, .category = DB_OK, .response_ms = gen };
	health_stamp(out);
}

/* Wait (bounded) until the fake has begun n checks. */
static bool wait_started(int n)
{
	int64_t until = clock_now_ms() + SLACK_MS;
	bool ok;

	pthread_mutex_lock(&F.mu);
	while (F.started < n && clock_now_ms() < until) {
		pthread_mutex_unlock(&F.mu);
		clock_sleep_ms(1);
		pthread_mutex_lock(&F.mu);
	}
	ok = F.started >= n;
	pthread_mutex_unlock(&F.mu);
	return ok;
}

struct caller {
	pthread_t tid;
	struct healthflight *f;
	int64_t timeout_ms, arrived_ms, returned_ms;
	enum healthflight_source src;
	struct health_db_check chk;
};

static void *caller_main(void *arg)
{
	struct caller *c = arg;

	c->arrived_ms = clock_now_ms();
	c->src = healthflight_run(c->f, c->arrived_ms + c->timeout_ms, &c->chk);
	c->returned_ms = clock_now_ms();
	return NULL;
}

static void start_caller(struct caller *c, struct healthflight *f, int64_t timeout_ms)
{
	*c = (struct caller){ .f = f, .timeout_ms = timeout_ms };
	assert_int_equal(pthread_create(&c->tid, NULL, caller_main, c), 0);
}

static void alone_runs_its_own_check(void **state)
{
	(void)state;
	fake_reset();
	struct healthflight *f = healthflight_new(fake_check, NULL);
	struct health_db_check chk;

	assert_int_equal(healthflight_run(f, clock_now_ms() + 1000, &chk), HEALTHFLIGHT_CHECK);
	assert_true(chk.ok);
	assert_int_equal(healthflight_run(f, clock_now_ms() + 1000, &chk), HEALTHFLIGHT_CHECK);
	assert_int_equal(F.started, 2); /* sequential requests never share */
	assert_int_equal(healthflight_started(f), 2);
	healthflight_free(f);
}

/* Check 1 runs; 8 requests arrive during it; they all share check 2, begun
 * after they arrived; only two checks ever ran, one at a time. */
static void arrivals_during_a_check_share_the_next(void **state)
{
	(void)state;
	enum { N = 8 };
	fake_reset();
	struct healthflight *f = healthflight_new(fake_check, NULL);
	struct caller first, later[N];

	set_gate(true);
	start_caller(&first, f, 5 * SLACK_MS);
	assert_true(wait_started(1));
	for (int i = 0; i < N; i++)
		start_caller(&later[i], f, 5 * SLACK_MS);
	clock_sleep_ms(50); /* let them queue; the outcome must not depend on it */
	set_gate(false);
	pthread_join(first.tid, NULL);
	int checks = 0, shared = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(later[i].tid, NULL);
		checks += later[i].src == HEALTHFLIGHT_CHECK;
		shared += later[i].src == HEALTHFLIGHT_SHARED;
		assert_true(later[i].chk.ok);
		/* Each answer comes from check 2, which began after it arrived. */
		assert_true(later[i].chk.response_ms == 2.0);
		assert_true(F.begun_ms[2] >= later[i].arrived_ms);
	}
	assert_int_equal(first.src, HEALTHFLIGHT_CHECK);
	assert_true(first.chk.response_ms == 1.0);
	assert_int_equal(checks, 1);
	assert_int_equal(shared, N - 1);
	assert_int_equal(F.started, 2);
	assert_int_equal(F.max_running, 1);
	healthflight_free(f);
}

/* A waiter whose deadline passes while the check runs answers timeout on
 * its own, in time; the check goes on and its runner gets its answer. */
static void waiter_times_out_on_its_own_deadline(void **state)
{
	(void)state;
	fake_reset();
	struct healthflight *f = healthflight_new(fake_check, NULL);
	struct caller first, hurried;

	set_gate(true);
	start_caller(&first, f, 5 * SLACK_MS);
	assert_true(wait_started(1));
	start_caller(&hurried, f, 100);
	pthread_join(hurried.tid, NULL);
	assert_int_equal(hurried.src, HEALTHFLIGHT_TIMEOUT);
	assert_false(hurried.chk.ok);
	assert_int_equal(hurried.chk.category, DB_TIMEOUT);
	assert_true(hurried.returned_ms - hurried.arrived_ms >= 100);
	assert_true(hurried.returned_ms - hurried.arrived_ms < 100 + SLACK_MS);
	assert_int_equal(F.started, 1); /* it never started a check of its own */
	set_gate(false);
	pthread_join(first.tid, NULL);
	assert_int_equal(first.src, HEALTHFLIGHT_CHECK);
	healthflight_free(f);
}

/* Many callers in a loop: never more than one check at a time, and every
 * answer is from a check that began after its request arrived. */
static void never_more_than_one_in_flight(void **state)
{
	(void)state;
	enum { N = 16, ROUNDS = 20 };
	fake_reset();
	struct healthflight *f = healthflight_new(fake_check, NULL);

	for (int r = 0; r < ROUNDS; r++) {
		struct caller c[N];
		for (int i = 0; i < N; i++)
			start_caller(&c[i], f, 5 * SLACK_MS);
		for (int i = 0; i < N; i++) {
			pthread_join(c[i].tid, NULL);
			assert_int_not_equal(c[i].src, HEALTHFLIGHT_TIMEOUT);
			int gen = (int)c[i].chk.response_ms;
			assert_true(gen >= 1 && gen <= F.started);
			if (gen < 64)
				assert_true(F.begun_ms[gen] >= c[i].arrived_ms);
		}
	}
	assert_int_equal(F.max_running, 1);
	assert_true(F.started <= N * ROUNDS);
	healthflight_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(alone_runs_its_own_check),
		cmocka_unit_test(arrivals_during_a_check_share_the_next),
		cmocka_unit_test(waiter_times_out_on_its_own_deadline),
		cmocka_unit_test(never_more_than_one_in_flight),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
