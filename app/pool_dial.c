/* pool_dial: opening a connection for the pool, with breaker, retries and
 * the failure hold, on the dial's own thread. The counters are kept under
 * the dial's own mutex and added to the mirror as they happen; the pool's
 * mutex is never held here (done takes it, with the dial's mutex released). */
#include "pool_dial.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "log.h"
#include "scoreboard.h"
#include "thread.h"
#include "xalloc.h"

/* Neon's proxy refuses with "too many connection attempts" when a client
 * storms it: the next attempt waits at least this long (DESIGN.md §5). */
#define RATE_LIMIT_WAIT_MS 1000

struct pool_dial {
	const struct pool_connector *c;
	void *ctx;
	struct pool_dial_options o;
	struct retry_breaker breaker;
	pool_dial_done_fn done;
	void *done_arg;
	pthread_t thread;
	pthread_mutex_t mu; /* guards the members below */
	pthread_cond_t cv;  /* the thread waits here for work */
	bool wanted, stopping;
	int64_t want_deadline_ms;
	int64_t hold_until_ms; /* openings until then answer hold_err */
	struct db_error hold_err;
	struct retry_rng rng;
	enum db_category last_failure;
	struct pool_dial_stats st; /* breaker_state and breaker_opens: read from the breaker */
	struct sb_pool *mirror;
	atomic_bool reserving; /* waiting for a slot of the instance's bound */
};

static void fail_with(struct db_error *err, enum db_category cat, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Our own failures (no time left, breaker open) are transient. */
static void fail_with(struct db_error *err, enum db_category cat, const char *fmt, ...)
{
	va_list ap;

	err->category = cat;
	err->transient = true;
	err->sqlstate[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
}

void pool_dial_set_mirror(struct pool_dial *d, struct sb_pool *mirror)
{
	pthread_mutex_lock(&d->mu);
	d->mirror = mirror;
	pthread_mutex_unlock(&d->mu);
}

bool pool_dial_reserving(struct pool_dial *d)
{
	return atomic_load(&d->reserving);
}

bool pool_dial_breaker_open(struct pool_dial *d)
{
	return retry_breaker_state(&d->breaker) != RETRY_BREAKER_CLOSED;
}

void pool_dial_stats(struct pool_dial *d, struct pool_dial_stats *out)
{
	pthread_mutex_lock(&d->mu);
	*out = d->st;
	pthread_mutex_unlock(&d->mu);
	out->breaker_state = (int)retry_breaker_state(&d->breaker);
	out->breaker_opens = retry_breaker_opens(&d->breaker);
}

static void count_success(struct pool_dial *d, const struct pgconn_info *info)
{
	uint64_t us = (uint64_t)(info->connect_ms * 1000.0);

	pthread_mutex_lock(&d->mu);
	d->st.connects_ok++;
	d->st.connect_us += us;
	if (d->mirror) {
		int b = scoreboard_bucket((int64_t)us);
		sb_add(&d->mirror->connects_ok, 1);
		sb_add(&d->mirror->connect_us, us);
		if (b < SB_DURATION_BUCKETS)
			sb_add(&d->mirror->connect_buckets[b], 1);
	}
	pthread_mutex_unlock(&d->mu);
}

/* An attempt is bounded by the connect timeout alone, not by the deadline
 * of whoever asked: a compute that wakes in 3 s is worth the wait even when
 * the probe that woke it gave up after 1.5 s. */
static void *try_connect(struct pool_dial *d, enum retry_verdict v, struct pgconn_info *info,
			 struct db_error *err)
{
	void *h = d->c->connect(d->ctx, clock_now_ms() + d->o.connect_timeout_ms, info, err);
	if (!h)
		return NULL;
	if (retry_breaker_success(&d->breaker, v))
		log_info("db circuit breaker closed");
	count_success(d, info);
	return h;
}

static void log_connect_failure(const struct pool_dial *d, int attempt, const struct db_error *err,
				int64_t wait, bool opened)
{
	const char *cat = db_category_name(err->category);
	if (wait >= 0)
		log_warnx("db connect failed category=%s attempt=%d sqlstate=%s reason=\"%s\" "
			  "next_backoff_ms=%lld",
			  cat, attempt + 1, err->sqlstate, err->message, (long long)wait);
	else
		log_warnx("db connect failed category=%s attempt=%d sqlstate=%s reason=\"%s\" "
			  "retry=no transient=%s",
			  cat, attempt + 1, err->sqlstate, err->message,
			  err->transient ? "yes" : "no");
	if (opened)
		log_warnx("db circuit breaker open failures=%d cooldown_ms=%lld",
			  d->o.breaker_threshold, (long long)d->o.breaker_cooldown_ms);
}

static void breaker_denied(struct pool_dial *d, struct db_error *err)
{
	pthread_mutex_lock(&d->mu);
	d->st.breaker_rejects++;
	enum db_category last = d->last_failure;
	pthread_mutex_unlock(&d->mu);
	fail_with(err, DB_CIRCUIT_OPEN,
		  "circuit breaker open after repeated connect failures (last: %s)",
		  db_category_name(last));
	err->cause = last;
}

static bool stopping(struct pool_dial *d)
{
	pthread_mutex_lock(&d->mu);
	bool s = d->stopping;
	pthread_mutex_unlock(&d->mu);
	return s;
}

/* One dial() call: what retry_run()'s callbacks share. */
struct connect_try {
	struct pool_dial *d;
	int64_t deadline_ms;
	struct pgconn_info *info;
	struct db_error *err;
	void *handle; /* the connection, once an attempt succeeded */
	/* The backoff's jitter: the dial's RNG is under its mutex, so a call
	 * that fails draws its own seed from it once, under the lock. */
	struct retry_rng rng;
	bool rng_seeded;
};

/* Counts a failed attempt; true when it opened the breaker. */
static bool count_failure(struct connect_try *t, enum retry_verdict v)
{
	struct pool_dial *d = t->d;
	const struct db_error *err = t->err;
	/* Only transient failures trip the breaker: a permanent one (wrong
	 * password, database missing) is never retried anyway, so each caller
	 * costs the server one attempt and keeps getting the true category. A
	 * half-open probe must be answered either way. */
	bool opened = (err->transient || v == RETRY_PROBE) && retry_breaker_failure(&d->breaker, v);
	unsigned cat = (unsigned)err->category < DB_CATEGORY_COUNT ? err->category : DB_UNREACHABLE;

	pthread_mutex_lock(&d->mu);
	d->st.connects_failed[cat]++;
	d->last_failure = (enum db_category)cat;
	if (d->mirror) {
		sb_add(&d->mirror->connects_failed[cat], 1);
		if (opened)
			sb_add(&d->mirror->breaker_opens, 1);
	}
	if (!t->rng_seeded) {
		retry_rng_seed(&t->rng, retry_rng_next(&d->rng));
		t->rng_seeded = true;
	}
	pthread_mutex_unlock(&d->mu);
	return opened;
}

/* One attempt, the breaker asked first. RETRY_AGAIN only after a transient
 * failure that left the breaker closed; connect_failed() then counts and logs
 * it with the backoff retry_run() chose. */
static enum retry_step connect_attempt(void *arg, int attempt)
{
	struct connect_try *t = arg;

	/* The first attempt always runs; a retry only while someone may still
	 * take its connection. */
	if (attempt > 0 && (clock_now_ms() >= t->deadline_ms || stopping(t->d))) {
		fail_with(t->err, DB_TIMEOUT, "no time left to connect");
		return RETRY_DONE;
	}
	enum retry_verdict v = retry_breaker_allow(&t->d->breaker);
	if (v == RETRY_DENY) {
		breaker_denied(t->d, t->err);
		return RETRY_DONE;
	}
	t->handle = try_connect(t->d, v, t->info, t->err);
	if (t->handle)
		return RETRY_DONE;
	bool opened = count_failure(t, v);
	if (t->err->transient && !opened)
		return RETRY_AGAIN;
	log_connect_failure(t->d, attempt, t->err, -1, opened);
	return RETRY_DONE;
}

static void connect_failed(void *arg, int attempt, int64_t wait_ms)
{
	struct connect_try *t = arg;
	struct pool_dial *d = t->d;

	if (wait_ms >= 0) {
		pthread_mutex_lock(&d->mu);
		d->st.retries++;
		if (d->mirror)
			sb_add(&d->mirror->retries, 1);
		pthread_mutex_unlock(&d->mu);
	}
	log_connect_failure(d, attempt, t->err, wait_ms, false);
}

bool pool_dial_held(struct pool_dial *d, struct db_error *err)
{
	pthread_mutex_lock(&d->mu);
	bool held = clock_now_ms() < d->hold_until_ms;
	if (held) {
		*err = d->hold_err;
		d->st.held++;
	}
	pthread_mutex_unlock(&d->mu);
	return held;
}

/* A failure that will not go away by itself (DESIGN.md §5) is answered from
 * memory for DB_FAILURE_HOLD_MS: a wrong password must not reach Neon's proxy
 * once per probe. Neon's rate limit holds the dial back for a second. */
static void hold_failure(struct pool_dial *d, const struct db_error *err)
{
	int64_t hold_ms = 0;

	if (dberror_is_held(err->category))
		hold_ms = d->o.failure_hold_ms;
	else if (err->category == DB_RATE_LIMITED)
		hold_ms = RATE_LIMIT_WAIT_MS;
	if (hold_ms <= 0)
		return;
	pthread_mutex_lock(&d->mu);
	d->hold_until_ms = clock_now_ms() + hold_ms;
	d->hold_err = *err;
	pthread_mutex_unlock(&d->mu);
	log_warnx("db connects held category=%s hold_ms=%lld", db_category_name(err->category),
		  (long long)hold_ms);
}

static void *dial(struct pool_dial *d, int64_t deadline_ms, struct pgconn_info *info,
		  struct db_error *err)
{
	struct connect_try t = { .d = d, .deadline_ms = deadline_ms, .info = info, .err = err };

	if (pool_dial_held(d, err))
		return NULL;
	/* No slot within the asker's deadline: the instance is at its bound,
	 * which is no fault of the database (no breaker, no hold). */
	if (d->o.quota.reserve) {
		atomic_store(&d->reserving, true);
		if (d->o.quota.reserve(d->o.quota.arg, deadline_ms) < 0) {
			/* Still "reserving" until the pool is told: a waiter that
			 * times out meanwhile answers pool_timeout, as it will. */
			fail_with(err, DB_POOL_TIMEOUT, "instance connection bound reached");
			return NULL;
		}
		atomic_store(&d->reserving, false);
	}
	retry_run(&d->o.retry, &t.rng, deadline_ms, connect_attempt, connect_failed, &t);
	if (!t.handle) {
		if (d->o.quota.release)
			d->o.quota.release(d->o.quota.arg);
		hold_failure(d, err);
	}
	return t.handle;
}

/* Waits for a request, opens, tells the pool; until pool_dial_free. */
static void *dial_main(void *arg)
{
	struct pool_dial *d = arg;

	pthread_mutex_lock(&d->mu);
	for (;;) {
		while (!d->wanted && !d->stopping)
			pthread_cond_wait(&d->cv, &d->mu);
		if (d->stopping)
			break;
		d->wanted = false;
		int64_t deadline = d->want_deadline_ms;
		pthread_mutex_unlock(&d->mu);

		struct pgconn_info info = { 0 };
		struct db_error err = { 0 };
		void *h = dial(d, deadline, &info, &err);
		d->done(d->done_arg, h, &info, &err);
		atomic_store(&d->reserving, false);
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

void pool_dial_request(struct pool_dial *d, int64_t deadline_ms)
{
	pthread_mutex_lock(&d->mu);
	d->wanted = true;
	d->want_deadline_ms = deadline_ms;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static void free_dial(struct pool_dial *d)
{
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	retry_breaker_destroy(&d->breaker);
	free(d);
}

struct pool_dial *pool_dial_new(const struct pool_connector *c, void *ctx,
				const struct pool_dial_options *o, pool_dial_done_fn done,
				void *done_arg)
{
	struct pool_dial *d = xcalloc(1, sizeof *d);

	d->c = c;
	d->ctx = ctx;
	d->o = *o;
	d->done = done;
	d->done_arg = done_arg;
	retry_breaker_init(&d->breaker, o->breaker_threshold, o->breaker_cooldown_ms, NULL, NULL);
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	retry_rng_seed(&d->rng, o->seed);
	int rc = thread_start(&d->thread, dial_main, d);
	if (rc == 0)
		return d;
	errno = rc;
	log_error("db pool cannot start its connect thread");
	free_dial(d);
	return NULL;
}

void pool_dial_free(struct pool_dial *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->stopping = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	/* An attempt in flight ends within the connect timeout; no retry
	 * follows it once stopping is seen. */
	pthread_join(d->thread, NULL);
	free_dial(d);
}
