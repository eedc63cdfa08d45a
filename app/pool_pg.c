/* pool_pg: struct pool_connector's operations as calls into pgconn. */
#include "pool_pg.h"

#include "pgconn.h"

static void *pg_connect(void *ctx, int64_t deadline_ms, struct pgconn_info *info,
			struct db_error *err)
{
	return pgconn_connect(ctx, deadline_ms, info, err);
}

static void pg_close(void *ctx, void *conn)
{
	(void)ctx;
	pgconn_close(conn);
}

static bool pg_looks_alive(void *ctx, void *conn)
{
	(void)ctx;
	return pgconn_looks_alive(conn);
}

static int pg_ping(void *ctx, void *conn, int64_t deadline_ms, struct db_error *err)
{
	(void)ctx;
	return pgconn_exec(conn, "SELECT 1", deadline_ms, NULL, err);
}

static bool pg_is_idle_txn(void *ctx, void *conn)
{
	(void)ctx;
	return PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE;
}

static const struct pool_connector pg_connector = {
	.connect = pg_connect,
	.close = pg_close,
	.looks_alive = pg_looks_alive,
	.ping = pg_ping,
	.is_idle_txn = pg_is_idle_txn,
};

const struct pool_connector *pool_pg_connector(void)
{
	return &pg_connector;
}
