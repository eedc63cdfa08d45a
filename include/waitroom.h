/* waitroom: a worker's connections that cannot be served yet (request head not
 * all here, idle keep-alive) or are being closed, watched by one thread so that
 * none of them holds a request thread. */
#ifndef NEONFCGI_WAITROOM_H
#define NEONFCGI_WAITROOM_H

#include <stdbool.h>
#include <stdint.h>

#include "fcgiguard.h"

struct waitroom;

struct waitroom_opts {
	long max_conns;          /* our FCGI_GET_VALUES answer for FCGI_MAX_CONNS/REQS */
	void (*kick)(void *arg); /* wake an idle request thread: a connection is ready */
	void *kick_arg;
	/* The worker's accept count from which a connection that is ready now
	 * comes before the accept queue (what is queued there arrived before
	 * it), or NULL: ready connections always come first. */
	uint64_t (*ticket)(void *arg);
	void *ticket_arg;
	/* Input refused (fcgiguard's reason or FCGIGUARD_WHY_*), or NULL. */
	void (*rejected)(void *arg, const char *reason);
	void *rejected_arg;
};

enum waitroom_state {
	WAITROOM_READY,  /* a complete request head: hand the fd to libfcgi */
	WAITROOM_WAIT,   /* not complete yet: park it (or wait a little) */
	WAITROOM_CLOSE,  /* peer gone or input rejected: close it */
	WAITROOM_LINGER, /* answered with an error: close it with waitroom_close */
};

/* NULL on failure (logged). Parking works before waitroom_start. */
struct waitroom *waitroom_new(const struct waitroom_opts *o);
int waitroom_start(struct waitroom *wr) __attribute__((warn_unused_result));
/* Stop the thread and close what it holds; later parks close at once. The
 * connections already handed over as ready stay for waitroom_take. */
void waitroom_stop(struct waitroom *wr);
/* Close every connection still queued as ready, free everything. */
void waitroom_free(struct waitroom *wr);

/* Peek at fd (non-blocking) and judge what is there, answering management
 * records and refused requests itself. buf holds FCGIGUARD_HEAD_MAX bytes;
 * r describes the head on READY (stdin_done, keep_conn), r->seen always. */
enum waitroom_state waitroom_examine(struct waitroom *wr, int fd, unsigned char *buf,
				     struct fcgiguard_result *r);
/* Hand over fd, to be served once its request head is complete: closed at
 * deadline_ms, or head_ms after its first byte if that comes sooner. -1 when
 * the room is stopped: fd stays the caller's. */
int waitroom_park(struct waitroom *wr, int fd, int64_t deadline_ms, int64_t head_ms);
/* Hand over fd to be closed: shut our side, read what the peer still sends for
 * a bounded time (so it sees our answer rather than a reset), then close. */
void waitroom_close(struct waitroom *wr, int fd);
/* The first connection whose request head is complete, when it is due
 * (accepted: the worker's accept count has reached its ticket) or any is
 * true; -1 when there is none, -2 when the first is not due yet. *kept: it
 * served a request before. */
int waitroom_take(struct waitroom *wr, uint64_t accepted, bool any, bool *kept);
/* Whether a connection is ready for a request thread. */
bool waitroom_has_ready(struct waitroom *wr);
/* Queue fd, whose request head is complete, behind the connections that
 * arrived before it; -1 when the room is stopped or full: fd stays the
 * caller's. */
int waitroom_requeue(struct waitroom *wr, int fd, bool kept);

#endif
