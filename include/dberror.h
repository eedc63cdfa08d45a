/* dberror: what went wrong with the database, as the categories of DESIGN.md
 * §4, whether a retry can help (§5), and how long a client should wait.
 * Pure: classifies libpq's error text and SQLSTATEs, Neon's proxy included. */
#ifndef NEONFCGI_DBERROR_H
#define NEONFCGI_DBERROR_H

#include <stdbool.h>

enum db_category {
	DB_OK = 0,
	DB_TIMEOUT,
	DB_UNREACHABLE,
	DB_TLS,
	DB_AUTH,
	DB_REJECTED,
	DB_QUERY_FAILED,
	DB_POOL_TIMEOUT,
	DB_CIRCUIT_OPEN,
	DB_ENDPOINT,     /* Neon: endpoint not found, disabled, or its ID not given */
	DB_QUOTA,        /* Neon: a quota exceeded, or the endpoint temporarily unavailable */
	DB_RATE_LIMITED, /* Neon: too many connection attempts */
	DB_CATEGORY_COUNT
};

struct db_error {
	enum db_category category;
	bool transient;
	char sqlstate[6];       /* "" when the server sent none */
	char message[256];      /* server's primary message or our description; never
				   holds a password, user or host name */
	enum db_category cause; /* with DB_CIRCUIT_OPEN: the failure that opened it */
};

/* "timeout", "unreachable", … as in the /health/db output. */
const char *db_category_name(enum db_category c);
void dberror_set(struct db_error *err, enum db_category cat, bool transient, const char *sqlstate,
		 const char *message);
void dberror_clear(struct db_error *err);
/* Classify a failed connection attempt from libpq's error text (verbose, so
 * "FATAL:  XX000:  …" carries the SQLSTATE); err->message is our own
 * description, never libpq's text. */
void dberror_classify_connect(const char *libpq_message, struct db_error *err);
/* Whether a SQLSTATE means "try again later": class 08, 53, 57P01–57P03. */
bool dberror_sqlstate_transient(const char *sqlstate);
/* Whether a connection that failed with err must be discarded rather than
 * returned to the pool (anything but an ordinary query error). */
bool dberror_discards(const struct db_error *err);
/* A failure that will not go away by itself (auth, tls, endpoint, quota):
 * answered from memory for DB_FAILURE_HOLD_MS instead of asking again. */
bool dberror_is_held(enum db_category c);
/* Seconds for Retry-After with a 503 of category c (DESIGN.md §4). */
int dberror_retry_after_s(enum db_category c);

#endif
