/* delay-relay: a TCP relay that delays every byte by DELAY_US in each
 * direction, for `make bench` (bench/bench.py). This kernel has no netem, and
 * the bench needs Neon-like round trips between the app and PostgreSQL to show
 * /health/db against its bound of connections / RTT.
 *
 * Usage: delay-relay TARGET_HOST TARGET_PORT DELAY_US
 * Listens on 127.0.0.1 on a free port and prints that port on stdout.
 *
 * One thread, epoll. What is read from one side becomes a chunk due DELAY_US
 * later on the other side (a constant one-way latency, not a bandwidth limit);
 * a timerfd armed at the earliest due chunk wakes the loop. EOF is relayed as
 * a delayed shutdown(SHUT_WR). Reads are not throttled: the relayed traffic
 * (SELECT 1 round trips) is tiny.
 *
 * Round trips in flight: a pair is "awaiting" from the client's first bytes
 * after the server last spoke until the server's next bytes (so from a query
 * sent to its answer, handshake flights included). PostgreSQL's
 * pg_stat_activity cannot show this: the server is 'active' only for the
 * microseconds it executes SELECT 1, while the round trip lasts 2 x DELAY_US.
 * On SIGUSR1 the relay prints a line "inflight max=M now=N flights=F" on
 * stdout (M: the most pairs awaiting at once since the previous report, F:
 * client flights that began awaiting since then) and starts a new interval. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS  1024
#define READ_SIZE  65536
#define MAX_EVENTS 64
#define TAG_LISTEN UINT64_MAX
#define TAG_TIMER  (UINT64_MAX - 1)

struct chunk {
	struct chunk *next;
	int64_t due_ns;
	size_t len, off;
	bool eof; /* relay a shutdown(SHUT_WR) instead of data */
	char data[];
};

/* One direction: bytes read from fd[side], written to fd[1 - side]. */
struct half {
	struct chunk *head, *tail;
	bool read_eof; /* fd[side] said EOF: stop reading it */
	bool shut;     /* the EOF was relayed */
	bool blocked;  /* fd[1 - side] is full: wait for EPOLLOUT */
};

struct pair {
	bool used;
	int fd[2];     /* 0: client, 1: server */
	bool hup[2];   /* fd[side] hung up after its EOF: out of the epoll set */
	bool awaiting; /* the client spoke last: a round trip is in flight */
	struct half dir[2];
};

static struct pair pairs[MAX_PAIRS];
static int epfd = -1, timerfd = -1;
static int64_t delay_ns;
static struct sockaddr_storage target;
static socklen_t target_len;
static int inflight, inflight_max;
static unsigned long long flights;
static volatile sig_atomic_t report_wanted;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static uint64_t tag_of(const struct pair *p, int side)
{
	return (uint64_t)(p - pairs) * 2 + (uint64_t)side;
}

static void watch(int op, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = { .events = events, .data.u64 = tag };

	if (epoll_ctl(epfd, op, fd, &ev) < 0)
		die("delay-relay: epoll_ctl");
}

/* Read side while its peer has not said EOF; write side while blocked. */
static void update_events(struct pair *p, int side)
{
	uint32_t ev = 0;

	if (p->hup[side])
		return;
	if (!p->dir[side].read_eof)
		ev |= EPOLLIN;
	if (p->dir[1 - side].blocked)
		ev |= EPOLLOUT;
	watch(EPOLL_CTL_MOD, p->fd[side], ev, tag_of(p, side));
}

/* Who spoke last on a pair: side 0 (client) begins a round trip, side 1 ends it. */
static void track_flight(struct pair *p, int side)
{
	if (side == 0 && !p->awaiting) {
		p->awaiting = true;
		flights++;
		if (++inflight > inflight_max)
			inflight_max = inflight;
	} else if (side == 1 && p->awaiting) {
		p->awaiting = false;
		inflight--;
	}
}

static void on_usr1(int sig)
{
	(void)sig;
	report_wanted = 1;
}

static void report(void)
{
	report_wanted = 0;
	printf("inflight max=%d now=%d flights=%llu\n", inflight_max, inflight, flights);
	fflush(stdout);
	inflight_max = inflight;
	flights = 0;
}

static void close_pair(struct pair *p)
{
	if (p->awaiting)
		inflight--;
	for (int s = 0; s < 2; s++) {
		struct chunk *c = p->dir[s].head;
		while (c) {
			struct chunk *next = c->next;
			free(c);
			c = next;
		}
		close(p->fd[s]); /* also drops it from the epoll set */
	}
	memset(p, 0, sizeof(*p));
}

static void enqueue(struct half *h, const char *buf, size_t len, bool eof)
{
	struct chunk *c = malloc(sizeof(*c) + len);

	if (!c)
		abort();
	c->next = NULL;
	c->due_ns = now_ns() + delay_ns;
	c->len = len;
	c->off = 0;
	c->eof = eof;
	if (len)
		memcpy(c->data, buf, len);
	if (h->tail)
		h->tail->next = c;
	else
		h->head = c;
	h->tail = c;
}

static int connect_target(void)
{
	int one = 1;
	int fd = socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	/* Loopback: a blocking connect completes at once; then non-blocking. */
	if (connect(fd, (struct sockaddr *)&target, target_len) < 0 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		close(fd);
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void on_accept(int lfd)
{
	int one = 1;
	int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	int sfd, i;

	if (cfd < 0)
		return;
	for (i = 0; i < MAX_PAIRS && pairs[i].used; i++)
		;
	sfd = i < MAX_PAIRS ? connect_target() : -1;
	if (sfd < 0) {
		close(cfd);
		return;
	}
	(void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pairs[i] = (struct pair){ .used = true, .fd = { cfd, sfd } };
	watch(EPOLL_CTL_ADD, cfd, EPOLLIN, tag_of(&pairs[i], 0));
	watch(EPOLL_CTL_ADD, sfd, EPOLLIN, tag_of(&pairs[i], 1));
}

/* Drain what fd[side] has into the delayed queue; -1 if the pair must close. */
static int on_readable(struct pair *p, int side)
{
	static char buf[READ_SIZE];
	struct half *h = &p->dir[side];

	for (;;) {
		ssize_t n = read(p->fd[side], buf, sizeof(buf));
		if (n > 0) {
			track_flight(p, side);
			enqueue(h, buf, (size_t)n, false);
			continue;
		}
		if (n == 0) {
			enqueue(h, NULL, 0, true);
			h->read_eof = true;
			update_events(p, side);
			return 0;
		}
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	}
}

/* Write the due chunks of one direction; -1 if the pair must close. */
static int flush_half(struct pair *p, int side, int64_t now)
{
	struct half *h = &p->dir[side];
	int to = p->fd[1 - side];

	while (h->head && h->head->due_ns <= now) {
		struct chunk *c = h->head;
		if (c->eof) {
			(void)shutdown(to, SHUT_WR);
			h->shut = true;
		} else {
			ssize_t n = write(to, c->data + c->off, c->len - c->off);
			if (n < 0 && errno == EAGAIN) {
				if (!h->blocked) {
					h->blocked = true;
					update_events(p, 1 - side);
				}
				return 0;
			}
			if (n < 0)
				return -1;
			c->off += (size_t)n;
			if (c->off < c->len)
				continue;
		}
		h->head = c->next;
		if (!h->head)
			h->tail = NULL;
		free(c);
	}
	if (h->blocked) {
		h->blocked = false;
		update_events(p, 1 - side);
	}
	return 0;
}

/* Flush everything due and arm the timer at the next due chunk. */
static void flush_all(void)
{
	int64_t now = now_ns(), next = INT64_MAX;

	for (int i = 0; i < MAX_PAIRS; i++) {
		struct pair *p = &pairs[i];
		if (!p->used)
			continue;
		if (flush_half(p, 0, now) < 0 || flush_half(p, 1, now) < 0 ||
		    (p->dir[0].shut && p->dir[1].shut)) {
			close_pair(p);
			continue;
		}
		for (int s = 0; s < 2; s++)
			if (p->dir[s].head && !p->dir[s].blocked && p->dir[s].head->due_ns < next)
				next = p->dir[s].head->due_ns;
	}
	struct itimerspec its = { 0 };
	if (next != INT64_MAX) {
		its.it_value.tv_sec = next / 1000000000;
		its.it_value.tv_nsec = next % 1000000000;
	}
	if (timerfd_settime(timerfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		die("delay-relay: timerfd_settime");
}

static void on_event(const struct epoll_event *ev, int lfd)
{
	uint64_t expirations;

	if (ev->data.u64 == TAG_LISTEN) {
		on_accept(lfd);
		return;
	}
	if (ev->data.u64 == TAG_TIMER) {
		(void)read(timerfd, &expirations, sizeof(expirations));
		return;
	}
	struct pair *p = &pairs[ev->data.u64 / 2];
	int side = (int)(ev->data.u64 % 2);
	if (!p->used)
		return;
	/* A hung-up socket keeps reporting EPOLLHUP whatever we ask for; once its
	 * EOF is read there is nothing left to wait for on it. */
	if ((ev->events & EPOLLHUP) && p->dir[side].read_eof) {
		p->hup[side] = true;
		epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd[side], NULL);
		return;
	}
	if ((ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !p->dir[side].read_eof &&
	    on_readable(p, side) < 0)
		close_pair(p);
	/* EPOLLOUT: flush_all retries the blocked direction. */
}

static int open_listener(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1024) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		die("delay-relay: listen");
	printf("%d\n", ntohs(sa.sin_port));
	fflush(stdout);
	return fd;
}

static void resolve_target(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	int rc = getaddrinfo(host, port, &hints, &res);

	if (rc != 0) {
		fprintf(stderr, "delay-relay: %s:%s: %s\n", host, port, gai_strerror(rc));
		exit(1);
	}
	memcpy(&target, res->ai_addr, res->ai_addrlen);
	target_len = res->ai_addrlen;
	freeaddrinfo(res);
}

int main(int argc, char **argv)
{
	struct epoll_event evs[MAX_EVENTS];
	int lfd;

	if (argc != 4) {
		fprintf(stderr, "usage: delay-relay TARGET_HOST TARGET_PORT DELAY_US\n");
		return 64;
	}
	signal(SIGPIPE, SIG_IGN);
	/* SIGUSR1 is blocked except inside epoll_pwait, which it ends (EINTR):
	 * one that arrives while the loop works is taken at the next wait. */
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigset_t usr1, waitmask;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (sigaction(SIGUSR1, &sa, NULL) < 0 || sigprocmask(SIG_BLOCK, &usr1, &waitmask) < 0)
		die("delay-relay: signals");
	sigdelset(&waitmask, SIGUSR1);
	resolve_target(argv[1], argv[2]);
	delay_ns = strtoll(argv[3], NULL, 10) * 1000;
	epfd = epoll_create1(EPOLL_CLOEXEC);
	timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (epfd < 0 || timerfd < 0)
		die("delay-relay: epoll/timerfd");
	lfd = open_listener();
	watch(EPOLL_CTL_ADD, lfd, EPOLLIN, TAG_LISTEN);
	watch(EPOLL_CTL_ADD, timerfd, EPOLLIN, TAG_TIMER);
	for (;;) {
		int n = epoll_pwait(epfd, evs, MAX_EVENTS, -1, &waitmask);
		if (n < 0 && errno != EINTR)
			die("delay-relay: epoll_wait");
		for (int i = 0; i < n; i++)
			on_event(&evs[i], lfd);
		flush_all();
		if (report_wanted)
			report();
	}
}
