/* Unit tests of app/procenv.c: the private copy of the environment, and
 * scrubbing, checked in a child process that this binary re-executes with
 * secrets in its own initial environment: after the scrub, neither environ
 * nor /proc/self/environ (the block set up at exec) nor a setenv() copy
 * holds them, other variables are untouched, and the private copy (which a
 * SIGHUP reload reads) still has them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procenv.h"

#define CHILD_ARG  "--scrub-child"
#define UNSET_ARG  "--unsetenv-child"
#define URL_PW     "Url-Pw-4b1d"
#define URL_PW2    "Dup-Pw-77e2"
#define PG_PW      "Pg-Pw-9c3a"
#define HEAP_PW    "Heap-Pw-51f0"
#define LATE_PW    "Late-Pw-0a6e"
#define ENV_URL    "DATABASE_URL=postgres://app:" URL_PW "@db/app"
#define ENV_URL2   "DATABASE_URL=postgres://app:" URL_PW2 "@db/app"
#define ENV_KEEP   "KEEP=still-here"
#define ENV_PG     "PGPASSWORD=" PG_PW
#define BLOCK_SIZE (256 * 1024)

extern char **environ;

static char self_path[PATH_MAX];

/* ---- the child: its own initial environment holds the secrets ---- */

static int child_fail(int code, const char *what)
{
	fprintf(stderr, "scrub child: %s\n", what);
	return code;
}

/* /proc/self/environ, NUL bytes turned into newlines; *len bytes. */
static char *read_proc_environ(size_t *len)
{
	char *buf = malloc(BLOCK_SIZE + 1);
	size_t n = 0;
	ssize_t r;
	int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);

	if (buf == NULL || fd < 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	while (n < BLOCK_SIZE && (r = read(fd, buf + n, BLOCK_SIZE - n)) > 0)
		n += (size_t)r;
	close(fd);
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = '\n';
	buf[n] = '\0';
	*len = n;
	return buf;
}

static bool block_has(const char *block, const char *text)
{
	return strstr(block, text) != NULL;
}

static bool copy_has(const struct procenv *pe, const char *entry)
{
	for (char *const *v = procenv_vars(pe); *v != NULL; v++)
		if (strcmp(*v, entry) == 0)
			return true;
	return false;
}

static int child_check_block(void)
{
	static const char *const gone[] = { URL_PW, URL_PW2, PG_PW, HEAP_PW, LATE_PW };
	size_t len = 0;
	char *block = read_proc_environ(&len);
	int rc = 0;

	if (block == NULL)
		return child_fail(20, "cannot read /proc/self/environ");
	if (!block_has(block, ENV_KEEP))
		rc = child_fail(21, "/proc/self/environ lost KEEP");
	for (size_t i = 0; rc == 0 && i < sizeof gone / sizeof gone[0]; i++)
		if (block_has(block, gone[i]))
			rc = child_fail(22, "a password is still in /proc/self/environ");
	free(block);
	return rc;
}

static int child_main(void)
{
	static const char *const names[] = { "DATABASE_URL", "PGPASSWORD", NULL };
	struct procenv *pe = procenv_snapshot(environ);
	char *heap;
	size_t n;

	/* A setenv() after the copy: PGPASSWORD's original bytes are no longer
	 * referenced from environ, the new value is a heap string. */
	if (setenv("PGPASSWORD", HEAP_PW, 1) != 0 || (heap = getenv("PGPASSWORD")) == NULL)
		return child_fail(10, "setenv failed");
	n = procenv_scrub_all(pe, names);
	if (n != 3)
		return child_fail(11,
				  "expected 3 entries removed (DATABASE_URL twice, PGPASSWORD)");
	if (getenv("DATABASE_URL") != NULL || getenv("PGPASSWORD") != NULL)
		return child_fail(12, "a secret is still in environ");
	if (getenv("KEEP") == NULL || strcmp(getenv("KEEP"), "still-here") != 0)
		return child_fail(13, "KEEP was touched");
	if (strstr(heap, HEAP_PW) != NULL || heap[0] != '\0')
		return child_fail(14, "the setenv() copy still holds its value");
	if (!copy_has(pe, ENV_URL) || !copy_has(pe, ENV_PG) || !copy_has(pe, ENV_KEEP))
		return child_fail(15, "the private copy lost a variable");
	/* Without a copy, as a reload does: the live environment only. */
	if (setenv("DATABASE_URL", "postgres://app:" LATE_PW "@db/app", 1) != 0)
		return child_fail(16, "setenv failed");
	if (procenv_scrub(NULL, "DATABASE_URL") != 1 || getenv("DATABASE_URL") != NULL)
		return child_fail(17, "the late DATABASE_URL was not removed");
	procenv_free(pe);
	return child_check_block();
}

/* What the scrub is for: unsetenv() alone leaves the value readable. */
static int unsetenv_child_main(void)
{
	size_t len = 0;
	char *block;
	int rc;

	if (unsetenv("DATABASE_URL") != 0 || getenv("DATABASE_URL") != NULL)
		return child_fail(30, "unsetenv failed");
	block = read_proc_environ(&len);
	if (block == NULL)
		return child_fail(31, "cannot read /proc/self/environ");
	rc = block_has(block, URL_PW) ? 0 : child_fail(32, "the value left with unsetenv()");
	free(block);
	return rc;
}

/* ---- the tests ---- */

static void run_child(const char *mode, char **env)
{
	char *argv[] = { self_path, (char *)mode, NULL };
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		execve(self_path, argv, env);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* The secrets, and the sanitizers' options (the child is instrumented
 * too); env must have room for 8 entries. */
static void child_env(char **env, char opt[3][1024])
{
	static const char *const pass[] = { "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS" };
	size_t n = 0;

	env[n++] = (char *)ENV_URL;
	env[n++] = (char *)ENV_KEEP;
	env[n++] = (char *)ENV_PG;
	env[n++] = (char *)ENV_URL2;
	for (size_t i = 0; i < 3; i++) {
		const char *v = getenv(pass[i]);

		if (v != NULL) {
			snprintf(opt[i], sizeof opt[i], "%s=%s", pass[i], v);
			env[n++] = opt[i];
		}
	}
	env[n] = NULL;
}

static void test_scrub_in_own_environment(void **state)
{
	char *env[8], opt[3][1024];

	(void)state;
	child_env(env, opt);
	run_child(CHILD_ARG, env);
}

static void test_unsetenv_alone_leaves_the_value(void **state)
{
	char *env[8], opt[3][1024];

	(void)state;
	child_env(env, opt);
	run_child(UNSET_ARG, env);
}

static void test_snapshot_copies(void **state)
{
	char *env[] = { (char *)"A=1", (char *)"B=two=2", NULL };
	struct procenv *pe = procenv_snapshot(env);
	char *const *v = procenv_vars(pe);

	(void)state;
	assert_string_equal(v[0], "A=1");
	assert_string_equal(v[1], "B=two=2");
	assert_null(v[2]);
	assert_true(v[0] != env[0]);
	procenv_free(pe);
	procenv_free(NULL);
	pe = procenv_snapshot(NULL);
	assert_null(procenv_vars(pe)[0]);
	procenv_free(pe);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snapshot_copies),
		cmocka_unit_test(test_unsetenv_alone_leaves_the_value),
		cmocka_unit_test(test_scrub_in_own_environment),
	};

	if (argc == 2 && strcmp(argv[1], CHILD_ARG) == 0)
		return child_main();
	if (argc == 2 && strcmp(argv[1], UNSET_ARG) == 0)
		return unsetenv_child_main();
	if (realpath(argv[0], self_path) == NULL)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
