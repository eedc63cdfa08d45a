/* pgconn: one PostgreSQL connection with deadlines (non-blocking libpq +
 * poll()), with names resolved inside the deadline, and server/TLS facts;
 * failures are classified by dberror. */
#ifndef NEONFCGI_PGCONN_H
#define NEONFCGI_PGCONN_H

#include <stdbool.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "dberror.h"

/* Connection parameters parsed once from DATABASE_URL (keywords/values for
 * PQconnectStartParams), with the system CA bundle added for verify-full. */
struct pgconn_params;

struct pgconn_info {
	int server_version;
	char tls_protocol[32];
	char tls_cipher[64];
	double connect_ms;
};

struct pgconn_params *pgconn_params_new(const char *database_url, char *err, size_t errlen);
void pgconn_params_free(struct pgconn_params *p);
/* The value given to keyword (after our additions and removals), or NULL. */
const char *pgconn_params_get(const struct pgconn_params *p, const char *keyword);

/* One connection attempt, never blocking past deadline_ms (clock_now_ms()).
 * NULL on failure with err filled. */
PGconn *pgconn_connect(const struct pgconn_params *p, int64_t deadline_ms, struct pgconn_info *info,
		       struct db_error *err);
/* Run sql (may hold several statements); *res_out gets the last result when
 * non-NULL (caller PQclear()s it). -1 on failure or deadline: on a deadline or
 * a broken connection the connection must be discarded (err->category says). */
int pgconn_exec(PGconn *c, const char *sql, int64_t deadline_ms, PGresult **res_out,
		struct db_error *err) __attribute__((warn_unused_result));
/* Parameterized variant (text params). */
int pgconn_exec_params(PGconn *c, const char *sql, int nparams, const char *const *values,
		       int64_t deadline_ms, PGresult **res_out, struct db_error *err)
    __attribute__((warn_unused_result));
/* Cheap liveness check with no round trip: false if the socket shows EOF,
 * an error, or unexpected data (e.g. a FATAL from a server shutting down). */
bool pgconn_looks_alive(PGconn *c);
/* PQfinish, after which c is gone. */
void pgconn_close(PGconn *c);

#endif
