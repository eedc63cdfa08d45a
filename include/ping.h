/* ping: `neonfcgi ping`, one connection and SELECT 1 with the configured
 * deadlines and retries; prints latency, server version and TLS details. */
#ifndef NEONFCGI_PING_H
#define NEONFCGI_PING_H

#include <stdio.h>

struct config;

/* 0 when the database answered, 1 otherwise (DESIGN.md §3). */
int ping_run(const struct config *cfg, FILE *out);

#endif
