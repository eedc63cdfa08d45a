/* Unit tests of app/resolve.c: literals, /etc/hosts names, libpq's list
 * rewrite (checked against a real PQconnectStartParams), and, in a private
 * mount+network namespace with a DNS server of our own on 127.0.0.1:53, names
 * that do not exist and a resolver that never answers. Each namespace test
 * runs in a child process that waits for its abandoned lookups to finish
 * before it exits, so valgrind and LeakSanitizer check that they free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <resolv.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "resolve.h"
#include "xalloc.h"

#define EXIT_SKIP 77
/* A deadline held means returning within this much after it (loaded machine,
 * valgrind). */
#define MARGIN_MS 300

/* Wait (bounded) until no resolver thread is left. */
static bool wait_idle(int64_t ms)
{
	return resolve_drain(clock_now_ms() + ms);
}

/* ---- resolve_host ---- */

static void ipv4_literal_answers_without_thread(void **state)
{
	(void)state;
	struct resolve_addrs a;
	char err[128] = "";
	uint64_t started = resolve_threads_started();

	assert_int_equal(resolve_host("192.0.2.1", clock_now_ms() + 1000, &a, err, sizeof err),
			 RESOLVE_OK);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.addr[0], "192.0.2.1");
	assert_int_equal(resolve_threads_started(), started);
	resolve_addrs_free(&a);
}

static void ipv6_literal_answers_without_thread(void **state)
{
	(void)state;
	struct resolve_addrs a;
	char err[128] = "";
	uint64_t started = resolve_threads_started();

	assert_int_equal(resolve_host("2001:DB8::1", clock_now_ms() + 1000, &a, err, sizeof err),
			 RESOLVE_OK);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.addr[0], "2001:db8::1");
	resolve_addrs_free(&a);
	/* Even with the deadline gone: a literal needs no time. */
	assert_int_equal(resolve_host("::1", clock_now_ms() - 1, &a, err, sizeof err), RESOLVE_OK);
	assert_string_equal(a.addr[0], "::1");
	resolve_addrs_free(&a);
	assert_int_equal(resolve_threads_started(), started);
}

static void empty_name_is_not_found(void **state)
{
	(void)state;
	struct resolve_addrs a;
	char err[128] = "";

	assert_int_equal(resolve_host("", clock_now_ms() + 1000, &a, err, sizeof err),
			 RESOLVE_NOT_FOUND);
	assert_non_null(strstr(err, "could not resolve host name"));
	assert_int_equal(a.n, 0);
}

static void passed_deadline_times_out_without_thread(void **state)
{
	(void)state;
	struct resolve_addrs a;
	char err[128] = "";
	uint64_t started = resolve_threads_started();

	assert_int_equal(resolve_host("localhost", clock_now_ms() - 1, &a, err, sizeof err),
			 RESOLVE_TIMEOUT);
	assert_string_equal(err, "timed out resolving host name");
	assert_int_equal(a.n, 0);
	assert_int_equal(resolve_threads_started(), started);
}

static void localhost_resolves_from_etc_hosts(void **state)
{
	(void)state;
	struct resolve_addrs a;
	char err[128] = "";
	uint64_t started = resolve_threads_started();

	assert_int_equal(resolve_host("localhost", clock_now_ms() + 3000, &a, err, sizeof err),
			 RESOLVE_OK);
	assert_true(a.n >= 1 && a.n <= 2);
	for (size_t i = 0; i < a.n; i++)
		assert_true(strcmp(a.addr[i], "127.0.0.1") == 0 || strcmp(a.addr[i], "::1") == 0);
	assert_int_equal(resolve_threads_started(), started + 1);
	resolve_addrs_free(&a);
	assert_true(wait_idle(3000));
}

/* ---- resolve_params ---- */

struct untouched_case {
	const char *host, *hostaddr, *port;
};

static void params_left_alone_when_libpq_resolves_nothing(void **state)
{
	(void)state;
	static const struct untouched_case cases[] = {
		{ NULL, NULL, "5432" },                        /* no host: libpq's default */
		{ "", NULL, NULL },                            /* the same */
		{ "localhost", "127.0.0.1", NULL },            /* the operator's hostaddr wins */
		{ "/run/postgresql,@abstract", NULL, "5432" }, /* unix sockets only */
		{ "192.0.2.1,2001:db8::5", NULL, "1,2" },      /* literals only */
		{ "localhost,localhost", NULL, "1,2,3" },      /* libpq reports the mismatch */
	};
	uint64_t started = resolve_threads_started();

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct resolve_params p;
		char err[128] = "";
		assert_int_equal(resolve_params(cases[i].host, cases[i].hostaddr, cases[i].port,
						clock_now_ms() + 1000, &p, err, sizeof err),
				 RESOLVE_OK);
		assert_null(p.host);
		assert_null(p.hostaddr);
		assert_null(p.port);
		assert_string_equal(err, "");
	}
	assert_int_equal(resolve_threads_started(), started);
}

/* Comma-joined text of the strings in v. */
static char *join(const char *const *v, size_t n)
{
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]) + 1;
	char *s = xcalloc(1, len);
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(s, ",");
		strcat(s, v[i]);
	}
	return s;
}

/* A list with one entry per address of localhost (whatever /etc/hosts says)
 * and the rest as they are. */
struct expect {
	const char *v[3][16];
	size_t n;
};

static void expect_add(struct expect *e, const char *host, const char *hostaddr, const char *port)
{
	e->v[0][e->n] = host;
	e->v[1][e->n] = hostaddr;
	e->v[2][e->n] = port;
	e->n++;
}

static void expect_localhost(struct expect *e, const struct resolve_addrs *a, const char *port)
{
	for (size_t i = 0; i < a->n; i++)
		expect_add(e, "localhost", a->addr[i], port);
}

static void assert_lists(const struct resolve_params *p, const struct expect *e, bool ports)
{
	char *host = join(e->v[0], e->n), *hostaddr = join(e->v[1], e->n);
	char *port = join(e->v[2], e->n);

	assert_string_equal(p->host, host);
	assert_string_equal(p->hostaddr, hostaddr);
	if (ports)
		assert_string_equal(p->port, port);
	free(host);
	free(hostaddr);
	free(port);
}

static void params_expand_names_keep_sockets_and_literals(void **state)
{
	(void)state;
	struct resolve_addrs lh;
	struct resolve_params p;
	struct expect e = { .n = 0 };
	char err[128] = "";

	assert_int_equal(resolve_host("localhost", clock_now_ms() + 3000, &lh, err, sizeof err),
			 RESOLVE_OK);
	assert_int_equal(resolve_params("localhost,/run/pg,192.0.2.7,localhost,@abs,", NULL,
					"1,2,3,4,5,6", clock_now_ms() + 3000, &p, err, sizeof err),
			 RESOLVE_OK);
	expect_localhost(&e, &lh, "1");
	expect_add(&e, "/run/pg", "", "2");
	expect_add(&e, "192.0.2.7", "192.0.2.7", "3");
	expect_localhost(&e, &lh, "4");
	expect_add(&e, "@abs", "", "5");
	expect_add(&e, "", "", "6");
	assert_lists(&p, &e, true);
	assert_int_equal(p.unresolved, 0);
	resolve_params_free(&p);
	resolve_addrs_free(&lh);
	assert_true(wait_idle(3000));
}

static void params_single_port_stays_single_and_none_stays_none(void **state)
{
	(void)state;
	struct resolve_params p;
	char err[128] = "";

	assert_int_equal(resolve_params("localhost,192.0.2.7", NULL, "6543", clock_now_ms() + 3000,
					&p, err, sizeof err),
			 RESOLVE_OK);
	assert_string_equal(p.port, "6543");
	assert_non_null(strstr(p.hostaddr, ",192.0.2.7"));
	resolve_params_free(&p);
	assert_int_equal(
	    resolve_params("localhost", NULL, NULL, clock_now_ms() + 3000, &p, err, sizeof err),
	    RESOLVE_OK);
	assert_non_null(p.host);
	assert_null(p.port);
	resolve_params_free(&p);
	assert_true(wait_idle(3000));
}

/* ---- what libpq makes of the rewrite ---- */

struct listener {
	int fd;
	char dir[64];  /* for a unix socket: its directory */
	char port[16]; /* TCP port, or the number in the socket's name */
};

static void listen_unix(struct listener *l)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(l->dir, sizeof l->dir, "/tmp/neonfcgi-resolve-XXXXXX");
	assert_non_null(mkdtemp(l->dir));
	snprintf(l->port, sizeof l->port, "5999");
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s/.s.PGSQL.%s", l->dir, l->port);
	l->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(l->fd >= 0);
	assert_int_equal(bind(l->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(l->fd, 4), 0);
}

static void listen_tcp(struct listener *l)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;

	l->dir[0] = '\0';
	l->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(l->fd >= 0);
	assert_int_equal(bind(l->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(l->fd, 4), 0);
	assert_int_equal(getsockname(l->fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(l->port, sizeof l->port, "%d", ntohs(sa.sin_port));
}

static void listener_close(struct listener *l)
{
	char path[128];

	close(l->fd);
	if (l->dir[0]) {
		snprintf(path, sizeof path, "%s/.s.PGSQL.%s", l->dir, l->port);
		unlink(path);
		rmdir(l->dir);
	}
}

/* Drive a libpq connect until l accepts it (bounded); false if libpq gives up. */
static bool libpq_reaches(PGconn *c, const struct listener *l)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int64_t end = clock_now_ms() + 3000;

	while (clock_now_ms() < end) {
		struct pollfd p[2] = {
			{ .fd = l->fd, .events = POLLIN },
			{ .fd = PQsocket(c),
			  .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT },
		};
		nfds_t n = p[1].fd >= 0 ? 2 : 1;
		if (poll(p, n, 100) < 0)
			return false;
		if (p[0].revents & POLLIN) {
			int fd = accept(l->fd, NULL, NULL);
			if (fd >= 0)
				close(fd);
			return fd >= 0;
		}
		if (n == 2 && p[1].revents && (st = PQconnectPoll(c)) == PGRES_POLLING_FAILED)
			return false;
	}
	return false;
}

static PGconn *libpq_start(const struct resolve_params *p)
{
	const char *const kw[] = { "host",   "hostaddr", "port",       "user",
				   "dbname", "sslmode",  "gssencmode", NULL };
	const char *const val[] = { p->host, p->hostaddr, p->port,   "u",
				    "d",     "disable",   "disable", NULL };
	PGconn *c = PQconnectStartParams(kw, val, 0);

	assert_non_null(c);
	assert_int_not_equal(PQstatus(c), CONNECTION_BAD); /* the lists line up */
	return c;
}

/* An empty hostaddr entry next to a unix-socket host is libpq's "use host":
 * the first entry (an empty directory) fails, the second is reached. */
static void libpq_takes_empty_hostaddr_for_unix_socket(void **state)
{
	(void)state;
	struct listener empty, sock, tcp;
	struct resolve_params p;
	char host[256], port[64], err[128] = "";

	listen_unix(&empty);
	listener_close(&empty); /* leaves nothing at its path */
	listen_unix(&sock);
	listen_tcp(&tcp);
	snprintf(host, sizeof host, "%s,%s,localhost", empty.dir, sock.dir);
	snprintf(port, sizeof port, "%s,%s,%s", empty.port, sock.port, tcp.port);
	assert_int_equal(
	    resolve_params(host, NULL, port, clock_now_ms() + 3000, &p, err, sizeof err),
	    RESOLVE_OK);
	assert_true(strncmp(p.hostaddr, ",,", 2) == 0);
	PGconn *c = libpq_start(&p);
	assert_true(libpq_reaches(c, &sock));
	PQfinish(c);
	resolve_params_free(&p);
	listener_close(&sock);
	listener_close(&tcp);
	assert_true(wait_idle(3000));
}

/* libpq connects to the hostaddr we found and still knows the name (which is
 * what SNI and verify-full use). */
static void libpq_connects_to_hostaddr_and_keeps_the_name(void **state)
{
	(void)state;
	struct listener empty, tcp;
	struct resolve_params p;
	char host[256], port[64], err[128] = "";

	listen_unix(&empty);
	listener_close(&empty);
	listen_tcp(&tcp);
	snprintf(host, sizeof host, "%s,localhost", empty.dir);
	snprintf(port, sizeof port, "%s,%s", empty.port, tcp.port);
	assert_int_equal(
	    resolve_params(host, NULL, port, clock_now_ms() + 3000, &p, err, sizeof err),
	    RESOLVE_OK);
	PGconn *c = libpq_start(&p);
	/* localhost may come first as ::1, where nothing listens: libpq then
	 * goes on to 127.0.0.1 as it would with its own lookup. */
	assert_true(libpq_reaches(c, &tcp));
	assert_string_equal(PQhost(c), "localhost");
	assert_non_null(strstr(PQhostaddr(c), "127.0.0.1"));
	PQfinish(c);
	resolve_params_free(&p);
	listener_close(&tcp);
	assert_true(wait_idle(3000));
}

/* ---- in a namespace with our own DNS server ---- */

/* Outside assertions (cmocka's longjmp must not run in the child). */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)

/* lo <= v <= hi, saying v when it is not. */
#define CHECK_WITHIN(v, lo, hi)                                                                    \
	do {                                                                                       \
		if ((v) < (lo) || (v) > (hi)) {                                                    \
			fprintf(stderr, "%s:%d: %s = %lld, not within [%lld, %lld]\n", __FILE__,   \
				__LINE__, #v, (long long)(v), (long long)(lo), (long long)(hi));   \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)

enum dns_mode { DNS_NXDOMAIN, DNS_SILENT };

struct dns_server {
	int fd;
	int stop[2];
	enum dns_mode mode;
	pthread_t tid;
};

/* Turn query q (len bytes) into an NXDOMAIN answer with the same question;
 * its length, or 0 if q is not a query we understand. */
static size_t nxdomain(unsigned char *q, size_t len)
{
	size_t i = 12;

	if (len < i)
		return 0;
	while (i < len && q[i] != 0)
		i += (size_t)q[i] + 1;
	i += 1 + 4; /* the root label, QTYPE, QCLASS */
	if (i > len)
		return 0;
	q[2] = (unsigned char)(0x80 | (q[2] & 0x79)); /* QR; opcode and RD kept */
	q[3] = 0x80 | 3;                              /* RA; RCODE NXDOMAIN */
	memset(q + 6, 0, 6);                          /* no answer, authority, additional */
	return i;
}

static void *dns_serve(void *arg)
{
	struct dns_server *s = arg;
	unsigned char buf[1500];

	for (;;) {
		struct pollfd p[2] = { { .fd = s->fd, .events = POLLIN },
				       { .fd = s->stop[0], .events = POLLIN } };
		if (poll(p, 2, -1) < 0 || p[1].revents)
			return NULL;
		struct sockaddr_storage from;
		socklen_t flen = sizeof from;
		ssize_t n = recvfrom(s->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
		if (n <= 0 || s->mode == DNS_SILENT)
			continue; /* read and never answer */
		size_t out = nxdomain(buf, (size_t)n);
		if (out)
			sendto(s->fd, buf, out, 0, (struct sockaddr *)&from, flen);
	}
}

static int dns_start(struct dns_server *s, enum dns_mode mode)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(53),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	s->mode = mode;
	s->fd = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(s->fd >= 0);
	CHECK(bind(s->fd, (struct sockaddr *)&sa, sizeof sa) == 0);
	CHECK(pipe(s->stop) == 0);
	CHECK(pthread_create(&s->tid, NULL, dns_serve, s) == 0);
	return 0;
}

static void dns_stop(struct dns_server *s)
{
	(void)!write(s->stop[1], "x", 1);
	pthread_join(s->tid, NULL);
	close(s->stop[0]);
	close(s->stop[1]);
	close(s->fd);
}

/* Bind-mount a file with content over target, in this mount namespace only. */
static int bind_file(const char *target, const char *content)
{
	char path[] = "/tmp/neonfcgi-resolve-XXXXXX";
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	ssize_t n = write(fd, content, strlen(content));
	close(fd);
	int rc = n == (ssize_t)strlen(content) ? mount(path, target, "none", MS_BIND, NULL) : -1;
	unlink(path);
	CHECK(rc == 0);
	return 0;
}

static int loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	CHECK(fd >= 0);
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
	ifr.ifr_flags |= IFF_UP;
	if (rc == 0)
		rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
	close(fd);
	CHECK(rc == 0);
	return 0;
}

/* glibc (2.26+) rereads resolv.conf, nsswitch.conf and hosts when they change;
 * res_init() makes sure for this thread. The names of the tests are in no
 * hosts file. With attempts:1 glibc gives up on a silent server after
 * timeout_s, which ends an abandoned lookup soon. */
static int enter_namespace(int timeout_s)
{
	char conf[128];

	snprintf(conf, sizeof conf, "nameserver 127.0.0.1\noptions timeout:%d attempts:1\n",
		 timeout_s);
	if (unshare(CLONE_NEWNS | CLONE_NEWNET) != 0)
		return EXIT_SKIP; /* not root, or no namespaces here */
	CHECK(mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == 0);
	if (bind_file("/etc/resolv.conf", conf) ||
	    bind_file("/etc/nsswitch.conf", "hosts: files dns\n") ||
	    bind_file("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"
				    "127.0.0.1 twice.test\n127.0.0.1 twice.test\n") ||
	    loopback_up())
		return 1;
	res_init();
	return 0;
}

static int child_main(enum dns_mode mode, int timeout_s, int (*fn)(void))
{
	struct dns_server dns;

	alarm(30); /* the last resort if something here hangs */
	int rc = enter_namespace(timeout_s);
	if (rc != 0)
		return rc;
	if (dns_start(&dns, mode) != 0)
		return 1;
	rc = fn();
	/* The lookups fn abandoned end within glibc's own timeout and free. */
	if (!wait_idle(10000)) {
		fprintf(stderr, "an abandoned lookup did not finish\n");
		rc = 1;
	}
	dns_stop(&dns);
	return rc;
}

/* Run fn in a child process in its own namespaces with a DNS server in mode
 * and glibc's resolver timeout set to timeout_s;
 * the child exits normally, so its leak check (valgrind, LSan) runs. */
static void in_namespace(enum dns_mode mode, int timeout_s, int (*fn)(void))
{
	int st;

	/* Fork with no lookup in flight: a thread inside getaddrinfo may hold
	 * one of glibc's locks, which the child would inherit held. */
	assert_true(wait_idle(5000));
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		exit(child_main(mode, timeout_s, fn));
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_SKIP)
		skip();
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static int child_missing_name_is_not_found(void)
{
	struct resolve_addrs a;
	char err[128] = "";
	int64_t t0 = clock_now_ms();

	CHECK(resolve_host("missing.invalid", t0 + 3000, &a, err, sizeof err) == RESOLVE_NOT_FOUND);
	CHECK(clock_now_ms() - t0 < 3000);
	CHECK(strncmp(err, "could not resolve host name: ", 29) == 0);
	CHECK(a.n == 0 && a.addr == NULL);
	return 0;
}

static void missing_name_is_not_found(void **state)
{
	(void)state;
	in_namespace(DNS_NXDOMAIN, 1, child_missing_name_is_not_found);
}

static int child_params_keep_what_resolved(void)
{
	struct resolve_params p;
	char err[128] = "";

	CHECK(resolve_params("missing.invalid,localhost,other.invalid", NULL, "1,2,3",
			     clock_now_ms() + 3000, &p, err, sizeof err) == RESOLVE_OK);
	CHECK(p.unresolved == 2);
	CHECK(strncmp(err, "could not resolve host name: ", 29) == 0);
	CHECK(strcmp(p.host, "localhost,localhost") == 0);
	CHECK(strcmp(p.hostaddr, "127.0.0.1,::1") == 0 || strcmp(p.hostaddr, "::1,127.0.0.1") == 0);
	CHECK(strcmp(p.port, "2,2") == 0);
	resolve_params_free(&p);
	/* A name listed twice in /etc/hosts is one address. */
	CHECK(resolve_params("twice.test", NULL, NULL, clock_now_ms() + 3000, &p, err,
			     sizeof err) == RESOLVE_OK);
	CHECK(strcmp(p.host, "twice.test") == 0 && strcmp(p.hostaddr, "127.0.0.1") == 0);
	resolve_params_free(&p);
	return 0;
}

static void params_keep_what_resolved(void **state)
{
	(void)state;
	in_namespace(DNS_NXDOMAIN, 1, child_params_keep_what_resolved);
}

static int child_params_fail_when_nothing_resolves(void)
{
	struct resolve_params p;
	char err[128] = "";

	CHECK(resolve_params("missing.invalid,other.invalid", NULL, "1,2", clock_now_ms() + 3000,
			     &p, err, sizeof err) == RESOLVE_NOT_FOUND);
	CHECK(strncmp(err, "could not resolve host name: ", 29) == 0);
	CHECK(!p.host && !p.hostaddr && !p.port);
	return 0;
}

static void params_fail_when_nothing_resolves(void **state)
{
	(void)state;
	in_namespace(DNS_NXDOMAIN, 1, child_params_fail_when_nothing_resolves);
}

/* The regression test of the hang: a resolver that never answers costs the
 * deadline and no more. */
static int child_silent_resolver_costs_the_deadline(void)
{
	struct resolve_addrs a;
	char err[128] = "";
	uint64_t started = resolve_threads_started();
	int64_t t0 = clock_now_ms();

	CHECK(resolve_host("silent.invalid", t0 + 500, &a, err, sizeof err) == RESOLVE_TIMEOUT);
	int64_t took = clock_now_ms() - t0;
	CHECK_WITHIN(took, 500, 500 + MARGIN_MS);
	CHECK(strcmp(err, "timed out resolving host name") == 0);
	CHECK(a.n == 0);
	CHECK(resolve_threads_started() == started + 1);
	CHECK(resolve_threads_running() == 1); /* abandoned, still asking */
	return 0;
}

static void silent_resolver_costs_the_deadline(void **state)
{
	(void)state;
	in_namespace(DNS_SILENT, 1, child_silent_resolver_costs_the_deadline);
}

static int child_silent_params_time_out(void)
{
	struct resolve_params p;
	char err[128] = "";
	int64_t t0 = clock_now_ms();

	CHECK(resolve_params("silent.invalid,quiet.invalid", NULL, "1,2", t0 + 400, &p, err,
			     sizeof err) == RESOLVE_TIMEOUT);
	int64_t took = clock_now_ms() - t0;
	CHECK_WITHIN(took, 400, 400 + MARGIN_MS);
	CHECK(strcmp(err, "timed out resolving host name") == 0);
	CHECK(!p.host && !p.hostaddr && !p.port);
	return 0;
}

static void silent_params_time_out(void **state)
{
	(void)state;
	in_namespace(DNS_SILENT, 1, child_silent_params_time_out);
}

/* Once localhost has answered, the silent name gets RESOLVE_STRAGGLER_MS, not
 * the whole deadline, and is left out. */
static int child_silent_name_does_not_hold_up_the_rest(void)
{
	struct resolve_params p;
	struct resolve_addrs warm;
	char err[128] = "";

	/* The first lookup loads glibc's NSS modules (slow under valgrind);
	 * the timing below is about the cut-off, not that. */
	CHECK(resolve_host("localhost", clock_now_ms() + 3000, &warm, err, sizeof err) ==
	      RESOLVE_OK);
	resolve_addrs_free(&warm);
	int64_t t0 = clock_now_ms();
	CHECK(resolve_params("silent.invalid,localhost", NULL, "1,2", t0 + 5000, &p, err,
			     sizeof err) == RESOLVE_OK);
	int64_t took = clock_now_ms() - t0;
	/* Our cut-off is RESOLVE_STRAGGLER_MS after localhost answered, which
	 * under valgrind can itself take a few hundred ms; the deadline is 5 s. */
	CHECK_WITHIN(took, RESOLVE_STRAGGLER_MS, 2000);
	CHECK(p.unresolved == 1);
	CHECK(strcmp(err, "timed out resolving host name") == 0);
	CHECK(strncmp(p.host, "localhost,localhost", 19) == 0);
	CHECK(strcmp(p.port, "2,2") == 0);
	resolve_params_free(&p);
	return 0;
}

static void silent_name_does_not_hold_up_the_rest(void **state)
{
	(void)state;
	/* glibc gives up after 3 s: a cut-off by then is ours. */
	in_namespace(DNS_SILENT, 3, child_silent_name_does_not_hold_up_the_rest);
}

/* ---- the machine's own resolver (last: its lookup may outlive the test) ---- */

/* With no internet the machine's resolver may answer at once or never; either
 * way the answer comes by the deadline. An abandoned lookup still in flight at
 * exit is left to the exit (see resolve.h). */
static void nonexistent_name_fails_by_the_deadline(void **state)
{
	(void)state;
	struct resolve_addrs a;
	char err[128] = "";
	int64_t t0 = clock_now_ms();
	enum resolve_status st =
	    resolve_host("neonfcgi-test.invalid", t0 + 1000, &a, err, sizeof err);

	assert_true(clock_now_ms() - t0 <= 1000 + MARGIN_MS);
	assert_true(st == RESOLVE_NOT_FOUND || st == RESOLVE_TIMEOUT);
	assert_true(strncmp(err, "could not resolve host name: ", 29) == 0 ||
		    strcmp(err, "timed out resolving host name") == 0);
	assert_int_equal(a.n, 0);
	/* Join its thread if it has finished; one still asking is left to the
	 * exit, as resolve.h says. */
	(void)resolve_drain(clock_now_ms() + 2000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ipv4_literal_answers_without_thread),
		cmocka_unit_test(ipv6_literal_answers_without_thread),
		cmocka_unit_test(empty_name_is_not_found),
		cmocka_unit_test(passed_deadline_times_out_without_thread),
		cmocka_unit_test(localhost_resolves_from_etc_hosts),
		cmocka_unit_test(params_left_alone_when_libpq_resolves_nothing),
		cmocka_unit_test(params_expand_names_keep_sockets_and_literals),
		cmocka_unit_test(params_single_port_stays_single_and_none_stays_none),
		cmocka_unit_test(libpq_takes_empty_hostaddr_for_unix_socket),
		cmocka_unit_test(libpq_connects_to_hostaddr_and_keeps_the_name),
		cmocka_unit_test(missing_name_is_not_found),
		cmocka_unit_test(params_keep_what_resolved),
		cmocka_unit_test(params_fail_when_nothing_resolves),
		cmocka_unit_test(silent_resolver_costs_the_deadline),
		cmocka_unit_test(silent_params_time_out),
		cmocka_unit_test(silent_name_does_not_hold_up_the_rest),
		cmocka_unit_test(nonexistent_name_fails_by_the_deadline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
