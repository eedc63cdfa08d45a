/* Unit tests of app/arrival.c: connections in arrival order. A connection
 * that becomes ready in the waiting room while others wait in the accept
 * queue is served after this worker's share of them, and at once when the
 * accept queue is empty; the accept queue is sampled on both socket kinds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "arrival.h"
#include "sb_fixture.h"
#include "scoreboard.h"
#include "waitroom.h"

#define CLIENTS 4

struct fixture {
	struct scoreboard *sb;
	int listen_fd;
	int clients[CLIENTS];
	struct waitroom *room;
	struct arrivals arr;
};

static int listen_on(int family)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*in);
	} else {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;
		un->sun_family = AF_UNIX;
		/* abstract: nothing to remove afterwards */
		int n = snprintf(un->sun_path + 1, sizeof(un->sun_path) - 1, "neonfcgi-arrival-%ld",
				 (long)getpid());
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
	}
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0)
		return -1;
	return fd;
}

static int connect_to(int listen_fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd;

	if (getsockname(listen_fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int setup(void **state, int family)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct waitroom_opts o = { .max_conns = 1 };

	if (!f || sb_fixture_setup((void **)&f->sb) < 0)
		return -1;
	f->listen_fd = listen_on(family);
	if (f->listen_fd < 0)
		return -1;
	for (int i = 0; i < CLIENTS; i++)
		f->clients[i] = -1;
	/* two workers share the accept queue: ours takes half of it */
	arrivals_init(&f->arr, f->listen_fd, 2, f->sb);
	o.ticket = arrivals_ticket;
	o.ticket_arg = &f->arr;
	f->room = waitroom_new(&o);
	*state = f;
	return f->room ? 0 : -1;
}

static int setup_tcp(void **state)
{
	return setup(state, AF_INET);
}

static int setup_unix(void **state)
{
	return setup(state, AF_UNIX);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	waitroom_free(f->room);
	for (int i = 0; i < CLIENTS; i++)
		if (f->clients[i] >= 0)
			close(f->clients[i]);
	close(f->listen_fd);
	sb_fixture_teardown((void **)&f->sb);
	free(f);
	return 0;
}

static void queue_clients(struct fixture *f)
{
	for (int i = 0; i < CLIENTS; i++) {
		f->clients[i] = connect_to(f->listen_fd);
		assert_true(f->clients[i] >= 0);
	}
}

/* The next connection and where it came from: 'a' accepted, 'r' the room. */
static char next(struct fixture *f, int *fd)
{
	atomic_bool stopping = false;
	struct sockaddr_storage sa;
	bool kept, accepted;

	*fd = arrivals_next(&f->arr, f->room, &stopping, &kept, &sa, &accepted);
	assert_true(*fd >= 0);
	return accepted ? 'a' : 'r';
}

static void ready_after_the_accept_queue_share(void **state)
{
	struct fixture *f = *state;
	int pair[2], fd;
	char order[8] = { 0 };

	assert_false(arrivals_waiting(&f->arr));
	assert_int_equal(arrivals_ticket(&f->arr), 0);
	queue_clients(f);
	assert_true(arrivals_waiting(&f->arr));
	/* Ready now, behind four queued connections, two of them ours. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	assert_int_equal(waitroom_requeue(f->room, pair[0], true), 0);
	for (int i = 0; i < 4; i++) {
		order[i] = next(f, &fd);
		if (fd != pair[0])
			close(fd);
	}
	assert_string_equal(order, "aara");
	assert_int_equal(atomic_load(&f->arr.accepted), 3);
	close(pair[0]);
	close(pair[1]);
}

static void ready_at_once_when_nobody_waits(void **state)
{
	struct fixture *f = *state;
	int pair[2], fd;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	assert_int_equal(waitroom_requeue(f->room, pair[0], true), 0);
	assert_int_equal(next(f, &fd), 'r');
	assert_int_equal(fd, pair[0]);
	/* Not due yet (two of the four queued are ours to accept first), but
	 * another worker takes them all: served at once all the same. */
	queue_clients(f);
	assert_int_equal(waitroom_requeue(f->room, pair[0], true), 0);
	for (int i = 0; i < CLIENTS; i++) {
		fd = accept(f->listen_fd, NULL, NULL);
		assert_true(fd >= 0);
		close(fd);
	}
	assert_int_equal(next(f, &fd), 'r');
	assert_int_equal(fd, pair[0]);
	assert_int_equal(atomic_load(&f->arr.accepted), 0);
	close(pair[0]);
	close(pair[1]);
}

static void sampled_into_the_scoreboard(void **state)
{
	struct fixture *f = *state;

	queue_clients(f);
	arrivals_sample(&f->arr, true);
	assert_int_equal(atomic_load(&f->arr.queued), CLIENTS);
	assert_int_equal(atomic_load(&f->sb->inst.listen_queue), CLIENTS);
}

static void stopping_serves_what_is_ready_then_ends(void **state)
{
	struct fixture *f = *state;
	atomic_bool stopping = true;
	struct sockaddr_storage sa;
	bool kept, accepted;
	int pair[2];

	queue_clients(f);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	assert_int_equal(waitroom_requeue(f->room, pair[0], true), 0);
	assert_int_equal(arrivals_next(&f->arr, f->room, &stopping, &kept, &sa, &accepted),
			 pair[0]);
	assert_true(kept);
	assert_int_equal(arrivals_next(&f->arr, f->room, &stopping, &kept, &sa, &accepted), -1);
	close(pair[0]);
	close(pair[1]);
}

#define TEST(f, s) cmocka_unit_test_setup_teardown(f, s, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(ready_after_the_accept_queue_share, setup_tcp),
		TEST(ready_after_the_accept_queue_share, setup_unix),
		TEST(ready_at_once_when_nobody_waits, setup_tcp),
		TEST(sampled_into_the_scoreboard, setup_tcp),
		TEST(sampled_into_the_scoreboard, setup_unix),
		TEST(stopping_serves_what_is_ready_then_ends, setup_unix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
