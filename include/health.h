/* health: the bodies of /health (liveness, never touches the database). */
#ifndef NEONFCGI_HEALTH_H
#define NEONFCGI_HEALTH_H

#include <stddef.h>

/* JSON body of /health; caller frees. */
char *health_live_body(long uptime_s, size_t *len);

#endif
