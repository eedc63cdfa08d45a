/* waitroom: one thread per worker watching, with epoll, the connections that
 * must not hold a request thread:
 * - a connection whose request head has not all arrived (a silent peer, a
 *   slow one, an idle kept-alive connection) waits here until it is complete,
 *   then goes to the ready queue, and an idle request thread is kicked;
 * - a connection we answered with an error, or whose peer still sends a body
 *   we do not read, lingers here: our side is shut, what the peer sends is
 *   read and dropped until it closes or LINGER_MS pass, so the peer reads our
 *   answer instead of a reset.
 * Request threads serve only connections whose head is all here, so no peer
 * can pin one by sending slowly or not at all (FIRST_RECORD_TIMEOUT_MS in
 * worker.c bounds how long it may wait here, and ROOM_MAX how many may).
 *
 * Waiting heads are watched edge-triggered: a peeked-at byte stays readable,
 * and only new bytes are news. Only the room thread removes slots; request
 * threads append under the lock, so a slot's index is stable for the thread. */
#include "waitroom.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "xalloc.h"

#define ROOM_MAX         512  /* connections waiting or lingering per worker */
#define LINGER_MS        1000 /* a peer still sending after our answer gets this long */
#define KICK_INTERVAL_MS 20   /* re-kick while ready connections wait (a kick can miss) */
#define IDLE_TICK_MS     60000
#define MGMT_MAX         8 /* management records answered on one connection */

struct slot {
	int fd;
	bool lingering;
	bool seen; /* some bytes of a head have arrived */
	bool kept; /* an idle kept-alive connection (quiet expiry) */
	int64_t deadline_ms;
	int64_t head_ms;
};

/* A connection whose request head is complete, waiting for a request thread.
 * due: the worker's accept count from which it is served even while the
 * kernel's accept queue is not empty, because what was queued there when it
 * became ready arrived before it (waitroom_opts.ticket). */
struct ready_conn {
	int fd;
	bool kept;
	uint64_t due;
};

struct waitroom {
	struct waitroom_opts o;
	pthread_mutex_t mu;
	int epfd, wakefd;
	struct slot slots[ROOM_MAX];
	size_t nslots;
	struct ready_conn ready[ROOM_MAX]; /* a ring */
	size_t ready_first, nready;
	int64_t wake_at; /* the thread looks at deadlines again by then */
	bool started, stopped;
	pthread_t tid;
	unsigned char *buf; /* the thread's FCGIGUARD_HEAD_MAX bytes for examining */
};

/* ---- examining a connection (any thread) ---- */

static void count_rejected(const struct waitroom *wr, const char *reason)
{
	if (wr->o.rejected)
		wr->o.rejected(wr->o.rejected_arg, reason);
}

static bool peer_done(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

static bool send_all(int fd, const unsigned char *b, size_t n)
{
	return n > 0 && send(fd, b, n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n;
}

/* Consume the management record at the front of fd and answer it. */
static bool answer_mgmt(const struct waitroom *wr, int fd, unsigned char *buf,
			const struct fcgiguard_result *r)
{
	unsigned char out[FCGIGUARD_REPLY_MAX];
	size_t n = fcgiguard_mgmt_reply(buf, r->mgmt_len, wr->o.max_conns, out);

	if (n == 0) {
		log_warnx("rejected FastCGI input: malformed management record; closing the "
			  "connection");
		count_rejected(wr, FCGIGUARD_WHY_BAD_MGMT);
		return false;
	}
	if (recv(fd, buf, r->mgmt_len, MSG_DONTWAIT) != (ssize_t)r->mgmt_len)
		return false;
	return send_all(fd, out, n);
}

static enum waitroom_state refuse(const struct waitroom *wr, int fd,
				  const struct fcgiguard_result *r)
{
	unsigned char out[FCGIGUARD_REPLY_MAX];
	size_t n;

	count_rejected(wr, r->reason);
	if (r->verdict == FCGIGUARD_BAD_ROLE) {
		log_warnx("refused a FastCGI request: %s", r->reason);
		n = fcgiguard_end_request(r->request_id, 3 /* FCGI_UNKNOWN_ROLE */, out);
	} else {
		log_warnx("refused a FastCGI request: %s status=%d", r->reason, r->status);
		n = fcgiguard_error_reply(r->request_id, r->status, r->reason, out);
	}
	return send_all(fd, out, n) ? WAITROOM_LINGER : WAITROOM_CLOSE;
}

enum waitroom_state waitroom_examine(struct waitroom *wr, int fd, unsigned char *buf,
				     struct fcgiguard_result *r)
{
	bool looked_again = false;
	int mgmt = 0;

	for (;;) {
		ssize_t n = recv(fd, buf, FCGIGUARD_HEAD_MAX, MSG_PEEK | MSG_DONTWAIT);

		if (n == 0)
			return WAITROOM_CLOSE; /* closed without a byte: a port probe */
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return WAITROOM_CLOSE;
		fcgiguard_check(buf, n < 0 ? 0 : (size_t)n, r);
		switch (r->verdict) {
		case FCGIGUARD_COMPLETE: return WAITROOM_READY;
		case FCGIGUARD_INCOMPLETE:
			if (!peer_done(fd))
				return WAITROOM_WAIT;
			/* The peer's last bytes and its FIN may both have come after
			 * the peek above (a client that half-closes right after
			 * sending): look once more before calling it incomplete. */
			if (!looked_again) {
				looked_again = true;
				continue;
			}
			log_warnx("connection closed before a complete request bytes=%zu", r->seen);
			return WAITROOM_LINGER; /* reads what is left: an EOF, not a reset */
		case FCGIGUARD_MGMT:
			if (mgmt++ < MGMT_MAX && answer_mgmt(wr, fd, buf, r))
				continue;
			return WAITROOM_CLOSE;
		case FCGIGUARD_REJECT:
			/* lingering: the peer sees our close, not a reset */
			log_warnx("rejected FastCGI input: %s; closing the connection", r->reason);
			count_rejected(wr, r->reason);
			return WAITROOM_LINGER;
		case FCGIGUARD_ERROR:
		case FCGIGUARD_BAD_ROLE: return refuse(wr, fd, r);
		}
		return WAITROOM_CLOSE;
	}
}

/* ---- the room (slots under wr->mu) ---- */

static void wake(struct waitroom *wr)
{
	uint64_t one = 1;

	(void)!write(wr->wakefd, &one, sizeof one);
}

static ssize_t find(const struct waitroom *wr, int fd)
{
	for (size_t i = 0; i < wr->nslots; i++)
		if (wr->slots[i].fd == fd)
			return (ssize_t)i;
	return -1;
}

static void remove_slot(struct waitroom *wr, size_t i)
{
	(void)epoll_ctl(wr->epfd, EPOLL_CTL_DEL, wr->slots[i].fd, NULL);
	wr->slots[i] = wr->slots[--wr->nslots];
}

/* Add a slot and watch it: 0, or -1 when stopped, -2 when full (fd untouched). */
static int add_slot(struct waitroom *wr, const struct slot *s, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.fd = s->fd };
	int rc = 0;

	pthread_mutex_lock(&wr->mu);
	if (wr->stopped)
		rc = -1;
	else if (wr->nslots == ROOM_MAX || epoll_ctl(wr->epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0)
		rc = -2;
	else
		wr->slots[wr->nslots++] = *s;
	if (rc == 0 && s->deadline_ms < wr->wake_at)
		wake(wr);
	pthread_mutex_unlock(&wr->mu);
	return rc;
}

int waitroom_park(struct waitroom *wr, int fd, int64_t deadline_ms, int64_t head_ms)
{
	struct slot s = { .fd = fd,
			  .deadline_ms = deadline_ms,
			  .head_ms = head_ms,
			  .kept = deadline_ms - clock_now_ms() > head_ms };
	int rc = add_slot(wr, &s, EPOLLIN | EPOLLRDHUP | EPOLLET);

	if (rc == -1)
		return -1;
	if (rc == -2) {
		log_warnx("too many connections waiting for a request; closing one limit=%d",
			  ROOM_MAX);
		count_rejected(wr, FCGIGUARD_WHY_ROOM_FULL);
		close(fd);
	}
	return 0;
}

void waitroom_close(struct waitroom *wr, int fd)
{
	struct slot s = { .fd = fd, .lingering = true, .deadline_ms = clock_now_ms() + LINGER_MS };

	shutdown(fd, SHUT_WR);
	if (add_slot(wr, &s, EPOLLIN | EPOLLRDHUP) < 0)
		close(fd);
}

/* Under the lock: append to the ready ring; false when it is full. */
static bool push_ready(struct waitroom *wr, int fd, bool kept, uint64_t due)
{
	if (wr->nready == ROOM_MAX)
		return false;
	wr->ready[(wr->ready_first + wr->nready) % ROOM_MAX] =
	    (struct ready_conn){ .fd = fd, .kept = kept, .due = due };
	wr->nready++;
	return true;
}

static uint64_t ticket(const struct waitroom *wr)
{
	return wr->o.ticket ? wr->o.ticket(wr->o.ticket_arg) : 0;
}

int waitroom_requeue(struct waitroom *wr, int fd, bool kept)
{
	uint64_t due = ticket(wr);
	bool queued;

	pthread_mutex_lock(&wr->mu);
	queued = !wr->stopped && push_ready(wr, fd, kept, due);
	pthread_mutex_unlock(&wr->mu);
	return queued ? 0 : -1;
}

bool waitroom_has_ready(struct waitroom *wr)
{
	bool any;

	pthread_mutex_lock(&wr->mu);
	any = wr->nready > 0;
	pthread_mutex_unlock(&wr->mu);
	return any;
}

int waitroom_take(struct waitroom *wr, uint64_t accepted, bool any, bool *kept)
{
	int fd = -1;

	pthread_mutex_lock(&wr->mu);
	if (wr->nready > 0) {
		const struct ready_conn *c = &wr->ready[wr->ready_first];

		if (any || c->due <= accepted) {
			fd = c->fd;
			*kept = c->kept;
			wr->ready_first = (wr->ready_first + 1) % ROOM_MAX;
			wr->nready--;
		} else {
			fd = -2;
		}
	}
	pthread_mutex_unlock(&wr->mu);
	return fd;
}

/* ---- the room thread ---- */

/* Read and drop what a lingering peer sends (a bounded amount per call, so a
 * fast sender cannot hold the thread); true when the peer is done. */
static bool drain(int fd, unsigned char *buf)
{
	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(fd, buf, FCGIGUARD_HEAD_MAX, MSG_DONTWAIT);

		if (n == 0)
			return true;
		if (n < 0 && errno != EINTR)
			return errno != EAGAIN && errno != EWOULDBLOCK;
	}
	return false;
}

static void make_ready(struct waitroom *wr, size_t i, uint64_t due)
{
	int fd = wr->slots[i].fd;
	bool kept = wr->slots[i].kept;

	remove_slot(wr, i);
	if (!push_ready(wr, fd, kept, due))
		close(fd);
}

static void make_lingering(struct waitroom *wr, size_t i)
{
	struct slot *s = &wr->slots[i];
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = s->fd };

	shutdown(s->fd, SHUT_WR);
	s->lingering = true;
	s->deadline_ms = clock_now_ms() + LINGER_MS;
	(void)epoll_ctl(wr->epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

/* Act on a waiting connection's verdict (slot i, examined unlocked). */
static void settle(struct waitroom *wr, size_t i, enum waitroom_state st,
		   const struct fcgiguard_result *r, uint64_t due)
{
	struct slot *s = &wr->slots[i];
	int fd = s->fd;

	switch (st) {
	case WAITROOM_READY: make_ready(wr, i, due); break;
	case WAITROOM_LINGER: make_lingering(wr, i); break;
	case WAITROOM_CLOSE:
		remove_slot(wr, i);
		close(fd);
		break;
	case WAITROOM_WAIT:
		if (!s->seen && r->seen > 0) {
			s->seen = true;
			if (clock_now_ms() + s->head_ms < s->deadline_ms)
				s->deadline_ms = clock_now_ms() + s->head_ms;
		}
		break;
	}
}

static void on_event(struct waitroom *wr, int fd)
{
	struct fcgiguard_result r;
	enum waitroom_state st;
	uint64_t due = 0;
	ssize_t i;
	bool lingering;

	pthread_mutex_lock(&wr->mu);
	i = find(wr, fd);
	lingering = i >= 0 && wr->slots[i].lingering;
	pthread_mutex_unlock(&wr->mu);
	if (i < 0)
		return;
	if (lingering)
		st = drain(fd, wr->buf) ? WAITROOM_CLOSE : WAITROOM_WAIT;
	else
		st = waitroom_examine(wr, fd, wr->buf, &r);
	if (st == WAITROOM_READY)
		due = ticket(wr); /* before the lock: it may sample the accept queue */
	pthread_mutex_lock(&wr->mu);
	if (lingering && st == WAITROOM_CLOSE) {
		remove_slot(wr, (size_t)i);
		close(fd);
	} else if (!lingering) {
		settle(wr, (size_t)i, st, &r, due);
	}
	pthread_mutex_unlock(&wr->mu);
}

static void log_expiry(const struct waitroom *wr, const struct slot *s)
{
	if (s->lingering)
		return;
	if (s->seen || !s->kept)
		count_rejected(wr, FCGIGUARD_WHY_HEAD_TIMEOUT);
	if (s->seen)
		log_warnx("closed a connection whose request did not arrive in time "
			  "(incomplete request head)");
	else if (!s->kept)
		log_warnx("closed a connection that sent no request in time");
	else
		log_debug("closed an idle kept-alive connection");
}

/* Close what is past its deadline; the next deadline, or -1 for none. */
static int64_t expire(struct waitroom *wr, int64_t now)
{
	int64_t next = -1;

	for (size_t i = 0; i < wr->nslots;) {
		struct slot s = wr->slots[i];

		if (s.deadline_ms > now) {
			next = next < 0 || s.deadline_ms < next ? s.deadline_ms : next;
			i++;
			continue;
		}
		remove_slot(wr, i);
		close(s.fd);
		log_expiry(wr, &s);
	}
	return next;
}

/* Under the lock: close what has expired, then say how long epoll_wait may
 * block before a deadline (or a re-kick) is due. */
static int epoll_timeout_ms(struct waitroom *wr)
{
	int64_t now = clock_now_ms(), next = expire(wr, now);
	int64_t ms = next < 0 ? IDLE_TICK_MS : next - now;

	if (wr->nready > 0 && ms > KICK_INTERVAL_MS)
		ms = KICK_INTERVAL_MS;
	wr->wake_at = now + ms;
	return (int)ms;
}

static void *room_main(void *arg)
{
	struct waitroom *wr = arg;
	struct epoll_event ev[64];

	for (;;) {
		pthread_mutex_lock(&wr->mu);
		bool stop = wr->stopped, kick = wr->nready > 0;
		int ms = epoll_timeout_ms(wr);
		pthread_mutex_unlock(&wr->mu);
		if (stop)
			return NULL;
		if (kick)
			wr->o.kick(wr->o.kick_arg);
		int n = epoll_wait(wr->epfd, ev, 64, ms);
		for (int i = 0; i < n; i++) {
			uint64_t count;

			if (ev[i].data.fd == wr->wakefd)
				(void)!read(wr->wakefd, &count, sizeof count);
			else
				on_event(wr, ev[i].data.fd);
		}
	}
}

/* ---- life cycle ---- */

struct waitroom *waitroom_new(const struct waitroom_opts *o)
{
	struct waitroom *wr = xcalloc(1, sizeof *wr);
	struct epoll_event ev = { .events = EPOLLIN };

	wr->buf = xmalloc(FCGIGUARD_HEAD_MAX);
	wr->o = *o;
	wr->wake_at = INT64_MAX;
	pthread_mutex_init(&wr->mu, NULL);
	wr->epfd = epoll_create1(EPOLL_CLOEXEC);
	wr->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ev.data.fd = wr->wakefd;
	if (wr->epfd < 0 || wr->wakefd < 0 ||
	    epoll_ctl(wr->epfd, EPOLL_CTL_ADD, wr->wakefd, &ev) < 0) {
		log_error("cannot set up the connection waiting room");
		wr->stopped = true;
		waitroom_free(wr);
		return NULL;
	}
	return wr;
}

int waitroom_start(struct waitroom *wr)
{
	if (pthread_create(&wr->tid, NULL, room_main, wr) != 0) {
		log_errorx("cannot start the connection waiting room thread");
		return -1;
	}
	wr->started = true;
	return 0;
}

/* A connection that has sent something is handed to the request threads,
 * which serve it during a graceful stop; silent and lingering ones close. */
static void empty_room(struct waitroom *wr)
{
	pthread_mutex_lock(&wr->mu);
	while (wr->nslots > 0) {
		struct slot s = wr->slots[0];
		char c;

		if (!s.lingering && recv(s.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
			make_ready(wr, 0, 0); /* stopping: nothing is accepted any more */
		} else {
			remove_slot(wr, 0);
			close(s.fd);
		}
	}
	pthread_mutex_unlock(&wr->mu);
}

void waitroom_stop(struct waitroom *wr)
{
	pthread_mutex_lock(&wr->mu);
	wr->stopped = true;
	pthread_mutex_unlock(&wr->mu);
	wake(wr);
	if (wr->started)
		pthread_join(wr->tid, NULL);
	wr->started = false;
	empty_room(wr);
}

void waitroom_free(struct waitroom *wr)
{
	bool kept;
	int fd;

	if (wr == NULL)
		return;
	if (!wr->stopped || wr->started)
		waitroom_stop(wr);
	while ((fd = waitroom_take(wr, 0, true, &kept)) >= 0)
		close(fd);
	if (wr->epfd >= 0)
		close(wr->epfd);
	if (wr->wakefd >= 0)
		close(wr->wakefd);
	pthread_mutex_destroy(&wr->mu);
	free(wr->buf);
	free(wr);
}
