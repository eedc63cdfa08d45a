/* scoreboard: the shared statistics of the whole instance. */
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "scoreboard.h"

/* struct sb_pool is SB_POOL_GAUGES gauges followed only by counters. */
#define SB_POOL_GAUGES 5
_Static_assert(offsetof(struct sb_pool, acquires) == SB_POOL_GAUGES * sizeof(sb_gauge),
	       "sb_pool must start with its gauges");
_Static_assert((sizeof(struct sb_pool) - offsetof(struct sb_pool, acquires)) % sizeof(sb_counter) == 0,
	       "sb_pool must end with counters only");

const double sb_duration_bounds[SB_DURATION_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
};

struct scoreboard *scoreboard_init_master(void)
{
	void *p = mmap(NULL, sizeof(struct scoreboard), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Anonymous mappings are zero-filled: every counter starts at 0. */
	struct scoreboard *sb = p;
	atomic_store(&sb->master.started_unix_s, (int64_t)time(NULL));
	return sb;
}

void scoreboard_free(struct scoreboard *sb)
{
	if (sb)
		munmap(sb, sizeof(*sb));
}

static void reset_pool_gauges(struct sb_pool *p)
{
	atomic_store(&p->idle, 0);
	atomic_store(&p->in_use, 0);
	atomic_store(&p->opening, 0);
	atomic_store(&p->waiting, 0);
	atomic_store(&p->breaker_open, 0);
}

void scoreboard_worker_started(struct scoreboard *sb, int idx, int pid, bool restart)
{
	struct sb_slot *s = &sb->slots[idx];

	/* The pool gauges were reset when the slot's last worker exited (or are
	 * still zero): resetting them here, after fork(), could wipe what the
	 * new worker already published. */
	atomic_store(&s->pid, pid);
	if (sb_gauge_get(&sb->master.slots_used) < idx + 1)
		atomic_store(&sb->master.slots_used, idx + 1);
	sb_add(&sb->master.worker_starts, 1);
	if (restart)
		sb_add(&sb->master.worker_restarts, 1);
}

void scoreboard_worker_exited(struct scoreboard *sb, int idx, int wait_status)
{
	struct sb_slot *s = &sb->slots[idx];
	enum sb_exit_cause cause = SB_EXIT_NORMAL;

	if (WIFSIGNALED(wait_status))
		cause = SB_EXIT_SIGNAL;
	else if (WEXITSTATUS(wait_status) != 0)
		cause = SB_EXIT_ERROR;
	sb_add(&sb->master.worker_exits[cause], 1);
	/* Its connections died with it: the pool gauges must not linger. */
	reset_pool_gauges(&s->pool);
	atomic_store(&s->pid, 0);
}

int scoreboard_slots_used(const struct scoreboard *sb)
{
	int64_t n = sb_gauge_get(&sb->master.slots_used);

	return n < 0 ? 0 : n > SB_SLOTS ? SB_SLOTS : (int)n;
}

int scoreboard_bucket(int64_t us)
{
	double s = (double)us / 1e6;
	int i = 0;

	while (i < SB_DURATION_BUCKETS && s > sb_duration_bounds[i])
		i++;
	return i;
}

void scoreboard_request(struct sb_slot *slot, enum route r, int status, int64_t us)
{
	int cls = status / 100 - 1;
	int b = scoreboard_bucket(us);

	if (cls < 0 || cls >= SB_STATUS_CLASSES)
		cls = SB_STATUS_CLASSES - 1;
	sb_add(&slot->requests[r][cls], 1);
	sb_add(&slot->duration_us[r], (uint64_t)us);
	/* Buckets are stored non-cumulative; the renderer accumulates them.
	 * Release: a reader that sees this bucket also sees the request above,
	 * so a histogram's +Inf bucket never falls below its finite ones. */
	if (b < SB_DURATION_BUCKETS)
		atomic_fetch_add_explicit(&slot->duration_buckets[r][b], 1, memory_order_release);
}

static void add_counters(sb_counter *dst, const sb_counter *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		atomic_store_explicit(&dst[i], sb_get(&dst[i]) + sb_get(&src[i]),
				      memory_order_relaxed);
}

/* The pool publishes its gauges one store at a time, so a reader between two
 * stores could count a connection moving from in_use to idle twice (and
 * report more connections than the bound). Read until two passes agree. */
#define SNAPSHOT_TRIES 64

static void read_gauges(const sb_gauge *src, int64_t *out)
{
	int64_t again[SB_POOL_GAUGES];

	for (int i = 0; i < SB_POOL_GAUGES; i++)
		out[i] = atomic_load_explicit(&src[i], memory_order_acquire);
	for (int t = 0; t < SNAPSHOT_TRIES; t++) {
		bool same = true;
		for (int i = 0; i < SB_POOL_GAUGES; i++) {
			again[i] = atomic_load_explicit(&src[i], memory_order_acquire);
			same = same && again[i] == out[i];
		}
		if (same)
			return;
		memcpy(out, again, sizeof(again));
	}
}

static void add_gauges(sb_gauge *dst, const sb_gauge *src)
{
	int64_t v[SB_POOL_GAUGES];

	read_gauges(src, v);
	for (int i = 0; i < SB_POOL_GAUGES; i++)
		atomic_store_explicit(&dst[i], sb_gauge_get(&dst[i]) + v[i], memory_order_relaxed);
}

void scoreboard_sum_pool(const struct scoreboard *sb, struct sb_pool *out)
{
	int n = scoreboard_slots_used(sb);

	memset(out, 0, sizeof(*out));
	for (int i = 0; i < n; i++) {
		const struct sb_pool *p = &sb->slots[i].pool;
		add_gauges(&out->idle, &p->idle);
		add_counters(&out->acquires, &p->acquires,
			     (sizeof(*p) - offsetof(struct sb_pool, acquires)) /
				 sizeof(sb_counter));
	}
}
