/* resolve: getaddrinfo on threads a caller can abandon at its deadline.
 *
 * One call's lookups share a `struct group` with their threads. The group is
 * reference-counted: one reference for the caller, one per running thread;
 * whoever lets go last frees it, so a caller that gives up at the deadline
 * simply drops its reference and the thread frees everything when glibc's
 * resolver returns (after its own timeout × attempts from resolv.conf). */
#include "resolve.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "thread.h"
#include "xalloc.h"

/* A deadline further out than this is clipped (INT64_MAX means "none"). */
#define MAX_WAIT_MS (24LL * 3600 * 1000)

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* The resolver threads of the process. A thread that has finished its
 * lookup puts itself on `finished` and is joined by the next lookup or by
 * resolve_drain(): only a join proves that glibc has also let go of the
 * thread's resolver state, which a clean exit (valgrind) needs. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a thread finished; on CLOCK_MONOTONIC */
	pthread_t *finished;
	size_t nfinished, cap;
	uint64_t started, running;
} threads = { .mu = PTHREAD_MUTEX_INITIALIZER };
static pthread_once_t threads_once = PTHREAD_ONCE_INIT;

struct job {
	struct group *group;
	char *host;
	bool done;
	bool no_thread; /* pthread_create failed: sys_errno says why */
	int rc;         /* getaddrinfo's */
	int sys_errno;  /* errno, meaningful with EAI_SYSTEM */
	struct addrinfo *res;
};

struct group {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* on CLOCK_MONOTONIC, like every deadline */
	unsigned refs;
	size_t n;
	struct job jobs[];
};

/* What became of one name. */
struct outcome {
	enum resolve_status status;
	struct resolve_addrs addrs;
	char why[128];
};

/* ---- the threads ---- */

static void threads_lock(void)
{
	pthread_mutex_lock(&threads.mu);
}

static void threads_unlock(void)
{
	pthread_mutex_unlock(&threads.mu);
}

/* A forked child has none of its parent's threads: nothing to join or count
 * (groups they held stay allocated in the child, which never waits on them). */
static void threads_forget(void)
{
	free(threads.finished);
	threads.finished = NULL;
	threads.nfinished = threads.cap = 0;
	threads.running = 0;
	threads_unlock();
}

static void threads_init(void)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&threads.cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_atfork(threads_lock, threads_unlock, threads_forget);
}

uint64_t resolve_threads_started(void)
{
	threads_lock();
	uint64_t n = threads.started;
	threads_unlock();
	return n;
}

uint64_t resolve_threads_running(void)
{
	threads_lock();
	uint64_t n = threads.running;
	threads_unlock();
	return n;
}

/* Called by a resolver thread as the last thing it does. */
static void thread_finished(void)
{
	threads_lock();
	if (threads.nfinished == threads.cap) {
		threads.cap = threads.cap ? 2 * threads.cap : 8;
		threads.finished =
		    xrealloc(threads.finished, threads.cap * sizeof *threads.finished);
	}
	threads.finished[threads.nfinished++] = pthread_self();
	threads.running--;
	pthread_cond_broadcast(&threads.cv);
	threads_unlock();
}

/* Join the threads that have finished (each is at most returning). */
static void threads_reap(void)
{
	threads_lock();
	pthread_t *list = threads.finished;
	size_t n = threads.nfinished;
	threads.finished = NULL;
	threads.nfinished = threads.cap = 0;
	threads_unlock();
	for (size_t i = 0; i < n; i++)
		pthread_join(list[i], NULL);
	free(list);
}

static struct timespec monotonic_ts(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	return ts;
}

bool resolve_drain(int64_t deadline_ms)
{
	struct timespec ts = monotonic_ts(min64(deadline_ms, clock_now_ms() + MAX_WAIT_MS));

	pthread_once(&threads_once, threads_init);
	threads_lock();
	while (threads.running > 0)
		if (pthread_cond_timedwait(&threads.cv, &threads.mu, &ts) == ETIMEDOUT)
			break;
	bool idle = threads.running == 0;
	threads_unlock();
	threads_reap();
	return idle;
}

/* ---- address lists ---- */

static void addrs_add_unique(struct resolve_addrs *a, const char *s)
{
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->addr[i], s) == 0)
			return;
	xstrv_push(&a->addr, &a->n, xstrdup(s));
}

void resolve_addrs_free(struct resolve_addrs *a)
{
	xstrv_free(&a->addr, &a->n);
}

static void addrs_from(const struct addrinfo *res, struct resolve_addrs *out)
{
	char buf[NI_MAXHOST];

	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof buf, NULL, 0,
				NI_NUMERICHOST) == 0)
			addrs_add_unique(out, buf);
}

/* 0 when host is an IPv4/IPv6 literal; *res then holds it. No resolver is
 * asked: AI_NUMERICHOST never leaves the process. */
static int literal(const char *host, struct addrinfo **res)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST,
				  .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM };

	*res = NULL;
	return getaddrinfo(host, NULL, &hints, res) == 0 ? 0 : -1;
}

static bool is_literal(const char *host)
{
	struct addrinfo *res;

	if (literal(host, &res) < 0)
		return false;
	freeaddrinfo(res);
	return true;
}

/* ---- the group of lookups ---- */

static struct group *group_new(size_t n)
{
	struct group *g = xcalloc(1, sizeof *g + n * sizeof g->jobs[0]);
	pthread_condattr_t ca;

	pthread_mutex_init(&g->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g->cv, &ca);
	pthread_condattr_destroy(&ca);
	g->refs = 1; /* the caller's */
	g->n = n;
	return g;
}

static void group_release(struct group *g)
{
	pthread_mutex_lock(&g->mu);
	bool last = --g->refs == 0;
	pthread_mutex_unlock(&g->mu);
	if (!last)
		return;
	for (size_t i = 0; i < g->n; i++) {
		if (g->jobs[i].res)
			freeaddrinfo(g->jobs[i].res);
		xfree_wiped(g->jobs[i].host);
	}
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
	free(g);
}

static void *job_run(void *arg)
{
	struct job *j = arg;
	struct group *g = j->group;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;

	/* The flags libpq 15 itself resolves with. */
	int rc = getaddrinfo(j->host, NULL, &hints, &res);
	int e = errno;

	pthread_mutex_lock(&g->mu);
	j->rc = rc;
	j->sys_errno = e;
	j->res = res;
	j->done = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	group_release(g);
	/* After the release: zero running means every group is freed. */
	thread_finished();
	return NULL;
}

/* Start job i on a thread; a thread that cannot start makes the job done
 * with the reason. */
static void job_start(struct group *g, size_t i, const char *host)
{
	struct job *j = &g->jobs[i];
	pthread_t tid;

	j->group = g;
	j->host = xstrdup(host);
	pthread_mutex_lock(&g->mu);
	g->refs++;
	pthread_mutex_unlock(&g->mu);
	threads_lock();
	threads.running++;
	threads_unlock();
	int rc = thread_start(&tid, job_run, j);
	threads_lock();
	if (rc == 0)
		threads.started++;
	else
		threads.running--;
	threads_unlock();
	if (rc == 0)
		return;
	pthread_mutex_lock(&g->mu);
	g->refs--;
	j->done = true;
	j->no_thread = true;
	j->rc = EAI_SYSTEM;
	j->sys_errno = rc;
	pthread_mutex_unlock(&g->mu);
}

static bool any_usable(const struct group *g)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->jobs[i].done && g->jobs[i].rc == 0)
			return true;
	return false;
}

static bool all_done(const struct group *g)
{
	for (size_t i = 0; i < g->n; i++)
		if (!g->jobs[i].done)
			return false;
	return true;
}

/* With g->mu held: wait until every job is done or the cut-off passes. The
 * cut-off is the deadline, or RESOLVE_STRAGGLER_MS after something became
 * usable (usable_already: an entry that needs no lookup). */
static void group_wait_locked(struct group *g, bool usable_already, int64_t deadline_ms)
{
	int64_t cut = deadline_ms;
	bool usable = usable_already;

	if (usable)
		cut = min64(cut, clock_now_ms() + RESOLVE_STRAGGLER_MS);
	while (!all_done(g)) {
		if (!usable && any_usable(g)) {
			usable = true;
			cut = min64(cut, clock_now_ms() + RESOLVE_STRAGGLER_MS);
		}
		struct timespec ts = monotonic_ts(cut);
		if (pthread_cond_timedwait(&g->cv, &g->mu, &ts) == ETIMEDOUT)
			break;
	}
}

static void outcome_fill(const struct job *j, struct outcome *o)
{
	if (!j->done) {
		o->status = RESOLVE_TIMEOUT;
		snprintf(o->why, sizeof o->why, "timed out resolving host name");
	} else if (j->no_thread) {
		o->status = RESOLVE_NOT_FOUND;
		snprintf(o->why, sizeof o->why,
			 "could not resolve host name: cannot start a resolver thread: %s",
			 strerror(j->sys_errno));
	} else if (j->rc != 0) {
		o->status = RESOLVE_NOT_FOUND;
		snprintf(o->why, sizeof o->why, "could not resolve host name: %s",
			 j->rc == EAI_SYSTEM ? strerror(j->sys_errno) : gai_strerror(j->rc));
	} else {
		addrs_from(j->res, &o->addrs);
		o->status = o->addrs.n ? RESOLVE_OK : RESOLVE_NOT_FOUND;
		if (!o->addrs.n)
			snprintf(o->why, sizeof o->why,
				 "could not resolve host name: no usable address");
	}
}

/* Look up names[0..n) in parallel by the deadline; out[i] says what became
 * of names[i]. usable_already: see group_wait_locked. */
static void lookup_all(const char *const *names, size_t n, bool usable_already, int64_t deadline_ms,
		       struct outcome *out)
{
	int64_t now = clock_now_ms();

	if (deadline_ms > now + MAX_WAIT_MS)
		deadline_ms = now + MAX_WAIT_MS;
	memset(out, 0, n * sizeof *out);
	pthread_once(&threads_once, threads_init);
	threads_reap(); /* the threads of earlier lookups, abandoned or not */
	if (deadline_ms <= now) {
		for (size_t i = 0; i < n; i++) {
			out[i].status = RESOLVE_TIMEOUT;
			snprintf(out[i].why, sizeof out[i].why, "timed out resolving host name");
		}
		return;
	}
	struct group *g = group_new(n);
	for (size_t i = 0; i < n; i++)
		job_start(g, i, names[i]);
	pthread_mutex_lock(&g->mu);
	group_wait_locked(g, usable_already, deadline_ms);
	for (size_t i = 0; i < n; i++)
		outcome_fill(&g->jobs[i], &out[i]);
	pthread_mutex_unlock(&g->mu);
	group_release(g);
	threads_reap();
}

enum resolve_status resolve_host(const char *host, int64_t deadline_ms, struct resolve_addrs *out,
				 char *err, size_t errlen)
{
	struct addrinfo *res;
	struct outcome o;

	out->addr = NULL;
	out->n = 0;
	if (host[0] == '\0') {
		snprintf(err, errlen, "could not resolve host name: the name is empty");
		return RESOLVE_NOT_FOUND;
	}
	if (literal(host, &res) == 0) {
		addrs_from(res, out);
		freeaddrinfo(res);
		return RESOLVE_OK;
	}
	lookup_all(&host, 1, false, deadline_ms, &o);
	if (o.status != RESOLVE_OK)
		snprintf(err, errlen, "%s", o.why);
	*out = o.addrs;
	return o.status;
}

/* ---- libpq's comma-separated lists ---- */

/* libpq splits host, hostaddr and port at every ',' with no escapes and no
 * trimming (parse_comma_separated_list in fe-connect.c); so do we. */
struct list {
	char **item;
	size_t n;
};

static struct list list_split(const char *s)
{
	struct list l = { NULL, 0 };

	for (;;) {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		l.item = xrealloc(l.item, (l.n + 1) * sizeof *l.item);
		l.item[l.n++] = xstrndup(s, len);
		if (!comma)
			return l;
		s = comma + 1;
	}
}

static void list_free(struct list *l)
{
	for (size_t i = 0; i < l->n; i++)
		xfree_wiped(l->item[i]);
	free(l->item);
	l->item = NULL;
	l->n = 0;
}

/* A growing comma-separated list. */
struct joined {
	char *s;
	size_t len;
	size_t count;
};

static void joined_add(struct joined *j, const char *item)
{
	size_t ilen = strlen(item);

	j->s = xrealloc(j->s, j->len + ilen + 2);
	if (j->count++ > 0)
		j->s[j->len++] = ',';
	memcpy(j->s + j->len, item, ilen + 1);
	j->len += ilen;
}

/* libpq's is_unixsock_path; an empty entry means libpq's default host. */
static bool passes_through(const char *entry)
{
	return entry[0] == '\0' || entry[0] == '/' || entry[0] == '@';
}

void resolve_params_free(struct resolve_params *p)
{
	xfree_wiped(p->host);
	xfree_wiped(p->hostaddr);
	xfree_wiped(p->port);
	p->host = p->hostaddr = p->port = NULL;
	p->unresolved = 0;
}

/* The names among hosts (entries that need a lookup), in order, with
 * name_of[i] their index in names or -1. */
static size_t collect_names(const struct list *hosts, const char **names, long *name_of)
{
	size_t k = 0;

	for (size_t i = 0; i < hosts->n; i++) {
		const char *h = hosts->item[i];
		name_of[i] = -1;
		if (!passes_through(h) && !is_literal(h)) {
			name_of[i] = (long)k;
			names[k++] = h;
		}
	}
	return k;
}

/* Append entry i of hosts to the output, once per address of a name. */
static void emit_entry(const struct list *hosts, const struct list *ports, size_t i,
		       const struct outcome *o, struct joined out[3])
{
	const char *h = hosts->item[i];
	size_t times = o ? o->addrs.n : 1;

	for (size_t a = 0; a < times; a++) {
		joined_add(&out[0], h);
		joined_add(&out[1], o ? o->addrs.addr[a] : passes_through(h) ? "" : h);
		if (ports->n > 1)
			joined_add(&out[2], ports->item[i]);
	}
}

/* Build the three lists from the outcomes; the first failure's reason goes
 * to err. Returns the number of host entries written. */
static size_t build(const struct list *hosts, const struct list *ports, const long *name_of,
		    const struct outcome *outs, struct resolve_params *p, char *err, size_t errlen)
{
	struct joined out[3] = { { NULL, 0, 0 }, { NULL, 0, 0 }, { NULL, 0, 0 } };

	for (size_t i = 0; i < hosts->n; i++) {
		const struct outcome *o = name_of[i] >= 0 ? &outs[name_of[i]] : NULL;
		if (o && o->status != RESOLVE_OK) {
			if (p->unresolved++ == 0)
				snprintf(err, errlen, "%s", o->why);
			continue;
		}
		emit_entry(hosts, ports, i, o, out);
	}
	p->host = out[0].s;
	p->hostaddr = out[1].s;
	p->port = ports->n > 1 ? out[2].s : ports->n == 1 ? xstrdup(ports->item[0]) : NULL;
	return out[0].count;
}

/* Why nothing resolved: a timeout if any name ran out of time (the deadline
 * is what an operator would change), else the first name's reason. */
static enum resolve_status none_left(const struct outcome *outs, size_t k, char *err, size_t errlen)
{
	for (size_t i = 0; i < k; i++)
		if (outs[i].status == RESOLVE_TIMEOUT) {
			snprintf(err, errlen, "%s", outs[i].why);
			return RESOLVE_TIMEOUT;
		}
	snprintf(err, errlen, "%s", outs[0].why);
	return RESOLVE_NOT_FOUND;
}

/* Look up the names among hosts and build the lists; k of them are names. */
static enum resolve_status resolve_names(const struct list *hosts, const struct list *ports,
					 const char **names, const long *name_of, size_t k,
					 int64_t deadline_ms, struct resolve_params *p, char *err,
					 size_t errlen)
{
	struct outcome *outs = xcalloc(k, sizeof *outs);
	enum resolve_status st = RESOLVE_OK;

	lookup_all(names, k, k < hosts->n, deadline_ms, outs);
	if (build(hosts, ports, name_of, outs, p, err, errlen) == 0) {
		resolve_params_free(p);
		st = none_left(outs, k, err, errlen);
	}
	for (size_t i = 0; i < k; i++)
		resolve_addrs_free(&outs[i].addrs);
	free(outs);
	return st;
}

static enum resolve_status rewrite(const struct list *hosts, const struct list *ports,
				   int64_t deadline_ms, struct resolve_params *p, char *err,
				   size_t errlen)
{
	const char **names = xcalloc(hosts->n, sizeof *names);
	long *name_of = xcalloc(hosts->n, sizeof *name_of);
	enum resolve_status st = RESOLVE_OK;
	size_t k = collect_names(hosts, names, name_of);

	/* No names: libpq resolves nothing here, so leave it all alone. */
	if (k > 0)
		st = resolve_names(hosts, ports, names, name_of, k, deadline_ms, p, err, errlen);
	free(name_of);
	free(names);
	return st;
}

enum resolve_status resolve_params(const char *host, const char *hostaddr, const char *port,
				   int64_t deadline_ms, struct resolve_params *out, char *err,
				   size_t errlen)
{
	struct list hosts, ports = { NULL, 0 };
	enum resolve_status st = RESOLVE_OK;

	memset(out, 0, sizeof *out);
	if (!host || host[0] == '\0' || (hostaddr && hostaddr[0] != '\0'))
		return RESOLVE_OK;
	hosts = list_split(host);
	if (port && port[0] != '\0')
		ports = list_split(port);
	/* One port serves every host; otherwise one each (libpq's rule). */
	if (ports.n <= 1 || ports.n == hosts.n)
		st = rewrite(&hosts, &ports, deadline_ms, out, err, errlen);
	list_free(&ports);
	list_free(&hosts);
	return st;
}
