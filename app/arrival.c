/* arrival: connections in arrival order, from the accept queue and from the
 * waiting room's ready queue (see arrival.h).
 *
 * A connection that becomes ready in the room while the accept queue holds q
 * connections arrived after them. This worker takes about q / WORKERS of
 * those, so the ready one is due once that many more have been accepted here,
 * or as soon as the accept queue is empty. Without this, a kept connection's
 * requests overtook every new connection: with nginx's upstream keepalive on,
 * some clients waited seconds (bench/results/README.md). */
#include "arrival.h"

#include <errno.h>
#include <poll.h>

#include "clock.h"
#include "log.h"

/* The accept path samples the queue at most this often per worker (about
 * 10 µs for a unix socket's netlink round trip), so a peak between scrapes is
 * seen in /metrics. */
#define SAMPLE_MS 10

void arrivals_init(struct arrivals *a, int listen_fd, long workers, struct scoreboard *sb)
{
	a->listen_fd = listen_fd;
	a->workers = workers > 0 ? workers : 1;
	a->sb = sb;
	a->kind = listenq_kind(listen_fd);
	atomic_init(&a->next_ms, 0);
	atomic_init(&a->queued, 0);
	atomic_init(&a->accepted, 0);
}

void arrivals_sample(struct arrivals *a, bool now)
{
	struct listenq_sample q;
	int64_t t = clock_now_ms(), next = atomic_load_explicit(&a->next_ms, memory_order_relaxed);

	if (a->kind == LISTENQ_NONE)
		return;
	if (!now &&
	    (t < next || !atomic_compare_exchange_strong(&a->next_ms, &next, t + SAMPLE_MS)))
		return;
	if (listenq_sample(a->listen_fd, a->kind, &q) == 0) {
		atomic_store_explicit(&a->queued, q.queued, memory_order_relaxed);
		scoreboard_listen_queue(a->sb, q.queued, q.limit);
		return;
	}
	log_warn("cannot read the listen queue (neonfcgi_listen_queue is not exported)");
	a->kind = LISTENQ_NONE;
}

bool arrivals_waiting(const struct arrivals *a)
{
	struct pollfd p = { .fd = a->listen_fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

uint64_t arrivals_ticket(void *arg)
{
	struct arrivals *a = arg;
	uint64_t now = atomic_load(&a->accepted);
	long ahead;

	if (!arrivals_waiting(a))
		return now;
	arrivals_sample(a, false);
	ahead = atomic_load_explicit(&a->queued, memory_order_relaxed) / a->workers;
	return now + (uint64_t)(ahead > 1 ? ahead : 1);
}

int arrivals_next(struct arrivals *a, struct waitroom *room, const atomic_bool *stopping,
		  bool *kept, struct sockaddr_storage *sa, bool *accepted)
{
	int fd = waitroom_take(room, atomic_load(&a->accepted), false, kept);

	*accepted = false;
	if (fd >= 0)
		return fd;
	if (atomic_load(stopping) || (fd == -2 && !arrivals_waiting(a))) {
		fd = waitroom_take(room, 0, true, kept);
		if (fd >= 0 || atomic_load(stopping))
			return fd >= 0 ? fd : -1;
	}
	*kept = false;
	arrivals_sample(a, false);
	socklen_t len = sizeof(*sa);
	fd = accept4(a->listen_fd, (struct sockaddr *)sa, &len, SOCK_CLOEXEC);
	if (fd < 0)
		return -2;
	atomic_fetch_add(&a->accepted, 1);
	*accepted = true;
	return fd;
}
