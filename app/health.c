/* health: application/health+json bodies. Failures carry only a category
 * (never a libpq message, user or host name). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <jansson.h>

#include "health.h"

#define SERVICE_ID "neonfcgi"
/* A tripped breaker half-opens after about two seconds; other failures may
 * clear on the next try. */
#define RETRY_AFTER_S 1
#define RETRY_AFTER_BREAKER_S 2

static char *dump(json_t *obj, size_t *len)
{
	char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));

	if (!s)
		abort();
	*len = strlen(s);
	json_decref(obj);
	return s;
}

/* The hot path of liveness probes: formatted directly (through jansson it was
 * half of a /health request's user-space instructions, bench/results). The
 * only string that is not a literal, the version, comes from the Makefile. */
char *health_live_body(long uptime_s, long pid, size_t *len)
{
	char buf[160];
	int n = snprintf(buf, sizeof(buf),
			 "{\"status\":\"pass\",\"serviceId\":\"" SERVICE_ID
			 "\",\"version\":\"" NEONFCGI_VERSION "\",\"uptime_s\":%ld,\"pid\":%ld}",
			 uptime_s, pid);

	if (n < 0 || (size_t)n >= sizeof(buf))
		abort(); /* cannot happen: two longs and literals */
	*len = (size_t)n;
	char *s = malloc((size_t)n + 1);
	if (!s)
		abort();
	memcpy(s, buf, (size_t)n + 1);
	return s;
}

void health_stamp(struct health_db_check *chk)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(chk->time, sizeof(chk->time), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(chk->time + n, sizeof(chk->time) - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

/* The instance's pool: callers queue for a connection, or some worker's
 * breaker is open (it cannot connect). */
static const char *pool_status(const struct health_pool_view *pool)
{
	return pool->waiting > 0 || pool->breakers_open > 0 ? "warn" : "pass";
}

static const char *overall_status(const struct health_db_check *chk,
				  const struct health_pool_view *pool)
{
	/* A warn only when our own check passed: a failure says fail. */
	return chk->ok ? pool_status(pool) : "fail";
}

static json_t *response_time_check(const struct health_db_check *chk)
{
	json_t *c = json_pack("{s:s, s:f, s:s, s:s, s:s}", "componentType", "datastore",
			      "observedValue", chk->response_ms, "observedUnit", "ms", "status",
			      chk->ok ? "pass" : "fail", "time", chk->time);

	if (!chk->ok)
		json_object_set_new(c, "output", json_string(db_category_name(chk->category)));
	if (chk->circuit_open)
		json_object_set_new(c, "circuit", json_string("open"));
	return json_pack("[o]", c);
}

static json_t *connections_check(const struct health_pool_view *pool, const char *status)
{
	return json_pack("[{s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I}]", "componentType",
			 "datastore", "status", status, "observedValue",
			 (json_int_t)(pool->idle + pool->in_use), "observedUnit", "connections",
			 "idle", (json_int_t)pool->idle, "in_use", (json_int_t)pool->in_use, "max",
			 (json_int_t)pool->max, "waiting", (json_int_t)pool->waiting);
}

char *health_db_body(const struct health_db_check *chk, const struct health_pool_view *pool,
		     enum health_details details, int *http_status, int *retry_after, size_t *len)
{
	const char *status = overall_status(chk, pool);
	json_t *obj = json_pack("{s:s}", "status", status);

	*http_status = chk->ok ? 200 : 503;
	*retry_after = 0;
	if (!chk->ok) {
		json_object_set_new(obj, "output", json_string(db_category_name(chk->category)));
		/* Behind an open breaker category holds the cause that opened it. */
		*retry_after = chk->circuit_open || chk->category == DB_CIRCUIT_OPEN
				       ? RETRY_AFTER_BREAKER_S
				       : RETRY_AFTER_S;
	}
	if (details == HEALTH_DETAILS_MINIMAL)
		return dump(obj, len);
	json_object_set_new(obj, "serviceId", json_string(SERVICE_ID));
	json_object_set_new(obj, "version", json_string(NEONFCGI_VERSION));
	json_object_set_new(obj, "checks",
			    json_pack("{s:o, s:o}", "postgres:responseTime",
				      response_time_check(chk), "postgres:connections",
				      connections_check(pool, pool_status(pool))));
	return dump(obj, len);
}
