/* pool_connector: what the pool needs from a database driver, apart from the
 * pool so that the driver's side (pool_pg) and the pool's connect half
 * (pool_dial) need only this. */
#ifndef NEONFCGI_POOL_CONNECTOR_H
#define NEONFCGI_POOL_CONNECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "pgconn.h"

/* ctx is pool_create's ctx. pool_pg_connector() is the real one, the unit
 * tests use a fake. */
struct pool_connector {
	/* Open one connection, never blocking past deadline_ms; NULL with err. */
	void *(*connect)(void *ctx, int64_t deadline_ms, struct pgconn_info *info,
			 struct db_error *err);
	void (*close)(void *ctx, void *conn);
	/* Cheap check, no round trip (socket EOF, pending FATAL). */
	bool (*looks_alive)(void *ctx, void *conn);
	/* Round trip bounded by deadline_ms; 0 when the server answered. */
	int (*ping)(void *ctx, void *conn, int64_t deadline_ms, struct db_error *err);
	/* Connection healthy and outside any transaction (PQTRANS_IDLE). */
	bool (*is_idle_txn)(void *ctx, void *conn);
};

/* The instance-wide bound (DESIGN.md §1): a slot reserved before each
 * connect, released after each close. reserve NULL: unbounded (unit tests
 * of the pool alone). */
struct pool_quota {
	/* 0, or -1 when no slot came free before deadline_ms. */
	int (*reserve)(void *arg, int64_t deadline_ms);
	void (*release)(void *arg);
	void *arg;
};

#endif
