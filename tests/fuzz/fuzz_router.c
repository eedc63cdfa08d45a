/* libFuzzer target: router_resolve with a method, PATH_INFO and REQUEST_URI
 * taken from the input (three NUL-separated fields; a missing field is NULL).
 * Checks the rules of DESIGN.md §4 on every answer, besides ASan/UBSan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next NUL-terminated field of buf, or NULL when there is none. */
static char *field(char **cur, char *end)
{
	char *f = *cur;

	if (f >= end)
		return NULL;
	*cur = f + strlen(f) + 1;
	return f;
}

static int is_route_path(const char *path, size_t len)
{
	static const char *const paths[] = { "/health", "/health/db", "/metrics" };

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (strlen(paths[i]) == len && memcmp(paths[i], path, len) == 0)
			return 1;
	return 0;
}

static void check(const char *method, const char *path_info, const char *uri,
		  const struct route_match *m)
{
	const char *path = path_info && *path_info ? path_info : uri ? uri : "";
	size_t len = path_info && *path_info ? strlen(path) : strcspn(path, "?#");
	int get = method && strcmp(method, "GET") == 0;
	int head = method && strcmp(method, "HEAD") == 0;

	if (m->route < ROUTE_NOT_FOUND || m->route >= ROUTE_COUNT || router_name(m->route) == NULL)
		abort();
	if (m->head != head)
		abort();
	if (m->status == 404) {
		/* every route is always served: a 404 is never for a route's path */
		if (m->route != ROUTE_NOT_FOUND || is_route_path(path, len))
			abort();
	} else if (m->status == 405 || m->status == 0) {
		/* a route only matches its exact path: no prefix, no "..", no %-decoding */
		const char *name = m->route == ROUTE_HEALTH      ? "/health"
				   : m->route == ROUTE_HEALTH_DB ? "/health/db"
				   : m->route == ROUTE_METRICS   ? "/metrics"
								 : NULL;
		if (name == NULL || strlen(name) != len || memcmp(name, path, len) != 0)
			abort();
		if ((m->status == 0) != (get || head))
			abort();
	} else {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *cur, *end, *method, *path_info, *uri;
	struct route_match m;

	/* a copy with a NUL after the end, so the last field is terminated */
	buf = malloc(size + 1);
	if (buf == NULL)
		abort();
	memcpy(buf, data, size);
	buf[size] = '\0';
	cur = buf;
	end = buf + size;
	method = field(&cur, end);
	path_info = field(&cur, end);
	uri = field(&cur, end);
	router_resolve(method, path_info, uri, &m);
	check(method, path_info, uri, &m);
	free(buf);
	return 0;
}
