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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(split_table),
		cmocka_unit_test(split_statement_text),
		cmocka_unit_test(transaction_control_words),
	};

	return cmocka_run_group_tests_name("migsplit", tests, NULL, NULL);
}
