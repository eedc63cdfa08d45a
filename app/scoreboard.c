/* scoreboard: the shared statistics of the whole instance. */
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "scoreboard.h"

/* After its sequence counter, struct sb_pool is SB_POOL_GAUGES gauges followed
 * only by counters. */
_Static_assert(offsetof(struct sb_pool, acquires) - offsetof(struct sb_pool, idle) ==
		   SB_POOL_GAUGES * sizeof(sb_gauge),
	       "sb_pool must start with its gauges");
_Static_assert((sizeof(struct sb_pool) - offsetof(struct sb_pool, acquires)) % sizeof(sb_counter) ==
		   0,
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
	atomic_store(&sb->inst.listen_queue, -1);
	atomic_store(&sb->inst.listen_queue_max, -1);
	atomic_store(&sb->inst.listen_queue_limit, -1);
	return sb;
}

void scoreboard_free(struct scoreboard *sb)
{
	if (sb)
		munmap(sb, sizeof(*sb));
}

void scoreboard_set_pool_gauges(struct sb_pool *p, const int64_t gauges[SB_POOL_GAUGES])
{
	uint64_t seq = atomic_load_explicit(&p->gauge_seq, memory_order_relaxed);
	sb_gauge *g = &p->idle;

	atomic_store_explicit(&p->gauge_seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	for (int i = 0; i < SB_POOL_GAUGES; i++)
		atomic_store_explicit(&g[i], gauges[i], memory_order_relaxed);
	atomic_store_explicit(&p->gauge_seq, seq + 2, memory_order_release);
}

static void reset_pool_gauges(struct sb_pool *p)
{
	static const int64_t zero[SB_POOL_GAUGES];

	scoreboard_set_pool_gauges(p, zero);
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

/* A worker that died in the middle of requests left its threads counted. */
static void reset_saturation(struct scoreboard *sb, struct sb_slot *s)
{
	int64_t busy = atomic_exchange(&s->sat.busy, 0);

	atomic_fetch_sub_explicit(&sb->inst.busy, busy, memory_order_relaxed);
	atomic_store(&s->sat.threads, 0);
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
	reset_saturation(sb, s);
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

/* A seqlock read: retry while a writer is between its two sequence bumps, so
 * a connection moving from in_use to idle is never counted twice (which
 * would report more connections than the bound). Bounded: after that many
 * tries the last read is used, which at worst is off by one move. */
#define SNAPSHOT_TRIES 1000

static void read_gauges(const struct sb_pool *p, int64_t *out)
{
	const sb_gauge *g = &p->idle;

	for (int t = 0; t < SNAPSHOT_TRIES; t++) {
		uint64_t s1 = atomic_load_explicit(&p->gauge_seq, memory_order_acquire);
		for (int i = 0; i < SB_POOL_GAUGES; i++)
			out[i] = atomic_load_explicit(&g[i], memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		uint64_t s2 = atomic_load_explicit(&p->gauge_seq, memory_order_relaxed);
		if (s1 == s2 && !(s1 & 1))
			return;
	}
}

static void add_gauges(sb_gauge *dst, const struct sb_pool *src)
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
		add_gauges(&out->idle, p);
		add_counters(&out->acquires, &p->acquires,
			     (sizeof(*p) - offsetof(struct sb_pool, acquires)) /
				 sizeof(sb_counter));
	}
}

const char *scoreboard_close_reason_name(enum sb_close_reason r)
{
	switch (r) {
	case SB_CLOSE_IDLE: return "idle";
	case SB_CLOSE_LIFETIME: return "lifetime";
	case SB_CLOSE_OVERFLOW: return "overflow";
	case SB_CLOSE_DEAD: return "dead";
	case SB_CLOSE_BROKEN: return "broken";
	case SB_CLOSE_SHUTDOWN: return "shutdown";
	}
	return "unknown";
}

void scoreboard_gauge_max(sb_gauge *g, int64_t v)
{
	int64_t cur = sb_gauge_get(g);

	while (cur < v && !atomic_compare_exchange_weak_explicit(g, &cur, v, memory_order_relaxed,
								 memory_order_relaxed))
		;
}

/* Two relaxed adds per change; the peak needs a compare-and-swap only when a
 * new one is reached. */
void scoreboard_thread_busy(struct scoreboard *sb, struct sb_slot *slot, int delta)
{
	atomic_fetch_add_explicit(&slot->sat.busy, delta, memory_order_relaxed);
	int64_t now =
	    atomic_fetch_add_explicit(&sb->inst.busy, delta, memory_order_relaxed) + delta;
	if (delta > 0 && now > sb_gauge_get(&sb->inst.busy_max))
		scoreboard_gauge_max(&sb->inst.busy_max, now);
}

void scoreboard_listen_queue(struct scoreboard *sb, long queued, long limit)
{
	atomic_store_explicit(&sb->inst.listen_queue, queued, memory_order_relaxed);
	atomic_store_explicit(&sb->inst.listen_queue_limit, limit, memory_order_relaxed);
	scoreboard_gauge_max(&sb->inst.listen_queue_max, queued);
}
