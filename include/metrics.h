/* metrics: Prometheus text exposition 0.0.4 of the whole instance, summed
 * over every scoreboard slot. */
#ifndef NEONFCGI_METRICS_H
#define NEONFCGI_METRICS_H

#include <stddef.h>

struct config;
struct scoreboard;

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The /metrics body; malloc'd, *len set. */
char *metrics_render(const struct scoreboard *sb, const struct config *cfg, size_t *len);

#endif
