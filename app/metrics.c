/* metrics: render the scoreboard. Names carry base units (_seconds, _total);
 * every family has HELP and TYPE. */
#include <libpq-fe.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fcgiguard.h"
#include "metrics.h"
#include "scoreboard.h"
#include "xalloc.h"

/* The body is about 11 KB whatever WORKERS is: one allocation covers it. */
#define METRICS_BODY_CAP 16384

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			abort();
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		b->cap = (b->cap + (size_t)n) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
}

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP neonfcgi_%s %s\n# TYPE neonfcgi_%s %s\n", name, help, name, type);
}

static const char *const status_labels[SB_STATUS_CLASSES] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
static const char *const exit_labels[SB_EXIT_CAUSES] = { "normal", "error", "signal" };

/* Requests and their durations, summed over the slots once per scrape, so
 * that a histogram's _count is the sum of its route's requests_total. */
struct request_totals {
	uint64_t requests[ROUTE_COUNT][SB_STATUS_CLASSES];
	uint64_t buckets[ROUTE_COUNT][SB_DURATION_BUCKETS];
	uint64_t us[ROUTE_COUNT];
};

static void sum_requests(const struct scoreboard *sb, struct request_totals *t)
{
	int used = scoreboard_slots_used(sb);

	memset(t, 0, sizeof(*t));
	/* Buckets first (acquire; scoreboard_request adds to them last), so no
	 * finite bucket can exceed the request count read after it. */
	for (int i = 0; i < used; i++)
		for (int r = 0; r < ROUTE_COUNT; r++) {
			const struct sb_slot *s = &sb->slots[i];
			for (int k = 0; k < SB_DURATION_BUCKETS; k++)
				t->buckets[r][k] += atomic_load_explicit(&s->duration_buckets[r][k],
									 memory_order_acquire);
			t->us[r] += sb_get(&s->duration_us[r]);
		}
	for (int i = 0; i < used; i++)
		for (int r = 0; r < ROUTE_COUNT; r++)
			for (int c = 0; c < SB_STATUS_CLASSES; c++)
				t->requests[r][c] += sb_get(&sb->slots[i].requests[r][c]);
}

static void render_requests(struct buf *b, const struct request_totals *t)
{
	family(b, "requests_total", "counter",
	       "FastCGI requests answered, by route and status class.");
	for (int r = 0; r < ROUTE_COUNT; r++)
		for (int c = 0; c < SB_STATUS_CLASSES; c++)
			buf_printf(b, "neonfcgi_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
				   router_name((enum route)r), status_labels[c],
				   (unsigned long long)t->requests[r][c]);
}

static void render_histogram(struct buf *b, const char *name, const char *labels,
			     const uint64_t *buckets, uint64_t count, double sum_s)
{
	uint64_t cum = 0;
	const char *sep = *labels ? "," : "";

	for (int i = 0; i < SB_DURATION_BUCKETS; i++) {
		cum += buckets[i];
		buf_printf(b, "neonfcgi_%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
			   sb_duration_bounds[i], (unsigned long long)cum);
	}
	buf_printf(b, "neonfcgi_%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
		   (unsigned long long)count);
	buf_printf(b, "neonfcgi_%s_sum{%s} %.6f\n", name, labels, sum_s);
	buf_printf(b, "neonfcgi_%s_count{%s} %llu\n", name, labels, (unsigned long long)count);
}

static void render_durations(struct buf *b, const struct request_totals *t)
{
	family(b, "request_duration_seconds", "histogram", "Time to answer a request, by route.");
	for (int r = 0; r < ROUTE_COUNT; r++) {
		uint64_t count = 0;
		char labels[64];
		for (int c = 0; c < SB_STATUS_CLASSES; c++)
			count += t->requests[r][c];
		snprintf(labels, sizeof(labels), "route=\"%s\"", router_name((enum route)r));
		render_histogram(b, "request_duration_seconds", labels, t->buckets[r], count,
				 (double)t->us[r] / 1e6);
	}
}

static void gauge(struct buf *b, const char *name, const char *help, long long v)
{
	family(b, name, "gauge", help);
	buf_printf(b, "neonfcgi_%s %lld\n", name, v);
}

static void counter(struct buf *b, const char *name, const char *help, uint64_t v)
{
	family(b, name, "counter", help);
	buf_printf(b, "neonfcgi_%s %llu\n", name, (unsigned long long)v);
}

static void render_pool_gauges(struct buf *b, const struct sb_pool *p, const struct config *cfg)
{
	family(b, "db_pool_connections", "gauge", "Database connections of all workers, by state.");
	buf_printf(b, "neonfcgi_db_pool_connections{state=\"idle\"} %lld\n",
		   (long long)sb_gauge_get(&p->idle));
	buf_printf(b, "neonfcgi_db_pool_connections{state=\"in_use\"} %lld\n",
		   (long long)sb_gauge_get(&p->in_use));
	buf_printf(b, "neonfcgi_db_pool_connections{state=\"opening\"} %lld\n",
		   (long long)sb_gauge_get(&p->opening));
	gauge(b, "db_pool_waiting", "Requests waiting for a free connection.",
	      sb_gauge_get(&p->waiting));
	gauge(b, "db_pool_max_connections",
	      "Configured bound: WORKERS x (DB_POOL_SIZE + DB_MAX_OVERFLOW).",
	      config_db_bound(cfg));
	gauge(b, "db_pool_size", "Configured DB_POOL_SIZE (per worker).", cfg->db_pool_size);
	gauge(b, "db_pool_max_overflow", "Configured DB_MAX_OVERFLOW (per worker).",
	      cfg->db_max_overflow);
	gauge(b, "db_breaker_open", "Workers whose circuit breaker is open.",
	      sb_gauge_get(&p->breaker_open));
}

static void render_pool_counters(struct buf *b, const struct sb_pool *p)
{
	counter(b, "db_pool_acquires_total", "Connections handed out.", sb_get(&p->acquires));
	counter(b, "db_pool_acquire_waits_total", "Acquires that had to wait.",
		sb_get(&p->acquire_waits));
	family(b, "db_pool_acquire_wait_seconds_total", "counter",
	       "Time spent waiting for a connection.");
	buf_printf(b, "neonfcgi_db_pool_acquire_wait_seconds_total %.6f\n",
		   (double)sb_get(&p->acquire_wait_us) / 1e6);
	counter(b, "db_pool_timeouts_total", "Acquires that timed out (pool_timeout).",
		sb_get(&p->timeouts));
	family(b, "db_connects_total", "counter", "Connection attempts, by result.");
	buf_printf(b, "neonfcgi_db_connects_total{result=\"ok\"} %llu\n",
		   (unsigned long long)sb_get(&p->connects_ok));
	for (int c = DB_OK + 1; c < DB_CATEGORY_COUNT; c++)
		buf_printf(b, "neonfcgi_db_connects_total{result=\"%s\"} %llu\n",
			   db_category_name((enum db_category)c),
			   (unsigned long long)sb_get(&p->connects_failed[c]));
	uint64_t buckets[SB_DURATION_BUCKETS];
	for (int k = 0; k < SB_DURATION_BUCKETS; k++)
		buckets[k] = sb_get(&p->connect_buckets[k]);
	family(b, "db_connect_duration_seconds", "histogram",
	       "Time to open a connection (TLS and auth included).");
	render_histogram(b, "db_connect_duration_seconds", "", buckets, sb_get(&p->connects_ok),
			 (double)sb_get(&p->connect_us) / 1e6);
	counter(b, "db_connect_retries_total", "Retries of transient connect failures.",
		sb_get(&p->retries));
	counter(b, "db_preping_evictions_total", "Pooled connections found dead before use.",
		sb_get(&p->preping_evictions));
	family(b, "db_connection_closes_total", "counter",
	       "Connections closed by the pool, by reason.");
	for (int r = 0; r < SB_CLOSE_REASONS; r++)
		buf_printf(b, "neonfcgi_db_connection_closes_total{reason=\"%s\"} %llu\n",
			   scoreboard_close_reason_name((enum sb_close_reason)r),
			   (unsigned long long)sb_get(&p->closes[r]));
	counter(b, "db_breaker_opens_total", "Times a worker's circuit breaker opened.",
		sb_get(&p->breaker_opens));
}

static void render_workers(struct buf *b, const struct scoreboard *sb)
{
	long long live = 0;

	for (int i = 0; i < scoreboard_slots_used(sb); i++)
		live += sb_gauge_get(&sb->slots[i].pid) != 0;
	gauge(b, "workers", "Worker processes running.", live);
	counter(b, "worker_starts_total", "Worker processes started.",
		sb_get(&sb->master.worker_starts));
	counter(b, "worker_restarts_total", "Workers respawned after an unexpected exit.",
		sb_get(&sb->master.worker_restarts));
	family(b, "worker_exits_total", "counter", "Worker exits, by cause.");
	for (int c = 0; c < SB_EXIT_CAUSES; c++)
		buf_printf(b, "neonfcgi_worker_exits_total{cause=\"%s\"} %llu\n", exit_labels[c],
			   (unsigned long long)sb_get(&sb->master.worker_exits[c]));
	gauge(b, "start_time_seconds", "Start of the instance, seconds since the epoch.",
	      sb_gauge_get(&sb->master.started_unix_s));
}

static void render_build_info(struct buf *b)
{
	int pq = PQlibVersion();

	family(b, "build_info", "gauge", "Build and library versions; always 1.");
	buf_printf(b, "neonfcgi_build_info{version=\"%s\",libpq=\"%d.%d\",jansson=\"%s\"} 1\n",
		   NEONFCGI_VERSION, pq / 10000, pq % 10000, jansson_version_str());
}

/* ---- saturation (DESIGN.md §4) ---- */

static void render_threads(struct buf *b, const struct scoreboard *sb)
{
	int64_t threads = 0, busy = sb_gauge_get(&sb->inst.busy);

	for (int i = 0; i < scoreboard_slots_used(sb); i++)
		threads += sb_gauge_get(&sb->slots[i].sat.threads);
	busy = busy < 0 ? 0 : busy > threads ? threads : busy;
	family(b, "request_threads", "gauge",
	       "Request threads of all workers: busy (serving a connection) or idle (waiting in "
	       "accept). All busy: new connections wait in the listen queue.");
	buf_printf(b, "neonfcgi_request_threads{state=\"busy\"} %lld\n", (long long)busy);
	buf_printf(b, "neonfcgi_request_threads{state=\"idle\"} %lld\n",
		   (long long)(threads - busy));
	gauge(b, "request_threads_busy_max",
	      "Most request threads busy at once since the instance started.",
	      sb_gauge_get(&sb->inst.busy_max));
}

/* Absent until a worker could read the queue (not a socket we can ask). */
static void render_listen_queue(struct buf *b, const struct scoreboard *sb)
{
	if (sb_gauge_get(&sb->inst.listen_queue) < 0)
		return;
	gauge(b, "listen_queue",
	      "Connections accepted by the kernel and waiting for a request thread, at the last "
	      "sample (each scrape, and every 10 ms at most while workers accept).",
	      sb_gauge_get(&sb->inst.listen_queue));
	gauge(b, "listen_queue_max", "Longest listen queue sampled since the instance started.",
	      sb_gauge_get(&sb->inst.listen_queue_max));
	gauge(b, "listen_queue_limit",
	      "Backlog of the listening socket: connections past it are refused or dropped.",
	      sb_gauge_get(&sb->inst.listen_queue_limit));
}

static void render_pool_wait(struct buf *b, const struct sb_pool *p)
{
	uint64_t buckets[SB_DURATION_BUCKETS], finite = 0, count = sb_get(&p->acquire_waits);

	for (int k = 0; k < SB_DURATION_BUCKETS; k++)
		finite += buckets[k] = sb_get(&p->wait_buckets[k]);
	family(b, "pool_wait_seconds", "histogram",
	       "Seconds a request queued for a pooled connection (acquires that found none free; "
	       "one that opens its own connection is in db_connect_duration_seconds).");
	render_histogram(b, "pool_wait_seconds", "", buckets, count > finite ? count : finite,
			 (double)sb_get(&p->acquire_wait_us) / 1e6);
}

/* The per-slot counters of struct sb_saturation, summed. */
struct saturation_totals {
	uint64_t slow, refused, rejected[FCGIGUARD_REASONS], health[DB_CATEGORY_COUNT];
};

static void sum_saturation(const struct scoreboard *sb, struct saturation_totals *t)
{
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < scoreboard_slots_used(sb); i++) {
		const struct sb_saturation *s = &sb->slots[i].sat;
		t->slow += sb_get(&s->slow_requests);
		t->refused += sb_get(&s->refused_peers);
		for (int k = 0; k < FCGIGUARD_REASONS; k++)
			t->rejected[k] += sb_get(&s->rejected[k]);
		for (int c = 0; c < DB_CATEGORY_COUNT; c++)
			t->health[c] += sb_get(&s->health_failures[c]);
	}
}

static void render_refusals(struct buf *b, const struct saturation_totals *t)
{
	counter(b, "slow_requests_total", "Requests slower than SLOW_REQUEST_MS.", t->slow);
	counter(b, "refused_peers_total",
		"TCP connections closed because the peer is not in FCGI_WEB_SERVER_ADDRS.",
		t->refused);
	family(b, "rejected_requests_total", "counter",
	       "FastCGI input refused before it reached a request thread, by reason.");
	for (int k = 0; k < FCGIGUARD_REASONS; k++)
		buf_printf(b, "neonfcgi_rejected_requests_total{reason=\"%s\"} %llu\n",
			   fcgiguard_reason_label(k), (unsigned long long)t->rejected[k]);
	family(b, "health_db_failures_total", "counter",
	       "Failed /health/db checks, by category (as in the answer's output).");
	for (int c = DB_OK + 1; c < DB_CATEGORY_COUNT; c++)
		buf_printf(b, "neonfcgi_health_db_failures_total{category=\"%s\"} %llu\n",
			   db_category_name((enum db_category)c), (unsigned long long)t->health[c]);
}

static void render_saturation(struct buf *b, const struct scoreboard *sb, const struct sb_pool *p)
{
	struct saturation_totals t;

	render_threads(b, sb);
	render_listen_queue(b, sb);
	render_pool_wait(b, p);
	sum_saturation(sb, &t);
	render_refusals(b, &t);
}

/* DESIGN.md §5a and §1: what probes cost, and the bound's slots in use. */
static void render_probes(struct buf *b, const struct scoreboard *sb)
{
	static const char *const sources[SB_HEALTH_SOURCES] = { "check", "shared", "cached" };
	uint64_t checks = 0, answers[SB_HEALTH_SOURCES] = { 0 };
	long long slots = 0;

	for (int i = 0; i < scoreboard_slots_used(sb); i++) {
		const struct sb_probes *p = &sb->slots[i].probes;
		checks += sb_get(&p->health_checks);
		for (int k = 0; k < SB_HEALTH_SOURCES; k++)
			answers[k] += sb_get(&p->health_answers[k]);
		slots += sb_gauge_get(&p->db_slots);
	}
	counter(b, "health_db_checks_total", "/health/db checks run (acquire and SELECT 1).",
		checks);
	family(b, "health_db_answers_total", "counter",
	       "/health/db answers, by source: a check of the request's own, a check shared "
	       "with requests that waited for it, or a recent check of any worker "
	       "(HEALTH_DB_MAX_AGE_MS).");
	for (int k = 0; k < SB_HEALTH_SOURCES; k++)
		buf_printf(b, "neonfcgi_health_db_answers_total{source=\"%s\"} %llu\n", sources[k],
			   (unsigned long long)answers[k]);
	gauge(b, "db_slots_reserved",
	      "Connections reserved against the instance's bound, by all workers.", slots);
}

char *metrics_render(const struct scoreboard *sb, const struct config *cfg, size_t *len)
{
	struct buf b = { .cap = METRICS_BODY_CAP };
	struct request_totals totals;
	struct sb_pool pool;

	b.p = xmalloc(b.cap);
	render_build_info(&b);
	sum_requests(sb, &totals);
	render_requests(&b, &totals);
	render_durations(&b, &totals);
	scoreboard_sum_pool(sb, &pool);
	render_pool_gauges(&b, &pool, cfg);
	render_pool_counters(&b, &pool);
	render_workers(&b, sb);
	render_saturation(&b, sb, &pool);
	render_probes(&b, sb);
	*len = b.len;
	return b.p;
}
