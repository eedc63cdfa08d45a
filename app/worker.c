/* worker: request threads over libfcgi; what a request is answered is
 * routes.c's, writing the answer is ours.
 *
 * We accept connections ourselves and hand the socket to libfcgi (through the
 * public ipcFd/keepConnection fields of FCGX_Request), so that no peer can pin
 * a thread (a connection whose request head is not all here waits in the
 * waiting room, waitroom.c, not on a thread), libfcgi only ever parses input
 * that fcgiguard.c has checked, we filter peers over IPv6 as well as IPv4, and
 * we wake idle threads for a graceful stop, or for a connection the waiting
 * room found ready, without disturbing a thread in the middle of a request:
 * only a thread that says it is idle is sent SIGUSR2, whose handler is
 * installed without SA_RESTART so that its accept() returns EINTR. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "arrival.h"
#include "clock.h"
#include "config.h"
#include "dbslots.h"
#include "log.h"
#include "peer.h"
#include "pgconn.h"
#include "pool.h"
#include "pool_pg.h"
#include "router.h"
#include "routes.h"
#include "scoreboard.h"
#include "waitroom.h"
#include "worker.h"
#include "xalloc.h"

/* A connection's request head (everything up to the end of FCGI_PARAMS) must
 * arrive within this long of the connection, or of its first byte on a kept
 * connection; it waits in the waiting room meanwhile. nginx sends a whole
 * request at once. */
#define FIRST_RECORD_TIMEOUT_MS 5000
/* A thread waits this long for a new connection's first bytes before handing
 * it to the waiting room: nginx writes right after connecting, and a silent
 * peer costs a thread no more than this. */
#define FIRST_DATA_WAIT_MS 2
/* ...and this long for the next request on a kept connection (nginx sends
 * back to back under load) before the connection waits in the room, unless
 * another connection is waiting meanwhile (hold_kept). */
#define KEEPALIVE_HOLD_MS 50
/* After our answer, how long a request thread waits for the web server to
 * close its side before the waiting room takes over (close_after_peer). */
#define CLOSE_WAIT_MS 5
/* An idle kept-alive connection from nginx (fastcgi_keep_conn) is closed after
 * this long; keep nginx's upstream keepalive_timeout below it. */
#define KEEPALIVE_IDLE_TIMEOUT_MS 75000
#define STOP_KICK_INTERVAL_MS     20

enum thread_state { THREAD_IDLE, THREAD_BUSY, THREAD_DONE };

struct request_thread {
	pthread_t tid;
	struct worker *w;
	_Atomic int state;
	unsigned char *buf;           /* FCGIGUARD_HEAD_MAX bytes to peek into */
	struct fcgiguard_result head; /* of the request being served */
	int io_fd;                    /* the connection whose I/O timeouts are set, or -1 */
	bool counted_busy;            /* in the scoreboard's busy threads */
};

struct worker {
	const struct config *cfg;
	int listen_fd;
	struct scoreboard *sb;
	struct sb_slot *sb_slot;
	int slot; /* index of sb_slot: our share of the connection bound */
	atomic_bool stopping;
	atomic_long requests;
	pthread_t main_tid;
	struct peer_allowlist *allow;
	struct pgconn_params *db_params;
	struct pool *pool;
	struct request_thread *threads;
	long nthreads; /* started */
	struct waitroom *room;
	struct arrivals arr; /* the next connection, from listen_fd or the room */
	bool alone;          /* no master (WORKER_ALONE): it enforces its own stop */
	bool stop_signalled; /* a stop signal came (SIGUSR1, our own recycling, is none) */
	int64_t stop_deadline_ms;
	struct routes routes; /* what the requests are answered from */
};

/* A handler that does nothing: SIGUSR2 interrupts an idle thread's accept()
 * or poll() with EINTR; SIGTERM and SIGUSR1, blocked and taken with
 * sigwaitinfo(), need one only so that FCGX_Init installs none of its own. */
static void on_signal(int sig)
{
	(void)sig;
}

static void write_response(FCGX_Request *req, const struct routes_response *r, bool head)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof(hdr),
			 "Status: %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Cache-Control: no-store\r\n",
			 r->status, router_reason_phrase(r->status), r->content_type, r->len);

	if (r->allow)
		n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "Allow: %s\r\n", r->allow);
	if (r->retry_after > 0)
		n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "Retry-After: %d\r\n",
			      r->retry_after);
	n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "\r\n");
	FCGX_PutStr(hdr, n, req->out);
	if (!head && r->len)
		FCGX_PutStr(r->body, (int)r->len, req->out);
}

/* At each scrape (routes' before_metrics). */
static void sample_listen_queue_now(void *arg)
{
	struct worker *w = arg;

	arrivals_sample(&w->arr, true);
}

static void log_request(const struct worker *w, enum route route, int status, int64_t us)
{
	if (w->cfg->access_log)
		log_info("request route=%s status=%d us=%lld", router_name(route), status,
			 (long long)us);
	if (us > (int64_t)w->cfg->slow_request_ms * 1000) {
		sb_add(&w->sb_slot->sat.slow_requests, 1);
		log_warnx("slow request route=%s status=%d us=%lld", router_name(route), status,
			  (long long)us);
	}
}

/* Bounds each blocking read and write libfcgi does on the connection (the
 * response write to a peer that does not read), set only where one could
 * block: two syscalls saved on nearly every request. A request whose input is
 * all here (fcgiguard saw its end) is read without waiting, and a response
 * that fits in an empty socket buffer is written without waiting on a fresh
 * connection; a kept connection may hold earlier answers the peer has not
 * read, and a request body may still be on its way. */
#define UNBLOCKED_WRITE_MAX 4096
static void bound_io(struct request_thread *t, int fd)
{
	struct timeval tv = { .tv_sec = FIRST_RECORD_TIMEOUT_MS / 1000 };

	if (t->io_fd == fd)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	t->io_fd = fd;
}

static void handle_request(struct request_thread *t, FCGX_Request *req)
{
	struct worker *w = t->w;
	struct routes_response r;

	routes_answer(&w->routes, req, &r);
	if (r.len + 512 > UNBLOCKED_WRITE_MAX) /* 512: write_response's header */
		bound_io(t, req->ipcFd);
	write_response(req, &r, r.head);
	free(r.body);
	log_request(w, r.route, r.status, r.us);
}

static void log_refused_peer(const struct sockaddr *sa)
{
	char name[INET6_ADDRSTRLEN];

	peer_name(sa, name, sizeof(name));
	log_warnx("peer refused: not in FCGI_WEB_SERVER_ADDRS peer=%s", name);
}

/* The next connection in arrival order (arrival.h), from an allowed peer;
 * -1 when stopping (ready connections are served first). *kept: it served a
 * request before. */
static int accept_connection(struct worker *w, bool *kept)
{
	for (;;) {
		struct sockaddr_storage sa;
		bool accepted;
		int fd = arrivals_next(&w->arr, w->room, &w->stopping, kept, &sa, &accepted);

		if (fd == -1 || (fd >= 0 && !accepted))
			return fd;
		if (fd < 0) {
			if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
				log_warn("accept failed");
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				poll(NULL, 0, 10); /* let descriptors free up instead of spinning */
			continue;
		}
		if (peer_allowed(w->allow, (struct sockaddr *)&sa))
			return fd;
		sb_add(&w->sb_slot->sat.refused_peers, 1);
		log_refused_peer((struct sockaddr *)&sa);
		close(fd);
	}
}

/* Wait up to ms for bytes on fd (or its close). */
static void wait_data(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };

	if (ms > 0)
		(void)poll(&p, 1, ms);
}

/* During a graceful stop the waiting room is closed: a connection that has
 * sent something (or was just accepted) is still served, waiting here, so a
 * stop or reload does not turn into 502s at the web server; an idle kept
 * connection is closed. 0 when fd's head is complete. */
static int head_while_stopping(struct request_thread *t, int fd, bool kept, int64_t deadline)
{
	for (;;) {
		if (kept && t->head.seen == 0)
			break;
		if (clock_now_ms() >= deadline)
			break;
		if (t->head.seen > 0)
			poll(NULL, 0, 10); /* bytes already here keep fd readable */
		else
			wait_data(fd, (int)(deadline - clock_now_ms()));
		switch (waitroom_examine(t->w->room, fd, t->buf, &t->head)) {
		case WAITROOM_READY: return 0;
		case WAITROOM_WAIT: continue;
		case WAITROOM_LINGER: waitroom_close(t->w->room, fd); return -1;
		case WAITROOM_CLOSE: break;
		}
		break;
	}
	close(fd);
	return -1;
}

/* Wait up to KEEPALIVE_HOLD_MS for the next request on kept connection fd,
 * while no other connection waits: one in the accept queue ends the wait, and
 * so does one ready in the waiting room, whose kick finds this thread idle. */
static void hold_kept(struct request_thread *t, int fd)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLIN | POLLRDHUP },
			       { .fd = t->w->listen_fd, .events = POLLIN } };

	atomic_store(&t->state, THREAD_IDLE);
	if (!waitroom_has_ready(t->w->room))
		(void)poll(p, 2, KEEPALIVE_HOLD_MS);
	atomic_store(&t->state, THREAD_BUSY);
}

/* Until fd's request head is all here (0), else hand fd on (-1): closed,
 * lingering after an error answer, or waiting in the room. kept: fd served a
 * request before. */
static int ready_head(struct request_thread *t, int fd, bool kept)
{
	struct worker *w = t->w;
	int64_t t0 = clock_now_ms();
	bool waited = false;

	for (;;) {
		switch (waitroom_examine(w->room, fd, t->buf, &t->head)) {
		case WAITROOM_READY: return 0;
		case WAITROOM_CLOSE: close(fd); return -1;
		case WAITROOM_LINGER: waitroom_close(w->room, fd); return -1;
		case WAITROOM_WAIT: break;
		}
		if (atomic_load(&w->stopping))
			return head_while_stopping(t, fd, kept, t0 + FIRST_RECORD_TIMEOUT_MS);
		if (t->head.seen > 0 || waited)
			break;
		if (kept)
			hold_kept(t, fd);
		else
			wait_data(fd, FIRST_DATA_WAIT_MS);
		waited = true;
	}
	int64_t deadline =
	    kept ? clock_now_ms() + KEEPALIVE_IDLE_TIMEOUT_MS : t0 + FIRST_RECORD_TIMEOUT_MS;
	if (waitroom_park(w->room, fd, deadline, FIRST_RECORD_TIMEOUT_MS) < 0)
		return head_while_stopping(t, fd, kept, t0 + FIRST_RECORD_TIMEOUT_MS);
	return -1;
}

static void count_busy(struct request_thread *t, bool busy)
{
	if (t->counted_busy != busy)
		scoreboard_thread_busy(t->w->sb, t->w->sb_slot, busy ? 1 : -1);
	t->counted_busy = busy;
}

/* After a request on kept connection fd: while another connection waits,
 * fd goes behind it (to the waiting room's ready queue, or to wait there for
 * its next request) instead of being served again at once; true when fd was
 * handed on so. */
static bool yield_kept(struct request_thread *t, int fd)
{
	struct waitroom *room = t->w->room;

	if (!waitroom_has_ready(room) && !arrivals_waiting(&t->w->arr))
		return false;
	switch (waitroom_examine(room, fd, t->buf, &t->head)) {
	case WAITROOM_READY: return waitroom_requeue(room, fd, true) == 0;
	case WAITROOM_WAIT:
		return waitroom_park(room, fd, clock_now_ms() + KEEPALIVE_IDLE_TIMEOUT_MS,
				     FIRST_RECORD_TIMEOUT_MS) == 0;
	case WAITROOM_CLOSE: close(fd); return true;
	case WAITROOM_LINGER: waitroom_close(room, fd); return true;
	}
	return false;
}

/* Get the next request: on the kept-alive connection if there is one and
 * nobody waits (yield_kept), else on the next connection in arrival order
 * (accept_connection). 0 when req holds a request. */
static int next_request(struct request_thread *t, FCGX_Request *req)
{
	for (;;) {
		int fd = req->ipcFd;
		bool kept = fd >= 0;

		req->ipcFd = -1;
		if (!kept || yield_kept(t, fd)) {
			t->io_fd = -1;
			atomic_store(&t->state, THREAD_IDLE);
			count_busy(t, false);
			fd = accept_connection(t->w, &kept);
			if (fd < 0)
				return -1;
		}
		atomic_store(&t->state, THREAD_BUSY);
		count_busy(t, true);
		if (ready_head(t, fd, kept) < 0)
			continue;
		if (kept || !t->head.stdin_done)
			bound_io(t, fd);
		req->ipcFd = fd;
		/* Detached: libfcgi closes with a plain close(), never with its
		 * unbounded wait for the peer (we linger ourselves, bounded, in the
		 * waiting room). keepConnection: FCGX_Accept_r first finishes the
		 * previous request, and must not close the fd we just gave it. */
		FCGX_Detach(req);
		req->keepConnection = 1;
		if (FCGX_Accept_r(req) == 0)
			return 0;
		log_warnx("libfcgi refused a request that passed our checks");
	}
}

/* Half-close fd and give the web server up to CLOSE_WAIT_MS to close its side
 * (nginx does so as soon as it has read our answer), then close; a peer still
 * open or still sending after that goes to the waiting room's bounded linger.
 * Closing first, without waiting, costs nothing per request but leaves a
 * multi-second latency tail behind a saturated nginx; libfcgi's own wait
 * lasts up to 2 s per connection. bench/results/README.md has the
 * measurements. */
static void close_after_peer(struct waitroom *room, int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
	char buf[256];

	(void)shutdown(fd, SHUT_WR);
	if (poll(&p, 1, CLOSE_WAIT_MS) == 1) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0 ||
		    (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			close(fd); /* closed (or reset) by the peer */
			return;
		}
	}
	waitroom_close(room, fd);
}

/* Finish the response and, unless the web server keeps the connection, close
 * it: after a short wait for the peer's close when its input was read to the
 * end and nothing came after it (close_after_peer), else
 * through the waiting room, which reads what the peer still sends for a
 * bounded time. The input is read through libfcgi only when fcgiguard saw all
 * of it and nothing but FCGI_STDIN in it: libfcgi would otherwise wait for it,
 * or meet records it handles unsafely. */
static void finish_request(struct request_thread *t, FCGX_Request *req)
{
	bool keep = req->keepConnection; /* the web server's FCGI_KEEP_CONN */

	if (t->head.stdin_done) {
		char buf[4096];
		while (FCGX_GetStr(buf, sizeof(buf), req->in) > 0)
			;
	}
	req->keepConnection = 1;
	FCGX_Finish_r(req); /* closes only after a write error */
	if (req->ipcFd < 0 || keep)
		return;
	if (t->head.stdin_done && t->head.seen == t->head.input_len)
		close_after_peer(t->w->room, req->ipcFd);
	else
		waitroom_close(t->w->room, req->ipcFd);
	req->ipcFd = -1;
}

static void note_request_done(struct worker *w)
{
	long n = atomic_fetch_add(&w->requests, 1) + 1;

	if (w->cfg->max_requests > 0 && n == w->cfg->max_requests) {
		log_info("worker recycling requests=%ld", n);
		/* Under a master: ask for the replacement first (master.c
		 * replace_retiring), so that someone accepts while we finish. */
		pid_t master = getppid();
		if (!w->alone && master > 1)
			kill(master, SIGUSR1);
		pthread_kill(w->main_tid, SIGUSR1);
	}
}

/* A request thread under the normal policy moves to SCHED_BATCH, under which
 * a thread that wakes up does not preempt the one running. Ours wake for
 * every connection, every answer from the database and every close by the
 * web server; preempting nginx or a sibling thread at each of those costs
 * more CPU per request than our own work does: on two CPUs at c=128, /health
 * cost 33 µs of CPU per request under the normal policy and 28 µs under
 * SCHED_BATCH, what a bare libfcgi responder costs (bench/results/README.md
 * has the measurement). It needs no privilege, and a thread that wakes
 * on an idle CPU runs at once all the same. A policy the operator chose
 * (chrt, systemd's CPUSchedulingPolicy=) is kept. */
static void set_sched(const struct request_thread *t)
{
	struct sched_param sp = { .sched_priority = 0 };
	int policy, rc;

	if (pthread_getschedparam(pthread_self(), &policy, &sp) != 0 || policy != SCHED_OTHER)
		return;
	rc = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	if (rc != 0 && t == &t->w->threads[0])
		log_write(LOG_LEVEL_WARN, rc, "request threads keep the normal scheduling policy");
}

static void *request_thread_main(void *arg)
{
	struct request_thread *t = arg;
	FCGX_Request req;

	set_sched(t);

	/* listen_sock -1: libfcgi must never accept by itself (after a bad first
	 * record it would otherwise block in accept() where we cannot wake it). */
	FCGX_InitRequest(&req, -1, FCGI_FAIL_ACCEPT_ON_INTR);
	t->io_fd = -1;
	t->buf = xmalloc(FCGIGUARD_HEAD_MAX);
	while (next_request(t, &req) == 0) {
		handle_request(t, &req);
		finish_request(t, &req);
		note_request_done(t->w);
	}
	FCGX_Free(&req, 1);
	free(t->buf);
	atomic_store(&t->state, THREAD_DONE);
	return NULL;
}

static void install_signals(bool alone)
{
	struct sigaction wake = { .sa_handler = on_signal }; /* no SA_RESTART: EINTR wanted */
	struct sigaction ign = { .sa_handler = SIG_IGN };

	sigemptyset(&wake.sa_mask);
	sigemptyset(&ign.sa_mask);
	sigaction(SIGUSR2, &wake, NULL);
	/* Ours before FCGX_Init, which installs its own only where the
	 * disposition is still the default. */
	sigaction(SIGTERM, &wake, NULL);
	sigaction(SIGUSR1, &wake, NULL);
	sigaction(SIGPIPE, &ign, NULL);
	if (!alone) {
		sigaction(SIGHUP, &ign, NULL);
		return;
	}
	/* Alone, these stop us: a disposition of SIG_IGN inherited from the
	 * spawner would discard them even while blocked. */
	sigaction(SIGHUP, &wake, NULL);
	sigaction(SIGINT, &wake, NULL);
	sigaction(SIGQUIT, &wake, NULL);
}

/* Alone, SIGHUP stops the process too (see worker_note_stop). */
static void signal_set_stop(sigset_t *set, bool alone)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGQUIT);
	sigaddset(set, SIGUSR1);
	if (alone)
		sigaddset(set, SIGHUP);
}

static int start_threads(struct worker *w)
{
	long n = w->cfg->worker_threads;

	w->threads = xcalloc((size_t)n, sizeof(*w->threads));
	for (w->nthreads = 0; w->nthreads < n; w->nthreads++) {
		struct request_thread *t = &w->threads[w->nthreads];
		t->w = w;
		atomic_store(&t->state, THREAD_IDLE);
		if (pthread_create(&t->tid, NULL, request_thread_main, t)) {
			log_errorx("cannot start request thread index=%ld", w->nthreads);
			return -1;
		}
		atomic_fetch_add_explicit(&w->sb_slot->sat.threads, 1, memory_order_relaxed);
	}
	return 0;
}

/* The waiting room has a ready connection: interrupt one idle thread's
 * accept(). A kick landing just before a thread enters accept() is lost; the
 * room kicks again every few milliseconds while connections are ready. */
static void kick_idle_thread(void *arg)
{
	struct worker *w = arg;

	for (long i = 0; i < w->nthreads; i++) {
		if (atomic_load(&w->threads[i].state) == THREAD_IDLE) {
			pthread_kill(w->threads[i].tid, SIGUSR2);
			return;
		}
	}
}

/* Alone, there is no master to enforce SHUTDOWN_TIMEOUT_MS or to act on a
 * second signal (DESIGN.md §1), so the worker does: a stop signal starts the
 * clock; SIGHUP means "start again with the configuration re-read", which a
 * spawner that restarts its children (lighttpd, mod_fcgid) does when we
 * exit; SIGUSR1 is our own MAX_REQUESTS recycling. */
static void note_stop(struct worker *w, int sig)
{
	if (sig == SIGUSR1)
		return;
	w->stop_signalled = true;
	if (!w->alone)
		return;
	w->stop_deadline_ms = clock_now_ms() + w->cfg->shutdown_timeout_ms;
	if (sig == SIGHUP)
		log_info("SIGHUP: stopping gracefully so that the spawner starts a new process "
			 "with the configuration re-read timeout_ms=%ld",
			 w->cfg->shutdown_timeout_ms);
	else
		log_info("stopping gracefully signal=%d timeout_ms=%ld", sig,
			 w->cfg->shutdown_timeout_ms);
}

static void wait_for_stop(struct worker *w)
{
	sigset_t set;
	int sig;

	signal_set_stop(&set, w->alone);
	do {
		sig = sigwaitinfo(&set, NULL);
	} while (sig < 0 && errno == EINTR);
	note_stop(w, sig);
}

/* Alone and stopping: a second stop signal, or the end of
 * SHUTDOWN_TIMEOUT_MS, ends the process now, in-flight requests or not. */
static void enforce_stop(struct worker *w)
{
	struct timespec zero = { 0 };
	sigset_t set;
	int sig;

	if (!w->alone)
		return;
	signal_set_stop(&set, true);
	while ((sig = sigtimedwait(&set, NULL, &zero)) > 0) {
		if (sig != SIGUSR1 && w->stop_signalled) {
			log_warnx("second stop signal: stopping now signal=%d", sig);
			_exit(EXIT_FAILURE);
		}
		note_stop(w, sig);
	}
	if (w->stop_signalled && clock_now_ms() >= w->stop_deadline_ms) {
		log_warnx("requests still running after SHUTDOWN_TIMEOUT_MS: stopping now");
		_exit(EXIT_FAILURE);
	}
}

/* Tell idle threads to leave accept()/poll(); busy ones finish their request,
 * and the connections the waiting room hands back are still served. */
static void stop_threads(struct worker *w)
{
	long n = w->nthreads;
	bool all_done;

	atomic_store(&w->stopping, true);
	FCGX_ShutdownPending();
	waitroom_stop(w->room);
	do {
		all_done = true;
		for (long i = 0; i < n; i++) {
			int st = atomic_load(&w->threads[i].state);
			if (st == THREAD_IDLE)
				pthread_kill(w->threads[i].tid, SIGUSR2);
			if (st != THREAD_DONE)
				all_done = false;
		}
		if (!all_done) {
			enforce_stop(w);
			poll(NULL, 0, STOP_KICK_INTERVAL_MS);
		}
	} while (!all_done);
	for (long i = 0; i < n; i++)
		pthread_join(w->threads[i].tid, NULL);
	free(w->threads);
}

static void become_worker(bool alone)
{
	sigset_t set;

	/* If the master is killed outright, do not serve on as an orphan. Alone,
	 * the parent is the spawner, which stops us with a signal of its own. */
	if (!alone)
		prctl(PR_SET_PDEATHSIG, SIGTERM);
	install_signals(alone);
	signal_set_stop(&set, alone);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* libfcgi reads its allow-list from the environment in FCGX_Init; we
	 * filter peers ourselves, so it must not filter (IPv4 only) as well. */
	unsetenv("FCGI_WEB_SERVER_ADDRS");
}

/* ---- start-up and shutdown: each step has its release below ---- */

static int fcgi_init_worker(void)
{
	if (FCGX_Init() != 0) {
		log_errorx("FCGX_Init failed");
		return -1;
	}
	return 0;
}

/* The instance-wide bound, as the pool's quota (DESIGN.md §1). */
static int reserve_slot(void *arg, int64_t deadline_ms)
{
	struct worker *w = arg;

	return dbslots_reserve(w->sb, w->slot, deadline_ms);
}

static void release_slot(void *arg)
{
	struct worker *w = arg;

	dbslots_release(w->sb, w->slot);
}

/* The pool starts empty: no connection is opened until a request needs one. */
static int db_init_worker(struct worker *w)
{
	struct pool_options opts;
	char err[256];

	w->db_params = pgconn_params_new(w->cfg->database_url, err, sizeof(err));
	if (!w->db_params) {
		log_errorx("DATABASE_URL unusable: %s", err);
		return -1;
	}
	pool_options_from_config(&opts, w->cfg);
	opts.quota =
	    (struct pool_quota){ .reserve = reserve_slot, .release = release_slot, .arg = w };
	w->pool = pool_create(&opts, pool_pg_connector(), w->db_params);
	if (!w->pool) {
		log_errorx("cannot create the connection pool");
		return -1;
	}
	pool_set_mirror(w->pool, &w->sb_slot->pool);
	w->routes.pool = w->pool;
	routes_init_worker(&w->routes);
	return 0;
}

/* Only after every request thread has been joined: closes each connection
 * cleanly (PQfinish sends Terminate), so the server logs no broken client. */
static void db_stop_worker(struct worker *w)
{
	routes_stop_worker(&w->routes);
	pool_destroy(w->pool);
	pgconn_params_free(w->db_params);
}

/* Cannot fail: allocation aborts, and NULL means every peer is allowed. */
static int peer_init_worker(struct worker *w)
{
	w->allow = peer_allowlist_new(w->cfg->fcgi_web_server_addrs);
	return 0;
}

static void count_rejected(void *arg, const char *reason)
{
	struct sb_slot *slot = arg;

	sb_add(&slot->sat.rejected[fcgiguard_reason_index(reason)], 1);
}

static int room_init_worker(struct worker *w)
{
	struct waitroom_opts room = { .max_conns = w->cfg->workers * w->cfg->worker_threads,
				      .kick = kick_idle_thread,
				      .kick_arg = w,
				      .ticket = arrivals_ticket,
				      .ticket_arg = &w->arr,
				      .rejected = count_rejected,
				      .rejected_arg = w->sb_slot };

	w->room = waitroom_new(&room);
	return w->room ? 0 : -1;
}

/* Serve until told to stop; the room's thread starts after the request
 * threads, which it kicks. 0, or 1 when a thread could not start. */
static int serve(struct worker *w)
{
	int status = 0;

	if (start_threads(w) < 0 || waitroom_start(w->room) < 0)
		status = 1;
	else
		wait_for_stop(w);
	stop_threads(w);
	return status;
}

int worker_run(const struct config *cfg, int listen_fd, struct scoreboard *sb, int slot,
	       int64_t started_ms, enum worker_mode mode)
{
	struct worker w = { .cfg = cfg,
			    .listen_fd = listen_fd,
			    .sb = sb,
			    .sb_slot = &sb->slots[slot],
			    .slot = slot,
			    .routes = { .cfg = cfg,
					.sb = sb,
					.sb_slot = &sb->slots[slot],
					.started_ms = started_ms,
					.pid = (long)getpid(),
					.before_metrics = sample_listen_queue_now,
					.before_metrics_arg = &w },
			    .main_tid = pthread_self(),
			    .alone = mode == WORKER_ALONE };
	/* A worker that cannot start with this configuration exits EX_CONFIG,
	 * and the master does not respawn it (nginx's fatal exit). */
	int status = EX_CONFIG;
	bool served = false;

	become_worker(w.alone);
	arrivals_init(&w.arr, listen_fd, cfg->workers, sb);
	if (fcgi_init_worker() < 0 || db_init_worker(&w) < 0 || peer_init_worker(&w) < 0 ||
	    room_init_worker(&w) < 0)
		goto out;
	log_info("worker started slot=%d threads=%ld", slot, cfg->worker_threads);
	status = serve(&w);
	served = true;
out:
	/* In reverse order of the chain above; each release takes NULL. */
	waitroom_free(w.room);
	peer_allowlist_free(w.allow);
	db_stop_worker(&w);
	if (served)
		log_info("worker stopped slot=%d requests=%ld", slot, atomic_load(&w.requests));
	return status;
}
