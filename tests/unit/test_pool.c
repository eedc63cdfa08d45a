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

static struct pool *make_pool(const struct pool_options *o)
{
	fake_reset();
	struct pool *p = pool_create(o, &fake_connector, NULL);
	assert_non_null(p);
	return p;
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
	(void)state;
	struct pool_options o = opts();
	struct pool *p = make_pool(&o);
	struct pool_stats s = stats(p);
	assert_int_equal(s.idle + s.in_use + s.opening + s.waiting, 0);
	assert_int_equal(s.max, 4);
	assert_int_equal(fake_get(&F.connects), 0);
	pool_destroy(p);
	assert_int_equal(F.connects, 0);
}

static void acquire_connects_then_reuses(void **state)
{
	(void)state;
	struct pool_options o = opts();
	struct pool *p = make_pool(&o);
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
	pool_destroy(p);
	assert_int_equal(F.closes, 1);
}

static void idle_connections_reused_lifo(void **state)
{
	(void)state;
	struct pool_options o = opts();
	struct pool *p = make_pool(&o);
	struct pool_conn *a = get(p), *b = get(p);
	int b_id = fc(b)->id;
	pool_release(p, a, false);
	pool_release(p, b, false);
	struct pool_conn *c = get(p);
	assert_int_equal(fc(c)->id, b_id);
	pool_release(p, c, false);
	pool_destroy(p);
}

static void destroy_closes_every_connection(void **state)
{
	(void)state;
	struct pool_options o = opts();
	struct pool *p = make_pool(&o);
	struct pool_conn *c[3] = { get(p), get(p), get(p) };
	for (int i = 0; i < 3; i++)
		pool_release(p, c[i], false);
	pool_destroy(p);
	assert_int_equal(F.connects, 3);
	assert_int_equal(F.closes, 3);
	assert_int_equal(F.open, 0);
}

static void options_from_config_maps_units(void **state)
{
	(void)state;
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
	struct pool *p = make_pool(&o);
	assert_int_equal(stats(p).max, 7);
	pool_destroy(p);
}

/* ---- bounds, overflow and waiting ---- */

static void overflow_bounded_then_pool_timeout(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 1;
	o.timeout_ms = 30;
	struct pool *p = make_pool(&o);
	struct pool_conn *a = get(p), *b = get(p), *c = NULL;
	struct db_error err;
	int64_t t0 = clock_now_ms();
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	int64_t waited = clock_now_ms() - t0;
	assert_null(c);
	assert_int_equal(err.category, DB_POOL_TIMEOUT);
	assert_true(waited >= 25 && waited < 1000);
	struct pool_stats s = stats(p);
	assert_int_equal(s.timeouts, 1);
	assert_int_equal(s.acquires_waited, 1);
	assert_int_equal(s.waiting, 0);
	assert_int_equal(F.connects, 2);
	pool_release(p, a, false);
	pool_release(p, b, false);
	pool_destroy(p);
}

/* Regression: SQLAlchemy-style "close surplus on return" is the churn bug of
 * DESIGN.md §5; surplus must outlive its return by DB_OVERFLOW_IDLE_MS. */
static void overflow_not_closed_on_return(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 1;
	o.overflow_idle_ms = 200;
	struct pool *p = make_pool(&o);
	struct pool_conn *a = get(p), *b = get(p);
	int b_id = fc(b)->id;
	pool_release(p, a, false);
	pool_release(p, b, false);
	int64_t released = clock_now_ms();
	assert_int_equal(stats(p).idle, 2);
	assert_int_equal(fake_get(&F.closes), 0);
	assert_true(fake_wait_at_least(&F.closes, 1, 3000));
	assert_true(clock_now_ms() - released >= 190);
	struct pool_stats s = stats(p);
	assert_int_equal(s.idle, 1);
	assert_int_equal(s.overflow_closes, 1);
	assert_true(wait_log("db connection closed reason=overflow", 2000));
	/* The least recently used one went; the one left is b. */
	struct pool_conn *c = get(p);
	assert_int_equal(fc(c)->id, b_id);
	pool_release(p, c, false);
	pool_destroy(p);
}

static void overflow_in_steady_use_is_kept(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 1;
	o.overflow_idle_ms = 150;
	struct pool *p = make_pool(&o);
	for (int round = 0; round < 10; round++) {
		struct pool_conn *a = get(p), *b = get(p);
		pool_release(p, a, false);
		pool_release(p, b, false);
		pass_time(30);
	}
	assert_int_equal(fake_get(&F.connects), 2);
	assert_int_equal(stats(p).overflow_closes, 0);
	pool_destroy(p);
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
	(void)state;
	enum { N = 4 };
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 0;
	o.timeout_ms = 5000;
	struct pool *p = make_pool(&o);
	struct pool_conn *held = get(p);
	pthread_t t[N];
	struct waiter_arg w[N];
	n_order = 0;
	for (int i = 0; i < N; i++) {
		w[i] = (struct waiter_arg){ p, i, in_ms(5000), -2, DB_OK };
		pthread_create(&t[i], NULL, waiter_main, &w[i]);
		assert_true(wait_waiting(p, i + 1, 2000));
	}
	pool_release(p, held, false);
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].rc, 0);
		assert_int_equal(order[i], i);
	}
	struct pool_stats s = stats(p);
	assert_int_equal(F.connects, 1);
	assert_int_equal(s.acquires_waited, N);
	assert_true(s.wait_us > 0);
	pool_destroy(p);
}

static void timed_out_waiter_leaves_queue_intact(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 0;
	o.timeout_ms = 5000;
	struct pool *p = make_pool(&o);
	struct pool_conn *held = get(p);
	pthread_t t[3];
	struct waiter_arg w[3] = {
		{ p, 0, in_ms(5000), -2, DB_OK },
		{ p, 1, in_ms(60), -2, DB_OK }, /* gives up in the middle of the queue */
		{ p, 2, in_ms(5000), -2, DB_OK },
	};
	n_order = 0;
	for (int i = 0; i < 3; i++) {
		pthread_create(&t[i], NULL, waiter_main, &w[i]);
		assert_true(wait_waiting(p, i + 1, 2000));
	}
	pthread_join(t[1], NULL);
	assert_int_equal(w[1].rc, -1);
	assert_int_equal(w[1].cat, DB_POOL_TIMEOUT);
	assert_int_equal(stats(p).waiting, 2);
	pool_release(p, held, false);
	pthread_join(t[0], NULL);
	pthread_join(t[2], NULL);
	assert_int_equal(w[0].rc, 0);
	assert_int_equal(w[2].rc, 0);
	assert_int_equal(order[0], 0);
	assert_int_equal(order[1], 2);
	pool_destroy(p);
}

static void pool_wait_bounded_by_caller_deadline(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 0;
	o.timeout_ms = 10000;
	struct pool *p = make_pool(&o);
	struct pool_conn *held = get(p), *c = NULL;
	struct db_error err;
	int64_t t0 = clock_now_ms();
	assert_int_equal(pool_acquire(p, t0 + 50, &c, &err), -1);
	int64_t took = clock_now_ms() - t0;
	assert_int_equal(err.category, DB_POOL_TIMEOUT);
	assert_true(took >= 45 && took < 1000);
	pool_release(p, held, false);
	pool_destroy(p);
}

/* ---- pre-ping and replacement ---- */

static void preping_recent_connection_gets_socket_check_only(void **state)
{
	(void)state;
	struct pool_options o = opts();
	struct pool *p = make_pool(&o);
	pool_release(p, get(p), false);
	pool_release(p, get(p), false);
	assert_int_equal(fake_get(&F.looks), 1);
	assert_int_equal(fake_get(&F.pings), 0);
	pool_destroy(p);
}

static void preping_quiet_connection_gets_round_trip(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.pre_ping_quiet_ms = 20;
	struct pool *p = make_pool(&o);
	pool_release(p, get(p), false);
	pass_time(30);
	pool_release(p, get(p), false);
	assert_int_equal(fake_get(&F.looks), 1);
	assert_int_equal(fake_get(&F.pings), 1);
	assert_int_equal(fake_get(&F.connects), 1);
	pool_destroy(p);
}

static void no_preping_when_disabled(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.pre_ping = false;
	o.pre_ping_quiet_ms = 0;
	struct pool *p = make_pool(&o);
	pool_release(p, get(p), false);
	pool_release(p, get(p), false);
	assert_int_equal(fake_get(&F.looks) + fake_get(&F.pings), 0);
	pool_destroy(p);
}

static void dead_connection_replaced_transparently(void **state)
{
	(void)state;
	struct pool_options o = opts();
	struct pool *p = make_pool(&o);
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
	pool_destroy(p);
}

/* A database restart kills every pooled connection at once; callers must
 * see no error once it is back. */
static void database_restart_costs_callers_no_errors(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.size = 3;
	o.max_overflow = 0;
	o.pre_ping_quiet_ms = 10;
	struct pool *p = make_pool(&o);
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
	pool_destroy(p);
}

static void broken_or_in_transaction_is_discarded(void **state)
{
	(void)state;
	struct pool_options o = opts();
	struct pool *p = make_pool(&o);
	pool_release(p, get(p), true);
	struct pool_conn *c = get(p);
	fc(c)->idle_txn = false;
	pool_release(p, c, false);
	struct pool_stats s = stats(p);
	assert_int_equal(s.discards, 2);
	assert_int_equal(s.idle + s.in_use, 0);
	assert_int_equal(F.closes, 2);
	pool_destroy(p);
}

static void discard_hands_slot_to_waiter(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.size = 1;
	o.max_overflow = 0;
	o.timeout_ms = 5000;
	struct pool *p = make_pool(&o);
	struct pool_conn *held = get(p);
	pthread_t t;
	struct waiter_arg w = { p, 0, in_ms(5000), -2, DB_OK };
	n_order = 0;
	pthread_create(&t, NULL, waiter_main, &w);
	assert_true(wait_waiting(p, 1, 2000));
	pool_release(p, held, true);
	pthread_join(t, NULL);
	assert_int_equal(w.rc, 0);
	assert_int_equal(F.connects, 2);
	assert_int_equal(stats(p).idle, 1);
	pool_destroy(p);
}

/* ---- expiry by the maintenance thread ---- */

static void idle_timeout_closes_without_requests(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.idle_timeout_ms = 100;
	struct pool *p = make_pool(&o);
	pool_release(p, get(p), false);
	int64_t released = clock_now_ms();
	assert_true(fake_wait_at_least(&F.closes, 1, 3000));
	assert_true(clock_now_ms() - released >= 95);
	struct pool_stats s = stats(p);
	assert_int_equal(s.idle_closes, 1);
	assert_int_equal(s.idle, 0);
	assert_true(wait_log("db connection closed reason=idle", 2000));
	pool_destroy(p);
}

static void lifetime_closes_without_requests(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.max_lifetime_ms = 200;
	struct pool *p = make_pool(&o);
	int64_t opened = clock_now_ms();
	pool_release(p, get(p), false);
	assert_true(fake_wait_at_least(&F.closes, 1, 3000));
	int64_t lived = clock_now_ms() - opened;
	assert_true(lived >= 175); /* at most 10% jitter off 200 ms */
	assert_int_equal(stats(p).lifetime_closes, 1);
	assert_true(wait_log("db connection closed reason=lifetime", 2000));
	pool_destroy(p);
}

static void lifetime_over_while_in_use_closes_on_release(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.max_lifetime_ms = 40;
	struct pool *p = make_pool(&o);
	struct pool_conn *c = get(p);
	pass_time(50);
	pool_release(p, c, false);
	assert_int_equal(fake_get(&F.closes), 1);
	assert_int_equal(stats(p).lifetime_closes, 1);
	pool_destroy(p);
}

static void maintenance_sleeps_when_nothing_expires(void **state)
{
	(void)state;
	struct pool_options o = opts(); /* no idle timeout, no lifetime */
	struct pool *p = make_pool(&o);
	for (int i = 0; i < 20; i++)
		pool_release(p, get(p), false);
	pass_time(100);
	assert_true(stats(p).maintenance_wakeups <= 1);
	assert_int_equal(fake_get(&F.pings), 0);
	pool_destroy(p);
}

/* ---- connect: retry, deadline, breaker ---- */

static void transient_connect_failures_are_retried(void **state)
{
	(void)state;
	struct pool_options o = opts();
	struct pool *p = make_pool(&o);
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
	pool_destroy(p);
}

static void permanent_connect_failure_not_retried(void **state)
{
	(void)state;
	struct pool_options o = opts();
	struct pool *p = make_pool(&o);
	script(DB_AUTH, false);
	struct pool_conn *c = NULL;
	struct db_error err;
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_AUTH);
	assert_int_equal(F.connects, 1);
	struct pool_stats s = stats(p);
	assert_int_equal(s.retries, 0);
	assert_int_equal(s.opening + s.in_use + s.idle, 0);
	pool_destroy(p);
}

static void retries_stop_at_attempt_limit(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.retry.retries = 2;
	struct pool *p = make_pool(&o);
	F.otherwise = (struct scripted){ DB_UNREACHABLE, true };
	struct pool_conn *c = NULL;
	struct db_error err;
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_UNREACHABLE);
	assert_int_equal(F.connects, 3);
	assert_int_equal(stats(p).retries, 2);
	pool_destroy(p);
}

static void retries_never_past_deadline(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.retry.retries = 10;
	o.retry.base_ms = 1000;
	o.retry.cap_ms = 1000;
	o.breaker_threshold = 100;
	struct pool *p = make_pool(&o);
	F.otherwise = (struct scripted){ DB_UNREACHABLE, true };
	struct pool_conn *c = NULL;
	struct db_error err;
	int64_t t0 = clock_now_ms();
	assert_int_equal(pool_acquire(p, t0 + 100, &c, &err), -1);
	assert_true(clock_now_ms() - t0 <= 150);
	assert_true(err.category == DB_UNREACHABLE || err.category == DB_TIMEOUT);
	pool_destroy(p);
}

static void connect_attempt_bounded_by_connect_timeout_and_deadline(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.connect_timeout_ms = 200;
	struct pool *p = make_pool(&o);
	struct pool_conn *c = get(p);
	assert_true(F.last_deadline - F.last_call <= 200);
	assert_true(F.last_deadline - F.last_call >= 190);
	pool_release(p, c, true);
	struct db_error err;
	int64_t deadline = in_ms(50);
	assert_int_equal(pool_acquire(p, deadline, &c, &err), 0);
	assert_int_equal(F.last_deadline, deadline);
	pool_release(p, c, false);
	pool_destroy(p);
}

static void slow_connect_times_out_at_deadline(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.retry.retries = 0;
	struct pool *p = make_pool(&o);
	set_gate(true); /* the database silently drops packets */
	struct pool_conn *c = NULL;
	struct db_error err;
	int64_t t0 = clock_now_ms();
	assert_int_equal(pool_acquire(p, t0 + 80, &c, &err), -1);
	assert_int_equal(err.category, DB_TIMEOUT);
	assert_true(clock_now_ms() - t0 < 1000);
	pool_destroy(p);
}

static void breaker_opens_fails_fast_then_recovers(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.retry.retries = 0;
	o.breaker_threshold = 3;
	o.breaker_cooldown_ms = 60;
	struct pool *p = make_pool(&o);
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
	pass_time(70);
	c = get(p); /* the half-open probe */
	assert_int_equal(stats(p).breaker_state, RETRY_BREAKER_CLOSED);
	assert_true(log_contains("db circuit breaker closed"));
	pool_release(p, c, false);
	pool_destroy(p);
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

static void half_open_lets_one_probe_through(void **state)
{
	(void)state;
	struct pool_options o = opts();
	o.retry.retries = 0;
	o.breaker_threshold = 1;
	o.breaker_cooldown_ms = 20;
	struct pool *p = make_pool(&o);
	script(DB_UNREACHABLE, true);
	struct pool_conn *c = NULL;
	struct db_error err;
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	pass_time(30);
	set_gate(true);
	struct acquirer probe = { .p = p };
	pthread_t t;
	pthread_create(&t, NULL, acquirer_main, &probe);
	assert_true(fake_wait_at_least(&F.in_connect, 1, 2000));
	assert_int_equal(pool_acquire(p, in_ms(5000), &c, &err), -1);
	assert_int_equal(err.category, DB_CIRCUIT_OPEN);
	set_gate(false);
	pthread_join(t, NULL);
	assert_int_equal(probe.rc, 0);
	assert_int_equal(F.connects, 2);
	pool_release(p, probe.c, false);
	pool_destroy(p);
}

static void *stats_main(void *arg)
{
	struct pool_stats *s = malloc(sizeof *s);
	pool_stats(arg, s);
	return s;
}

/* Connects run outside the mutex: while two are in flight the pool still
 * answers, and both proceed at once. */
static void connect_runs_outside_the_mutex(void **state)
{
	(void)state;
	struct pool_options o = opts();
	struct pool *p = make_pool(&o);
	set_gate(true);
	struct acquirer a = { .p = p }, b = { .p = p };
	pthread_t ta, tb, ts;
	pthread_create(&ta, NULL, acquirer_main, &a);
	pthread_create(&tb, NULL, acquirer_main, &b);
	assert_true(fake_wait_at_least(&F.in_connect, 2, 2000));
	pthread_create(&ts, NULL, stats_main, p);
	struct timespec limit = ts_at(0);
	clock_gettime(CLOCK_REALTIME, &limit);
	limit.tv_sec += 2;
	void *res = NULL;
	assert_int_equal(pthread_timedjoin_np(ts, &res, &limit), 0);
	struct pool_stats *s = res;
	assert_int_equal(s->opening, 2);
	assert_int_equal(s->in_use, 0);
	free(s);
	set_gate(false);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(a.rc, 0);
	assert_int_equal(b.rc, 0);
	pool_release(p, a.c, false);
	pool_release(p, b.c, false);
	pool_destroy(p);
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
	(void)state;
	enum { N = 8 };
	struct pool_options o = opts();
	o.timeout_ms = 5000;
	o.overflow_idle_ms = 1;
	struct pool *p = make_pool(&o);
	pthread_t t[N];
	struct hammer h[N];
	for (int i = 0; i < N; i++) {
		h[i] = (struct hammer){ p, 0 };
		pthread_create(&t[i], NULL, hammer_main, &h[i]);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(h[i].errors, 0);
	}
	struct pool_stats s = stats(p);
	assert_true(F.max_open <= 4);
	assert_int_equal(s.in_use + s.opening + s.waiting, 0);
	assert_int_equal(s.acquires, N * 300);
	pool_destroy(p);
	assert_int_equal(F.open, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(starts_empty_and_opens_nothing),
		cmocka_unit_test(acquire_connects_then_reuses),
		cmocka_unit_test(idle_connections_reused_lifo),
		cmocka_unit_test(destroy_closes_every_connection),
		cmocka_unit_test(options_from_config_maps_units),
		cmocka_unit_test(overflow_bounded_then_pool_timeout),
		cmocka_unit_test(overflow_not_closed_on_return),
		cmocka_unit_test(overflow_in_steady_use_is_kept),
		cmocka_unit_test(waiters_served_in_fifo_order),
		cmocka_unit_test(timed_out_waiter_leaves_queue_intact),
		cmocka_unit_test(pool_wait_bounded_by_caller_deadline),
		cmocka_unit_test(preping_recent_connection_gets_socket_check_only),
		cmocka_unit_test(preping_quiet_connection_gets_round_trip),
		cmocka_unit_test(no_preping_when_disabled),
		cmocka_unit_test(dead_connection_replaced_transparently),
		cmocka_unit_test(database_restart_costs_callers_no_errors),
		cmocka_unit_test(broken_or_in_transaction_is_discarded),
		cmocka_unit_test(discard_hands_slot_to_waiter),
		cmocka_unit_test(idle_timeout_closes_without_requests),
		cmocka_unit_test(lifetime_closes_without_requests),
		cmocka_unit_test(lifetime_over_while_in_use_closes_on_release),
		cmocka_unit_test(maintenance_sleeps_when_nothing_expires),
		cmocka_unit_test(transient_connect_failures_are_retried),
		cmocka_unit_test(permanent_connect_failure_not_retried),
		cmocka_unit_test(retries_stop_at_attempt_limit),
		cmocka_unit_test(retries_never_past_deadline),
		cmocka_unit_test(connect_attempt_bounded_by_connect_timeout_and_deadline),
		cmocka_unit_test(slow_connect_times_out_at_deadline),
		cmocka_unit_test(breaker_opens_fails_fast_then_recovers),
		cmocka_unit_test(half_open_lets_one_probe_through),
		cmocka_unit_test(connect_runs_outside_the_mutex),
		cmocka_unit_test(many_threads_never_exceed_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
