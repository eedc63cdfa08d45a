/* pool: the per-worker connection pool shared by the worker's request threads
 * (DESIGN.md §5): starts empty, bounded by size + overflow, FIFO waiters, LIFO
 * reuse, pre-ping, connects on a thread of their own (pool_dial: retry,
 * circuit breaker, failure hold) that outlive the caller that asked, and a
 * maintenance thread that closes idle, surplus and aged connections on time. */
#ifndef NEONFCGI_POOL_H
#define NEONFCGI_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "pgconn.h"
#include "pool_connector.h"
#include "pool_mirror.h"
#include "retry.h"

struct config;

/* The pool's knobs in milliseconds; pool_options_from_config() maps
 * DESIGN.md §2's variables onto them, tests set them directly. 0 disables
 * idle_timeout_ms and max_lifetime_ms. */
struct pool_options {
	int size;                   /* DB_POOL_SIZE */
	int max_overflow;           /* DB_MAX_OVERFLOW */
	int64_t overflow_idle_ms;   /* DB_OVERFLOW_IDLE_MS */
	int64_t timeout_ms;         /* DB_POOL_TIMEOUT_MS */
	bool pre_ping;              /* DB_POOL_PRE_PING */
	int64_t pre_ping_quiet_ms;  /* idle longer than this: real ping (1000) */
	int64_t idle_timeout_ms;    /* DB_IDLE_TIMEOUT_S */
	int64_t max_lifetime_ms;    /* DB_MAX_LIFETIME_S, up to 10% less by jitter */
	int64_t connect_timeout_ms; /* DB_CONNECT_TIMEOUT_MS */
	int64_t failure_hold_ms;    /* DB_FAILURE_HOLD_MS */
	struct retry_policy retry;  /* DB_RETRY_ATTEMPTS, DB_RETRY_BACKOFF_MS */
	int breaker_threshold;      /* consecutive connect failures that open it */
	int64_t breaker_cooldown_ms;
	uint64_t seed;           /* jitter RNG; 0 = from pid and time */
	struct pool_quota quota; /* the instance's bound; zero: none */
};

struct pool;
struct pool_conn;

void pool_options_from_config(struct pool_options *o, const struct config *cfg);
/* In the worker, after fork: starts the maintenance thread, opens nothing.
 * NULL (logged) only when the thread cannot be started. */
struct pool *pool_create(const struct pool_options *o, const struct pool_connector *connector,
			 void *ctx) __attribute__((warn_unused_result));
/* Stops the maintenance thread and closes every pooled connection. Call once
 * no thread can acquire or release any more (request threads joined). */
void pool_destroy(struct pool *p);

/* A live connection within deadline_ms (clock_now_ms()) and the pool's
 * timeout: 0 and *out, or -1 with err (pool_timeout; timeout while a connect
 * is still in progress, which then joins the pool; circuit_open; a held
 * failure; or the connect failure's category). */
int pool_acquire(struct pool *p, int64_t deadline_ms, struct pool_conn **out, struct db_error *err)
    __attribute__((warn_unused_result));
/* Give c back. broken: the caller saw it fail (dberror_discards()),
 * so it is closed; so is one left inside a transaction. */
void pool_release(struct pool *p, struct pool_conn *c, bool broken);
/* The connector's handle: a PGconn * with pool_pg_connector(). */
void *pool_conn_handle(const struct pool_conn *c);

void pool_stats(struct pool *p, struct pool_stats *out);
struct sb_pool;
/* Keep a copy of the numbers in the worker's scoreboard section (gauges
 * stored, counters added as deltas) for /metrics and /health/db. */
void pool_set_mirror(struct pool *p, struct sb_pool *mirror);

#endif
