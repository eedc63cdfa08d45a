/* Unit tests of app/envfile.c: every syntax form of DESIGN.md §2, errors
 * with line numbers that never quote a value, and the bounded file reader. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envfile.h"
#include "problems.h"

#define SECRET "s3cr3t-P@ss:w0rd"

/* Parse text from an exact-size heap copy: no NUL after it, so a parser that
 * reads past len trips valgrind or ASan. */
static int parse(const char *text, struct envfile *ef, struct problems *p)
{
	size_t len = strlen(text);
	char *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, text, len);
	rc = envfile_parse(copy, len, "test.env", ef, p);
	free(copy);
	return rc;
}

static void dump(const struct problems *p)
{
	for (size_t i = 0; i < p->n; i++)
		print_message("  problem: %s\n", p->lines[i]);
}

struct ok_case {
	const char *text;
	const char *key;
	const char *value;
};

static const struct ok_case ok_cases[] = {
	{ "A=1", "A", "1" },
	{ "A=1\n", "A", "1" },
	{ "export B=2", "B", "2" },
	{ "export\tB=2", "B", "2" },
	{ "  C  =  3  ", "C", "3" },
	{ "\tC\t=\t3\t", "C", "3" },
	{ "export=1", "export", "1" },
	{ "_u9=x", "_u9", "x" },
	{ "D='lit $x \\n # not a comment'", "D", "lit $x \\n # not a comment" },
	{ "D=''", "D", "" },
	{ "D='x' # comment", "D", "x" },
	{ "D='x'   ", "D", "x" },
	{ "E=\"a \\\"q\\\" \\\\ b\\nc\"", "E", "a \"q\" \\ b\nc" },
	{ "E=\"keep \\t and \\$\"", "E", "keep \\t and \\$" },
	{ "E=\"# not a comment\"", "E", "# not a comment" },
	{ "E=\"x\" # comment", "E", "x" },
	{ "E=\"\"", "E", "" },
	{ "F=val # comment", "F", "val" },
	{ "F=val\t# comment", "F", "val" },
	{ "F=a#b", "F", "a#b" },
	{ "F=#starts-with-hash", "F", "#starts-with-hash" },
	{ "F= # only a comment", "F", "" },
	{ "F=with spaces inside  ", "F", "with spaces inside" },
	{ "F=a=b=c", "F", "a=b=c" },
	{ "H=", "H", "" },
	{ "H=   ", "H", "" },
	{ "I=x\r", "I", "x" },
	{ "I=x\r\n", "I", "x" },
	{ "I='x'\r\n", "I", "x" },
	{ "\xEF\xBB\xBFN=1", "N", "1" },
	{ "# comment\n\n   \n  # indented comment\nK=v", "K", "v" },
	{ "A=1\nA=2\nA=3", "A", "3" },
	{ "P=" SECRET, "P", SECRET },
	{ "P='" SECRET "'", "P", SECRET },
};

static void test_ok_forms(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
		const struct ok_case *c = &ok_cases[i];
		struct envfile ef;
		struct problems p = { NULL, 0 };
		int rc = parse(c->text, &ef, &p);
		const char *got = envfile_get(&ef, c->key);

		if (rc != 0 || got == NULL || strcmp(got, c->value) != 0) {
			print_message("case %zu [%s]: rc=%d got [%s] want [%s]\n", i, c->text, rc,
				      got ? got : "(null)", c->value);
			dump(&p);
			fail();
		}
		assert_int_equal(p.n, 0);
		envfile_free(&ef);
		problems_free(&p);
	}
}

struct bad_case {
	const char *text;
	const char *problem; /* exact line */
};

static const struct bad_case bad_cases[] = {
	{ "no equals sign", "ENV_FILE test.env line 1: missing '=' (expected KEY=value)" },
	{ "export ONLY", "ENV_FILE test.env line 1: missing '=' (expected KEY=value)" },
	{ "1BAD=" SECRET,
	  "ENV_FILE test.env line 1: invalid variable name (must match [A-Za-z_][A-Za-z0-9_]*)" },
	{ "BAD-KEY=x",
	  "ENV_FILE test.env line 1: invalid variable name (must match [A-Za-z_][A-Za-z0-9_]*)" },
	{ "=value",
	  "ENV_FILE test.env line 1: invalid variable name (must match [A-Za-z_][A-Za-z0-9_]*)" },
	{ "A B=1",
	  "ENV_FILE test.env line 1: invalid variable name (must match [A-Za-z_][A-Za-z0-9_]*)" },
	{ "Q='" SECRET, "ENV_FILE test.env line 1: unterminated single quote" },
	{ "R=\"" SECRET, "ENV_FILE test.env line 1: unterminated double quote" },
	{ "R=\"" SECRET "\\\"", "ENV_FILE test.env line 1: unterminated double quote" },
	{ "S='" SECRET "' junk",
	  "ENV_FILE test.env line 1: unexpected text after the closing quote" },
	{ "S=\"x\"y", "ENV_FILE test.env line 1: unexpected text after the closing quote" },
	{ "A=1\n\n# c\nbroken line", "ENV_FILE test.env line 4: missing '=' (expected KEY=value)" },
	{ "A=1\r\nB='x\r\n", "ENV_FILE test.env line 2: unterminated single quote" },
};

static void test_bad_forms(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const struct bad_case *c = &bad_cases[i];
		struct envfile ef;
		struct problems p = { NULL, 0 };
		int rc = parse(c->text, &ef, &p);

		if (rc != -1 || p.n != 1 || strcmp(p.lines[0], c->problem) != 0) {
			print_message("case %zu [%s]: rc=%d want [%s]\n", i, c->text, rc,
				      c->problem);
			dump(&p);
			fail();
		}
		assert_null(strstr(p.lines[0], "s3cr3t"));
		envfile_free(&ef);
		problems_free(&p);
	}
}

/* Bad lines are skipped and reported each with its number; good lines stay. */
static void test_errors_keep_going(void **state)
{
	const char *text = "# header\n"
			   "GOOD1=a\n"
			   "oops\n"
			   "GOOD2='b'\n"
			   "BAD='" SECRET "\n"
			   "export GOOD3=\"c\"\n"
			   "9X=1\n";
	struct envfile ef;
	struct problems p = { NULL, 0 };

	(void)state;
	assert_int_equal(parse(text, &ef, &p), -1);
	assert_int_equal(p.n, 3);
	assert_string_equal(p.lines[0],
			    "ENV_FILE test.env line 3: missing '=' (expected KEY=value)");
	assert_string_equal(p.lines[1], "ENV_FILE test.env line 5: unterminated single quote");
	assert_non_null(strstr(p.lines[2], "ENV_FILE test.env line 7: invalid variable name"));
	assert_int_equal(ef.n, 3);
	assert_string_equal(envfile_get(&ef, "GOOD1"), "a");
	assert_string_equal(envfile_get(&ef, "GOOD2"), "b");
	assert_string_equal(envfile_get(&ef, "GOOD3"), "c");
	assert_null(envfile_get(&ef, "BAD"));
	for (size_t i = 0; i < p.n; i++)
		assert_null(strstr(p.lines[i], "s3cr3t"));
	envfile_free(&ef);
	problems_free(&p);
}

static void test_duplicates_later_wins(void **state)
{
	struct envfile ef;
	struct problems p = { NULL, 0 };

	(void)state;
	assert_int_equal(parse("A=1\nB=x\nA=2\n", &ef, &p), 0);
	assert_int_equal(ef.n, 2);
	assert_string_equal(envfile_get(&ef, "A"), "2");
	assert_string_equal(envfile_get(&ef, "B"), "x");
	assert_null(envfile_get(&ef, "C"));
	envfile_free(&ef);
	problems_free(&p);
}

static void test_empty_and_nul(void **state)
{
	struct envfile ef;
	struct problems p = { NULL, 0 };
	const char text[] = "A=1\nB=x\0y\nC=3";

	(void)state;
	assert_int_equal(envfile_parse("", 0, "e", &ef, &p), 0);
	assert_int_equal(ef.n, 0);
	envfile_free(&ef);
	assert_int_equal(envfile_parse(text, sizeof text - 1, "e", &ef, &p), -1);
	assert_int_equal(p.n, 1);
	assert_string_equal(p.lines[0], "ENV_FILE e line 2: contains a NUL byte");
	assert_string_equal(envfile_get(&ef, "C"), "3");
	envfile_free(&ef);
	problems_free(&p);
}

static char *write_temp(const char *content, size_t len)
{
	char *path = strdup("/tmp/neonfcgi-envfile-XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	close(fd);
	return path;
}

static void test_read_file(void **state)
{
	const char *text = "export DATABASE_URL='postgres://u:" SECRET "@h/d'\r\nAPI_PORT=9100\r\n";
	char *path = write_temp(text, strlen(text));
	struct envfile ef;
	struct problems p = { NULL, 0 };

	(void)state;
	assert_int_equal(envfile_read(path, &ef, &p), 0);
	assert_int_equal(p.n, 0);
	assert_string_equal(envfile_get(&ef, "API_PORT"), "9100");
	assert_string_equal(envfile_get(&ef, "DATABASE_URL"), "postgres://u:" SECRET "@h/d");
	envfile_free(&ef);
	unlink(path);
	free(path);
}

static void test_read_errors_name_the_file(void **state)
{
	struct envfile ef;
	struct problems p = { NULL, 0 };
	char *path = write_temp("A=1\nbad\n", 8);
	char want[256];

	(void)state;
	assert_int_equal(envfile_read("/nonexistent/dir/.env", &ef, &p), -1);
	assert_int_equal(p.n, 1);
	assert_string_equal(
	    p.lines[0],
	    "ENV_FILE=\"/nonexistent/dir/.env\": cannot open: No such file or directory");
	envfile_free(&ef);
	assert_int_equal(envfile_read(path, &ef, &p), -1);
	snprintf(want, sizeof want, "ENV_FILE %s line 2: missing '=' (expected KEY=value)", path);
	assert_int_equal(p.n, 2);
	assert_string_equal(p.lines[1], want);
	assert_string_equal(envfile_get(&ef, "A"), "1");
	envfile_free(&ef);
	assert_int_equal(envfile_read("/tmp", &ef, &p), -1);
	assert_non_null(strstr(p.lines[2], "ENV_FILE=\"/tmp\": cannot read: "));
	envfile_free(&ef);
	problems_free(&p);
	unlink(path);
	free(path);
}

static void test_read_refuses_large_file(void **state)
{
	size_t big = 1024 * 1024 + 1;
	char *text = malloc(big);
	char *path;
	struct envfile ef;
	struct problems p = { NULL, 0 };

	(void)state;
	assert_non_null(text);
	memset(text, '#', big);
	path = write_temp(text, big);
	assert_int_equal(envfile_read(path, &ef, &p), -1);
	assert_int_equal(p.n, 1);
	assert_non_null(strstr(p.lines[0], "larger than 1048576 bytes"));
	envfile_free(&ef);
	unlink(path);
	free(path);
	/* exactly 1 MiB of comments is accepted */
	path = write_temp(text, big - 1);
	assert_int_equal(envfile_read(path, &ef, &p), 0);
	assert_int_equal(ef.n, 0);
	envfile_free(&ef);
	unlink(path);
	free(path);
	free(text);
	problems_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok_forms),
		cmocka_unit_test(test_bad_forms),
		cmocka_unit_test(test_errors_keep_going),
		cmocka_unit_test(test_duplicates_later_wins),
		cmocka_unit_test(test_empty_and_nul),
		cmocka_unit_test(test_read_file),
		cmocka_unit_test(test_read_errors_name_the_file),
		cmocka_unit_test(test_read_refuses_large_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
