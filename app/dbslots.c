/* dbslots: per-worker counts under one robust, process-shared mutex.
 *
 * A single global counter updated with atomics beside the per-worker ones
 * would need two writes per reservation, and a worker killed between them
 * would leak a slot or let the instance exceed the bound. Here a reservation
 * is one write (the worker's own count) made under the lock after summing
 * every count; a worker that dies holding the lock leaves its count either
 * written or not, and the next locker is told (EOWNERDEAD) and goes on.
 * Connects are rare (the pool keeps its connections), so the sum costs
 * nothing that matters. */
#include "dbslots.h"

#include <errno.h>
#include <pthread.h>

#include "clock.h"
#include "scoreboard.h"

/* A worker that finds the instance full retries after this, doubling up to
 * the cap: a slot released elsewhere is taken within a few milliseconds. */
#define RESERVE_WAIT_FIRST_MS 2
#define RESERVE_WAIT_MAX_MS   50

int dbslots_init_master(struct scoreboard *sb, long bound)
{
	pthread_mutexattr_t a;
	int rc;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	rc = pthread_mutex_init(&sb->inst.db_slots_mu, &a);
	pthread_mutexattr_destroy(&a);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	atomic_store(&sb->inst.db_bound, bound);
	return 0;
}

static void lock(struct scoreboard *sb)
{
	if (pthread_mutex_lock(&sb->inst.db_slots_mu) == EOWNERDEAD)
		pthread_mutex_consistent(&sb->inst.db_slots_mu); /* counts are single writes */
}

static void unlock(struct scoreboard *sb)
{
	pthread_mutex_unlock(&sb->inst.db_slots_mu);
}

/* Every slot, not only those a reader of statistics visits: a new worker
 * may reserve before the master has marked its slot used. */
static long held_locked(const struct scoreboard *sb)
{
	long n = 0;

	for (int i = 0; i < SB_SLOTS; i++)
		n += (long)sb_gauge_get(&sb->slots[i].probes.db_slots);
	return n;
}

static void add_locked(struct scoreboard *sb, int idx, int64_t d)
{
	sb_gauge *g = &sb->slots[idx].probes.db_slots;

	atomic_store_explicit(g, sb_gauge_get(g) + d, memory_order_relaxed);
}

void dbslots_set_bound(struct scoreboard *sb, long bound)
{
	lock(sb);
	atomic_store(&sb->inst.db_bound, bound);
	unlock(sb);
}

static bool try_reserve(struct scoreboard *sb, int idx)
{
	lock(sb);
	bool ok = held_locked(sb) < sb_gauge_get(&sb->inst.db_bound);
	if (ok)
		add_locked(sb, idx, 1);
	unlock(sb);
	return ok;
}

int dbslots_reserve(struct scoreboard *sb, int idx, int64_t deadline_ms)
{
	int64_t wait = RESERVE_WAIT_FIRST_MS;

	while (!try_reserve(sb, idx)) {
		int64_t left = deadline_ms - clock_now_ms();
		if (left <= 0)
			return -1;
		clock_sleep_ms(wait < left ? wait : left);
		wait = wait * 2 > RESERVE_WAIT_MAX_MS ? RESERVE_WAIT_MAX_MS : wait * 2;
	}
	return 0;
}

void dbslots_release(struct scoreboard *sb, int idx)
{
	lock(sb);
	if (sb_gauge_get(&sb->slots[idx].probes.db_slots) > 0)
		add_locked(sb, idx, -1);
	unlock(sb);
}

long dbslots_reclaim(struct scoreboard *sb, int idx)
{
	lock(sb);
	long n = (long)sb_gauge_get(&sb->slots[idx].probes.db_slots);
	atomic_store(&sb->slots[idx].probes.db_slots, 0);
	unlock(sb);
	return n;
}

long dbslots_held(struct scoreboard *sb)
{
	lock(sb);
	long n = held_locked(sb);
	unlock(sb);
	return n;
}
