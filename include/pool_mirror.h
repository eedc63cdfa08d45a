/* pool_mirror: the pool's copy of its numbers in the worker's scoreboard
 * section, for /metrics and /health/db (internal to pool*.c). Gauges are
 * stored; counters are added as deltas, so a respawned worker continues its
 * slot's totals. The caller serializes the calls (pool.c: under its mutex).
 * The connect counters are pool_dial's, which adds them itself. */
#ifndef NEONFCGI_POOL_MIRROR_H
#define NEONFCGI_POOL_MIRROR_H

#include <stdint.h>

#include "pool.h"
#include "scoreboard.h"

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
