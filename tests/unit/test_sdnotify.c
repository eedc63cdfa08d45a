/* Unit tests of app/sdnotify.c: the datagram reaches a path socket and an
 * abstract one; unset is a no-op; bad values are reported, not sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "sdnotify.h"

/* A datagram socket bound at name (path, or "@abstract"); returns the fd. */
static int listen_dgram(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memcpy(sa.sun_path, name, len);
	if (name[0] == '@')
		sa.sun_path[0] = '\0';
	assert_int_equal(bind(fd, (struct sockaddr *)&sa,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
			 0);
	return fd;
}

static void receive_exactly(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void unset_or_empty_is_a_noop(void **state)
{
	(void)state;
	char err[256] = "";
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(sdnotify_send("READY=1", err, sizeof(err)), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(sdnotify_send("READY=1", err, sizeof(err)), 0);
	assert_string_equal(err, "");
}

static void path_socket_gets_the_state(void **state)
{
	(void)state;
	char path[64], err[256];
	snprintf(path, sizeof(path), "/tmp/neonfcgi-sdnotify-%d.sock", (int)getpid());
	unlink(path);
	int fd = listen_dgram(path);
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(sdnotify_send("READY=1\nSTATUS=listening", err, sizeof(err)), 0);
	receive_exactly(fd, "READY=1\nSTATUS=listening");
	close(fd);
	unlink(path);
}

static void abstract_socket_gets_the_state(void **state)
{
	(void)state;
	char name[64], err[256];
	snprintf(name, sizeof(name), "@neonfcgi-sdnotify-%d", (int)getpid());
	int fd = listen_dgram(name);
	setenv("NOTIFY_SOCKET", name, 1);
	assert_int_equal(sdnotify_send("READY=1", err, sizeof(err)), 0);
	receive_exactly(fd, "READY=1");
	close(fd);
}

static void relative_path_is_refused(void **state)
{
	(void)state;
	char err[256] = "";
	setenv("NOTIFY_SOCKET", "notify.sock", 1);
	assert_int_equal(sdnotify_send("READY=1", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "NOTIFY_SOCKET=\"notify.sock\""));
}

static void missing_socket_is_reported(void **state)
{
	(void)state;
	char err[256] = "";
	setenv("NOTIFY_SOCKET", "/nonexistent/neonfcgi-notify.sock", 1);
	assert_int_equal(sdnotify_send("READY=1", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/neonfcgi-notify.sock"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unset_or_empty_is_a_noop),
		cmocka_unit_test(path_socket_gets_the_state),
		cmocka_unit_test(abstract_socket_gets_the_state),
		cmocka_unit_test(relative_path_is_refused),
		cmocka_unit_test(missing_socket_is_reported),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
