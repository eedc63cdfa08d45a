/* pool_dial: how the pool opens a connection (DESIGN.md §5), on a thread of
 * its own so that an attempt outlives the request that asked for it (a
 * waking Neon compute takes seconds): the circuit breaker is asked before
 * every attempt, transient failures are retried with full-jitter backoff
 * within the asker's deadline, a permanent failure (or Neon's rate limit) is
 * held and answered from memory for a while, and every attempt is counted
 * (also in the worker's scoreboard section) and logged. */
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
	int64_t failure_hold_ms;    /* DB_FAILURE_HOLD_MS: auth, tls, endpoint, quota */
	struct retry_policy retry;
	int breaker_threshold; /* consecutive connect failures that open it */
	int64_t breaker_cooldown_ms;
	uint64_t seed;           /* backoff jitter */
	struct pool_quota quota; /* reserved before an opening, released if it fails */
};

/* Counters only grow. */
struct pool_dial_stats {
	uint64_t connects_ok;
	uint64_t connect_us; /* total duration of successful connects */
	uint64_t connects_failed[DB_CATEGORY_COUNT];
	uint64_t retries;
	uint64_t breaker_rejects; /* circuit_open errors */
	uint64_t breaker_opens;
	uint64_t held;     /* openings answered from a held failure */
	int breaker_state; /* enum retry_breaker_state */
};

/* How an opening ended, told on the dial's thread: handle, or NULL with err. */
typedef void (*pool_dial_done_fn)(void *arg, void *handle, const struct pgconn_info *info,
				  const struct db_error *err);

/* Starts the dial's thread, which calls done after every opening; NULL
 * (logged) when the thread cannot be started. */
struct pool_dial *pool_dial_new(const struct pool_connector *c, void *ctx,
				const struct pool_dial_options *o, pool_dial_done_fn done,
				void *done_arg) __attribute__((warn_unused_result));
/* Stops the thread (an attempt in flight ends first, within the connect
 * timeout) and frees d. done is not called after this returns. */
void pool_dial_free(struct pool_dial *d);
/* Add the counters to mirror from now on (NULL: stop). */
void pool_dial_set_mirror(struct pool_dial *d, struct sb_pool *mirror);
/* Open one connection on the dial's thread; returns at once. Retries begin
 * only before deadline_ms, but an attempt runs its whole connect timeout. The
 * caller asks again only after done was called (one opening at a time). */
void pool_dial_request(struct pool_dial *d, int64_t deadline_ms);
/* true with err when an opening now would only repeat a held failure. */
bool pool_dial_held(struct pool_dial *d, struct db_error *err);
/* Whether the opening is still waiting for a slot of the instance's bound
 * (no connect has begun). */
bool pool_dial_reserving(struct pool_dial *d);
/* Whether the breaker is other than closed (it refuses or probes). */
bool pool_dial_breaker_open(struct pool_dial *d);
void pool_dial_stats(struct pool_dial *d, struct pool_dial_stats *out);

#endif
