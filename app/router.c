/* router: the table of routes and the rules of DESIGN.md §4. */
#include <string.h>

#include "router.h"

struct route_def {
	const char *path;
	const char *name;
};

static const struct route_def routes[ROUTE_COUNT] = {
	[ROUTE_NOT_FOUND] = { NULL, "other" },
	[ROUTE_HEALTH] = { "/health", "health" },
	[ROUTE_HEALTH_DB] = { "/health/db", "health_db" },
	[ROUTE_METRICS] = { "/metrics", "metrics" },
};

const char *router_name(enum route r)
{
	return (r >= 0 && r < ROUTE_COUNT) ? routes[r].name : "other";
}

const char *router_reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

/* Length of the path part of a request URI: up to '?' or '#'. */
static size_t uri_path_len(const char *uri)
{
	return strcspn(uri, "?#");
}

static enum route lookup(const char *path, size_t len)
{
	for (int r = ROUTE_NOT_FOUND + 1; r < ROUTE_COUNT; r++)
		if (strlen(routes[r].path) == len && memcmp(routes[r].path, path, len) == 0)
			return (enum route)r;
	return ROUTE_NOT_FOUND;
}

void router_resolve(const char *method, const char *path_info, const char *request_uri,
		    struct route_match *out)
{
	const char *path;
	size_t len;

	if (path_info && *path_info) {
		path = path_info;
		len = strlen(path_info);
	} else {
		path = request_uri ? request_uri : "";
		len = uri_path_len(path);
	}
	out->route = lookup(path, len);
	out->head = method && strcmp(method, "HEAD") == 0;
	if (out->route == ROUTE_NOT_FOUND)
		out->status = 404;
	else if (!method || (strcmp(method, "GET") != 0 && !out->head))
		out->status = 405;
	else
		out->status = 0;
}
