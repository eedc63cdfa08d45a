/* routes: the answer to one request, from its route. The worker calls
 * routes_answer once per request; everything below it stays in this file so
 * that the request path costs one call across files. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <fcgiapp.h>

#include "clock.h"
#include "config.h"
#include "dberror.h"
#include "health.h"
#include "healthcache.h"
#include "healthflight.h"
#include "log.h"
#include "metrics.h"
#include "pgconn.h"
#include "pool.h"
#include "router.h"
#include "routes.h"
#include "scoreboard.h"
#include "xalloc.h"

static void respond_error(struct routes_response *r, int status, const char *msg)
{
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "{\"error\":\"%s\"}", msg);

	r->status = status;
	r->content_type = "application/json";
	r->body = xstrdup(buf);
	r->len = (size_t)n;
}

/* Acquire a pooled connection and run SELECT 1, all within the deadline; a
 * pass is kept for HEALTH_DB_MAX_AGE_MS (healthcache). healthflight runs it. */
static void check_db(void *arg, int64_t deadline_ms, struct health_db_check *chk)
{
	struct routes *rt = arg;
	int64_t t0 = clock_now_us();
	struct pool_conn *c;
	struct db_error err = { 0 };

	chk->ok = false;
	if (pool_acquire(rt->pool, deadline_ms, &c, &err) == 0) {
		int rc = pgconn_exec(pool_conn_handle(c), "SELECT 1", deadline_ms, NULL, &err);
		pool_release(rt->pool, c, rc != 0 && dberror_discards(&err));
		chk->ok = rc == 0;
	}
	/* Behind an open breaker, report why it opened (unreachable, timeout…):
	 * that is what an operator acts on; the breaker shows as "circuit". */
	chk->circuit_open = err.category == DB_CIRCUIT_OPEN;
	chk->category = chk->circuit_open && err.cause != DB_OK ? err.cause : err.category;
	chk->response_ms = (double)(clock_now_us() - t0) / 1000.0;
	health_stamp(chk);
	sb_add(&rt->sb_slot->probes.health_checks, 1);
	healthcache_publish(rt->sb, chk, clock_now_ms());
	if (!chk->ok)
		sb_add(&rt->sb_slot->sat.health_failures[chk->category], 1);
	if (!chk->ok)
		log_warnx("health check failed category=%s circuit=%s ms=%.1f",
			  db_category_name(chk->category), chk->circuit_open ? "open" : "closed",
			  chk->response_ms);
}

static void pool_view(const struct routes *rt, struct health_pool_view *v)
{
	struct sb_pool sum;

	scoreboard_sum_pool(rt->sb, &sum);
	v->idle = (long)sb_gauge_get(&sum.idle);
	v->in_use = (long)sb_gauge_get(&sum.in_use);
	v->waiting = (long)sb_gauge_get(&sum.waiting);
	v->breakers_open = (long)sb_gauge_get(&sum.breaker_open);
	v->max = config_db_bound(rt->cfg);
}

/* A recent enough check of any worker, else this worker's next check. A
 * request whose deadline passed while it waited for one is no answer of a
 * check, and is not counted by source. */
static void answer_health_db(struct routes *rt, struct health_db_check *chk)
{
	int64_t now = clock_now_ms();
	enum sb_health_source src = SB_HEALTH_CACHED;

	if (!healthcache_get(rt->sb, rt->cfg->health_db_max_age_ms, now, chk)) {
		switch (healthflight_run(rt->flight, now + rt->cfg->health_timeout_ms, chk)) {
		case HEALTHFLIGHT_CHECK: src = SB_HEALTH_CHECK; break;
		case HEALTHFLIGHT_SHARED: src = SB_HEALTH_SHARED; break;
		case HEALTHFLIGHT_TIMEOUT: return;
		}
	}
	sb_add(&rt->sb_slot->probes.health_answers[src], 1);
}

static void respond_health_db(struct routes *rt, struct routes_response *r)
{
	struct health_db_check chk;
	struct health_pool_view view;

	answer_health_db(rt, &chk);
	pool_view(rt, &view);
	r->content_type = "application/health+json";
	r->body = health_db_body(&chk, &view, rt->cfg->health_details, &r->status, &r->retry_after,
				 &r->len);
}

static void dispatch(struct routes *rt, const struct route_match *m, struct routes_response *r)
{
	switch (m->route) {
	case ROUTE_HEALTH:
		r->status = 200;
		r->content_type = "application/health+json";
		r->body = health_live_body((long)((clock_now_ms() - rt->started_ms) / 1000),
					   rt->pid, &r->len);
		break;
	case ROUTE_HEALTH_DB: respond_health_db(rt, r); break;
	case ROUTE_METRICS:
		rt->before_metrics(rt->before_metrics_arg);
		r->status = 200;
		r->content_type = METRICS_CONTENT_TYPE;
		r->body = metrics_render(rt->sb, rt->cfg, &r->len);
		break;
	default: respond_error(r, 404, "not found"); break;
	}
}

void routes_init_worker(struct routes *rt)
{
	rt->flight = healthflight_new(check_db, rt);
}

void routes_stop_worker(struct routes *rt)
{
	healthflight_free(rt->flight);
	rt->flight = NULL;
}

void routes_answer(struct routes *rt, FCGX_Request *req, struct routes_response *r)
{
	int64_t t0 = clock_now_us();
	struct route_match m;

	*r = (struct routes_response){ 0 };
	router_resolve(FCGX_GetParam("REQUEST_METHOD", req->envp),
		       FCGX_GetParam("PATH_INFO", req->envp),
		       FCGX_GetParam("REQUEST_URI", req->envp), &m);
	if (m.status == 404) {
		respond_error(r, 404, "not found");
	} else if (m.status == 405) {
		respond_error(r, 405, "method not allowed");
		r->allow = "GET, HEAD";
	} else {
		dispatch(rt, &m, r);
	}
	r->route = m.route;
	r->head = m.head;
	r->us = clock_now_us() - t0;
	scoreboard_request(rt->sb_slot, m.route, r->status, r->us);
}
