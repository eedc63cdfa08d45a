/* Unit tests of app/pool_pg.c: each connector operation reaches the pgconn
 * call it stands for, with the pool's arguments (pgconn is faked here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "pgconn.h"
#include "pool_pg.h"

/* ---- fakes of pgconn: record what they were given ---- */

static struct {
	const void *params, *conn;
	int64_t deadline_ms;
	const char *sql;
	int connects, closes, looks, execs;
} seen;

static PGconn *const FAKE_CONN = (PGconn *)(uintptr_t)0x1000;

PGconn *pgconn_connect(const struct pgconn_params *p, int64_t deadline_ms, struct pgconn_info *info,
		       struct db_error *err)
{
	(void)err;
	seen.connects++;
	seen.params = p;
	seen.deadline_ms = deadline_ms;
	info->server_version = 150000;
	return FAKE_CONN;
}

void pgconn_close(PGconn *c)
{
	seen.closes++;
	seen.conn = c;
}

bool pgconn_looks_alive(PGconn *c)
{
	seen.looks++;
	seen.conn = c;
	return true;
}

int pgconn_exec(PGconn *c, const char *sql, int64_t deadline_ms, PGresult **res_out,
		struct db_error *err)
{
	(void)err;
	seen.execs++;
	seen.conn = c;
	seen.sql = sql;
	seen.deadline_ms = deadline_ms;
	assert_null(res_out); /* a ping keeps no result */
	return 0;
}

static int reset(void **state)
{
	(void)state;
	memset(&seen, 0, sizeof seen);
	return 0;
}

static void connect_opens_with_the_pools_params(void **state)
{
	const struct pool_connector *c = pool_pg_connector();
	struct pgconn_params *params = (struct pgconn_params *)(uintptr_t)0x2000;
	struct pgconn_info info = { 0 };
	struct db_error err = { 0 };

	(void)state;
	assert_ptr_equal(c->connect(params, 1234, &info, &err), FAKE_CONN);
	assert_int_equal(seen.connects, 1);
	assert_ptr_equal(seen.params, params);
	assert_int_equal(seen.deadline_ms, 1234);
	assert_int_equal(info.server_version, 150000);
}

static void close_and_looks_alive_reach_pgconn(void **state)
{
	const struct pool_connector *c = pool_pg_connector();

	(void)state;
	assert_true(c->looks_alive(NULL, FAKE_CONN));
	assert_int_equal(seen.looks, 1);
	assert_ptr_equal(seen.conn, FAKE_CONN);
	c->close(NULL, FAKE_CONN);
	assert_int_equal(seen.closes, 1);
	assert_ptr_equal(seen.conn, FAKE_CONN);
}

static void ping_is_select_1_within_the_deadline(void **state)
{
	const struct pool_connector *c = pool_pg_connector();
	struct db_error err = { 0 };

	(void)state;
	assert_int_equal(c->ping(NULL, FAKE_CONN, 4321, &err), 0);
	assert_int_equal(seen.execs, 1);
	assert_ptr_equal(seen.conn, FAKE_CONN);
	assert_string_equal(seen.sql, "SELECT 1");
	assert_int_equal(seen.deadline_ms, 4321);
}

/* libpq says CONNECTION_BAD of a connection that is not there. */
static void no_connection_is_not_idle(void **state)
{
	(void)state;
	assert_false(pool_pg_connector()->is_idle_txn(NULL, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(connect_opens_with_the_pools_params, reset),
		cmocka_unit_test_setup(close_and_looks_alive_reach_pgconn, reset),
		cmocka_unit_test_setup(ping_is_select_1_within_the_deadline, reset),
		cmocka_unit_test_setup(no_connection_is_not_idle, reset),
	};
	return cmocka_run_group_tests_name("pool_pg", tests, NULL, NULL);
}
