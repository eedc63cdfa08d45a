/* solo: one process per spawn (DESIGN.md §1). Spawned on fd 0 with
 * WORKERS=1 (mod_fcgid, lighttpd bin-path with one child), the process
 * serves requests itself, as php-cgi does, with no master: shared hosts
 * count processes per account. */
#ifndef NEONFCGI_SOLO_H
#define NEONFCGI_SOLO_H

#include <stdbool.h>

struct config;
struct config_source;
struct listener;

/* Whether this start serves without a master. */
bool solo_wanted(const struct config *cfg, const struct config_source *src);
/* Serve on l in this process until a stop signal or MAX_REQUESTS; returns
 * the exit status (0 after a graceful stop: the spawner starts a new one). */
int solo_run(const struct config *cfg, struct listener *l);

#endif
