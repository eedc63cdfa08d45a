/* pool_dial: how the pool opens a connection (DESIGN.md §5): the circuit
 * breaker is asked before every attempt, transient failures are retried with
 * full-jitter backoff within the caller's deadline, and every attempt is
 * counted (also in the worker's scoreboard section) and logged. */
#ifndef NEONFCGI_POOL_DIAL_H
#define NEONFCGI_POOL_DIAL_H

#include <stdbool.h>
#include <stdint.h>

#include "pgconn.h"
#include "pool_connector.h"
#include "retry.h"

struct sb_pool;
struct pool_dial;

struct pool_dial_options {
	int64_t connect_timeout_ms; /* one attempt, name resolution included */
	struct retry_policy retry;
	int breaker_threshold; /* consecutive connect failures that open it */
	int64_t breaker_cooldown_ms;
	uint64_t seed; /* backoff jitter */
};

/* Counters only grow. */
struct pool_dial_stats {
	uint64_t connects_ok;
	uint64_t connect_us; /* total duration of successful connects */
	uint64_t connects_failed[DB_CATEGORY_COUNT];
	uint64_t retries;
	uint64_t breaker_rejects; /* circuit_open errors */
	uint64_t breaker_opens;
	int breaker_state; /* enum retry_breaker_state */
};

struct pool_dial *pool_dial_new(const struct pool_connector *c, void *ctx,
				const struct pool_dial_options *o);
void pool_dial_free(struct pool_dial *d);
/* Add the counters to mirror from now on (NULL: stop). */
void pool_dial_set_mirror(struct pool_dial *d, struct sb_pool *mirror);
/* A new connection within deadline_ms, or NULL with err: circuit_open, timeout,
 * or the last attempt's failure. Blocks (connects, backs off), so call it
 * without holding a lock. */
void *pool_dial_connect(struct pool_dial *d, int64_t deadline_ms, struct pgconn_info *info,
			struct db_error *err);
/* Whether the breaker is other than closed (it refuses or probes). */
bool pool_dial_breaker_open(struct pool_dial *d);
void pool_dial_stats(struct pool_dial *d, struct pool_dial_stats *out);

#endif
