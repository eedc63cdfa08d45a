/* router: maps a FastCGI request (method, PATH_INFO, REQUEST_URI) to a route,
 * or to the 404/405 answer, and names the HTTP statuses we answer with. Pure:
 * no I/O. */
#ifndef NEONFCGI_ROUTER_H
#define NEONFCGI_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

enum route {
	ROUTE_NOT_FOUND = 0, /* also the label for 404/405 answers in metrics */
	ROUTE_HEALTH,
	ROUTE_HEALTH_DB,
	ROUTE_METRICS,
	ROUTE_COUNT
};

struct route_match {
	enum route route; /* ROUTE_NOT_FOUND when status is 404 */
	int status;       /* 0: dispatch to the route; else 404 or 405 */
	bool head;        /* HEAD: headers only */
};

/* Resolve a request. path_info wins when non-empty; else the path part of
 * request_uri (query string removed). NULL arguments count as empty. */
void router_resolve(const char *method, const char *path_info, const char *request_uri,
		    struct route_match *out);
/* Stable short name of a route ("health", "health_db", "metrics", "other"). */
const char *router_name(enum route r);
/* The reason phrase of an HTTP status we answer with ("Not Found"…). */
const char *router_reason_phrase(int status);

#endif
