/* pool: the per-worker connection pool (DESIGN.md §5).
 *
 * Accounting: every connection the pool is answerable for is idle (on the
 * stack), in use (held by a caller) or opening (being connected by the dial's
 * thread, one at a time); their sum never exceeds size + max_overflow.
 * Waiters exist only while no connection is idle, and are served strictly in
 * arrival order: a release or a new connection goes to the oldest waiter.
 * A caller that needs a new connection asks the dial for one and waits like
 * any waiter, so an attempt outlives the caller that started it, and callers
 * that come while one is being opened wait for it instead of opening more
 * (no connect storm against a waking or blackholed database). */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "pool_dial.h"
#include "pool_mirror.h"
#include "retry.h"
#include "scoreboard.h"
#include "thread.h"
#include "xalloc.h"

#define NEVER INT64_MAX

/* Five consecutive connect failures open the breaker: with the default
 * DB_RETRY_ATTEMPTS=3 one caller makes up to four attempts, so a single
 * unlucky caller (a lost SYN, one refused connect during a restart) never
 * opens it, while a second caller failing confirms an outage. */
#define BREAKER_THRESHOLD 5
/* Two seconds open: a dead database sees at most one probe per worker every
 * 2 s instead of WORKER_THREADS callers retrying, and recovery is noticed
 * within a load balancer's usual health-check interval. */
#define BREAKER_COOLDOWN_MS 2000
/* A connection used within the last second is trusted after the socket
 * check alone; a round trip per request would double the latency. */
#define PRE_PING_QUIET_MS 1000

struct pool_conn {
	void *handle;
	int64_t created_ms;
	int64_t expires_ms;    /* jittered end of life, NEVER without one */
	int64_t idle_since_ms; /* last returned (or connected) */
};

struct pool_waiter {
	pthread_cond_t cv;
	struct pool_waiter *next;
	int64_t deadline_ms;
	struct pool_conn *conn; /* handed over by a release or a new connection */
	bool fresh;             /* conn was just opened: nothing to vet */
	bool failed;            /* the opening it waited for failed: err says why */
	struct db_error err;
};

struct pool {
	pthread_mutex_t mu;
	pthread_condattr_t cattr; /* CLOCK_MONOTONIC, for every condvar */
	pthread_cond_t maint_cv;
	pthread_t maint;
	bool stopping;
	int64_t maint_next_ms; /* when the maintenance thread wakes next */
	struct pool_options o;
	const struct pool_connector *c;
	void *ctx;
	struct pool_conn **idle;   /* stack: [0] idle longest, top most recent */
	struct pool_conn **doomed; /* maintenance thread's scratch */
	enum sb_close_reason *doomed_why;
	int n_idle, n_in_use, n_opening, n_waiting;
	int n_closing; /* detached for closing, still open: they count toward the bound */
	struct pool_waiter *head, *tail;
	struct pool_dial *dial;    /* opens connections; counts the connects */
	struct retry_rng rng;      /* lifetime jitter */
	struct pool_stats st;      /* counters; the rest is filled in pool_stats() */
	struct pool_mirror mirror; /* the copy in the worker's scoreboard section */
	/* The waits of st.wait_us by duration bucket. */
	uint64_t wait_buckets[SB_DURATION_BUCKETS];
};

static void pool_timeout(struct db_error *err, const char *why)
{
	err->category = DB_POOL_TIMEOUT;
	err->transient = true;
	err->sqlstate[0] = '\0';
	snprintf(err->message, sizeof err->message, "%s", why);
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static struct timespec abs_timespec(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	return ts;
}

/* ---- scoreboard mirror ----
 * Every change of the numbers happens under the mutex, so publishing just
 * before each unlock (and before each condvar wait, which unlocks) keeps the
 * shared copy current without a lock on the reader's side. */

static void publish_locked(struct pool *p)
{
	if (!p->mirror.sb)
		return;
	const int64_t gauges[] = {
		p->n_idle, p->n_in_use, p->n_opening, p->n_waiting, pool_dial_breaker_open(p->dial),
	};

	pool_mirror_publish(&p->mirror, gauges, &p->st, p->wait_buckets);
}

static void pool_unlock(struct pool *p)
{
	publish_locked(p);
	pthread_mutex_unlock(&p->mu);
}

void pool_set_mirror(struct pool *p, struct sb_pool *mirror)
{
	pthread_mutex_lock(&p->mu);
	pool_mirror_attach(&p->mirror, mirror, &p->st, p->wait_buckets);
	pool_dial_set_mirror(p->dial, mirror);
	pool_unlock(p);
}

/* Connections the pool answers for: the pool's size in logs and the base of
 * the surplus that outlives DB_OVERFLOW_IDLE_MS. */
static int live_locked(const struct pool *p)
{
	return p->n_idle + p->n_in_use + p->n_opening;
}

/* What the bound limits: every connection still open, including those on
 * their way out, so a replacement is never opened before its predecessor
 * is closed. */
static int total_locked(const struct pool *p)
{
	return live_locked(p) + p->n_closing;
}

static int max_conns(const struct pool *p)
{
	return p->o.size + p->o.max_overflow;
}

/* ---- options ---- */

void pool_options_from_config(struct pool_options *o, const struct config *cfg)
{
	*o = (struct pool_options){
		.size = (int)cfg->db_pool_size,
		.max_overflow = (int)cfg->db_max_overflow,
		.overflow_idle_ms = cfg->db_overflow_idle_ms,
		.timeout_ms = cfg->db_pool_timeout_ms,
		.pre_ping = cfg->db_pool_pre_ping,
		.pre_ping_quiet_ms = PRE_PING_QUIET_MS,
		.idle_timeout_ms = (int64_t)cfg->db_idle_timeout_s * 1000,
		.max_lifetime_ms = (int64_t)cfg->db_max_lifetime_s * 1000,
		.connect_timeout_ms = cfg->db_connect_timeout_ms,
		.failure_hold_ms = cfg->db_failure_hold_ms,
		.retry =
		    retry_connect_policy((int)cfg->db_retry_attempts, cfg->db_retry_backoff_ms),
		.breaker_threshold = BREAKER_THRESHOLD,
		.breaker_cooldown_ms = BREAKER_COOLDOWN_MS,
		.seed = 0,
	};
}

/* ---- the idle stack and the waiter queue (all under mu) ---- */

static struct pool_conn *pop_idle_locked(struct pool *p)
{
	/* LIFO: the most recently used connection goes out again, so surplus
	 * ones sink to the bottom, stay idle and age out. */
	return p->idle[--p->n_idle];
}

static void remove_idle_at_locked(struct pool *p, int i)
{
	memmove(&p->idle[i], &p->idle[i + 1], (size_t)(p->n_idle - i - 1) * sizeof *p->idle);
	p->n_idle--;
}

static void enqueue_locked(struct pool *p, struct pool_waiter *w)
{
	w->next = NULL;
	if (p->tail)
		p->tail->next = w;
	else
		p->head = w;
	p->tail = w;
	p->n_waiting++;
}

static void unlink_waiter_locked(struct pool *p, struct pool_waiter *w)
{
	struct pool_waiter **pp = &p->head, *prev = NULL;
	while (*pp && *pp != w) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = w->next;
	if (p->tail == w)
		p->tail = prev;
	p->n_waiting--;
}

static void hand_over_locked(struct pool *p, struct pool_waiter *w, struct pool_conn *c, bool fresh)
{
	w->conn = c;
	w->fresh = fresh;
	p->n_in_use++;
	unlink_waiter_locked(p, w);
	pthread_cond_signal(&w->cv);
}

/* Ask the dial for a connection when there is room and none is being
 * opened; true when this asked. */
static bool open_one_locked(struct pool *p, int64_t deadline_ms)
{
	if (p->stopping || p->n_opening > 0 || total_locked(p) >= max_conns(p))
		return false;
	p->n_opening++;
	pool_dial_request(p->dial, deadline_ms);
	return true;
}

/* Give the oldest waiters the idle connections; open one for the next. */
static void serve_waiters_locked(struct pool *p)
{
	if (p->stopping)
		return;
	while (p->head && p->n_idle > 0)
		hand_over_locked(p, p->head, pop_idle_locked(p), false);
	if (p->head)
		open_one_locked(p, p->head->deadline_ms);
}

/* The opening that waiters counted on failed, and no connection is left
 * that could come back to them: they share its failure. */
static void fail_waiters_locked(struct pool *p, const struct db_error *err)
{
	while (p->head) {
		struct pool_waiter *w = p->head;
		w->failed = true;
		w->err = *err;
		unlink_waiter_locked(p, w);
		pthread_cond_signal(&w->cv);
	}
}

/* No slot of the instance's bound came free before the deadline of the
 * opening (the oldest waiter's): the waiters whose deadline has passed fail
 * with pool_timeout; the others get an opening of their own next. */
static void fail_expired_waiters_locked(struct pool *p, const struct db_error *err)
{
	int64_t now = clock_now_ms();

	for (struct pool_waiter *w = p->head, *next; w; w = next) {
		next = w->next;
		if (w->deadline_ms > now)
			continue;
		w->failed = true;
		w->err = *err;
		unlink_waiter_locked(p, w);
		pthread_cond_signal(&w->cv);
	}
}

/* ---- expiry ---- */

/* When idle connection i (stack index) is due to be closed. The bottom
 * `surplus` ones are the connections above DB_POOL_SIZE. */
static int64_t idle_expiry_locked(const struct pool *p, int i)
{
	const struct pool_conn *c = p->idle[i];
	int64_t e = c->expires_ms;
	if (p->o.idle_timeout_ms > 0)
		e = min64(e, c->idle_since_ms + p->o.idle_timeout_ms);
	if (i < live_locked(p) - p->o.size)
		e = min64(e, c->idle_since_ms + p->o.overflow_idle_ms);
	return e;
}

static int64_t next_expiry_locked(const struct pool *p)
{
	int64_t next = NEVER;
	for (int i = 0; i < p->n_idle; i++)
		next = min64(next, idle_expiry_locked(p, i));
	return next;
}

/* The maintenance thread sleeps until the earliest expiry it knew of;
 * wake it only when something now expires sooner. */
static void wake_maintenance_locked(struct pool *p)
{
	if (next_expiry_locked(p) < p->maint_next_ms)
		pthread_cond_signal(&p->maint_cv);
}

static void count_close_locked(struct pool *p, enum sb_close_reason why)
{
	switch (why) {
	case SB_CLOSE_IDLE: p->st.idle_closes++; break;
	case SB_CLOSE_LIFETIME: p->st.lifetime_closes++; break;
	case SB_CLOSE_OVERFLOW: p->st.overflow_closes++; break;
	case SB_CLOSE_DEAD: p->st.preping_evictions++; break;
	case SB_CLOSE_BROKEN: p->st.discards++; break;
	case SB_CLOSE_SHUTDOWN: break;
	}
}

/* Whether idle connection i is due to be closed, and why. */
static bool expired_locked(const struct pool *p, int i, int surplus, int64_t now,
			   enum sb_close_reason *why)
{
	const struct pool_conn *c = p->idle[i];
	if (c->expires_ms <= now)
		*why = SB_CLOSE_LIFETIME;
	else if (p->o.idle_timeout_ms > 0 && now - c->idle_since_ms >= p->o.idle_timeout_ms)
		*why = SB_CLOSE_IDLE;
	else if (surplus > 0 && now - c->idle_since_ms >= p->o.overflow_idle_ms)
		*why = SB_CLOSE_OVERFLOW;
	else
		return false;
	return true;
}

/* Moves expired idle connections to p->doomed; oldest first, so surplus
 * connections are closed from the bottom of the stack. */
static int collect_expired_locked(struct pool *p, int64_t now)
{
	int n = 0;
	int surplus = live_locked(p) - p->o.size;
	for (int i = 0; i < p->n_idle;) {
		enum sb_close_reason why;
		if (!expired_locked(p, i, surplus, now, &why)) {
			i++;
			continue;
		}
		count_close_locked(p, why);
		p->doomed[n] = p->idle[i];
		p->doomed_why[n++] = why;
		remove_idle_at_locked(p, i);
		surplus--;
	}
	return n;
}

/* ---- opening and closing ---- */

static void serve_waiters_locked(struct pool *p);

/* Close h and give its slot of the instance's bound back. */
static void close_handle(struct pool *p, void *h)
{
	p->c->close(p->ctx, h);
	if (p->o.quota.release)
		p->o.quota.release(p->o.quota.arg);
}

/* Close outside the mutex. counted: the caller moved c to n_closing, whose
 * place in the bound is given back (to a waiter, if any) once it is closed. */
static void close_conn(struct pool *p, struct pool_conn *c, enum sb_close_reason why, int left,
		       bool counted)
{
	long long age_s = (long long)(clock_now_ms() - c->created_ms) / 1000;
	close_handle(p, c->handle);
	log_info("db connection closed reason=%s age_s=%lld pool_size=%d",
		 scoreboard_close_reason_name(why), age_s, left);
	free(c);
	if (!counted)
		return;
	pthread_mutex_lock(&p->mu);
	p->n_closing--;
	serve_waiters_locked(p);
	pool_unlock(p);
}

static struct pool_conn *new_conn_locked(struct pool *p, void *h)
{
	struct pool_conn *c = xcalloc(1, sizeof *c);
	int64_t now = clock_now_ms();
	c->handle = h;
	c->created_ms = now;
	c->idle_since_ms = now;
	c->expires_ms = NEVER;
	if (p->o.max_lifetime_ms > 0) {
		/* Jitter (up to 10% earlier) so connections opened together in
		 * a burst are not all recycled in the same instant. */
		int64_t jitter =
		    (int64_t)retry_rng_uniform(&p->rng, (uint64_t)p->o.max_lifetime_ms / 10);
		c->expires_ms = now + p->o.max_lifetime_ms - jitter;
	}
	return c;
}

/* The dial's thread tells how an opening ended: a new connection goes to
 * the oldest waiter, or is idle; a failure is shared by the waiters when
 * nothing else could serve them. */
static void dial_done(void *arg, void *h, const struct pgconn_info *info,
		      const struct db_error *err)
{
	struct pool *p = arg;
	struct pool_conn *c = NULL;

	if (h) {
		/* Logged before anyone can use it: the opening still counts. */
		pthread_mutex_lock(&p->mu);
		int size = live_locked(p);
		pthread_mutex_unlock(&p->mu);
		log_info("db connected server_version=%d tls=%s cipher=%s ms=%.1f pool_size=%d",
			 info->server_version, info->tls_protocol, info->tls_cipher,
			 info->connect_ms, size);
	}
	pthread_mutex_lock(&p->mu);
	p->n_opening--;
	if (h && !p->stopping) {
		c = new_conn_locked(p, h);
		if (p->head) {
			hand_over_locked(p, p->head, c, true);
		} else {
			p->idle[p->n_idle++] = c;
			wake_maintenance_locked(p);
		}
	} else if (!h && err->category == DB_POOL_TIMEOUT) {
		fail_expired_waiters_locked(p, err);
	} else if (!h && p->n_in_use + p->n_idle == 0) {
		fail_waiters_locked(p, err);
	}
	serve_waiters_locked(p);
	pool_unlock(p);
	if (h && !c) /* the pool is being destroyed */
		close_handle(p, h);
}

/* ---- checkout ---- */

/* Queue for a connection: 1 with *cp to vet, 0 with *cp just opened, or -1
 * with err (the failure of the opening waited for; timeout while one is
 * still being opened; else pool_timeout). A caller whose own request opens
 * the connection it waits for did not wait for a free one: not counted. */
static int wait_turn_locked(struct pool *p, int64_t deadline_ms, struct pool_conn **cp,
			    struct db_error *err)
{
	struct pool_waiter w = { .deadline_ms = deadline_ms };
	int64_t start_us = clock_now_us();

	pthread_cond_init(&w.cv, &p->cattr);
	enqueue_locked(p, &w);
	bool opening = open_one_locked(p, deadline_ms);
	/* DB_POOL_TIMEOUT_MS bounds the wait for a busy connection to come
	 * back; a connect in progress is waited for until the deadline, as when
	 * the caller connected itself. */
	int64_t limit = deadline_ms;
	if (p->n_opening == 0)
		limit = min64(clock_now_ms() + p->o.timeout_ms, deadline_ms);
	struct timespec until = abs_timespec(limit);
	publish_locked(p); /* the wait unlocks: readers must see this waiter */
	while (!w.conn && !w.failed && !p->stopping)
		if (pthread_cond_timedwait(&w.cv, &p->mu, &until) == ETIMEDOUT)
			break;
	if (!w.conn && !w.failed)
		unlink_waiter_locked(p, &w); /* a server dequeues whom it serves */
	pthread_cond_destroy(&w.cv);
	if (!opening) {
		int64_t waited_us = clock_now_us() - start_us;
		int b = scoreboard_bucket(waited_us);
		p->st.acquires_waited++;
		p->st.wait_us += (uint64_t)waited_us;
		if (b < SB_DURATION_BUCKETS)
			p->wait_buckets[b]++;
	}
	if (w.conn) {
		*cp = w.conn;
		return w.fresh ? 0 : 1;
	}
	if (w.failed) {
		*err = w.err;
		return -1;
	}
	if (p->n_opening > 0 && !p->stopping && !pool_dial_reserving(p->dial)) {
		/* The connect goes on and joins the pool; the next caller gets it. */
		dberror_set(err, DB_TIMEOUT, true, "", "connect still in progress");
		return -1;
	}
	p->st.timeouts++;
	pool_timeout(err, p->stopping ? "pool is shutting down" : "no connection free in time");
	return -1;
}

/* 1 with *cp to vet (idle, or handed over by a release), 0 with *cp just
 * opened, or -1 with err. */
static int checkout_locked(struct pool *p, int64_t deadline_ms, struct pool_conn **cp,
			   struct db_error *err)
{
	if (p->stopping) {
		p->st.timeouts++;
		pool_timeout(err, "pool is shutting down");
		return -1;
	}
	if (!p->head && p->n_idle > 0) {
		*cp = pop_idle_locked(p);
		p->n_in_use++;
		return 1;
	}
	/* A held failure is answered at once rather than queued for. */
	if (p->n_idle == 0 && p->n_opening == 0 && total_locked(p) < max_conns(p) &&
	    pool_dial_held(p->dial, err))
		return -1;
	return wait_turn_locked(p, deadline_ms, cp, err);
}

/* Pre-ping c, idle since c->idle_since_ms: false when it turns out dead. */
static bool passes_preping(struct pool *p, struct pool_conn *c, int64_t now, int64_t deadline_ms)
{
	struct db_error err;

	if (!p->c->looks_alive(p->ctx, c->handle))
		return false;
	if (now - c->idle_since_ms < p->o.pre_ping_quiet_ms)
		return true;
	/* A ping that takes longer than a connect is worth less than one. A
	 * caller already past its deadline gets the connection unpinged: a ping
	 * cut short would cost us a connection that is probably fine. */
	int64_t ping_deadline = min64(deadline_ms, now + p->o.connect_timeout_ms);
	return ping_deadline <= now || p->c->ping(p->ctx, c->handle, ping_deadline, &err) == 0;
}

/* Whether c (ours, idle until now) must not be handed out, and why. */
static bool unusable(struct pool *p, struct pool_conn *c, int64_t deadline_ms,
		     enum sb_close_reason *why)
{
	int64_t now = clock_now_ms();

	if (c->expires_ms <= now)
		*why = SB_CLOSE_LIFETIME;
	else if (p->o.idle_timeout_ms > 0 && now - c->idle_since_ms >= p->o.idle_timeout_ms)
		*why = SB_CLOSE_IDLE;
	else if (p->o.pre_ping && !passes_preping(p, c, now, deadline_ms))
		*why = SB_CLOSE_DEAD;
	else
		return false;
	return true;
}

/* Whether c (just checked out) may be used; an unusable one is closed and
 * its place given back, so a database restart costs callers nothing: they
 * check out the next one, or wait for a new one. */
static bool vet(struct pool *p, struct pool_conn *c, int64_t deadline_ms)
{
	enum sb_close_reason why;

	if (!unusable(p, c, deadline_ms, &why))
		return true;
	pthread_mutex_lock(&p->mu);
	count_close_locked(p, why);
	p->n_in_use--;
	p->n_closing++;
	int left = live_locked(p);
	pool_unlock(p);
	close_conn(p, c, why, left, true);
	return false;
}

int pool_acquire(struct pool *p, int64_t deadline_ms, struct pool_conn **out, struct db_error *err)
{
	struct pool_conn *c = NULL;

	*out = NULL;
	memset(err, 0, sizeof *err);
	pthread_mutex_lock(&p->mu);
	p->st.acquires++;
	pool_unlock(p);
	for (;;) {
		pthread_mutex_lock(&p->mu);
		int r = checkout_locked(p, deadline_ms, &c, err);
		pool_unlock(p);
		if (r < 0)
			return -1;
		if (r == 0 || vet(p, c, deadline_ms))
			break;
	}
	*out = c;
	return 0;
}

/* ---- release ---- */

/* Whether a returned connection must be closed rather than kept, and why. */
static bool release_closes(struct pool *p, struct pool_conn *c, bool broken, int64_t now,
			   enum sb_close_reason *why)
{
	if (broken || !p->c->is_idle_txn(p->ctx, c->handle))
		*why = SB_CLOSE_BROKEN;
	else if (c->expires_ms <= now)
		*why = SB_CLOSE_LIFETIME;
	else
		return false;
	return true;
}

void pool_release(struct pool *p, struct pool_conn *c, bool broken)
{
	int64_t now = clock_now_ms();
	enum sb_close_reason why = SB_CLOSE_SHUTDOWN;
	bool close = release_closes(p, c, broken, now, &why);

	pthread_mutex_lock(&p->mu);
	close = close || p->stopping;
	p->n_in_use--;
	if (!close) {
		/* Surplus stays too: it is closed by the maintenance thread
		 * once idle for overflow_idle_ms, never here (DESIGN.md §5). */
		c->idle_since_ms = now;
		p->idle[p->n_idle++] = c;
	} else {
		p->n_closing++;
		count_close_locked(p, why);
	}
	serve_waiters_locked(p);
	if (!close)
		wake_maintenance_locked(p);
	int left = live_locked(p);
	pool_unlock(p);
	if (close)
		close_conn(p, c, why, left, true);
}

void *pool_conn_handle(const struct pool_conn *c)
{
	return c->handle;
}

/* ---- maintenance thread ---- */

static void maintenance_sleep_locked(struct pool *p)
{
	p->maint_next_ms = next_expiry_locked(p);
	publish_locked(p);
	if (p->maint_next_ms == NEVER) {
		pthread_cond_wait(&p->maint_cv, &p->mu);
	} else {
		struct timespec ts = abs_timespec(p->maint_next_ms);
		pthread_cond_timedwait(&p->maint_cv, &p->mu, &ts);
	}
	p->maint_next_ms = NEVER; /* awake: a signal now would be redundant */
	p->st.maintenance_wakeups++;
}

/* Closes idle, aged and surplus connections on time even when no request
 * comes (Neon's compute scales to zero only when we let go). Sleeps until
 * the next expiry; no polling, no pings. */
static void *maintenance_main(void *arg)
{
	struct pool *p = arg;
	pthread_mutex_lock(&p->mu);
	while (!p->stopping) {
		int n = collect_expired_locked(p, clock_now_ms());
		if (n == 0) {
			maintenance_sleep_locked(p);
			continue;
		}
		p->n_closing += n;
		int left = live_locked(p);
		pool_unlock(p);
		for (int i = 0; i < n; i++)
			close_conn(p, p->doomed[i], p->doomed_why[i], left, true);
		pthread_mutex_lock(&p->mu);
	}
	pool_unlock(p);
	return NULL;
}

/* ---- life cycle ---- */

static int start_maintenance(struct pool *p)
{
	int rc = thread_start(&p->maint, maintenance_main, p);
	if (rc != 0) {
		errno = rc;
		log_error("db pool cannot start its maintenance thread");
		return -1;
	}
	return 0;
}

static void free_pool(struct pool *p)
{
	pool_dial_free(p->dial);
	pthread_cond_destroy(&p->maint_cv);
	pthread_condattr_destroy(&p->cattr);
	pthread_mutex_destroy(&p->mu);
	free(p->doomed_why);
	free(p->doomed);
	free(p->idle);
	free(p);
}

struct pool *pool_create(const struct pool_options *o, const struct pool_connector *connector,
			 void *ctx)
{
	struct pool *p = xcalloc(1, sizeof *p);
	p->o = *o;
	p->c = connector;
	p->ctx = ctx;
	p->maint_next_ms = NEVER;
	p->idle = xcalloc((size_t)max_conns(p) + 1, sizeof *p->idle);
	p->doomed = xcalloc((size_t)max_conns(p) + 1, sizeof *p->doomed);
	p->doomed_why = xcalloc((size_t)max_conns(p) + 1, sizeof *p->doomed_why);
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&p->cattr);
	/* Deadlines are monotonic; a wall-clock step must not stretch a wait. */
	pthread_condattr_setclock(&p->cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&p->maint_cv, &p->cattr);
	retry_rng_seed(&p->rng, o->seed ? o->seed
					: (uint64_t)getpid() << 32 ^ (uint64_t)clock_now_us() ^
					      (uint64_t)(uintptr_t)p);
	struct pool_dial_options dial = {
		.connect_timeout_ms = o->connect_timeout_ms,
		.failure_hold_ms = o->failure_hold_ms,
		.retry = o->retry,
		.breaker_threshold = o->breaker_threshold,
		.breaker_cooldown_ms = o->breaker_cooldown_ms,
		.seed = retry_rng_next(&p->rng),
		.quota = o->quota,
	};
	p->dial = pool_dial_new(connector, ctx, &dial, dial_done, p);
	if (!p->dial || start_maintenance(p) < 0)
		goto fail;
	return p;
fail:
	free_pool(p);
	return NULL;
}

void pool_destroy(struct pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_signal(&p->maint_cv);
	for (struct pool_waiter *w = p->head; w; w = w->next)
		pthread_cond_signal(&w->cv);
	pool_unlock(p);
	pthread_join(p->maint, NULL);
	/* An opening in flight ends first; its connection is closed. */
	pool_dial_free(p->dial);
	p->dial = NULL;

	/* The pool's threads are gone and no caller is left: no lock. */
	while (p->n_idle > 0) {
		struct pool_conn *c = pop_idle_locked(p);
		close_conn(p, c, SB_CLOSE_SHUTDOWN, live_locked(p), false);
	}
	if (p->n_in_use > 0 || p->n_opening > 0)
		log_warnx("db pool destroyed with connections checked out in_use=%d opening=%d",
			  p->n_in_use, p->n_opening);
	free_pool(p);
}

void pool_stats(struct pool *p, struct pool_stats *out)
{
	pthread_mutex_lock(&p->mu);
	*out = p->st;
	out->idle = p->n_idle;
	out->in_use = p->n_in_use;
	out->opening = p->n_opening;
	out->waiting = p->n_waiting;
	out->max = max_conns(p);
	pool_unlock(p);

	struct pool_dial_stats d;
	pool_dial_stats(p->dial, &d);
	out->held = d.held;
	out->connects_ok = d.connects_ok;
	out->connect_us = d.connect_us;
	memcpy(out->connects_failed, d.connects_failed, sizeof out->connects_failed);
	out->retries = d.retries;
	out->breaker_rejects = d.breaker_rejects;
	out->breaker_opens = d.breaker_opens;
	out->breaker_state = d.breaker_state;
}
