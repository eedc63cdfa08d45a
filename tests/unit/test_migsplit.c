/* Unit tests of app/migsplit.c: where statements start and end, their first
 * words and lines, for the SQL forms psql knows (quotes, comments, dollar
 * quotes, parentheses, BEGIN ATOMIC bodies). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migsplit.h"

struct split_case {
	const char *sql;
	size_t n;
	const char *keywords; /* first word of each statement, space separated */
	int last_line;        /* line of the last statement */
};

static const struct split_case splits[] = {
	{ "", 0, "", 0 },
	{ "  -- only a comment\n/* and /* nested */ one */\n", 0, "", 0 },
	{ ";;\n;", 0, "", 0 },
	{ "SELECT 1", 1, "select", 1 },
	{ "SELECT 1; SELECT 2;", 2, "select select", 1 },
	{ "CREATE TABLE t (a int);\n\nINSERT INTO t VALUES (1);\n", 2, "create insert", 3 },
	{ "SELECT ';' ; SELECT 'it''s;'; SELECT \"a;b\" FROM x;", 3, "select select select", 1 },
	{ "SELECT E'\\';' ; SELECT 2", 2, "select select", 1 },
	{ "SELECT '\\'; SELECT 2", 2, "select select", 1 },
	{ "-- a; b\nSELECT 1; /* c; d */ SELECT 2", 2, "select select", 2 },
	{ "DO $$ BEGIN PERFORM 1; END $$; SELECT 2", 2, "do select", 1 },
	{ "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $x$ $body$ LANGUAGE sql;\nSELECT 2;",
	  2, "create select", 2 },
	{ "SELECT $1; SELECT a$b FROM t", 2, "select select", 1 },
	/* near misses of the closing tag do not close it */
	{ "SELECT $ab$ $a; $ab; $abc$; $$; $AB$; $ab$; SELECT 2", 2, "select select", 1 },
	{ "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n"
	  "SELECT 3;",
	  2, "create select", 2 },
	{ "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC\n"
	  "  SELECT CASE WHEN true THEN 1 END; INSERT INTO t VALUES (1);\nEND;\nCOMMIT;",
	  2, "create commit", 4 },
	{ "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); "
	  "INSERT INTO v VALUES (2)); SELECT 1",
	  2, "create select", 1 },
	{ "BEGIN; CREATE TABLE t (); COMMIT;", 3, "begin create commit", 1 },
	{ "SELECT 'unterminated; SELECT 2", 1, "select", 1 },
	{ "SELECT 1e5; \"Quoted\"; 42;", 3, "select  ", 1 },
};

static void split_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
		const struct split_case *c = &splits[i];
		struct migsplit_stmt *st = NULL;
		char kws[256] = "";
		print_message("split case %zu: %s\n", i, c->sql);
		size_t n = migsplit_sql(c->sql, &st);
		assert_int_equal(n, c->n);
		for (size_t k = 0; k < n; k++) {
			if (k)
				strcat(kws, " ");
			strcat(kws, st[k].keyword);
			assert_true(st[k].end > st[k].start);
			assert_true(st[k].end <= strlen(c->sql));
		}
		assert_string_equal(kws, c->keywords);
		if (n)
			assert_int_equal(st[n - 1].line, c->last_line);
		free(st);
	}
}

static void split_statement_text(void **state)
{
	const char *sql = "-- neonfcgi:no-transaction\n"
			  "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);\n"
			  "  CREATE INDEX CONCURRENTLY IF NOT EXISTS b ON t (y) -- trailing\n;\n";
	struct migsplit_stmt *st = NULL;

	(void)state;
	assert_int_equal(migsplit_sql(sql, &st), 2);
	assert_int_equal(st[0].line, 2);
	assert_int_equal(st[1].line, 3);
	assert_memory_equal(sql + st[0].start, "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x)",
			    st[0].end - st[0].start);
	assert_int_equal(st[1].end - st[1].start,
			 strlen("CREATE INDEX CONCURRENTLY IF NOT EXISTS b ON t (y)"));
	assert_string_equal(st[1].keyword2, "index");
	free(st);
}

struct txc_case {
	const char *sql;
	bool tx_control;
};

static void transaction_control_words(void **state)
{
	static const struct txc_case cases[] = {
		{ "BEGIN", true },
		{ "begin isolation level serializable", true },
		{ "START TRANSACTION", true },
		{ "COMMIT", true },
		{ "END", true },
		{ "ABORT", true },
		{ "ROLLBACK", true },
		{ "ROLLBACK TO SAVEPOINT s", false },
		{ "PREPARE TRANSACTION 'x'", true },
		{ "PREPARE q AS SELECT 1", false },
		{ "SAVEPOINT s", false },
		{ "CREATE TABLE begin_end (a int)", false },
		{ "\"begin\"", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct migsplit_stmt *st = NULL;
		print_message("tx control case %zu: %s\n", i, cases[i].sql);
		assert_int_equal(migsplit_sql(cases[i].sql, &st), 1);
		assert_int_equal(migsplit_is_tx_control(&st[0]), cases[i].tx_control);
		free(st);
	}
}

/* n copies of unit, NUL-terminated. */
static char *repeat(const char *unit, size_t n)
{
	size_t len = strlen(unit);
	char *s = malloc(n * len + 1);

	assert_non_null(s);
	for (size_t i = 0; i < n; i++)
		memcpy(s + i * len, unit, len);
	s[n * len] = '\0';
	return s;
}

/* This thread's CPU time: unlike the wall clock, it does not grow while
 * other processes have the CPU. */
static int64_t cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The least CPU time of three splits of sql, in microseconds. */
static int64_t split_us(const char *sql)
{
	int64_t best = INT64_MAX;

	for (int i = 0; i < 3; i++) {
		struct migsplit_stmt *st = NULL;
		int64_t t0 = cpu_us();
		size_t n = migsplit_sql(sql, &st);
		int64_t us = cpu_us() - t0;
		free(st);
		assert_int_equal(n, 1);
		if (us < best)
			best = us;
	}
	return best;
}

/* Each dollar quote used to measure the rest of the text (a strlen), so the
 * time to split a file of them grew with the square of its size: 1 MiB took
 * seconds. Four times the text must now take about four times as long, not
 * sixteen; 8 leaves room for noise, 2 ms for the clock's grain. */
static void split_is_linear_in_dollar_quotes(void **state)
{
	char *small = repeat("$a$x$a$ ", 32 * 1024); /* 256 KiB, one statement */
	char *large = repeat("$a$x$a$ ", 128 * 1024);

	(void)state;
	int64_t t_small = split_us(small), t_large = split_us(large);
	print_message("dollar quotes: 256 KiB %lld us, 1 MiB %lld us\n", (long long)t_small,
		      (long long)t_large);
	free(small);
	free(large);
	assert_true(t_large < 8 * t_small + 2000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(split_table),
		cmocka_unit_test(split_statement_text),
		cmocka_unit_test(transaction_control_words),
		cmocka_unit_test(split_is_linear_in_dollar_quotes),
	};

	return cmocka_run_group_tests_name("migsplit", tests, NULL, NULL);
}
