/* health: application/health+json bodies (IETF draft "Health Check Response
 * Format for HTTP APIs"). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "health.h"

#define SERVICE_ID "neonfcgi"

static char *dump(json_t *obj, size_t *len)
{
	char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (!s)
		abort();
	*len = strlen(s);
	return s;
}

char *health_live_body(long uptime_s, size_t *len)
{
	json_t *obj = json_pack("{s:s, s:s, s:s, s:I, s:I}", "status", "pass", "serviceId",
				SERVICE_ID, "version", NEONFCGI_VERSION, "uptime_s",
				(json_int_t)uptime_s, "pid", (json_int_t)getpid());
	char *s = dump(obj, len);

	json_decref(obj);
	return s;
}
