/* pool_mirror: publishing the pool's gauges and counters to the worker's
 * scoreboard section. Readers take no lock: gauges go in as one set
 * (scoreboard_set_pool_gauges), counters only grow. */
#include "pool_mirror.h"

#include <stdatomic.h>
#include <string.h>

static void add_delta(sb_counter *dst, uint64_t now, uint64_t *last)
{
	if (now != *last)
		sb_add(dst, now - *last);
	*last = now;
}

/* After acquire_waits, with release: a reader that loads the buckets first
 * (acquire) never sees more waits in them than in the count. */
static void publish_wait_buckets(struct pool_mirror *m,
				 const uint64_t wait_buckets[SB_DURATION_BUCKETS])
{
	for (int i = 0; i < SB_DURATION_BUCKETS; i++) {
		uint64_t d = wait_buckets[i] - m->published_wait_buckets[i];
		if (d)
			atomic_fetch_add_explicit(&m->sb->wait_buckets[i], d, memory_order_release);
		m->published_wait_buckets[i] = wait_buckets[i];
	}
}

static void publish_counters(struct pool_mirror *m, const struct pool_stats *st,
			     const uint64_t wait_buckets[SB_DURATION_BUCKETS])
{
	struct sb_pool *sb = m->sb;
	struct pool_stats *last = &m->published;

	add_delta(&sb->acquires, st->acquires, &last->acquires);
	add_delta(&sb->acquire_waits, st->acquires_waited, &last->acquires_waited);
	add_delta(&sb->acquire_wait_us, st->wait_us, &last->wait_us);
	add_delta(&sb->timeouts, st->timeouts, &last->timeouts);
	add_delta(&sb->preping_evictions, st->preping_evictions, &last->preping_evictions);
	add_delta(&sb->closes[SB_CLOSE_IDLE], st->idle_closes, &last->idle_closes);
	add_delta(&sb->closes[SB_CLOSE_LIFETIME], st->lifetime_closes, &last->lifetime_closes);
	add_delta(&sb->closes[SB_CLOSE_OVERFLOW], st->overflow_closes, &last->overflow_closes);
	add_delta(&sb->closes[SB_CLOSE_DEAD], st->preping_evictions, &m->published_dead);
	add_delta(&sb->closes[SB_CLOSE_BROKEN], st->discards, &last->discards);
	publish_wait_buckets(m, wait_buckets);
}

void pool_mirror_attach(struct pool_mirror *m, struct sb_pool *sb, const struct pool_stats *st,
			const uint64_t wait_buckets[SB_DURATION_BUCKETS])
{
	m->sb = sb;
	m->published = *st;
	m->published_dead = st->preping_evictions;
	memcpy(m->published_wait_buckets, wait_buckets, sizeof m->published_wait_buckets);
}

void pool_mirror_publish(struct pool_mirror *m, const int64_t gauges[SB_POOL_GAUGES],
			 const struct pool_stats *st,
			 const uint64_t wait_buckets[SB_DURATION_BUCKETS])
{
	if (!m->sb)
		return;
	scoreboard_set_pool_gauges(m->sb, gauges);
	publish_counters(m, st, wait_buckets);
}
