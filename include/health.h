/* health: the bodies of /health (liveness, never touches the database) and
 * /health/db (readiness, IETF draft "Health Check Response Format"). */
#ifndef NEONFCGI_HEALTH_H
#define NEONFCGI_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

#include "clock.h"
#include "config.h"
#include "pgconn.h"

struct sb_pool;

/* What one /health/db request found. */
struct health_db_check {
	bool ok;
	enum db_category category; /* on failure: the cause, even behind an open breaker */
	bool circuit_open;         /* the failure was answered by the open breaker */
	double response_ms;
	char time[CLOCK_RFC3339_LEN]; /* RFC 3339 UTC time of the check */
};

/* The instance-wide pool picture: sums over every worker, and the bound. */
struct health_pool_view {
	long idle, in_use, waiting, breakers_open, max;
};

/* JSON body of /health for the worker with process id pid; caller frees. */
char *health_live_body(long uptime_s, long pid, size_t *len);
/* JSON body of /health/db; sets *http_status (200 pass/warn, 503 fail) and
 * *retry_after (seconds, on 503). Caller frees. */
char *health_db_body(const struct health_db_check *chk, const struct health_pool_view *pool,
		     enum health_details details, int *http_status, int *retry_after, size_t *len);
/* Fill chk->time with the current UTC time. */
void health_stamp(struct health_db_check *chk);

#endif
