/* Unit tests of app/problems.c: the list keeps every line in order and frees
 * cleanly, and a quoted value stays one bounded, escaped line. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "problems.h"

static void test_lines_kept_in_order(void **state)
{
	struct problems p = { NULL, 0 };

	(void)state;
	problems_add(&p, "A=\"%s\": first", "x");
	problems_add(&p, "%d problems", 2);
	assert_int_equal(p.n, 2);
	assert_string_equal(p.lines[0], "A=\"x\": first");
	assert_string_equal(p.lines[1], "2 problems");
	problems_free(&p);
	assert_int_equal(p.n, 0);
	assert_null(p.lines);
	problems_free(&p); /* twice is harmless */
}

static void test_long_line_kept_whole(void **state)
{
	struct problems p = { NULL, 0 };
	char big[5000];

	(void)state;
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	problems_add(&p, "%s!", big);
	assert_int_equal(strlen(p.lines[0]), sizeof big);
	problems_free(&p);
}

static const struct {
	const char *in;
	const char *out;
} quote_cases[] = {
	{ "", "" },
	{ "plain value", "plain value" },
	{ "x\"y", "x\\\"y" },
	{ "back\\slash", "back\\\\slash" },
	{ "line\nbreak\r", "line\\x0abreak\\x0d" },
	{ "tab\tdel\x7f", "tab\\x09del\\x7f" },
	{ "caf\xc3\xa9", "caf\xc3\xa9" }, /* UTF-8 passes through */
};

static void test_quote_cases(void **state)
{
	char buf[PROBLEMS_QUOTE_BUF];

	(void)state;
	for (size_t i = 0; i < sizeof quote_cases / sizeof quote_cases[0]; i++) {
		problems_quote(quote_cases[i].in, buf, sizeof buf);
		assert_string_equal(buf, quote_cases[i].out);
	}
}

/* At most PROBLEMS_QUOTE_MAX bytes of the value, then "..."; the worst case
 * (every byte escaped) fits PROBLEMS_QUOTE_BUF. */
static void test_quote_bounded(void **state)
{
	char in[PROBLEMS_QUOTE_MAX * 2], buf[PROBLEMS_QUOTE_BUF];

	(void)state;
	memset(in, 'a', sizeof in - 1);
	in[sizeof in - 1] = '\0';
	problems_quote(in, buf, sizeof buf);
	assert_int_equal(strlen(buf), PROBLEMS_QUOTE_MAX + 3);
	assert_string_equal(buf + PROBLEMS_QUOTE_MAX, "...");
	in[PROBLEMS_QUOTE_MAX] = '\0';
	problems_quote(in, buf, sizeof buf);
	assert_int_equal(strlen(buf), PROBLEMS_QUOTE_MAX); /* exactly the limit: not cut */
	memset(in, '\n', sizeof in - 1);
	in[sizeof in - 1] = '\0';
	problems_quote(in, buf, sizeof buf);
	assert_int_equal(strlen(buf), PROBLEMS_QUOTE_MAX * 4 + 3);
}

/* A small buffer is never overrun and always terminated. */
static void test_quote_small_buffers(void **state)
{
	char buf[32];

	(void)state;
	for (size_t n = 1; n < sizeof buf; n++) {
		memset(buf, 'Z', sizeof buf);
		problems_quote("\"quoted\" and \x01 long enough to be cut", buf, n);
		assert_true(strlen(buf) < n);
		assert_int_equal(buf[n], 'Z');
	}
	buf[0] = 'Z';
	problems_quote("x", buf, 0);
	assert_int_equal(buf[0], 'Z');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines_kept_in_order),
		cmocka_unit_test(test_long_line_kept_whole),
		cmocka_unit_test(test_quote_cases),
		cmocka_unit_test(test_quote_bounded),
		cmocka_unit_test(test_quote_small_buffers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
