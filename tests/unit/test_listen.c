/* Unit tests of app/listen.c's unix sockets: a stale socket file is replaced,
 * a live server's is not, and every refusal fills err (which the caller logs);
 * the file's mode, owner and group; no listening before listen_start; and
 * whether a process that dropped root may still remove the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "listen.h"

#define UNTOUCHED "(err never written)"
#define NOBODY    65534

struct fixture {
	char dir[64];
	char path[128];
	struct config cfg;
	char err[512];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_listen.XXXXXX");
	if (!mkdtemp(f->dir) || chmod(f->dir, 0755) < 0) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/neonfcgi.sock", f->dir);
	f->cfg.api_socket = f->path;
	f->cfg.api_socket_mode = 0660;
	f->cfg.socket_uid = (uid_t)-1; /* config's "leave it" */
	f->cfg.socket_gid = (gid_t)-1;
	snprintf(f->err, sizeof(f->err), UNTOUCHED);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	(void)chmod(f->dir, 0700);
	(void)unlink(f->path);
	(void)rmdir(f->path); /* one test puts a directory there */
	(void)rmdir(f->dir);
	free(f);
	return 0;
}

/* A socket file at path with a listener (listening) or without (stale). */
static int make_socket(const char *path, bool listening)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (listening) {
		assert_int_equal(listen(fd, 1), 0);
		return fd;
	}
	close(fd);
	return -1;
}

static void stale_socket_is_replaced(void **state)
{
	struct fixture *f = *state;
	struct listener l;
	struct stat st;
	char want[160];

	make_socket(f->path, false);
	assert_int_equal(listen_open(&f->cfg, &l, f->err, sizeof(f->err)), 0);
	assert_true(l.fd >= 0);
	snprintf(want, sizeof(want), "unix:%s", f->path);
	assert_string_equal(l.address, want);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	listen_close(&l, true);
	assert_int_equal(l.fd, -1);
	assert_int_equal(access(f->path, F_OK), -1);
}

static void live_server_is_not_replaced(void **state)
{
	struct fixture *f = *state;
	struct listener l;
	int other = make_socket(f->path, true);

	assert_int_equal(listen_open(&f->cfg, &l, f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, "another server is already listening there"));
	assert_int_equal(access(f->path, F_OK), 0);
	close(other);
}

static void other_file_is_not_replaced(void **state)
{
	struct fixture *f = *state;
	struct listener l;

	assert_int_equal(mkdir(f->path, 0700), 0);
	assert_int_equal(listen_open(&f->cfg, &l, f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, "exists and is not a socket"));
}

static void too_long_path_is_refused(void **state)
{
	struct fixture *f = *state;
	struct listener l;
	char path[200];

	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	f->cfg.api_socket = path;
	assert_int_equal(listen_open(&f->cfg, &l, f->err, sizeof(f->err)), -1);
	assert_non_null(strstr(f->err, "path too long"));
}

/* Drop root (which may unlink anything) to nobody; a caller that is not root
 * is refused by the directory's mode alone. */
static void become_unprivileged(void)
{
	if (geteuid() != 0)
		return;
	if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		_exit(3);
}

/* Regression: when the stale socket file could not be removed, listen_open
 * returned -1 without a word in err, and main logged an uninitialised buffer.
 * The stale socket sits in a directory this process may not write, so the
 * probe finds nobody listening and the unlink fails. */
static void stale_socket_that_cannot_be_removed_is_reported(void **state)
{
	struct fixture *f = *state;
	int pipefd[2];
	char want[200];

	make_socket(f->path, false);
	assert_int_equal(chmod(f->path, 0777), 0); /* anyone may connect() to it */
	assert_int_equal(chmod(f->dir, 0555), 0);
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct listener l;

		close(pipefd[0]);
		become_unprivileged();
		int rc = listen_open(&f->cfg, &l, f->err, sizeof(f->err));
		dprintf(pipefd[1], "%d %s", rc, f->err);
		_exit(0);
	}
	close(pipefd[1]);
	char got[600] = "";
	ssize_t n = read(pipefd[0], got, sizeof(got) - 1);
	int status;
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(n > 0);
	got[n] = '\0';
	snprintf(want, sizeof(want),
		 "-1 API_SOCKET=\"%s\": cannot remove the stale socket file: %s", f->path,
		 strerror(EACCES));
	assert_string_equal(got, want);
	assert_int_equal(access(f->path, F_OK), 0); /* still there */
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), rc;

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int saved = errno;
	close(fd);
	return rc == 0 ? 0 : saved;
}

/* Bound, not listening, until listen_start: a web server's connection is
 * refused at once during start-up migrations instead of queueing. */
static void connections_are_refused_until_listen_start(void **state)
{
	struct fixture *f = *state;
	struct listener l;

	assert_int_equal(listen_open(&f->cfg, &l, f->err, sizeof(f->err)), 0);
	assert_false(l.listening);
	assert_int_equal(connect_to(f->path), ECONNREFUSED);
	assert_int_equal(listen_start(&l, f->err, sizeof(f->err)), 0);
	assert_true(l.listening);
	assert_int_equal(connect_to(f->path), 0);
	assert_int_equal(listen_start(&l, f->err, sizeof(f->err)), 0); /* once is enough */
	assert_int_equal(listen_close(&l, true), 0);
	assert_int_equal(access(f->path, F_OK), -1);
}

/* API_SOCKET_MODE from the umask at bind(), owner and group by lchown. */
static void socket_file_gets_mode_owner_and_group(void **state)
{
	struct fixture *f = *state;
	struct listener l;
	struct stat st;

	if (geteuid() != 0)
		skip();
	f->cfg.api_socket_mode = 0604;
	f->cfg.socket_uid = NOBODY;
	f->cfg.socket_gid = 1; /* daemon */
	assert_int_equal(listen_open(&f->cfg, &l, f->err, sizeof(f->err)), 0);
	assert_int_equal(lstat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0604);
	assert_int_equal(st.st_uid, NOBODY);
	assert_int_equal(st.st_gid, 1);
	listen_close(&l, true);
	/* only a group: the owner stays the creator's */
	f->cfg.socket_uid = (uid_t)-1;
	assert_int_equal(listen_open(&f->cfg, &l, f->err, sizeof(f->err)), 0);
	assert_int_equal(lstat(f->path, &st), 0);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_gid, 1);
	listen_close(&l, true);
}

/* Not root: giving the file away is refused, reported, and leaves no file. */
static void socket_owner_that_cannot_be_set_is_reported(void **state)
{
	struct fixture *f = *state;
	int pipefd[2];

	assert_int_equal(chmod(f->dir, 0777), 0);
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct listener l;

		close(pipefd[0]);
		become_unprivileged();
		f->cfg.socket_uid = 0;
		int rc = listen_open(&f->cfg, &l, f->err, sizeof(f->err));
		dprintf(pipefd[1], "%d %d %s", rc, access(f->path, F_OK), f->err);
		_exit(0);
	}
	close(pipefd[1]);
	char got[600] = "";
	ssize_t n = read(pipefd[0], got, sizeof(got) - 1);
	int status;
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(n > 0);
	got[n] = '\0';
	assert_true(strncmp(got, "-1 -1 API_SOCKET=", 17) == 0);
	assert_non_null(strstr(got, "cannot give the socket file to uid 0 gid -1 "
				    "(API_SOCKET_OWNER, API_SOCKET_GROUP or RUN_USER)"));
}

/* After dropping to nobody, who may remove the file on stop: the answer
 * comes from a child that drops, as the server does. */
static int removable_as_nobody(struct fixture *f, char *why, size_t whylen)
{
	int pipefd[2], status;
	struct listener l;

	assert_int_equal(listen_open(&f->cfg, &l, f->err, sizeof(f->err)), 0);
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pipefd[0]);
		become_unprivileged();
		int rc = listen_check_removable(&l, why, whylen);
		dprintf(pipefd[1], "%s", rc == 0 ? "" : why);
		_exit(rc == 0 ? 0 : 1);
	}
	close(pipefd[1]);
	ssize_t n = read(pipefd[0], why, whylen - 1);
	why[n > 0 ? n : 0] = '\0';
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	listen_close(&l, true);
	return WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void removable_after_drop_depends_on_the_directory(void **state)
{
	struct fixture *f = *state;
	char why[300], want[200];

	if (geteuid() != 0)
		skip();
	/* root's 0755 directory: nobody may not remove names in it */
	assert_int_equal(removable_as_nobody(f, why, sizeof(why)), -1);
	snprintf(want, sizeof(want), "directory \"%s\": %s", f->dir, strerror(EACCES));
	assert_string_equal(why, want);
	/* a directory of the user's own (systemd's RuntimeDirectory=) */
	assert_int_equal(chown(f->dir, NOBODY, NOBODY), 0);
	assert_int_equal(removable_as_nobody(f, why, sizeof(why)), 0);
	/* sticky and world-writable (/tmp): only with a file of its own */
	assert_int_equal(chown(f->dir, 0, 0), 0);
	assert_int_equal(chmod(f->dir, 01777), 0);
	assert_int_equal(removable_as_nobody(f, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "is sticky and neither it nor the socket file is ours"));
	f->cfg.socket_uid = NOBODY;
	assert_int_equal(removable_as_nobody(f, why, sizeof(why)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(stale_socket_is_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(live_server_is_not_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(other_file_is_not_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(too_long_path_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(stale_socket_that_cannot_be_removed_is_reported,
						setup, teardown),
		cmocka_unit_test_setup_teardown(connections_are_refused_until_listen_start, setup,
						teardown),
		cmocka_unit_test_setup_teardown(socket_file_gets_mode_owner_and_group, setup,
						teardown),
		cmocka_unit_test_setup_teardown(socket_owner_that_cannot_be_set_is_reported, setup,
						teardown),
		cmocka_unit_test_setup_teardown(removable_after_drop_depends_on_the_directory,
						setup, teardown),
	};
	return cmocka_run_group_tests_name("listen", tests, NULL, NULL);
}
