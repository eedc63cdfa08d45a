/* arrival: which connection a worker serves next. Connections reach a worker
 * two ways: through the kernel's accept queue of the listening socket (shared
 * with the other workers), and through the waiting room's ready queue (a kept
 * connection's next request, a head that arrived slowly). They are served in
 * the order they arrived, whichever way they came; the accept queue's length
 * is sampled here for that and for /metrics. */
#ifndef NEONFCGI_ARRIVAL_H
#define NEONFCGI_ARRIVAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "listenq.h"
#include "scoreboard.h"
#include "waitroom.h"

struct arrivals {
	int listen_fd;
	long workers; /* processes taking from the same accept queue */
	struct scoreboard *sb;
	enum listenq_kind kind;  /* of listen_fd; NONE once sampling failed */
	_Atomic int64_t next_ms; /* the accept path samples the queue again from then */
	_Atomic long queued;     /* the accept queue's length at the last sample */
	atomic_ulong accepted;   /* connections accepted here: the room's tickets */
};

void arrivals_init(struct arrivals *a, int listen_fd, long workers, struct scoreboard *sb);
/* Sample the accept queue into the scoreboard: now, or only if the last
 * sample is older than a few milliseconds. */
void arrivals_sample(struct arrivals *a, bool now);
/* Whether a connection waits in the accept queue (another worker may take it
 * first). */
bool arrivals_waiting(const struct arrivals *a);
/* waitroom_opts.ticket: the accept count from which a connection that is
 * ready now is due (arg: the struct arrivals). */
uint64_t arrivals_ticket(void *arg);
/* The next connection in arrival order: a due one from room, else one
 * accepted (*sa set; *kept false), else, when the accept queue is empty, one
 * from room that was not due yet. -1 when stopping with nothing ready, -2
 * when accept() failed (errno set). *kept: it served a request before;
 * *accepted: it comes from the accept queue. */
int arrivals_next(struct arrivals *a, struct waitroom *room, const atomic_bool *stopping,
		  bool *kept, struct sockaddr_storage *sa, bool *accepted);

#endif
