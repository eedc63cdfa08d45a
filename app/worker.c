/* worker: request threads over libfcgi.
 *
 * We accept connections ourselves and hand the socket to libfcgi (through the
 * public ipcFd/keepConnection fields of FCGX_Request), so that we can bound
 * how long a silent peer may pin a thread, filter peers over IPv6 as well as
 * IPv4, and wake idle threads for a graceful stop without disturbing a thread
 * in the middle of a request: only a thread that says it is idle is sent
 * SIGUSR2, whose handler is installed without SA_RESTART so that its accept()
 * or poll() returns EINTR. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "clock.h"
#include "config.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "peer.h"
#include "pgconn.h"
#include "pool.h"
#include "router.h"
#include "scoreboard.h"
#include "worker.h"

/* A peer that connects and then sends nothing (or half a record) may hold a
 * thread this long; nginx sends a whole request at once. */
#define FIRST_RECORD_TIMEOUT_MS 5000
/* An idle kept-alive connection from nginx (fastcgi_keep_conn) is closed after
 * this long; keep nginx's upstream keepalive_timeout below it. */
#define KEEPALIVE_IDLE_TIMEOUT_MS 75000
#define STOP_KICK_INTERVAL_MS     20
/* Request bodies are never used; up to this much is read and dropped so the
 * connection can be closed without a linger (see finish_request). */
#define DRAIN_MAX_BYTES 65536

enum thread_state { THREAD_IDLE, THREAD_BUSY, THREAD_DONE };

struct request_thread {
	pthread_t tid;
	struct worker *w;
	_Atomic int state;
};

struct worker {
	const struct config *cfg;
	int listen_fd;
	int slot;
	struct scoreboard *sb;
	struct sb_slot *sb_slot;
	int64_t started_ms;
	atomic_bool stopping;
	atomic_long requests;
	pthread_t main_tid;
	struct peer_allowlist *allow;
	struct pgconn_params *db_params;
	struct pool *pool;
	struct request_thread *threads;
	long nthreads; /* started */
};

struct response {
	int status;
	const char *content_type;
	char *body; /* malloc'd */
	size_t len;
	const char *allow;
	int retry_after;
};

static void on_kick(int sig)
{
	(void)sig;
}

static void on_flag_signal(int sig)
{
	(void)sig;
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 414: return "URI Too Long";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

static void respond_error(struct response *r, int status, const char *msg)
{
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "{\"error\":\"%s\"}", msg);

	r->status = status;
	r->content_type = "application/json";
	r->body = strdup(buf);
	if (!r->body)
		abort();
	r->len = (size_t)n;
}

static void write_response(FCGX_Request *req, const struct response *r, bool head)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof(hdr),
			 "Status: %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Cache-Control: no-store\r\n",
			 r->status, reason_phrase(r->status), r->content_type, r->len);

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

/* Acquire a pooled connection and run SELECT 1, all within the deadline. */
static void check_db(struct worker *w, int64_t deadline_ms, struct health_db_check *chk)
{
	int64_t t0 = clock_now_us();
	struct pool_conn *c;
	struct db_error err = { 0 };

	chk->ok = false;
	if (pool_acquire(w->pool, deadline_ms, &c, &err) == 0) {
		int rc = pgconn_exec(pool_conn_handle(c), "SELECT 1", deadline_ms, NULL, &err);
		pool_release(w->pool, c, rc != 0 && pgconn_error_discards(&err));
		chk->ok = rc == 0;
	}
	/* Behind an open breaker, report why it opened (unreachable, timeout…):
	 * that is what an operator acts on; the breaker shows as "circuit". */
	chk->circuit_open = err.category == DB_CIRCUIT_OPEN;
	chk->category = chk->circuit_open && err.cause != DB_OK ? err.cause : err.category;
	chk->response_ms = (double)(clock_now_us() - t0) / 1000.0;
	health_stamp(chk);
	if (!chk->ok)
		log_warnx("health check failed category=%s circuit=%s ms=%.1f",
			  db_category_name(chk->category), chk->circuit_open ? "open" : "closed",
			  chk->response_ms);
}

static void pool_view(const struct worker *w, struct health_pool_view *v)
{
	struct sb_pool sum;

	scoreboard_sum_pool(w->sb, &sum);
	v->idle = (long)sb_gauge_get(&sum.idle);
	v->in_use = (long)sb_gauge_get(&sum.in_use);
	v->waiting = (long)sb_gauge_get(&sum.waiting);
	v->breakers_open = (long)sb_gauge_get(&sum.breaker_open);
	v->max = w->cfg->workers * (w->cfg->db_pool_size + w->cfg->db_max_overflow);
}

static void respond_health_db(struct worker *w, struct response *r)
{
	struct health_db_check chk;
	struct health_pool_view view;

	check_db(w, clock_now_ms() + w->cfg->health_timeout_ms, &chk);
	pool_view(w, &view);
	r->content_type = "application/health+json";
	r->body = health_db_body(&chk, &view, w->cfg->health_details, &r->status, &r->retry_after,
				 &r->len);
}

static void dispatch(struct worker *w, const struct route_match *m, struct response *r)
{
	switch (m->route) {
	case ROUTE_HEALTH:
		r->status = 200;
		r->content_type = "application/health+json";
		r->body =
		    health_live_body((long)((clock_now_ms() - w->started_ms) / 1000), &r->len);
		break;
	case ROUTE_HEALTH_DB:
		respond_health_db(w, r);
		break;
	case ROUTE_METRICS:
		r->status = 200;
		r->content_type = METRICS_CONTENT_TYPE;
		r->body = metrics_render(w->sb, w->cfg, &r->len);
		break;
	default: respond_error(r, 404, "not found"); break;
	}
}

static void log_request(const struct worker *w, enum route route, int status, int64_t us)
{
	if (w->cfg->access_log)
		log_info("request route=%s status=%d us=%lld", router_name(route), status,
			 (long long)us);
	if (us > (int64_t)w->cfg->slow_request_ms * 1000)
		log_warnx("slow request route=%s status=%d us=%lld", router_name(route), status,
			  (long long)us);
}

static void handle_request(struct worker *w, FCGX_Request *req)
{
	int64_t t0 = clock_now_us();
	struct route_match m;
	struct response r = { 0 };

	router_resolve(FCGX_GetParam("REQUEST_METHOD", req->envp),
		       FCGX_GetParam("PATH_INFO", req->envp),
		       FCGX_GetParam("REQUEST_URI", req->envp), &m);
	if (m.status == 404) {
		respond_error(&r, 404, "not found");
	} else if (m.status == 405) {
		respond_error(&r, 405, "method not allowed");
		r.allow = "GET, HEAD";
	} else {
		dispatch(w, &m, &r);
	}
	/* Counted before the answer leaves, so a scrape that follows it sees it. */
	int64_t us = clock_now_us() - t0;
	scoreboard_request(w->sb_slot, m.route, r.status, us);
	write_response(req, &r, m.head);
	free(r.body);
	log_request(w, m.route, r.status, us);
}

/* Wait until fd is readable; false on timeout or error, and, when idle is
 * set (a kept-alive connection between requests), on a stop request. A
 * connection just accepted is always served: dropping it would turn a
 * graceful stop or reload into 502s at the web server. */
static bool wait_readable(struct worker *w, int fd, int timeout_ms, bool idle)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t deadline = clock_now_ms() + timeout_ms;

	for (;;) {
		if (idle && atomic_load(&w->stopping))
			return false;
		int left = (int)(deadline - clock_now_ms());
		if (left <= 0)
			return false;
		int rc = poll(&p, 1, left);
		if (rc > 0)
			return true;
		if (rc == 0 || errno != EINTR)
			return false;
	}
}

/* Accept one allowed connection; -1 when stopping. */
static int accept_connection(struct worker *w)
{
	for (;;) {
		if (atomic_load(&w->stopping))
			return -1;
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		int fd = accept4(w->listen_fd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
				log_warn("accept failed");
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				poll(NULL, 0, 10); /* let descriptors free up instead of spinning */
			continue;
		}
		if (peer_allowed(w->allow, (struct sockaddr *)&sa, len))
			return fd;
		close(fd);
	}
}

static void set_io_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = FIRST_RECORD_TIMEOUT_MS / 1000 };

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Get the next request: on the kept-alive connection if there is one, else on
 * a newly accepted connection. 0 when req holds a request. */
static int next_request(struct request_thread *t, FCGX_Request *req)
{
	struct worker *w = t->w;

	for (;;) {
		atomic_store(&t->state, THREAD_IDLE);
		if (req->ipcFd >= 0) {
			if (!wait_readable(w, req->ipcFd, KEEPALIVE_IDLE_TIMEOUT_MS, true)) {
				FCGX_Free(req, 1);
				continue;
			}
		} else {
			int fd = accept_connection(w);
			if (fd < 0)
				return -1;
			set_io_timeouts(fd);
			req->ipcFd = fd;
		}
		atomic_store(&t->state, THREAD_BUSY);
		if (!wait_readable(w, req->ipcFd, FIRST_RECORD_TIMEOUT_MS, false)) {
			FCGX_Free(req, 1);
			continue;
		}
		/* Keep libfcgi from closing the fd we just gave it (FCGX_Accept_r
		 * first finishes the previous request, closing unless kept). */
		req->keepConnection = 1;
		if (FCGX_Accept_r(req) == 0)
			return 0;
	}
}

/* libfcgi closes a connection by half-closing it and then waiting (up to 2 s)
 * for the web server to close its side, so that unread input cannot make our
 * close() send a RST that would destroy the response. When we have read the
 * request's input to its end there is nothing left to cause a RST, and a plain
 * close() is safe; libfcgi takes that path for a "detached" request. */
static void finish_request(FCGX_Request *req)
{
	char buf[4096];
	size_t drained = 0;
	int n;

	while (drained < DRAIN_MAX_BYTES && (n = FCGX_GetStr(buf, sizeof(buf), req->in)) > 0)
		drained += (size_t)n;
	if (FCGX_HasSeenEOF(req->in) && !FCGX_GetError(req->in))
		req->detached = 1;
	FCGX_Finish_r(req);
	req->detached = 0;
}

static void note_request_done(struct worker *w)
{
	long n = atomic_fetch_add(&w->requests, 1) + 1;

	if (w->cfg->max_requests > 0 && n == w->cfg->max_requests) {
		log_info("worker recycling requests=%ld", n);
		pthread_kill(w->main_tid, SIGUSR1);
	}
}

static void *request_thread_main(void *arg)
{
	struct request_thread *t = arg;
	FCGX_Request req;

	/* listen_sock -1: libfcgi must never accept by itself (after a bad first
	 * record it would otherwise block in accept() where we cannot wake it). */
	FCGX_InitRequest(&req, -1, FCGI_FAIL_ACCEPT_ON_INTR);
	while (next_request(t, &req) == 0) {
		handle_request(t->w, &req);
		finish_request(&req);
		note_request_done(t->w);
	}
	FCGX_Free(&req, 1);
	atomic_store(&t->state, THREAD_DONE);
	return NULL;
}

static void install_signals(void)
{
	struct sigaction kick = { .sa_handler = on_kick }; /* no SA_RESTART: EINTR wanted */
	struct sigaction flag = { .sa_handler = on_flag_signal };
	struct sigaction ign = { .sa_handler = SIG_IGN };

	sigemptyset(&kick.sa_mask);
	sigemptyset(&flag.sa_mask);
	sigemptyset(&ign.sa_mask);
	sigaction(SIGUSR2, &kick, NULL);
	/* Ours before FCGX_Init, which installs its own only where the
	 * disposition is still the default. */
	sigaction(SIGTERM, &flag, NULL);
	sigaction(SIGUSR1, &flag, NULL);
	sigaction(SIGPIPE, &ign, NULL);
	sigaction(SIGHUP, &ign, NULL);
}

static void signal_set_stop(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGQUIT);
	sigaddset(set, SIGUSR1);
}

static int start_threads(struct worker *w)
{
	long n = w->cfg->worker_threads;

	w->threads = calloc((size_t)n, sizeof(*w->threads));
	if (!w->threads)
		abort();
	for (w->nthreads = 0; w->nthreads < n; w->nthreads++) {
		struct request_thread *t = &w->threads[w->nthreads];
		t->w = w;
		atomic_store(&t->state, THREAD_IDLE);
		if (pthread_create(&t->tid, NULL, request_thread_main, t)) {
			log_errorx("cannot start request thread index=%ld", w->nthreads);
			return -1;
		}
	}
	return 0;
}

/* Tell idle threads to leave accept()/poll(); busy ones finish their request. */
static void stop_threads(struct worker *w)
{
	long n = w->nthreads;
	bool all_done;

	atomic_store(&w->stopping, true);
	FCGX_ShutdownPending();
	do {
		all_done = true;
		for (long i = 0; i < n; i++) {
			int st = atomic_load(&w->threads[i].state);
			if (st == THREAD_IDLE)
				pthread_kill(w->threads[i].tid, SIGUSR2);
			if (st != THREAD_DONE)
				all_done = false;
		}
		if (!all_done)
			poll(NULL, 0, STOP_KICK_INTERVAL_MS);
	} while (!all_done);
	for (long i = 0; i < n; i++)
		pthread_join(w->threads[i].tid, NULL);
	free(w->threads);
}

static void wait_for_stop(void)
{
	sigset_t set;
	int sig;

	signal_set_stop(&set);
	do {
		sig = sigwaitinfo(&set, NULL);
	} while (sig < 0 && errno == EINTR);
}

static void become_worker(const struct config *cfg)
{
	sigset_t set;

	/* If the master is killed outright, do not serve on as an orphan. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	install_signals();
	signal_set_stop(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* libfcgi reads its allow-list from the environment in FCGX_Init; we
	 * filter peers ourselves, so it must not filter (IPv4 only) as well. */
	unsetenv("FCGI_WEB_SERVER_ADDRS");
	(void)cfg;
}

/* The pool starts empty: no connection is opened until a request needs one. */
static int db_init_worker(struct worker *w)
{
	char err[256];

	w->db_params = pgconn_params_new(w->cfg->database_url, err, sizeof(err));
	if (!w->db_params) {
		log_errorx("DATABASE_URL unusable: %s", err);
		return -1;
	}
	w->pool = pool_create(w->cfg, pgconn_connector(), w->db_params);
	if (!w->pool) {
		log_errorx("cannot create the connection pool");
		pgconn_params_free(w->db_params);
		return -1;
	}
	pool_set_mirror(w->pool, &w->sb_slot->pool);
	router_enable(ROUTE_HEALTH_DB, true);
	return 0;
}

/* Only after every request thread has been joined: closes each connection
 * cleanly (PQfinish sends Terminate), so the server logs no broken client. */
static void db_stop_worker(struct worker *w)
{
	pool_destroy(w->pool);
	pgconn_params_free(w->db_params);
}

int worker_run(const struct config *cfg, int listen_fd, struct scoreboard *sb, int slot,
	       int64_t started_ms)
{
	struct worker w = { .cfg = cfg,
			    .listen_fd = listen_fd,
			    .slot = slot,
			    .sb = sb,
			    .sb_slot = &sb->slots[slot],
			    .started_ms = started_ms,
			    .main_tid = pthread_self() };
	int status = 0;

	become_worker(cfg);
	if (FCGX_Init() != 0) {
		log_errorx("FCGX_Init failed");
		return WORKER_EXIT_FATAL;
	}
	if (db_init_worker(&w) < 0)
		return WORKER_EXIT_FATAL;
	router_enable(ROUTE_METRICS, true);
	w.allow = peer_allowlist_new(cfg->fcgi_web_server_addrs);
	log_info("worker started slot=%d threads=%ld", slot, cfg->worker_threads);
	if (start_threads(&w) < 0)
		status = 1;
	else
		wait_for_stop();
	stop_threads(&w);
	db_stop_worker(&w);
	peer_allowlist_free(w.allow);
	log_info("worker stopped slot=%d requests=%ld", slot, atomic_load(&w.requests));
	return status;
}
