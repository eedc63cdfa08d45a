/* Unit tests of app/pool.c against a scripted fake connector. Times are real
 * but short; every wait on a condition is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "retry.h"
#include "scoreboard.h"
#include "xalloc.h"

/* ---- log fakes: keep the lines so tests can look for events ---- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1 << 16];
static size_t log_len;

void log_write(enum log_level level, int errnum, const char *fmt, ...)
{
	(void)level;
	(void)errnum;
	va_list ap;
	pthread_mutex_lock(&log_mu);
	size_t room = sizeof log_buf - log_len;
	if (room > 512) {
		va_start(ap, fmt);
		int n = vsnprintf(log_buf + log_len, room - 1, fmt, ap);
		va_end(ap);
		if (n > 0)
			log_len += (size_t)n < room - 2 ? (size_t)n : room - 2;
		log_buf[log_len++] = '\n';
		log_buf[log_len] = '\0';
	}
	pthread_mutex_unlock(&log_mu);
}

static bool log_contains(const char *s)
{
	pthread_mutex_lock(&log_mu);
	bool found = strstr(log_buf, s) != NULL;
	pthread_mutex_unlock(&log_mu);
	return found;
}

/* The line may follow the event it reports by a moment: poll, bounded. */
static bool wait_log(const char *s, int64_t timeout_ms)
{
	struct timespec tick = { 0, 1000000 };
	for (int64_t waited = 0; waited < timeout_ms; waited++) {
		if (log_contains(s))
			return true;
		nanosleep(&tick, NULL);
	}
	return log_contains(s);
}

/* How late a thread may wake on a loaded two-CPU machine (other test runs,
 * valgrind): an upper bound on a wait allows this much beyond what it checks,
 * and a test that needs a thing not to happen yet gives it at least this. */
#define SLACK_MS 1000

/* ---- the fake connector ---- */

struct fconn {
	int id;
	bool alive, idle_txn, ping_ok;
};

struct scripted {
	enum db_category cat; /* DB_OK: the attempt succeeds */
	bool transient;
};

static struct fake {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int connects, closes, pings, looks, in_connect, open, max_open, next_id;
	struct scripted script[16];
	int n_script, pos;
	struct scripted otherwise; /* after the script */
	bool gated;                /* connect blocks until the gate opens */
	int64_t last_deadline, last_call;
} F;

static void fake_reset(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	memset(&F, 0, sizeof F);
	pthread_mutex_init(&F.mu, NULL);
	pthread_cond_init(&F.cv, &a);
	pthread_condattr_destroy(&a);
	F.otherwise.cat = DB_OK;
	pthread_mutex_lock(&log_mu);
	log_len = 0;
	log_buf[0] = '\0';
	pthread_mutex_unlock(&log_mu);
}

static struct timespec ts_at(int64_t ms)
{
	return (struct timespec){ .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
}

static void script(enum db_category cat, bool transient)
{
	F.script[F.n_script++] = (struct scripted){ cat, transient };
}

static void set_gate(bool closed)
{
	pthread_mutex_lock(&F.mu);
	F.gated = closed;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
}

/* Blocks while gated; false when deadline_ms came first. Under F.mu. */
static bool pass_gate_locked(int64_t deadline_ms)
{
	struct timespec ts = ts_at(deadline_ms);
	while (F.gated)
		if (pthread_cond_timedwait(&F.cv, &F.mu, &ts) == ETIMEDOUT && F.gated)
			return false;
	return true;
}

static void fake_error(struct db_error *err, enum db_category cat, bool transient)
{
	memset(err, 0, sizeof *err);
	err->category = cat;
	err->transient = transient;
	snprintf(err->message, sizeof err->message, "fake %s", db_category_name(cat));
}

static void *fake_connect(void *ctx, int64_t deadline_ms, struct pgconn_info *info,
			  struct db_error *err)
{
	(void)ctx;
	pthread_mutex_lock(&F.mu);
	F.connects++;
	F.in_connect++;
	F.last_deadline = deadline_ms;
	F.last_call = clock_now_ms();
	pthread_cond_broadcast(&F.cv);
	bool passed = pass_gate_locked(deadline_ms);
	F.in_connect--;
	struct scripted r = F.pos < F.n_script ? F.script[F.pos++] : F.otherwise;
	if (!passed)
		r = (struct scripted){ DB_TIMEOUT, true };
	if (r.cat != DB_OK) {
		pthread_mutex_unlock(&F.mu);
		fake_error(err, r.cat, r.transient);
		return NULL;
	}
	struct fconn *c = calloc(1, sizeof *c);
	*c = (struct fconn){ .id = F.next_id++, .alive = true, .idle_txn = true, .ping_ok = true };
	F.open++;
	F.max_open = F.open > F.max_open ? F.open : F.max_open;
	pthread_mutex_unlock(&F.mu);
	*info = (struct pgconn_info){ .server_version = 150000, .connect_ms = 1.0 };
	snprintf(info->tls_protocol, sizeof info->tls_protocol, "TLSv1.3");
	snprintf(info->tls_cipher, sizeof info->tls_cipher, "TLS_AES_256_GCM_SHA384");
	return c;
}

static void fake_close(void *ctx, void *conn)
{
	(void)ctx;
	pthread_mutex_lock(&F.mu);
	F.closes++;
	F.open--;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	free(conn);
}

static bool fake_looks_alive(void *ctx, void *conn)
{
	(void)ctx;
	pthread_mutex_lock(&F.mu);
	F.looks++;
	bool alive = ((struct fconn *)conn)->alive;
	pthread_mutex_unlock(&F.mu);
	return alive;
}

static int fake_ping(void *ctx, void *conn, int64_t deadline_ms, struct db_error *err)
{
	(void)ctx;
	(void)deadline_ms;
	pthread_mutex_lock(&F.mu);
	F.pings++;
	bool ok = ((struct fconn *)conn)->ping_ok;
	pthread_mutex_unlock(&F.mu);
	if (!ok)
		fake_error(err, DB_UNREACHABLE, true);
	return ok ? 0 : -1;
}

static bool fake_is_idle_txn(void *ctx, void *conn)
{
	(void)ctx;
	return ((struct fconn *)conn)->idle_txn;
}

static const struct pool_connector fake_connector = {
	.connect = fake_connect,
	.close = fake_close,
	.looks_alive = fake_looks_alive,
	.ping = fake_ping,
	.is_idle_txn = fake_is_idle_txn,
};

/* ---- helpers ---- */

static int fake_get(const int *field)
{
	pthread_mutex_lock(&F.mu);
	int v = *field;
	pthread_mutex_unlock(&F.mu);
	return v;
}

/* Waits (bounded) until *field >= n; F's condvar is signalled on change. */
static bool fake_wait_at_least(const int *field, int n, int64_t timeout_ms)
{
	struct timespec ts = ts_at(clock_now_ms() + timeout_ms);
	bool ok = true;
	pthread_mutex_lock(&F.mu);
	while (*field < n && ok)
		ok = pthread_cond_timedwait(&F.cv, &F.mu, &ts) != ETIMEDOUT || *field >= n;
	pthread_mutex_unlock(&F.mu);
	return ok;
}

static struct pool_options opts(void)
{
	return (struct pool_options){
		.size = 2,
		.max_overflow = 2,
		.overflow_idle_ms = 5000,
		.timeout_ms = 1000,
		.pre_ping = true,
		.pre_ping_quiet_ms = 1000,
		.connect_timeout_ms = 1000,
		.retry = { .retries = 3, .base_ms = 1, .cap_ms = 5 },
		.breaker_threshold = 5,
		.breaker_cooldown_ms = 2000,
		.seed = 1,
	};
}

/* ---- the fixture: what a test started is stopped and freed even when one
 * of its asserts fails (cmocka then skips the rest of the test) ---- */

enum { MAX_THREADS = 16 };

struct fixture {
	struct pool *p;
	int n_threads;
	struct {
		pthread_t tid;
		void *arg; /* the thread's own copy, on the heap: it outlives the test's frame */
		bool joined;
	} th[MAX_THREADS];
};

static int setup(void **state)
{
	*state = xcalloc(1, sizeof(struct fixture));
	fake_reset();
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	set_gate(false); /* a connect held at the gate returns */
	for (int i = 0; i < f->n_threads; i++) {
		/* Every wait in a thread is bounded by its deadline. */
		if (!f->th[i].joined)
			pthread_join(f->th[i].tid, NULL);
		free(f->th[i].arg);
	}
	if (f->p)
		pool_destroy(f->p);
	free(f);
	return 0;
}

static struct pool *make_pool(void **state, const struct pool_options *o)
{
	struct fixture *f = *state;

	f->p = pool_create(o, &fake_connector, NULL);
	assert_non_null(f->p);
	return f->p;
}

/* Destroy the test's pool now, to look at what it did on the way out. */
static void destroy_pool(void **state)
{
	struct fixture *f = *state;

	pool_destroy(f->p);
	f->p = NULL;
}

/* Start fn on a heap copy of the size bytes at arg; returns the copy, where
 * the thread leaves its results. */
static void *spawn(void **state, void *(*fn)(void *), const void *arg, size_t size)
{
	struct fixture *f = *state;

	assert_true(f->n_threads < MAX_THREADS);
	int i = f->n_threads++;
	f->th[i].arg = xmalloc(size);
	memcpy(f->th[i].arg, arg, size);
	assert_int_equal(pthread_create(&f->th[i].tid, NULL, fn, f->th[i].arg), 0);
	return f->th[i].arg;
}

/* Join the thread spawned with arg (its copy), waiting at most timeout_ms. */
static bool join_within(void **state, const void *arg, int64_t timeout_ms)
{
	struct fixture *f = *state;
	struct timespec limit;

	for (int i = 0; i < f->n_threads; i++) {
		if (f->th[i].arg != arg || f->th[i].joined)
			continue;
		clock_gettime(CLOCK_REALTIME, &limit);
		limit.tv_sec += timeout_ms / 1000;
		limit.tv_nsec += (timeout_ms % 1000) * 1000000;
		if (limit.tv_nsec >= 1000000000) {
			limit.tv_sec++;
			limit.tv_nsec -= 1000000000;
		}
		f->th[i].joined = pthread_timedjoin_np(f->th[i].tid, NULL, &limit) == 0;
		return f->th[i].joined;
	}
	fail_msg("no such thread");
	return false;
}

/* Join, bounded: a thread that hangs fails the test, not the run. */
static void join(void **state, const void *arg)
{
	assert_true(join_within(state, arg, 30000));
}

static int64_t in_ms(int64_t ms)
{
	return clock_now_ms() + ms;
}

static struct pool_conn *get(struct pool *p)
{
	struct pool_conn *c = NULL;
	struct db_error err;
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), 0);
	assert_non_null(c);
	return c;
}

static struct fconn *fc(struct pool_conn *c)
{
	return pool_conn_handle(c);
}

static struct pool_stats stats(struct pool *p)
{
	struct pool_stats s;
	pool_stats(p, &s);
	return s;
}

/* Polls the pool's waiting gauge (the pool has no hook to wait on), bounded. */
static bool wait_waiting(struct pool *p, int n, int64_t timeout_ms)
{
	int64_t until = in_ms(timeout_ms);
	struct timespec tick = { 0, 1000000 };
	while (stats(p).waiting < n) {
		if (clock_now_ms() >= until)
			return false;
		nanosleep(&tick, NULL);
	}
	return true;
}

static void pass_time(int64_t ms)
{
	/* Lets a span of time go by (an idle interval), not synchronization. */
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* ---- basic life cycle ---- */

static void starts_empty_and_opens_nothing(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	struct pool_stats s = stats(p);
	assert_int_equal(s.idle + s.in_use + s.opening + s.waiting, 0);
	assert_int_equal(s.max, 4);
	assert_int_equal(fake_get(&F.connects), 0);
	destroy_pool(state);
	assert_int_equal(F.connects, 0);
}

static void acquire_connects_then_reuses(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	struct pool_conn *c = get(p);
	int id = fc(c)->id;
	assert_int_equal(stats(p).in_use, 1);
	pool_release(p, c, false);
	assert_int_equal(stats(p).idle, 1);
	c = get(p);
	assert_int_equal(fc(c)->id, id);
	assert_int_equal(fake_get(&F.connects), 1);
	pool_release(p, c, false);
	assert_true(log_contains("db connected server_version=150000 tls=TLSv1.3 "
				 "cipher=TLS_AES_256_GCM_SHA384"));
	destroy_pool(state);
	assert_int_equal(F.closes, 1);
}

static void idle_connections_reused_lifo(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	struct pool_conn *a = get(p), *b = get(p);
	int b_id = fc(b)->id;
	pool_release(p, a, false);
	pool_release(p, b, false);
	struct pool_conn *c = get(p);
	assert_int_equal(fc(c)->id, b_id);
	pool_release(p, c, false);
	destroy_pool(state);
}

static void destroy_closes_every_connection(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	struct pool_conn *c[3] = { get(p), get(p), get(p) };
	for (int i = 0; i < 3; i++)
		pool_release(p, c[i], false);
	destroy_pool(state);
	assert_int_equal(F.connects, 3);
	assert_int_equal(F.closes, 3);
	assert_int_equal(F.open, 0);
}

static void options_from_config_maps_units(void **state)
{
	struct config cfg = {
		.db_pool_size = 3,
		.db_max_overflow = 4,
		.db_overflow_idle_ms = 5000,
		.db_pool_timeout_ms = 1000,
		.db_pool_pre_ping = true,
		.db_idle_timeout_s = 240,
		.db_max_lifetime_s = 1800,
		.db_connect_timeout_ms = 1500,
		.db_retry_attempts = 3,
		.db_retry_backoff_ms = 100,
	};
	struct pool_options o;
	pool_options_from_config(&o, &cfg);
	assert_int_equal(o.size, 3);
	assert_int_equal(o.max_overflow, 4);
	assert_int_equal(o.idle_timeout_ms, 240000);
	assert_int_equal(o.max_lifetime_ms, 1800000);
	assert_int_equal(o.connect_timeout_ms, 1500);
	assert_int_equal(o.retry.base_ms, 100);
	assert_int_equal(o.retry.retries, 3);
	assert_int_equal(o.retry.cap_ms, RETRY_BACKOFF_CAP_MS);
	assert_int_equal(o.pre_ping_quiet_ms, 1000);
	assert_int_equal(o.breaker_threshold, 5);
	struct pool *p = make_pool(state, &o);
	assert_int_equal(stats(p).max, 7);
	destroy_pool(state);
}

/* ---- bounds, overflow and waiting ---- */

static void overflow_bounded_then_pool_timeout(void **state)
{
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 1;
	o.timeout_ms = 30;
	struct pool *p = make_pool(state, &o);
	struct pool_conn *a = get(p), *b = get(p), *c = NULL;
	struct db_error err;
	int64_t t0 = clock_now_ms();
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	int64_t waited = clock_now_ms() - t0;
	assert_null(c);
	assert_int_equal(err.category, DB_POOL_TIMEOUT);
	assert_true(waited >= 25 && waited < 30 + SLACK_MS); /* the timeout, not the deadline */
	struct pool_stats s = stats(p);
	assert_int_equal(s.timeouts, 1);
	assert_int_equal(s.acquires_waited, 1);
	assert_int_equal(s.waiting, 0);
	assert_int_equal(F.connects, 2);
	pool_release(p, a, false);
	pool_release(p, b, false);
	destroy_pool(state);
}

/* Regression: SQLAlchemy-style "close surplus on return" is the churn bug of
 * DESIGN.md §5; surplus must outlive its return by DB_OVERFLOW_IDLE_MS. */
static void overflow_not_closed_on_return(void **state)
{
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 1;
	o.overflow_idle_ms = SLACK_MS;
	struct pool *p = make_pool(state, &o);
	struct pool_conn *a = get(p), *b = get(p);
	int b_id = fc(b)->id;
	int64_t released = clock_now_ms(); /* no later than either return */
	pool_release(p, a, false);
	pool_release(p, b, false);
	assert_int_equal(stats(p).idle, 2);
	assert_int_equal(fake_get(&F.closes), 0);
	assert_true(fake_wait_at_least(&F.closes, 1, 3 * SLACK_MS));
	assert_true(clock_now_ms() - released >= o.overflow_idle_ms);
	struct pool_stats s = stats(p);
	assert_int_equal(s.idle, 1);
	assert_int_equal(s.overflow_closes, 1);
	assert_true(wait_log("db connection closed reason=overflow", 2000));
	/* The least recently used one went; the one left is b. */
	struct pool_conn *c = get(p);
	assert_int_equal(fc(c)->id, b_id);
	pool_release(p, c, false);
	destroy_pool(state);
}

static void overflow_in_steady_use_is_kept(void **state)
{
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 1;
	o.overflow_idle_ms = SLACK_MS;
	struct pool *p = make_pool(state, &o);
	int64_t start = clock_now_ms();
	/* Each connection rests a tenth of overflow_idle_ms at a time, for longer
	 * than overflow_idle_ms in all. */
	for (int round = 0; round < 15; round++) {
		struct pool_conn *a = get(p), *b = get(p);
		pool_release(p, a, false);
		pool_release(p, b, false);
		pass_time(o.overflow_idle_ms / 10);
	}
	assert_true(clock_now_ms() - start > o.overflow_idle_ms);
	assert_int_equal(fake_get(&F.connects), 2);
	assert_int_equal(stats(p).overflow_closes, 0);
	destroy_pool(state);
}

struct waiter_arg {
	struct pool *p;
	int id;
	int64_t deadline_ms;
	int rc;
	enum db_category cat;
};

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static int order[8], n_order;

static void *waiter_main(void *arg)
{
	struct waiter_arg *w = arg;
	struct pool_conn *c = NULL;
	struct db_error err;
	w->rc = pool_acquire(w->p, w->deadline_ms, &c, &err);
	w->cat = err.category;
	if (w->rc == 0) {
		pthread_mutex_lock(&order_mu);
		order[n_order++] = w->id;
		pthread_mutex_unlock(&order_mu);
		pool_release(w->p, c, false);
	}
	return NULL;
}

static void waiters_served_in_fifo_order(void **state)
{
	enum { N = 4 };
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 0;
	o.timeout_ms = 5000;
	struct pool *p = make_pool(state, &o);
	struct pool_conn *held = get(p);
	struct waiter_arg *w[N];
	n_order = 0;
	for (int i = 0; i < N; i++) {
		struct waiter_arg init = { p, i, in_ms(5000), -2, DB_OK };
		w[i] = spawn(state, waiter_main, &init, sizeof init);
		assert_true(wait_waiting(p, i + 1, 2000));
	}
	pool_release(p, held, false);
	for (int i = 0; i < N; i++) {
		join(state, w[i]);
		assert_int_equal(w[i]->rc, 0);
		assert_int_equal(order[i], i);
	}
	struct pool_stats s = stats(p);
	assert_int_equal(F.connects, 1);
	assert_int_equal(s.acquires_waited, N);
	assert_true(s.wait_us > 0);
	destroy_pool(state);
}

static void timed_out_waiter_leaves_queue_intact(void **state)
{
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 0;
	o.timeout_ms = 5000;
	struct pool *p = make_pool(state, &o);
	struct pool_conn *held = get(p);
	struct waiter_arg *w[3];
	n_order = 0;
	for (int i = 0; i < 3; i++) {
		/* The middle one gives up while queued: its deadline leaves the
		 * third one ample time to queue behind it, even on a loaded
		 * machine; the others outwait the test. */
		struct waiter_arg init = { p, i, in_ms(i == 1 ? 1000 : 10000), -2, DB_OK };
		w[i] = spawn(state, waiter_main, &init, sizeof init);
		assert_true(wait_waiting(p, i + 1, 2000));
	}
	join(state, w[1]);
	assert_int_equal(w[1]->rc, -1);
	assert_int_equal(w[1]->cat, DB_POOL_TIMEOUT);
	assert_int_equal(stats(p).waiting, 2);
	pool_release(p, held, false);
	join(state, w[0]);
	join(state, w[2]);
	assert_int_equal(w[0]->rc, 0);
	assert_int_equal(w[2]->rc, 0);
	assert_int_equal(order[0], 0);
	assert_int_equal(order[1], 2);
	destroy_pool(state);
}

static void pool_wait_bounded_by_caller_deadline(void **state)
{
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 0;
	o.timeout_ms = 10000;
	struct pool *p = make_pool(state, &o);
	struct pool_conn *held = get(p), *c = NULL;
	struct db_error err;
	int64_t t0 = clock_now_ms();
	assert_int_equal(pool_acquire(p, t0 + 50, &c, &err), -1);
	int64_t took = clock_now_ms() - t0;
	assert_int_equal(err.category, DB_POOL_TIMEOUT);
	assert_true(took >= 45 && took < 50 + SLACK_MS); /* the deadline, not the timeout */
	pool_release(p, held, false);
	destroy_pool(state);
}

/* ---- pre-ping and replacement ---- */

static void preping_recent_connection_gets_socket_check_only(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	pool_release(p, get(p), false);
	pool_release(p, get(p), false);
	assert_int_equal(fake_get(&F.looks), 1);
	assert_int_equal(fake_get(&F.pings), 0);
	destroy_pool(state);
}

static void preping_quiet_connection_gets_round_trip(void **state)
{
	struct pool_options o = opts();
	o.pre_ping_quiet_ms = 20;
	struct pool *p = make_pool(state, &o);
	pool_release(p, get(p), false);
	pass_time(30);
	pool_release(p, get(p), false);
	assert_int_equal(fake_get(&F.looks), 1);
	assert_int_equal(fake_get(&F.pings), 1);
	assert_int_equal(fake_get(&F.connects), 1);
	destroy_pool(state);
}

static void no_preping_when_disabled(void **state)
{
	struct pool_options o = opts();
	o.pre_ping = false;
	o.pre_ping_quiet_ms = 0;
	struct pool *p = make_pool(state, &o);
	pool_release(p, get(p), false);
	pool_release(p, get(p), false);
	assert_int_equal(fake_get(&F.looks) + fake_get(&F.pings), 0);
	destroy_pool(state);
}

static void dead_connection_replaced_transparently(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	struct pool_conn *c = get(p);
	struct fconn *first = fc(c);
	int first_id = first->id;
	pool_release(p, c, false);
	first->alive = false;
	c = get(p);
	assert_int_not_equal(fc(c)->id, first_id);
	struct pool_stats s = stats(p);
	assert_int_equal(s.preping_evictions, 1);
	assert_int_equal(s.in_use, 1);
	assert_int_equal(s.idle, 0);
	assert_int_equal(F.closes, 1);
	assert_true(log_contains("db connection closed reason=dead"));
	pool_release(p, c, false);
	destroy_pool(state);
}

/* A database restart kills every pooled connection at once; callers must
 * see no error once it is back. */
static void database_restart_costs_callers_no_errors(void **state)
{
	struct pool_options o = opts();
	o.size = 3;
	o.max_overflow = 0;
	o.pre_ping_quiet_ms = 10;
	struct pool *p = make_pool(state, &o);
	struct pool_conn *c[3] = { get(p), get(p), get(p) };
	fc(c[0])->alive = false;   /* saw the EOF */
	fc(c[1])->ping_ok = false; /* silently gone: only a round trip tells */
	fc(c[2])->alive = false;
	for (int i = 0; i < 3; i++)
		pool_release(p, c[i], false);
	pass_time(20);
	for (int i = 0; i < 3; i++)
		c[i] = get(p);
	struct pool_stats s = stats(p);
	assert_int_equal(s.preping_evictions, 3);
	assert_int_equal(s.in_use, 3);
	assert_int_equal(F.connects, 6);
	assert_int_equal(s.connects_failed[DB_UNREACHABLE], 0);
	for (int i = 0; i < 3; i++)
		pool_release(p, c[i], false);
	destroy_pool(state);
}

static void broken_or_in_transaction_is_discarded(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	pool_release(p, get(p), true);
	struct pool_conn *c = get(p);
	fc(c)->idle_txn = false;
	pool_release(p, c, false);
	struct pool_stats s = stats(p);
	assert_int_equal(s.discards, 2);
	assert_int_equal(s.idle + s.in_use, 0);
	assert_int_equal(F.closes, 2);
	destroy_pool(state);
}

static void discard_hands_slot_to_waiter(void **state)
{
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 0;
	o.timeout_ms = 5000;
	struct pool *p = make_pool(state, &o);
	struct pool_conn *held = get(p);
	struct waiter_arg init = { p, 0, in_ms(5000), -2, DB_OK };
	n_order = 0;
	struct waiter_arg *w = spawn(state, waiter_main, &init, sizeof init);
	assert_true(wait_waiting(p, 1, 2000));
	pool_release(p, held, true);
	join(state, w);
	assert_int_equal(w->rc, 0);
	assert_int_equal(F.connects, 2);
	assert_int_equal(stats(p).idle, 1);
	destroy_pool(state);
}

/* ---- expiry by the maintenance thread ---- */

static void idle_timeout_closes_without_requests(void **state)
{
	struct pool_options o = opts();
	o.idle_timeout_ms = 100;
	struct pool *p = make_pool(state, &o);
	struct pool_conn *c = get(p);
	int64_t released = clock_now_ms(); /* no later than the return */
	pool_release(p, c, false);
	assert_true(fake_wait_at_least(&F.closes, 1, 3000));
	assert_true(clock_now_ms() - released >= o.idle_timeout_ms);
	struct pool_stats s = stats(p);
	assert_int_equal(s.idle_closes, 1);
	assert_int_equal(s.idle, 0);
	assert_true(wait_log("db connection closed reason=idle", 2000));
	destroy_pool(state);
}

static void lifetime_closes_without_requests(void **state)
{
	struct pool_options o = opts();
	o.max_lifetime_ms = 200;
	struct pool *p = make_pool(state, &o);
	int64_t opened = clock_now_ms();
	pool_release(p, get(p), false);
	assert_true(fake_wait_at_least(&F.closes, 1, 3000));
	int64_t lived = clock_now_ms() - opened;
	assert_true(lived >= 175); /* at most 10% jitter off 200 ms */
	assert_int_equal(stats(p).lifetime_closes, 1);
	assert_true(wait_log("db connection closed reason=lifetime", 2000));
	destroy_pool(state);
}

static void lifetime_over_while_in_use_closes_on_release(void **state)
{
	struct pool_options o = opts();
	o.max_lifetime_ms = 40;
	struct pool *p = make_pool(state, &o);
	struct pool_conn *c = get(p);
	pass_time(50);
	pool_release(p, c, false);
	assert_int_equal(fake_get(&F.closes), 1);
	assert_int_equal(stats(p).lifetime_closes, 1);
	destroy_pool(state);
}

static void maintenance_sleeps_when_nothing_expires(void **state)
{
	struct pool_options o = opts(); /* no idle timeout, no lifetime */
	struct pool *p = make_pool(state, &o);
	for (int i = 0; i < 20; i++)
		pool_release(p, get(p), false);
	pass_time(100);
	assert_true(stats(p).maintenance_wakeups <= 1);
	assert_int_equal(fake_get(&F.pings), 0);
	destroy_pool(state);
}

/* ---- connect: retry, deadline, breaker ---- */

static void transient_connect_failures_are_retried(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	script(DB_UNREACHABLE, true);
	script(DB_REJECTED, true);
	struct pool_conn *c = get(p);
	struct pool_stats s = stats(p);
	assert_int_equal(F.connects, 3);
	assert_int_equal(s.retries, 2);
	assert_int_equal(s.connects_failed[DB_UNREACHABLE], 1);
	assert_int_equal(s.connects_failed[DB_REJECTED], 1);
	assert_int_equal(s.connects_ok, 1);
	assert_true(log_contains("db connect failed category=unreachable attempt=1"));
	assert_true(log_contains("next_backoff_ms="));
	pool_release(p, c, false);
	destroy_pool(state);
}

static void permanent_connect_failure_not_retried(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	script(DB_AUTH, false);
	struct pool_conn *c = NULL;
	struct db_error err;
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_AUTH);
	assert_int_equal(F.connects, 1);
	struct pool_stats s = stats(p);
	assert_int_equal(s.retries, 0);
	assert_int_equal(s.opening + s.in_use + s.idle, 0);
	destroy_pool(state);
}

static void retries_stop_at_attempt_limit(void **state)
{
	struct pool_options o = opts();
	o.retry.retries = 2;
	struct pool *p = make_pool(state, &o);
	F.otherwise = (struct scripted){ DB_UNREACHABLE, true };
	struct pool_conn *c = NULL;
	struct db_error err;
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_UNREACHABLE);
	assert_int_equal(F.connects, 3);
	assert_int_equal(stats(p).retries, 2);
	destroy_pool(state);
}

static void retries_never_past_deadline(void **state)
{
	struct pool_options o = opts();
	/* Backoffs of up to 10 s: a loop that slept one past the deadline
	 * would be seconds late, beyond any scheduling delay. */
	o.retry.retries = 10;
	o.retry.base_ms = 10000;
	o.retry.cap_ms = 10000;
	o.breaker_threshold = 100;
	struct pool *p = make_pool(state, &o);
	F.otherwise = (struct scripted){ DB_UNREACHABLE, true };
	struct pool_conn *c = NULL;
	struct db_error err;
	int64_t t0 = clock_now_ms();
	assert_int_equal(pool_acquire(p, t0 + 100, &c, &err), -1);
	assert_true(clock_now_ms() - t0 < 100 + SLACK_MS);
	assert_true(F.last_call < t0 + 100); /* no attempt begun at or past the deadline */
	assert_true(err.category == DB_UNREACHABLE || err.category == DB_TIMEOUT);
	destroy_pool(state);
}

struct acquirer {
	struct pool *p;
	int rc;
	struct db_error err;
	struct pool_conn *c;
};

static void *acquirer_main(void *arg)
{
	struct acquirer *a = arg;
	a->rc = pool_acquire(a->p, in_ms(5000), &a->c, &a->err);
	return NULL;
}

/* An attempt is bounded by the connect timeout, not by the deadline of the
 * caller that asked (DESIGN.md §5: attempts outlive requests). */
static void connect_attempt_bounded_by_connect_timeout_only(void **state)
{
	struct pool_options o = opts();
	o.connect_timeout_ms = 200;
	struct pool *p = make_pool(state, &o);
	int64_t before = clock_now_ms();
	struct pool_conn *c = get(p);
	/* The attempt's deadline is 200 ms from when the pool asked for it,
	 * which was after `before` and before the fake saw the call. */
	assert_true(F.last_deadline >= before + 200);
	assert_true(F.last_deadline <= F.last_call + 200);
	pool_release(p, c, true);
	struct db_error err;
	int64_t deadline = in_ms(50);
	assert_int_equal(pool_acquire(p, deadline, &c, &err), 0);
	assert_true(F.last_deadline > deadline); /* not cut to the caller's 50 ms */
	assert_true(F.last_deadline <= F.last_call + 200);
	pool_release(p, c, false);
	destroy_pool(state);
}

/* The caller gives up at its deadline (timeout); the attempt goes on and its
 * connection joins the pool, where the next caller finds it: a compute that
 * wakes slower than a probe's deadline costs one probe, not every one. */
static void attempt_outlives_its_caller_and_joins_the_pool(void **state)
{
	struct pool_options o = opts();
	o.retry.retries = 0;
	o.connect_timeout_ms = 10000;
	struct pool *p = make_pool(state, &o);
	set_gate(true); /* the compute is waking */
	struct pool_conn *c = NULL;
	struct db_error err;
	assert_int_equal(pool_acquire(p, in_ms(50), &c, &err), -1);
	assert_int_equal(err.category, DB_TIMEOUT);
	assert_int_equal(stats(p).opening, 1);
	set_gate(false); /* awake */
	assert_true(fake_wait_at_least(&F.open, 1, 2000));
	c = get(p);
	assert_int_equal(F.connects, 1); /* the same attempt's connection */
	assert_int_equal(stats(p).connects_ok, 1);
	pool_release(p, c, false);
	destroy_pool(state);
}

/* Callers that come while a connection is being opened wait for it rather
 * than open more: one attempt at a time against a waking database. */
static void callers_wait_for_the_opening_in_flight(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	set_gate(true);
	struct acquirer init = { .p = p };
	struct acquirer *a = spawn(state, acquirer_main, &init, sizeof init);
	struct acquirer *b = spawn(state, acquirer_main, &init, sizeof init);
	struct acquirer *c = spawn(state, acquirer_main, &init, sizeof init);
	assert_true(wait_waiting(p, 3, 2000));
	assert_true(fake_wait_at_least(&F.in_connect, 1, 2000));
	assert_int_equal(fake_get(&F.connects), 1);
	assert_int_equal(stats(p).opening, 1);
	set_gate(false);
	join(state, a);
	join(state, b);
	join(state, c);
	assert_int_equal(a->rc, 0);
	assert_int_equal(b->rc, 0);
	assert_int_equal(c->rc, 0);
	assert_int_equal(F.connects, 3); /* one after another, as each was needed */
	pool_release(p, a->c, false);
	pool_release(p, b->c, false);
	pool_release(p, c->c, false);
	destroy_pool(state);
}

/* A permanent failure is held: while the hold lasts, callers get it without
 * an attempt; afterwards the pool connects again. */
static void permanent_failure_is_held_then_retried(void **state)
{
	struct pool_options o = opts();
	o.failure_hold_ms = 300;
	struct pool *p = make_pool(state, &o);
	script(DB_AUTH, false);
	struct pool_conn *c = NULL;
	struct db_error err;
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_AUTH);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
		assert_int_equal(err.category, DB_AUTH);
	}
	assert_int_equal(F.connects, 1);
	assert_int_equal(stats(p).held, 6);
	assert_true(log_contains("db connects held category=auth hold_ms=300"));
	pass_time(300 + 50);
	c = get(p); /* the password was fixed meanwhile */
	assert_int_equal(F.connects, 2);
	pool_release(p, c, false);
	destroy_pool(state);
}

/* Only auth, tls, endpoint and quota are held; a transient failure is not. */
static void transient_failure_is_not_held(void **state)
{
	struct pool_options o = opts();
	o.retry.retries = 0;
	o.failure_hold_ms = 60000;
	struct pool *p = make_pool(state, &o);
	script(DB_UNREACHABLE, true);
	struct pool_conn *c = NULL;
	struct db_error err;
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_UNREACHABLE);
	c = get(p);
	assert_int_equal(F.connects, 2);
	assert_int_equal(stats(p).held, 0);
	pool_release(p, c, false);
	destroy_pool(state);
}

/* Neon's rate limit is not retried within the request, and the pool waits
 * at least a second before its next attempt. */
static void rate_limited_waits_a_second(void **state)
{
	struct pool_options o = opts();
	o.failure_hold_ms = 0; /* the rate limit's wait does not depend on it */
	struct pool *p = make_pool(state, &o);
	script(DB_RATE_LIMITED, false);
	struct pool_conn *c = NULL;
	struct db_error err;
	int64_t t0 = clock_now_ms();
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_RATE_LIMITED);
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_RATE_LIMITED);
	assert_int_equal(F.connects, 1);
	while (pool_acquire(p, in_ms(5000), &c, &err) != 0) {
		assert_int_equal(err.category, DB_RATE_LIMITED);
		assert_true(clock_now_ms() - t0 < 1000 + SLACK_MS);
		pass_time(20);
	}
	assert_true(F.last_call - t0 >= 1000);
	assert_int_equal(F.connects, 2);
	pool_release(p, c, false);
	destroy_pool(state);
}

static void slow_connect_times_out_at_deadline(void **state)
{
	struct pool_options o = opts();
	o.retry.retries = 0;
	o.connect_timeout_ms = 10000; /* the caller's deadline is what ends it */
	struct pool *p = make_pool(state, &o);
	set_gate(true); /* the database silently drops packets */
	struct pool_conn *c = NULL;
	struct db_error err;
	int64_t t0 = clock_now_ms();
	assert_int_equal(pool_acquire(p, t0 + 80, &c, &err), -1);
	assert_int_equal(err.category, DB_TIMEOUT);
	assert_true(clock_now_ms() - t0 < 80 + SLACK_MS);
	destroy_pool(state);
}

static void breaker_opens_fails_fast_then_recovers(void **state)
{
	struct pool_options o = opts();
	o.retry.retries = 0;
	o.breaker_threshold = 3;
	o.breaker_cooldown_ms = SLACK_MS; /* still open when the next caller comes */
	struct pool *p = make_pool(state, &o);
	F.otherwise = (struct scripted){ DB_UNREACHABLE, true };
	struct pool_conn *c = NULL;
	struct db_error err;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
		assert_int_equal(err.category, DB_UNREACHABLE);
	}
	assert_true(log_contains("db circuit breaker open"));
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_CIRCUIT_OPEN);
	assert_non_null(strstr(err.message, "unreachable"));
	assert_int_equal(fake_get(&F.connects), 3);
	struct pool_stats s = stats(p);
	assert_int_equal(s.breaker_opens, 1);
	assert_int_equal(s.breaker_rejects, 1);
	assert_int_equal(s.breaker_state, RETRY_BREAKER_OPEN);
	F.otherwise = (struct scripted){ DB_OK, false };
	pass_time(o.breaker_cooldown_ms + 10);
	c = get(p); /* the half-open probe */
	assert_int_equal(stats(p).breaker_state, RETRY_BREAKER_CLOSED);
	assert_true(log_contains("db circuit breaker closed"));
	pool_release(p, c, false);
	destroy_pool(state);
}

/* Half-open, the breaker lets one probe through; callers that come meanwhile
 * wait for that probe instead of being refused or probing too. */
static void half_open_lets_one_probe_through(void **state)
{
	struct pool_options o = opts();
	o.retry.retries = 0;
	o.breaker_threshold = 1;
	o.breaker_cooldown_ms = 20;
	struct pool *p = make_pool(state, &o);
	script(DB_UNREACHABLE, true);
	struct pool_conn *c = NULL;
	struct db_error err;
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	pass_time(30);
	set_gate(true);
	struct acquirer init = { .p = p };
	struct acquirer *probe = spawn(state, acquirer_main, &init, sizeof init);
	assert_true(fake_wait_at_least(&F.in_connect, 1, 2000));
	struct acquirer *other = spawn(state, acquirer_main, &init, sizeof init);
	assert_true(wait_waiting(p, 2, 2000));
	assert_int_equal(fake_get(&F.connects), 2); /* the failure and the probe */
	set_gate(false);
	join(state, probe);
	join(state, other);
	assert_int_equal(probe->rc, 0);
	assert_int_equal(other->rc, 0);
	assert_int_equal(F.connects, 3); /* the breaker closed: the next one opened */
	pool_release(p, probe->c, false);
	pool_release(p, other->c, false);
	destroy_pool(state);
}

struct stats_reader {
	struct pool *p;
	struct pool_stats s;
};

static void *stats_main(void *arg)
{
	struct stats_reader *r = arg;
	pool_stats(r->p, &r->s);
	return NULL;
}

/* Connects run outside the mutex: while one is in flight the pool still
 * answers. */
static void connect_runs_outside_the_mutex(void **state)
{
	struct pool_options o = opts();
	struct pool *p = make_pool(state, &o);
	set_gate(true);
	struct acquirer init = { .p = p };
	struct acquirer *a = spawn(state, acquirer_main, &init, sizeof init);
	assert_true(fake_wait_at_least(&F.in_connect, 1, 2000));
	struct stats_reader reader = { .p = p };
	struct stats_reader *r = spawn(state, stats_main, &reader, sizeof reader);
	assert_true(join_within(state, r, 2000));
	assert_int_equal(r->s.opening, 1);
	assert_int_equal(r->s.in_use, 0);
	set_gate(false);
	join(state, a);
	assert_int_equal(a->rc, 0);
	pool_release(p, a->c, false);
	destroy_pool(state);
}

/* The worker's scoreboard section follows the pool: gauges as they stand,
 * counters (the connect ones kept by pool_dial) as they grow. */
static void mirror_counts_what_the_pool_does(void **state)
{
	struct pool_options o = opts();
	o.breaker_threshold = 2;
	struct pool *p = make_pool(state, &o);
	struct sb_pool *m = xcalloc(1, sizeof *m);
	pool_set_mirror(p, m);
	script(DB_UNREACHABLE, true);
	struct pool_conn *c = get(p); /* a failure, a retry, a connect */
	assert_int_equal(sb_gauge_get(&m->in_use), 1);
	assert_int_equal(sb_get(&m->acquires), 1);
	assert_int_equal(sb_get(&m->connects_ok), 1);
	assert_int_equal(sb_get(&m->connect_us), 1000); /* the fake's 1.0 ms */
	assert_int_equal(sb_get(&m->connect_buckets[scoreboard_bucket(1000)]), 1);
	assert_int_equal(sb_get(&m->connects_failed[DB_UNREACHABLE]), 1);
	assert_int_equal(sb_get(&m->retries), 1);
	pool_release(p, c, true); /* broken: closed */
	assert_true(fake_wait_at_least(&F.closes, 1, 2000));
	assert_int_equal(sb_gauge_get(&m->in_use), 0);
	assert_int_equal(sb_get(&m->closes[SB_CLOSE_BROKEN]), 1);
	F.otherwise = (struct scripted){ DB_UNREACHABLE, true };
	struct db_error err;
	/* Two failures in a row, the first one retried, open the breaker. */
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_CIRCUIT_OPEN);
	assert_int_equal(sb_gauge_get(&m->breaker_open), 1);
	assert_int_equal(sb_get(&m->breaker_opens), 1);
	struct pool_stats s = stats(p);
	assert_int_equal(sb_get(&m->connects_failed[DB_UNREACHABLE]),
			 s.connects_failed[DB_UNREACHABLE]);
	assert_int_equal(sb_get(&m->retries), s.retries);
	assert_int_equal(sb_get(&m->acquires), s.acquires);
	destroy_pool(state);
	free(m);
}

/* The pool-wait histogram (neonfcgi_pool_wait_seconds) follows the waits:
 * a caller that queues for a busy connection lands in the bucket of its
 * wait, and count and sum agree with the buckets. */
static void mirror_wait_histogram_follows_the_waits(void **state)
{
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 0;
	o.timeout_ms = 5000;
	struct pool *p = make_pool(state, &o);
	struct sb_pool *m = xcalloc(1, sizeof *m);
	pool_set_mirror(p, m);
	struct pool_conn *held = get(p);
	struct acquirer init = { .p = p };
	struct acquirer *a = spawn(state, acquirer_main, &init, sizeof init);
	assert_true(wait_waiting(p, 1, 2000));
	pass_time(60); /* the wait lasts at least this long */
	pool_release(p, held, false);
	join(state, a);
	assert_int_equal(a->rc, 0);
	pool_release(p, a->c, false);
	uint64_t n = 0;
	for (int i = 0; i < SB_DURATION_BUCKETS; i++)
		n += sb_get(&m->wait_buckets[i]);
	assert_int_equal(n, sb_get(&m->acquire_waits));
	assert_int_equal(n, 1);
	assert_true(sb_get(&m->acquire_wait_us) >= 60000);
	assert_int_equal(sb_get(&m->wait_buckets[scoreboard_bucket(1000)]), 0); /* not a fast one */
	destroy_pool(state);
	free(m);
}

/* ---- concurrency ---- */

struct hammer {
	struct pool *p;
	int errors;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	for (int i = 0; i < 300; i++) {
		struct pool_conn *c = NULL;
		struct db_error err;
		if (pool_acquire(h->p, in_ms(5000), &c, &err) != 0) {
			h->errors++;
			continue;
		}
		pool_release(h->p, c, i % 50 == 49); /* now and then a broken one */
	}
	return NULL;
}

static void many_threads_never_exceed_bound(void **state)
{
	enum { N = 8 };
	struct pool_options o = opts();
	o.timeout_ms = 5000;
	o.overflow_idle_ms = 1;
	struct pool *p = make_pool(state, &o);
	struct hammer *h[N];
	for (int i = 0; i < N; i++) {
		struct hammer init = { p, 0 };
		h[i] = spawn(state, hammer_main, &init, sizeof init);
	}
	for (int i = 0; i < N; i++) {
		join(state, h[i]);
		assert_int_equal(h[i]->errors, 0);
	}
	struct pool_stats s = stats(p);
	assert_true(F.max_open <= 4);
	assert_int_equal(s.in_use + s.opening + s.waiting, 0);
	assert_int_equal(s.acquires, N * 300);
	destroy_pool(state);
	assert_int_equal(F.open, 0);
}

/* ---- the instance's bound, as a quota the test counts ---- */

static struct quota {
	pthread_mutex_t mu;
	int limit, held, reserves, releases;
	bool open_exceeded; /* a connection was open without a slot */
} Q = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int quota_reserve(void *arg, int64_t deadline_ms)
{
	(void)arg;
	pthread_mutex_lock(&Q.mu);
	bool ok = Q.held < Q.limit;
	Q.held += ok;
	Q.reserves += ok;
	pthread_mutex_unlock(&Q.mu);
	/* Like dbslots: a refusal comes at the deadline (nothing here frees one). */
	if (!ok && deadline_ms > clock_now_ms())
		clock_sleep_ms(deadline_ms - clock_now_ms());
	return ok ? 0 : -1;
}

static void quota_release(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&Q.mu);
	Q.held--;
	Q.releases++;
	/* Released after the close: the fake's open count is already down. */
	if (fake_get(&F.open) > Q.held)
		Q.open_exceeded = true;
	pthread_mutex_unlock(&Q.mu);
}

static struct pool_options quota_opts(int limit)
{
	struct pool_options o = opts();

	pthread_mutex_lock(&Q.mu);
	Q.limit = limit;
	Q.held = Q.reserves = Q.releases = 0;
	Q.open_exceeded = false;
	pthread_mutex_unlock(&Q.mu);
	o.quota = (struct pool_quota){ .reserve = quota_reserve, .release = quota_release };
	return o;
}

/* A slot is reserved before every connect and released after every close,
 * a failed connect included; without a slot no connect is made and the
 * caller gets pool_timeout, not a database failure. */
static void quota_reserved_before_connect_released_after_close(void **state)
{
	struct pool_options o = quota_opts(2);
	struct pool *p = make_pool(state, &o);
	struct pool_conn *a = get(p), *b = get(p), *c = NULL;
	struct db_error err;

	assert_int_equal(Q.held, 2);
	assert_int_equal(pool_acquire(p, in_ms(100), &c, &err), -1);
	assert_int_equal(err.category, DB_POOL_TIMEOUT);
	assert_int_equal(fake_get(&F.connects), 2); /* no attempt without a slot */
	assert_int_equal(stats(p).breaker_state, RETRY_BREAKER_CLOSED);
	pool_release(p, a, true); /* broken: closed, its slot given back */
	assert_int_equal(Q.held, 1);
	pool_release(p, b, true);
	assert_int_equal(Q.held, 0);
	script(DB_AUTH, false);
	assert_int_equal(pool_acquire(p, in_ms(1000), &c, &err), -1);
	assert_int_equal(err.category, DB_AUTH);
	assert_int_equal(Q.held, 0); /* the failed connect's slot is back */
	destroy_pool(state);
	assert_int_equal(Q.held, 0);
	assert_int_equal(Q.reserves, Q.releases);
	assert_false(Q.open_exceeded);
}

#define POOL_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		POOL_TEST(starts_empty_and_opens_nothing),
		POOL_TEST(acquire_connects_then_reuses),
		POOL_TEST(idle_connections_reused_lifo),
		POOL_TEST(destroy_closes_every_connection),
		POOL_TEST(options_from_config_maps_units),
		POOL_TEST(overflow_bounded_then_pool_timeout),
		POOL_TEST(overflow_not_closed_on_return),
		POOL_TEST(overflow_in_steady_use_is_kept),
		POOL_TEST(waiters_served_in_fifo_order),
		POOL_TEST(timed_out_waiter_leaves_queue_intact),
		POOL_TEST(pool_wait_bounded_by_caller_deadline),
		POOL_TEST(preping_recent_connection_gets_socket_check_only),
		POOL_TEST(preping_quiet_connection_gets_round_trip),
		POOL_TEST(no_preping_when_disabled),
		POOL_TEST(dead_connection_replaced_transparently),
		POOL_TEST(database_restart_costs_callers_no_errors),
		POOL_TEST(broken_or_in_transaction_is_discarded),
		POOL_TEST(discard_hands_slot_to_waiter),
		POOL_TEST(idle_timeout_closes_without_requests),
		POOL_TEST(lifetime_closes_without_requests),
		POOL_TEST(lifetime_over_while_in_use_closes_on_release),
		POOL_TEST(maintenance_sleeps_when_nothing_expires),
		POOL_TEST(transient_connect_failures_are_retried),
		POOL_TEST(permanent_connect_failure_not_retried),
		POOL_TEST(retries_stop_at_attempt_limit),
		POOL_TEST(retries_never_past_deadline),
		POOL_TEST(connect_attempt_bounded_by_connect_timeout_only),
		POOL_TEST(attempt_outlives_its_caller_and_joins_the_pool),
		POOL_TEST(callers_wait_for_the_opening_in_flight),
		POOL_TEST(permanent_failure_is_held_then_retried),
		POOL_TEST(transient_failure_is_not_held),
		POOL_TEST(rate_limited_waits_a_second),
		POOL_TEST(slow_connect_times_out_at_deadline),
		POOL_TEST(breaker_opens_fails_fast_then_recovers),
		POOL_TEST(half_open_lets_one_probe_through),
		POOL_TEST(connect_runs_outside_the_mutex),
		POOL_TEST(mirror_counts_what_the_pool_does),
		POOL_TEST(mirror_wait_histogram_follows_the_waits),
		POOL_TEST(many_threads_never_exceed_bound),
		POOL_TEST(quota_reserved_before_connect_released_after_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
