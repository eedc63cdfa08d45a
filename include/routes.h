/* routes: what a worker answers to one FastCGI request: the route (router.c
 * resolves it), the body of /health, /health/db (the pooled SELECT 1 behind
 * healthcache and healthflight) and /metrics, or the JSON error; counted in
 * the scoreboard. Writing it to the connection is the worker's. */
#ifndef NEONFCGI_ROUTES_H
#define NEONFCGI_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <fcgiapp.h>

#include "router.h"

struct config;
struct healthflight;
struct pool;
struct sb_slot;
struct scoreboard;

/* A worker's routes: what they answer from, set by routes_init_worker. The
 * worker owns everything but the healthflight. */
struct routes {
	const struct config *cfg;
	struct scoreboard *sb;
	struct sb_slot *sb_slot;
	struct pool *pool;
	int64_t started_ms; /* the instance's start, for uptime */
	long pid;           /* for /health, without a getpid() call per request */
	/* Called before /metrics is rendered (the worker samples its accept
	 * queue, so a scrape sees it current). */
	void (*before_metrics)(void *arg);
	void *before_metrics_arg;
	struct healthflight *flight; /* one /health/db check at a time (§5a) */
};

/* One answer; body is malloc'd, the caller frees it. */
struct routes_response {
	enum route route;
	bool head; /* HEAD: headers only */
	int status;
	const char *content_type;
	char *body;
	size_t len;
	const char *allow;
	int retry_after;
	int64_t us; /* from the request's resolution to its counting */
};

/* rt's fields but flight are filled in; starts its healthflight. */
void routes_init_worker(struct routes *rt);
/* Only once no request can be in routes_answer. */
void routes_stop_worker(struct routes *rt);
/* Resolve req, build its answer into *r and count it in the scoreboard
 * (before the answer leaves, so a scrape that follows it sees it). */
void routes_answer(struct routes *rt, FCGX_Request *req, struct routes_response *r);

#endif
