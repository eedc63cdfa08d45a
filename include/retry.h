/* retry: exponential backoff with full jitter, and the circuit breaker that
 * stops a worker from storming a dead database with connects (DESIGN.md §5).
 * Pure logic: the clock is injectable, the RNG state belongs to the caller. */
#ifndef NEONFCGI_RETRY_H
#define NEONFCGI_RETRY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* xorshift64* state; not shared between threads without the caller's lock. */
struct retry_rng {
	uint64_t s;
};

void retry_rng_seed(struct retry_rng *r, uint64_t seed);
uint64_t retry_rng_next(struct retry_rng *r);
/* Uniform in [0, n] inclusive. */
uint64_t retry_rng_uniform(struct retry_rng *r, uint64_t n);

/* Full jitter: the wait before retry number attempt (0 = first retry) is
 * uniform in [0, min(cap_ms, base_ms * 2^attempt)]. */
int64_t retry_backoff_ms(struct retry_rng *r, int attempt, int64_t base_ms, int64_t cap_ms);
/* The same wait, or -1 when waiting it from now_ms would reach deadline_ms
 * (a retry that starts at the deadline cannot succeed, so do not wait for it). */
int64_t retry_backoff_until(struct retry_rng *r, int attempt, int64_t base_ms, int64_t cap_ms,
			    int64_t now_ms, int64_t deadline_ms)
    __attribute__((warn_unused_result));

/* The cap of every connect backoff: a waking Neon compute answers within
 * seconds, so a caller looks again at least this often. */
#define RETRY_BACKOFF_CAP_MS 2000

/* How an operation is retried: up to `retries` times after the first attempt,
 * full-jitter waits from base_ms doubling up to cap_ms. */
struct retry_policy {
	int retries;
	int64_t base_ms;
	int64_t cap_ms;
	void (*sleep_ms)(int64_t ms); /* NULL: clock_sleep_ms (tests pass a fake) */
};

/* The policy of database connects: cap RETRY_BACKOFF_CAP_MS, or base_ms when
 * an operator configured a larger base. */
struct retry_policy retry_connect_policy(int retries, int64_t base_ms);

/* What one attempt of a retried operation came to. */
enum retry_step {
	RETRY_DONE,  /* succeeded, or failed in a way a retry cannot change */
	RETRY_AGAIN, /* failed transiently: worth another attempt */
};
typedef enum retry_step (*retry_attempt_fn)(void *arg, int attempt);
/* Told after each transient failure: wait_ms before the next attempt, or -1
 * when the loop gives up (no retries left, or the wait would reach the deadline). */
typedef void (*retry_failed_fn)(void *arg, int attempt, int64_t wait_ms);

/* The one connect-and-retry loop: run attempt (numbered from 0) until it is
 * RETRY_DONE or the loop gives up; never waits past deadline_ms (INT64_MAX:
 * no deadline). Returns the last step, so RETRY_AGAIN means it gave up.
 * on_failed may be NULL. rng is the caller's (not shared without a lock). */
enum retry_step retry_run(const struct retry_policy *pol, struct retry_rng *rng,
			  int64_t deadline_ms, retry_attempt_fn attempt, retry_failed_fn on_failed,
			  void *arg);

typedef int64_t (*retry_clock_fn)(void *arg);

enum retry_breaker_state { RETRY_BREAKER_CLOSED, RETRY_BREAKER_OPEN, RETRY_BREAKER_HALF_OPEN };

/* What the breaker lets a caller do: nothing, an ordinary attempt, or the one
 * probe of the half-open state (whose outcome decides the next state). */
enum retry_verdict { RETRY_DENY, RETRY_ALLOW, RETRY_PROBE };

struct retry_breaker {
	pthread_mutex_t mu;
	enum retry_breaker_state state;
	int failures;  /* consecutive, while closed */
	int threshold; /* failures that open it */
	int64_t cooldown_ms;
	int64_t opened_ms;
	uint64_t opens; /* times it went to open */
	retry_clock_fn clock;
	void *clock_arg;
};

/* clock NULL means clock_now_ms(). */
void retry_breaker_init(struct retry_breaker *b, int threshold, int64_t cooldown_ms,
			retry_clock_fn clock, void *clock_arg);
void retry_breaker_destroy(struct retry_breaker *b);
/* Ask before each connect attempt; a RETRY_PROBE must be reported back. */
enum retry_verdict retry_breaker_allow(struct retry_breaker *b) __attribute__((warn_unused_result));
/* Report an attempt made under verdict v. success returns true when it closed
 * a breaker that was not closed; failure returns true when it opened it. */
bool retry_breaker_success(struct retry_breaker *b, enum retry_verdict v);
bool retry_breaker_failure(struct retry_breaker *b, enum retry_verdict v);
enum retry_breaker_state retry_breaker_state(struct retry_breaker *b);
uint64_t retry_breaker_opens(struct retry_breaker *b);
const char *retry_breaker_state_name(enum retry_breaker_state s);

#endif
