/* healthcache: the instance's last passing /health/db check, published in
 * the scoreboard so that any worker may answer from it while it is younger
 * than HEALTH_DB_MAX_AGE_MS (DESIGN.md §5a). Failing checks are never kept. */
#ifndef NEONFCGI_HEALTHCACHE_H
#define NEONFCGI_HEALTHCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "health.h"

struct scoreboard;

/* Keep chk, which finished at finished_ms (clock_now_ms()), unless it failed
 * or a newer one is kept already. Never blocks: when another worker is
 * publishing at the same moment, its result is as fresh and this one is
 * dropped. */
void healthcache_publish(struct scoreboard *sb, const struct health_db_check *chk,
			 int64_t finished_ms);
/* true with *out when a passing check finished at most max_age_ms before
 * now_ms. */
bool healthcache_get(struct scoreboard *sb, int64_t max_age_ms, int64_t now_ms,
		     struct health_db_check *out);
/* Forget the kept check (the master, when a reload may change the database). */
void healthcache_clear(struct scoreboard *sb);

#endif
