/* dbslots: the instance-wide bound on database connections (DESIGN.md §1),
 * WORKERS x (DB_POOL_SIZE + DB_MAX_OVERFLOW), kept in the scoreboard: a
 * worker reserves a slot before it connects and releases it once the
 * connection is closed; the master reclaims a dead worker's slots when it
 * reaps it. So an old and a new generation side by side, a crash loop or a
 * recycled worker never push the instance over the bound. */
#ifndef NEONFCGI_DBSLOTS_H
#define NEONFCGI_DBSLOTS_H

#include <stdint.h>

struct scoreboard;

/* Master, before forking: set up the shared lock and the bound; -1 (errno)
 * when the lock cannot be made. */
int dbslots_init_master(struct scoreboard *sb, long bound) __attribute__((warn_unused_result));
/* Master, after a reload: the new configuration's bound. Slots held above it
 * are not taken back; nobody reserves until enough are released. */
void dbslots_set_bound(struct scoreboard *sb, long bound);
/* Worker idx: one slot, waiting (short sleeps, backing off) until
 * deadline_ms (clock_now_ms()) for one to be released; 0 or -1. */
int dbslots_reserve(struct scoreboard *sb, int idx, int64_t deadline_ms)
    __attribute__((warn_unused_result));
void dbslots_release(struct scoreboard *sb, int idx);
/* Master: worker idx is dead, its connections closed with it; returns how
 * many slots it held. */
long dbslots_reclaim(struct scoreboard *sb, int idx);
/* Slots held by the whole instance. */
long dbslots_held(struct scoreboard *sb);

#endif
