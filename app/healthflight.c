/* healthflight: the single flight of /health/db checks in one worker.
 *
 * Generations: `started` counts checks begun, `done` the last one finished.
 * A request that finds check N running needs generation N+1 and waits; when N
 * ends, the first waiter to wake finds nothing running and starts N+1, which
 * every other waiter that needed it shares. A request that finds nothing
 * running starts a check at once. The check runs outside the mutex. */
#include "healthflight.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "xalloc.h"

struct healthflight {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC: a check ended */
	healthflight_check_fn check;
	void *arg;
	bool running;
	uint64_t started, done;      /* generations: checks begun, last one finished */
	struct health_db_check last; /* the result of generation `done` */
};

struct healthflight *healthflight_new(healthflight_check_fn check, void *arg)
{
	struct healthflight *f = xcalloc(1, sizeof *f);
	pthread_condattr_t a;

	f->check = check;
	f->arg = arg;
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cv, &a);
	pthread_condattr_destroy(&a);
	return f;
}

void healthflight_free(struct healthflight *f)
{
	if (!f)
		return;
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

/* Under mu: run generation ++started, publish it, wake the waiters. */
static void run_locked(struct healthflight *f, int64_t deadline_ms, struct health_db_check *out)
{
	uint64_t gen = ++f->started;

	f->running = true;
	pthread_mutex_unlock(&f->mu);
	f->check(f->arg, deadline_ms, out);
	pthread_mutex_lock(&f->mu);
	f->last = *out;
	f->done = gen;
	f->running = false;
	pthread_cond_broadcast(&f->cv);
}

static void timed_out(struct health_db_check *out, int64_t waited_us)
{
	*out = (struct health_db_check){ .ok = false, .category = DB_TIMEOUT };
	out->response_ms = (double)waited_us / 1000.0;
	health_stamp(out);
}

enum healthflight_source healthflight_run(struct healthflight *f, int64_t deadline_ms,
					  struct health_db_check *out)
{
	int64_t t0 = clock_now_us();
	struct timespec until = { .tv_sec = deadline_ms / 1000,
				  .tv_nsec = (deadline_ms % 1000) * 1000000 };
	enum healthflight_source src = HEALTHFLIGHT_TIMEOUT;

	pthread_mutex_lock(&f->mu);
	/* The first generation that begins after now. */
	uint64_t need = f->started + 1;
	for (;;) {
		if (f->done >= need) {
			*out = f->last;
			src = HEALTHFLIGHT_SHARED;
			break;
		}
		if (!f->running) {
			run_locked(f, deadline_ms, out);
			src = HEALTHFLIGHT_CHECK;
			break;
		}
		if (pthread_cond_timedwait(&f->cv, &f->mu, &until) == ETIMEDOUT && f->done < need)
			break;
	}
	pthread_mutex_unlock(&f->mu);
	if (src == HEALTHFLIGHT_TIMEOUT)
		timed_out(out, clock_now_us() - t0);
	return src;
}

uint64_t healthflight_started(struct healthflight *f)
{
	pthread_mutex_lock(&f->mu);
	uint64_t n = f->started;
	pthread_mutex_unlock(&f->mu);
	return n;
}
