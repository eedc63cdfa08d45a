/* pool_mirror: the pool's numbers (struct pool_stats, which pool_stats() in
 * pool.h fills), and their copy in the worker's scoreboard section, for
 * /metrics and /health/db (the copy is internal to pool*.c). Gauges are
 * stored; counters are added as deltas, so a respawned worker continues its
 * slot's totals. The caller serializes the calls (pool.c: under its mutex).
 * The connect counters are pool_dial's, which adds them itself. */
#ifndef NEONFCGI_POOL_MIRROR_H
#define NEONFCGI_POOL_MIRROR_H

#include <stdint.h>

#include "scoreboard.h"

/* Counters only grow; the gauges are a snapshot. connects_failed is indexed
 * by enum db_category. */
struct pool_stats {
	int idle, in_use, opening, waiting, max;
	int breaker_state;        /* enum retry_breaker_state */
	uint64_t acquires;        /* successful and failed */
	uint64_t acquires_waited; /* had to queue for a connection */
	uint64_t wait_us;         /* total time spent queued */
	uint64_t timeouts;        /* pool_timeout errors */
	uint64_t connects_ok;
	uint64_t connect_us; /* total duration of successful connects */
	uint64_t connects_failed[DB_CATEGORY_COUNT];
	uint64_t retries;
	uint64_t breaker_rejects; /* circuit_open errors */
	uint64_t breaker_opens;
	uint64_t held;              /* answered from a held failure */
	uint64_t preping_evictions; /* dead on checkout, replaced */
	uint64_t idle_closes;
	uint64_t lifetime_closes;
	uint64_t overflow_closes;
	uint64_t discards; /* returned broken or inside a transaction */
	uint64_t maintenance_wakeups;
};

struct pool_mirror {
	struct sb_pool *sb;          /* the worker's scoreboard section, or NULL */
	struct pool_stats published; /* counters as last added to sb */
	uint64_t published_dead;     /* preping_evictions as last added to closes[dead] */
	uint64_t published_wait_buckets[SB_DURATION_BUCKETS];
};

/* Publish to sb (NULL: nothing) from now on; what st and wait_buckets count
 * so far is taken as already added. */
void pool_mirror_attach(struct pool_mirror *m, struct sb_pool *sb, const struct pool_stats *st,
			const uint64_t wait_buckets[SB_DURATION_BUCKETS]);
/* Store the gauges and add what the counters grew by since the last call
 * (wait_buckets: the waits of st->wait_us by duration bucket). */
void pool_mirror_publish(struct pool_mirror *m, const int64_t gauges[SB_POOL_GAUGES],
			 const struct pool_stats *st,
			 const uint64_t wait_buckets[SB_DURATION_BUCKETS]);

#endif
