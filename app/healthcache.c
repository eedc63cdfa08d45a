/* healthcache: a seqlock over a few words of the scoreboard. Writers take the
 * sequence from even to odd with a compare-and-swap (there is one writer per
 * worker, so a loser simply gives up); readers retry while it is odd or moved. */
#include "healthcache.h"

#include <string.h>

#include "scoreboard.h"

_Static_assert(SB_HEALTH_TIME_WORDS * sizeof(uint64_t) >= CLOCK_RFC3339_LEN,
	       "the cached check's time must fit its words");

/* A reader gives up after this many tries and does without the cache. */
#define READ_TRIES 100

static bool begin_write(struct sb_health_cache *h, uint64_t *seq)
{
	uint64_t s = atomic_load_explicit(&h->seq, memory_order_relaxed);

	if (s & 1)
		return false;
	if (!atomic_compare_exchange_strong_explicit(&h->seq, &s, s + 1, memory_order_acquire,
						     memory_order_relaxed))
		return false;
	atomic_thread_fence(memory_order_release);
	*seq = s;
	return true;
}

static void end_write(struct sb_health_cache *h, uint64_t seq)
{
	atomic_store_explicit(&h->seq, seq + 2, memory_order_release);
}

static void store_time(struct sb_health_cache *h, const char *text)
{
	uint64_t w[SB_HEALTH_TIME_WORDS] = { 0 };

	size_t n = strnlen(text, sizeof(w) - 1);

	memcpy(w, text, n);
	for (int i = 0; i < SB_HEALTH_TIME_WORDS; i++)
		atomic_store_explicit(&h->time[i], w[i], memory_order_relaxed);
}

void healthcache_publish(struct scoreboard *sb, const struct health_db_check *chk,
			 int64_t finished_ms)
{
	struct sb_health_cache *h = &sb->inst.health;
	uint64_t seq;

	if (!chk->ok || !begin_write(h, &seq))
		return;
	if (sb_gauge_get(&h->finished_mono_ms) < finished_ms) {
		atomic_store_explicit(&h->finished_mono_ms, finished_ms, memory_order_relaxed);
		atomic_store_explicit(&h->response_us, (int64_t)(chk->response_ms * 1000.0),
				      memory_order_relaxed);
		store_time(h, chk->time);
	}
	end_write(h, seq);
}

void healthcache_clear(struct scoreboard *sb)
{
	struct sb_health_cache *h = &sb->inst.health;
	uint64_t seq;

	/* The master waits out a worker that is writing (a few stores). */
	while (!begin_write(h, &seq))
		;
	atomic_store_explicit(&h->finished_mono_ms, 0, memory_order_relaxed);
	end_write(h, seq);
}

/* One consistent copy of the cache; false when a writer kept moving it. */
static bool read_cache(struct sb_health_cache *h, int64_t *finished, int64_t *us, uint64_t *w)
{
	for (int t = 0; t < READ_TRIES; t++) {
		uint64_t s1 = atomic_load_explicit(&h->seq, memory_order_acquire);
		*finished = sb_gauge_get(&h->finished_mono_ms);
		*us = sb_gauge_get(&h->response_us);
		for (int i = 0; i < SB_HEALTH_TIME_WORDS; i++)
			w[i] = atomic_load_explicit(&h->time[i], memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		uint64_t s2 = atomic_load_explicit(&h->seq, memory_order_relaxed);
		if (s1 == s2 && !(s1 & 1))
			return true;
	}
	return false;
}

bool healthcache_get(struct scoreboard *sb, int64_t max_age_ms, int64_t now_ms,
		     struct health_db_check *out)
{
	int64_t finished, us;
	uint64_t w[SB_HEALTH_TIME_WORDS];

	if (max_age_ms <= 0 || !read_cache(&sb->inst.health, &finished, &us, w))
		return false;
	if (finished <= 0 || now_ms - finished > max_age_ms)
		return false;
	*out = (struct health_db_check){ .ok = true, .category = DB_OK };
	out->response_ms = (double)us / 1000.0;
	memcpy(out->time, w, sizeof(out->time) < sizeof(w) ? sizeof(out->time) : sizeof(w));
	out->time[sizeof(out->time) - 1] = '\0';
	return true;
}
