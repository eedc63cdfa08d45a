/* Unit tests of app/retry.c: jitter bounds, deadline clipping, breaker states. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "clock.h"
#include "retry.h"

struct fake_clock {
	int64_t now;
};

static int64_t fake_now(void *arg)
{
	return ((struct fake_clock *)arg)->now;
}

static void rng_is_deterministic_per_seed(void **state)
{
	(void)state;
	struct retry_rng a, b, c;
	retry_rng_seed(&a, 42);
	retry_rng_seed(&b, 42);
	retry_rng_seed(&c, 43);
	int same_c = 0;
	for (int i = 0; i < 100; i++) {
		uint64_t x = retry_rng_next(&a);
		assert_int_equal(x, retry_rng_next(&b));
		same_c += x == retry_rng_next(&c);
	}
	assert_true(same_c < 3);
}

static void rng_seed_zero_is_not_stuck(void **state)
{
	(void)state;
	struct retry_rng r;
	retry_rng_seed(&r, 0);
	uint64_t first = retry_rng_next(&r);
	assert_int_not_equal(first, 0);
	assert_int_not_equal(first, retry_rng_next(&r));
}

static void rng_uniform_covers_closed_range(void **state)
{
	(void)state;
	struct retry_rng r;
	int seen[4] = { 0 };
	retry_rng_seed(&r, 7);
	for (int i = 0; i < 2000; i++) {
		uint64_t x = retry_rng_uniform(&r, 3);
		assert_true(x <= 3);
		seen[x]++;
	}
	for (int i = 0; i < 4; i++)
		assert_true(seen[i] > 300); /* about 500 each */
	assert_int_equal(retry_rng_uniform(&r, 0), 0);
}

static void backoff_stays_within_exponential_ceiling(void **state)
{
	(void)state;
	struct retry_rng r;
	retry_rng_seed(&r, 1);
	for (int k = 0; k < 6; k++) {
		int64_t ceiling = 100LL << k;
		if (ceiling > 2000)
			ceiling = 2000;
		int64_t lo = INT64_MAX, hi = -1;
		for (int i = 0; i < 3000; i++) {
			int64_t w = retry_backoff_ms(&r, k, 100, 2000);
			assert_true(w >= 0 && w <= ceiling);
			lo = w < lo ? w : lo;
			hi = w > hi ? w : hi;
		}
		/* Full jitter: the whole range is used, not just the top. */
		assert_true(lo <= ceiling / 20);
		assert_true(hi >= ceiling - ceiling / 20);
	}
}

static void backoff_large_attempt_is_capped_without_overflow(void **state)
{
	(void)state;
	struct retry_rng r;
	retry_rng_seed(&r, 2);
	for (int i = 0; i < 200; i++) {
		int64_t w = retry_backoff_ms(&r, 200, 10000, 30000);
		assert_true(w >= 0 && w <= 30000);
	}
	assert_int_equal(retry_backoff_ms(&r, 3, 0, 100), 0);
}

static void backoff_until_never_reaches_deadline(void **state)
{
	(void)state;
	struct retry_rng r;
	int gave_up = 0, waited = 0;
	retry_rng_seed(&r, 3);
	for (int i = 0; i < 1000; i++) {
		int64_t w = retry_backoff_until(&r, 2, 100, 1000, 5000, 5050);
		if (w < 0) {
			gave_up++;
		} else {
			assert_true(w < 50);
			waited++;
		}
	}
	assert_true(gave_up > 0 && waited > 0);
	assert_int_equal(retry_backoff_until(&r, 0, 100, 1000, 5000, 5000), -1);
	assert_int_equal(retry_backoff_until(&r, 0, 100, 1000, 6000, 5000), -1);
	for (int i = 0; i < 100; i++) {
		int64_t w = retry_backoff_until(&r, 0, 100, 1000, 0, 10000);
		assert_true(w >= 0 && w <= 100);
	}
}

static void breaker_opens_after_threshold_consecutive_failures(void **state)
{
	(void)state;
	struct fake_clock clk = { 1000 };
	struct retry_breaker b;
	retry_breaker_init(&b, 5, 2000, fake_now, &clk);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(retry_breaker_allow(&b), RETRY_ALLOW);
		assert_false(retry_breaker_failure(&b, RETRY_ALLOW));
	}
	assert_int_equal(retry_breaker_state(&b), RETRY_BREAKER_CLOSED);
	assert_true(retry_breaker_failure(&b, RETRY_ALLOW));
	assert_int_equal(retry_breaker_state(&b), RETRY_BREAKER_OPEN);
	assert_int_equal(retry_breaker_allow(&b), RETRY_DENY);
	assert_int_equal(retry_breaker_opens(&b), 1);
	retry_breaker_destroy(&b);
}

static void breaker_success_resets_consecutive_count(void **state)
{
	(void)state;
	struct fake_clock clk = { 0 };
	struct retry_breaker b;
	retry_breaker_init(&b, 5, 2000, fake_now, &clk);
	for (int i = 0; i < 4; i++)
		assert_false(retry_breaker_failure(&b, RETRY_ALLOW));
	assert_false(retry_breaker_success(&b, RETRY_ALLOW)); /* was closed */
	for (int i = 0; i < 4; i++)
		assert_false(retry_breaker_failure(&b, RETRY_ALLOW));
	assert_int_equal(retry_breaker_state(&b), RETRY_BREAKER_CLOSED);
	retry_breaker_destroy(&b);
}

static void open_breaker(struct retry_breaker *b, int threshold)
{
	for (int i = 0; i < threshold; i++)
		(void)retry_breaker_failure(b, RETRY_ALLOW);
	assert_int_equal(retry_breaker_state(b), RETRY_BREAKER_OPEN);
}

static void breaker_half_open_lets_exactly_one_probe(void **state)
{
	(void)state;
	struct fake_clock clk = { 0 };
	struct retry_breaker b;
	retry_breaker_init(&b, 3, 2000, fake_now, &clk);
	open_breaker(&b, 3);
	clk.now = 1999;
	assert_int_equal(retry_breaker_allow(&b), RETRY_DENY);
	clk.now = 2000;
	assert_int_equal(retry_breaker_allow(&b), RETRY_PROBE);
	assert_int_equal(retry_breaker_state(&b), RETRY_BREAKER_HALF_OPEN);
	for (int i = 0; i < 10; i++)
		assert_int_equal(retry_breaker_allow(&b), RETRY_DENY);
	assert_true(retry_breaker_success(&b, RETRY_PROBE));
	assert_int_equal(retry_breaker_state(&b), RETRY_BREAKER_CLOSED);
	assert_int_equal(retry_breaker_allow(&b), RETRY_ALLOW);
	retry_breaker_destroy(&b);
}

static void breaker_failed_probe_reopens_for_another_cooldown(void **state)
{
	(void)state;
	struct fake_clock clk = { 0 };
	struct retry_breaker b;
	retry_breaker_init(&b, 3, 2000, fake_now, &clk);
	open_breaker(&b, 3);
	clk.now = 2500;
	assert_int_equal(retry_breaker_allow(&b), RETRY_PROBE);
	assert_true(retry_breaker_failure(&b, RETRY_PROBE));
	assert_int_equal(retry_breaker_state(&b), RETRY_BREAKER_OPEN);
	assert_int_equal(retry_breaker_opens(&b), 2);
	clk.now = 4499;
	assert_int_equal(retry_breaker_allow(&b), RETRY_DENY);
	clk.now = 4500;
	assert_int_equal(retry_breaker_allow(&b), RETRY_PROBE);
	retry_breaker_destroy(&b);
}

static void breaker_late_failures_do_not_extend_or_spoil(void **state)
{
	(void)state;
	struct fake_clock clk = { 0 };
	struct retry_breaker b;
	retry_breaker_init(&b, 2, 1000, fake_now, &clk);
	open_breaker(&b, 2);
	clk.now = 900; /* an attempt begun before the breaker opened fails late */
	assert_false(retry_breaker_failure(&b, RETRY_ALLOW));
	clk.now = 1000;
	assert_int_equal(retry_breaker_allow(&b), RETRY_PROBE);
	assert_false(retry_breaker_failure(&b, RETRY_ALLOW));
	assert_int_equal(retry_breaker_state(&b), RETRY_BREAKER_HALF_OPEN);
	assert_int_equal(retry_breaker_allow(&b), RETRY_DENY);
	retry_breaker_destroy(&b);
}

struct race {
	struct retry_breaker *b;
	pthread_barrier_t *start;
	enum retry_verdict got;
};

static void *race_allow(void *arg)
{
	struct race *r = arg;
	pthread_barrier_wait(r->start);
	r->got = retry_breaker_allow(r->b);
	return NULL;
}

static void breaker_concurrent_callers_get_one_probe(void **state)
{
	(void)state;
	enum { N = 8 };
	struct fake_clock clk = { 0 };
	struct retry_breaker b;
	pthread_barrier_t start;
	pthread_t t[N];
	struct race r[N];
	retry_breaker_init(&b, 1, 10, fake_now, &clk);
	open_breaker(&b, 1);
	clk.now = 10;
	pthread_barrier_init(&start, NULL, N);
	for (int i = 0; i < N; i++) {
		r[i] = (struct race){ &b, &start, RETRY_ALLOW };
		pthread_create(&t[i], NULL, race_allow, &r[i]);
	}
	int probes = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		probes += r[i].got == RETRY_PROBE;
		assert_int_not_equal(r[i].got, RETRY_ALLOW);
	}
	assert_int_equal(probes, 1);
	pthread_barrier_destroy(&start);
	retry_breaker_destroy(&b);
}

static void breaker_state_names(void **state)
{
	(void)state;
	assert_string_equal(retry_breaker_state_name(RETRY_BREAKER_CLOSED), "closed");
	assert_string_equal(retry_breaker_state_name(RETRY_BREAKER_OPEN), "open");
	assert_string_equal(retry_breaker_state_name(RETRY_BREAKER_HALF_OPEN), "half_open");
}

/* ---- the retry loop ---- */

struct scripted {
	enum retry_step steps[8]; /* what attempt n returns */
	int attempts;
	int64_t waits[8]; /* what on_failed was told, in order */
	int failed_calls;
	int64_t slept;
};

static struct scripted *sleeping; /* the fake sleeper's target */

static void fake_sleep(int64_t ms)
{
	sleeping->slept += ms;
}

static enum retry_step scripted_attempt(void *arg, int attempt)
{
	struct scripted *s = arg;

	assert_int_equal(attempt, s->attempts);
	return s->steps[s->attempts++];
}

static void scripted_failed(void *arg, int attempt, int64_t wait_ms)
{
	struct scripted *s = arg;

	assert_int_equal(attempt, s->failed_calls);
	s->waits[s->failed_calls++] = wait_ms;
}

static enum retry_step run_scripted(struct scripted *s, int retries, int64_t deadline_ms)
{
	struct retry_policy pol = retry_connect_policy(retries, 10);
	struct retry_rng rng;

	pol.sleep_ms = fake_sleep;
	sleeping = s;
	retry_rng_seed(&rng, 7);
	return retry_run(&pol, &rng, deadline_ms, scripted_attempt, scripted_failed, s);
}

static void loop_stops_at_first_done(void **state)
{
	(void)state;
	struct scripted s = { .steps = { RETRY_AGAIN, RETRY_DONE } };

	assert_int_equal(run_scripted(&s, 3, INT64_MAX), RETRY_DONE);
	assert_int_equal(s.attempts, 2);
	assert_int_equal(s.failed_calls, 1);
	assert_true(s.waits[0] >= 0 && s.waits[0] <= 10);
	assert_int_equal(s.slept, s.waits[0]);
}

static void loop_gives_up_after_its_retries(void **state)
{
	(void)state;
	struct scripted s = { .steps = { RETRY_AGAIN, RETRY_AGAIN, RETRY_AGAIN, RETRY_AGAIN } };

	assert_int_equal(run_scripted(&s, 2, INT64_MAX), RETRY_AGAIN);
	assert_int_equal(s.attempts, 3); /* the first attempt and two retries */
	assert_int_equal(s.failed_calls, 3);
	assert_true(s.waits[1] >= 0);
	assert_int_equal(s.waits[2], -1); /* told that it gave up */
}

static void loop_never_waits_past_the_deadline(void **state)
{
	(void)state;
	struct scripted s = { .steps = { RETRY_AGAIN, RETRY_DONE } };

	/* A deadline already passed: no wait, no second attempt. */
	assert_int_equal(run_scripted(&s, 5, clock_now_ms() - 1), RETRY_AGAIN);
	assert_int_equal(s.attempts, 1);
	assert_int_equal(s.waits[0], -1);
	assert_int_equal(s.slept, 0);
}

static void connect_policy_caps_at_two_seconds_or_the_base(void **state)
{
	(void)state;
	assert_int_equal(retry_connect_policy(3, 100).cap_ms, RETRY_BACKOFF_CAP_MS);
	assert_int_equal(retry_connect_policy(3, 5000).cap_ms, 5000);
	assert_int_equal(retry_connect_policy(3, 100).retries, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rng_is_deterministic_per_seed),
		cmocka_unit_test(rng_seed_zero_is_not_stuck),
		cmocka_unit_test(rng_uniform_covers_closed_range),
		cmocka_unit_test(backoff_stays_within_exponential_ceiling),
		cmocka_unit_test(backoff_large_attempt_is_capped_without_overflow),
		cmocka_unit_test(backoff_until_never_reaches_deadline),
		cmocka_unit_test(breaker_opens_after_threshold_consecutive_failures),
		cmocka_unit_test(breaker_success_resets_consecutive_count),
		cmocka_unit_test(breaker_half_open_lets_exactly_one_probe),
		cmocka_unit_test(breaker_failed_probe_reopens_for_another_cooldown),
		cmocka_unit_test(breaker_late_failures_do_not_extend_or_spoil),
		cmocka_unit_test(breaker_concurrent_callers_get_one_probe),
		cmocka_unit_test(breaker_state_names),
		cmocka_unit_test(loop_stops_at_first_done),
		cmocka_unit_test(loop_gives_up_after_its_retries),
		cmocka_unit_test(loop_never_waits_past_the_deadline),
		cmocka_unit_test(connect_policy_caps_at_two_seconds_or_the_base),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
