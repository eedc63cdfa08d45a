/* scoreboard: one anonymous MAP_SHARED region created by the master before
 * forking, with a slot per worker and one for the master. Each process
 * updates only its own slot, with relaxed atomics (no locks on the request
 * path); any worker reads all slots to answer /metrics and /health/db. */
#ifndef NEONFCGI_SCOREBOARD_H
#define NEONFCGI_SCOREBOARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fcgiguard.h"
#include "pgconn.h"
#include "router.h"

#define SB_SLOTS            512 /* as many as the master can have: 2 × WORKERS max (reload overlap) */
#define SB_STATUS_CLASSES   5 /* 1xx … 5xx */
#define SB_DURATION_BUCKETS 12
#define SB_POOL_GAUGES      5 /* idle, in_use, opening, waiting, breaker_open */

/* Why the pool closed a connection. */
enum sb_close_reason {
	SB_CLOSE_IDLE,
	SB_CLOSE_LIFETIME,
	SB_CLOSE_OVERFLOW,
	SB_CLOSE_DEAD,
	SB_CLOSE_BROKEN,
	SB_CLOSE_REASONS, /* the reasons above, counted in sb_pool.closes */
	/* The pool's own end: logged, not counted. */
	SB_CLOSE_SHUTDOWN = SB_CLOSE_REASONS,
};
enum sb_exit_cause { SB_EXIT_NORMAL, SB_EXIT_ERROR, SB_EXIT_SIGNAL, SB_EXIT_CAUSES };

typedef _Atomic uint64_t sb_counter;
typedef _Atomic int64_t sb_gauge;

/* Where a /health/db answer came from (DESIGN.md §5a). */
enum sb_health_source { SB_HEALTH_CHECK, SB_HEALTH_SHARED, SB_HEALTH_CACHED, SB_HEALTH_SOURCES };

/* A worker's probes and its share of the connection bound (DESIGN.md §1,
 * §5a): checks run, answers by source, connections reserved (dbslots.c). */
struct sb_probes {
	sb_counter health_checks, health_answers[SB_HEALTH_SOURCES];
	sb_gauge db_slots; /* written under sb_instance.db_slots_mu only */
};

/* The instance's last passing /health/db check (healthcache.c), a seqlock:
 * seq is odd while a writer holds it. time is RFC 3339 text in words. */
#define SB_HEALTH_TIME_WORDS 4
struct sb_health_cache {
	sb_counter seq;
	sb_gauge finished_mono_ms; /* 0: none */
	sb_gauge response_us;
	sb_counter time[SB_HEALTH_TIME_WORDS];
};

/* What a worker's pool reports; counters only grow, gauges go up and down. */
struct sb_pool {
	sb_counter gauge_seq; /* odd while the gauges are being written (a seqlock) */
	sb_gauge idle, in_use, opening, waiting, breaker_open;
	sb_counter acquires, acquire_waits, acquire_wait_us, timeouts;
	sb_counter connects_ok, connects_failed[DB_CATEGORY_COUNT], connect_us;
	sb_counter connect_buckets[SB_DURATION_BUCKETS];
	sb_counter retries, preping_evictions, closes[SB_CLOSE_REASONS], breaker_opens;
	/* Non-cumulative buckets of the waits summed in acquire_wait_us. */
	sb_counter wait_buckets[SB_DURATION_BUCKETS];
};

/* A worker's saturation figures (DESIGN.md §4). */
struct sb_saturation {
	sb_gauge threads, busy; /* request threads started, and serving a connection */
	sb_counter slow_requests, refused_peers;
	sb_counter rejected[FCGIGUARD_REASONS]; /* by fcgiguard_reason_index() */
	sb_counter health_failures[DB_CATEGORY_COUNT];
};

/* Instance-wide state that belongs to no worker: the saturation figures
 * (one listening socket and one set of request threads however many workers
 * share them), the connection bound's lock, and the last passing check. */
struct sb_instance {
	sb_gauge busy, busy_max;
	sb_gauge listen_queue, listen_queue_max, listen_queue_limit; /* -1: never sampled */
	pthread_mutex_t db_slots_mu; /* robust, process-shared (dbslots.c) */
	sb_gauge db_bound; /* WORKERS x (DB_POOL_SIZE + DB_MAX_OVERFLOW) of the master's config */
	struct sb_health_cache health;
};

struct sb_slot {
	sb_gauge pid; /* 0 when no worker runs in the slot */
	sb_counter requests[ROUTE_COUNT][SB_STATUS_CLASSES];
	sb_counter duration_buckets[ROUTE_COUNT][SB_DURATION_BUCKETS];
	sb_counter duration_us[ROUTE_COUNT];
	struct sb_pool pool;
	struct sb_saturation sat;
	struct sb_probes probes;
};

struct sb_master {
	sb_counter worker_starts, worker_exits[SB_EXIT_CAUSES], worker_restarts;
	sb_gauge started_unix_s;
	sb_gauge slots_used; /* 1 + highest slot index ever used: readers stop there */
};

struct scoreboard {
	struct sb_master master;
	struct sb_slot slots[SB_SLOTS];
	struct sb_instance inst;
};

/* Upper bounds (seconds) of the duration histograms' buckets (+Inf implied). */
extern const double sb_duration_bounds[SB_DURATION_BUCKETS];

/* Master, before forking: map the region (NULL on failure). */
struct scoreboard *scoreboard_init_master(void);
void scoreboard_free(struct scoreboard *sb);
/* Master: a worker started in / left slot idx (gauges restart from zero;
 * counters stay, so instance totals never go backwards). */
void scoreboard_worker_started(struct scoreboard *sb, int idx, int pid, bool restart);
void scoreboard_worker_exited(struct scoreboard *sb, int idx, int wait_status);
/* Worker: one request finished. */
void scoreboard_request(struct sb_slot *slot, enum route r, int status, int64_t us);
/* Index of the bucket for a duration in µs (SB_DURATION_BUCKETS for +Inf). */
int scoreboard_bucket(int64_t us);
/* Slots a reader must visit (the rest were never used). */
int scoreboard_slots_used(const struct scoreboard *sb);
/* Write a pool's gauges so that readers see all of them or none (the only
 * writer of a slot's gauges is its worker, or the master once it is dead). */
void scoreboard_set_pool_gauges(struct sb_pool *p, const int64_t gauges[SB_POOL_GAUGES]);
/* Sum of every slot's pool section into out (a plain, non-shared copy). */
void scoreboard_sum_pool(const struct scoreboard *sb, struct sb_pool *out);
/* "idle", "lifetime", …, "shutdown": the label of /metrics and of log lines. */
const char *scoreboard_close_reason_name(enum sb_close_reason r);

/* Worker: a request thread starts (+1) or stops (-1) serving a connection. */
void scoreboard_thread_busy(struct scoreboard *sb, struct sb_slot *slot, int delta);
/* Any process: a sample of the listening socket's accept queue. */
void scoreboard_listen_queue(struct scoreboard *sb, long queued, long limit);
/* Raise *g to v if it is below (a peak since start). */
void scoreboard_gauge_max(sb_gauge *g, int64_t v);

static inline void sb_add(sb_counter *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t sb_get(const sb_counter *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static inline int64_t sb_gauge_get(const sb_gauge *g)
{
	return atomic_load_explicit(g, memory_order_relaxed);
}

#endif
