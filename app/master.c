/* master: forks and watches the workers. Signals are blocked and taken
 * synchronously with sigtimedwait(), so nothing runs inside a handler; the
 * timeout is the next due event (a backed-off respawn or the stop deadline). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "dbsource.h"
#include "dbslots.h"
#include "healthcache.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "procenv.h"
#include "scoreboard.h"
#include "worker.h"

#define MAX_SLOTS         SB_SLOTS
#define BACKOFF_FIRST_MS  100
#define BACKOFF_MAX_MS    5000
#define HEALTHY_UPTIME_MS 2000 /* a worker that lived this long did not crash-loop */

struct slot {
	pid_t pid; /* 0 when free */
	unsigned generation;
	int64_t started_ms;
	int64_t respawn_at_ms; /* >0: respawn due then (slot reserved, pid 0) */
	bool crashed;          /* the last worker here exited unexpectedly */
	long backoff_ms;
	bool stopping; /* we asked it to stop */
};

struct master {
	struct config **cfg; /* the caller's; a reload replaces *cfg */
	const struct config_source *src;
	struct listener *listener;
	struct scoreboard *sb;
	struct slot slots[MAX_SLOTS];
	unsigned generation;
	int64_t started_ms;
	bool stopping;
	int64_t stop_deadline_ms;
	int exit_status;
};

static void on_sigchld(int sig)
{
	(void)sig;
}

static void block_signals(sigset_t *set)
{
	struct sigaction sa = { .sa_handler = on_sigchld, .sa_flags = SA_NOCLDSTOP };

	/* A handler (not SIG_DFL/SIG_IGN) so that SIGCHLD is always queued. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(set);
	sigaddset(set, SIGCHLD);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGQUIT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
	sigprocmask(SIG_BLOCK, set, NULL);
}

static void unblock_signals(const sigset_t *set)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	sigemptyset(&dfl.sa_mask);
	sigaction(SIGCHLD, &dfl, NULL);
	sigprocmask(SIG_UNBLOCK, set, NULL);
}

static void spawn(struct master *m, int idx, const sigset_t *blocked)
{
	struct slot *s = &m->slots[idx];
	pid_t pid = fork();

	if (pid < 0) {
		log_error("fork failed slot=%d", idx);
		s->respawn_at_ms = clock_now_ms() + BACKOFF_MAX_MS;
		return;
	}
	if (pid == 0) {
		unblock_signals(blocked);
		_exit(worker_run(*m->cfg, m->listener->fd, m->sb, idx, m->started_ms,
				 WORKER_UNDER_MASTER));
	}
	scoreboard_worker_started(m->sb, idx, (int)pid, s->crashed);
	s->crashed = false;
	s->pid = pid;
	s->generation = m->generation;
	s->started_ms = clock_now_ms();
	s->respawn_at_ms = 0;
	s->stopping = false;
}

static int free_slot(const struct master *m)
{
	for (int i = 0; i < MAX_SLOTS; i++)
		if (m->slots[i].pid == 0 && m->slots[i].respawn_at_ms == 0)
			return i;
	return -1;
}

static void spawn_generation(struct master *m, const sigset_t *blocked)
{
	m->generation++;
	for (long i = 0; i < (*m->cfg)->workers; i++) {
		int idx = free_slot(m);
		if (idx < 0)
			break;
		m->slots[idx].backoff_ms = 0;
		m->slots[idx].crashed = false;
		spawn(m, idx, blocked);
	}
}

static void signal_children(struct master *m, int sig, bool only_old)
{
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *s = &m->slots[i];
		if (only_old && s->generation == m->generation)
			continue;
		if (s->pid > 0) {
			kill(s->pid, sig);
			s->stopping = true;
		}
		if (only_old || m->stopping)
			s->respawn_at_ms = 0;
	}
}

static void describe_exit(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "signal=%d%s", WTERMSIG(status),
			 WCOREDUMP(status) ? " core_dumped=true" : "");
	else
		snprintf(buf, len, "exit_status=%d", WEXITSTATUS(status));
}

/* Decide what follows a worker's exit: nothing, now, or after a backoff. */
static void schedule_respawn(struct slot *s, int status, int64_t lived_ms)
{
	bool crashed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	if (WIFEXITED(status) && WEXITSTATUS(status) == EX_CONFIG) {
		log_errorx("worker exited with a fatal configuration error; not respawning");
		return;
	}
	if (!crashed || lived_ms >= HEALTHY_UPTIME_MS)
		s->backoff_ms = 0;
	else
		s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_FIRST_MS;
	if (s->backoff_ms > BACKOFF_MAX_MS)
		s->backoff_ms = BACKOFF_MAX_MS;
	if (s->backoff_ms)
		log_warnx("worker crash loop: respawn delayed delay_ms=%ld", s->backoff_ms);
	s->respawn_at_ms = clock_now_ms() + s->backoff_ms;
	if (s->respawn_at_ms == 0)
		s->respawn_at_ms = 1;
}

static void reap_one(struct master *m, pid_t pid, int status)
{
	char how[64];

	describe_exit(status, how, sizeof(how));
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *s = &m->slots[i];
		if (s->pid != pid)
			continue;
		int64_t lived = clock_now_ms() - s->started_ms;
		bool expected = s->stopping || m->stopping || s->generation != m->generation;
		if (expected || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
			log_info("worker exited worker_pid=%d slot=%d %s uptime_s=%lld", (int)pid,
				 i, how, (long long)(lived / 1000));
		else
			log_warnx("worker died worker_pid=%d slot=%d %s uptime_s=%lld", (int)pid, i,
				  how, (long long)(lived / 1000));
		s->pid = 0;
		scoreboard_worker_exited(m->sb, i, status);
		long slots = dbslots_reclaim(m->sb, i);
		if (slots > 0)
			log_info("db slots reclaimed worker_pid=%d slot=%d slots=%ld", (int)pid, i,
				 slots);
		if (!expected) {
			s->crashed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
			schedule_respawn(s, status, lived);
		}
		return;
	}
}

static void reap(struct master *m)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		reap_one(m, pid, status);
}

static int live_children(const struct master *m)
{
	int n = 0;

	for (int i = 0; i < MAX_SLOTS; i++)
		n += m->slots[i].pid > 0;
	return n;
}

static bool respawns_pending(const struct master *m)
{
	for (int i = 0; i < MAX_SLOTS; i++)
		if (m->slots[i].respawn_at_ms)
			return true;
	return false;
}

static void respawn_due(struct master *m, const sigset_t *blocked)
{
	int64_t now = clock_now_ms();

	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *s = &m->slots[i];
		if (s->respawn_at_ms && s->respawn_at_ms <= now && !m->stopping)
			spawn(m, i, blocked);
	}
}

static int64_t next_event_ms(const struct master *m)
{
	int64_t next = INT64_MAX;

	for (int i = 0; i < MAX_SLOTS; i++)
		if (m->slots[i].respawn_at_ms && m->slots[i].respawn_at_ms < next)
			next = m->slots[i].respawn_at_ms;
	if (m->stopping && m->stop_deadline_ms < next)
		next = m->stop_deadline_ms;
	return next;
}

static void begin_stop(struct master *m, int sig)
{
	if (m->stopping) {
		log_warnx("second stop signal: stopping now signal=%d", sig);
		signal_children(m, SIGKILL, false);
		m->stop_deadline_ms = clock_now_ms();
		return;
	}
	log_info("stopping gracefully signal=%d timeout_ms=%ld", sig,
		 (*m->cfg)->shutdown_timeout_ms);
	m->stopping = true;
	m->stop_deadline_ms = clock_now_ms() + (*m->cfg)->shutdown_timeout_ms;
	signal_children(m, SIGTERM, false);
}

static bool same_text(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Who we run as and what the socket file looks like were settled at
 * start-up, as root; a reload cannot change them. */
static void warn_restart_only(const struct config *old, const struct config *next)
{
	if (same_text(old->run_user, next->run_user) &&
	    same_text(old->run_group, next->run_group) &&
	    same_text(old->api_socket_owner, next->api_socket_owner) &&
	    same_text(old->api_socket_group, next->api_socket_group) &&
	    old->api_socket_mode == next->api_socket_mode)
		return;
	log_warnx("RUN_USER, RUN_GROUP or the socket's API_SOCKET_OWNER, API_SOCKET_GROUP, "
		  "API_SOCKET_MODE changed: they take effect on restart");
}

/* A new configuration is built beside the running one and replaces it only
 * when valid; the old one is destroyed then (no worker of this process
 * reads it: each has its own copy since fork). */
static void reload(struct master *m, const sigset_t *blocked)
{
	struct config *next = config_new();
	struct problems p = { 0 };

	log_info("reloading configuration");
	if (config_load(next, m->src, &p) < 0) {
		for (size_t i = 0; i < p.n; i++)
			log_errorx("reload refused: %s", p.lines[i]);
		log_errorx("reload refused: keeping the running configuration problems=%zu", p.n);
		problems_free(&p);
		config_destroy(next);
		return;
	}
	problems_free(&p);
	/* As at start-up (which also wiped the strings the process started
	 * with), before the new workers fork. The configuration reads a private
	 * copy of the environment and never exports what it reads, so this
	 * finds something only if a library has called setenv() since. */
	(void)procenv_scrub_all(NULL, dbsource_secret_vars);
	warn_restart_only(*m->cfg, next);
	config_destroy(*m->cfg);
	*m->cfg = next;
	log_init(next->log_level, next->log_format);
	/* The old generation keeps what it holds; the new one reserves against
	 * the new bound, so together they never exceed it (DESIGN.md §1). A check
	 * of the old configuration's database says nothing of the new one. */
	dbslots_set_bound(m->sb, config_db_bound(next));
	healthcache_clear(m->sb);
	spawn_generation(m, blocked);
	signal_children(m, SIGTERM, true);
	log_info("reloaded workers=%ld", next->workers);
}

/* A worker that reached MAX_REQUESTS says so (SIGUSR1) before it stops
 * accepting: its replacement starts now, not once it has exited. Its exit
 * can wait for the requests it still serves and for a database connect in
 * flight (up to DB_CONNECT_TIMEOUT_MS); with every worker retiring at once
 * nobody would accept meanwhile, and the web server would time out. The
 * retiring worker keeps its database slots until it exits: the bound holds
 * for both together, as during a reload. */
static void replace_retiring(struct master *m, pid_t pid, const sigset_t *blocked)
{
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *s = &m->slots[i];
		if (s->pid != pid || pid <= 0 || s->stopping || s->generation != m->generation)
			continue;
		int idx = free_slot(m);
		if (idx < 0)
			return; /* no room: it is respawned when it exits, as before */
		s->stopping = true;
		m->slots[idx].backoff_ms = 0;
		m->slots[idx].crashed = false;
		spawn(m, idx, blocked);
		log_info("worker retiring: replacement started worker_pid=%d slot=%d new_slot=%d",
			 (int)pid, i, idx);
		return;
	}
}

static void handle_signal(struct master *m, int sig, const siginfo_t *info, const sigset_t *blocked)
{
	switch (sig) {
	case SIGCHLD: reap(m); break;
	case SIGUSR1:
		if (!m->stopping)
			replace_retiring(m, info->si_pid, blocked);
		break;
	case SIGHUP:
		if (!m->stopping)
			reload(m, blocked);
		break;
	case SIGTERM:
	case SIGINT:
	case SIGQUIT: begin_stop(m, sig); break;
	default: break;
	}
}

static void wait_signal(struct master *m, const sigset_t *set)
{
	int64_t next = next_event_ms(m);
	struct timespec ts = { .tv_sec = 3600 };
	siginfo_t info;

	if (next != INT64_MAX) {
		int64_t left = next - clock_now_ms();
		if (left < 0)
			left = 0;
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
	}
	int sig = sigtimedwait(set, &info, &ts);
	if (sig > 0)
		handle_signal(m, sig, &info, set);
	reap(m); /* SIGCHLDs coalesce: always look for more */
}

static void enforce_stop_deadline(struct master *m)
{
	if (!m->stopping || clock_now_ms() < m->stop_deadline_ms || live_children(m) == 0)
		return;
	log_warnx("workers did not stop in time: killing remaining=%d", live_children(m));
	signal_children(m, SIGKILL, false);
	m->stop_deadline_ms = INT64_MAX;
}

int master_run(struct config **cfg, const struct config_source *src, struct listener *l)
{
	struct master m = { .cfg = cfg, .src = src, .listener = l, .started_ms = clock_now_ms() };
	sigset_t set;

	m.sb = scoreboard_init_master();
	if (!m.sb) {
		log_error("cannot map the scoreboard");
		return EXIT_FAILURE;
	}
	if (dbslots_init_master(m.sb, config_db_bound(*cfg)) < 0) {
		log_error("cannot set up the connection bound's lock");
		scoreboard_free(m.sb);
		return EXIT_FAILURE;
	}
	block_signals(&set);
	spawn_generation(&m, &set);
	while (!(m.stopping && live_children(&m) == 0)) {
		wait_signal(&m, &set);
		respawn_due(&m, &set);
		enforce_stop_deadline(&m);
		if (!m.stopping && live_children(&m) == 0 && !respawns_pending(&m)) {
			log_errorx("no worker can run: stopping");
			m.exit_status = EX_CONFIG;
			m.stopping = true;
		}
	}
	if (listen_close(l, true) < 0)
		log_warn("cannot remove the socket file path=\"%s\"", l->unix_path);
	scoreboard_free(m.sb);
	log_info("stopped");
	return m.exit_status;
}
