/* retry: backoff with full jitter and the connect circuit breaker. */
#include "retry.h"

#include "clock.h"

void retry_rng_seed(struct retry_rng *r, uint64_t seed)
{
	/* xorshift has a fixed point at 0; splitmix the seed so that small or
	 * similar seeds (pids, worker numbers) still give unrelated streams. */
	uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	r->s = z ? z : 0x2545f4914f6cdd1dULL;
}

uint64_t retry_rng_next(struct retry_rng *r)
{
	uint64_t x = r->s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

uint64_t retry_rng_uniform(struct retry_rng *r, uint64_t n)
{
	if (n == UINT64_MAX)
		return retry_rng_next(r);
	/* Rejection sampling: no modulo bias, and the loop almost never repeats
	 * for the small ranges used here. */
	uint64_t span = n + 1;
	uint64_t limit = UINT64_MAX - UINT64_MAX % span;
	uint64_t x;
	do
		x = retry_rng_next(r);
	while (x >= limit);
	return x % span;
}

int64_t retry_backoff_ms(struct retry_rng *r, int attempt, int64_t base_ms, int64_t cap_ms)
{
	if (base_ms <= 0 || cap_ms <= 0)
		return 0;
	int64_t ceiling = base_ms;
	for (int i = 0; i < attempt && ceiling < cap_ms; i++)
		ceiling *= 2; /* stops at the cap, so it cannot overflow */
	if (ceiling > cap_ms)
		ceiling = cap_ms;
	return (int64_t)retry_rng_uniform(r, (uint64_t)ceiling);
}

int64_t retry_backoff_until(struct retry_rng *r, int attempt, int64_t base_ms, int64_t cap_ms,
			    int64_t now_ms, int64_t deadline_ms)
{
	int64_t wait = retry_backoff_ms(r, attempt, base_ms, cap_ms);
	if (now_ms >= deadline_ms || wait >= deadline_ms - now_ms)
		return -1;
	return wait;
}

struct retry_policy retry_connect_policy(int retries, int64_t base_ms)
{
	struct retry_policy pol = {
		.retries = retries,
		.base_ms = base_ms,
		.cap_ms = base_ms > RETRY_BACKOFF_CAP_MS ? base_ms : RETRY_BACKOFF_CAP_MS,
	};
	return pol;
}

enum retry_step retry_run(const struct retry_policy *pol, struct retry_rng *rng,
			  int64_t deadline_ms, retry_attempt_fn attempt, retry_failed_fn on_failed,
			  void *arg)
{
	for (int n = 0;; n++) {
		if (attempt(arg, n) == RETRY_DONE)
			return RETRY_DONE;
		int64_t wait = -1;
		if (n < pol->retries)
			wait = retry_backoff_until(rng, n, pol->base_ms, pol->cap_ms,
						   clock_now_ms(), deadline_ms);
		if (on_failed != NULL)
			on_failed(arg, n, wait);
		if (wait < 0)
			return RETRY_AGAIN;
		(pol->sleep_ms != NULL ? pol->sleep_ms : clock_sleep_ms)(wait);
	}
}

static int64_t breaker_now(const struct retry_breaker *b)
{
	return b->clock ? b->clock(b->clock_arg) : clock_now_ms();
}

void retry_breaker_init(struct retry_breaker *b, int threshold, int64_t cooldown_ms,
			retry_clock_fn clock, void *clock_arg)
{
	pthread_mutex_init(&b->mu, NULL);
	b->state = RETRY_BREAKER_CLOSED;
	b->failures = 0;
	b->threshold = threshold > 0 ? threshold : 1;
	b->cooldown_ms = cooldown_ms;
	b->opened_ms = 0;
	b->opens = 0;
	b->clock = clock;
	b->clock_arg = clock_arg;
}

void retry_breaker_destroy(struct retry_breaker *b)
{
	pthread_mutex_destroy(&b->mu);
}

enum retry_verdict retry_breaker_allow(struct retry_breaker *b)
{
	enum retry_verdict v = RETRY_DENY;

	pthread_mutex_lock(&b->mu);
	if (b->state == RETRY_BREAKER_CLOSED) {
		v = RETRY_ALLOW;
	} else if (b->state == RETRY_BREAKER_OPEN &&
		   breaker_now(b) - b->opened_ms >= b->cooldown_ms) {
		b->state = RETRY_BREAKER_HALF_OPEN;
		v = RETRY_PROBE;
	}
	/* Half-open with the probe in flight: everyone else is denied, so a
	 * recovering database sees one connect per worker, not a stampede. */
	pthread_mutex_unlock(&b->mu);
	return v;
}

bool retry_breaker_success(struct retry_breaker *b, enum retry_verdict v)
{
	(void)v; /* any success proves the database reachable again */
	pthread_mutex_lock(&b->mu);
	bool closed_now = b->state != RETRY_BREAKER_CLOSED;
	b->state = RETRY_BREAKER_CLOSED;
	b->failures = 0;
	pthread_mutex_unlock(&b->mu);
	return closed_now;
}

static void breaker_open(struct retry_breaker *b)
{
	b->state = RETRY_BREAKER_OPEN;
	b->opened_ms = breaker_now(b);
	b->failures = 0;
	b->opens++;
}

bool retry_breaker_failure(struct retry_breaker *b, enum retry_verdict v)
{
	pthread_mutex_lock(&b->mu);
	bool probe_failed = b->state == RETRY_BREAKER_HALF_OPEN && v == RETRY_PROBE;
	bool too_many = b->state == RETRY_BREAKER_CLOSED && ++b->failures >= b->threshold;
	/* Any other failure is a late one, of an attempt begun before the
	 * breaker opened: it neither extends the cool-down nor spoils the probe. */
	bool opened = probe_failed || too_many;
	if (opened)
		breaker_open(b);
	pthread_mutex_unlock(&b->mu);
	return opened;
}

enum retry_breaker_state retry_breaker_state(struct retry_breaker *b)
{
	pthread_mutex_lock(&b->mu);
	enum retry_breaker_state s = b->state;
	pthread_mutex_unlock(&b->mu);
	return s;
}

uint64_t retry_breaker_opens(struct retry_breaker *b)
{
	pthread_mutex_lock(&b->mu);
	uint64_t n = b->opens;
	pthread_mutex_unlock(&b->mu);
	return n;
}

const char *retry_breaker_state_name(enum retry_breaker_state s)
{
	switch (s) {
	case RETRY_BREAKER_CLOSED: return "closed";
	case RETRY_BREAKER_OPEN: return "open";
	case RETRY_BREAKER_HALF_OPEN: return "half_open";
	}
	return "unknown";
}
