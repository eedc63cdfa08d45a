/* health: application/health+json bodies. Failures carry only a category
 * (never a libpq message, user or host name). */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "health.h"
#include "xalloc.h"

#define SERVICE_ID "neonfcgi"
/* A tripped breaker half-opens after about two seconds; other failures may
 * clear on the next try. */

/* The bodies are formatted straight into a fixed buffer. Through jansson,
 * packing and dumping /health/db's body took about 80k instructions, more
 * than half of the request's user-space work and four times the query's, and
 * /health's took half of that request's (bench/results/README.md). Every
 * string is a literal or one of ours (status and category names, the version,
 * an RFC 3339 time); they are escaped anyway. */
struct out {
	char buf[1024];
	size_t n;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int k = vsnprintf(o->buf + o->n, sizeof(o->buf) - o->n, fmt, ap);
	va_end(ap);
	if (k < 0 || (size_t)k >= sizeof(o->buf) - o->n)
		abort(); /* cannot happen: a fixed set of short fields */
	o->n += (size_t)k;
}

static void put_raw(struct out *o, const char *s, size_t n)
{
	if (n >= sizeof(o->buf) - o->n)
		abort(); /* cannot happen, as above */
	memcpy(o->buf + o->n, s, n);
	o->n += n;
	o->buf[o->n] = '\0';
}

#define put_lit(o, s) put_raw((o), (s), sizeof(s) - 1)

/* ,"key":"value" (no comma when first), the value JSON-escaped; without
 * printf, which cost more than the rest of the body. */
static void put_str(struct out *o, bool first, const char *key, const char *v)
{
	if (!first)
		put_lit(o, ",");
	put_lit(o, "\"");
	put_raw(o, key, strlen(key));
	put_lit(o, "\":\"");
	while (*v) {
		size_t plain = 0;

		while (v[plain] && v[plain] != '"' && v[plain] != '\\' &&
		       (unsigned char)v[plain] >= 0x20)
			plain++;

		put_raw(o, v, plain);
		v += plain;
		if (*v) {
			unsigned char c = (unsigned char)*v++;

			put(o, c < 0x20 ? "\\u%04x" : "\\%c", c);
		}
	}
	put_lit(o, "\"");
}

/* ,"key":v */
static void put_int(struct out *o, const char *key, long v)
{
	char digits[24];
	size_t i = sizeof(digits);
	unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;

	do {
		digits[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		digits[--i] = '-';
	put_lit(o, ",\"");
	put_raw(o, key, strlen(key));
	put_lit(o, "\":");
	put_raw(o, digits + i, sizeof(digits) - i);
}

/* A finite double as a JSON number that reads back as a real: what jansson
 * printed with JSON_REAL_PRECISION(6). */
static void put_real(struct out *o, const char *key, double v)
{
	char num[40];

	if (!isfinite(v))
		v = 0;
	snprintf(num, sizeof(num), "%.6g", v);
	put(o, ",\"%s\":%s%s", key, num, strpbrk(num, ".eE") ? "" : ".0");
}

static char *finish(struct out *o, size_t *len)
{
	char *s = xmalloc(o->n + 1);

	memcpy(s, o->buf, o->n);
	s[o->n] = '\0';
	*len = o->n;
	return s;
}

/* The hot path of liveness probes. */
char *health_live_body(long uptime_s, long pid, size_t *len)
{
	struct out o = { .n = 0 };

	put_lit(&o, "{");
	put_str(&o, true, "status", "pass");
	put_str(&o, false, "serviceId", SERVICE_ID);
	put_str(&o, false, "version", NEONFCGI_VERSION);
	put_int(&o, "uptime_s", uptime_s);
	put_int(&o, "pid", pid);
	put_lit(&o, "}");
	return finish(&o, len);
}

void health_stamp(struct health_db_check *chk)
{
	clock_rfc3339(clock_real_ms(), chk->time, sizeof(chk->time));
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

static void put_response_time_check(struct out *o, const struct health_db_check *chk)
{
	put_lit(o, "\"postgres:responseTime\":[{"); /* the first member of checks */
	put_str(o, true, "componentType", "datastore");
	put_real(o, "observedValue", chk->response_ms);
	put_str(o, false, "observedUnit", "ms");
	put_str(o, false, "status", chk->ok ? "pass" : "fail");
	put_str(o, false, "time", chk->time);
	if (!chk->ok)
		put_str(o, false, "output", db_category_name(chk->category));
	if (chk->circuit_open)
		put_str(o, false, "circuit", "open");
	put_lit(o, "}]");
}

static void put_connections_check(struct out *o, const struct health_pool_view *pool,
				  const char *status)
{
	put_lit(o, ",\"postgres:connections\":[{");
	put_str(o, true, "componentType", "datastore");
	put_str(o, false, "status", status);
	put_int(o, "observedValue", pool->idle + pool->in_use);
	put_str(o, false, "observedUnit", "connections");
	put_int(o, "idle", pool->idle);
	put_int(o, "in_use", pool->in_use);
	put_int(o, "max", pool->max);
	put_int(o, "waiting", pool->waiting);
	put_lit(o, "}]");
}

char *health_db_body(const struct health_db_check *chk, const struct health_pool_view *pool,
		     enum health_details details, int *http_status, int *retry_after, size_t *len)
{
	struct out o = { .n = 0 };

	*http_status = chk->ok ? 200 : 503;
	*retry_after = 0;
	put_lit(&o, "{");
	put_str(&o, true, "status", overall_status(chk, pool));
	if (!chk->ok) {
		put_str(&o, false, "output", db_category_name(chk->category));
		/* Behind an open breaker category holds the cause that opened it. */
		*retry_after =
		    dberror_retry_after_s(chk->circuit_open ? DB_CIRCUIT_OPEN : chk->category);
	}
	if (details != HEALTH_DETAILS_MINIMAL) {
		put_str(&o, false, "serviceId", SERVICE_ID);
		put_str(&o, false, "version", NEONFCGI_VERSION);
		put_lit(&o, ",\"checks\":{");
		put_response_time_check(&o, chk);
		put_connections_check(&o, pool, pool_status(pool));
		put_lit(&o, "}");
	}
	put_lit(&o, "}");
	return finish(&o, len);
}
