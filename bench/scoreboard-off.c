/* Linked into build/bench/neonfcgi-nosb only, with -Wl,--wrap= for each
 * function below: the product with its per-request and per-accept scoreboard
 * work removed, for the bench's A/B of what the scoreboard costs on /health
 * (issues 4 and 14). Removed: the request's counters (scoreboard_request), the
 * busy-thread gauge (scoreboard_thread_busy, from count_busy), and the listen
 * queue sampling (listenq_kind answers LISTENQ_NONE, so sample_listen_queue
 * returns before its netlink round trip and scoreboard_listen_queue is never
 * reached; it is wrapped too in case another caller appears). Everything else,
 * the request timing included, is the product's own code. */
#include <stdint.h>

#include "listenq.h"
#include "scoreboard.h"

void __wrap_scoreboard_request(struct sb_slot *slot, enum route r, int status, int64_t us);
void __wrap_scoreboard_thread_busy(struct scoreboard *sb, struct sb_slot *slot, int delta);
void __wrap_scoreboard_listen_queue(struct scoreboard *sb, long queued, long limit);
enum listenq_kind __wrap_listenq_kind(int fd);

void __wrap_scoreboard_request(struct sb_slot *slot, enum route r, int status, int64_t us)
{
	(void)slot;
	(void)r;
	(void)status;
	(void)us;
}

void __wrap_scoreboard_thread_busy(struct scoreboard *sb, struct sb_slot *slot, int delta)
{
	(void)sb;
	(void)slot;
	(void)delta;
}

void __wrap_scoreboard_listen_queue(struct scoreboard *sb, long queued, long limit)
{
	(void)sb;
	(void)queued;
	(void)limit;
}

enum listenq_kind __wrap_listenq_kind(int fd)
{
	(void)fd;
	return LISTENQ_NONE;
}
